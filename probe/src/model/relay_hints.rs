//! Relay URLs found inside events ("relay hints"), extracted once per event at ingest time.
//!
//! BigBrotr's finder re-scans archived events once per relay they were seen on and only mines the
//! value (position 1) of single-letter tags. Here the synchronizer calls
//! [`relay_hints_from_row`] on every event it stores, so each event is looked at exactly once, and
//! the sources are the ones that actually carry relay URLs:
//!
//! | source                      | where                                                       |
//! |-----------------------------|-------------------------------------------------------------|
//! | [`HintSource::RTag`]        | kind 10002 (NIP-65) `["r", <url>, ("read"/"write")?]`        |
//! | [`HintSource::ContactListContent`] | kind 3 (NIP-02 legacy) content `{"<url>": {"read": …, "write": …}}` |
//! | [`HintSource::RecommendRelay`] | kind 2 (deprecated "recommend relay") content = a URL     |
//! | [`HintSource::TagHint`]     | any kind: element 2 of `e`, `p`, `a`, `q` tags              |
//! | [`HintSource::MonitorReport`] | kind 30166 (NIP-66): the first `d` tag, the probed relay |
//!
//! `r` tags of other kinds are **not** mined: in kind 1 and most others they are arbitrary web URLs.
//! Multi-letter tags (`relay`, `relays`) are not mined either.
//!
//! Every candidate is untrusted: [`relay_hints`] runs it through [`RelayUrl::parse`] (or
//! [`RelayUrl::parse_allowing_local`] when asked), so local, private and malformed URLs are counted
//! in [`Hints::rejected`] and never returned — this is the SSRF guard for URLs found in the wild.
//!
//! Cost: this runs on every ingested event. There is no regex; an event without a candidate
//! allocates nothing; a candidate must start with `ws://`/`wss://` (any case) before the full parser
//! runs; a candidate equal to an already accepted canonical URL (give or take one trailing `/`, the
//! common case of many `p` tags hinting the same relay) is not parsed again; and deduplication
//! switches from a linear scan to a hash index past a few URLs. [`relay_hints_from_row`] streams
//! `tags_json` instead of building a `Vec<Vec<String>>`, so tags that cannot carry a hint cost no
//! allocation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{EventRow, RelayUrl};

/// Kind 2: deprecated "recommend relay"; the content is a relay URL.
pub const KIND_RECOMMEND_RELAY: i32 = 2;
/// Kind 3: NIP-02 follow list; legacy clients put their relays in the content as JSON.
pub const KIND_CONTACT_LIST: i32 = 3;
/// Kind 10002: NIP-65 relay list metadata (`r` tags).
pub const KIND_RELAY_LIST: i32 = 10002;
/// Kind 30166: NIP-66 relay discovery; the `d` tag is the monitored relay's URL.
pub const KIND_RELAY_DISCOVERY: i32 = 30166;
/// Kind 3 content longer than this (bytes) is not parsed.
pub const MAX_CONTACT_CONTENT_BYTES: usize = 256 * 1024;
/// Only the first this many keys of a kind 3 content object are candidates.
pub const MAX_CONTACT_KEYS: usize = 1000;
/// Kind 2 content longer than this (bytes, after trimming) is not a candidate.
pub const MAX_RECOMMEND_CONTENT_BYTES: usize = 2048;
/// Up to this many accepted URLs, deduplication is a linear scan; beyond, a hash index.
const LINEAR_DEDUPE_MAX: usize = 16;

/// Where in an event a relay hint was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HintSource {
    /// An `r` tag of a kind 10002 relay list (NIP-65), read and/or write.
    RTag,
    /// A key of the JSON object in a kind 3 follow list's content (NIP-02, legacy).
    ContactListContent,
    /// The content of a kind 2 "recommend relay" event (deprecated).
    RecommendRelay,
    /// The relay hint (element 2) of an `e`, `p`, `a` or `q` tag, in any kind.
    TagHint,
    /// The `d` tag of a kind 30166 relay discovery event published by a NIP-66 monitor.
    MonitorReport,
}

