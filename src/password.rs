//! Password hashes as RabbitMQ stores them, so that users exported from RabbitMQ
//! (`password_hash` + `hashing_algorithm` in a definitions file) log in to Warren with
//! their RabbitMQ passwords.
//!
//! RabbitMQ's `rabbit_password_hashing_sha256` (its default since 3.6), `_sha512` and `_md5`
//! all store `base64(salt ++ H(salt ++ password))` with a 4-byte random salt. The digest is
//! compared in constant time (`subtle`), so the time an answer takes tells nothing about how
//! much of a guess was right.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

const SALT_LEN: usize = 4;

/// One of RabbitMQ's password hashing modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
    Md5,
}

impl Algorithm {
    /// The module name RabbitMQ writes in definitions (`hashing_algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "rabbit_password_hashing_sha256",
            Algorithm::Sha512 => "rabbit_password_hashing_sha512",
            Algorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Md5]
            .into_iter()
            .find(|a| a.name() == name)
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            Algorithm::Sha256 => run::<Sha256>(salt, password),
            Algorithm::Sha512 => run::<Sha512>(salt, password),
            Algorithm::Md5 => run::<Md5>(salt, password),
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
            Algorithm::Md5 => 16,
        }
    }
}

/// Why a stored hash was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("unknown password hashing algorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("password_hash is not base64")]
    NotBase64,
    #[error("password_hash is {got} bytes, {algorithm} makes {want} (4 of salt and the digest)")]
    WrongLength {
        algorithm: &'static str,
        got: usize,
        want: usize,
    },
}

/// A salted password hash. An empty one (RabbitMQ's user without a password) matches no
/// password: such a user cannot log in with PLAIN or AMQPLAIN.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: Algorithm,
    /// `salt ++ digest`, or empty.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash itself: logs are not where it belongs.
        write!(f, "PasswordHash({})", self.algorithm.name())
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(algorithm: Algorithm, password: &str) -> PasswordHash {
        let salt: [u8; SALT_LEN] = rand::random();
        Self::with_salt(algorithm, salt, password)
    }

    fn with_salt(algorithm: Algorithm, salt: [u8; SALT_LEN], password: &str) -> PasswordHash {
        let mut bytes = salt.to_vec();
        bytes.extend(algorithm.digest(&salt, password.as_bytes()));
        PasswordHash { algorithm, bytes }
    }

    /// No password: matches nothing (RabbitMQ's user made without one).
    pub fn none() -> PasswordHash {
        PasswordHash {
            algorithm: Algorithm::Sha256,
            bytes: Vec::new(),
        }
    }

    /// A hash as RabbitMQ exports it: base64 `password_hash` (empty: no password) and the
    /// `hashing_algorithm` module name.
    pub fn parse(algorithm: &str, base64: &str) -> Result<PasswordHash, HashError> {
        let algorithm = Algorithm::from_name(algorithm)
            .ok_or_else(|| HashError::UnknownAlgorithm(algorithm.to_owned()))?;
        let bytes = STANDARD
            .decode(base64.as_bytes())
            .map_err(|_| HashError::NotBase64)?;
        let want = SALT_LEN + algorithm.digest_len();
        if !bytes.is_empty() && bytes.len() != want {
            return Err(HashError::WrongLength {
                algorithm: algorithm.name(),
                got: bytes.len(),
                want,
            });
        }
        Ok(PasswordHash { algorithm, bytes })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The base64 `password_hash` of a definitions export.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.bytes)
    }

    /// Whether `password` is the one hashed (constant time in the digest compared).
    pub fn verify(&self, password: &str) -> bool {
        let Some((salt, digest)) = self.bytes.split_at_checked(SALT_LEN) else {
            return false;
        };
        if digest.is_empty() {
            return false;
        }
        let got = self.algorithm.digest(salt, password.as_bytes());
        got.ct_eq(digest).into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        for a in [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Md5] {
            let h = PasswordHash::new(a, "s3cret");
            assert!(h.verify("s3cret"));
            assert!(!h.verify("s3cres"));
            assert!(!h.verify(""));
            let again = PasswordHash::parse(a.name(), &h.to_base64()).unwrap();
            assert_eq!(again, h);
            assert!(again.verify("s3cret"));
        }
    }

    /// The layout RabbitMQ documents (salt, then SHA-256 of salt ++ password), built by hand.
    #[test]
    fn the_layout_is_salt_then_digest_of_salt_and_password() {
        let salt = [0x90, 0x8D, 0xC6, 0x0A];
        let h = PasswordHash::with_salt(Algorithm::Sha256, salt, "test12");
        let mut want = salt.to_vec();
        want.extend(
            Sha256::new()
                .chain_update(salt)
                .chain_update(b"test12")
                .finalize(),
        );
        assert_eq!(h.to_base64(), STANDARD.encode(want));
    }

    /// Hashes RabbitMQ 3.10.8 made (`rabbitmqctl add_user alice test12`, then
    /// `export_definitions`; guest is its default user) verify with their passwords.
    #[test]
    fn hashes_exported_from_rabbitmq_verify() {
        let sha256 = "rabbit_password_hashing_sha256";
        let alice = PasswordHash::parse(sha256, "c+NvRXPDBttATdwsM9PktAScPwRSs2gni2ufuRuUwBqhAgkO");
        let alice = alice.unwrap();
        assert!(alice.verify("test12"));
        assert!(!alice.verify("test13"));
        let guest = PasswordHash::parse(sha256, "xSZrCF4EYYl8Qp0DzwMoZpWBfEgE2xkYc/0yn4p70QD4GqN0");
        assert!(guest.unwrap().verify("guest"));
    }

    #[test]
    fn no_password_matches_an_empty_hash_and_bad_hashes_are_refused() {
        let none = PasswordHash::parse("rabbit_password_hashing_sha256", "").unwrap();
        assert!(!none.verify(""));
        assert!(!none.verify("guest"));
        assert_eq!(
            PasswordHash::parse("rabbit_password_hashing_sha1", "").unwrap_err(),
            HashError::UnknownAlgorithm("rabbit_password_hashing_sha1".into())
        );
        assert_eq!(
            PasswordHash::parse("rabbit_password_hashing_sha256", "!!").unwrap_err(),
            HashError::NotBase64
        );
        assert!(matches!(
            PasswordHash::parse("rabbit_password_hashing_md5", "AAAA").unwrap_err(),
            HashError::WrongLength {
                got: 3,
                want: 20,
                ..
            }
        ));
    }
}
