//! API key secrets: generated with the OS RNG, shown once, stored only as a SHA-256 hash.
//!
//! A secret has 256 bits of entropy, so a fast hash is the right tool (no password stretching
//! needed) and lets the lookup be an indexed equality on the hash.

use std::{fmt, str::FromStr};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of every project API key secret; lets scanners and humans recognise a leaked key.
pub const KEY_PREFIX: &str = "nrb_";
/// How many characters of the secret are stored in clear to identify a key in listings.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// A random URL-safe token: `prefix` + 43 characters of base62 (≥ 256 bits).
pub fn random_token(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut out = String::with_capacity(prefix.len() + 43);
    out.push_str(prefix);
    while out.len() < prefix.len() + 43 {
        // Rejection sampling keeps every character uniformly likely.
        let b = (rng.next_u32() & 0xff) as u8;
        if (b as usize) < ALPHABET.len() * 4 {
            out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
        }
    }
    out
}

pub fn generate_secret() -> String {
    random_token(KEY_PREFIX)
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// What a key may do. Stored as a comma-separated list of the lowercase names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, async_graphql::Enum)]
pub enum Scope {
    /// Send usage events and charges.
    Ingest,
    /// Read wallets, usage, ledger and invoices.
    Read,
    /// Manage pricing, subscriptions, credits and invoices.
    Billing,
    /// Manage the project's API keys and settings.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Billing, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Billing => "billing",
            Scope::Admin => "admin",
        }
    }

    /// Canonical stored form: sorted, deduplicated, comma-separated.
    pub fn join(scopes: &[Scope]) -> String {
        let mut s = scopes.to_vec();
        s.sort();
        s.dedup();
        s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Parses the stored form; unknown names are dropped (a newer release may add scopes).
    pub fn split(stored: &str) -> Vec<Scope> {
        stored.split(',').filter_map(|s| s.parse().ok()).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown scope `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_unique_and_prefixed() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert!(a[KEY_PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn hash_is_stable_sha256() {
        assert_eq!(
            hex::encode(hash_secret("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scopes_round_trip_in_canonical_order() {
        let stored = Scope::join(&[Scope::Admin, Scope::Read, Scope::Read]);
        assert_eq!(stored, "read,admin");
        assert_eq!(Scope::split(&stored), vec![Scope::Read, Scope::Admin]);
        assert_eq!("INGEST".parse::<Scope>(), Ok(Scope::Ingest));
        assert!("root".parse::<Scope>().is_err());
    }
}
