//! Tenant keys (`acme_corp`): validated before they touch SQL, a header, or a log line.

/// Longest key; with a 14-byte prefix, names stay within PostgreSQL's 63-byte identifiers.
pub const MAX_KEY_LEN: usize = 40;

/// Whether `key` is `[a-z0-9_]{1,40}`.
pub fn is_valid(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Why a key is refused, without echoing it (it may be huge or hostile).
pub fn why_invalid(key: &str) -> String {
    if key.is_empty() {
        "the tenant key is empty".to_owned()
    } else if key.len() > MAX_KEY_LEN {
        format!("the tenant key is longer than {MAX_KEY_LEN} bytes")
    } else {
        "tenant keys are lowercase letters, digits and `_`".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(is_valid("acme_corp"));
        assert!(is_valid("a1"));
        for bad in [
            "",
            "Acme",
            "acme-corp",
            "'; DROP TABLE x; --",
            "ácme",
            "a b",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(!is_valid(&"a".repeat(10 * 1024)));
        assert_eq!(
            why_invalid(&"a".repeat(10 * 1024)),
            "the tenant key is longer than 40 bytes"
        );
    }
}
