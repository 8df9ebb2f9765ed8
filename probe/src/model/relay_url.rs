//! Relay URLs: untrusted input in, one canonical form out (the reference system's rules).
//!
//! [`RelayUrl::parse`] *is* the sanitizer, so a `RelayUrl` value is always canonical and
//! `parse(url.as_str())` gives back the same value. The pipeline, in order:
//!
//! 1. Reject a NUL anywhere; trim whitespace.
//! 2. Scheme: `ws` or `wss` (any case) followed by `://`; anything else is rejected.
//! 3. Split authority / path / query / fragment by hand (RFC 3986 delimiters). Query and fragment
//!    are dropped; user info (`user@host`) is rejected.
//! 4. Host: percent-decode; `[..]` must hold an IPv6 address (printed RFC 5952-compressed);
//!    whitespace, control characters and `\` are rejected; non-ASCII hosts go through IDNA
//!    (`idna::domain_to_ascii`, `café.com` → `xn--caf-dma.com`); lowercase; drop one trailing dot.
//! 5. Network: `.onion` (v3 56 / v2 16 base32 hash, optional subdomain labels) → tor; `.i2p`
//!    (`<52 base32>.b32.i2p` or a hostname) → i2p; `<52 chars>.loki` → loki; everything else is
//!    clearnet and must be a dotted-decimal IPv4 address or a hostname (a dot, ≤ 253 chars, labels of
//!    1–63 `[a-z0-9_-]` not starting/ending with `-`, non-numeric TLD).
//! 6. Port 1–65535 (else rejected); dropped when it is the default of the final scheme.
//! 7. Path: collapse `//`, resolve `.`/`..`, strip trailing `/`, percent-decode; if any segment has
//!    a character outside `[A-Za-z0-9-._~:]` or does not start and end alphanumeric, the whole path
//!    is dropped (the URL is kept, reduced to its host).
//! 8. Rebuild `scheme://host[:port][/path]`; more than 2048 characters is rejected.
//!
//! Project decisions (where this differs from, or sharpens, the reference system):
//!
//! * **Plain `ws://` clearnet URLs keep their scheme** (the spec forces `wss`): plain-ws relays must
//!   be triable. The default port is therefore judged against the URL's own scheme: `ws://h:80` →
//!   `ws://h`, `wss://h:443` → `wss://h`, `ws://h:443` stays. Overlays are still forced to `ws`
//!   (`wss://<onion>` → `ws://<onion>`, `wss://relay.i2p:80` → `ws://relay.i2p`).
//! * **Local/private/reserved hosts** (`localhost`, `localhost.localdomain`, every range the reference system refuses
//!   step 4) are rejected by [`RelayUrl::parse`] — the SSRF guard at the model level — and accepted by
//!   [`RelayUrl::parse_allowing_local`] as clearnet with [`RelayUrl::is_local`] true. On top of the
//!   spec list we also treat as local `*.localhost` (RFC 6761 resolves it to loopback), `::/96`
//!   (IPv4-compatible, e.g. `[::127.0.0.1]`) and `fec0::/10` (deprecated site-local).
//! * **No WHATWG number forms.** The `url` crate would read `0x7f.1`, `127.1` or `010.0.0.1` as
//!   `127.0.0.1`/`8.0.0.1`; we parse the raw host ourselves: a host whose last label is a number
//!   (all digits, or `0x` + hex) must be a strict dotted-decimal IPv4 address (no leading zeros).
//! * **Tor v3** hashes must also end in `d` (the version-3 byte); every real v3 address does.
//! * **Loki** hashes are 52 chars of `[a-z1-9]`: Lokinet uses z-base32, whose digits are not the
//!   `2-7` of RFC 4648 base32, so this is the union of both alphabets.
//! * Errors quote at most 200 characters of the input.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Network;

/// Longest accepted canonical URL, in characters.
pub const MAX_URL_LEN: usize = 2048;
const MAX_HOST_LEN: usize = 253;
const SHOWN_CHARS: usize = 200;

/// Why an input is not a relay URL. Every message quotes the input and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    #[error("invalid relay URL {input:?}: it is empty")]
    Empty { input: String },
    #[error("invalid relay URL {input:?}: it contains a NUL character")]
    Nul { input: String },
    #[error("invalid relay URL {input:?}: missing scheme (expected ws:// or wss://)")]
    MissingScheme { input: String },
    #[error("invalid relay URL {input:?}: scheme {scheme:?} is not ws or wss")]
    UnsupportedScheme { input: String, scheme: String },
    #[error("invalid relay URL {input:?}: it has no host")]
    MissingHost { input: String },
    #[error("invalid relay URL {input:?}: user info (`user@`) is not allowed")]
    UserInfo { input: String },
    #[error("invalid relay URL {input:?}: port {port:?} is not a number in 1-65535")]
    InvalidPort { input: String, port: String },
    #[error("invalid relay URL {input:?}: host {host:?} {reason}")]
    InvalidHost {
        input: String,
        host: String,
        reason: &'static str,
    },
    #[error("invalid relay URL {input:?}: host {host:?} is local, private or reserved")]
    LocalHost { input: String, host: String },
    #[error("invalid relay URL {input:?}: canonical form is {len} characters long (max 2048)")]
    TooLong { input: String, len: usize },
}

