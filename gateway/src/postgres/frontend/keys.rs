//! Cancel keys. A client gets Custos's own BackendKeyData, never the upstream's: a random
//! process id and secret from the CSPRNG (4 secret bytes in protocol 3.0, 32 in 3.2).
//! A CancelRequest whose key matches is sent on to the upstream with the upstream's own
//! key; any other is dropped. Protocol 3.0's secret is only 32 bits, so cancel requests
//! are limited per client address (`postgres.cancels_per_minute`).

use super::upstream::CancelHandle;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A key handed to a client.
pub struct Key {
    pub pid: i32,
    pub secret: Vec<u8>,
}

/// The live connections' keys.
#[derive(Default)]
pub struct Keys {
    map: Mutex<HashMap<i32, (Vec<u8>, Arc<CancelHandle>)>>,
}

impl Keys {
    /// A fresh key for a connection whose running statement `handle` cancels.
    pub fn issue(&self, minor: u16, handle: Arc<CancelHandle>) -> Key {
        let rng = SystemRandom::new();
        let mut secret = vec![0u8; if minor >= 2 { 32 } else { 4 }];
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let mut pid = [0u8; 4];
            if rng.fill(&mut pid).is_err() || rng.fill(&mut secret).is_err() {
                // No randomness: a key nobody can guess is impossible, so none works.
                return Key { pid: 0, secret };
            }
            let pid = i32::from_be_bytes(pid) & i32::MAX;
            if pid != 0 && !map.contains_key(&pid) {
                map.insert(pid, (secret.clone(), handle));
                return Key { pid, secret };
            }
        }
    }

    pub fn remove(&self, pid: i32) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }

    /// The connection a key is for, when the secret matches.
    pub fn find(&self, pid: i32, secret: &[u8]) -> Option<Arc<CancelHandle>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (s, h) = map.get(&pid)?;
        (s.len() == secret.len() && constant_time_eq::constant_time_eq(s, secret)).then(|| h.clone())
    }
}
