//! Reviews: an auditor's verdict on an emergency access, once per grant, never by the
//! person who used or issued it.

use super::store::Store;
use super::{person, plain_text};
use crate::session::now_secs;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An auditor's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Justified,
    Unjustified,
}

impl Verdict {
    /// The verdict a form or the admin API names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "justified" => Some(Verdict::Justified),
            "unjustified" => Some(Verdict::Unjustified),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Justified => "justified",
            Verdict::Unjustified => "unjustified",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub verdict: Verdict,
    pub reviewer: String,
    pub note: String,
    pub at: u64,
}

/// Why a review was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewError {
    BadVerdict,
    BadNote,
    NoSuchGrant,
    /// The reviewer used or issued this emergency access.
    OwnUse,
    AlreadyReviewed,
    Unavailable,
}

impl std::fmt::Display for ReviewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ReviewError {}

impl ReviewError {
    pub fn status(&self) -> u16 {
        match self {
            ReviewError::BadVerdict | ReviewError::BadNote => 400,
            ReviewError::NoSuchGrant => 404,
            ReviewError::OwnUse => 403,
            ReviewError::AlreadyReviewed => 409,
            ReviewError::Unavailable => 503,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            ReviewError::BadVerdict => "the verdict is justified or unjustified",
            ReviewError::BadNote => "a note of 1 to 4000 characters, without control characters, is needed",
            ReviewError::NoSuchGrant => "no such grant",
            ReviewError::OwnUse => "nobody may review an emergency access they used or issued",
            ReviewError::AlreadyReviewed => "already reviewed",
            ReviewError::Unavailable => "the session store is unreachable",
        }
    }
}

/// The longest review note, in characters.
pub const NOTE_MAX: usize = 4000;

/// Records `reviewer`'s verdict on grant `id` (once; never on their own use).
pub async fn review(
    store: &Store<'_>,
    id: &str,
    reviewer: &str,
    verdict: &str,
    note: &str,
) -> Result<super::Record, ReviewError> {
    let Some(verdict) = Verdict::parse(verdict) else { return Err(ReviewError::BadVerdict) };
    let Some(note) = plain_text(note, NOTE_MAX) else { return Err(ReviewError::BadNote) };
    // One reviewer at a time per grant: the second finds it reviewed.
    let lock = format!("bg-review:{id}");
    if !store.0.lock(&lock, Duration::from_secs(10)).await.map_err(|_| ReviewError::Unavailable)? {
        return Err(ReviewError::AlreadyReviewed);
    }
    let result = async {
        let mut r = store.record(id).await.map_err(|_| ReviewError::Unavailable)?.ok_or(ReviewError::NoSuchGrant)?;
        let same = |a: &str| person(a) == person(reviewer);
        if same(&r.subject) || r.issued_by.as_deref().is_some_and(same) {
            return Err(ReviewError::OwnUse);
        }
        if r.review.is_some() {
            return Err(ReviewError::AlreadyReviewed);
        }
        r.review = Some(Review { verdict, reviewer: reviewer.to_string(), note, at: now_secs() });
        store.save_record(&r).await.map_err(|_| ReviewError::Unavailable)?;
        Ok(r)
    }
    .await;
    store.0.unlock(&lock).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_and_write_as_before() {
        for (v, s) in [(Verdict::Justified, "justified"), (Verdict::Unjustified, "unjustified")] {
            assert_eq!(Verdict::parse(s), Some(v));
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
            assert_eq!(v.as_str(), s);
        }
        assert_eq!(Verdict::parse("Justified"), None);
        for e in [ReviewError::BadVerdict, ReviewError::OwnUse, ReviewError::Unavailable] {
            assert_eq!(e.to_string(), e.message());
        }
    }
}
