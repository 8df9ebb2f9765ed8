//! An event as stored: verified, flattened, with its tag values precomputed for indexing.

use nostr::{Event, JsonUtil};

/// Tag values longer than this (bytes) are left out of `tagvalues`: they are useless as index keys
/// and PostgreSQL's GIN rejects entries above ~2.7 kB. The event itself is kept.
pub const MAX_TAGVALUE_BYTES: usize = 1024;

/// Why a relay's event cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventRowError {
    #[error("event is not valid JSON for NIP-01: {0}")]
    Json(String),
    #[error("event {id}: id does not match its content")]
    BadId { id: String },
    #[error("event {id}: bad signature")]
    BadSignature { id: String },
    #[error("event {id}: {field} contains a NUL character, which the database cannot store")]
    Nul { id: String, field: &'static str },
    #[error("event {id}: created_at {created_at} is out of range")]
    CreatedAtOutOfRange { id: String, created_at: u64 },
}

/// A verified event, flattened into the columns the store writes.
///
/// Only constructible from an event whose id and signature verify, so a stored row is always
/// authentic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: [u8; 32],
    pub pubkey: [u8; 32],
    pub created_at: i64,
    pub kind: i32,
    /// The tags as a JSON array of arrays of strings (NIP-01 form).
    pub tags_json: String,
    /// `"<letter>:<value>"` for every tag whose name is one character (see [`tagvalues`]).
    pub tagvalues: Vec<String>,
    pub content: String,
    pub sig: [u8; 64],
}

impl EventRow {
    /// Parses and verifies one NIP-01 event JSON object.
    pub fn from_json(json: &str) -> Result<Self, EventRowError> {
        let event = Event::from_json(json).map_err(|e| EventRowError::Json(e.to_string()))?;
        Self::from_event(&event)
    }

    /// Verifies `event` (id and signature) and flattens it.
    pub fn from_event(event: &Event) -> Result<Self, EventRowError> {
        let id_hex = || event.id.to_hex();
        if !event.verify_id() {
            return Err(EventRowError::BadId { id: id_hex() });
        }
        if !event.verify_signature() {
            return Err(EventRowError::BadSignature { id: id_hex() });
        }
        Self::from_verified(event)
    }

    /// Flattens an event whose id and signature the caller has already verified.
    pub fn from_verified(event: &Event) -> Result<Self, EventRowError> {
        let id_hex = || event.id.to_hex();
        if event.content.contains('\0') {
            return Err(EventRowError::Nul {
                id: id_hex(),
                field: "content",
            });
        }
        let tags: Vec<&[String]> = event.tags.iter().map(|t| t.as_slice()).collect();
        if tags.iter().flat_map(|t| t.iter()).any(|s| s.contains('\0')) {
            return Err(EventRowError::Nul {
                id: id_hex(),
                field: "tags",
            });
        }
        let created_at_u64 = event.created_at.as_secs();
        let created_at =
            i64::try_from(created_at_u64).map_err(|_| EventRowError::CreatedAtOutOfRange {
                id: id_hex(),
                created_at: created_at_u64,
            })?;
        // Serialising a Vec<Vec<String>> cannot fail.
        let tags_json = serde_json::to_string(&tags).unwrap_or_else(|_| "[]".to_owned());
        Ok(EventRow {
            id: event.id.to_bytes(),
            pubkey: event.pubkey.to_bytes(),
            created_at,
            kind: i32::from(event.kind.as_u16()),
            tagvalues: tagvalues(tags.iter().copied()),
            tags_json,
            content: event.content.clone(),
            sig: *event.sig.as_ref(),
        })
    }

