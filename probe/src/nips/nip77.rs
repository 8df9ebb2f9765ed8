//! NIP-77 negentropy: the messages and the local side of a reconciliation, without I/O.

use std::collections::HashSet;

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

/// The local side of a reconciliation over `(created_at, id)` items: the messages to send, and
/// what the relay has that we lack, each id once.
pub struct Reconciliation {
    neg: Negentropy<'static, NegentropyStorageVector>,
    have: HashSet<[u8; 32]>,
    need: Vec<[u8; 32]>,
    needed: HashSet<[u8; 32]>,
}

impl Reconciliation {
    pub fn new(items: &[(i64, [u8; 32])]) -> Result<Self, NegentropyError> {
        let mut storage = NegentropyStorageVector::with_capacity(items.len());
        for (t, id) in items {
            storage.insert(u64::try_from(*t).unwrap_or(0), Id::from_byte_array(*id))?;
        }
        storage.seal()?;
        Ok(Reconciliation {
            neg: Negentropy::owned(storage, FRAME_LIMIT)?,
            have: HashSet::new(),
            need: Vec::new(),
            needed: HashSet::new(),
        })
    }

    /// The opening message (for NEG-OPEN).
    pub fn initiate(&mut self) -> Result<Vec<u8>, NegentropyError> {
        Ok(self.neg.initiate()?)
    }

    /// Takes the relay's message; the next one to send, or `None` when reconciled.
    ///
    /// When our message fills its frame, the crate fingerprints the rest of the set from the last
    /// range it wrote, so ranges it had already listed come back in later rounds and their ids
    /// are reported again (18,000 missing ids came as 19,382 in a test below): kept once here,
    /// in the order first reported.
    pub fn step(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, NegentropyError> {
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = self.neg.reconcile_with_ids(message, &mut have, &mut need)?;
        self.have.extend(have.iter().map(|id| **id));
        for id in need {
            if self.needed.insert(*id) {
                self.need.push(*id);
            }
        }
        Ok(next)
    }

    /// Ids the relay has and we lack, each once.
    pub fn need(&self) -> &[[u8; 32]] {
        &self.need
    }

    /// How many of our ids the relay does not have.
    pub fn have_count(&self) -> usize {
        self.have.len()
    }

    pub fn into_need(self) -> Vec<[u8; 32]> {
        self.need
    }
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
        let mut neg = Reconciliation::new(&[]).unwrap();
        assert_eq!(hex::encode(neg.initiate().unwrap()), EMPTY_SET_MESSAGE);
    }

    /// `n` ids at one a second, as a relay holds them.
    fn relay_items(n: u32) -> Vec<(i64, [u8; 32])> {
        use sha2::{Digest, Sha256};
        (0..n)
            .map(|i| {
                (
                    1_700_000_000 + i64::from(i),
                    Sha256::digest(i.to_le_bytes()).into(),
                )
            })
            .collect()
    }

    /// A whole reconciliation of `local` against an in-process responder holding `remote`, with
    /// the frame limit of relays that cap their messages (60 kB).
    fn reconciled(local: &[(i64, [u8; 32])], remote: &[(i64, [u8; 32])]) -> Reconciliation {
        let mut storage = NegentropyStorageVector::with_capacity(remote.len());
        for (t, id) in remote {
            storage.insert(*t as u64, Id::from_byte_array(*id)).unwrap();
        }
        storage.seal().unwrap();
        let mut relay = Negentropy::owned(storage, 60_000).unwrap();
        let mut ours = Reconciliation::new(local).unwrap();
        let mut msg = ours.initiate().unwrap();
        for _ in 0..1_000 {
            match ours.step(&relay.reconcile(&msg).unwrap()).unwrap() {
                Some(next) => msg = next,
                None => return ours,
            }
        }
        panic!("no end after 1,000 rounds");
    }

    #[test]
    fn a_reconciliation_reports_each_missing_id_once() {
        let remote = relay_items(20_000);
        // What a synchronizer killed mid-batch leaves: the first ids a reconciliation from
        // nothing listed (in its order), fetched and stored before the kill. Holding 2,000 of
        // them fills our frames, and the crate then lists 1,382 of the rest twice.
        let listed = reconciled(&[], &remote).into_need();
        assert_eq!(listed.len(), remote.len());
        for held in [0, 1_000, 2_000, 3_000, 19_999, 20_000] {
            let ids: HashSet<[u8; 32]> = listed[..held].iter().copied().collect();
            let local: Vec<_> = remote
                .iter()
                .filter(|(_, id)| ids.contains(id))
                .copied()
                .collect();
            let need = reconciled(&local, &remote).into_need();
            let distinct: HashSet<[u8; 32]> = need.iter().copied().collect();
            assert_eq!(
                need.len(),
                distinct.len(),
                "holding {held}: an id listed twice"
            );
            let missing: HashSet<[u8; 32]> = listed[held..].iter().copied().collect();
            assert_eq!(distinct, missing, "holding {held}");
        }
    }

    #[test]
    fn ids_only_we_hold_are_counted_once() {
        let mut local = relay_items(6_000);
        local.drain(..1_000);
        let r = reconciled(&local, &relay_items(5_000));
        assert_eq!((r.need().len(), r.have_count()), (1_000, 1_000));
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
