//! The `check` command's readable report (pure).

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::report::{Check, RelayReport};

fn line<T: Serialize>(out: &mut String, name: &str, check: &Option<Check<T>>) {
    let Some(c) = check else {
        return;
    };
    let status = if c.success { "ok" } else { "FAILED" };
    let _ = write!(out, "  {name:<6} {status}");
    if c.attempts > 1 {
        let _ = write!(out, " (after {} attempts)", c.attempts);
    }
    if let Some(r) = &c.reason {
        let _ = write!(out, ": {r}");
    }
    out.push('\n');
    if let Ok(Value::Object(m)) = serde_json::to_value(&c.data) {
        for (k, v) in m {
            let shown = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let shown: String = shown.chars().take(160).collect();
            let _ = writeln!(out, "         {k}: {shown}");
        }
    }
}

/// A multi-line report of every check that ran.
pub fn render_text(r: &RelayReport) -> String {
    let mut out = String::new();
    let verdict = if r.reachable() {
        "reachable"
    } else {
        "UNREACHABLE"
    };
    let _ = writeln!(out, "{} ({}) — {verdict}", r.relay, r.network);
    line(&mut out, "rtt", &r.rtt);
    line(&mut out, "nip11", &r.nip11);
    line(&mut out, "nip77", &r.nip77);
    line(&mut out, "ssl", &r.ssl);
    line(&mut out, "dns", &r.dns);
    line(&mut out, "geo", &r.geo);
    line(&mut out, "net", &r.net);
    line(&mut out, "http", &r.http);
    for (name, why) in &r.skipped {
        let _ = writeln!(out, "  {name:<6} skipped: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RelayUrl;
    use crate::monitor::report::{HttpData, RttData};

    #[test]
    fn renders_outcomes_reasons_and_data() {
        let url = RelayUrl::parse("wss://relay.example.com").unwrap();
        let mut r = RelayReport::new(&url, 1);
        r.rtt = Some(Check::partial(
            RttData {
                rtt_open: Some(12),
                ..Default::default()
            },
            "write: refused: pow: 20",
        ));
        r.http = Some(Check::ok(HttpData {
            http_server: Some("strfry".into()),
            http_powered_by: None,
        }));
        r.skipped
            .push(("geo".into(), "city database unavailable".into()));
        let text = render_text(&r);
        assert!(
            text.starts_with("wss://relay.example.com (clearnet) — reachable"),
            "{text}"
        );
        assert!(
            text.contains("rtt    FAILED: write: refused: pow: 20"),
            "{text}"
        );
        assert!(text.contains("rtt_open: 12"), "{text}");
        assert!(text.contains("http_server: strfry"), "{text}");
        assert!(
            text.contains("geo    skipped: city database unavailable"),
            "{text}"
        );
    }
}