impl HintSource {
    /// Every source, in declaration order.
    pub const ALL: [HintSource; 5] = [
        HintSource::RTag,
        HintSource::ContactListContent,
        HintSource::RecommendRelay,
        HintSource::TagHint,
        HintSource::MonitorReport,
    ];

    /// A short stable label, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HintSource::RTag => "r_tag",
            HintSource::ContactListContent => "kind3_content",
            HintSource::RecommendRelay => "kind2_content",
            HintSource::TagHint => "tag_hint",
            HintSource::MonitorReport => "nip66_d",
        }
    }
}

impl fmt::Display for HintSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The relay URLs found in one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Valid, canonical, distinct URLs, in the order they were first seen.
    pub urls: Vec<RelayUrl>,
    /// How many candidates were refused (malformed, not ws/wss, or local when local is not
    /// allowed). Each refused occurrence counts.
    pub rejected: usize,
}

/// Every candidate string of an event, in order, trimmed, not parsed.
///
/// Content candidates come first (the keys of a kind 3 JSON object in document order, or a kind 2
/// content), then tag candidates in tag order (kind 10002 `r` values, the first kind 30166 `d`
/// value, and for any kind the element 2 of `e`/`p`/`a`/`q` tags). Blank values are not
/// candidates. Kind 3 content that is over [`MAX_CONTACT_CONTENT_BYTES`], not a JSON object or not
/// valid JSON gives nothing; only its first [`MAX_CONTACT_KEYS`] keys count, and keys written with
/// JSON escapes (e.g. `wss:\/\/…`) are skipped because they cannot be borrowed from the content.
pub fn raw_hints<'a>(
    kind: i32,
    tags: &'a [Vec<String>],
    content: &'a str,
) -> Vec<(HintSource, &'a str)> {
    let mut out = Vec::new();
    for_each_candidate(kind, tags, content, &mut |source, raw| {
        out.push((source, raw))
    });
    out
}

/// Parses every candidate of [`raw_hints`] into a [`RelayUrl`] and deduplicates (first seen wins).
///
/// With `allow_local` false, local/private/reserved hosts are refused like malformed URLs: they
/// are counted in [`Hints::rejected`] and never returned.
pub fn relay_hints(kind: i32, tags: &[Vec<String>], content: &str, allow_local: bool) -> Hints {
    let mut acc = Acc::new(allow_local);
    for_each_candidate(kind, tags, content, &mut |_, raw| acc.push(raw));
    acc.finish()
}

/// [`relay_hints`] for a stored row: `row.tags_json` is read as an array of arrays of strings
/// (streamed, not materialised). If it is malformed the event is treated as having no tags (its
/// content is still mined).
pub fn relay_hints_from_row(row: &EventRow, allow_local: bool) -> Hints {
    let mut acc = Acc::new(allow_local);
    content_candidates(row.kind, &row.content, &mut |_, raw| acc.push(raw));
    let mut de = serde_json::Deserializer::from_str(&row.tags_json);
    let streamed = de
        .deserialize_seq(TagsVisitor {
            kind: row.kind,
            emit: &mut |_, raw| acc.push(raw),
        })
        .and_then(|()| de.end());
    match streamed {
        Ok(()) => acc.finish(),
        Err(_) => relay_hints(row.kind, &[], &row.content, allow_local),
    }
}

/// Calls `emit` for every candidate of [`raw_hints`], in the same order.
fn for_each_candidate<'a>(
    kind: i32,
    tags: &'a [Vec<String>],
    content: &'a str,
    emit: &mut impl FnMut(HintSource, &'a str),
) {
    content_candidates(kind, content, emit);
    let mut seen_d = false;
    for tag in tags {
        let Some(name) = tag.first() else { continue };
        if let Some((source, index)) = tag_role(kind, name, &mut seen_d)
            && let Some(raw) = tag.get(index).and_then(|v| candidate(v))
        {
            emit(source, raw);
        }
    }
}

