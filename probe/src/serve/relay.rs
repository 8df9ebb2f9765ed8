//! One client's WebSocket session with the read-only relay: REQ / CLOSE / EOSE with a live
//! tail, COUNT (NIP-45), NEG-OPEN / NEG-MSG / NEG-CLOSE (NIP-77), EVENT refused. Messages are
//! parsed by `nips::nip01` (nostr's types) and answered with its frames; every read goes through
//! the store's [`Reader`](crate::store::Reader).
//!
//! Limits: subscriptions and NIP-77 sessions per connection, filters per REQ, the size of each
//! filter, the message size (enforced by the WebSocket layer), a request rate per IP, a bounded
//! outbox (a client that does not read what it asked for is cut instead of buffered), and a
//! strike count (a client whose messages keep being refused as malformed or over a limit is cut
//! after [`MAX_STRIKES`] of them, instead of costing the server a refusal per message forever).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use nostr::Filter;
use tokio::sync::{broadcast, mpsc};

use super::{Api, LiveBatch, ReadError};
use crate::model::Schema;
use crate::nips::nip01::{self, ClientMessage};
use crate::nips::nip77::Responder;
use crate::store::query::EventQuery;

/// How long one frame may take to reach a client before it counts as not reading.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Live event ids remembered per connection, so a batch that repeats an event sends it once.
const RECENT_LIVE_IDS: usize = 4096;

/// Refusals for malformed messages or limits (not for writes or rate) one connection may earn
/// before it is cut: a real client errs a few times, a hostile one keeps going.
const MAX_STRIKES: u32 = 32;
/// The refusal reasons that count as strikes.
const STRIKES: [&str; 4] = [
    "malformed",
    "invalid_filter",
    "too_many_subscriptions",
    "too_big",
];

/// Why a session ends early.
#[derive(Debug, PartialEq, Eq)]
enum Cut {
    SlowReader,
    Misbehaving,
}

struct Subscription {
    queries: Vec<EventQuery>,
}

/// The state of one connection.
struct Session {
    api: Arc<Api>,
    ip: IpAddr,
    out: mpsc::Sender<String>,
    subs: HashMap<String, Subscription>,
    negs: HashMap<String, Responder>,
    recent: HashSet<[u8; 32]>,
    recent_order: VecDeque<[u8; 32]>,
    /// Counted from `&self` (where refusals are made); only this session's task touches it.
    strikes: AtomicU32,
}

/// Runs one session until the client leaves, the server shuts down or the client is cut.
pub(crate) async fn session(socket: WebSocket, api: Arc<Api>, ip: IpAddr) {
    let metrics = api.metrics.clone();
    metrics.connections.inc();
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<String>(api.cfg.max_outbox as usize);
    let writer = tokio::spawn(async move {
        while let Some(text) = outbox.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    });
    let mut live = api.live.subscribe();
    let mut s = Session {
        api,
        ip,
        out,
        subs: HashMap::new(),
        negs: HashMap::new(),
        recent: HashSet::new(),
        recent_order: VecDeque::new(),
        strikes: AtomicU32::new(0),
    };
    let ended = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Err(cut) = s.on_text(text.as_str()).await {
                        break Some(cut);
                    }
                    if let Err(cut) = s.check_strikes() {
                        break Some(cut);
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    s.refuse("malformed");
                    if let Err(cut) = s.send(nip01::notice(&format!(
                        "invalid: a binary frame of {} bytes; NIP-01 messages are text", b.len()
                    ))) {
                        break Some(cut);
                    }
                    if let Err(cut) = s.check_strikes() {
                        break Some(cut);
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
            },
            batch = live.recv() => match batch {
                Ok(batch) => {
                    if let Err(cut) = s.on_live(&batch) {
                        break Some(cut);
                    }
                }
                // Fell behind the tail: those events are in the archive, not lost; say so.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    if let Err(cut) = s.send(nip01::notice(&format!(
                        "live tail: {n} batches skipped while this connection was behind"
                    ))) {
                        break Some(cut);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break None,
            },
        }
    };
    match ended {
        Some(Cut::SlowReader) => {
            s.refuse("slow_reader");
            tracing::debug!(ip = %s.ip, "client cut: not reading its messages");
        }
        Some(Cut::Misbehaving) => {
            s.refuse("misbehaving");
            tracing::debug!(ip = %s.ip, "client cut: {MAX_STRIKES} messages refused");
        }
        None => {}
    }
    metrics
        .subscriptions
        .sub(i64::try_from(s.subs.len()).unwrap_or(0));
    metrics.connections.dec();
    drop(s);
    let _ = writer.await;
}

