//! Access: what decides whether a request goes on, whatever protocol it came in by.
//! Emergency grants ([`breakglass`]) live here, above the session record that carries
//! them.

pub mod breakglass;
