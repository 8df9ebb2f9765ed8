//! Reads of the archive, compiled: a NIP-01 filter (or the HTTP API's, which is the same plus a
//! keyset cursor) becomes one [`EventQuery`], checked against [`QueryLimits`], and then one SQL
//! statement per dialect. No I/O here: the stores run what this builds, so the relay, the HTTP
//! routes and any later reader share one definition of what a filter means.
//!
//! Order is NIP-01's: newest first, and on equal `created_at` the lowest id first. A keyset
//! [`Cursor`] continues after the last row of a page in that order. The row comparison
//! `(created_at, id) < (c, i)` would page ids the wrong way on ties, so the condition is written
//! out as `created_at <= c AND (created_at < c OR id > i)`, whose first half the
//! `(created_at, id)` index serves as a range.

use std::collections::BTreeMap;
use std::fmt;

use nostr::Filter;

use crate::model::Schema;

/// Which SQL dialect a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// Bounds on what one filter may ask for. The NIP-11 document advertises the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Largest `limit`; larger ones are clamped to it (NIP-01 lets a relay return fewer).
    pub max_limit: u32,
    /// `limit` when a filter has none.
    pub default_limit: u32,
    /// Most values in `ids`.
    pub max_ids: usize,
    /// Most values in `authors`.
    pub max_authors: usize,
    /// Most values in `kinds`.
    pub max_kinds: usize,
    /// Most values over all `#x` tag lists of one filter.
    pub max_tag_values: usize,
    /// Longest tag value, in bytes (longer ones are never indexed, so they could never match).
    pub max_tag_value_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_limit: 500,
            default_limit: 500,
            max_ids: 500,
            max_authors: 500,
            max_kinds: 50,
            max_tag_values: 500,
            max_tag_value_bytes: crate::model::event::MAX_TAGVALUE_BYTES,
        }
    }
}

/// Why a filter is refused. The message names the field and the bound, for `CLOSED "invalid: …"`
/// and HTTP 400 alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{field}: {got} values, at most {max} allowed")]
    TooMany {
        field: &'static str,
        got: usize,
        max: usize,
    },
    #[error("{field}: {reason}")]
    BadValue { field: String, reason: String },
    #[error("search (NIP-50) is not supported by this archive")]
    Search,
}

/// A position in NIP-01 order: the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: [u8; 32],
}

impl Cursor {
    /// The opaque form handed to HTTP clients: 80 hex digits (big-endian `created_at`, then id).
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(40);
        bytes.extend_from_slice(&self.created_at.to_be_bytes());
        bytes.extend_from_slice(&self.id);
        hex::encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Self, QueryError> {
        let bad = |reason: &str| QueryError::BadValue {
            field: "cursor".into(),
            reason: reason.into(),
        };
        if text.len() != 80 {
            return Err(bad("not a cursor this API returned (wrong length)"));
        }
        let bytes = hex::decode(text).map_err(|_| bad("not a cursor this API returned"))?;
        let (t, id) = bytes.split_at(8);
        let created_at = i64::from_be_bytes(t.try_into().map_err(|_| bad("bad time"))?);
        let id: [u8; 32] = id.try_into().map_err(|_| bad("bad id"))?;
        Ok(Cursor { created_at, id })
    }
}

/// One filter, checked and normalized: the unit every read of events is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventQuery {
    /// `None`: any; `Some(empty)`: nothing can match (NIP-01: a list is OR'd, an empty OR is
    /// false).
    pub ids: Option<Vec<[u8; 32]>>,
    pub authors: Option<Vec<[u8; 32]>>,
    pub kinds: Option<Vec<i32>>,
    /// `#x` lists by letter: every letter must match (AND), any value of its list (OR), on the
    /// first value of an `x` tag.
    pub tags: BTreeMap<char, Vec<String>>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Rows to return, after clamping. 0 is allowed (NIP-01: only live events).
    pub limit: u32,
    /// Continue after this row (HTTP keyset paging).
    pub after: Option<Cursor>,
    /// Kinds never returned whatever the filter says (the api's `hiddenKinds`: direct messages
    /// a relay serves only to their recipient after NIP-42 AUTH).
    pub hidden_kinds: Vec<i32>,
}

impl EventQuery {
    /// Checks a NIP-01 filter against `limits` and normalizes it.
    pub fn from_filter(filter: &Filter, limits: &QueryLimits) -> Result<Self, QueryError> {
        if filter.search.is_some() {
            return Err(QueryError::Search);
        }
        let ids = filter
            .ids
            .as_ref()
            .map(|s| s.iter().map(|id| id.to_bytes()).collect::<Vec<_>>());
        let authors = filter
            .authors
            .as_ref()
            .map(|s| s.iter().map(|pk| pk.to_bytes()).collect::<Vec<_>>());
        let kinds = filter
            .kinds
            .as_ref()
            .map(|s| s.iter().map(|k| i32::from(k.as_u16())).collect::<Vec<_>>());
        let mut tags = BTreeMap::new();
        for (letter, values) in filter.generic_tags.iter() {
            tags.insert(letter.as_char(), values.iter().cloned().collect::<Vec<_>>());
        }
        let time = |t: Option<nostr::Timestamp>, field: &str| -> Result<Option<i64>, QueryError> {
            t.map(|t| {
                i64::try_from(t.as_secs()).map_err(|_| QueryError::BadValue {
                    field: field.into(),
                    reason: format!("{} is out of range", t.as_secs()),
                })
            })
            .transpose()
        };
        let limit = match filter.limit {
            None => limits.default_limit,
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        };
        EventQuery {
            ids,
            authors,
            kinds,
            tags,
            since: time(filter.since, "since")?,
            until: time(filter.until, "until")?,
            limit,
            after: None,
            hidden_kinds: Vec::new(),
        }
        .checked(limits)
    }