impl Session {
    /// Queues one frame; a full outbox means the client is not reading.
    fn send(&self, text: String) -> Result<(), Cut> {
        self.out.try_send(text).map_err(|_| Cut::SlowReader)
    }

    fn refuse(&self, reason: &str) {
        self.api.metrics.refusals.with_label_values(&[reason]).inc();
        if STRIKES.contains(&reason) {
            self.strikes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Past [`MAX_STRIKES`] refusals: a last NOTICE saying why, then the connection is cut.
    fn check_strikes(&self) -> Result<(), Cut> {
        if self.strikes.load(Ordering::Relaxed) < MAX_STRIKES {
            return Ok(());
        }
        let _ = self.send(nip01::notice(&format!(
            "blocked: {MAX_STRIKES} messages refused on this connection (malformed or over a \
             limit); closing it"
        )));
        Err(Cut::Misbehaving)
    }

    fn count_message(&self, kind: &str) {
        self.api.metrics.messages.with_label_values(&[kind]).inc();
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Cut> {
        if !self.api.allow(self.ip) {
            self.refuse("rate_limited");
            self.count_message("rate_limited");
            return self.send(nip01::notice(
                "rate-limited: slow down, too many messages from your address",
            ));
        }
        // COUNT with several filters: nostr 0.44 reads only the first, NIP-45 ORs them all.
        if text.starts_with("[\"COUNT\"") {
            self.count_message("COUNT");
            return self.on_count(text).await;
        }
        let msg = match nip01::parse_client_message(text) {
            Ok(m) => m,
            Err(e) => {
                self.count_message("invalid");
                self.refuse("malformed");
                return self.send(nip01::notice(&format!("invalid: {e}")));
            }
        };
        match msg {
            ClientMessage::Req {
                subscription_id,
                filters,
            } => {
                self.count_message("REQ");
                let filters: Vec<Filter> = filters.into_iter().map(|f| f.into_owned()).collect();
                self.on_req(subscription_id.as_str(), &filters).await
            }
            ClientMessage::Close(sub) => {
                self.count_message("CLOSE");
                if self.subs.remove(sub.as_str()).is_some() {
                    self.api.metrics.subscriptions.dec();
                }
                Ok(())
            }
            ClientMessage::Event(event) => {
                self.count_message("EVENT");
                self.refuse("read_only");
                self.send(nip01::ok(
                    &event.id.to_hex(),
                    false,
                    "blocked: read-only archive",
                ))
            }
            ClientMessage::NegOpen {
                subscription_id,
                filter,
                initial_message,
                ..
            } => {
                self.count_message("NEG-OPEN");
                self.on_neg_open(subscription_id.as_str(), &filter, &initial_message)
                    .await
            }
            ClientMessage::NegMsg {
                subscription_id,
                message,
            } => {
                self.count_message("NEG-MSG");
                self.on_neg_msg(subscription_id.as_str(), &message)
            }
            ClientMessage::NegClose { subscription_id } => {
                self.count_message("NEG-CLOSE");
                self.negs.remove(subscription_id.as_str());
                Ok(())
            }
            other => {
                self.count_message("other");
                self.send(nip01::notice(&format!(
                    "unsupported: {} is not served by this read-only archive",
                    nip01_client_name(&other)
                )))
            }
        }
    }

    /// Checks a subscription id and a filter list; the refusal to send otherwise.
    fn check_sub(&self, sub: &str, filters: usize) -> Result<(), String> {
        let cfg = &self.api.cfg;
        if sub.is_empty() || sub.len() > cfg.max_subid_length as usize {
            return Err(format!(
                "invalid: subscription ids are 1 to {} characters",
                cfg.max_subid_length
            ));
        }
        if filters > cfg.max_filters as usize {
            return Err(format!(
                "invalid: {filters} filters, at most {} per request",
                cfg.max_filters
            ));
        }
        Ok(())
    }

    fn queries(&self, filters: &[Filter]) -> Result<Vec<EventQuery>, String> {
        filters
            .iter()
            .map(|f| EventQuery::from_filter(f, &self.api.limits).map(|q| self.api.hide(q)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("invalid: {e}"))
    }

    async fn on_req(&mut self, sub: &str, filters: &[Filter]) -> Result<(), Cut> {
        if let Err(reason) = self.check_sub(sub, filters.len()) {
            self.refuse("invalid_filter");
            return self.send(nip01::closed(sub, &reason));
        }
        if self.api.reader.schema() == Schema::Lite {
            self.refuse("lite");
            return self.send(nip01::closed(
                sub,
                "blocked: this archive is lite and keeps no event bodies; COUNT and NEG-OPEN \
                 still work",
            ));
        }
        let replaces = self.subs.contains_key(sub);
        if !replaces && self.subs.len() >= self.api.cfg.max_subscriptions as usize {
            self.refuse("too_many_subscriptions");
            return self.send(nip01::closed(
                sub,
                &format!(
                    "blocked: {} subscriptions open on this connection, the most allowed; \
                     CLOSE one first",
                    self.subs.len()
                ),
            ));
        }
        let queries = match self.queries(filters) {
            Ok(q) => q,
            Err(reason) => {
                self.refuse("invalid_filter");
                return self.send(nip01::closed(sub, &reason));
            }
        };
        // A REQ with the same id replaces the old one (NIP-01): stop its live tail now.
        if self.subs.remove(sub).is_some() {
            self.api.metrics.subscriptions.dec();
        }
        let events = match self
            .api
            .read("events", self.api.reader.query_any(&queries))
            .await
        {
            Ok(events) => events,
            Err(e) => {
                self.refuse(e.reason());
                return self.send(nip01::closed(sub, &e.relay_message()));
            }
        };
        for e in &events {
            self.send(nip01::event_for(sub, &super::event_json(e)))?;
        }
        self.send(nip01::eose(sub))?;
        self.subs.insert(sub.to_owned(), Subscription { queries });
        self.api.metrics.subscriptions.inc();
        Ok(())
    }

    async fn on_count(&mut self, text: &str) -> Result<(), Cut> {
        // `["COUNT", sub, filter, ...]`: nostr's Filter reads each filter.
        let parsed: Result<(String, Vec<Filter>), String> =
            serde_json::from_str::<Vec<serde_json::Value>>(text)
                .map_err(|e| e.to_string())
                .and_then(|mut items| {
                    if items.len() < 3 {
                        return Err("COUNT needs a subscription id and at least one filter".into());
                    }
                    let sub = match items.get(1) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        _ => return Err("the subscription id must be a string".into()),
                    };
                    let filters = items
                        .drain(2..)
                        .map(|v| serde_json::from_value::<Filter>(v).map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((sub, filters))
                });
        let (sub, filters) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.refuse("malformed");
                return self.send(nip01::notice(&format!("invalid: COUNT: {e}")));
            }
        };
        if let Err(reason) = self.check_sub(&sub, filters.len()) {
            self.refuse("invalid_filter");
            return self.send(nip01::closed(&sub, &reason));
        }
        let queries = match self.queries(&filters) {
            Ok(q) => q,
            Err(reason) => {
                self.refuse("invalid_filter");
                return self.send(nip01::closed(&sub, &reason));
            }
        };
        match self
            .api
            .read("count", self.api.reader.count_events(&queries))
            .await
        {
            Ok(n) => self.send(nip01::count(&sub, n, false)),
            Err(e) => {
                self.refuse(e.reason());
                self.send(nip01::closed(&sub, &e.relay_message()))
            }
        }
    }

    async fn on_neg_open(&mut self, sub: &str, filter: &Filter, hex_msg: &str) -> Result<(), Cut> {
        if let Err(reason) = self.check_sub(sub, 1) {
            self.refuse("invalid_filter");
            return self.send(nip01::neg_err(sub, &reason));
        }
        // Reusing an id replaces the session (NIP-77).
        self.negs.remove(sub);
        if self.negs.len() >= self.api.cfg.max_negentropy_sessions as usize {
            self.refuse("too_many_subscriptions");
            return self.send(nip01::neg_err(
                sub,
                "blocked: too many negentropy sessions open on this connection",
            ));
        }
        let query = match self.queries(std::slice::from_ref(filter)) {
            Ok(mut q) => {
                let mut q = q.remove(0);
                // NIP-77 reconciles the whole filter: its limit does not apply.
                q.limit = u32::MAX;
                q
            }
            Err(reason) => {
                self.refuse("invalid_filter");
                return self.send(nip01::neg_err(sub, &reason));
            }
        };
        let Ok(message) = hex::decode(hex_msg) else {
            self.refuse("malformed");
            return self.send(nip01::neg_err(sub, "invalid: the message is not hex"));
        };
        let cap = self.api.cfg.max_negentropy_items;
        let items = match self
            .api
            .read("negentropy", self.api.reader.negentropy_items(&query, cap))
            .await
        {
            Ok(Some(items)) => items,
            Ok(None) => {
                self.refuse("too_big");
                return self.send(format!(
                    r#"["NEG-ERR",{},"blocked: this query is too big",{cap}]"#,
                    serde_json::Value::String(sub.to_owned())
                ));
            }
            Err(e) => {
                self.refuse(e.reason());
                return self.send(nip01::neg_err(sub, &e.relay_message()));
            }
        };
        let answer = Responder::new(&items, crate::nips::nip77::FRAME_LIMIT)
            .and_then(|mut r| r.answer(&message).map(|a| (r, a)));
        match answer {
            Ok((responder, answer)) => {
                self.negs.insert(sub.to_owned(), responder);
                self.send(crate::nips::nip77::neg_msg(sub, &answer))
            }
            Err(e) => {
                self.refuse("malformed");
                self.send(nip01::neg_err(sub, &format!("invalid: {e}")))
            }
        }
    }

    fn on_neg_msg(&mut self, sub: &str, hex_msg: &str) -> Result<(), Cut> {
        let Some(responder) = self.negs.get_mut(sub) else {
            return self.send(nip01::neg_err(
                sub,
                "closed: no negentropy session with this id (NEG-OPEN first)",
            ));
        };
        let answer = hex::decode(hex_msg)
            .map_err(|_| "the message is not hex".to_owned())
            .and_then(|m| responder.answer(&m).map_err(|e| e.to_string()));
        match answer {
            Ok(a) => self.send(crate::nips::nip77::neg_msg(sub, &a)),
            Err(e) => {
                self.negs.remove(sub);
                self.refuse("malformed");
                self.send(nip01::neg_err(sub, &format!("invalid: {e}")))
            }
        }
    }

    /// New archived events to every open subscription they match.
    fn on_live(&mut self, batch: &LiveBatch) -> Result<(), Cut> {
        if self.subs.is_empty() {
            return Ok(());
        }
        for e in batch.iter() {
            if self.recent.contains(&e.id) {
                continue;
            }
            let mut sent = false;
            for (sub, s) in &self.subs {
                if s.queries.iter().any(|q| {
                    !q.is_empty() && q.matches(&e.id, &e.pubkey, e.created_at, e.kind, &e.tagvalues)
                }) {
                    self.out
                        .try_send(nip01::event_for(sub, &e.json))
                        .map_err(|_| Cut::SlowReader)?;
                    self.api.metrics.live_events.inc();
                    sent = true;
                }
            }
            if sent {
                self.remember(e.id);
            }
        }
        Ok(())
    }

    fn remember(&mut self, id: [u8; 32]) {
        if self.recent.insert(id) {
            self.recent_order.push_back(id);
            if self.recent_order.len() > RECENT_LIVE_IDS
                && let Some(old) = self.recent_order.pop_front()
            {
                self.recent.remove(&old);
            }
        }
    }
}

impl ReadError {
    /// The `CLOSED` / `NEG-ERR` text of a failed read.
    fn relay_message(&self) -> String {
        match self {
            ReadError::Timeout => "error: the query took too long; narrow the filter".into(),
            ReadError::Unavailable => "error: the archive's database is unavailable".into(),
        }
    }
}

fn nip01_client_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Auth(_) => "AUTH",
        ClientMessage::Count { .. } => "COUNT",
        _ => "this message",
    }
}
