//! Names the operations give what they make: archive files and old copies.

/// The name an old copy is renamed to: `<name>_moved_<unix seconds>`, within PostgreSQL's 63
/// bytes (the name is shortened if needed).
pub fn copy_name(name: &str, unix_secs: u64) -> String {
    let suffix = format!("_moved_{unix_secs}");
    let room = 63usize.saturating_sub(suffix.len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (UTC).
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The default archive name of `key`: `<key>-<UTC stamp>.fraiseql-tenant`.
pub fn default_archive_name(key: &str) -> String {
    format!("{key}-{}.fraiseql-tenant", utc_stamp(unix_now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names_fit_in_an_identifier() {
        assert_eq!(
            copy_name("tenant_acme", 1_700_000_000),
            "tenant_acme_moved_1700000000"
        );
        let long = "t".repeat(63);
        let n = copy_name(&long, 1_700_000_000);
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_moved_1700000000"));
        assert!(copy_name(&"é".repeat(40), 1).len() <= 63);
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert!(default_archive_name("acme").starts_with("acme-20"));
    }
}