/// A relay URL in canonical form, with its network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayUrl {
    url: String,
    network: Network,
    host: (usize, usize),
    port: Option<u16>,
    path_start: Option<usize>,
    local: bool,
}

/// A host after decoding, IDNA and classification.
enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Input shown in errors: at most [`SHOWN_CHARS`] characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// One parse of untrusted input: the steps, each naming the input in its errors.
struct Parsing<'a> {
    input: &'a str,
}

impl Parsing<'_> {
    fn inp(&self) -> String {
        shown(self.input)
    }

    fn bad_host(&self, host: &str, reason: &'static str) -> RelayUrlError {
        RelayUrlError::InvalidHost {
            input: self.inp(),
            host: shown(host),
            reason,
        }
    }

    /// `ws://` or `wss://` (any case): whether TLS, and the rest.
    fn scheme<'s>(&self, s: &'s str) -> Result<(bool, &'s str), RelayUrlError> {
        let (scheme, rest) = match s.find("://") {
            Some(i) if is_scheme(&s[..i]) => (&s[..i], &s[i + 3..]),
            _ => return Err(RelayUrlError::MissingScheme { input: self.inp() }),
        };
        match scheme.to_ascii_lowercase().as_str() {
            "wss" => Ok((true, rest)),
            "ws" => Ok((false, rest)),
            _ => Err(RelayUrlError::UnsupportedScheme {
                input: self.inp(),
                scheme: shown(scheme),
            }),
        }
    }

    /// Authority → raw host, port, whether the host was bracketed (IPv6).
    fn authority<'s>(
        &self,
        authority: &'s str,
    ) -> Result<(&'s str, Option<u16>, bool), RelayUrlError> {
        if authority.contains('@') {
            return Err(RelayUrlError::UserInfo { input: self.inp() });
        }
        let (raw_host, raw_port, bracketed) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((h, tail)) = inner.split_once(']') else {
                return Err(self.bad_host(authority, "has an unclosed '['"));
            };
            match tail.strip_prefix(':') {
                Some(p) => (h, Some(p), true),
                None if tail.is_empty() => (h, None, true),
                None => return Err(self.bad_host(authority, "has characters after ']'")),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p), false),
                None => (authority, None, false),
            }
        };
        if raw_host.is_empty() {
            return Err(RelayUrlError::MissingHost { input: self.inp() });
        }
        let port = match raw_port {
            None | Some("") => None,
            Some(p) => Some(parse_port(p).ok_or_else(|| RelayUrlError::InvalidPort {
                input: self.inp(),
                port: shown(p),
            })?),
        };
        Ok((raw_host, port, bracketed))
    }

    /// Host: percent-decoded, characters checked, IDNA, lowercase, no trailing dot.
    fn host(&self, raw_host: &str, bracketed: bool) -> Result<Host, RelayUrlError> {
        let Ok(decoded) = String::from_utf8(percent_decode(raw_host)) else {
            return Err(self.bad_host(raw_host, "is not UTF-8 after percent-decoding"));
        };
        if decoded
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(self.bad_host(&decoded, "contains whitespace, a control character or '\\'"));
        }
        if bracketed {
            return match decoded.parse::<Ipv6Addr>() {
                Ok(ip) => Ok(Host::V6(ip)),
                Err(_) => Err(self.bad_host(&decoded, "is not an IPv6 address")),
            };
        }
        let mut name = if decoded.is_ascii() {
            decoded.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(&decoded).map_err(|_| {
                self.bad_host(&decoded, "is not a valid internationalized domain name")
            })?
        };
        if name.ends_with('.') {
            name.pop();
        }
        if name.is_empty() {
            return Err(RelayUrlError::MissingHost { input: self.inp() });
        }
        if name.len() > MAX_HOST_LEN {
            return Err(self.bad_host(&name, "is longer than 253 characters"));
        }
        let last = name.rsplit('.').next().unwrap_or_default();
        if !is_number_label(last) {
            return Ok(Host::Name(name));
        }
        match name.parse::<Ipv4Addr>() {
            Ok(ip) => Ok(Host::V4(ip)),
            Err(_) => Err(self.bad_host(&name, NUMERIC_HOST)),
        }
    }
}

impl RelayUrl {
    /// Parses untrusted input, refusing local/private/reserved hosts.
    pub fn parse(input: &str) -> Result<Self, RelayUrlError> {
        Self::parse_inner(input, false)
    }

    /// Like [`RelayUrl::parse`] but accepts loopback/private hosts (tests, `allow_private`).
    pub fn parse_allowing_local(input: &str) -> Result<Self, RelayUrlError> {
        Self::parse_inner(input, true)
    }

