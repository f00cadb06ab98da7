//! PostgreSQL's MD5 password answer: `"md5" + hex(md5(hex(md5(password ++ user)) ++ salt))`.
//! A weak, legacy method Custos speaks only because an upstream may still ask for it; the
//! salt keeps the answer from being replayed to another connection, nothing more.

use md5::{Digest, Md5};

/// The string to send in the PasswordMessage when the server asks for MD5 with `salt`.
pub fn answer(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex::encode(Md5::new().chain_update(password).chain_update(user).finalize());
    let outer = Md5::new().chain_update(inner).chain_update(salt).finalize();
    format!("md5{}", hex::encode(outer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres() {
        // pg_authid holds md5 + md5("password" ++ "postgres") = md532e12f215ba27cb750c9e093ce4b5127;
        // the answer to salt 01020304 salts that once more.
        assert_eq!(answer("postgres", "password", [1, 2, 3, 4]), "md598511ceaec347a656f032c7f2a16ef17");
        assert_ne!(answer("postgres", "password", [1, 2, 3, 5]), answer("postgres", "password", [1, 2, 3, 4]));
    }
}
