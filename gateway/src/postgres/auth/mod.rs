//! The client halves of the upstream's authentication methods: Custos proves itself to
//! the database with credentials the engineer never sees. SCRAM-SHA-256 under `scram/`
//! (where a server half can join it), the legacy MD5 answer in `md5.rs`. Cleartext needs
//! no code of its own: it is the password in a PasswordMessage, sent only inside TLS.

pub mod md5;
pub mod scram;