    fn parse_inner(input: &str, allow_local: bool) -> Result<Self, RelayUrlError> {
        let p = Parsing { input };
        if input.contains('\0') {
            return Err(RelayUrlError::Nul { input: p.inp() });
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(RelayUrlError::Empty { input: p.inp() });
        }
        let (tls, rest) = p.scheme(s)?;
        let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let raw_path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
        let (raw_host, port, bracketed) = p.authority(authority)?;
        let host = p.host(raw_host, bracketed)?;
        let (network, local) = match &host {
            Host::V4(ip) => (Network::Clearnet, is_local_v4(*ip)),
            Host::V6(ip) => (Network::Clearnet, is_local_v6(*ip)),
            Host::Name(name) => classify_name(name).map_err(|reason| p.bad_host(name, reason))?,
        };
        let host = match host {
            Host::Name(name) => name,
            Host::V4(ip) => ip.to_string(),
            Host::V6(ip) => ip.to_string(),
        };
        if local && !allow_local {
            return Err(RelayUrlError::LocalHost {
                input: p.inp(),
                host,
            });
        }
        // Overlays are reached through their proxy: plain WebSocket.
        let tls = tls && !network.is_overlay();
        let mut url = Self::build(tls, &host, port, normalize_path(raw_path));
        if url.url.len() > MAX_URL_LEN {
            return Err(RelayUrlError::TooLong {
                input: p.inp(),
                len: url.url.len(),
            });
        }
        url.network = network;
        url.local = local;
        Ok(url)
    }

    /// The canonical URL from its parts; the default port of the scheme is dropped.
    fn build(tls: bool, host: &str, port: Option<u16>, path: Option<String>) -> RelayUrl {
        let port = port.filter(|&p| p != if tls { 443 } else { 80 });
        let mut url = String::from(if tls { "wss://" } else { "ws://" });
        let v6 = host.contains(':');
        if v6 {
            url.push('[');
        }
        let host_range = (url.len(), url.len() + host.len());
        url.push_str(host);
        if v6 {
            url.push(']');
        }
        if let Some(p) = port {
            url.push(':');
            url.push_str(&p.to_string());
        }
        let path_start = path.map(|p| {
            let start = url.len();
            url.push_str(&p);
            start
        });
        RelayUrl {
            url,
            network: Network::Clearnet,
            host: host_range,
            port,
            path_start,
            local: false,
        }
    }

    /// The canonical URL.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn network(&self) -> Network {
        self.network
    }

    /// `ws` or `wss`.
    pub fn scheme(&self) -> &str {
        if self.is_tls() { "wss" } else { "ws" }
    }

    /// The host: a lowercase ASCII name, an IPv4 address, or an IPv6 address without brackets.
    pub fn host(&self) -> &str {
        &self.url[self.host.0..self.host.1]
    }

    /// The explicit port; `None` when it is the scheme's default (80 for ws, 443 for wss).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path (starting with `/`, no trailing `/`), if any.
    pub fn path(&self) -> Option<&str> {
        self.path_start.map(|i| &self.url[i..])
    }

    /// Whether the URL is `wss` (TLS).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("wss:")
    }

    /// True for hosts that only [`RelayUrl::parse_allowing_local`] accepts (loopback, private,
    /// reserved, `localhost`).
    pub fn is_local(&self) -> bool {
        self.local
    }
}

const NUMERIC_HOST: &str = "ends in a numeric label but is not a dotted-decimal IPv4 address (no leading zeros, octal or hex)";

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Digits only, 1–65535 (leading zeros tolerated).
fn parse_port(p: &str) -> Option<u16> {
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = p.trim_start_matches('0');
    if digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&n| n != 0)
}

/// A label the WHATWG host parser would read as a number: all digits, or `0x` + hex digits.
fn is_number_label(label: &str) -> bool {
    let hex = label.strip_prefix("0x");
    (!label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()))
        || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|&c| char::from(c).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if let (b'%', Some(hi), Some(lo)) = (c, hex(i + 1), hex(i + 2)) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_base32(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
}

fn is_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
}

/// Network and locality of a (lowercase, trailing-dot-free, non-numeric) host name.
fn classify_name(name: &str) -> Result<(Network, bool), &'static str> {
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    let plain = || {
        if n < 2 {
            Err("has no dot (single-label hosts are not accepted)")
        } else if labels.iter().all(|l| is_label(l)) {
            Ok(())
        } else {
            Err(
                "has an empty or invalid label (labels are 1-63 of [a-z0-9_-], no leading/trailing '-')",
            )
        }
    };
    if name == "localhost" || name == "localhost.localdomain" || name.ends_with(".localhost") {
        return Ok((Network::Clearnet, true));
    }
    match labels.last().copied() {
        Some("onion") => {
            let hash = if n >= 2 { labels[n - 2] } else { "" };
            let v3 = is_base32(hash, 56) && hash.ends_with('d');
            if !(v3 || is_base32(hash, 16)) {
                return Err(
                    "is not an onion address (needs a 56-char v3 or 16-char v2 base32 hash)",
                );
            }
            if !labels[..n - 2].iter().all(|l| is_label(l)) {
                return Err("has an invalid subdomain label before the onion hash");
            }
            Ok((Network::Tor, false))
        }
        Some("i2p") if name.ends_with(".b32.i2p") => match labels.as_slice() {
            [hash, _, _] if is_base32(hash, 52) => Ok((Network::I2p, false)),
            _ => Err("is not a .b32.i2p address (needs exactly 52 base32 characters)"),
        },
        Some("i2p") => plain().map(|()| (Network::I2p, false)),
        Some("loki") => match labels.as_slice() {
            [hash, _]
                if hash.len() == 52
                    && hash.bytes().all(|b| matches!(b, b'a'..=b'z' | b'1'..=b'9')) =>
            {
                Ok((Network::Loki, false))
            }
            _ => Err("is not a .loki address (needs exactly 52 base32 characters)"),
        },
        _ => plain().map(|()| (Network::Clearnet, false)),
    }
}

