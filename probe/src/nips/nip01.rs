//! NIP-01 messages: the one parser of what relays send, and the client messages we send.
//!
//! Relay messages are `nostr`'s [`RelayMessage`] (NIP-01, NIP-42, NIP-45, NIP-77). EVENT frames,
//! the bulk of every archive, take a typed fast path straight into an [`Event`] (one pass, no
//! intermediate JSON tree); everything else goes through `RelayMessage::from_json`.

use std::borrow::Cow;

use nostr::{Event, Filter, JsonUtil, SubscriptionId};
use serde::Serialize;
use serde_json::Value;

/// A message from a relay, owning its data.
pub type RelayMessage = nostr::RelayMessage<'static>;

/// Why a text frame is not a usable relay message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a relay-to-client message at all (an echo server, an HTML page, garbage).
    #[error("not a Nostr relay message: {0}")]
    NotRelayMessage(String),
    /// An `EVENT` frame for `subscription` whose event does not deserialize.
    #[error("EVENT for {subscription} holds a malformed event: {reason}")]
    BadEvent {
        subscription: String,
        reason: String,
    },
    /// An `OK` whose event id is not an id (some relays send `""` when they refuse before
    /// reading the event): it answers the only event in flight, if there is one.
    #[error("OK for {id:?}, which is not an event id: {message}")]
    OkWithoutId {
        id: String,
        accepted: bool,
        message: String,
    },
    /// A binary frame (NIP-01 relays speak text).
    #[error("a binary frame of {0} bytes")]
    Binary(usize),
}

/// Parses one text frame from a relay.
pub fn parse_relay_message(text: &str) -> Result<RelayMessage, ParseError> {
    if text.starts_with("[\"EVENT\"") {
        return parse_event_frame(text);
    }
    RelayMessage::from_json(text).map_err(|_| not_a_message(text))
}

fn not_a_message(text: &str) -> ParseError {
    if text.starts_with("[\"OK\"")
        && let Ok((_, id, accepted, message)) =
            serde_json::from_str::<(String, String, bool, String)>(text)
    {
        return ParseError::OkWithoutId {
            id,
            accepted,
            message,
        };
    }
    ParseError::NotRelayMessage(shorten(text, 80))
}

fn parse_event_frame(text: &str) -> Result<RelayMessage, ParseError> {
    match serde_json::from_str::<(String, SubscriptionId, Event)>(text) {
        Ok((_, sub, event)) => Ok(RelayMessage::Event {
            subscription_id: Cow::Owned(sub),
            event: Cow::Owned(event),
        }),
        Err(e) => {
            // Right shape, broken event: the relay speaks Nostr, this event is junk.
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items))
                    if items.len() == 3 && items[1].is_string() && items[2].is_object() =>
                {
                    Err(ParseError::BadEvent {
                        subscription: items[1].as_str().unwrap_or_default().to_owned(),
                        reason: e.to_string(),
                    })
                }
                _ => Err(ParseError::NotRelayMessage(shorten(text, 80))),
            }
        }
    }
}

/// The NIP-01 name of a relay message (`EOSE`, `EVENT`, …), for logs and reports.
pub fn message_name(m: &RelayMessage) -> &'static str {
    match m {
        nostr::RelayMessage::Event { .. } => "EVENT",
        nostr::RelayMessage::Ok { .. } => "OK",
        nostr::RelayMessage::EndOfStoredEvents(_) => "EOSE",
        nostr::RelayMessage::Notice(_) => "NOTICE",
        nostr::RelayMessage::Closed { .. } => "CLOSED",
        nostr::RelayMessage::Auth { .. } => "AUTH",
        nostr::RelayMessage::Count { .. } => "COUNT",
        nostr::RelayMessage::NegMsg { .. } => "NEG-MSG",
        nostr::RelayMessage::NegErr { .. } => "NEG-ERR",
    }
}