/// Candidates in the content: kind 3 JSON keys or kind 2 URL.
fn content_candidates<'a>(kind: i32, content: &'a str, emit: &mut impl FnMut(HintSource, &'a str)) {
    match kind {
        KIND_CONTACT_LIST => {
            for key in contact_list_keys(content) {
                emit(HintSource::ContactListContent, key);
            }
        }
        KIND_RECOMMEND_RELAY => {
            if let Some(raw) = candidate(content)
                && raw.len() <= MAX_RECOMMEND_CONTENT_BYTES
            {
                emit(HintSource::RecommendRelay, raw);
            }
        }
        _ => {}
    }
}

/// Which source a tag named `name` is, and which element holds its candidate. Only the first `d`
/// tag of a 30166 counts (it is the event's identifier), so `seen_d` is set by the first one.
fn tag_role(kind: i32, name: &str, seen_d: &mut bool) -> Option<(HintSource, usize)> {
    match name {
        "e" | "p" | "a" | "q" => Some((HintSource::TagHint, 2)),
        "r" if kind == KIND_RELAY_LIST => Some((HintSource::RTag, 1)),
        "d" if kind == KIND_RELAY_DISCOVERY && !*seen_d => {
            *seen_d = true;
            Some((HintSource::MonitorReport, 1))
        }
        _ => None,
    }
}

/// `raw` trimmed, unless blank.
fn candidate(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    (!raw.is_empty()).then_some(raw)
}

/// The (trimmed, non-blank) keys of a kind 3 content object; empty when the content is not one.
fn contact_list_keys(content: &str) -> Vec<&str> {
    if content.len() > MAX_CONTACT_CONTENT_BYTES || !content.trim_start().starts_with('{') {
        return Vec::new();
    }
    let mut de = serde_json::Deserializer::from_str(content);
    de.deserialize_map(KeysVisitor)
        .and_then(|keys| de.end().map(|()| keys))
        .unwrap_or_default()
}

/// Collects the borrowable keys of a JSON object, up to [`MAX_CONTACT_KEYS`], and checks the rest
/// of the object is valid.
struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Vec<&'de str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::new();
        for _ in 0..MAX_CONTACT_KEYS {
            let Some(key) = map.next_key_seed(BorrowedKey)? else {
                return Ok(keys);
            };
            map.next_value::<IgnoredAny>()?;
            keys.extend(key.and_then(candidate));
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(keys)
    }
}

/// A string borrowed from the input, or `None` when it had escapes (and so was copied).
struct BorrowedKey;

impl<'de> DeserializeSeed<'de> for BorrowedKey {
    type Value = Option<&'de str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for BorrowedKey {
    type Value = Option<&'de str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A tag element: borrowed from the JSON unless it had escapes.
struct TagStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for TagStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TagStr(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TagStr(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TagStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A tag element that must be a string but is not kept (no allocation).
struct SkippedStr;

impl<'de> Deserialize<'de> for SkippedStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SkippedStr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(SkippedStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// Streams a NIP-01 tag array (`[[string, …], …]`), emitting each tag's candidate. Accepts exactly
/// what `Vec<Vec<String>>` accepts.
struct TagsVisitor<'f> {
    kind: i32,
    emit: &'f mut dyn FnMut(HintSource, &str),
}

impl<'de> Visitor<'de> for TagsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tags")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut seen_d = false;
        while seq
            .next_element_seed(TagVisitor {
                kind: self.kind,
                seen_d: &mut seen_d,
                emit: &mut *self.emit,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One tag of [`TagsVisitor`]: only the element holding a candidate is kept.
struct TagVisitor<'f> {
    kind: i32,
    seen_d: &'f mut bool,
    emit: &'f mut dyn FnMut(HintSource, &str),
}

impl<'de> DeserializeSeed<'de> for TagVisitor<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TagVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tag (an array of strings)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(name) = seq.next_element::<TagStr<'de>>()? else {
            return Ok(());
        };
        let role = tag_role(self.kind, &name.0, self.seen_d);
        let mut kept = None;
        let mut index = 1;
        loop {
            if role.is_some_and(|(_, at)| at == index) {
                match seq.next_element::<TagStr<'de>>()? {
                    Some(value) => kept = Some(value),
                    None => break,
                }
            } else if seq.next_element::<SkippedStr>()?.is_none() {
                break;
            }
            index += 1;
        }
        if let (Some((source, _)), Some(value)) = (role, kept)
            && let Some(raw) = candidate(&value.0)
        {
            (self.emit)(source, raw);
        }
        Ok(())
    }
}