    /// Checks the list sizes and values against `limits` and clamps `limit`.
    pub fn checked(mut self, limits: &QueryLimits) -> Result<Self, QueryError> {
        let too_many = |field: &'static str, got: usize, max: usize| {
            if got > max {
                Err(QueryError::TooMany { field, got, max })
            } else {
                Ok(())
            }
        };
        too_many("ids", self.ids.as_ref().map_or(0, Vec::len), limits.max_ids)?;
        too_many(
            "authors",
            self.authors.as_ref().map_or(0, Vec::len),
            limits.max_authors,
        )?;
        too_many(
            "kinds",
            self.kinds.as_ref().map_or(0, Vec::len),
            limits.max_kinds,
        )?;
        too_many(
            "tags",
            self.tags.values().map(Vec::len).sum(),
            limits.max_tag_values,
        )?;
        for (letter, values) in &self.tags {
            if !letter.is_ascii_alphabetic() {
                return Err(QueryError::BadValue {
                    field: format!("#{letter}"),
                    reason: "tag filters are single letters a-z, A-Z".into(),
                });
            }
            if let Some(v) = values.iter().find(|v| v.len() > limits.max_tag_value_bytes) {
                return Err(QueryError::BadValue {
                    field: format!("#{letter}"),
                    reason: format!(
                        "a value of {} bytes, at most {} allowed",
                        v.len(),
                        limits.max_tag_value_bytes
                    ),
                });
            }
            if values.iter().any(|v| v.contains('\0')) {
                return Err(QueryError::BadValue {
                    field: format!("#{letter}"),
                    reason: "a value contains a NUL character".into(),
                });
            }
        }
        self.limit = self.limit.min(limits.max_limit);
        Ok(self)
    }

    /// Whether no row can match, so no statement needs to run.
    pub fn is_empty(&self) -> bool {
        fn empty<T>(l: &Option<Vec<T>>) -> bool {
            l.as_ref().is_some_and(Vec::is_empty)
        }
        empty(&self.ids)
            || empty(&self.authors)
            || empty(&self.kinds)
            || self
                .kinds
                .as_ref()
                .is_some_and(|k| k.iter().all(|k| self.hidden_kinds.contains(k)))
            || self.tags.values().any(Vec::is_empty)
            || matches!((self.since, self.until), (Some(s), Some(u)) if s > u)
    }

    /// Whether a stored event matches (the live tail filters new rows with this, so it must
    /// agree with the SQL).
    pub fn matches(
        &self,
        id: &[u8; 32],
        pubkey: &[u8; 32],
        created_at: i64,
        kind: i32,
        tagvalues: &[String],
    ) -> bool {
        !self.hidden_kinds.contains(&kind)
            && self.ids.as_ref().is_none_or(|l| l.contains(id))
            && self.authors.as_ref().is_none_or(|l| l.contains(pubkey))
            && self.kinds.as_ref().is_none_or(|l| l.contains(&kind))
            && self.since.is_none_or(|s| created_at >= s)
            && self.until.is_none_or(|u| created_at <= u)
            && self.tags.iter().all(|(letter, values)| {
                values.iter().any(|v| {
                    tagvalues.iter().any(|tv| {
                        tv.len() == v.len() + 2
                            && tv.starts_with(*letter)
                            && tv.as_bytes().get(1) == Some(&b':')
                            && tv.ends_with(v.as_str())
                    })
                })
            })
    }
}

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Int(i64),
    Bytes(Vec<u8>),
    Text(String),
    /// PostgreSQL arrays (`= ANY($n)`, `&& $n`); SQLite statements never use these.
    Ints(Vec<i32>),
    ByteArrays(Vec<Vec<u8>>),
    Texts(Vec<String>),
}

/// A statement and its binds, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Builds a statement's text and binds together, so the placeholders always line up.
struct Builder {
    dialect: Dialect,
    text: String,
    binds: Vec<Bind>,
}

impl Builder {
    fn new(dialect: Dialect) -> Self {
        Builder {
            dialect,
            text: String::new(),
            binds: Vec::new(),
        }
    }

    /// Adds a bind and returns its placeholder.
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        match self.dialect {
            Dialect::Postgres => format!("${}", self.binds.len()),
            Dialect::Sqlite => "?".into(),
        }
    }

    /// `col = ANY($n)` (PostgreSQL) or `col IN (?, …)` (SQLite) for a list of blobs.
    fn bytes_in(&mut self, col: &str, list: &[[u8; 32]]) -> String {
        match self.dialect {
            Dialect::Postgres if list.len() == 1 => {
                let p = self.bind(Bind::Bytes(list[0].to_vec()));
                format!("{col} = {p}")
            }
            Dialect::Postgres => {
                let p = self.bind(Bind::ByteArrays(list.iter().map(|b| b.to_vec()).collect()));
                format!("{col} = ANY({p})")
            }
            Dialect::Sqlite => {
                let ps: Vec<String> = list
                    .iter()
                    .map(|b| self.bind(Bind::Bytes(b.to_vec())))
                    .collect();
                format!("{col} IN ({})", ps.join(", "))
            }
        }
    }

    fn ints_in(&mut self, col: &str, list: &[i32]) -> String {
        match self.dialect {
            Dialect::Postgres if list.len() == 1 => {
                let p = self.bind(Bind::Int(i64::from(list[0])));
                format!("{col} = {p}")
            }
            Dialect::Postgres => {
                let p = self.bind(Bind::Ints(list.to_vec()));
                format!("{col} = ANY({p})")
            }
            Dialect::Sqlite => {
                let ps: Vec<String> = list
                    .iter()
                    .map(|k| self.bind(Bind::Int(i64::from(*k))))
                    .collect();
                format!("{col} IN ({})", ps.join(", "))
            }
        }
    }

    /// The event matches one value of the list for tag `letter`.
    fn tag_in(&mut self, schema: Schema, letter: char, values: &[String]) -> String {
        match self.dialect {
            Dialect::Postgres => {
                // The GIN index is on this exact expression (migration 0008).
                let expr = match schema {
                    Schema::Full => "tagvalues_to_tagkeys(tags_to_tagvalues(tags))",
                    Schema::Lite => "tagvalues_to_tagkeys(tagvalues)",
                };
                let keys = values.iter().map(|v| tag_key(letter, v)).collect();
                let p = self.bind(Bind::ByteArrays(keys));
                format!("{expr} && {p}")
            }
            Dialect::Sqlite => {
                let keys: Vec<String> = values.iter().map(|v| format!("{letter}:{v}")).collect();
                let ps: Vec<String> = keys.into_iter().map(|k| self.bind(Bind::Text(k))).collect();
                format!(
                    "EXISTS (SELECT 1 FROM json_each(event.tagvalues) AS tv WHERE tv.value IN ({}))",
                    ps.join(", ")
                )
            }
        }
    }

    fn finish(self) -> Sql {
        Sql {
            text: self.text,
            binds: self.binds,
        }
    }
}

/// The PostgreSQL tag index's key for one value of tag `letter`: a 64-character lowercase hex value
/// (an id or a pubkey) as `<letter> NUL <its 32 bytes>`, any other as the UTF-8 of
/// `<letter>:<value>`. Text holds no NUL, so the two forms never meet. The same encoding as the
/// SQL function `tagvalues_to_tagkeys` (migration 0008), which builds the index side.
pub fn tag_key(letter: char, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + value.len());
    key.extend_from_slice(letter.encode_utf8(&mut [0u8; 4]).as_bytes());
    let lower_hex = value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match lower_hex.then(|| hex::decode(value)) {
        Some(Ok(bytes)) => {
            key.push(0);
            key.extend_from_slice(&bytes);
        }
        _ => {
            key.push(b':');
            key.extend_from_slice(value.as_bytes());
        }
    }
    key
}

