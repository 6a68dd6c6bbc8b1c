//! Public identifiers: a type prefix and a ULID (48-bit millisecond time + 80 random bits,
//! Crockford base32). Time-ordered so primary-key inserts stay append-mostly in InnoDB, random
//! enough that guessing one is hopeless, and the prefix says what kind of object it names.

use std::sync::Mutex;

use rand::RngCore;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The last id value handed out by this process, so ids made in the same millisecond still sort in
/// the order they were made (the ULID "monotonic" rule). Ids from different processes within one
/// millisecond have no defined order.
static LAST: Mutex<u128> = Mutex::new(0);

pub fn new_id(prefix: &str) -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u128;
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let mut value: u128 = millis << 80;
    for (i, b) in random.iter().enumerate() {
        value |= (*b as u128) << (8 * (9 - i));
    }
    {
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if value <= *last {
            value = *last + 1;
        }
        *last = value;
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        out.push(CROCKFORD[((value >> (5 * i)) & 0x1f) as usize] as char);
    }
    out
}

/// Shape check for an id of the given prefix, done before any query so junk never reaches SQL.
pub fn looks_like(prefix: &str, id: &str) -> bool {
    id.len() == prefix.len() + 27
        && id.starts_with(prefix)
        && id.as_bytes()[prefix.len()] == b'_'
        && id[prefix.len() + 1..].bytes().all(|b| CROCKFORD.contains(&b))
}

/// Idempotency keys Neruba writes itself (a billing run's grant of included credits) start with
/// this; a client's may not, so no client can take a key a run will need.
pub const RESERVED_KEY_PREFIX: &str = "neruba:";

/// A client's idempotency key: 1 to 255 characters, no control characters, no leading or
/// trailing whitespace (MariaDB's `utf8mb4_bin` pads with spaces when comparing, so `"k "` and
/// `"k"` would be one key to the unique index but two to us), and not [`RESERVED_KEY_PREFIX`].
pub fn parse_idempotency_key(field: &str, raw: &str) -> Result<String, crate::error::Error> {
    let key = parse_system_key(field, raw)?;
    if key.starts_with(RESERVED_KEY_PREFIX) {
        return Err(crate::error::Error::invalid(
            field,
            format!("must not start with '{RESERVED_KEY_PREFIX}' (Neruba's own keys do)"),
        ));
    }
    Ok(key)
}

/// An idempotency key Neruba itself sends: a client's rules, its reserved prefix allowed.
pub fn parse_system_key(field: &str, raw: &str) -> Result<String, crate::error::Error> {
    use crate::error::Error;
    if raw.is_empty() || raw.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if raw.trim() != raw {
        return Err(Error::invalid(field, "must not start or end with whitespace"));
    }
    Ok(raw.to_string())
}

pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_cannot_send_the_keys_neruba_reserves() {
        assert!(parse_idempotency_key("k", "neruba:included-credits:inv_1").is_err());
        assert!(parse_system_key("k", "neruba:included-credits:inv_1").is_ok());
        assert_eq!(parse_idempotency_key("k", "nerubaX:1").unwrap(), "nerubaX:1");
    }

    #[test]
    fn ids_are_prefixed_unique_and_time_ordered() {
        let a = new_id("prj");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("prj");
        assert!(looks_like("prj", &a), "{a}");
        assert!(a < b);
        assert!(!looks_like("key", &a));
        assert!(!looks_like("prj", "prj_short"));
        assert!(!looks_like("prj", "prj_0000000000000000000000000!"));
    }

    #[test]
    fn ids_made_in_one_millisecond_keep_their_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("prj")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
