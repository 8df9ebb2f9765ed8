//! The archive's read side (`brotr-probe api`): where it listens and what one client may ask.
//! The NIP-11 document advertises the same numbers.

use garde::Validate;
use serde::{Deserialize, Serialize};

/// Limits of the api (relay and HTTP API alike).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiConfig {
    /// Address the relay and the HTTP API listen on.
    #[garde(length(min = 1, max = 256))]
    pub listen: String,
    /// Name in the NIP-11 document.
    #[garde(length(max = 256))]
    pub name: String,
    /// Description in the NIP-11 document.
    #[garde(length(max = 4096))]
    pub description: String,
    /// Open WebSocket connections from one IP address (HTTP requests count against the rate).
    #[garde(range(min = 1, max = 100_000))]
    pub max_connections_per_ip: u32,
    /// Requests per second from one IP address (HTTP requests and WebSocket messages together),
    /// with bursts up to `burst`.
    #[garde(range(min = 1, max = 1_000_000))]
    pub requests_per_second: u32,
    /// Requests one IP address may make at once above its rate.
    #[garde(range(min = 1, max = 1_000_000))]
    pub burst: u32,
    /// Open subscriptions (REQ) per connection.
    #[garde(range(min = 1, max = 10_000))]
    pub max_subscriptions: u32,
    /// Filters in one REQ or COUNT.
    #[garde(range(min = 1, max = 100))]
    pub max_filters: u32,
    /// Values in `ids` or in `authors` of one filter.
    #[garde(range(min = 1, max = 100_000))]
    pub max_ids_per_filter: u32,
    /// Values over all `#x` tag lists of one filter.
    #[garde(range(min = 1, max = 100_000))]
    pub max_tag_values: u32,
    /// Largest `limit` of a filter (larger ones are clamped) and of an HTTP page.
    #[garde(range(min = 1, max = 100_000))]
    pub max_limit: u32,
    /// `limit` of a filter without one.
    #[garde(range(min = 1, max = 100_000))]
    pub default_limit: u32,
    /// Largest WebSocket message from a client, in bytes (a larger one ends the connection).
    #[garde(range(min = 1024, max = 16_777_216))]
    pub max_message_bytes: u32,
    /// Longest subscription id.
    #[garde(range(min = 1, max = 1024))]
    pub max_subid_length: u32,
    /// Every query is cancelled after this many milliseconds (HTTP 504, `CLOSED "error: …"`).
    #[garde(range(min = 100, max = 600_000))]
    pub statement_timeout_ms: u64,
    /// Most events one NIP-77 reconciliation may cover; a larger window is answered
    /// `NEG-ERR "blocked: this query is too big"`.
    #[garde(range(min = 1, max = 50_000_000))]
    pub max_negentropy_items: u32,
    /// NIP-77 sessions open at once per connection.
    #[garde(range(min = 1, max = 100))]
    pub max_negentropy_sessions: u32,
    /// Messages waiting to be written to one client; a client that lets more pile up is not
    /// reading and is cut.
    #[garde(range(min = 16, max = 1_000_000))]
    pub max_outbox: u32,
    /// Kinds never served, whatever a filter asks: by default NIP-04 direct messages (4) and
    /// NIP-59 gift wraps (1059), which relays give only to their recipient after NIP-42 AUTH
    /// (the synchronizer archives the ones addressed to the pipeline's own key).
    #[garde(length(max = 100))]
    pub hidden_kinds: Vec<u16>,
    /// How often the SQLite archive is polled for new events (PostgreSQL announces them).
    #[garde(range(min = 0.05, max = 60.0))]
    pub poll_secs: f64,
    /// Reverse proxies in front of the api (an Ingress controller), as addresses or CIDRs. For a
    /// request from one of them the client is the rightmost `X-Forwarded-For` address that is not
    /// itself a trusted proxy, so the per-address limits apply per client and not to the proxy.
    /// Empty (the default): the connection's own address, always; headers are never believed.
    #[garde(length(max = 100), custom(check_cidrs))]
    pub trusted_proxies: Vec<String>,
}

/// Every entry of `trustedProxies` parses as an address or a CIDR.
fn check_cidrs(list: &[String], _: &()) -> garde::Result {
    for (i, entry) in list.iter().enumerate() {
        parse_cidr(entry).map_err(|e| garde::Error::new(format!("[{i}] {e}")))?;
    }
    Ok(())
}

/// `10.0.0.0/8`, `fd00::/8`, or one address (`192.0.2.7`, a /32 or /128).
pub fn parse_cidr(entry: &str) -> Result<ipnet::IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<ipnet::IpNet>()
        .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("{entry:?} is neither an IP address nor a CIDR (10.0.0.0/8, fd00::/8)")
        })
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "0.0.0.0:8080".into(),
            name: "Brotr archive".into(),
            description: "A read-only archive of the events Brotr collected from Nostr relays."
                .into(),
            max_connections_per_ip: 32,
            requests_per_second: 50,
            burst: 100,
            max_subscriptions: 32,
            max_filters: 10,
            max_ids_per_filter: 500,
            max_tag_values: 500,
            max_limit: 500,
            default_limit: 500,
            max_message_bytes: 131_072,
            max_subid_length: 64,
            statement_timeout_ms: 5_000,
            max_negentropy_items: 2_000_000,
            max_negentropy_sessions: 4,
            max_outbox: 2_048,
            hidden_kinds: vec![4, 1059],
            poll_secs: 1.0,
            trusted_proxies: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_addresses_or_cidrs() {
        let mut cfg = ApiConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "fd00::/8".into(), "192.0.2.7".into()],
            ..ApiConfig::default()
        };
        assert!(cfg.validate().is_ok());
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        cfg.trusted_proxies.push("ingress-nginx".into());
        assert!(cfg.validate().is_err());
    }
}