/// Parses and deduplicates candidates.
struct Acc {
    allow_local: bool,
    urls: Vec<RelayUrl>,
    rejected: usize,
    /// Hash of a canonical URL → index of the first URL with that hash; built past
    /// [`LINEAR_DEDUPE_MAX`] URLs.
    index: Option<(RandomState, HashMap<u64, usize>)>,
}

impl Acc {
    fn new(allow_local: bool) -> Self {
        Acc {
            allow_local,
            urls: Vec::new(),
            rejected: 0,
            index: None,
        }
    }

    /// One (trimmed, non-blank) candidate.
    fn push(&mut self, raw: &str) {
        if !has_ws_scheme(raw) {
            self.rejected += 1;
            return;
        }
        // `parse` is idempotent and drops a trailing `/`, so a candidate equal to an accepted
        // canonical URL (plus at most one `/`) would parse to that URL: a duplicate.
        if self.contains(raw.strip_suffix('/').unwrap_or(raw)) {
            return;
        }
        let parsed = if self.allow_local {
            RelayUrl::parse_allowing_local(raw)
        } else {
            RelayUrl::parse(raw)
        };
        match parsed {
            Ok(url) if !self.contains(url.as_str()) => self.insert(url),
            Ok(_) => {}
            Err(_) => self.rejected += 1,
        }
    }

    fn contains(&self, canonical: &str) -> bool {
        let linear = || self.urls.iter().any(|u| u.as_str() == canonical);
        match &self.index {
            None => linear(),
            Some((state, map)) => match map.get(&state.hash_one(canonical)) {
                None => false,
                Some(&i) if self.urls[i].as_str() == canonical => true,
                Some(_) => linear(), // hash collision
            },
        }
    }

    fn insert(&mut self, url: RelayUrl) {
        if let Some((state, map)) = &mut self.index {
            map.entry(state.hash_one(url.as_str()))
                .or_insert(self.urls.len());
        }
        self.urls.push(url);
        if self.index.is_none() && self.urls.len() > LINEAR_DEDUPE_MAX {
            let state = RandomState::new();
            let mut map = HashMap::with_capacity(self.urls.len() * 2);
            for (i, u) in self.urls.iter().enumerate() {
                map.entry(state.hash_one(u.as_str())).or_insert(i);
            }
            self.index = Some((state, map));
        }
    }

    fn finish(self) -> Hints {
        Hints {
            urls: self.urls,
            rejected: self.rejected,
        }
    }
}

