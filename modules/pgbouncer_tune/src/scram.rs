//! SCRAM-SHA-256 verifiers for PgBouncer's auth file, computed on the target from the given
//! passwords: the password itself is never written anywhere.
//!
//! New verifiers come from `postgres_protocol::password::scram_sha_256` (random 16-byte salt,
//! 4096 iterations, the format PostgreSQL stores in `pg_authid`). For idempotence, an existing
//! verifier that the password still matches is kept as it is: [`matches`] recomputes the
//! stored key with the verifier's own salt and iteration count (RFC 5802/7677).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// A new verifier for `password`.
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Whether `text` has the shape `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
pub fn is_verifier(text: &str) -> bool {
    parse(text).is_some()
}

struct Parsed {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn parse(text: &str) -> Option<Parsed> {
    let rest = text.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iter, salt) = params.split_once(':')?;
    let (stored, server) = keys.split_once(':')?;
    let iterations: u32 = iter.parse().ok().filter(|i| *i > 0 && *i <= 10_000_000)?;
    let parsed = Parsed {
        iterations,
        salt: STANDARD.decode(salt).ok()?,
        stored_key: STANDARD.decode(stored).ok()?,
        server_key: STANDARD.decode(server).ok()?,
    };
    (parsed.stored_key.len() == 32 && parsed.server_key.len() == 32 && !parsed.salt.is_empty())
        .then_some(parsed)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of every length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).expect("a 32-byte key")
    });
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one block: SCRAM's `Hi()`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// SASLprep as PostgreSQL applies it: skipped for text it cannot prepare.
fn prepare(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// Whether `password` is the one `verifier` was computed from.
pub fn matches(password: &str, verifier: &str) -> bool {
    let Some(p) = parse(verifier) else {
        return false;
    };
    let salted = hi(&prepare(password), &p.salt, p.iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored: [u8; 32] = Sha256::digest(client_key).into();
    let server = hmac(&salted, b"Server Key");
    stored.as_slice() == p.stored_key.as_slice() && server.as_slice() == p.server_key.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_verifiers_match_their_password_only() {
        let v = verifier("correct horse");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(is_verifier(&v));
        assert!(matches("correct horse", &v));
        assert!(!matches("correct horse ", &v));
        assert_ne!(verifier("correct horse"), v, "a fresh salt every time");
    }

    #[test]
    fn malformed_verifiers_are_refused() {
        // Shape checks.
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:AA==$AA==:AA==",
            "SCRAM-SHA-256$4096:AA==$AA==:AA==",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==",
        ] {
            assert!(!is_verifier(bad), "{bad}");
            assert!(!matches("pencil", bad));
        }
    }
}
