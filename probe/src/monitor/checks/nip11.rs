//! NIP-11 fetch through [`crate::net::HttpClient`]: `GET` on the relay's URL with `ws→http`,
//! `wss→https`, header `Accept: application/nostr+json`; every failure is a [`Check`] with a
//! reason, never an error. Transport trouble is retried, an answer (status, type, body) is not.

use std::time::Duration;

use crate::model::RelayUrl;
use crate::monitor::report::{Check, Nip11Data};
use crate::net::HttpClient;
use crate::nips::nip11::{Nip11, info_url, is_json_content_type};

/// Fetches and parses the document of `relay` within `timeout`.
pub async fn check(
    http: &HttpClient,
    relay: &RelayUrl,
    max_bytes: usize,
    timeout: Duration,
) -> Check<Nip11Data> {
    let url = info_url(relay);
    let resp = match http
        .get(
            relay.network(),
            &url,
            "application/nostr+json",
            max_bytes,
            timeout,
        )
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_transient() => return Check::failed(e.to_string()),
        Err(e) => return Check::definite(e.to_string()),
    };
    if resp.status != 200 {
        return Check::definite(format!("HTTP {}", resp.status));
    }
    let header = |name| {
        resp.headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let content_type = header(reqwest::header::CONTENT_TYPE);
    if !is_json_content_type(content_type) {
        let shown: String = content_type.chars().take(64).collect();
        return Check::definite(format!("Invalid Content-Type: {shown}"));
    }
    let cors = resp
        .headers
        .contains_key(reqwest::header::ACCESS_CONTROL_ALLOW_ORIGIN);
    match Nip11::parse(&resp.body) {
        Ok(doc) => Check::ok(Nip11Data {
            doc,
            cors: Some(cors),
        }),
        Err(e) => Check::definite(e.to_string()),
    }
}