/// The `WHERE` conditions of `q` (without `WHERE`; `TRUE` when there are none).
fn conditions(b: &mut Builder, schema: Schema, q: &EventQuery) -> String {
    let mut conds: Vec<String> = Vec::new();
    if let Some(ids) = &q.ids {
        conds.push(b.bytes_in("id", ids));
    }
    if let Some(authors) = &q.authors {
        conds.push(b.bytes_in("pubkey", authors));
    }
    if let Some(kinds) = &q.kinds {
        conds.push(b.ints_in("kind", kinds));
    }
    if !q.hidden_kinds.is_empty() {
        let hidden = b.ints_in("kind", &q.hidden_kinds);
        conds.push(format!("NOT ({hidden})"));
    }
    for (letter, values) in &q.tags {
        conds.push(b.tag_in(schema, *letter, values));
    }
    if let Some(since) = q.since {
        let p = b.bind(Bind::Int(since));
        conds.push(format!("created_at >= {p}"));
    }
    if let Some(until) = q.until {
        let p = b.bind(Bind::Int(until));
        conds.push(format!("created_at <= {p}"));
    }
    if let Some(c) = q.after {
        let t1 = b.bind(Bind::Int(c.created_at));
        let t2 = b.bind(Bind::Int(c.created_at));
        let id = b.bind(Bind::Bytes(c.id.to_vec()));
        conds.push(format!(
            "created_at <= {t1} AND (created_at < {t2} OR id > {id})"
        ));
    }
    if conds.is_empty() {
        "TRUE".into()
    } else {
        conds.join(" AND ")
    }
}

/// The columns of [`events`] (see there) in `dialect` for `schema`.
fn event_columns(dialect: Dialect, schema: Schema) -> &'static str {
    match (dialect, schema) {
        // The tags go out as JSON; their tag values (what the live tail matches on) are not
        // computed for a read: about 15 µs of the server's time per event.
        (Dialect::Postgres, Schema::Full) => {
            "id, pubkey, created_at, kind, '{}'::text[], tags::text, content, sig"
        }
        (Dialect::Postgres, Schema::Lite) => {
            "id, pubkey, created_at, kind, tagvalues, NULL::text, NULL::text, NULL::bytea"
        }
        (Dialect::Sqlite, Schema::Full) => {
            "id, pubkey, created_at, kind, tagvalues, tags, content, sig"
        }
        (Dialect::Sqlite, Schema::Lite) => {
            "id, pubkey, created_at, kind, tagvalues, NULL, NULL, NULL"
        }
    }
}

/// Columns of [`events`], in order: id, pubkey, created_at, kind, tagvalues, tags (JSON text),
/// content, sig. A lite schema returns NULL for the last three.
pub fn events(dialect: Dialect, schema: Schema, q: &EventQuery) -> Sql {
    if dialect == Dialect::Postgres
        && let Some(pairs) = q.pairs()
    {
        return events_by_pairs(schema, q, &pairs);
    }
    let mut b = Builder::new(dialect);
    let cols = event_columns(dialect, schema);
    let cond = conditions(&mut b, schema, q);
    let limit = b.bind(Bind::Int(i64::from(q.limit)));
    b.text = format!(
        "SELECT {cols} FROM event WHERE {cond} ORDER BY created_at DESC, id ASC LIMIT {limit}"
    );
    b.finish()
}

/// Most `(author, kind)` branches one PostgreSQL read merges (see [`events_by_pairs`]).
pub const MAX_PAIRS: usize = 64;

/// Most authors of a kind-less filter for which the PostgreSQL store first looks up the kinds
/// they have ([`author_kinds`]), to read them branch by branch.
pub const MAX_AUTHORS_BY_KIND: usize = 8;

impl EventQuery {
    /// The `(author, kind)` pairs a PostgreSQL read can take one index range at a time: both
    /// lists given, no ids, at most [`MAX_PAIRS`] combinations, hidden kinds left out.
    pub fn pairs(&self) -> Option<Vec<([u8; 32], i32)>> {
        let (Some(authors), Some(kinds), None) = (&self.authors, &self.kinds, &self.ids) else {
            return None;
        };
        let kinds: Vec<i32> = kinds
            .iter()
            .copied()
            .filter(|k| !self.hidden_kinds.contains(k))
            .collect();
        if authors.len().saturating_mul(kinds.len()) > MAX_PAIRS {
            return None;
        }
        Some(
            authors
                .iter()
                .flat_map(|a| kinds.iter().map(move |k| (*a, *k)))
                .collect(),
        )
    }

    /// Whether the PostgreSQL store should look up the kinds of the authors first: a few
    /// authors, no kinds, no ids ([`author_kinds`], then [`events_by_pairs`]).
    pub fn wants_author_kinds(&self) -> bool {
        self.ids.is_none()
            && self.kinds.is_none()
            && self
                .authors
                .as_ref()
                .is_some_and(|a| !a.is_empty() && a.len() <= MAX_AUTHORS_BY_KIND)
    }
}

/// Estimated matches (the planner's, from its statistics of the tag index) from which the
/// PostgreSQL store reads a tag filter in a window of the newest events rather than whole. The tag
/// index yields matches in no order, so a tag read whole fetches and sorts every match; a window
/// holding about twice `limit` matches fetches that many. Below this, reading whole is cheaper.
pub const TAG_WINDOW_FROM: f64 = 20_000.0;

/// Estimated matches from which the window is read by walking the time index newest first and
/// testing each event's tags with a cheap containment test, instead of intersecting the window
/// with the tag index: reading the tag index costs in proportion to all of a tag's matches
/// (about 0.2 µs each here), the walk in proportion to `limit` over the tag's share of events.
pub const TAG_WALK_FROM: f64 = 150_000.0;

impl EventQuery {
    /// Whether the PostgreSQL store weighs windows for this filter: tags, and none of ids,
    /// authors or kinds, whose indexes come first.
    pub fn wants_tag_window(&self) -> bool {
        !self.tags.is_empty()
            && self.ids.is_none()
            && self.authors.is_none()
            && self.kinds.is_none()
            && self.limit > 0
    }

    /// The newest second the filter asks for: `until` or the cursor's, whichever is lower.
    pub fn upper(&self) -> Option<i64> {
        [self.until, self.after.map(|c| c.created_at)]
            .into_iter()
            .flatten()
            .min()
    }
}

/// How many of the newest events (at or below `upper`) hold about twice `limit` matches of a tag
/// with `matches` estimated matches among `total` events.
pub fn tag_window_depth(limit: u32, matches: f64, total: f64) -> Option<i64> {
    if matches < TAG_WINDOW_FROM || total <= 0.0 || !total.is_finite() {
        return None;
    }
    let depth = (2.0 * f64::from(limit) * total / matches).ceil();
    Some((depth as i64).max(i64::from(limit)))
}

/// `SELECT 1` over the tag conditions of `q` alone, to be EXPLAINed: the planner's estimate of
/// its matches (PostgreSQL).
pub fn tag_matches(schema: Schema, q: &EventQuery) -> Sql {
    let mut b = Builder::new(Dialect::Postgres);
    let conds: Vec<String> = q
        .tags
        .iter()
        .map(|(letter, values)| b.tag_in(schema, *letter, values))
        .collect();
    b.text = format!("SELECT 1 FROM event WHERE {}", conds.join(" AND "));
    b.finish()
}

