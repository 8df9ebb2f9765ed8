//! What crossed the wire, for metrics and benchmarks.

/// Bytes, frames and requests exchanged with one relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    pub requests: u64,
    pub frames: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// EVENT frames received for our subscriptions.
    pub events_received: u64,
}

impl WireStats {
    pub fn add(&mut self, o: &WireStats) {
        self.requests += o.requests;
        self.frames += o.frames;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.events_received += o.events_received;
    }
}
