//! Credential to person: the [`Auth`] bundle (settings, identity provider, session store,
//! assertion signer), and authentication — a session id to its live session in Redis
//! (re-validated at the provider now and then), or a bearer token to its claims — then
//! the route's MFA rule. Sessions found ended are recorded here; tokens and session ids
//! never are, only their hashes.

use super::{Access, Credential, Denial, Principal, Request, SignIn};
use crate::audit::{Actor, Event, Kind};
use crate::config::AuthSettings;
use crate::identity::{bearer::BearerError, Identity};
use crate::session::{Lookup, Session, SessionId, SessionStore};
use std::sync::Arc;
use std::time::Duration;

/// What the gateway needs to sign users in.
pub struct Auth {
    pub settings: AuthSettings,
    pub identity: Arc<Identity>,
    pub store: SessionStore,
    pub asserter: Option<crate::identity::assertion::Asserter>,
}

/// Why the sign-in machinery cannot be built from its settings (each names its key).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("`session.redis_url`: {0}")]
    Store(String),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("`upstream_identity.signing_key`: {0}")]
    SigningKey(String),
}

impl Auth {
    pub fn new(settings: AuthSettings) -> Result<Auth, AuthError> {
        let s = &settings.session;
        let store = SessionStore::with_cache(
            crate::session::StoreConfig {
                url: s.redis_url.clone(),
                username: s.redis_username.clone(),
                password: s.redis_password.clone(),
                ca: s.redis_ca.clone(),
                timeout: s.redis_timeout,
                prefix: s.key_prefix.clone(),
            },
            s.timeouts,
            s.max_cached_sessions,
        )
        .map_err(|e| AuthError::Store(e.to_string()))?;
        let identity = Arc::new(Identity::new(settings.oidc.clone())?);
        let asserter = match &settings.upstream_identity {
            None => None,
            Some(u) => {
                if u.signing_key.is_none() {
                    tracing::warn!("upstream_identity.signing_key is not set: assertions are signed with a key made at start (several gateway instances need one shared key)");
                }
                Some(
                    crate::identity::assertion::Asserter::new(
                        u.signing_key.as_ref(),
                        &settings.oidc.origin,
                        u.ttl,
                        u.max_groups,
                    )
                    .map_err(|e| AuthError::SigningKey(e.to_string()))?,
                )
            }
        };
        Ok(Auth { settings, identity, store, asserter })
    }

    /// The gateway's cookies: the session's and the pending sign-in's.
    pub fn cookie_names(&self) -> [&str; 2] {
        [&self.settings.session.cookie_name, &self.settings.session.login_cookie_name]
    }

    /// Whether the route (or, without one, the site) needs a multi-factor sign-in.
    pub fn needs_mfa(&self, route: Option<&crate::config::Route>) -> bool {
        route.and_then(|r| r.require_mfa).unwrap_or(self.settings.oidc.require_mfa)
    }

    /// The `max_age` of a step-up sign-in.
    pub fn step_up_max_age(&self) -> Duration {
        self.settings.oidc.mfa.step_up_max_age.unwrap_or(Duration::ZERO)
    }
}

pub(super) fn actor_of(s: &Session) -> Actor {
    Actor { subject: s.subject.clone(), groups: s.groups.clone() }
}

