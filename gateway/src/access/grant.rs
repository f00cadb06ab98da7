//! The grant lookup: the emergency (break-glass) grant a request runs under, and the
//! record of a grant's end. Approvals would be looked up here too.

use super::breakglass::{Grant, GrantEnd};
use super::{Access, Principal, Request};
use crate::audit::{Event, Kind};
use crate::session::now_secs;

impl Access<'_> {
    /// The grant a request runs under: the session's, for this route, while it lasts. An
    /// ended one is taken off the session and its end audited (once).
    pub(super) async fn active_grant(&self, req: &Request<'_>, p: &Principal) -> Option<Grant> {
        let (Some(route), Some(auth)) = (req.route, self.auth) else { return None };
        let user = &p.user;
        let g = user.breakglass.as_ref()?;
        if g.expires > now_secs() {
            // Only what was declared: another record on the route is decided as usual.
            let path = req.path?;
            return g.covers(&route.name, path.as_str()).then(|| g.clone());
        }
        if let Some(hash) = p.session_hash() {
            if user.sealed {
                // A sealed link's session ends with its grant (checked again here: the
                // grant may have run out since the session was read).
                let _ = auth.store.end_by_hash(hash, None).await;
            } else {
                let mut s: crate::session::Session = (**user).clone();
                s.breakglass = None;
                let _ = auth.store.save(hash, &s).await;
            }
            let mut ev = req.meta.event(Kind::BreakglassEnded);
            super::record::stamp(&mut ev, Some(p), None);
            self.grant_ended(ev, g, GrantEnd::Expired);
        }
        None
    }

    /// Records the end of `g` for `why` on `ev` (a `breakglass.ended` with the request's
    /// metadata and who asked), unless another end of it was recorded first (on any
    /// gateway).
    pub fn grant_ended(&self, mut ev: Event, g: &Grant, why: GrantEnd) {
        ev.kind = Kind::BreakglassEnded;
        ev.upstream = None;
        ev.breakglass = Some(true);
        ev.route = Some(g.route.clone());
        ev.grant = Some(g.id.clone());
        ev.scope = Some(g.scope_name());
        super::breakglass::record_end(self.auth.map(|a| a.store.clone()), self.audit.cloned(), ev, why);
    }
}