/// The event count of the archive as the planner knows it, then the `created_at` of the event
/// `depth` places below the newest at or under `upper` (NULL when there are fewer): where a
/// window of that many events starts.
pub fn events_total() -> Sql {
    Sql {
        text: "SELECT reltuples::float8 FROM pg_class WHERE oid = 'event'::regclass".into(),
        binds: Vec::new(),
    }
}

/// See [`events_total`].
pub fn time_at_depth(upper: Option<i64>, depth: i64) -> Sql {
    let mut b = Builder::new(Dialect::Postgres);
    let cond = match upper {
        Some(u) => {
            let p = b.bind(Bind::Int(u));
            format!("WHERE created_at <= {p} ")
        }
        None => String::new(),
    };
    let d = b.bind(Bind::Int(depth));
    b.text =
        format!("SELECT created_at FROM event {cond}ORDER BY created_at DESC OFFSET {d} LIMIT 1");
    b.finish()
}

/// [`events`] for PostgreSQL with each tag condition written so the tag index cannot serve it:
/// a JSON containment test (a superset: the pair in any order) that rules out most events for
/// about a microsecond, then the exact test. Meant for a window (`since`) of the newest events,
/// walked in time order.
pub fn events_walk(schema: Schema, q: &EventQuery) -> Sql {
    let mut b = Builder::new(Dialect::Postgres);
    let plain = EventQuery {
        tags: BTreeMap::new(),
        ..q.clone()
    };
    let mut conds = vec![conditions(&mut b, schema, &plain)];
    for (letter, values) in &q.tags {
        let texts: Vec<String> = values.iter().map(|v| format!("{letter}:{v}")).collect();
        match schema {
            Schema::Full => {
                let any: Vec<String> = values
                    .iter()
                    .map(|v| {
                        let j = serde_json::json!([[letter.to_string(), v]]).to_string();
                        let p = b.bind(Bind::Text(j));
                        format!("tags @> {p}::jsonb")
                    })
                    .collect();
                let t = b.bind(Bind::Texts(texts));
                conds.push(format!(
                    "({}) AND tags_to_tagvalues(tags) && {t}::text[]",
                    any.join(" OR ")
                ));
            }
            Schema::Lite => {
                let t = b.bind(Bind::Texts(texts));
                conds.push(format!("tagvalues && {t}::text[]"));
            }
        }
    }
    let cols = event_columns(Dialect::Postgres, schema);
    let limit = b.bind(Bind::Int(i64::from(q.limit)));
    b.text = format!(
        "SELECT {cols} FROM event WHERE {} ORDER BY created_at DESC, id ASC LIMIT {limit}",
        conds.join(" AND ")
    );
    b.finish()
}

/// The distinct `(pubkey, kind)` pairs of `authors` in the archive (PostgreSQL), at most
/// [`MAX_PAIRS`] + 1 rows: a loose scan of the `(pubkey, kind, created_at)` index, one probe per
/// pair, however many events each author has.
pub fn author_kinds(authors: &[[u8; 32]]) -> Sql {
    let mut b = Builder::new(Dialect::Postgres);
    let a = b.bind(Bind::ByteArrays(
        authors.iter().map(|a| a.to_vec()).collect(),
    ));
    let cap = b.bind(Bind::Int(MAX_PAIRS as i64 + 1));
    b.text = format!(
        "WITH RECURSIVE k(pubkey, kind) AS ( \
           SELECT a.pk, (SELECT e.kind FROM event e WHERE e.pubkey = a.pk ORDER BY e.kind LIMIT 1) \
           FROM unnest({a}::bytea[]) AS a(pk) \
           UNION ALL \
           SELECT k.pubkey, (SELECT e.kind FROM event e WHERE e.pubkey = k.pubkey AND e.kind > k.kind \
                             ORDER BY e.kind LIMIT 1) \
           FROM k WHERE k.kind IS NOT NULL) \
         SELECT pubkey, kind FROM k WHERE kind IS NOT NULL LIMIT {cap}"
    );
    b.finish()
}

/// [`events`] for PostgreSQL, one branch per `(author, kind)` pair: each branch reads its own
/// range of the `(pubkey, kind, created_at)` index newest first, and the branches are merged
/// (Merge Append) until `limit` rows, so a prolific author costs no more than a quiet one. The
/// other conditions of `q` apply to every branch; its own `authors` and `kinds` are replaced by
/// the pairs.
pub fn events_by_pairs(schema: Schema, q: &EventQuery, pairs: &[([u8; 32], i32)]) -> Sql {
    let mut b = Builder::new(Dialect::Postgres);
    let cols = match schema {
        Schema::Full => {
            "id, pubkey, created_at, kind, '{}'::text[] AS tv, tags::text AS tj, content, sig"
        }
        Schema::Lite => {
            "id, pubkey, created_at, kind, tagvalues AS tv, NULL::text AS tj, NULL::text AS content, \
             NULL::bytea AS sig"
        }
    };
    let rest = EventQuery {
        authors: None,
        kinds: None,
        ..q.clone()
    };
    let cond = conditions(&mut b, schema, &rest);
    let limit = b.bind(Bind::Int(i64::from(q.limit)));
    let mut authors: BTreeMap<[u8; 32], String> = BTreeMap::new();
    let branches: Vec<String> = pairs
        .iter()
        .map(|(a, k)| {
            let pa = match authors.get(a) {
                Some(p) => p.clone(),
                None => {
                    let p = b.bind(Bind::Bytes(a.to_vec()));
                    authors.insert(*a, p.clone());
                    p
                }
            };
            // A kind is an i32 from a checked filter or from the archive: a literal is safe.
            format!(
                "(SELECT {cols} FROM event WHERE pubkey = {pa} AND kind = {k} AND {cond} \
                 ORDER BY created_at DESC, id ASC LIMIT {limit})"
            )
        })
        .collect();
    b.text = if branches.is_empty() {
        format!("SELECT {cols} FROM event WHERE FALSE LIMIT {limit}")
    } else {
        format!(
            "SELECT id, pubkey, created_at, kind, tv, tj, content, sig FROM ({}) AS e \
             ORDER BY created_at DESC, id ASC LIMIT {limit}",
            branches.join(" UNION ALL ")
        )
    };
    b.finish()
}

