//! Every way a break-glass page refuses, with its status, its audit reason and the
//! sentence the person reads, in one table.

use crate::access::breakglass::ReviewError;
use crate::audit::Code;
use std::borrow::Cow;

/// A break-glass step refused (recorded as `breakglass.denied`).
#[derive(Debug, PartialEq, Eq)]
pub enum BreakglassDenial {
    FormTooLarge,
    NoRoute,
    /// A sealed link whose route is no longer configured.
    LinkRouteGone,
    /// A sealed link's session may not declare another emergency.
    SealedDeclare,
    /// A sealed link's session may not review emergencies.
    SealedReview,
    Policy,
    /// The declaration form's token is missing or not this session's.
    DeclareFormExpired,
    /// The declaration form came from another origin.
    OtherSite,
    /// The review form's token or origin is not the gateway's.
    ReviewFormExpired,
    /// No justification, or one over `max` characters.
    Justification {
        max: usize,
    },
    CaseRef,
    DailyLimit,
    /// The wrong code that spent the link.
    CodeTriesSpent,
    WrongCode,
    SpentByCodes,
    LinkExpired,
    LinkUnknown,
    NotAuditor,
    Review(ReviewError),
}

impl BreakglassDenial {
    /// The table: status, audit reason, message.
    pub fn parts(&self) -> (u16, Code, Cow<'static, str>) {
        use BreakglassDenial as D;
        let (status, reason, msg) = match self {
            D::FormTooLarge => (413, Code::FormTooLarge, "The form is too large."),
            D::NoRoute => (404, Code::NoRoute, "There is no such route."),
            D::LinkRouteGone => (404, Code::NoRoute, "The link's route no longer exists."),
            D::SealedDeclare => (403, Code::SealedSession, "A sealed emergency session cannot declare another emergency."),
            D::SealedReview => (403, Code::SealedSession, "A sealed emergency session cannot review emergency access."),
            D::Policy => (403, Code::Policy, "Your account may not declare an emergency on this route."),
            D::DeclareFormExpired => (403, Code::Csrf, "The form has expired; open the emergency link again."),
            D::OtherSite => (403, Code::Csrf, "The form was sent from another site."),
            D::ReviewFormExpired => (403, Code::Csrf, "The form has expired; open the review page again."),
            D::Justification { max } => {
                let msg = format!("Say why you need emergency access (1 to {max} characters).");
                return (400, Code::Justification, Cow::Owned(msg));
            }
            D::CaseRef => (400, Code::CaseRef, "A case reference is at most 64 letters, digits, spaces and . _ : / # -"),
            D::DailyLimit => {
                (429, Code::DailyLimit, "You have declared the most emergencies allowed today. Call the security team.")
            }
            D::CodeTriesSpent => (
                403,
                Code::TotpTries,
                "Too many wrong codes: this link is spent. The security team has been alerted.",
            ),
            D::WrongCode => (403, Code::Totp, "The code is not right."),
            D::SpentByCodes => (
                410,
                Code::LinkSpentByFailedCodes,
                "This emergency link was spent by failed codes: too many wrong authenticator codes were entered with it. The security team has been alerted. Ask the on-call administrator for a new one.",
            ),
            D::LinkExpired => {
                (410, Code::LinkExpired, "This emergency link has expired. Ask the on-call administrator for a new one.")
            }
            D::LinkUnknown => (404, Code::LinkUnknown, "This is not a valid emergency link."),
            D::NotAuditor => (403, Code::NotAuditor, "Only auditors review emergency access."),
            D::Review(e) => {
                let reason = if *e == ReviewError::OwnUse { Code::SelfReview } else { Code::ReviewRefused };
                (e.status(), reason, e.message())
            }
        };
        (status, reason, Cow::Borrowed(msg))
    }

    pub fn status(&self) -> u16 {
        self.parts().0
    }

    pub fn reason(&self) -> Code {
        self.parts().1
    }
}

#[cfg(test)]
mod tests {
    use super::BreakglassDenial as D;
    use crate::access::breakglass::ReviewError;
    use crate::audit::Code;

    #[test]
    fn table() {
        let (status, reason, msg) = D::Justification { max: 2000 }.parts();
        assert_eq!((status, reason), (400, Code::Justification));
        assert_eq!(msg, "Say why you need emergency access (1 to 2000 characters).");
        assert_eq!((D::OtherSite.status(), D::OtherSite.reason()), (403, Code::Csrf));
        assert_eq!((D::LinkRouteGone.status(), D::LinkRouteGone.reason()), (404, Code::NoRoute));
        assert_eq!(D::Review(ReviewError::OwnUse).reason(), Code::SelfReview);
        assert_eq!(D::Review(ReviewError::OwnUse).status(), ReviewError::OwnUse.status());
        assert_eq!(D::Review(ReviewError::BadNote).reason(), Code::ReviewRefused);
    }
}
