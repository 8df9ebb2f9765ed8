//! Pure data types. Nothing here does I/O; every constructor validates, so a value of one of these
//! types is always well-formed ("parse, don't re-check").

pub mod candidate;
pub mod consensus;
pub mod event;
pub mod geohash;
pub mod health;
pub mod metadata;
pub mod network;
pub mod relay_hints;
pub mod relay_url;
pub mod schema;

pub use candidate::Candidate;
pub use event::{EventRow, EventRowError, MAX_TAGVALUE_BYTES, tagvalues};
pub use health::{LifecyclePolicy, RelayHealth};
pub use metadata::{Metadata, MetadataError, MetadataType};
pub use network::{Network, UnknownNetwork};
pub use relay_url::{RelayUrl, RelayUrlError, is_local_ip};
pub use schema::{Schema, UnknownSchema};