/// How many events match any of `qs` (NIP-45: the filters are OR'd into one count). Each
/// query's `limit` and cursor are ignored.
pub fn count(dialect: Dialect, schema: Schema, qs: &[EventQuery]) -> Sql {
    let mut b = Builder::new(dialect);
    let live: Vec<&EventQuery> = qs.iter().filter(|q| !q.is_empty()).collect();
    let parts: Vec<String> = live
        .iter()
        .map(|q| {
            let q = EventQuery {
                after: None,
                ..(*q).clone()
            };
            let cond = conditions(&mut b, schema, &q);
            format!("SELECT id FROM event WHERE {cond}")
        })
        .collect();
    b.text = match parts.len() {
        0 => "SELECT 0".into(),
        1 => format!("SELECT count(*) FROM ({}) AS matched", parts[0]),
        _ => format!(
            "SELECT count(*) FROM ({}) AS matched",
            parts.join(" UNION ")
        ),
    };
    b.finish()
}

/// `(created_at, id)` of the events matching `q`, ascending (NIP-77's order), at most
/// `cap + 1` rows so the caller can tell a set larger than `cap` without reading all of it.
pub fn negentropy_items(dialect: Dialect, schema: Schema, q: &EventQuery, cap: u32) -> Sql {
    let mut b = Builder::new(dialect);
    let q = EventQuery {
        after: None,
        ..q.clone()
    };
    let cond = conditions(&mut b, schema, &q);
    let limit = b.bind(Bind::Int(i64::from(cap) + 1));
    b.text = format!(
        "SELECT created_at, id FROM event WHERE {cond} ORDER BY created_at ASC, id ASC LIMIT {limit}"
    );
    b.finish()
}

/// Merges the rows of several filters of one REQ: each filter's rows come newest first already;
/// the union is deduplicated by id and put in NIP-01 order. `key` gives (created_at, id).
pub fn merge_in_order<T>(rows: Vec<T>, key: impl Fn(&T) -> (i64, [u8; 32])) -> Vec<T> {
    let mut rows = rows;
    rows.sort_by(|a, b| {
        let (ta, ia) = key(a);
        let (tb, ib) = key(b);
        tb.cmp(&ta).then(ia.cmp(&ib))
    });
    rows.dedup_by(|a, b| key(a).1 == key(b).1);
    rows
}

/// Relay status from the round-trip check, over every monitor's latest result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayStatus {
    /// Some monitor's last check opened a connection.
    Online,
    /// Monitors checked it and none connected.
    Offline,
    /// No monitor has checked it.
    Unknown,
}

/// Which relays a page lists, in URL order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayFilter {
    pub network: Option<crate::model::Network>,
    /// Listed in `supported_nips` of some monitor's latest NIP-11 document.
    pub nip: Option<u32>,
    /// Contained (case-insensitive) in the NIP-11 `software`.
    pub software: Option<String>,
    /// ISO 3166 code of the geo check.
    pub country: Option<String>,
    pub status: Option<RelayStatus>,
    /// Continue after this URL.
    pub after: Option<String>,
    /// Rows of the page; the statement reads one more.
    pub limit: u32,
}

/// "Some monitor's latest `check` of the relay satisfies `cond`", where `cond` (built after the
/// check's bind, so placeholders stay in text order) starts with ` AND` or is empty.
fn latest_where(b: &mut Builder, check: &str, cond: impl FnOnce(&mut Builder) -> String) -> String {
    let p = b.bind(Bind::Text(check.into()));
    let cond = cond(b);
    format!(
        "EXISTS (SELECT 1 FROM relay_metadata_latest_by_monitor l \
         WHERE l.relay_url = r.url AND l.metadata_type = {p}{cond})"
    )
}

const RTT_UP: &str = " AND coalesce(l.success, TRUE) = TRUE";

/// `url, network, discovered_at` of the relays of one page (`limit + 1` rows).
pub fn relays(dialect: Dialect, f: &RelayFilter) -> Sql {
    let mut b = Builder::new(dialect);
    let mut conds: Vec<String> = Vec::new();
    if let Some(n) = f.network {
        let p = b.bind(Bind::Text(n.as_str().into()));
        conds.push(format!("r.network = {p}"));
    }
    if let Some(after) = &f.after {
        let p = b.bind(Bind::Text(after.clone()));
        conds.push(format!("r.url > {p}"));
    }
    if let Some(nip) = f.nip {
        conds.push(latest_where(&mut b, "nip11_info", |b| {
            let n = b.bind(Bind::Int(i64::from(nip)));
            match dialect {
                Dialect::Postgres => {
                    format!(" AND l.data -> 'supported_nips' @> jsonb_build_array({n}::int)")
                }
                Dialect::Sqlite => format!(
                    " AND EXISTS (SELECT 1 FROM json_each(l.data, '$.supported_nips') j \
                     WHERE j.value = {n})"
                ),
            }
        }));
    }
    if let Some(sw) = &f.software {
        conds.push(latest_where(&mut b, "nip11_info", |b| {
            let p = b.bind(Bind::Text(sw.to_lowercase()));
            match dialect {
                Dialect::Postgres => format!(" AND strpos(lower(l.data ->> 'software'), {p}) > 0"),
                Dialect::Sqlite => {
                    format!(" AND instr(lower(json_extract(l.data, '$.software')), {p}) > 0")
                }
            }
        }));
    }
    if let Some(c) = &f.country {
        conds.push(latest_where(&mut b, "nip66_geo", |b| {
            let p = b.bind(Bind::Text(c.to_uppercase()));
            match dialect {
                Dialect::Postgres => format!(" AND l.data ->> 'geo_country' = {p}"),
                Dialect::Sqlite => format!(" AND json_extract(l.data, '$.geo_country') = {p}"),
            }
        }));
    }
    match f.status {
        None => {}
        Some(RelayStatus::Online) => {
            conds.push(latest_where(&mut b, "nip66_rtt", |_| RTT_UP.into()))
        }
        Some(RelayStatus::Offline) => {
            let any = latest_where(&mut b, "nip66_rtt", |_| String::new());
            let up = latest_where(&mut b, "nip66_rtt", |_| RTT_UP.into());
            conds.push(format!("{any} AND NOT {up}"));
        }
        Some(RelayStatus::Unknown) => {
            let any = latest_where(&mut b, "nip66_rtt", |_| String::new());
            conds.push(format!("NOT {any}"));
        }
    }
    let cond = if conds.is_empty() {
        "TRUE".to_owned()
    } else {
        conds.join(" AND ")
    };
    let limit = b.bind(Bind::Int(i64::from(f.limit) + 1));
    b.text = format!(
        "SELECT r.url, r.network, r.discovered_at FROM relay r WHERE {cond} \
         ORDER BY r.url LIMIT {limit}"
    );
    b.finish()
}

