//! Positions: where an event sits in the change stream, as an opaque string a client hands
//! back to resume. It is the event's stream sequence and the stream's identity (its creation
//! time), so a position from a stream that was deleted and created again (its sequences start
//! over) is refused rather than misread.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A place in the change stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The event's stream sequence (every event up to and including it was seen).
    pub sequence: u64,
    /// The stream's identity: its creation time in nanoseconds since the epoch.
    pub stream: u64,
}

/// Length of an encoded position: 16 bytes in base64url without padding.
const ENCODED_LEN: usize = 22;

impl Position {
    /// The opaque text form (22 characters of base64url).
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.sequence.to_be_bytes());
        bytes[8..].copy_from_slice(&self.stream.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a position a client sent back; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != ENCODED_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let sequence = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let stream = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self { sequence, stream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_garbage_is_refused() {
        let p = Position {
            sequence: 42,
            stream: 1_700_000_000_123_456_789,
        };
        let text = p.encode();
        assert_eq!(text.len(), ENCODED_LEN);
        assert_eq!(Position::decode(&text), Some(p));
        assert_eq!(Position::decode(""), None);
        assert_eq!(Position::decode("42"), None);
        assert_eq!(Position::decode(&"A".repeat(10_000)), None);
        assert_eq!(Position::decode("!!!!!!!!!!!!!!!!!!!!!!"), None);
    }
}
