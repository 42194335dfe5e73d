//! The port through which module registries keep their state in the storage backend, for
//! backends that keep nothing on the host (`pulsar`): a host replaced by a new one, with an
//! empty data directory, finds the translator versions and every tenant's transforms there.
//! The embedded log has no store: its registries live next to its segments in `data_dir`.
//!
//! The store holds opaque bytes: per scope (a registry, e.g. `modules` or
//! `transforms/<tenant>`), one manifest per name; and blobs (the uploaded components) named by
//! the SHA-256 of their bytes. The registry decides what they mean.

use super::StorageError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Everything a [`ModuleStore`] holds.
#[derive(Clone, Debug, Default)]
pub struct ModuleSnapshot {
    /// (scope, name) → the manifest as last written.
    pub manifests: BTreeMap<(String, String), Vec<u8>>,
    /// SHA-256 (lower-case hex) → the blob, checked against it.
    pub blobs: HashMap<String, Vec<u8>>,
}

pub trait ModuleStore: Send + Sync + 'static {
    /// What the store holds now, for a host's start. The blobs are handed over: a later
    /// snapshot has only those stored since (a host keeps its own copies in `data_dir`).
    fn snapshot(&self) -> Result<ModuleSnapshot, StorageError>;
    /// The manifest of `name` in `scope` as the store has it now (other hosts' writes
    /// included).
    fn manifest(&self, scope: &str, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Store `bytes` under `sha256` (the hash of `bytes`; nothing happens if it is stored).
    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Store the manifest of `name` in `scope`, replacing the previous one.
    fn put_manifest(&self, scope: &str, name: &str, manifest: &[u8]) -> Result<(), StorageError>;
    /// Forget the manifest of `name` in `scope`.
    fn remove(&self, scope: &str, name: &str) -> Result<(), StorageError>;
}

/// The SHA-256 of `bytes`, lower-case hex: a blob's name.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
