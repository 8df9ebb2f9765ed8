//! Nostr protocol code without I/O, one file per NIP (as rust-nostr does): what is sent and how
//! what comes back is read. Transport lives in [`crate::net`].

pub mod nip01;
pub mod nip11;
pub mod nip42;
pub mod nip66;
pub mod nip77;