/// The latest result per monitor of the health checks (`nip66_rtt`, `nip11_info`, `nip66_geo`)
/// of `urls`: `relay_url, metadata_type, monitor, generated_at, success, reason, data` (text).
pub fn relay_health(dialect: Dialect, urls: &[String]) -> Sql {
    let mut b = Builder::new(dialect);
    let url_cond = match dialect {
        Dialect::Postgres => {
            let p = b.bind(Bind::Texts(urls.to_vec()));
            format!("relay_url = ANY({p})")
        }
        Dialect::Sqlite => {
            let ps: Vec<String> = urls.iter().map(|u| b.bind(Bind::Text(u.clone()))).collect();
            if ps.is_empty() {
                "FALSE".to_owned()
            } else {
                format!("relay_url IN ({})", ps.join(", "))
            }
        }
    };
    let data = match dialect {
        Dialect::Postgres => "data::text",
        Dialect::Sqlite => "data",
    };
    b.text = format!(
        "SELECT relay_url, metadata_type, monitor, generated_at, coalesce(success, TRUE), reason, \
         {data} FROM relay_metadata_latest_by_monitor WHERE {url_cond} \
         AND metadata_type IN ('nip66_rtt', 'nip11_info', 'nip66_geo') \
         ORDER BY relay_url, metadata_type, monitor"
    );
    b.finish()
}

