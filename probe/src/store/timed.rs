//! A [`Store`] that times every operation into `brotr_database_query_duration_seconds{op}` and
//! otherwise passes it through. The services see it as any store.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus::HistogramVec;
use serde_json::Value;

use super::{
    Backend, CheckRow, Counts, IngestStats, RelayRow, Result, StateEntry, Store, StoredEvent,
};
use crate::model::{Candidate, EventRow, MetadataType, Network, Schema};

/// `inner`, timed into `seconds` (labelled by operation name).
pub struct Timed {
    inner: Arc<dyn Store>,
    seconds: HistogramVec,
}

impl Timed {
    pub fn new(inner: Arc<dyn Store>, seconds: HistogramVec) -> Self {
        Timed { inner, seconds }
    }
}

/// Awaits `$call`, recording its duration under `$op`.
macro_rules! timed {
    ($self:ident, $op:literal, $call:expr) => {{
        let start = Instant::now();
        let result = $call.await;
        $self
            .seconds
            .with_label_values(&[$op])
            .observe(start.elapsed().as_secs_f64());
        result
    }};
}

#[async_trait]
impl Store for Timed {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn schema(&self) -> Schema {
        self.inner.schema()
    }
    async fn insert_relays(&self, relays: &[RelayRow]) -> Result<u64> {
        timed!(self, "insert_relays", self.inner.insert_relays(relays))
    }
    async fn relays(&self) -> Result<Vec<RelayRow>> {
        timed!(self, "relays", self.inner.relays())
    }
    async fn insert_candidates(&self, candidates: &[Candidate]) -> Result<u64> {
        timed!(
            self,
            "insert_candidates",
            self.inner.insert_candidates(candidates)
        )
    }
    async fn due_candidates(
        &self,
        networks: &[Network],
        retry_before: i64,
        limit: u32,
    ) -> Result<Vec<Candidate>> {
        let call = self.inner.due_candidates(networks, retry_before, limit);
        timed!(self, "due_candidates", call)
    }
    async fn promote_candidates(&self, relays: &[RelayRow]) -> Result<u64> {
        timed!(
            self,
            "promote_candidates",
            self.inner.promote_candidates(relays)
        )
    }
    async fn prune_candidates(&self, max_failures: u32) -> Result<u64> {
        timed!(
            self,
            "prune_candidates",
            self.inner.prune_candidates(max_failures)
        )
    }
    async fn record_candidate_attempts(&self, candidates: &[Candidate]) -> Result<u64> {
        let call = self.inner.record_candidate_attempts(candidates);
        timed!(self, "record_candidate_attempts", call)
    }
    async fn insert_events(
        &self,
        relay: &RelayRow,
        seen_at: i64,
        events: &[EventRow],
    ) -> Result<IngestStats> {
        let call = self.inner.insert_events(relay, seen_at, events);
        timed!(self, "insert_events", call)
    }
    async fn get_event(&self, id: &[u8; 32]) -> Result<Option<StoredEvent>> {
        timed!(self, "get_event", self.inner.get_event(id))
    }
    async fn event_relays(&self, id: &[u8; 32]) -> Result<Vec<String>> {
        timed!(self, "event_relays", self.inner.event_relays(id))
    }
    async fn insert_checks(
        &self,
        relay: &RelayRow,
        generated_at: i64,
        monitor: &[u8],
        rows: &[CheckRow],
    ) -> Result<u64> {
        let call = self.inner.insert_checks(relay, generated_at, monitor, rows);
        timed!(self, "insert_checks", call)
    }
    async fn latest_metadata(
        &self,
        relay: &str,
        kind: MetadataType,
    ) -> Result<Option<(i64, Value)>> {
        timed!(
            self,
            "latest_metadata",
            self.inner.latest_metadata(relay, kind)
        )
    }
    async fn state_upsert(&self, entries: &[StateEntry]) -> Result<u64> {
        timed!(self, "state_upsert", self.inner.state_upsert(entries))
    }
    async fn state_get(
        &self,
        service: &str,
        kind: &str,
        key: Option<&str>,
    ) -> Result<Vec<(String, Value)>> {
        timed!(self, "state_get", self.inner.state_get(service, kind, key))
    }
    async fn state_delete(&self, service: &str, kind: &str, keys: &[String]) -> Result<u64> {
        timed!(
            self,
            "state_delete",
            self.inner.state_delete(service, kind, keys)
        )
    }
    async fn relay_event_keys(
        &self,
        relay: &str,
        since: i64,
        until: i64,
        kinds: Option<&[i32]>,
    ) -> Result<Vec<(i64, [u8; 32])>> {
        let call = self.inner.relay_event_keys(relay, since, until, kinds);
        timed!(self, "relay_event_keys", call)
    }
    async fn counts(&self) -> Result<Counts> {
        timed!(self, "counts", self.inner.counts())
    }
    async fn ping(&self) -> Result<()> {
        timed!(self, "ping", self.inner.ping())
    }
    fn pool_usage(&self) -> (u32, u32, u32) {
        self.inner.pool_usage()
    }
    async fn listen_promotions(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        self.inner.listen_promotions().await
    }
    async fn refresh_views(&self) -> Result<Vec<&'static str>> {
        timed!(self, "refresh_views", self.inner.refresh_views())
    }
    async fn refresh_latest_results(&self) -> Result<Vec<&'static str>> {
        let call = self.inner.refresh_latest_results();
        timed!(self, "refresh_latest_results", call)
    }
    async fn delete_expired_metadata(&self, cutoff: i64, batch: u32) -> Result<u64> {
        let call = self.inner.delete_expired_metadata(cutoff, batch);
        timed!(self, "delete_expired_metadata", call)
    }
    async fn delete_orphan_events(&self, batch: u32) -> Result<u64> {
        timed!(
            self,
            "delete_orphan_events",
            self.inner.delete_orphan_events(batch)
        )
    }
    async fn delete_orphan_metadata(&self, batch: u32) -> Result<u64> {
        timed!(
            self,
            "delete_orphan_metadata",
            self.inner.delete_orphan_metadata(batch)
        )
    }
    async fn event_storage_bytes(&self) -> Result<u64> {
        timed!(
            self,
            "event_storage_bytes",
            self.inner.event_storage_bytes()
        )
    }
}
