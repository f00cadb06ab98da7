//! The ends of grants, recorded exactly once across the gateways sharing the Redis:
//! [`record_end`] for an end a request or an administrator caused, [`end_on_time`] (a
//! timer in the gateway that made the grant) and [`start_sweep`] (every gateway, each
//! second, over the shared schedule) for expiries.

use super::store::{Scheduled, Store};
use super::BreakglassError;
use crate::audit::{Actor, Audit, Code, Event, Kind};
use crate::session::{now_secs, SessionError, SessionStore};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most grant ends one sweep records (the rest, the next second).
const SWEEP_BATCH: usize = 100;

/// Why a grant ended, as its `breakglass.ended` record and its claim name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantEnd {
    /// Its time ran out.
    Expired,
    /// The session holding it was idle too long first.
    SessionIdleTimeout,
    /// The session holding it reached its absolute lifetime first.
    SessionExpired,
    /// Its user signed out.
    Logout,
    /// The identity provider ended the session holding it.
    BackchannelLogout,
    /// A new declaration took its place.
    Replaced,
    /// An administrator ended the session holding it.
    Revoked,
}

impl GrantEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantEnd::Expired => "expired",
            GrantEnd::SessionIdleTimeout => "session_idle_timeout",
            GrantEnd::SessionExpired => "session_expired",
            GrantEnd::Logout => "logout",
            GrantEnd::BackchannelLogout => "backchannel_logout",
            GrantEnd::Replaced => "replaced",
            GrantEnd::Revoked => "revoked",
        }
    }

    /// The reason its `breakglass.ended` record carries.
    pub fn code(self) -> Code {
        match self {
            GrantEnd::Expired => Code::Expired,
            GrantEnd::SessionIdleTimeout => Code::SessionIdleTimeout,
            GrantEnd::SessionExpired => Code::SessionExpired,
            GrantEnd::Logout => Code::Logout,
            GrantEnd::BackchannelLogout => Code::BackchannelLogout,
            GrantEnd::Replaced => Code::Replaced,
            GrantEnd::Revoked => Code::Revoked,
        }
    }
}

/// Records a grant's end (`ev`, a `breakglass.ended` with its `grant`) for `why` if
/// this is the first end claimed for it; in a task of its own (the claim is a Redis
/// round trip). Without Redis the end is recorded anyway: a second record of an end is
/// better than none.
pub fn record_end(store: Option<SessionStore>, audit: Option<Audit>, mut ev: Event, why: GrantEnd) {
    let Some(id) = ev.grant.clone() else { return };
    ev.reason = Some(why.code().into());
    tokio::spawn(async move {
        if let Some(store) = &store {
            let st = Store(store);
            match st.claim_end(&id, why).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, grant = %id, "could not claim a grant's end; recording it anyway");
                    if let Some(a) = audit {
                        a.append(ev);
                    }
                    return;
                }
            }
        }
        tracing::warn!(grant = %id, route = ?ev.route, why = why.as_str(), "break-glass grant ended");
        let durable = match &audit {
            Some(a) => a.append_durable(ev).await.map(|_| ()).map_err(|e| e.to_string()),
            None => Ok(()),
        };
        if let Some(store) = &store {
            let st = Store(store);
            match durable {
                Ok(()) => st.ended(&id).await,
                Err(e) => {
                    tracing::error!(error = %e, grant = %id, "ALERT: the end of a break-glass grant is not durable yet; the sweep records it again");
                    st.release_end(&id).await;
                }
            }
        }
    });
}

