//! The two storage schemas.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `full` keeps whole events; `lite` keeps id, pubkey, created_at, kind and tag values only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    #[default]
    Full,
    Lite,
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Full => "full",
            Schema::Lite => "lite",
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A schema name other than `full` or `lite`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown schema {0:?} (expected full or lite)")]
pub struct UnknownSchema(pub String);

impl FromStr for Schema {
    type Err = UnknownSchema;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Schema::Full),
            "lite" => Ok(Schema::Lite),
            other => Err(UnknownSchema(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemas_and_rejects_others() {
        assert_eq!("full".parse(), Ok(Schema::Full));
        assert_eq!("lite".parse(), Ok(Schema::Lite));
        let err = "Full".parse::<Schema>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown schema \"Full\" (expected full or lite)"
        );
    }
}