/// Whether `ip` is loopback, private, link-local, CGNAT, documentation, multicast or otherwise
/// reserved: the SSRF guard's test, shared by URL parsing and by the dialer (which checks the
/// addresses a hostname resolves to).
pub fn is_local_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => is_local_v4(v4),
        std::net::IpAddr::V6(v6) => is_local_v6(v6),
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    const RANGES: [([u8; 4], u32); 15] = [
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 24),
        ([192, 0, 2, 0], 24),
        ([192, 88, 99, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4), // includes 255.255.255.255
    ];
    let x = ip.to_bits();
    RANGES
        .iter()
        .any(|&(net, len)| x >> (32 - len) == u32::from_be_bytes(net) >> (32 - len))
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    const fn p(a: u16, b: u16) -> u128 {
        Ipv6Addr::new(a, b, 0, 0, 0, 0, 0, 0).to_bits()
    }
    const RANGES: [(u128, u32); 12] = [
        (0, 96),                                                    // ::, ::1, IPv4-compatible
        (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0).to_bits(), 96), // IPv4-mapped
        (p(0x64, 0xff9b), 96),                                      // NAT64
        (p(0x100, 0), 64),                                          // discard
        (p(0x2001, 0), 32),                                         // Teredo
        (p(0x2001, 2), 48),                                         // benchmarking
        (p(0x2001, 0xdb8), 32),                                     // documentation
        (p(0x2001, 0x10), 28),                                      // ORCHID
        (p(0xfc00, 0), 7),                                          // unique local
        (p(0xfe80, 0), 10),                                         // link local
        (p(0xfec0, 0), 10),                                         // site local (deprecated)
        (p(0xff00, 0), 8),                                          // multicast
    ];
    let x = ip.to_bits();
    RANGES
        .iter()
        .any(|&(net, len)| x >> (128 - len) == net >> (128 - len))
}