/// Ends a grant found due on the schedule, if no other end was claimed first: its
/// sealed session goes with it, and `breakglass.ended` (`expired`, or how its session
/// ended before) is made durable.
async fn expire(store: &SessionStore, audit: Option<&Audit>, id: &str) -> Result<(), SessionError> {
    let st = Store(store);
    let scheduled = st.scheduled(id).await?;
    if st.is_ended(id).await? {
        st.unschedule(id).await;
        return Ok(());
    }
    let why = ended_why(store, scheduled.as_ref()).await;
    if !st.claim_end(id, why).await? {
        // Another gateway or end path holds the claim: it records the end, or gives the
        // claim back for a later sweep.
        return Ok(());
    }
    if let Some(h) = scheduled.as_ref().filter(|s| s.sealed).and_then(|s| s.session.as_deref()) {
        // A sealed link's session exists for its grant only. Claimed: the end is
        // recorded whatever happens here.
        if let Err(e) = store.end_by_hash(h, None).await {
            tracing::warn!(error = %e, grant = %id, "could not end a sealed session with its grant; it is refused on its next request");
        }
    }
    let mut ev = Event::new(Kind::BreakglassEnded);
    ev.grant = Some(id.to_string());
    ev.breakglass = Some(true);
    ev.reason = Some(why.code().into());
    if let Some(s) = &scheduled {
        ev.actor = Some(Actor { subject: s.subject.clone(), groups: Vec::new() });
        ev.session.clone_from(&s.session);
        ev.route = Some(s.route.clone());
        ev.scope = Some(s.scope.clone());
    }
    tracing::warn!(grant = %id, route = ?ev.route, why = why.as_str(), "break-glass grant ended");
    if let Some(a) = audit {
        if let Err(e) = a.append_durable(ev).await {
            tracing::error!(error = %e, grant = %id, "ALERT: the end of a break-glass grant is not durable yet; the sweep records it again");
            st.release_end(id).await;
            return Ok(());
        }
    }
    st.ended(id).await;
    Ok(())
}

/// Why a grant due on the schedule ended: `expired`, or, when the session holding a
/// declared grant timed out first (its key outlives its end for a while), as that
/// session's own end is recorded.
async fn ended_why(store: &SessionStore, s: Option<&Scheduled>) -> GrantEnd {
    let Some(hash) = s.filter(|s| !s.sealed).and_then(|s| s.session.as_deref()) else { return GrantEnd::Expired };
    let Ok(Some(session)) = store.peek_by_hash(hash).await else { return GrantEnd::Expired };
    match crate::session::judge(&session, now_secs(), &store.timeouts).0 {
        Some(crate::session::Lookup::IdleTimeout(_)) => GrantEnd::SessionIdleTimeout,
        Some(crate::session::Lookup::Expired(_)) => GrantEnd::SessionExpired,
        _ => GrantEnd::Expired,
    }
}

/// The gateway that made a grant ends it on time: a timer, in a task of its own.
pub fn end_on_time(store: SessionStore, audit: Option<Audit>, id: String, expires: u64) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(expires.saturating_sub(now_secs()))).await;
        // The schedule's clock is whole seconds: wait into the second the grant ends in.
        while now_secs() < expires {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = expire(&store, audit.as_ref(), &id).await {
            tracing::warn!(error = %e, grant = %id, "could not record a grant's end on time; the sweep will");
        }
    });
}

/// Every second, in a thread of its own: records the ends of grants due on the shared
/// schedule (at most [`SWEEP_BATCH`] a second), whichever gateway made them.
pub fn start_sweep(store: SessionStore, audit: Option<Audit>) -> Result<(), BreakglassError> {
    std::thread::Builder::new()
        .name("custos-breakglass-sweep".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "ALERT: no break-glass sweep: grant ends are recorded only by timers and requests");
                    return;
                }
            };
            rt.block_on(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut failing = false;
                loop {
                    tick.tick().await;
                    let result = async {
                        for id in Store(&store).due(now_secs(), SWEEP_BATCH).await? {
                            expire(&store, audit.as_ref(), &id).await?;
                        }
                        Ok::<_, SessionError>(())
                    }
                    .await;
                    // Said once per outage, not every second.
                    match result {
                        Err(e) if !failing => {
                            tracing::warn!(error = %e, "break-glass sweep: the session store is unreachable");
                            failing = true;
                        }
                        Ok(()) if failing => {
                            tracing::info!("break-glass sweep: the session store answers again");
                            failing = false;
                        }
                        _ => {}
                    }
                }
            });
        })
        .map(|_| ())
        .map_err(BreakglassError::Sweep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ends_are_named_as_before() {
        for (w, s) in [
            (GrantEnd::Expired, "expired"),
            (GrantEnd::SessionIdleTimeout, "session_idle_timeout"),
            (GrantEnd::SessionExpired, "session_expired"),
            (GrantEnd::Logout, "logout"),
            (GrantEnd::BackchannelLogout, "backchannel_logout"),
            (GrantEnd::Replaced, "replaced"),
            (GrantEnd::Revoked, "revoked"),
        ] {
            assert_eq!(w.as_str(), s);
            assert_eq!(w.code().as_str(), s);
            assert_eq!(serde_json::to_string(&w).unwrap(), format!("\"{s}\""));
        }
    }
}
