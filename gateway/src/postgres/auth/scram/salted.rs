//! The salted password of SCRAM (PBKDF2-HMAC-SHA-256), remembered: a server answers the
//! same salt and iteration count for a user until the password changes, and deriving it
//! is the exchange's one costly step (4096 HMAC rounds by PostgreSQL's default), so each
//! upstream connection after the first skips it. The cache is read without locking, holds
//! at most [`CAPACITY`] entries (oldest out first) and is keyed by a digest of all three
//! inputs; it holds nothing the gateway's memory does not already hold (the password).

use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use ring::{digest, pbkdf2};

/// Entries kept: one per upstream user and password in use, with room to spare.
pub const CAPACITY: usize = 64;

#[derive(Clone)]
struct Entry {
    id: [u8; 32],
    salted: [u8; 32],
}

static CACHE: LazyLock<ArcSwap<Vec<Entry>>> = LazyLock::new(|| ArcSwap::from_pointee(Vec::new()));

/// `Hi(password, salt, iterations)` of RFC 5802, derived once per distinct input.
pub(super) fn salted_password(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> [u8; 32] {
    let id = id_of(password, salt, iterations);
    if let Some(e) = CACHE.load().iter().find(|e| e.id == id) {
        return e.salted;
    }
    let mut salted = [0u8; 32];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password, &mut salted);
    CACHE.rcu(|old: &Arc<Vec<Entry>>| {
        let mut entries = Vec::clone(old);
        if !entries.iter().any(|e| e.id == id) {
            if entries.len() >= CAPACITY {
                entries.remove(0);
            }
            entries.push(Entry { id, salted });
        }
        entries
    });
    salted
}

/// A digest of the three inputs, each length-prefixed so no two inputs share an encoding.
fn id_of(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [password, salt] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&iterations.get().to_be_bytes());
    let mut id = [0u8; 32];
    id.copy_from_slice(ctx.finish().as_ref());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(id: [u8; 32]) -> bool {
        CACHE.load().iter().any(|e| e.id == id)
    }

    #[test]
    fn derives_once_per_input_and_stays_bounded() {
        let i = NonZeroU32::new(4096).unwrap();
        let mut direct = [0u8; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, i, b"salt-a", b"pw", &mut direct);
        assert_eq!(salted_password(b"pw", b"salt-a", i), direct);
        assert!(cached(id_of(b"pw", b"salt-a", i)));
        assert_eq!(salted_password(b"pw", b"salt-a", i), direct, "from the cache");
        // Any input changed is another entry, never the cached key.
        assert_ne!(salted_password(b"pw2", b"salt-a", i), direct);
        assert_ne!(salted_password(b"pw", b"salt-b", i), direct);
        assert_ne!(id_of(b"pwsalt", b"", i), id_of(b"pw", b"salt", i));
        let few = NonZeroU32::new(1).unwrap();
        for n in 0..CAPACITY as u32 + 3 {
            salted_password(b"churn", &n.to_be_bytes(), few);
        }
        assert!(CACHE.load().len() <= CAPACITY);
    }
}