impl Access<'_> {
    /// An audit record about sign-in or a session, with the request's metadata.
    pub(super) fn auth_event(req: &Request<'_>, kind: Kind) -> Event {
        let mut ev = req.meta.event(kind);
        ev.route = None;
        ev.upstream = None;
        ev
    }

    /// The credential to a live session (or a verified bearer token), then the route's
    /// MFA rule. A denial other than [`Denial::SignIn`] is recorded.
    pub async fn authenticate(&self, req: &Request<'_>) -> Result<Principal, Denial> {
        let Some(auth) = self.auth else {
            // Config validation refuses non-public routes without [oidc]; never forward.
            return Err(self.deny(req, Denial::Internal, None, None));
        };
        if let Some(db) = req.database {
            let need_mfa = db.require_mfa.unwrap_or(auth.settings.oidc.require_mfa);
            return self.authenticate_database(req, auth, db, need_mfa).await;
        }
        let need_mfa = auth.needs_mfa(req.route);
        if auth.settings.oidc.api_audience.is_some() {
            if let Some(token) = req.credentials.bearer {
                return self.authenticate_bearer(req, auth, token, need_mfa).await;
            }
        }
        let presented = req.credentials.session;
        // A browser that had a session and lost it (timeout, logout) must authenticate
        // at the provider again, not be signed back in silently by the provider's session.
        let reauth = presented.is_some().then_some(Duration::ZERO);
        let sign_in = |principal: Option<Principal>, step_up: bool, reauth: Option<Duration>| {
            Denial::SignIn(Box::new(SignIn { principal, grant: None, need_mfa, step_up, reauth }))
        };
        if let Some(id) = presented.and_then(SessionId::parse) {
            let hash = id.hash();
            match auth.store.load_by_hash(&hash).await {
                Err(crate::session::SessionError::Corrupt) => {
                    tracing::warn!("unreadable session record; signing in again")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable; refusing protected request");
                    return Err(self.deny(req, Denial::SessionStoreUnavailable, None, None));
                }
                // A database token is a credential for its database only: presented as a
                // session cookie it is no session (the person signs in).
                Ok(Lookup::Active(s)) if s.db.is_some() => {}
                Ok(Lookup::Active(s))
                    if s.sealed && s.breakglass.as_ref().is_none_or(|g| g.expires <= crate::session::now_secs()) =>
                {
                    // A sealed link's session exists for its grant only: it ends with it.
                    let _ = auth.store.end_by_hash_for(&hash, None, crate::session::EndReason::Expired).await;
                    if let Some(g) = &s.breakglass {
                        let mut ev = req.meta.event(Kind::BreakglassEnded);
                        ev.actor = Some(actor_of(&s));
                        ev.session = Some(hash.clone());
                        self.grant_ended(ev, g, super::breakglass::GrantEnd::Expired);
                    }
                }
                Ok(Lookup::Active(mut s)) => {
                    if !self.revalidate(req, auth, &hash, &mut s).await {
                        return Err(sign_in(None, false, Some(Duration::ZERO)));
                    }
                    let mfa = auth.settings.oidc.mfa.satisfied(&s.amr, s.acr.as_deref());
                    let p = Principal { credential: Credential::Session { hash }, user: s, mfa };
                    if need_mfa && !mfa {
                        return Err(sign_in(Some(p), true, Some(auth.step_up_max_age())));
                    }
                    return Ok(p);
                }
                Ok(Lookup::Missing) => {}
                Ok(Lookup::IdleTimeout(s)) => self.session_ended(req, Kind::SessionIdleTimeout, &s, hash),
                Ok(Lookup::Expired(s)) => self.session_ended(req, Kind::SessionExpired, &s, hash),
            }
        }
        Err(sign_in(None, false, reauth))
    }

    /// A database client's password: a database token minted for this database by
    /// `custos db login` (a session of its own), or an OIDC access token. Anything else,
    /// or none, is a sign-in the front end refuses and records.
    async fn authenticate_database(
        &self,
        req: &Request<'_>,
        auth: &Auth,
        db: &crate::config::Database,
        need_mfa: bool,
    ) -> Result<Principal, Denial> {
        let refused = || {
            Denial::SignIn(Box::new(SignIn { principal: None, grant: None, need_mfa, step_up: false, reauth: None }))
        };
        let Some(password) = req.credentials.password else { return Err(refused()) };
        if let Some(id) = SessionId::parse(password) {
            let hash = id.hash();
            match auth.store.load_by_hash(&hash).await {
                Err(crate::session::SessionError::Corrupt) => tracing::warn!("unreadable database token record"),
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable; refusing a database sign-in");
                    return Err(self.deny(req, Denial::SessionStoreUnavailable, None, None));
                }
                Ok(Lookup::Active(mut s)) if s.db.as_deref() == Some(db.name.as_str()) => {
                    if !self.revalidate(req, auth, &hash, &mut s).await {
                        return Err(refused());
                    }
                    let mfa = auth.settings.oidc.mfa.satisfied(&s.amr, s.acr.as_deref());
                    let p = Principal { credential: Credential::Session { hash }, user: s, mfa };
                    return self.claimed(req, p, need_mfa);
                }
                Ok(Lookup::IdleTimeout(s)) => self.session_ended(req, Kind::SessionIdleTimeout, &s, hash),
                Ok(Lookup::Expired(s)) => self.session_ended(req, Kind::SessionExpired, &s, hash),
                // Another database's token, a browser session's id, or none at all.
                Ok(_) => {}
            }
            return Err(refused());
        }
        if auth.settings.oidc.api_audience.is_some() {
            // The MFA rule is judged after the user name, in `claimed`.
            let p = self.authenticate_bearer(req, auth, password, false).await?;
            return self.claimed(req, p, need_mfa);
        }
        Err(refused())
    }

    /// The user name the client claimed must be the credential's subject; then the MFA
    /// rule.
    fn claimed(&self, req: &Request<'_>, p: Principal, need_mfa: bool) -> Result<Principal, Denial> {
        if req.claimed_user.is_some_and(|u| u != p.user.subject) {
            return Err(self.deny(req, Denial::UserMismatch, Some(&p), None));
        }
        if need_mfa && !p.mfa {
            return Err(self.deny(req, Denial::MfaRequired(Box::new(p)), None, None));
        }
        Ok(p)
    }

    /// The credential of something already decided, checked again: the session still
    /// live (its last use moved on, as a request's does), a bearer token not yet past its
    /// `exp`. Ended: a sign-in (the front end ends the connection) or, for a token, its
    /// refusal, recorded.
    pub(super) async fn recheck(&self, req: &Request<'_>, held: &Principal) -> Result<Principal, Denial> {
        let ended = || {
            Denial::SignIn(Box::new(SignIn {
                principal: None,
                grant: None,
                need_mfa: false,
                step_up: false,
                reauth: None,
            }))
        };
        match &held.credential {
            Credential::Bearer { expires, .. } => {
                if crate::session::now_secs() >= *expires {
                    return Err(self.deny(
                        req,
                        Denial::InvalidToken(crate::audit::Code::BearerExpired),
                        Some(held),
                        None,
                    ));
                }
                Ok(held.clone())
            }
            Credential::Session { hash } => {
                let Some(auth) = self.auth else { return Err(self.deny(req, Denial::Internal, Some(held), None)) };
                match auth.store.load_by_hash(hash).await {
                    Ok(Lookup::Active(s)) => {
                        Ok(Principal { credential: held.credential.clone(), user: s, mfa: held.mfa })
                    }
                    Ok(Lookup::IdleTimeout(s)) => {
                        self.session_ended(req, Kind::SessionIdleTimeout, &s, hash.clone());
                        Err(ended())
                    }
                    Ok(Lookup::Expired(s)) => {
                        self.session_ended(req, Kind::SessionExpired, &s, hash.clone());
                        Err(ended())
                    }
                    Ok(Lookup::Missing) | Err(crate::session::SessionError::Corrupt) => Err(ended()),
                    Err(e) => {
                        tracing::warn!(error = %e, "session store unavailable; refusing");
                        Err(self.deny(req, Denial::SessionStoreUnavailable, Some(held), None))
                    }
                }
            }
        }
    }

    /// `Authorization: Bearer`: an access token instead of a session.
    async fn authenticate_bearer(
        &self,
        req: &Request<'_>,
        auth: &Auth,
        token: &str,
        need_mfa: bool,
    ) -> Result<Principal, Denial> {
        match auth.identity.verify_bearer(token).await {
            Ok(c) => {
                let mfa = auth.settings.oidc.mfa.satisfied(&c.amr, c.acr.as_deref());
                let credential = Credential::Bearer { hash: c.token_hash.clone(), expires: c.exp };
                let p = Principal { credential, user: c.session.clone(), mfa };
                if need_mfa && !mfa {
                    return Err(self.deny(req, Denial::MfaRequired(Box::new(p)), None, None));
                }
                Ok(p)
            }
            Err(BearerError::Invalid(reason)) => {
                tracing::info!(reason = reason.as_str(), "bearer token refused");
                Err(self.deny(req, Denial::InvalidToken(reason), None, None))
            }
            Err(BearerError::IdpUnavailable) => Err(self.deny(req, Denial::IdpUnavailable, None, None)),
        }
    }

    /// Every `revalidate_secs`, one gateway asks the provider (refresh-token grant) whether
    /// the session still stands. False: the provider refused it (the user is disabled or
    /// signed out there) and the session is ended. The provider being unreachable leaves
    /// the session alone: fail closed is for Redis, not for an IdP outage.
    /// `s` is shared with the session cache: copied only when a check changes it.
    async fn revalidate(&self, req: &Request<'_>, auth: &Auth, hash: &str, s: &mut Arc<Session>) -> bool {
        let Some(every) = auth.settings.session.revalidate else { return true };
        let now = crate::session::now_secs();
        let last = if s.validated == 0 { s.created } else { s.validated };
        if now < last + every.as_secs() {
            return true;
        }
        let lock = format!("rv:{hash}");
        let timeout = auth.settings.oidc.timeout.as_secs() + 5;
        if !auth.store.lock(&lock, Duration::from_secs(timeout)).await.unwrap_or(false) {
            return true; // Another request or gateway is asking right now.
        }
        // Read again under the lock: another gateway may have just done it.
        let state = match auth.store.revalidation(hash).await {
            Ok(state) => state,
            Err(_) => {
                auth.store.unlock(&lock).await;
                return true; // Redis trouble is judged on the next load.
            }
        };
        let Some(mut state) = state.filter(|st| st.validated + every.as_secs() <= now) else {
            // Done by someone else (or nothing to check with): next due from there.
            Arc::make_mut(s).validated = now;
            let _ = auth.store.save(hash, s).await;
            auth.store.unlock(&lock).await;
            return true;
        };
        let outcome = auth.identity.revalidate(&state.refresh_token).await;
        let keep = match outcome {
            crate::identity::Revalidation::Valid(rotated) => {
                state.validated = now;
                if let Some(r) = rotated {
                    state.refresh_token = r;
                }
                if let Err(e) = auth.store.set_revalidation(hash, &state).await {
                    tracing::warn!(error = %e, "could not record a session's re-validation");
                }
                Arc::make_mut(s).validated = now;
                true
            }
            crate::identity::Revalidation::Unavailable | crate::identity::Revalidation::Misconfigured(_) => {
                if let crate::identity::Revalidation::Misconfigured(e) = &outcome {
                    tracing::error!(error = %e, "the identity provider refused this client's refresh-token grant: check oidc.client_id/client_secret and the client's grants");
                } else {
                    tracing::warn!("identity provider unreachable; session kept until it can be re-validated");
                }
                // Try again in at most 30 s, not on every request.
                Arc::make_mut(s).validated = now.saturating_sub(every.as_secs()) + every.as_secs().min(30);
                true
            }
            crate::identity::Revalidation::Refused => false,
        };
        if keep {
            let _ = auth.store.save(hash, s).await;
            auth.store.unlock(&lock).await;
            return true;
        }
        let _ = auth.store.end_by_hash_for(hash, None, crate::session::EndReason::RevokedByIdp).await;
        auth.store.unlock(&lock).await;
        if let Some(audit) = self.audit {
            let mut ev = Self::auth_event(req, Kind::SessionRevokedByIdp);
            ev.actor = Some(actor_of(s));
            ev.session = Some(hash.to_string());
            audit.append(ev);
        }
        tracing::info!("the identity provider refused a session; ended");
        false
    }

    /// Records the end of a session found timed out (it is already deleted).
    fn session_ended(&self, req: &Request<'_>, kind: Kind, s: &Session, hash: String) {
        if let Some(audit) = self.audit {
            let mut ev = Self::auth_event(req, kind);
            ev.actor = Some(actor_of(s));
            ev.session = Some(hash);
            audit.append(ev);
        }
        // A grant still on the session ends with it (its end was not recorded yet).
        if let Some(g) = &s.breakglass {
            use super::breakglass::GrantEnd;
            let why =
                if kind == Kind::SessionIdleTimeout { GrantEnd::SessionIdleTimeout } else { GrantEnd::SessionExpired };
            self.grant_ended(req.meta.event(Kind::BreakglassEnded), g, why);
        }
    }
}
