//! The MFA rule: which `amr` (RFC 8176) and `acr` values count as multi-factor, and
//! what a step-up asks the provider for.

/// RFC 8176 methods by factor class: something you know, have, are.
const KNOW: &[&str] = &["pwd", "pin", "kba"];
const HAVE: &[&str] = &["otp", "hwk", "swk", "sc", "sms", "tel"];
const ARE: &[&str] = &["face", "fpt", "iris", "retina", "vbm", "bio"];

pub use crate::config::oidc::MfaRule;

impl MfaRule {
    pub fn satisfied(&self, amr: &[String], acr: Option<&str>) -> bool {
        if amr.iter().any(|m| self.amr.contains(m)) {
            return true;
        }
        if acr.is_some_and(|a| self.acr.iter().any(|x| x == a)) {
            return true;
        }
        if self.amr_two_factors {
            let has = |class: &[&str]| amr.iter().any(|m| class.contains(&m.as_str()));
            let classes = [has(KNOW), has(HAVE), has(ARE)].into_iter().filter(|&b| b).count();
            return classes >= 2;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> MfaRule {
        MfaRule {
            amr: vec!["mfa".into(), "mca".into()],
            amr_two_factors: true,
            acr: vec!["urn:custos:mfa".into()],
            step_up_acr_values: vec![],
            step_up_max_age: None,
        }
    }

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rfc8176_values() {
        let r = rule();
        assert!(r.satisfied(&v(&["mfa"]), None));
        assert!(r.satisfied(&v(&["pwd", "otp"]), None));
        assert!(r.satisfied(&v(&["hwk", "fpt"]), None));
        assert!(r.satisfied(&v(&["pwd"]), Some("urn:custos:mfa")));
        assert!(!r.satisfied(&v(&["pwd"]), None));
        assert!(!r.satisfied(&v(&["pwd", "pin", "kba"]), None), "three things you know are one factor");
        assert!(!r.satisfied(&v(&["otp", "sms"]), None));
        assert!(!r.satisfied(&[], Some("urn:custos:pwd")));
        let strict = MfaRule { amr_two_factors: false, ..rule() };
        assert!(!strict.satisfied(&v(&["pwd", "otp"]), None));
    }
}
