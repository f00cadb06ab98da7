//! Secrets are read from a file or an environment variable named in the config, never
//! required inline, and their `Debug` prints nothing.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from, as written in the config:
/// `key = { file = "path" }` or `key = { env = "VARIABLE" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// A file path, relative to the config file's folder.
    File(PathBuf),
    /// The name of an environment variable.
    Env(String),
}

/// Bytes that must not be logged.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Secret {
    fn from(v: Vec<u8>) -> Secret {
        Secret(v)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl SecretRef {
    /// Reads the secret. The error says where it was looked for, never what it holds.
    pub fn load(&self, base: &Path) -> Result<Secret, String> {
        match self {
            SecretRef::File(p) => {
                let path = base.join(p);
                std::fs::read(&path).map(Secret).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
            }
            SecretRef::Env(var) => std::env::var(var)
                .map(|v| Secret(v.into_bytes()))
                .map_err(|_| format!("environment variable {var} is not set")),
        }
    }
}
