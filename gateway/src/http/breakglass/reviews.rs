//! `/.custos/breakglass/reviews`: the review queue for auditors (signed in with MFA,
//! and the policy allows them `custos:review` on `custos:/breakglass/reviews`). GET lists
//! every kept emergency with its justification; POST records a verdict.

use super::page;
use super::{BreakglassDenial as D, REVIEWS_OBJECT, REVIEWS_PATH};
use crate::access::breakglass::{self as bg, Store};
use crate::audit::Kind;
use crate::http::endpoints::{Denial, Reply};
use crate::http::form;
use crate::http::respond::Refusal;
use crate::http::{cookies, Gateway, RequestCtx};
use crate::session::now_secs;
use pingora::proxy::Session;

impl Gateway {
    pub(in crate::http) async fn breakglass_reviews_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let (Some(settings), Some(auth), Some(policy)) =
            (self.breakglass.clone(), self.auth.clone(), self.policy.clone())
        else {
            return Err(Denial::Refused(Refusal::NoRoute));
        };
        self.signed_in_with_mfa(session, ctx, &auth).await?;
        let Some(user) = ctx.user().cloned() else { return Err(Denial::Refused(Refusal::Internal)) };
        // A sealed link's session is for its emergency only: it neither reads the
        // justifications nor judges them, whatever roles its user holds.
        if user.sealed {
            return Err(D::SealedReview.into());
        }
        let may = policy
            .decide(&crate::policy::Request {
                sub: &user.subject,
                groups: &user.groups,
                dom: &settings.review_domain,
                obj: REVIEWS_OBJECT,
                act: crate::policy::actions::REVIEW,
                mfa: true,
                breakglass: false,
                client: "",
                hour: (now_secs() / 3600 % 24) as i64,
                route: "",
            })
            .allow;
        if !may {
            return Err(D::NotAuditor.into());
        }
        let cookie = cookies::get(session.req_header(), &auth.settings.session.cookie_name).unwrap_or("").to_string();
        let csrf = bg::csrf_token(&cookie);
        let store = Store(&auth.store);
        if session.req_header().method == http::Method::POST {
            let f = form::read(session).await.map_err(|_| D::FormTooLarge)?;
            form::check_csrf(session.req_header(), &f, &cookie, &csrf, &auth.settings.oidc.origin)
                .map_err(|_| D::ReviewFormExpired)?;
            let id = f.get("id").map(String::as_str).unwrap_or("");
            let verdict = f.get("verdict").map(String::as_str).unwrap_or("");
            let note = f.get("note").map(String::as_str).unwrap_or("");
            return match bg::review(&store, id, &user.subject, verdict, note).await {
                Ok(r) => {
                    if let Some(a) = &self.audit {
                        let mut ev = self.bg_event(session, ctx, Kind::BreakglassReviewed);
                        ev.grant = Some(r.id.clone());
                        ev.target = Some(r.subject.clone());
                        ev.route = Some(r.route.clone());
                        ev.reason = Some(crate::audit::Reason::named(verdict));
                        a.append(ev);
                    }
                    Ok(Reply::see_other(REVIEWS_PATH))
                }
                Err(e) => Err(D::Review(e).into()),
            };
        }
        let Ok(mut list) = store.records().await else {
            return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
        };
        if let Some(a) = &self.audit {
            a.append(self.bg_event(session, ctx, Kind::BreakglassReviewsRead));
        }
        list.reverse();
        Ok(page::reviews(&list, &csrf))
    }
}
