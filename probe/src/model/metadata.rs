//! Content-addressed check results: canonical JSON and its SHA-256 id.
//!
//! Only the measured data is hashed; outcome and failure reason belong on the time-series row,
//! so a changing error string does not mint a new metadata row.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Deeper JSON than this is cut off (the value at that depth is dropped).
pub const MAX_DEPTH: usize = 50;

/// The kinds of document the monitor stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataType {
    Nip11Info,
    Nip66Rtt,
    Nip66Ssl,
    Nip66Geo,
    Nip66Net,
    Nip66Dns,
    Nip66Http,
    /// NIP-77 probe (does NEG-OPEN work?), read by the synchronizer.
    Nip77Probe,
}

impl MetadataType {
    pub const ALL: [MetadataType; 8] = [
        MetadataType::Nip11Info,
        MetadataType::Nip66Rtt,
        MetadataType::Nip66Ssl,
        MetadataType::Nip66Geo,
        MetadataType::Nip66Net,
        MetadataType::Nip66Dns,
        MetadataType::Nip66Http,
        MetadataType::Nip77Probe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetadataType::Nip11Info => "nip11_info",
            MetadataType::Nip66Rtt => "nip66_rtt",
            MetadataType::Nip66Ssl => "nip66_ssl",
            MetadataType::Nip66Geo => "nip66_geo",
            MetadataType::Nip66Net => "nip66_net",
            MetadataType::Nip66Dns => "nip66_dns",
            MetadataType::Nip66Http => "nip66_http",
            MetadataType::Nip77Probe => "nip77_probe",
        }
    }
}

impl fmt::Display for MetadataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetadataType {
    type Err = MetadataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MetadataType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| MetadataError::UnknownType(s.to_owned()))
    }
}

/// Why a document cannot be stored as metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("unknown metadata type {0:?}")]
    UnknownType(String),
    #[error("metadata contains a NUL character at {0}")]
    Nul(String),
}

/// A canonicalised document with its content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    kind: MetadataType,
    id: [u8; 32],
    canonical: String,
}

impl Metadata {
    /// Canonicalises `data` and computes its id. Rejects NUL characters (PostgreSQL's `jsonb`
    /// cannot hold them).
    pub fn new(kind: MetadataType, data: &Value) -> Result<Self, MetadataError> {
        let value = canonicalize(data, 0, "$")?.unwrap_or_else(|| Value::Object(Map::new()));
        // serde_json's Map is a BTreeMap here (no `preserve_order`), so keys serialise sorted;
        // non-finite floats cannot exist in a `Value`.
        let canonical = value.to_string();
        let id = Sha256::digest(canonical.as_bytes()).into();
        Ok(Metadata {
            kind,
            id,
            canonical,
        })
    }

    pub fn kind(&self) -> MetadataType {
        self.kind
    }
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }
    /// Sorted keys, no whitespace, UTF-8 unescaped, nulls and empty containers removed.
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }
}

/// Drops nulls and empty containers recursively; `None` means "nothing left".
fn canonicalize(v: &Value, depth: usize, path: &str) -> Result<Option<Value>, MetadataError> {
    if depth > MAX_DEPTH {
        return Ok(None);
    }
    Ok(match v {
        Value::Null => None,
        Value::String(s) => {
            if s.contains('\0') {
                return Err(MetadataError::Nul(path.to_owned()));
            }
            Some(v.clone())
        }
        Value::Bool(_) | Value::Number(_) => Some(v.clone()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if let Some(c) = canonicalize(item, depth + 1, &format!("{path}[{i}]"))? {
                    out.push(c);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, item) in map {
                if k.contains('\0') {
                    return Err(MetadataError::Nul(format!("{path} (a key)")));
                }
                if let Some(c) = canonicalize(item, depth + 1, &format!("{path}.{k}"))? {
                    out.insert(k.clone(), c);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_and_drops_empties() {
        let m = Metadata::new(
            MetadataType::Nip11Info,
            &json!({"z": 1, "a": {"y": null, "x": []}, "m": "é", "l": [null, {}, 2.5], "b": false}),
        )
        .unwrap();
        assert_eq!(m.canonical_json(), r#"{"b":false,"l":[2.5],"m":"é","z":1}"#);
    }

    #[test]
    fn id_is_sha256_of_the_canonical_bytes() {
        let m = Metadata::new(MetadataType::Nip66Rtt, &json!({"rtt_open": 120})).unwrap();
        let expected: [u8; 32] = Sha256::digest(br#"{"rtt_open":120}"#).into();
        assert_eq!(m.id(), &expected);
    }

    #[test]
    fn key_order_and_empties_do_not_change_the_id() {
        let a = Metadata::new(MetadataType::Nip66Dns, &json!({"a": 1, "b": [1, 2]})).unwrap();
        let b = Metadata::new(
            MetadataType::Nip66Dns,
            &json!({"b": [1, 2], "c": null, "a": 1}),
        )
        .unwrap();
        assert_eq!(a.id(), b.id());
        let c = Metadata::new(MetadataType::Nip66Dns, &json!({"a": 1, "b": [2, 1]})).unwrap();
        assert_ne!(a.id(), c.id(), "array order is data");
    }

    #[test]
    fn rejects_nul_with_its_path() {
        let err =
            Metadata::new(MetadataType::Nip11Info, &json!({"name": {"x": "a\u{0}"}})).unwrap_err();
        assert_eq!(err, MetadataError::Nul("$.name.x".to_owned()));
    }

    #[test]
    fn cuts_off_json_deeper_than_the_limit() {
        let mut v = json!("leaf");
        for _ in 0..(MAX_DEPTH + 10) {
            v = json!({ "k": v });
        }
        let m = Metadata::new(MetadataType::Nip11Info, &v).unwrap();
        assert!(!m.canonical_json().contains("leaf"));
        assert_eq!(
            m.canonical_json(),
            "{}",
            "everything under the cut was empty"
        );
    }

    #[test]
    fn type_names_round_trip() {
        for t in MetadataType::ALL {
            assert_eq!(t.as_str().parse::<MetadataType>(), Ok(t));
        }
        assert!("nip66_foo".parse::<MetadataType>().is_err());
    }
}