/// One relay's results, newest first: `metadata_type, monitor (hex), generated_at, success,
/// reason, data` (text).
pub fn relay_history(
    dialect: Dialect,
    url: &str,
    since: Option<i64>,
    until: Option<i64>,
    check: Option<&str>,
    limit: u32,
) -> Sql {
    let mut b = Builder::new(dialect);
    let u = b.bind(Bind::Text(url.into()));
    let mut conds = vec![format!("r.url = {u}")];
    if let Some(s) = since {
        let p = b.bind(Bind::Int(s));
        conds.push(format!("rm.generated_at >= {p}"));
    }
    if let Some(t) = until {
        let p = b.bind(Bind::Int(t));
        conds.push(format!("rm.generated_at <= {p}"));
    }
    if let Some(c) = check {
        let p = b.bind(Bind::Text(c.into()));
        conds.push(format!("rm.metadata_type = {p}"));
    }
    let limit = b.bind(Bind::Int(i64::from(limit)));
    let (monitor, data) = match dialect {
        Dialect::Postgres => ("encode(rm.monitor, 'hex')", "m.data::text"),
        Dialect::Sqlite => ("lower(hex(rm.monitor))", "m.data"),
    };
    b.text = format!(
        "SELECT rm.metadata_type, {monitor}, rm.generated_at, coalesce(rm.success, TRUE), \
         rm.reason, {data} FROM relay r JOIN relay_metadata rm ON rm.relay_id = r.id \
         JOIN metadata m ON m.id = rm.metadata_id AND m.type = rm.metadata_type \
         WHERE {} ORDER BY rm.generated_at DESC, rm.metadata_type LIMIT {limit}",
        conds.join(" AND ")
    );
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::JsonUtil;

    fn q(json: &str) -> Result<EventQuery, QueryError> {
        let f = Filter::from_json(json).expect("filter json");
        EventQuery::from_filter(&f, &QueryLimits::default())
    }

    const A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    #[test]
    fn hidden_kinds_are_excluded_in_sql_in_the_live_matcher_and_alone_match_nothing() {
        let hide = |mut e: EventQuery| {
            e.hidden_kinds = vec![4, 1059];
            e
        };
        let any = hide(q("{}").unwrap());
        let pg = events(Dialect::Postgres, Schema::Full, &any);
        assert!(pg.text.contains("NOT (kind = ANY($1))"), "{}", pg.text);
        assert_eq!(pg.binds[0], Bind::Ints(vec![4, 1059]));
        let lite = events(Dialect::Sqlite, Schema::Lite, &any);
        assert!(lite.text.contains("NOT (kind IN (?, ?))"), "{}", lite.text);
        let c = count(Dialect::Postgres, Schema::Full, std::slice::from_ref(&any));
        assert!(c.text.contains("NOT (kind = ANY("), "{}", c.text);
        let n = negentropy_items(Dialect::Postgres, Schema::Full, &any, 10);
        assert!(n.text.contains("NOT (kind = ANY("), "{}", n.text);
        let id = [1u8; 32];
        assert!(any.matches(&id, &id, 1, 1, &[]));
        assert!(!any.matches(&id, &id, 1, 4, &[]));
        assert!(!any.matches(&id, &id, 1, 1059, &[]));
        assert!(hide(q(r#"{"kinds":[4,1059]}"#).unwrap()).is_empty());
        assert!(!hide(q(r#"{"kinds":[1,4]}"#).unwrap()).is_empty());
        // Nothing hidden: no condition at all.
        let plain = events(Dialect::Postgres, Schema::Full, &q("{}").unwrap());
        assert!(!plain.text.contains("NOT ("), "{}", plain.text);
    }

    #[test]
    fn authors_with_kinds_read_one_branch_per_pair_merged_in_nip01_order() {
        let query = q(&format!(
            r#"{{"authors":["{A}","{B}"],"kinds":[0,3],"since":10,"limit":20}}"#
        ))
        .unwrap();
        let pairs = query.pairs().expect("2 × 2 pairs");
        assert_eq!(pairs.len(), 4);
        let pg = events(Dialect::Postgres, Schema::Full, &query);
        assert_eq!(pg.text.matches(" UNION ALL ").count(), 3, "{}", pg.text);
        assert_eq!(
            pg.text
                .matches("ORDER BY created_at DESC, id ASC LIMIT $2")
                .count(),
            5,
            "every branch and the merge: {}",
            pg.text
        );
        // since and the limit bound once, each author once; kinds are literals.
        assert_eq!(pg.binds[0], Bind::Int(10));
        assert_eq!(pg.binds[1], Bind::Int(20));
        assert_eq!(pg.binds.len(), 4);
        assert!(
            pg.text
                .contains("pubkey = $3 AND kind = 0 AND created_at >= $1")
        );
        assert!(
            pg.text
                .contains("pubkey = $4 AND kind = 3 AND created_at >= $1")
        );
        // SQLite reads the plain statement.
        let lite = events(Dialect::Sqlite, Schema::Full, &query);
        assert!(!lite.text.contains("UNION"), "{}", lite.text);
        // Hidden kinds are no branch; too many pairs, or ids, read the plain statement.
        let mut hidden = query.clone();
        hidden.hidden_kinds = vec![3];
        assert_eq!(hidden.pairs().map(|p| p.len()), Some(2));
        let authors: Vec<String> = (0..33).map(|i| format!("{i:064x}")).collect();
        let wide = q(&format!(r#"{{"authors":{authors:?},"kinds":[0,3]}}"#)).unwrap();
        assert!(wide.pairs().is_none());
        let with_id = q(&format!(
            r#"{{"ids":["{A}"],"authors":["{A}"],"kinds":[0]}}"#
        ))
        .unwrap();
        assert!(with_id.pairs().is_none());
        assert!(
            !events(Dialect::Postgres, Schema::Full, &with_id)
                .text
                .contains("UNION")
        );
        // No pair at all matches nothing.
        let none = events_by_pairs(Schema::Lite, &query, &[]);
        assert!(none.text.contains("WHERE FALSE"), "{}", none.text);
    }

    #[test]
    fn a_few_authors_without_kinds_look_their_kinds_up_first() {
        assert!(
            q(&format!(r#"{{"authors":["{A}"]}}"#))
                .unwrap()
                .wants_author_kinds()
        );
        assert!(
            !q(&format!(r#"{{"authors":["{A}"],"kinds":[1]}}"#))
                .unwrap()
                .wants_author_kinds()
        );
        assert!(
            !q(&format!(r#"{{"ids":["{B}"],"authors":["{A}"]}}"#))
                .unwrap()
                .wants_author_kinds()
        );
        let nine: Vec<String> = (0..9).map(|i| format!("{i:064x}")).collect();
        assert!(
            !q(&format!(r#"{{"authors":{nine:?}}}"#))
                .unwrap()
                .wants_author_kinds()
        );
        let sql = author_kinds(&[[1; 32], [2; 32]]);
        assert_eq!(
            sql.binds[0],
            Bind::ByteArrays(vec![vec![1; 32], vec![2; 32]])
        );
        assert_eq!(sql.binds[1], Bind::Int(MAX_PAIRS as i64 + 1));
    }

    #[test]
    fn popular_tags_are_read_in_a_window_walked_with_a_cheap_test() {
        let tag = q(&format!(r##"{{"#p":["{A}"],"#t":["x"],"limit":100}}"##)).unwrap();
        assert!(tag.wants_tag_window());
        for other in [
            format!(r##"{{"#p":["{A}"],"kinds":[1]}}"##),
            format!(r##"{{"#p":["{A}"],"authors":["{B}"]}}"##),
            format!(r##"{{"#p":["{A}"],"ids":["{B}"]}}"##),
            "{}".to_owned(),
        ] {
            assert!(!q(&other).unwrap().wants_tag_window(), "{other}");
        }
        // Depth: twice the limit's worth of matches at the tag's share of events.
        assert_eq!(
            tag_window_depth(100, 10_000.0, 1e7),
            None,
            "rare: read whole"
        );
        assert_eq!(tag_window_depth(100, 100_000.0, 1e7), Some(20_000));
        assert_eq!(tag_window_depth(100, 1e7, 1e7), Some(200));
        assert_eq!(
            tag_window_depth(500, 1e9, 1e7),
            Some(500),
            "never under the limit"
        );
        assert_eq!(tag_window_depth(100, 1e5, 0.0), None, "never analyzed");
        // The estimate reads the tag conditions alone, through the index expression.
        let m = tag_matches(Schema::Full, &tag);
        assert_eq!(
            m.text
                .matches("tagvalues_to_tagkeys(tags_to_tagvalues(tags)) &&")
                .count(),
            2
        );
        // The walk never names the index expression: a containment test, then the exact one.
        let w = events_walk(Schema::Full, &tag);
        assert!(!w.text.contains("tagvalues_to_tagkeys"), "{}", w.text);
        assert!(w.text.contains("tags @> $1::jsonb") && w.text.contains("tags @> $3::jsonb"));
        assert_eq!(w.binds[0], Bind::Text(format!(r#"[["p","{A}"]]"#)));
        assert_eq!(w.binds[1], Bind::Texts(vec![format!("p:{A}")]));
        assert_eq!(w.binds[2], Bind::Text(r#"[["t","x"]]"#.into()));
        assert_eq!(w.binds[4], Bind::Int(100));
        let lite = events_walk(Schema::Lite, &tag);
        assert!(
            lite.text.contains("tagvalues && $1::text[]"),
            "{}",
            lite.text
        );
        // The window's top: until or the cursor, the lower.
        let mut paged = q(&format!(r##"{{"#p":["{A}"],"until":9000}}"##)).unwrap();
        assert_eq!(paged.upper(), Some(9000));
        paged.after = Some(Cursor {
            created_at: 7000,
            id: [0; 32],
        });
        assert_eq!(paged.upper(), Some(7000));
        let d = time_at_depth(paged.upper(), 50);
        assert_eq!(d.binds, vec![Bind::Int(7000), Bind::Int(50)]);
        assert!(!time_at_depth(None, 50).text.contains("WHERE"));
    }

    #[test]
    fn tag_keys_pack_lowercase_hex_and_keep_everything_else_as_text() {
        let k = tag_key('p', B);
        assert_eq!(k.len(), 34);
        assert_eq!(&k[..2], b"p\0");
        assert_eq!(hex::encode(&k[2..]), B);
        // Not exactly 64 lowercase hex characters: the text form, so it cannot meet a packed key.
        assert_eq!(
            tag_key('p', &B.to_uppercase()),
            format!("p:{}", B.to_uppercase()).into_bytes()
        );
        assert_eq!(
            tag_key('e', &B[..63]),
            format!("e:{}", &B[..63]).into_bytes()
        );
        assert_eq!(tag_key('t', "nostr"), b"t:nostr".to_vec());
        assert_eq!(tag_key('é', ""), "é:".as_bytes().to_vec());
        assert_ne!(tag_key('p', B), tag_key('q', B));
    }

    #[test]
    fn every_field_becomes_a_condition_in_both_dialects() {
        let query = q(&format!(
            r##"{{"ids":["{A}"],"authors":["{A}","{B}"],"kinds":[1,7],"#p":["{B}"],"#t":["x","y"],"since":10,"until":20,"limit":5}}"##
        ))
        .unwrap();
        let pg = events(Dialect::Postgres, Schema::Full, &query);
        assert_eq!(
            pg.text,
            "SELECT id, pubkey, created_at, kind, '{}'::text[], tags::text, content, sig \
             FROM event WHERE id = $1 AND pubkey = ANY($2) AND kind = ANY($3) \
             AND tagvalues_to_tagkeys(tags_to_tagvalues(tags)) && $4 \
             AND tagvalues_to_tagkeys(tags_to_tagvalues(tags)) && $5 \
             AND created_at >= $6 AND created_at <= $7 ORDER BY created_at DESC, id ASC LIMIT $8"
        );
        assert_eq!(pg.binds.len(), 8);
        assert_eq!(pg.binds[3], Bind::ByteArrays(vec![tag_key('p', B)]));
        assert_eq!(
            pg.binds[4],
            Bind::ByteArrays(vec![b"t:x".to_vec(), b"t:y".to_vec()])
        );
        assert_eq!(pg.binds[7], Bind::Int(5));
        let lite = events(Dialect::Postgres, Schema::Lite, &query);
        assert!(
            lite.text.contains("tagvalues_to_tagkeys(tagvalues) && $4"),
            "{lite}"
        );
        let sqlite = events(Dialect::Sqlite, Schema::Full, &query);
        assert_eq!(sqlite.text.matches('?').count(), sqlite.binds.len());
        assert!(sqlite.text.contains("pubkey IN (?, ?)"), "{sqlite}");
        assert!(sqlite.text.contains("kind IN (?, ?)"), "{sqlite}");
        assert!(
            sqlite
                .binds
                .iter()
                .all(|b| !matches!(b, Bind::Ints(_) | Bind::Texts(_) | Bind::ByteArrays(_)))
        );
    }

    #[test]
    fn an_empty_filter_reads_newest_first_with_the_default_limit() {
        let pg = events(Dialect::Postgres, Schema::Full, &q("{}").unwrap());
        assert!(
            pg.text
                .ends_with("WHERE TRUE ORDER BY created_at DESC, id ASC LIMIT $1"),
            "{pg}"
        );
        assert_eq!(pg.binds, vec![Bind::Int(500)]);
    }

    #[test]
    fn limits_are_enforced_and_limit_is_clamped() {
        let limits = QueryLimits {
            max_authors: 2,
            max_limit: 100,
            ..QueryLimits::default()
        };
        let f =
            Filter::from_json(format!(r#"{{"authors":["{A}","{B}"],"limit":100000}}"#)).unwrap();
        assert_eq!(EventQuery::from_filter(&f, &limits).unwrap().limit, 100);
        let three = format!("{}{}", &A[..63], "3");
        let f = Filter::from_json(format!(r#"{{"authors":["{A}","{B}","{three}"]}}"#)).unwrap();
        let e = EventQuery::from_filter(&f, &limits).unwrap_err();
        assert_eq!(e.to_string(), "authors: 3 values, at most 2 allowed");
        let long = "x".repeat(2000);
        let e = q(&format!(r##"{{"#t":["{long}"]}}"##)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "#t: a value of 2000 bytes, at most 1024 allowed"
        );
        assert_eq!(q(r#"{"search":"hello"}"#).unwrap_err(), QueryError::Search);
    }

    #[test]
    fn empty_lists_and_inverted_ranges_match_nothing() {
        assert!(q(r#"{"ids":[]}"#).unwrap().is_empty());
        assert!(q(r#"{"kinds":[]}"#).unwrap().is_empty());
        assert!(q(r#"{"since":20,"until":10}"#).unwrap().is_empty());
        assert!(!q(r#"{"since":10,"until":10}"#).unwrap().is_empty());
        assert!(!q("{}").unwrap().is_empty());
    }

    #[test]
    fn the_cursor_continues_in_nip01_order() {
        let c = Cursor {
            created_at: 1_700_000_000,
            id: [7; 32],
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        assert!(Cursor::decode("zz").is_err());
        assert!(Cursor::decode(&"g".repeat(80)).is_err());
        let query = EventQuery {
            after: Some(c),
            limit: 10,
            ..EventQuery::default()
        };
        let pg = events(Dialect::Postgres, Schema::Full, &query);
        assert!(
            pg.text
                .contains("WHERE created_at <= $1 AND (created_at < $2 OR id > $3) ORDER BY"),
            "{pg}"
        );
    }

    #[test]
    fn matches_agrees_with_the_filter_semantics() {
        let query = q(&format!(r##"{{"kinds":[1],"#p":["{B}"],"since":10}}"##)).unwrap();
        let id = [1; 32];
        let pk = [2; 32];
        let tv = vec![format!("p:{B}"), "t:x".to_string()];
        assert!(query.matches(&id, &pk, 10, 1, &tv));
        assert!(
            !query.matches(&id, &pk, 9, 1, &tv),
            "since is inclusive, 9 < 10"
        );
        assert!(!query.matches(&id, &pk, 10, 7, &tv));
        assert!(!query.matches(&id, &pk, 10, 1, &["t:x".to_string()]));
        // A value that only ends like the wanted one is no match.
        let t = q(r##"{"#t":["x"]}"##).unwrap();
        assert!(!t.matches(&id, &pk, 1, 1, &["t:yx".to_string()]));
        assert!(t.matches(&id, &pk, 1, 1, &["t:x".to_string()]));
    }

    #[test]
    fn several_filters_count_once_each_event() {
        let qs = [
            q(r#"{"kinds":[1]}"#).unwrap(),
            q(r#"{"kinds":[7]}"#).unwrap(),
            q(r#"{"ids":[]}"#).unwrap(),
        ];
        let pg = count(Dialect::Postgres, Schema::Full, &qs);
        assert_eq!(
            pg.text,
            "SELECT count(*) FROM (SELECT id FROM event WHERE kind = $1 UNION \
             SELECT id FROM event WHERE kind = $2) AS matched"
        );
        assert_eq!(
            count(Dialect::Sqlite, Schema::Full, &qs[2..]).text,
            "SELECT 0"
        );
    }

    #[test]
    fn merging_orders_newest_first_lowest_id_first_and_drops_repeats() {
        let rows = vec![
            (5, [2u8; 32]),
            (7, [9; 32]),
            (5, [1; 32]),
            (7, [9; 32]),
            (6, [0; 32]),
        ];
        let merged = merge_in_order(rows, |r| *r);
        assert_eq!(
            merged,
            vec![(7, [9; 32]), (6, [0; 32]), (5, [1; 32]), (5, [2; 32])]
        );
    }

    #[test]
    fn relay_filters_bind_in_text_order() {
        let f = RelayFilter {
            network: Some(crate::model::Network::Clearnet),
            nip: Some(11),
            software: Some("Strfry".into()),
            country: Some("de".into()),
            status: Some(RelayStatus::Offline),
            after: Some("wss://a.example".into()),
            limit: 10,
        };
        let pg = relays(Dialect::Postgres, &f);
        // Every $n appears once, in increasing order of first appearance.
        let mut seen = Vec::new();
        for (i, _) in pg.text.match_indices('$') {
            let n: usize = pg.text[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap();
            seen.push(n);
        }
        assert_eq!(seen, (1..=pg.binds.len()).collect::<Vec<_>>(), "{pg}");
        let idx = |needle: &str| {
            pg.binds
                .iter()
                .position(|b| *b == Bind::Text(needle.into()))
                .unwrap()
        };
        assert!(
            pg.text.contains(&format!(
                "strpos(lower(l.data ->> 'software'), ${}) > 0",
                idx("strfry") + 1
            )),
            "{pg}"
        );
        assert!(
            pg.text
                .contains(&format!("l.data ->> 'geo_country' = ${}", idx("DE") + 1)),
            "{pg}"
        );
        let sqlite = relays(Dialect::Sqlite, &f);
        assert_eq!(sqlite.text.matches('?').count(), sqlite.binds.len());
        // SQLite's positional binds: the software value right after its check's name.
        let sw = sqlite
            .binds
            .iter()
            .position(|b| *b == Bind::Text("strfry".into()))
            .unwrap();
        assert_eq!(sqlite.binds[sw - 1], Bind::Text("nip11_info".into()));
        let c = sqlite
            .binds
            .iter()
            .position(|b| *b == Bind::Text("DE".into()))
            .unwrap();
        assert_eq!(sqlite.binds[c - 1], Bind::Text("nip66_geo".into()));
        assert_eq!(
            *sqlite.binds.last().unwrap(),
            Bind::Int(11),
            "the page size + 1"
        );
    }
}
