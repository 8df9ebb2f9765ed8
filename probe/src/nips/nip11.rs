//! NIP-11 relay information document: a lenient, type-strict parser (pure) and the fetch.
//!
//! Parsing follows the reference system: unknown keys are dropped, values of the
//! wrong JSON type are dropped (a bool is never an int and vice versa, a float is never an int),
//! empty strings, lists and objects are dropped, and fields removed from NIP-11 in 2026
//! (`retention`, `relay_countries`, `language_tags`, `tags`, `posting_policy`,
//! `privacy_policy`) are still accepted because real relays still send them.

use serde_json::{Map, Value};

/// Top-level string fields kept.
const STRING_FIELDS: [&str; 13] = [
    "name",
    "description",
    "banner",
    "icon",
    "pubkey",
    "self",
    "contact",
    "software",
    "version",
    "privacy_policy",
    "terms_of_service",
    "posting_policy",
    "payments_url",
];
/// Top-level lists of strings kept.
const STRING_LIST_FIELDS: [&str; 4] = ["relay_countries", "language_tags", "tags", "attributes"];
/// Integer fields of `limitation`.
const LIMITATION_INTS: [&str; 10] = [
    "max_message_length",
    "max_subscriptions",
    "max_limit",
    "max_subid_length",
    "max_event_tags",
    "max_content_length",
    "min_pow_difficulty",
    "created_at_lower_limit",
    "created_at_upper_limit",
    "default_limit",
];
/// Boolean fields of `limitation`.
const LIMITATION_BOOLS: [&str; 3] = ["auth_required", "payment_required", "restricted_writes"];
/// Fee categories.
const FEE_KINDS: [&str; 3] = ["admission", "subscription", "publication"];

/// Why a body is not a NIP-11 document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Nip11ParseError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("not a JSON object but {0}")]
    NotObject(&'static str),
}

/// A parsed NIP-11 document: only the known fields, each of the right type. Serialises to the
/// cleaned JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nip11 {
    doc: Map<String, Value>,
}

impl Nip11 {
    /// Parses a response body.
    pub fn parse(body: &[u8]) -> Result<Self, Nip11ParseError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Nip11ParseError::Json(e.to_string()))?;
        Nip11::from_value(&value)
    }

    /// Cleans an already-parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Self, Nip11ParseError> {
        let obj = match value {
            Value::Object(o) => o,
            Value::Array(_) => return Err(Nip11ParseError::NotObject("an array")),
            Value::String(_) => return Err(Nip11ParseError::NotObject("a string")),
            Value::Null => return Err(Nip11ParseError::NotObject("null")),
            Value::Bool(_) => return Err(Nip11ParseError::NotObject("a boolean")),
            Value::Number(_) => return Err(Nip11ParseError::NotObject("a number")),
        };
        let mut doc = Map::new();
        for key in STRING_FIELDS {
            if let Some(s) = obj.get(key).and_then(non_empty_str) {
                doc.insert(key.to_owned(), Value::String(s.to_owned()));
            }
        }
        if let Some(nips) = obj.get("supported_nips").and_then(Value::as_array) {
            let mut ints: Vec<i64> = nips.iter().filter_map(int).collect();
            ints.sort_unstable();
            ints.dedup();
            if !ints.is_empty() {
                doc.insert("supported_nips".into(), ints.into());
            }
        }
        for key in STRING_LIST_FIELDS {
            if let Some(list) = obj.get(key).and_then(string_list) {
                doc.insert(key.to_owned(), list);
            }
        }
        if let Some(Value::Object(lim)) = obj.get("limitation") {
            let mut out = Map::new();
            for key in LIMITATION_INTS {
                if let Some(n) = lim.get(key).and_then(int) {
                    out.insert(key.to_owned(), n.into());
                }
            }
            for key in LIMITATION_BOOLS {
                if let Some(b) = lim.get(key).and_then(Value::as_bool) {
                    out.insert(key.to_owned(), b.into());
                }
            }
            if !out.is_empty() {
                doc.insert("limitation".into(), Value::Object(out));
            }
        }
        if let Some(Value::Array(entries)) = obj.get("retention") {
            let kept: Vec<Value> = entries.iter().filter_map(retention_entry).collect();
            if !kept.is_empty() {
                doc.insert("retention".into(), kept.into());
            }
        }
        if let Some(Value::Object(fees)) = obj.get("fees") {
            let mut out = Map::new();
            for key in FEE_KINDS {
                if let Some(Value::Array(items)) = fees.get(key) {
                    let kept: Vec<Value> = items.iter().filter_map(fee).collect();
                    if !kept.is_empty() {
                        out.insert(key.to_owned(), kept.into());
                    }
                }
            }
            if !out.is_empty() {
                doc.insert("fees".into(), Value::Object(out));
            }
        }
        Ok(Nip11 { doc })
    }

    /// The cleaned document.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// The cleaned document as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.doc.clone())
    }

    pub fn supported_nips(&self) -> Vec<i64> {
        self.doc
            .get("supported_nips")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    }

    /// A list-of-strings field (`tags`, `language_tags`, `relay_countries`, `attributes`).
    pub fn strings(&self, key: &str) -> Vec<String> {
        self.doc
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn limitation(&self, key: &str) -> Option<&Value> {
        self.doc.get("limitation").and_then(|l| l.get(key))
    }

    pub fn auth_required(&self) -> Option<bool> {
        self.limitation("auth_required").and_then(Value::as_bool)
    }
    pub fn payment_required(&self) -> Option<bool> {
        self.limitation("payment_required").and_then(Value::as_bool)
    }
    pub fn restricted_writes(&self) -> Option<bool> {
        self.limitation("restricted_writes")
            .and_then(Value::as_bool)
    }
    /// NIP-13 difficulty the relay asks for (negative or absurd values count as none).
    pub fn min_pow_difficulty(&self) -> u8 {
        self.limitation("min_pow_difficulty")
            .and_then(Value::as_i64)
            .map_or(0, |d| d.clamp(0, 64) as u8)
    }
}

fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// An integer: JSON numbers without a fraction or exponent that fit i64. Bools and floats are
/// not integers.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if !n.is_f64() => n.as_i64(),
        _ => None,
    }
}

fn string_list(v: &Value) -> Option<Value> {
    let items: Vec<Value> = v
        .as_array()?
        .iter()
        .filter_map(non_empty_str)
        .map(|s| Value::String(s.to_owned()))
        .collect();
    (!items.is_empty()).then_some(Value::Array(items))
}

fn int_list(v: &Value) -> Option<Value> {
    let items: Vec<Value> = v
        .as_array()?
        .iter()
        .filter_map(int)
        .map(Value::from)
        .collect();
    (!items.is_empty()).then_some(Value::Array(items))
}

/// `{kinds: [int | [min, max]], time: int, count: int}`; `None` when nothing valid is left.
fn retention_entry(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    let mut out = Map::new();
    if let Some(Value::Array(kinds)) = obj.get("kinds") {
        let kept: Vec<Value> = kinds
            .iter()
            .filter_map(|k| match k {
                Value::Array(pair) if pair.len() == 2 => {
                    let (a, b) = (int(&pair[0])?, int(&pair[1])?);
                    Some(Value::from(vec![a, b]))
                }
                other => int(other).map(Value::from),
            })
            .collect();
        if !kept.is_empty() {
            out.insert("kinds".into(), kept.into());
        }
    }
    for key in ["time", "count"] {
        if let Some(n) = obj.get(key).and_then(int) {
            out.insert(key.to_owned(), n.into());
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// `{amount: int, unit: str, period: int, kinds: [int]}`; `None` when nothing valid is left.
fn fee(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    let mut out = Map::new();
    for key in ["amount", "period"] {
        if let Some(n) = obj.get(key).and_then(int) {
            out.insert(key.to_owned(), n.into());
        }
    }
    if let Some(s) = obj.get("unit").and_then(non_empty_str) {
        out.insert("unit".into(), s.into());
    }
    if let Some(kinds) = obj.get("kinds").and_then(int_list) {
        out.insert("kinds".into(), kinds);
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Whether a `Content-Type` header announces JSON (`application/nostr+json` or
/// `application/json`, parameters ignored, case-insensitive).
pub fn is_json_content_type(header: &str) -> bool {
    let media = header.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/nostr+json")
        || media.eq_ignore_ascii_case("application/json")
}

/// The HTTP URL of a relay's information document: `wss→https`, `ws→http`, same host, port and
/// path.
pub fn info_url(relay: &crate::model::RelayUrl) -> String {
    let rest = relay
        .as_str()
        .split_once("://")
        .map_or(relay.as_str(), |(_, r)| r);
    let scheme = if relay.is_tls() { "https" } else { "http" };
    format!("{scheme}://{rest}")
}

/// What the archive says about itself (the api's NIP-11 document): the NIPs it serves, and the
/// `limitation` numbers its relay enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub name: String,
    pub description: String,
    pub software: String,
    pub version: String,
    /// A lite archive keeps no event bodies: REQ is refused, COUNT and NIP-77 still work.
    pub lite: bool,
    pub max_message_length: u32,
    pub max_subscriptions: u32,
    pub max_filters: u32,
    pub max_limit: u32,
    pub default_limit: u32,
    pub max_subid_length: u32,
}

impl ArchiveInfo {
    /// NIP-01, NIP-11, NIP-45 (COUNT) and NIP-77 (negentropy).
    pub const SUPPORTED_NIPS: [u16; 4] = [1, 11, 45, 77];

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "description": self.description,
            "supported_nips": Self::SUPPORTED_NIPS,
            "software": self.software,
            "version": self.version,
            "limitation": {
                "max_message_length": self.max_message_length,
                "max_subscriptions": self.max_subscriptions,
                "max_filters": self.max_filters,
                "max_limit": self.max_limit,
                "default_limit": self.default_limit,
                "max_subid_length": self.max_subid_length,
                "auth_required": false,
                "payment_required": false,
                // Nothing can be written: EVENT is answered `OK false "blocked: …"`.
                "restricted_writes": true,
            },
            "brotr": { "schema": if self.lite { "lite" } else { "full" } },
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Value {
        Nip11::from_value(&v).unwrap().to_value()
    }

    #[test]
    fn keeps_every_known_field_of_a_full_document() {
        let doc = json!({
            "name": "r", "description": "d", "banner": "b", "icon": "i", "pubkey": "p",
            "self": "s", "contact": "c", "software": "sw", "version": "v",
            "privacy_policy": "pp", "terms_of_service": "tos", "posting_policy": "pop",
            "payments_url": "pay", "supported_nips": [1, 11],
            "relay_countries": ["EU"], "language_tags": ["en"], "tags": ["sfw-only"],
            "attributes": ["x"],
            "limitation": {"max_message_length": 1, "max_subscriptions": 2, "max_limit": 3,
                "max_subid_length": 4, "max_event_tags": 5, "max_content_length": 6,
                "min_pow_difficulty": 7, "created_at_lower_limit": 8,
                "created_at_upper_limit": 9, "default_limit": 10, "auth_required": true,
                "payment_required": false, "restricted_writes": true},
            "retention": [{"kinds": [0, [5, 7]], "time": 3600, "count": 10}],
            "fees": {"admission": [{"amount": 1000, "unit": "msats"}],
                     "subscription": [{"amount": 5, "unit": "sats", "period": 2592000}],
                     "publication": [{"kinds": [4], "amount": 100, "unit": "msats"}]}
        });
        assert_eq!(parse(doc.clone()), doc);
    }

    #[test]
    fn drops_unknown_keys() {
        assert_eq!(
            parse(json!({"name": "r", "negentropy": 1, "x": {"y": 1}})),
            json!({"name": "r"})
        );
    }

    #[test]
    fn drops_values_of_the_wrong_type() {
        let cases = [
            (json!({"name": 5}), json!({})),
            (json!({"name": ["a"]}), json!({})),
            (json!({"supported_nips": "1,2"}), json!({})),
            (
                json!({"supported_nips": [1, "C7", 2.0, true, null, 11]}),
                json!({"supported_nips": [1, 11]}),
            ),
            (json!({"limitation": {"max_limit": true}}), json!({})),
            (json!({"limitation": {"auth_required": 1}}), json!({})),
            (json!({"limitation": {"max_limit": 10.5}}), json!({})),
            (json!({"limitation": {"max_limit": 1.0}}), json!({})),
            (json!({"limitation": {"max_limit": "10"}}), json!({})),
            (json!({"limitation": "none"}), json!({})),
            (
                json!({"tags": [1, "nsfw", "", null]}),
                json!({"tags": ["nsfw"]}),
            ),
            (
                json!({"fees": {"admission": [{"amount": "1", "unit": 2}]}}),
                json!({}),
            ),
            (json!({"fees": {"refund": [{"amount": 1}]}}), json!({})),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input.clone()), want, "{input}");
        }
    }

    #[test]
    fn negative_and_zero_integers_are_kept() {
        assert_eq!(
            parse(json!({"limitation": {"min_pow_difficulty": 0, "created_at_lower_limit": -5}})),
            json!({"limitation": {"min_pow_difficulty": 0, "created_at_lower_limit": -5}})
        );
    }

    #[test]
    fn empty_values_are_dropped() {
        assert_eq!(
            parse(json!({"name": "", "tags": [], "limitation": {}, "fees": {}, "retention": [{}]})),
            json!({})
        );
    }

    #[test]
    fn supported_nips_are_deduplicated_and_sorted() {
        assert_eq!(
            parse(json!({"supported_nips": [40, 1, 11, 1, 40]})),
            json!({"supported_nips": [1, 11, 40]})
        );
    }

    #[test]
    fn retention_accepts_pairs_and_rejects_other_ranges() {
        assert_eq!(
            parse(json!({"retention": [
                {"kinds": [1, [10000, 19999], [1, 2, 3], ["a", 2], true], "time": null},
                {"time": 3.5},
                {"count": 0}
            ]})),
            json!({"retention": [{"kinds": [1, [10000, 19999]]}, {"count": 0}]})
        );
    }

    #[test]
    fn top_level_non_objects_are_errors() {
        for (body, want) in [
            ("[1,2]", "an array"),
            ("\"x\"", "a string"),
            ("null", "null"),
            ("true", "a boolean"),
            ("3", "a number"),
        ] {
            assert_eq!(
                Nip11::parse(body.as_bytes()),
                Err(Nip11ParseError::NotObject(want)),
                "{body}"
            );
        }
        assert!(matches!(
            Nip11::parse(b"<html><body>hi</body></html>"),
            Err(Nip11ParseError::Json(_))
        ));
        assert_eq!(Nip11::parse(b"{}").unwrap(), Nip11::default());
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            Nip11::parse(deep.as_bytes()),
            Err(Nip11ParseError::Json(_))
        ));
        let deep_obj = format!(
            r#"{{"name":"n","x":{}1{}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert_eq!(
            Nip11::parse(deep_obj.as_bytes()).unwrap().to_value(),
            json!({"name": "n"})
        );
    }

    #[test]
    fn accessors_read_the_cleaned_document() {
        let n = Nip11::from_value(&json!({
            "supported_nips": [11, 1],
            "tags": ["a"],
            "limitation": {"auth_required": true, "min_pow_difficulty": 300}
        }))
        .unwrap();
        assert_eq!(n.supported_nips(), vec![1, 11]);
        assert_eq!(n.strings("tags"), vec!["a"]);
        assert_eq!(n.auth_required(), Some(true));
        assert_eq!(n.payment_required(), None);
        assert_eq!(n.min_pow_difficulty(), 64);
    }

    #[test]
    fn content_types() {
        for (h, ok) in [
            ("application/nostr+json", true),
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/Nostr+JSON", true),
            ("text/html", false),
            ("text/plain", false),
            ("", false),
        ] {
            assert_eq!(is_json_content_type(h), ok, "{h}");
        }
    }

    #[test]
    fn info_urls_map_the_scheme_and_keep_host_port_path() {
        use crate::model::RelayUrl;
        for (relay, want) in [
            ("wss://relay.example.com", "https://relay.example.com"),
            (
                "wss://relay.example.com:4443/nostr",
                "https://relay.example.com:4443/nostr",
            ),
            ("ws://127.0.0.1:7777", "http://127.0.0.1:7777"),
            ("wss://[2001:db8::1]:444", "https://[2001:db8::1]:444"),
        ] {
            let url = RelayUrl::parse_allowing_local(relay).unwrap();
            assert_eq!(info_url(&url), want, "{relay}");
        }
    }

    #[test]
    fn the_archive_document_reads_back_with_our_own_parser() {
        let info = ArchiveInfo {
            name: "Brotr archive".into(),
            description: "d".into(),
            software: "brotr".into(),
            version: "0.1.0".into(),
            lite: false,
            max_message_length: 131_072,
            max_subscriptions: 32,
            max_filters: 10,
            max_limit: 500,
            default_limit: 500,
            max_subid_length: 64,
        };
        let v: Value = serde_json::from_str(&info.to_json()).unwrap();
        assert_eq!(v["supported_nips"], serde_json::json!([1, 11, 45, 77]));
        assert_eq!(v["limitation"]["max_limit"], 500);
        assert_eq!(v["limitation"]["max_filters"], 10);
        assert_eq!(v["limitation"]["restricted_writes"], true);
        assert_eq!(v["brotr"]["schema"], "full");
    }
}