/// The subscription a message answers, if it answers one.
pub fn subscription_of(m: &RelayMessage) -> Option<&str> {
    match m {
        nostr::RelayMessage::Event {
            subscription_id, ..
        }
        | nostr::RelayMessage::Closed {
            subscription_id, ..
        }
        | nostr::RelayMessage::Count {
            subscription_id, ..
        }
        | nostr::RelayMessage::NegMsg {
            subscription_id, ..
        }
        | nostr::RelayMessage::NegErr {
            subscription_id, ..
        } => Some(subscription_id.as_str()),
        nostr::RelayMessage::EndOfStoredEvents(s) => Some(s.as_str()),
        _ => None,
    }
}

/// `["REQ", sub, filter...]`.
pub fn req(sub: &str, filters: &[Filter]) -> String {
    let mut out = format!(r#"["REQ",{}"#, json_string(sub));
    for f in filters {
        out.push(',');
        out.push_str(&f.as_json());
    }
    out.push(']');
    out
}

/// `["CLOSE", sub]`.
pub fn close(sub: &str) -> String {
    format!(r#"["CLOSE",{}]"#, json_string(sub))
}

/// `["EVENT", event]`.
pub fn event(e: &Event) -> String {
    format!(r#"["EVENT",{}]"#, e.as_json())
}

// The relay side (the api answers clients): client messages are `nostr`'s [`ClientMessage`],
// parsed once here; answers are written straight from stored columns.

/// A message from a client, owning its data.
pub type ClientMessage = nostr::ClientMessage<'static>;

/// Why a client's text frame is not a message we can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a NIP-01 client message: {0}")]
pub struct ClientParseError(pub String);

/// Parses one text frame from a client (REQ, CLOSE, COUNT, EVENT, AUTH, NEG-*).
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ClientParseError> {
    ClientMessage::from_json(text).map_err(|e| ClientParseError(shorten(&e.to_string(), 120)))
}

/// One event as NIP-01 JSON, from its stored columns (`tags_json` is the stored JSON array).
pub fn event_json(
    id: &[u8; 32],
    pubkey: &[u8; 32],
    created_at: i64,
    kind: i32,
    tags_json: &str,
    content: &str,
    sig: &[u8],
) -> String {
    format!(
        r#"{{"id":"{}","pubkey":"{}","created_at":{created_at},"kind":{kind},"tags":{tags_json},"content":{},"sig":"{}"}}"#,
        hex::encode(id),
        hex::encode(pubkey),
        json_string(content),
        hex::encode(sig)
    )
}

/// `["EVENT", sub, event]` around an event's JSON.
pub fn event_for(sub: &str, event_json: &str) -> String {
    format!(r#"["EVENT",{},{event_json}]"#, json_string(sub))
}

/// `["EOSE", sub]`.
pub fn eose(sub: &str) -> String {
    format!(r#"["EOSE",{}]"#, json_string(sub))
}

/// `["CLOSED", sub, "prefix: text"]`.
pub fn closed(sub: &str, message: &str) -> String {
    format!(
        r#"["CLOSED",{},{}]"#,
        json_string(sub),
        json_string(message)
    )
}

/// `["OK", id, accepted, message]`.
pub fn ok(id_hex: &str, accepted: bool, message: &str) -> String {
    format!(
        r#"["OK",{},{accepted},{}]"#,
        json_string(id_hex),
        json_string(message)
    )
}

/// `["NOTICE", text]`.
pub fn notice(message: &str) -> String {
    format!(r#"["NOTICE",{}]"#, json_string(message))
}

/// `["COUNT", sub, {"count": n}]` (NIP-45), `"approximate": true` when it is an estimate.
pub fn count(sub: &str, n: u64, approximate: bool) -> String {
    let approx = if approximate {
        r#","approximate":true"#
    } else {
        ""
    };
    format!(r#"["COUNT",{},{{"count":{n}{approx}}}]"#, json_string(sub))
}

/// `["NEG-ERR", sub, "prefix: text"]` (NIP-77).
pub fn neg_err(sub: &str, message: &str) -> String {
    format!(
        r#"["NEG-ERR",{},{}]"#,
        json_string(sub),
        json_string(message)
    )
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// How a relay refused a read or write: the machine-readable prefix of its `OK false` /
/// `CLOSED` message (`auth-required`, `pow`, `restricted`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub prefix: String,
    /// Mentions payment ("pay", "paid"): a paid relay.
    pub payment: bool,
}

impl Refusal {
    /// Parses `"<prefix>: <text>"`; a message without `:` has the prefix `error`.
    pub fn parse(message: &str) -> Self {
        let prefix = match message.split_once(':') {
            Some((p, _)) if !p.is_empty() && p.len() <= 32 && !p.contains(' ') => {
                p.trim().to_ascii_lowercase()
            }
            _ => "error".to_owned(),
        };
        let lower = message.to_ascii_lowercase();
        Refusal {
            payment: lower.contains("pay") || lower.contains("paid"),
            prefix,
        }
    }

    pub fn is_auth(&self) -> bool {
        self.prefix == "auth-required"
    }
    pub fn is_pow(&self) -> bool {
        self.prefix == "pow"
    }
}

/// At most `max` characters of untrusted text, for messages and logs.
pub fn shorten(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys};

    fn name(text: &str) -> Result<&'static str, ParseError> {
        parse_relay_message(text).map(|m| message_name(&m))
    }

    #[test]
    fn parses_every_relay_message_type() {
        let ev = EventBuilder::text_note("hi")
            .sign_with_keys(&Keys::generate())
            .unwrap();
        let id = ev.id.to_hex();
        let cases = [
            (format!(r#"["EVENT","s",{}]"#, ev.as_json()), "EVENT"),
            (r#"["EOSE","s"]"#.to_owned(), "EOSE"),
            (
                r#"["CLOSED","s","auth-required: log in"]"#.to_owned(),
                "CLOSED",
            ),
            (r#"["NOTICE","rate limited"]"#.to_owned(), "NOTICE"),
            (r#"["AUTH","challenge"]"#.to_owned(), "AUTH"),
            (format!(r#"["OK","{id}",true,""]"#), "OK"),
            (r#"["COUNT","s",{"count":3}]"#.to_owned(), "COUNT"),
            (r#"["NEG-MSG","n","6100"]"#.to_owned(), "NEG-MSG"),
            (
                r#"["NEG-ERR","n","blocked: too big"]"#.to_owned(),
                "NEG-ERR",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(name(&text), Ok(want), "{text}");
        }
        let m = parse_relay_message(&format!(r#"["EVENT","s",{}]"#, ev.as_json())).unwrap();
        assert_eq!(subscription_of(&m), Some("s"));
        match m {
            nostr::RelayMessage::Event { event, .. } => assert_eq!(event.id, ev.id),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_what_is_not_a_relay_message() {
        let bad = [
            r#"["REQ","brotr-validate",{"kinds":[1],"limit":1}]"#, // an echo server
            r#"["EOSE"]"#,
            r#"["EOSE",1]"#,
            r#"["OK","id","true",""]"#,
            r#"["HELLO","s"]"#,
            r#"{"type":"EOSE"}"#,
            "<html>hello</html>",
            "",
            "[]",
            "[1,2]",
        ];
        for text in bad {
            assert!(
                matches!(
                    parse_relay_message(text),
                    Err(ParseError::NotRelayMessage(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn an_ok_without_an_id_is_kept_apart() {
        assert_eq!(
            parse_relay_message(r#"["OK","",false,"restricted: permission denied"]"#),
            Err(ParseError::OkWithoutId {
                id: String::new(),
                accepted: false,
                message: "restricted: permission denied".into()
            })
        );
    }

    #[test]
    fn a_broken_event_names_its_subscription() {
        let e = parse_relay_message(r#"["EVENT","s",{"id":"x"}]"#).unwrap_err();
        assert!(
            matches!(&e, ParseError::BadEvent { subscription, .. } if subscription == "s"),
            "{e:?}"
        );
        assert!(matches!(
            parse_relay_message(r#"["EVENT","s","not an object"]"#),
            Err(ParseError::NotRelayMessage(_))
        ));
    }

    #[test]
    fn client_messages_are_json() {
        let f = Filter::new().kind(nostr::Kind::TextNote).limit(1);
        let text = req("a\"b", std::slice::from_ref(&f));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0], "REQ");
        assert_eq!(v[1], "a\"b");
        assert_eq!(v[2]["limit"], 1);
        assert_eq!(close("s"), r#"["CLOSE","s"]"#);
    }

    #[test]
    fn answers_to_clients_parse_as_relay_messages() {
        let keys = Keys::generate();
        let ev = EventBuilder::text_note("a \"quoted\" note\n")
            .tag(nostr::Tag::hashtag("x"))
            .sign_with_keys(&keys)
            .unwrap();
        let tags = serde_json::to_string(&ev.tags).unwrap();
        let json = event_json(
            &ev.id.to_bytes(),
            &ev.pubkey.to_bytes(),
            i64::try_from(ev.created_at.as_secs()).unwrap(),
            i32::from(ev.kind.as_u16()),
            &tags,
            &ev.content,
            ev.sig.as_ref(),
        );
        let back = Event::from_json(&json).unwrap();
        assert_eq!(back, ev);
        back.verify().unwrap();
        let m = parse_relay_message(&event_for("s\"1", &json)).unwrap();
        assert_eq!(subscription_of(&m), Some("s\"1"));
        for (text, name) in [
            (eose("s"), "EOSE"),
            (closed("s", "invalid: bad filter"), "CLOSED"),
            (
                ok(&ev.id.to_hex(), false, "blocked: read-only archive"),
                "OK",
            ),
            (notice("hi"), "NOTICE"),
            (count("s", 42, false), "COUNT"),
            (neg_err("n", "blocked: this query is too big"), "NEG-ERR"),
        ] {
            assert_eq!(
                message_name(&parse_relay_message(&text).unwrap()),
                name,
                "{text}"
            );
        }
        let v: Value = serde_json::from_str(&count("s", 7, true)).unwrap();
        assert_eq!(v[2]["count"], 7);
        assert_eq!(v[2]["approximate"], true);
    }

    #[test]
    fn client_messages_parse_with_nostr_types() {
        let pk = Keys::generate().public_key();
        let text = format!(
            r##"["REQ","s",{{"authors":["{}"],"kinds":[1]}},{{"#t":["x"]}}]"##,
            pk.to_hex()
        );
        match parse_client_message(&text).unwrap() {
            nostr::ClientMessage::Req {
                subscription_id,
                filters,
            } => {
                assert_eq!(subscription_id.as_str(), "s");
                assert_eq!(filters.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_client_message(r#"["CLOSE","s"]"#),
            Ok(nostr::ClientMessage::Close(_))
        ));
        for bad in [
            "",
            "[]",
            r#"["REQ"]"#,
            r#"{"REQ":1}"#,
            r#"["HELLO","s"]"#,
            "\u{0}",
        ] {
            assert!(parse_client_message(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refusals_keep_their_prefix() {
        assert!(Refusal::parse("auth-required: please").is_auth());
        assert!(Refusal::parse("pow: 20 bits").is_pow());
        assert_eq!(Refusal::parse("no colon here").prefix, "error");
        assert!(Refusal::parse("restricted: pay first").payment);
    }

    #[test]
    fn shortens_long_untrusted_text() {
        assert_eq!(shorten("abc", 80), "abc");
        let long = "é".repeat(100);
        assert_eq!(shorten(&long, 80).chars().count(), 81);
    }
}
