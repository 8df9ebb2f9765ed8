//! NIP-42 authentication: the event a client answers a challenge with.

use nostr::{Event, EventBuilder, JsonUtil, Keys};

/// Why an AUTH event could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("relay URL {0:?} is not valid for NIP-42: {1}")]
    RelayUrl(String, String),
    #[error("cannot sign the AUTH event: {0}")]
    Sign(String),
}

/// A kind 22242 event answering `challenge` from `relay`, signed with `keys`.
pub fn auth_event(keys: &Keys, challenge: &str, relay: &str) -> Result<Event, AuthError> {
    let url = nostr::RelayUrl::parse(relay)
        .map_err(|e| AuthError::RelayUrl(relay.to_owned(), e.to_string()))?;
    EventBuilder::auth(challenge, url)
        .sign_with_keys(keys)
        .map_err(|e| AuthError::Sign(e.to_string()))
}

/// `["AUTH", event]`.
pub fn auth_message(event: &Event) -> String {
    format!(r#"["AUTH",{}]"#, event.as_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_challenge_for_the_relay() {
        let keys = Keys::generate();
        let e = auth_event(&keys, "c-123", "wss://relay.example.com").unwrap();
        assert_eq!(e.kind, nostr::Kind::Authentication);
        assert!(e.verify().is_ok());
        let tags: Vec<Vec<String>> = e.tags.iter().map(|t| t.clone().to_vec()).collect();
        assert!(tags.contains(&vec!["challenge".into(), "c-123".into()]));
        assert!(tags.contains(&vec!["relay".into(), "wss://relay.example.com".into()]));
        assert!(auth_message(&e).starts_with(r#"["AUTH",{"#));
        assert!(auth_event(&keys, "c", "not a url").is_err());
    }
}
