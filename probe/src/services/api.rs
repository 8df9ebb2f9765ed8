//! The archive's read side as a service: opened over a migrated database, serving until
//! shutdown. The work is in [`crate::serve`]; this is the start-up shell.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use crate::config::ApiConfig;
use crate::metrics::Metrics;
use crate::runtime::Shutdown;
use crate::serve::{self, Api};
use crate::store::{Archive, StoreError};

/// Why the api could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad api.listen address {addr:?}: {reason}")]
    BadListen { addr: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the api stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// The address to listen on: `listen` from the command line, else the config's.
pub fn listen_addr(cfg: &ApiConfig, listen: Option<&str>) -> Result<SocketAddr, ApiError> {
    let text = listen.unwrap_or(&cfg.listen);
    text.parse()
        .map_err(|e: std::net::AddrParseError| ApiError::BadListen {
            addr: text.to_owned(),
            reason: e.to_string(),
        })
}

/// Binds `addr`, starts the live tail and serves until `shutdown`.
pub async fn run(
    archive: Arc<dyn Archive>,
    cfg: ApiConfig,
    site: serve::Site,
    metrics: Metrics,
    addr: SocketAddr,
    mut shutdown: Shutdown,
) -> Result<(), ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let api = Api::with_site(archive, cfg, site, metrics);
    api.start_live().await?;
    info!(addr = %local, "serving the archive: relay on /, HTTP API on /v1, /openapi.json");
    serve::serve(listener, api, async move { shutdown.requested().await })
        .await
        .map_err(ApiError::Serve)
}