    /// The id as lowercase hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// Index keys for an event's tags: `"<name>:<value>"` for each tag whose name is exactly one
/// character and that has a value, skipping values over [`MAX_TAGVALUE_BYTES`].
///
/// Same rule as the SQL function `tags_to_tagvalues` in the PostgreSQL migrations.
pub fn tagvalues<'a, I, T>(tags: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a T>,
    T: AsRef<[String]> + ?Sized + 'a,
{
    tags.into_iter()
        .filter_map(|tag| match tag.as_ref() {
            [name, value, ..] if name.chars().count() == 1 && value.len() <= MAX_TAGVALUE_BYTES => {
                Some(format!("{name}:{value}"))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind, Tag};

    fn signed(content: &str, tags: Vec<Tag>) -> Event {
        EventBuilder::new(Kind::TextNote, content)
            .tags(tags)
            .sign_with_keys(&Keys::generate())
            .expect("signing a fresh event")
    }

    fn tag(parts: &[&str]) -> Tag {
        Tag::parse(parts.iter().copied()).expect("valid test tag")
    }

    #[test]
    fn flattens_a_verified_event() {
        let ev = signed(
            "hello",
            vec![tag(&["e", "abc"]), tag(&["p", "def", "wss://r.example"])],
        );
        let row = EventRow::from_event(&ev).unwrap();
        assert_eq!(row.id, ev.id.to_bytes());
        assert_eq!(row.pubkey, ev.pubkey.to_bytes());
        assert_eq!(row.kind, 1);
        assert_eq!(row.content, "hello");
        assert_eq!(
            row.tags_json,
            r#"[["e","abc"],["p","def","wss://r.example"]]"#
        );
        assert_eq!(row.tagvalues, vec!["e:abc", "p:def"]);
        assert_eq!(row.id_hex(), ev.id.to_hex());
    }

    #[test]
    fn round_trips_through_json() {
        let ev = signed("json ✓ unicode", vec![tag(&["t", "nostr"])]);
        let row = EventRow::from_json(&ev.as_json()).unwrap();
        assert_eq!(row.content, "json ✓ unicode");
    }

    #[test]
    fn rejects_a_tampered_id() {
        let ev = signed("original", vec![]);
        let json = ev.as_json().replace("original", "tampered");
        let err = EventRow::from_json(&json).unwrap_err();
        assert!(matches!(err, EventRowError::BadId { .. }), "{err}");
    }

    #[test]
    fn rejects_a_bad_signature() {
        let ev = signed("x", vec![]);
        let other = signed("y", vec![]);
        let mut value: serde_json::Value = serde_json::from_str(&ev.as_json()).unwrap();
        value["sig"] = serde_json::Value::String(other.sig.to_string());
        let err = EventRow::from_json(&value.to_string()).unwrap_err();
        assert!(matches!(err, EventRowError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn rejects_garbage_json_with_a_reason() {
        for bad in ["", "{}", "[]", "null", r#"{"id":"zz"}"#] {
            let err = EventRow::from_json(bad).unwrap_err();
            assert!(matches!(err, EventRowError::Json(_)), "{bad:?} gave {err}");
        }
    }

    #[test]
    fn rejects_nul_in_content_and_tags() {
        let ev = signed("a\0b", vec![]);
        assert!(matches!(
            EventRow::from_event(&ev),
            Err(EventRowError::Nul {
                field: "content",
                ..
            })
        ));
        let ev = signed("ok", vec![tag(&["t", "a\0b"])]);
        assert!(matches!(
            EventRow::from_event(&ev),
            Err(EventRowError::Nul { field: "tags", .. })
        ));
    }

    #[test]
    fn tagvalues_follow_the_single_letter_rule() {
        let long = "x".repeat(MAX_TAGVALUE_BYTES + 1);
        let exact = "y".repeat(MAX_TAGVALUE_BYTES);
        let tags: Vec<Vec<String>> = [
            vec!["e", "x"],
            vec!["p", "y", "hint"],
            vec!["t"],
            vec!["tt", "z"],
            vec!["d", ""],
            vec!["r", long.as_str()],
            vec!["r", exact.as_str()],
            vec!["é", "unicode-name"],
            vec![],
        ]
        .into_iter()
        .map(|t| t.into_iter().map(String::from).collect())
        .collect();
        let got = tagvalues(&tags);
        assert_eq!(
            got,
            vec![
                "e:x".to_owned(),
                "p:y".to_owned(),
                "d:".to_owned(),
                format!("r:{exact}"),
                "é:unicode-name".to_owned(),
            ]
        );
    }

    #[test]
    fn an_over_long_tag_value_keeps_the_event() {
        let long = "v".repeat(MAX_TAGVALUE_BYTES * 3);
        let ev = signed("kept", vec![tag(&["r", &long]), tag(&["t", "short"])]);
        let row = EventRow::from_event(&ev).unwrap();
        assert_eq!(row.tagvalues, vec!["t:short"]);
        assert!(row.tags_json.contains(&long));
    }
}
