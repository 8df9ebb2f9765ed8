//! The probe's one identity: the monitor's signing key (hex or `nsec`, from a file such as a
//! mounted Secret, or an environment variable), also used to answer NIP-42 AUTH everywhere. The
//! secret is never logged and never part of an error message.
//!
//! Several monitors (one per region, each with its own key) can share one database: results and
//! the monitor's scheduling state carry the key's public part, so they neither split the relays
//! among themselves nor mix their series.

use std::path::Path;

use nostr::Keys;

use crate::config::monitor::PublishConfig;

/// Why the configured key cannot be used. Messages name where the key came from, not the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key in {origin} is not a hex or nsec secret key")]
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
    load_key(cfg.key_file.as_deref(), &cfg.key_env)
}

/// A key from `key_file`, else from the environment variable `key_env`; `None` when neither
/// holds one.
pub fn load_key(key_file: Option<&str>, key_env: &str) -> Result<Option<Keys>, KeyError> {
    if let Some(path) = key_file {
        let text = std::fs::read_to_string(Path::new(path)).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source,
        })?;
        return parse_secret(&text, &format!("file {path}")).map(Some);
    }
    match std::env::var(key_env) {
        Ok(v) if !v.trim().is_empty() => {
            parse_secret(&v, &format!("environment variable {key_env}")).map(Some)
        }
        _ => Ok(None),
    }
}

/// The probe's identity for this process.
#[derive(Clone)]
pub struct Identity {
    keys: Keys,
    configured: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Identity")
            .field("pubkey", &self.keys.public_key().to_hex())
            .field("configured", &self.configured)
            .finish()
    }
}

impl Identity {
    /// The configured key, or a fresh ephemeral one when none is configured (AUTH still works;
    /// nothing is published).
    pub fn load(cfg: &PublishConfig) -> Result<Self, KeyError> {
        Ok(match load(cfg)? {
            Some(keys) => Identity {
                keys,
                configured: true,
            },
            None => Identity::ephemeral(),
        })
    }

    /// A throwaway identity (tests, one-relay checks).
    pub fn ephemeral() -> Self {
        Identity {
            keys: Keys::generate(),
            configured: false,
        }
    }

    /// A configured identity from keys (tests, embedding).
    pub fn from_keys(keys: Keys) -> Self {
        Identity {
            keys,
            configured: true,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether a key was configured (only then is anything published).
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// What results are stored under: the public key's 32 bytes, or nothing for a monitor
    /// without a key (all keyless monitors share that identity).
    pub fn monitor_id(&self) -> Vec<u8> {
        if self.configured {
            self.keys.public_key().to_bytes().to_vec()
        } else {
            Vec::new()
        }
    }

    /// The `service_state` service name of this monitor's scheduling state.
    pub fn state_service(&self) -> String {
        if self.configured {
            format!("monitor:{}", self.keys.public_key().to_hex())
        } else {
            "monitor".to_owned()
        }
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
    fn identities_scope_results_and_state_by_public_key() {
        let keys = parse_secret(
            "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa",
            "t",
        )
        .unwrap();
        let a = Identity::from_keys(keys.clone());
        assert_eq!(a.monitor_id(), keys.public_key().to_bytes().to_vec());
        assert_eq!(
            a.state_service(),
            format!("monitor:{}", keys.public_key().to_hex())
        );
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("67dea2ed"),
            "the secret is never printed: {debug}"
        );
        let anon = Identity::ephemeral();
        assert!(anon.monitor_id().is_empty());
        assert_eq!(anon.state_service(), "monitor");
        assert!(!anon.is_configured());
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
