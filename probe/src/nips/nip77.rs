//! NIP-77 negentropy: the messages and the local side of a reconciliation, without I/O.

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::{Filter, JsonUtil};

/// Negentropy V1 initial message for an empty set (nips.md vector 6): enough to ask a relay
/// whether it speaks NIP-77 at all.
pub const EMPTY_SET_MESSAGE: &str = "6100000200";

/// Largest negentropy message we send (bytes before hex); relays commonly accept far more.
pub const FRAME_LIMIT: u64 = 60_000;

/// Why the local side of a reconciliation cannot be built or continued.
#[derive(Debug, thiserror::Error)]
#[error("negentropy: {0}")]
pub struct NegentropyError(String);

impl From<negentropy::Error> for NegentropyError {
    fn from(e: negentropy::Error) -> Self {
        NegentropyError(e.to_string())
    }
}

/// The local side of a reconciliation over `(created_at, id)` items.
pub fn client(
    items: &[(i64, [u8; 32])],
) -> Result<Negentropy<'static, NegentropyStorageVector>, NegentropyError> {
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (t, id) in items {
        storage.insert(u64::try_from(*t).unwrap_or(0), Id::from_byte_array(*id))?;
    }
    storage.seal()?;
    Ok(Negentropy::owned(storage, FRAME_LIMIT)?)
}

/// `["NEG-OPEN", sub, filter, hex]`.
pub fn neg_open(sub: &str, filter: &Filter, message_hex: &str) -> String {
    format!(
        r#"["NEG-OPEN",{},{},"{message_hex}"]"#,
        serde_json::Value::String(sub.to_owned()),
        filter.as_json()
    )
}

/// `["NEG-MSG", sub, hex]`.
pub fn neg_msg(sub: &str, message: &[u8]) -> String {
    format!(
        r#"["NEG-MSG",{},"{}"]"#,
        serde_json::Value::String(sub.to_owned()),
        hex::encode(message)
    )
}

/// `["NEG-CLOSE", sub]`.
pub fn neg_close(sub: &str) -> String {
    format!(
        r#"["NEG-CLOSE",{}]"#,
        serde_json::Value::String(sub.to_owned())
    )
}

/// Negentropy reconciles by id, time and (here) kind; filters on authors, ids, tags or search
/// would need the same selection on the local side, so they are not reconciled.
pub fn reconcilable(filter: &Filter) -> bool {
    filter.ids.is_none()
        && filter.authors.is_none()
        && filter.generic_tags.is_empty()
        && filter.search.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_set_opening_matches_the_vector() {
        let mut neg = client(&[]).unwrap();
        assert_eq!(hex::encode(neg.initiate().unwrap()), EMPTY_SET_MESSAGE);
    }

    #[test]
    fn messages_are_json() {
        let f = Filter::new().kind(nostr::Kind::TextNote);
        let open: serde_json::Value = serde_json::from_str(&neg_open("n", &f, "61")).unwrap();
        assert_eq!(open[0], "NEG-OPEN");
        assert_eq!(open[2]["kinds"][0], 1);
        assert_eq!(neg_msg("n", &[0x61, 0x00]), r#"["NEG-MSG","n","6100"]"#);
        assert_eq!(neg_close("n"), r#"["NEG-CLOSE","n"]"#);
    }

    #[test]
    fn only_id_time_and_kind_filters_reconcile() {
        assert!(reconcilable(&Filter::new().kind(nostr::Kind::TextNote)));
        let pk = nostr::Keys::generate().public_key();
        assert!(!reconcilable(&Filter::new().author(pk)));
        assert!(!reconcilable(&Filter::new().hashtag("x")));
    }
}