/// Whether `s` starts with `ws://` or `wss://`, in any case: a necessary condition for
/// [`RelayUrl::parse`] on a trimmed string, and much cheaper.
fn has_ws_scheme(s: &str) -> bool {
    let rest = match s.as_bytes() {
        [w, s, rest @ ..] if w.eq_ignore_ascii_case(&b'w') && s.eq_ignore_ascii_case(&b's') => rest,
        _ => return false,
    };
    let rest = match rest {
        [s, tail @ ..] if s.eq_ignore_ascii_case(&b's') => tail,
        _ => rest,
    };
    rest.starts_with(b"://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use HintSource::*;

    fn tags(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter()
            .map(|tag| tag.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    fn urls(h: &Hints) -> Vec<&str> {
        h.urls.iter().map(RelayUrl::as_str).collect()
    }

    fn row(kind: i32, tags_json: &str, content: &str) -> EventRow {
        EventRow {
            id: [0; 32],
            pubkey: [0; 32],
            created_at: 0,
            kind,
            tags_json: tags_json.to_owned(),
            tagvalues: Vec::new(),
            content: content.to_owned(),
            sig: [0; 64],
        }
    }

    /// The straightforward implementation: parse every raw hint, dedupe by linear scan.
    fn reference(kind: i32, t: &[Vec<String>], content: &str, allow_local: bool) -> Hints {
        let mut h = Hints::default();
        for (_, raw) in raw_hints(kind, t, content) {
            let parsed = if allow_local {
                RelayUrl::parse_allowing_local(raw)
            } else {
                RelayUrl::parse(raw)
            };
            match parsed {
                Ok(u) if !h.urls.contains(&u) => h.urls.push(u),
                Ok(_) => {}
                Err(_) => h.rejected += 1,
            }
        }
        h
    }

    /// (name, kind, tags, content, expected raw hints)
    type RawCase<'a> = (
        &'a str,
        i32,
        Vec<Vec<String>>,
        &'a str,
        Vec<(HintSource, &'a str)>,
    );
    /// (name, kind, tags, content, allow_local, expected URLs, expected rejected)
    type HintsCase<'a> = (
        &'a str,
        i32,
        Vec<Vec<String>>,
        &'a str,
        bool,
        Vec<&'a str>,
        usize,
    );

    const ID: &str = "b3e392b11f5d4f28321cedd09303a748acfd0487aea5a7450b3481c60b6e4f87";

    #[test]
    fn source_labels_are_stable_and_distinct() {
        let labels: Vec<&str> = HintSource::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            labels,
            [
                "r_tag",
                "kind3_content",
                "kind2_content",
                "tag_hint",
                "nip66_d"
            ]
        );
        assert_eq!(MonitorReport.to_string(), "nip66_d");
    }

    #[test]
    #[rustfmt::skip]
    fn raw_hints_by_source() {
        let huge = format!(r#"{{"wss://a.com":{{}},"pad":"{}"}}"#, "x".repeat(MAX_CONTACT_CONTENT_BYTES));
        let long_kind2 = format!("wss://a.com/{}", "a".repeat(MAX_RECOMMEND_CONTENT_BYTES));
        let cases: Vec<RawCase> = vec![
            ("kind 10002 r tags with and without markers",
             10002, tags(&[&["r", "wss://a.com"], &["r", "wss://b.com/", "read"], &["r", " wss://c.com ", "write"], &["r"], &["r", ""], &["R", "wss://no.com"]]), "",
             vec![(RTag, "wss://a.com"), (RTag, "wss://b.com/"), (RTag, "wss://c.com")]),
            ("r tags outside kind 10002 are web URLs, ignored",
             1, tags(&[&["r", "https://example.com/page"], &["r", "wss://relay.example.com"]]), "", vec![]),
            ("r tags of kind 3 are ignored too", 3, tags(&[&["r", "wss://a.com"]]), "", vec![]),
            ("kind 3 content keys in document order",
             3, vec![], r#" {"wss://b.com":{"read":true,"write":true}, "wss://a.com/":{"read":false,"write":true}, "  ":{}, "x":null} "#,
             vec![(ContactListContent, "wss://b.com"), (ContactListContent, "wss://a.com/"), (ContactListContent, "x")]),
            ("kind 3 nested values are skipped", 3, vec![], r#"{"wss://a.com":{"x":[1,{"y":[]}]}}"#, vec![(ContactListContent, "wss://a.com")]),
            ("kind 3 key with JSON escapes is skipped", 3, vec![], r#"{"wss:\/\/e.com":{},"wss://p.com":{}}"#, vec![(ContactListContent, "wss://p.com")]),
            ("kind 3 empty content", 3, vec![], "", vec![]),
            ("kind 3 invalid JSON", 3, vec![], r#"{"wss://a.com":"#, vec![]),
            ("kind 3 trailing garbage", 3, vec![], r#"{"wss://a.com":{}} x"#, vec![]),
            ("kind 3 array", 3, vec![], r#"["wss://a.com"]"#, vec![]),
            ("kind 3 string", 3, vec![], r#""wss://a.com""#, vec![]),
            ("kind 3 over 256 KiB", 3, vec![], &huge, vec![]),
            ("kind 3 object content in another kind", 1, vec![], r#"{"wss://a.com":{}}"#, vec![]),
            ("kind 2 content trimmed", 2, vec![], "  wss://relay.example.com\n", vec![(RecommendRelay, "wss://relay.example.com")]),
            ("kind 2 blank content", 2, vec![], " \n", vec![]),
            ("kind 2 content over 2048 bytes", 2, vec![], &long_kind2, vec![]),
            ("kind 1 content URL is not a hint", 1, vec![], "wss://relay.example.com", vec![]),
            ("e/p/a/q hints at index 2, in any kind",
             1, tags(&[&["e", ID, "wss://e.com", "reply"], &["p", ID, ""], &["p", ID], &["a", "30023:ab:d", "wss://a.com"],
                       &["q", ID, "garbage"], &["e", ID, "http://h.com"], &["t", "x", "wss://t.com"], &["relay", "wss://m.com"], &[]]), "",
             vec![(TagHint, "wss://e.com"), (TagHint, "wss://a.com"), (TagHint, "garbage"), (TagHint, "http://h.com")]),
            ("30166 first d tag only", 30166, tags(&[&["d", "wss://monitored.com/"], &["n", "clearnet"], &["d", "wss://second.com"]]), "",
             vec![(MonitorReport, "wss://monitored.com/")]),
            ("30166 valueless first d tag hides the next", 30166, tags(&[&["d"], &["d", "wss://second.com"]]), "", vec![]),
            ("d tag of other addressable kinds ignored", 30023, tags(&[&["d", "wss://a.com"]]), "", vec![]),
            ("content before tags", 3, tags(&[&["p", ID, "wss://p.com"]]), r#"{"wss://c.com":{}}"#,
             vec![(ContactListContent, "wss://c.com"), (TagHint, "wss://p.com")]),
        ];
        for (name, kind, t, content, want) in cases {
            assert_eq!(raw_hints(kind, &t, content), want, "{name}");
        }
    }

    #[test]
    fn kind3_keys_are_capped() {
        let keys: Vec<String> = (0..MAX_CONTACT_KEYS + 5)
            .map(|i| format!(r#""wss://r{i}.com":{{"read":true}}"#))
            .collect();
        let content = format!("{{{}}}", keys.join(","));
        let raw = raw_hints(3, &[], &content);
        assert_eq!(raw.len(), MAX_CONTACT_KEYS);
        assert_eq!(raw[999], (ContactListContent, "wss://r999.com"));
        // Entries past the cap must still be valid JSON.
        let broken = format!("{{{},\"x\":}}", keys.join(","));
        assert!(raw_hints(3, &[], &broken).is_empty());
    }

    #[test]
    #[rustfmt::skip]
    fn relay_hints_parse_dedupe_and_count() {
        let cases: Vec<HintsCase> = vec![
            ("dedupe across sources, canonical forms",
             3, tags(&[&["p", ID, "wss://relay.damus.io/"], &["e", ID, "WSS://Relay.Damus.IO:443"], &["p", ID, "wss://nos.lol"]]),
             r#"{"wss://relay.damus.io":{"read":true,"write":true},"wss://nos.lol/":{}}"#, false,
             vec!["wss://relay.damus.io", "wss://nos.lol"], 0),
            ("local hints rejected and counted",
             1, tags(&[&["p", ID, "ws://127.0.0.1:7777"], &["p", ID, "wss://10.0.0.5"], &["e", ID, "ws://localhost:8080"], &["q", ID, "ws://[::1]"], &["p", ID, "wss://ok.com"]]),
             "", false, vec!["wss://ok.com"], 4),
            ("local hints kept when allowed",
             1, tags(&[&["p", ID, "ws://127.0.0.1:7777"], &["p", ID, "wss://10.0.0.5"], &["e", ID, "ws://localhost:8080"], &["q", ID, "ws://[::1]"]]),
             "", true, vec!["ws://127.0.0.1:7777", "wss://10.0.0.5", "ws://localhost:8080", "ws://[::1]"], 0),
            ("clearnet ws:// stays ws", 10002, tags(&[&["r", "ws://plain.example.com:80/"], &["r", "wss://tls.example.com"]]), "", false,
             vec!["ws://plain.example.com", "wss://tls.example.com"], 0),
            ("overlay forced to ws", 2, vec![], "wss://relay.i2p", false, vec!["ws://relay.i2p"], 0),
            ("garbage, http and bad URLs counted; blanks are not candidates",
             1, tags(&[&["p", ID, "garbage"], &["e", ID, "http://h.com"], &["a", "1:x:y", "wss://"], &["q", ID, "wss://no_dot"], &["p", ID, " "], &["p", ID, ""]]),
             "", false, vec![], 4),
            ("every rejected occurrence counts", 1, tags(&[&["p", ID, "wss://10.0.0.5"], &["p", ID, "wss://10.0.0.5"]]), "", false, vec![], 2),
            ("30166 d tag", 30166, tags(&[&["d", "wss://Monitored.Example.com/"]]), "", false, vec!["wss://monitored.example.com"], 0),
            ("no candidates", 1, tags(&[&["e", ID], &["p", ID], &["t", "nostr"]]), "gm", false, vec![], 0),
        ];
        for (name, kind, t, content, allow_local, want, rejected) in cases {
            let h = relay_hints(kind, &t, content, allow_local);
            assert_eq!((urls(&h), h.rejected), (want, rejected), "{name}");
            assert_eq!(h, reference(kind, &t, content, allow_local), "{name}: reference");
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(relay_hints_from_row(&row(kind, &json, content), allow_local), h, "{name}: from_row");
        }
    }

    #[test]
    fn dedupe_past_the_linear_threshold_keeps_first_seen_order() {
        let n = 3 * LINEAR_DEDUPE_MAX;
        let content = format!(
            "{{{}}}",
            (0..n)
                .map(|i| format!(r#""wss://r{i}.com":{{}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut t: Vec<Vec<String>> = Vec::new();
        for i in (0..n).rev() {
            for hint in [format!("wss://r{i}.com"), format!("wss://R{i}.com/")] {
                t.push(vec!["p".into(), ID.into(), hint]);
            }
        }
        t.push(vec!["p".into(), ID.into(), "wss://new.com".into()]);
        let h = relay_hints(3, &t, &content, false);
        let mut want: Vec<String> = (0..n).map(|i| format!("wss://r{i}.com")).collect();
        want.push("wss://new.com".into());
        assert_eq!(urls(&h), want);
        assert_eq!(h.rejected, 0);
    }

    #[test]
    fn no_candidate_allocates_nothing() {
        let t = tags(&[&["e", ID], &["p", ID, ""], &["t", "nostr"], &["d", ""]]);
        let json = serde_json::to_string(&t).unwrap();
        for (kind, content) in [
            (1, "gm"),
            (2, ""),
            (3, ""),
            (3, "[]"),
            (7, "+"),
            (10002, ""),
            (30166, ""),
        ] {
            assert_eq!(raw_hints(kind, &t, content).capacity(), 0, "kind {kind}");
            let h = relay_hints(kind, &t, content, false);
            assert_eq!((h.urls.capacity(), h.rejected), (0, 0), "kind {kind}");
            let h = relay_hints_from_row(&row(kind, &json, content), false);
            assert_eq!((h.urls.capacity(), h.rejected), (0, 0), "kind {kind}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn from_row_handles_escapes_and_malformed_tags() {
        let cases = [
            ("escaped hint", 1, r#"[["p","x","wss:\/\/esc.com\u002f"]]"#, "", vec!["wss://esc.com"]),
            ("escaped tag name", 1, r#"[["\u0070","x","wss://p.com"]]"#, "", vec!["wss://p.com"]),
            ("malformed JSON: no tags, content kept", 2, r#"[["p","x","wss://p.com"]"#, "wss://c.com", vec!["wss://c.com"]),
            ("non-string element", 1, r#"[["p","x","wss://p.com"],["t",1]]"#, "", vec![]),
            ("not an array", 1, r#"{"p":"wss://p.com"}"#, "", vec![]),
            ("trailing garbage", 1, r#"[["p","x","wss://p.com"]]]"#, "", vec![]),
            ("empty tag and long tag", 1, r#"[[],["e","x","wss://e.com","root","pk","extra"]]"#, "", vec!["wss://e.com"]),
        ];
        for (name, kind, json, content, want) in cases {
            let h = relay_hints_from_row(&row(kind, json, content), false);
            assert_eq!(urls(&h), want, "{name}");
            if let Ok(t) = serde_json::from_str::<Vec<Vec<String>>>(json) {
                assert_eq!(relay_hints(kind, &t, content, false), h, "{name}");
            }
        }
    }

    #[test]
    fn scheme_prefix_check() {
        for (s, want) in [
            ("ws://a", true),
            ("wss://a", true),
            ("WsS://a", true),
            ("WS://", true),
            ("ws:/a", false),
            ("wsss://a", false),
            ("http://a", false),
            ("w", false),
            ("", false),
            ("wß://", false),
        ] {
            assert_eq!(has_ws_scheme(s), want, "{s:?}");
        }
    }

    #[test]
    fn random_events_never_panic_and_match_the_reference() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        const NAMES: &[&str] = &["e", "p", "a", "q", "r", "d", "t", "relay", "", "E"];
        const VALUES: &[&str] = &[
            "",
            " ",
            "wss://relay.damus.io",
            "wss://relay.damus.io/",
            "WSS://Relay.Damus.IO:443/",
            "ws://plain.example.com",
            "ws://127.0.0.1:7777",
            "wss://10.0.0.5",
            "ws://localhost",
            "ws://[::1]",
            "wss://relay.i2p",
            "http://example.com",
            "wss://",
            "wss://no_dot",
            "wss://a.com/\0",
            "garbage",
            "read",
            "write",
            "é",
            "\"",
            "\\",
            "{",
        ];
        const KINDS: &[i32] = &[1, 2, 3, 7, 10002, 30166, 30023];
        let mut rng = StdRng::seed_from_u64(0x41_4e_54);
        let pick = |rng: &mut StdRng, from: &[&'static str]| from[rng.random_range(0..from.len())];
        let mut found = 0;
        for _ in 0..400 {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let mut t = Vec::new();
            for _ in 0..rng.random_range(0..30) {
                let mut tag = Vec::new();
                for i in 0..rng.random_range(0..5) {
                    let mut s = if i == 0 {
                        pick(&mut rng, NAMES).to_owned()
                    } else {
                        pick(&mut rng, VALUES).to_owned()
                    };
                    if rng.random_range(0..8) == 0 {
                        s.push(rng.random::<char>());
                    }
                    if rng.random_range(0..4) == 0 {
                        s = format!("wss://r{}.com", rng.random_range(0..40));
                    }
                    tag.push(s);
                }
                t.push(tag);
            }
            let content = match rng.random_range(0..4) {
                0 => String::new(),
                1 => pick(&mut rng, VALUES).to_owned(),
                2 => {
                    let keys: Vec<String> = (0..rng.random_range(0..40))
                        .map(|_| {
                            serde_json::to_string(&format!(
                                "wss://k{}.com",
                                rng.random_range(0..60)
                            ))
                            .unwrap()
                                + ":{}"
                        })
                        .collect();
                    format!("{{{}}}", keys.join(","))
                }
                _ => (0..rng.random_range(0..20))
                    .map(|_| rng.random::<char>())
                    .collect(),
            };
            let json = serde_json::to_string(&t).unwrap();
            for allow_local in [false, true] {
                let raw = raw_hints(kind, &t, &content);
                assert!(raw.iter().all(|(_, r)| !r.is_empty() && r.trim() == *r));
                let h = relay_hints(kind, &t, &content, allow_local);
                assert_eq!(h, reference(kind, &t, &content, allow_local));
                assert_eq!(
                    relay_hints_from_row(&row(kind, &json, &content), allow_local),
                    h
                );
                assert!(h.urls.len() + h.rejected <= raw.len());
                assert!(allow_local || h.urls.iter().all(|u| !u.is_local()));
                found += h.urls.len();
                // Truncated tags_json must not panic either.
                let cut = json.floor_char_boundary(rng.random_range(0..=json.len()));
                let _ = relay_hints_from_row(&row(kind, &json[..cut], &content), allow_local);
            }
        }
        assert!(found > 1000, "generator too weak: {found} URLs");
    }
}
