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

/// The local side of a reconciliation over `(created_at, id)` items: the messages to send, and
/// in the end the [`Difference`].
pub struct Reconciliation {
    neg: Negentropy<'static, NegentropyStorageVector>,
    have: Vec<[u8; 32]>,
    need: Vec<[u8; 32]>,
}

/// What a reconciliation found, each id once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    /// Ids the relay has and we lack, sorted.
    pub need: Vec<[u8; 32]>,
    /// How many of our ids the relay lacks.
    pub have: usize,
}

impl Reconciliation {
    pub fn new(items: &[(i64, [u8; 32])]) -> Result<Self, NegentropyError> {
        Ok(Reconciliation {
            neg: Negentropy::owned(storage(items)?, FRAME_LIMIT)?,
            have: Vec::new(),
            need: Vec::new(),
        })
    }

    /// The opening message (for NEG-OPEN).
    pub fn initiate(&mut self) -> Result<Vec<u8>, NegentropyError> {
        Ok(self.neg.initiate()?)
    }

    /// Takes the relay's message; the next one to send, or `None` when reconciled.
    pub fn step(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, NegentropyError> {
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = self.neg.reconcile_with_ids(message, &mut have, &mut need)?;
        self.have.extend(have.iter().map(|id| **id));
        self.need.extend(need.iter().map(|id| **id));
        Ok(next)
    }

    /// The difference, each id once. When our message fills its frame, the crate fingerprints
    /// the rest of the set from the last range it wrote, so ranges it had already listed come
    /// back in later rounds and their ids are reported again (18,000 missing ids came as ~19,400
    /// in a test below). Deduplicated here by sorting: no second set of ids in memory.
    pub fn finish(self) -> Difference {
        let (mut need, mut have) = (self.need, self.have);
        need.sort_unstable();
        need.dedup();
        have.sort_unstable();
        have.dedup();
        Difference {
            need,
            have: have.len(),
        }
    }
}

/// The relay side of a reconciliation (NEG-OPEN, NEG-MSG as the api answers them): holds the
/// sealed items of the filter and answers each message of the client.
pub struct Responder {
    neg: Negentropy<'static, NegentropyStorageVector>,
}

impl Responder {
    /// Over `items`, each answer at most `frame_limit` bytes (0: unbounded).
    pub fn new(items: &[(i64, [u8; 32])], frame_limit: u64) -> Result<Self, NegentropyError> {
        Ok(Responder {
            neg: Negentropy::owned(storage(items)?, frame_limit)?,
        })
    }

    /// The answer to one client message (hex-decoded).
    pub fn answer(&mut self, message: &[u8]) -> Result<Vec<u8>, NegentropyError> {
        Ok(self.neg.reconcile(message)?)
    }
}

/// `(created_at, id)` items, sealed for negentropy.
fn storage(items: &[(i64, [u8; 32])]) -> Result<NegentropyStorageVector, NegentropyError> {
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (t, id) in items {
        storage.insert(u64::try_from(*t).unwrap_or(0), Id::from_byte_array(*id))?;
    }
    storage.seal()?;
    Ok(storage)
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
    /// the frame limit of relays that cap their messages (60 kB); not finished, so that its ids
    /// are still as the crate reported them.
    fn exchange(local: &[(i64, [u8; 32])], remote: &[(i64, [u8; 32])]) -> Reconciliation {
        let mut relay = Responder::new(remote, 60_000).unwrap();
        let mut ours = Reconciliation::new(local).unwrap();
        let mut msg = ours.initiate().unwrap();
        for _ in 0..1_000 {
            match ours.step(&relay.answer(&msg).unwrap()).unwrap() {
                Some(next) => msg = next,
                None => return ours,
            }
        }
        panic!("no end after 1,000 rounds");
    }

    fn sorted(ids: &[[u8; 32]]) -> Vec<[u8; 32]> {
        let mut v = ids.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_reconciliation_reports_each_missing_id_once() {
        let remote = relay_items(20_000);
        // What a synchronizer killed mid-batch leaves: the first ids a reconciliation from
        // nothing listed (in the crate's order), fetched and stored before the kill.
        let listed = exchange(&[], &remote).need;
        assert_eq!(
            sorted(&listed),
            sorted(&remote.iter().map(|(_, id)| *id).collect::<Vec<_>>())
        );
        let time: std::collections::HashMap<_, _> =
            remote.iter().map(|(t, id)| (*id, *t)).collect();
        let mut repeated = Vec::new();
        for held in [0, 1_000, 2_000, 3_000, 19_999, 20_000] {
            let local: Vec<_> = listed[..held].iter().map(|id| (time[id], *id)).collect();
            let raw = exchange(&local, &remote);
            repeated.push(raw.need.len() - (listed.len() - held));
            let d = raw.finish();
            assert_eq!(d.need, sorted(&listed[held..]), "holding {held}");
            assert_eq!(d.have, 0, "holding {held}");
        }
        // Holding 2,000 fills our frames, and the crate lists over a thousand of the rest again
        // (how many varies: it orders the ids of a range by a hash set). What `finish` is for.
        assert!(
            repeated[2] > 0,
            "the crate no longer repeats ids ({repeated:?}): `finish` need not deduplicate"
        );
    }

    #[test]
    fn ids_only_we_hold_are_counted_once() {
        let mut local = relay_items(6_000);
        local.drain(..1_000);
        let d = exchange(&local, &relay_items(5_000)).finish();
        assert_eq!((d.need.len(), d.have), (1_000, 1_000));
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
