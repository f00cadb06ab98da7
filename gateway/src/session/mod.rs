//! Sessions in Redis. The browser holds an opaque 256-bit random id ([`id`]); Redis
//! holds the record ([`record`]) under a hash of it (`<prefix>:s:<hex sha256(id)>`), so
//! a dump of Redis holds no usable cookie. Idle timeout (automatic logoff) and absolute
//! lifetime are enforced here, on the server's clock, at every load; the Redis TTL
//! follows the remaining life (plus [`ENDED_GRACE_SECS`], so the end can be told apart
//! from a logout and audited). `last_seen` is written at most once per
//! `touch_interval`, so idle expiry is accurate to within that interval ([`store`]).
//! Never a connection per request: one multiplexed connection per worker thread
//! ([`kv`], the key-value layer break-glass shares), and most requests need none: parsed
//! records are cached, bounded, while Redis pushes every change of a session key to
//! this gateway ([`cache`], [`tracking`]); a lost push connection turns the cache off. Sign-ins in progress are kept here
//! too, under a hash of their `state`, single-use ([`login`]). Every end of a session
//! is announced on the session-end channel ([`ended`]), so that what a session holds
//! open closes with it on every gateway. A session may carry an emergency grant
//! ([`grant`]: the record only). A database token (`custos db login`) is a session of
//! its own, with its database's timeouts in its record ([`dbtoken`]).

pub mod cache;
pub mod dbtoken;
pub mod ended;
pub mod grant;
pub mod id;
pub mod kv;
pub mod login;
pub mod record;
pub mod store;
pub mod tracking;

pub use ended::{EndReason, Hold};
pub use grant::Grant;
pub use id::SessionId;
pub use kv::{Kv, Space, StoreConfig};
pub use login::PendingLogin;
pub use record::{judge, Lifetime, Lookup, RefreshToken, Revalidation, Session, Timeouts, ENDED_GRACE_SECS};
pub use store::SessionStore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    #[error("the system random source failed")]
    Random,
    #[error("a stored session record is unreadable")]
    Corrupt,
}

pub use crate::config::clock::now_secs;
pub use crate::config::hash::{hex_lower, sha256_hex};
