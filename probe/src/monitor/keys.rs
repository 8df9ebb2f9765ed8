//! The monitor's signing key: hex or `nsec`, from a file (a mounted Secret) or an environment
//! variable. The secret is never logged and never part of an error message.

use std::path::Path;

use nostr::Keys;

use crate::config::monitor::PublishConfig;

/// Why the configured key cannot be used. Messages name where the key came from, not the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the monitor key file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the monitor key in {origin} is not a hex or nsec secret key")]
    Invalid { origin: String },
}

/// Parses a secret key text (surrounding whitespace ignored).
pub fn parse_secret(text: &str, origin: &str) -> Result<Keys, KeyError> {
    Keys::parse(text.trim()).map_err(|_| KeyError::Invalid {
        origin: origin.to_owned(),
    })
}

/// The configured key: `keyFile` first, then the `keyEnv` variable; `None` when neither is set.
pub fn load(cfg: &PublishConfig) -> Result<Option<Keys>, KeyError> {
    if let Some(path) = &cfg.key_file {
        let text = std::fs::read_to_string(Path::new(path)).map_err(|source| KeyError::File {
            path: path.clone(),
            source,
        })?;
        return parse_secret(&text, &format!("file {path}")).map(Some);
    }
    match std::env::var(&cfg.key_env) {
        Ok(v) if !v.trim().is_empty() => {
            parse_secret(&v, &format!("environment variable {}", cfg.key_env)).map(Some)
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_nsec_give_the_same_key() {
        let hex = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa";
        let nsec = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5";
        let a = parse_secret(hex, "t").unwrap();
        let b = parse_secret(&format!("  {nsec}\n"), "t").unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let secret = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92fzz";
        let err = parse_secret(secret, "environment variable K")
            .unwrap_err()
            .to_string();
        assert!(!err.contains(secret) && !err.contains("67dea2"), "{err}");
        assert!(err.contains("environment variable K"));
    }

    #[test]
    fn reads_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(
            &path,
            "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5\n",
        )
        .unwrap();
        let cfg = PublishConfig {
            key_file: Some(path.display().to_string()),
            ..Default::default()
        };
        assert!(load(&cfg).unwrap().is_some());
        let cfg = PublishConfig {
            key_env: "BROTR_TEST_KEY_THAT_IS_NOT_SET".into(),
            ..Default::default()
        };
        assert!(load(&cfg).unwrap().is_none());
    }
}
