//! The key archives are authenticated with (`[transfer] archive_key`): HMAC-SHA256 over the
//! archive's header and manifest lines. The manifest lists every section's length and SHA-256
//! (checked as each section is read), so the MAC covers every byte of the archive. The
//! section checksums alone detect damage; only the MAC detects a forgery.

use ring::hmac;

use fraiseql_config::Config;

/// What the key's id is the MAC of: archives name the key they were signed with by this id, so
/// a restore can say "another key" rather than "altered". It reveals nothing of the key.
const KEY_ID_INPUT: &[u8] = b"fraiseql tenant archive key id";

/// An HMAC-SHA256 key for archives.
pub struct ArchiveKey {
    key: hmac::Key,
    id: String,
}

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveKey").field("id", &self.id).finish()
    }
}

impl ArchiveKey {
    /// The key of `secret`'s bytes.
    pub fn new(secret: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let id = super::hex(&hmac::sign(&key, KEY_ID_INPUT).as_ref()[..8]);
        Self { key, id }
    }

    /// `[transfer] archive_key`, if configured (the config checked its length).
    pub fn from_config(config: &Config) -> Option<Self> {
        config
            .transfer
            .archive_key
            .as_deref()
            .map(|k| Self::new(k.as_bytes()))
    }

    /// A random key for an archive nobody else reads (a move's own, read back by the same
    /// process); `None` if the system's random source fails.
    pub fn ephemeral() -> Option<Self> {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut secret).ok()?;
        Some(Self::new(&secret))
    }

    /// Its id: 16 hex digits, the same for the same key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC of `signed`, as hex.
    pub fn sign(&self, signed: &[u8]) -> String {
        super::hex(hmac::sign(&self.key, signed).as_ref())
    }

    /// Whether `mac` (hex) is the MAC of `signed`, compared in constant time.
    pub fn verify(&self, signed: &[u8], mac: &str) -> bool {
        match unhex(mac) {
            Some(tag) => hmac::verify(&self.key, signed, &tag).is_ok(),
            None => false,
        }
    }
}

/// Lowercase hex to bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_with_its_key_only() {
        let k = ArchiveKey::new(&[7u8; 32]);
        let mac = k.sign(b"header\nmanifest\n");
        assert_eq!(mac.len(), 64);
        assert!(k.verify(b"header\nmanifest\n", &mac));
        assert!(!k.verify(b"header\nmanifest!\n", &mac), "altered");
        assert!(!ArchiveKey::new(&[8u8; 32]).verify(b"header\nmanifest\n", &mac));
        assert!(!k.verify(b"header\nmanifest\n", "zz"));
        assert!(!k.verify(b"header\nmanifest\n", &mac[..63]));
        assert_eq!(k.id(), ArchiveKey::new(&[7u8; 32]).id());
        assert_ne!(k.id(), ArchiveKey::new(&[8u8; 32]).id());
        assert_eq!(k.id().len(), 16);
        assert!(!format!("{k:?}").contains("7, 7"));
        let e = ArchiveKey::ephemeral().expect("random");
        assert_ne!(e.id(), ArchiveKey::ephemeral().expect("random").id());
    }
}
