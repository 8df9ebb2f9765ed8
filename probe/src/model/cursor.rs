//! A per-relay position in a stream of events, ordered by `(created_at, id)`.

use serde::{Deserialize, Serialize};

/// The last event a service has fully processed for a relay. Advanced only after the events it
/// covers are committed, so a crash re-reads at most one batch (and idempotent inserts make that
/// harmless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub timestamp: i64,
    #[serde(with = "hex_id")]
    pub id: [u8; 32],
}

impl Cursor {
    /// The position before every event.
    pub const START: Cursor = Cursor {
        timestamp: 0,
        id: [0; 32],
    };
}

mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(id: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| D::Error::custom(format!("cursor id {s:?}: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_spec_json() {
        let c = Cursor {
            timestamp: 1700000000,
            id: [0xab; 32],
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"timestamp":1700000000,"id":"{}"}}"#, "ab".repeat(32))
        );
        assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), c);
    }

    #[test]
    fn rejects_a_malformed_id() {
        let err = serde_json::from_str::<Cursor>(r#"{"timestamp":1,"id":"xyz"}"#).unwrap_err();
        assert!(err.to_string().contains("cursor id \"xyz\""), "{err}");
    }

    #[test]
    fn orders_by_time_then_id() {
        let a = Cursor {
            timestamp: 5,
            id: [9; 32],
        };
        let b = Cursor {
            timestamp: 6,
            id: [0; 32],
        };
        assert!(Cursor::START < a && a < b);
    }
}