/// Canonical path, or `None` when it is empty or any segment is not clean.
fn normalize_path(raw: &str) -> Option<String> {
    let mut segments: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::new();
    for seg in segments {
        let bytes = percent_decode(seg);
        let edges_ok = matches!((bytes.first(), bytes.last()),
            (Some(f), Some(l)) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric());
        if !edges_ok
            || !bytes
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~:".contains(c))
        {
            return None;
        }
        out.push('/');
        out.push_str(std::str::from_utf8(&bytes).ok()?);
    }
    (!out.is_empty()).then_some(out)
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for RelayUrl {
    type Err = RelayUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for RelayUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

impl<'de> Deserialize<'de> for RelayUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelayUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V3: &str = "oxtrdevav64z64yb7x6rjg4ntzqjhedm5b5zjqulugknhzr46ny2qbad";
    const V2: &str = "expyuzz4wqqyqhjn";
    const B32: &str = "ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdq";
    const LOKI: &str = "dw68y1xhptqbhcm5s8aaaip6dbopykagig5q5u1za4c7pzxto77y";

    /// `network | input | canonical` (canonical omitted = input is already canonical). `{V3}`,
    /// `{V2}`, `{B32}`, `{LOKI}` stand for valid overlay hashes. Inputs must not need trimming.
    const ACCEPTED: &str = "
c | wss://relay.damus.io
c | wss://relay.damus.io:8080
c | wss://8.8.8.8
c | wss://8.8.8.8:7777
c | wss://[2606:4700::1111]
c | wss://[2606:4700::1111]:8080
c | wss://sub.relay.example.com
c | wss://relay.example.com/deep/path/to/relay
c | wss://relay.example.com/inbox
c | wss://groups.example.com/npub1abc:groupName
c | wss://lnbits.example.com/nostrclient/api/v1/relay
c | wss://relay.example.com/v1
c | wss://my_relay.example.com
c | wss://_dmarc.example.com
c | wss://172.15.0.1
c | wss://172.32.0.1
c | wss://relay.damus.io:1
c | wss://relay.damus.io:65535
c | wss://relay.example.com:80
c | wss://relay.example.com:443 | wss://relay.example.com
c | ws://relay.example.com
c | ws://relay.example.com:80 | ws://relay.example.com
c | ws://relay.example.com:443
c | ws://relay.example.com:443/x
c | WSS://Relay.Damus.IO | wss://relay.damus.io
c | Wss://RELAY.damus.io/Path | wss://relay.damus.io/Path
c | wss://relay.damus.io/ | wss://relay.damus.io
c | wss://relay.damus.io/path/ | wss://relay.damus.io/path
c | wss://relay.damus.io//path//to// | wss://relay.damus.io/path/to
c | wss://relay.damus.io?key=value | wss://relay.damus.io
c | wss://relay.damus.io/path?x=1#frag | wss://relay.damus.io/path
c | wss://relay.damus.io#frag | wss://relay.damus.io
c | wss://relay.damus.io: | wss://relay.damus.io
c | wss://relay.damus.io:0443 | wss://relay.damus.io
c | wss://relay.damus.io/%0Awss:/other | wss://relay.damus.io
c | wss://relay.damus.io/x%0D%0Ainjected | wss://relay.damus.io
c | wss://relay.damus.io/%00hidden | wss://relay.damus.io
c | wss://relay.damus.io/%09tab | wss://relay.damus.io
c | wss://relay.damus.io/path%20path | wss://relay.damus.io
c | wss://relay.damus.io/a b | wss://relay.damus.io
c | wss://relay.damus.io/wss://relay.damus.io/x | wss://relay.damus.io
c | wss://relay.damus.io/ws://evil.com | wss://relay.damus.io
c | wss://relay.damus.io/http://x | wss://relay.damus.io
c | wss://relay.damus.io/ok/-bad | wss://relay.damus.io
c | wss://relay.damus.io/.hidden | wss://relay.damus.io
c | wss://relay.damus.io/café | wss://relay.damus.io
c | wss://relay.damus.io/a\\b | wss://relay.damus.io
c | wss://relay.damus.io/%2E%2E/x | wss://relay.damus.io
c | wss://relay.damus.io/a/../b | wss://relay.damus.io/b
c | wss://relay.damus.io/a/./b | wss://relay.damus.io/a/b
c | wss://relay.damus.io/../../b | wss://relay.damus.io/b
c | wss://relay.damus.io/a/b/.. | wss://relay.damus.io/a
c | wss://relay.damus.io/%61bc | wss://relay.damus.io/abc
c | wss://café.com | wss://xn--caf-dma.com
c | wss://café.com:8080/path | wss://xn--caf-dma.com:8080/path
c | wss://MÜNCHEN.de/relay | wss://xn--mnchen-3ya.de/relay
c | wss://caf%C3%A9.com | wss://xn--caf-dma.com
c | wss://relay%2Edamus.io | wss://relay.damus.io
c | wss://relay.damus.io. | wss://relay.damus.io
c | wss://relay.damus.io.:8080/x | wss://relay.damus.io:8080/x
c | wss://[2606:4700:0000:0000:0000:0000:0000:1111] | wss://[2606:4700::1111]
c | wss://[2606:4700::0001]:443 | wss://[2606:4700::1]
c | wss://[2606:4700::ABCD] | wss://[2606:4700::abcd]
t | wss://{V3}.onion | ws://{V3}.onion
t | ws://{V3}.onion:80/x | ws://{V3}.onion/x
t | wss://{V3}.onion:443 | ws://{V3}.onion:443
t | WSS://OXTRDEVAV64Z64YB7X6RJG4NTZQJHEDM5B5ZJQULUGKNHZR46NY2QBAD.ONION | ws://{V3}.onion
t | ws://{V2}.onion
t | ws://relay.{V3}.onion
t | ws://a.b_c.{V3}.onion
i | ws://relay.i2p/path?query | ws://relay.i2p/path
i | wss://relay.i2p:80 | ws://relay.i2p
i | wss://{B32}.b32.i2p | ws://{B32}.b32.i2p
l | wss://{LOKI}.loki:80 | ws://{LOKI}.loki
";
    // Rows that differ from the reference system because plain ws:// clearnet is kept (module doc, decision 1):
    // `ws://relay.example.com` (reference: wss://…), `ws://…:80` → `ws://…` (reference: `wss://…:80`),
    // `ws://…:443[/x]` kept (reference: `wss://…[/x]`).

    /// Rejected by `parse`, whitespace-separated (`\0` escapes are real NULs); see also
    /// [`REJECTED_WITH_SPACES`].
    const REJECTED: &str = "
    wss://relay.damus.io\0 wss://relay\0.damus.io \0wss://relay.damus.io http://relay.damus.io
    https://relay.damus.io ftp://relay.damus.io relay.damus.io //relay.damus.io
    wss:relay.damus.io wss//relay.damus.io wss:// wss:///path wss://:443 wss://?x
    wss://user:pass@relay.damus.io wss://relay.damus.io@evil.com wss://[2606:4700::1111
    wss://[2606:4700::1111]x wss://[8.8.8.8] wss://[relay.damus.io] wss://[fe80::1%25eth0]
    wss://2606:4700::1111 wss://relay.damus.io:0 wss://relay.damus.io:00
    wss://relay.damus.io:65536 wss://relay.damus.io:99999 wss://relay.damus.io:4294967297
    wss://relay.damus.io:-1 wss://relay.damus.io:+80 wss://relay.damus.io:abc
    wss://relay.damus.io:80:80 wss://relay wss://com. wss://relay.123 wss://-relay.example.com
    wss://relay-.example.com wss://relay..example.com wss://.relay.example.com
    wss://relay.example.com.. wss://relay!.example.com wss://relay%20damus.io
    wss://rel%00ay.damus.io wss://relay\\evil.com wss://relay%5Cevil.com wss://rel%ay.damus.io
    wss://caf%C3.com wss://a.xn--caf\u{fffd}.com wss://010.0.0.1 wss://8.8.8.08 wss://0x7f.1
    wss://0x7f000001 wss://2130706433 wss://127.1 wss://8.8.8 wss://8.8.8.8.8 wss://256.1.1.1
    wss://8.8.8.0x8 wss://relay.0x wss://localhost ws://localhost:8080 wss://LOCALHOST.
    wss://localhost.localdomain wss://relay.localhost wss://127.0.0.1 wss://127.255.0.9:7777
    wss://10.0.0.1 wss://172.16.0.1 wss://172.31.255.255 wss://192.168.1.1 wss://169.254.169.254
    wss://0.0.0.0 wss://100.64.0.1 wss://192.0.2.1 wss://198.18.0.1 wss://203.0.113.7
    wss://224.0.0.1 wss://255.255.255.255 wss://127%2E0%2E0%2E1 wss://１２７．０．０．１ wss://[::1]
    wss://[::] wss://[::127.0.0.1] wss://[::ffff:127.0.0.1] wss://[::ffff:8.8.8.8]
    wss://[64:ff9b::8.8.8.8] wss://[100::1] wss://[2001::1] wss://[2001:2::1] wss://[2001:db8::1]
    wss://[2001:10::1] wss://[fc00::1] wss://[fd12:3456::1] wss://[fe80::1] wss://[fec0::1]
    wss://[ff02::1] wss://.onion wss://onion ws://relay.onion ws://fake123.onion
    ws://oxtrdevav64z64yb7x6rjg4ntzqjhedm5b5zjqulugknhzr46ny2qba.onion
    ws://oxtrdevav64z64yb7x6rjg4ntzqjhedm5b5zjqulugknhzr46ny2qbadd.onion
    ws://oxtrdevav64z64yb7x6rjg4ntzqjhedm5b5zjqulugknhzr46ny2qbaa.onion
    ws://oxtrdevav64z64yb7x6rjg4ntzqjhedm5b5zjqulugknhzr46ny2q01d.onion
    ws://expyuzz4wqqyqhj1.onion ws://-x.expyuzz4wqqyqhjn.onion ws://i2p ws://.i2p
    ws://ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkd.b32.i2p
    ws://ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdqq.b32.i2p
    ws://x.ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdq.b32.i2p ws://relay.loki
    ws://dw68y1xhptqbhcm5s8aaaip6dbopykagig5q5u1za4c7pzxto77.loki ws://loki";
    const REJECTED_WITH_SPACES: &[&str] = &[
        "",
        "   \t\n",
        "ws s://relay.damus.io",
        "wss://relay.exa mple.com",
    ];

    fn expand(s: &str) -> String {
        let s = s.replace("{V3}", V3).replace("{V2}", V2);
        s.replace("{B32}", B32).replace("{LOKI}", LOKI)
    }

    /// (input, canonical, network) rows of [`ACCEPTED`], plus rows that do not fit its format.
    fn accepted() -> Vec<(String, String, Network)> {
        let mut rows: Vec<_> = ACCEPTED
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let cols: Vec<&str> = line.split(" | ").collect();
                let net = match cols[0] {
                    "t" => Network::Tor,
                    "i" => Network::I2p,
                    "l" => Network::Loki,
                    _ => Network::Clearnet,
                };
                (
                    expand(cols[1]),
                    expand(cols.get(2).unwrap_or(&cols[1])),
                    net,
                )
            })
            .collect();
        let long = format!("wss://relay.example.com/{}", "a".repeat(2048 - 24)); // exactly 2048
        rows.push((long.clone(), long, Network::Clearnet));
        rows.push((
            "  wss://relay.damus.io \n".into(),
            "wss://relay.damus.io".into(),
            Network::Clearnet,
        ));
        rows.push((
            "\twss://relay.damus.io/x/ ".into(),
            "wss://relay.damus.io/x".into(),
            Network::Clearnet,
        ));
        rows
    }

    #[test]
    fn accepted_cases_are_canonical_and_idempotent() {
        let rows = accepted();
        assert!(rows.len() > 70);
        for (input, want, network) in rows {
            let url = RelayUrl::parse(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(
                (url.as_str(), url.network()),
                (want.as_str(), network),
                "{input:?}"
            );
            assert!(!url.is_local(), "{input:?}");
            check_accepted(&input, &url, false);
            assert_eq!(RelayUrl::parse_allowing_local(&input), Ok(url), "{input:?}");
        }
    }

    #[test]
    fn rejected_cases_fail_with_the_input_in_the_message() {
        let rows: Vec<&str> = REJECTED
            .split_whitespace()
            .chain(REJECTED_WITH_SPACES.iter().copied())
            .collect();
        assert!(rows.len() > 110, "{}", rows.len());
        for input in rows {
            let Err(e) = RelayUrl::parse(input) else {
                panic!("accepted {input:?}")
            };
            let msg = e.to_string();
            let prefix = format!("invalid relay URL {:?}: ", shown(input));
            assert!(
                msg.starts_with(&prefix) && msg.len() > prefix.len() + 5,
                "{msg}"
            );
        }
    }

    #[test]
    fn errors_name_the_reason() {
        let kind = |s: &str| RelayUrl::parse(s).unwrap_err();
        assert!(matches!(
            kind("https://x.com"),
            RelayUrlError::UnsupportedScheme { .. }
        ));
        assert!(matches!(kind("x.com"), RelayUrlError::MissingScheme { .. }));
        assert!(matches!(
            kind("wss://x.com:0"),
            RelayUrlError::InvalidPort { .. }
        ));
        assert!(matches!(
            kind("wss://x.com:65536"),
            RelayUrlError::InvalidPort { .. }
        ));
        assert!(matches!(
            kind("wss://127.0.0.1"),
            RelayUrlError::LocalHost { .. }
        ));
        assert!(matches!(kind("wss://x.com\0"), RelayUrlError::Nul { .. }));
        assert!(matches!(
            kind("wss://0x7f.1"),
            RelayUrlError::InvalidHost { .. }
        ));
        assert!(matches!(
            kind("wss://a@x.com"),
            RelayUrlError::UserInfo { .. }
        ));
        let long = format!("wss://relay.example.com/{}", "a".repeat(2048 - 23));
        assert_eq!(long.len(), 2049);
        assert_eq!(
            kind(&long),
            RelayUrlError::TooLong {
                input: shown(&long),
                len: 2049
            }
        );
        assert!(kind(&long).to_string().contains('…'));
        assert!(
            kind("wss://x.com:99999")
                .to_string()
                .contains("port \"99999\"")
        );
    }

    #[test]
    #[rustfmt::skip]
    fn local_hosts_are_accepted_only_when_allowed() {
        let cases = [
            ("ws://localhost:8080", "ws://localhost:8080", "localhost"),
            ("WSS://LocalHost.LocalDomain/x", "wss://localhost.localdomain/x", "localhost.localdomain"),
            ("wss://127.0.0.1:7777", "wss://127.0.0.1:7777", "127.0.0.1"),
            ("ws://10.0.0.1:80", "ws://10.0.0.1", "10.0.0.1"),
            ("ws://[::1]:7000", "ws://[::1]:7000", "::1"),
            ("ws://[2001:0db8::0001]", "ws://[2001:db8::1]", "2001:db8::1"),
            ("ws://[FE80::1]", "ws://[fe80::1]", "fe80::1"),
        ];
        for (input, want, host) in cases {
            assert!(matches!(RelayUrl::parse(input), Err(RelayUrlError::LocalHost { .. })), "{input}");
            let url = RelayUrl::parse_allowing_local(input).unwrap();
            assert_eq!((url.as_str(), url.host(), url.network()), (want, host, Network::Clearnet));
            assert!(url.is_local());
            check_accepted(input, &url, true);
        }
        for bad in ["wss://0x7f.1", "wss://127.1", "wss://010.0.0.1", "wss://localhost:0", "http://localhost"] {
            assert!(RelayUrl::parse_allowing_local(bad).is_err(), "{bad}");
        }
        assert!(!RelayUrl::parse_allowing_local("wss://8.8.8.8").unwrap().is_local());
    }

    #[test]
    #[rustfmt::skip]
    fn accessors() {
        let cases = [
            ("wss://relay.damus.io", ("wss", "relay.damus.io", None, None, true)),
            ("ws://relay.example.com:443/a/b", ("ws", "relay.example.com", Some(443), Some("/a/b"), false)),
            ("wss://[2606:4700::1111]:8080/v1", ("wss", "2606:4700::1111", Some(8080), Some("/v1"), true)),
            ("wss://8.8.8.8:443", ("wss", "8.8.8.8", None, None, true)),
            ("wss://relay.i2p:8443/p", ("ws", "relay.i2p", Some(8443), Some("/p"), false)),
        ];
        for (input, want) in cases {
            let u = RelayUrl::parse(input).unwrap();
            assert_eq!((u.scheme(), u.host(), u.port(), u.path(), u.is_tls()), want, "{input}");
        }
    }

    #[test]
    fn traits_display_fromstr_serde() {
        let url: RelayUrl = "WSS://Relay.Damus.IO/".parse().unwrap();
        assert_eq!(url.to_string(), "wss://relay.damus.io");
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            "\"wss://relay.damus.io\""
        );
        let back: RelayUrl = serde_json::from_str("\"wss://relay.damus.io/\"").unwrap();
        assert_eq!(back, url);
        assert!(serde_json::from_str::<RelayUrl>("\"wss://127.0.0.1\"").is_err());
        assert!(serde_json::from_str::<RelayUrl>("\"https://x.com\"").is_err());
        let a = RelayUrl::parse("wss://a.com").unwrap();
        assert!(a < RelayUrl::parse("wss://b.com").unwrap());
    }

    /// Invariants of every accepted URL: idempotent, bounded, clean, rebuilt from its accessors.
    fn check_accepted(input: &str, url: &RelayUrl, allow_local: bool) {
        let again = if allow_local {
            RelayUrl::parse_allowing_local(url.as_str())
        } else {
            RelayUrl::parse(url.as_str())
        };
        assert_eq!(again.as_ref(), Ok(url), "not idempotent: {input:?}");
        let s = url.as_str();
        assert!(s.len() <= MAX_URL_LEN && s.is_ascii(), "{input:?}");
        assert!(!s.contains(|c: char| c.is_whitespace() || c.is_control() || "?#@\\%".contains(c)));
        let host = match url.host() {
            h if h.contains(':') => format!("[{h}]"),
            h => h.to_owned(),
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = url.path().unwrap_or_default();
        assert_eq!(
            format!("{}://{host}{port}{path}", url.scheme()),
            s,
            "{input:?}"
        );
        assert!(url.network() == Network::Clearnet || !url.is_tls());
        assert!(allow_local || !url.is_local());
    }

    #[test]
    fn random_garbage_never_panics_and_accepted_is_idempotent() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        const SCHEMES: &[&str] = &["wss://", "ws://", "WsS://", "http://", "", "wss:/"];
        const HOSTS: &[&str] = &[
            "relay.damus.io",
            "Relay.Example.COM.",
            "café.com",
            "8.8.8.8",
            "[2606:4700::1]",
            "127.0.0.1",
            "[::1]",
            "localhost",
            "relay.i2p",
            "x.onion",
            "0x7f.1",
            "",
        ];
        const PIECES: &[&str] = &[
            "[", "]", ":", "/", "//", "%", "%2", "%2e", "%2F", "%00", "%C3%A9", "%41", ".", "..",
            "a", "Z", "-", "_", "~", "@", "?", "#", "\\", " ", "\t", "\0", "é", "．", "xn--", "0x",
            "0", "7", "443", "80", "65536", "::", "fe80", "relay", ".io", ".onion", ".i2p", ".b32",
            ".loki", V3, V2, B32, LOKI, "npub1abc", "\u{200b}", "ß", "1.2.3.4",
        ];
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let pick = |rng: &mut StdRng, from: &[&'static str]| from[rng.random_range(0..from.len())];
        let mut accepted = 0;
        for i in 0..5000 {
            let mut s = String::new();
            if i % 2 == 0 {
                // Structured: scheme + host + mutations, so that many inputs get deep.
                s.push_str(pick(&mut rng, SCHEMES));
                s.push_str(pick(&mut rng, HOSTS));
            }
            for _ in 0..rng.random_range(0..5) {
                match rng.random_range(0..5) {
                    0 => s.push(rng.random::<char>()),
                    1 if !s.is_empty() => {
                        let at = rng.random_range(0..s.len());
                        if s.is_char_boundary(at) {
                            s.insert_str(at, pick(&mut rng, PIECES));
                        }
                    }
                    _ => s.push_str(pick(&mut rng, PIECES)),
                }
            }
            for allow_local in [false, true] {
                let parsed = if allow_local {
                    RelayUrl::parse_allowing_local(&s)
                } else {
                    RelayUrl::parse(&s)
                };
                match parsed {
                    Ok(url) => {
                        accepted += 1;
                        check_accepted(&s, &url, allow_local);
                    }
                    Err(e) => assert!(e.to_string().contains(&format!("{:?}", shown(&s)))),
                }
            }
        }
        assert!(
            accepted > 500,
            "generator too weak: only {accepted} accepted"
        );
    }

    /// A real-world list of 8,865 relay URLs (third-party data, never committed: CI points
    /// `BROTR_RELAY_CORPUS` at it). About 16% of it is private IPv4 (mostly 192.168/16, 10/8
    /// and 100.64/10), which `parse` refuses by design; so the 95% bar is measured with
    /// `parse_allowing_local`, and `parse` must refuse exactly the local ones.
    #[test]
    #[ignore = "needs the real-world relay list: BROTR_RELAY_CORPUS (e2e/run-tests.sh sets it)"]
    fn real_world_corpus() {
        let path = std::env::var("BROTR_RELAY_CORPUS")
            .unwrap_or_else(|_| panic!("BROTR_RELAY_CORPUS is not set"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the relay corpus {path}: {e}"));
        let (mut total, mut ok, mut public, mut tor) = (0usize, 0usize, 0usize, 0usize);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            total += 1;
            let strict = RelayUrl::parse(line);
            let Ok(url) = RelayUrl::parse_allowing_local(line) else {
                assert!(strict.is_err(), "{line:?}");
                continue;
            };
            ok += 1;
            check_accepted(line, &url, true);
            if url.is_local() {
                assert!(
                    matches!(strict, Err(RelayUrlError::LocalHost { .. })),
                    "{line:?}"
                );
            } else {
                assert_eq!(strict.as_ref(), Ok(&url), "{line:?}");
                public += 1;
                tor += usize::from(url.network() == Network::Tor);
            }
        }
        println!("corpus: {total} lines, {ok} accepted with local, {public} by parse, {tor} tor");
        assert!(ok * 100 >= total * 95, "only {ok}/{total} accepted");
        assert!(public * 100 >= total * 80, "only {public}/{total} public");
        assert!(tor > 900, "only {tor} tor URLs accepted");
    }
}
