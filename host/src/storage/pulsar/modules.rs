//! The module registries' state (see [`crate::storage::modules`]) as an append-only log of JSON
//! records in the `modules` topic of the metadata namespace. Blobs are cut into chunks that fit
//! the brokers' maximum message size; a blob counts once all its chunks are read and their
//! bytes match its hash. The log is replayed at open; writes append and read back up to
//! their own record, so records from other hosts are applied in log order too.

use super::client::Client;
use super::meta::{MetaLog, Replayed};
use super::partition::Shared;
use crate::storage::modules::sha256_hex;
use crate::storage::{ModuleSnapshot, ModuleStore, StorageError};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One record of the `modules` log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum ModuleRecord {
    /// Bytes `index * size ..` of a blob cut into `count` chunks of `size` bytes (the last one
    /// shorter).
    Chunk {
        sha256: String,
        size: u32,
        index: u32,
        count: u32,
        data: String,
    },
    Manifest {
        scope: String,
        name: String,
        manifest: String,
    },
    Remove {
        scope: String,
        name: String,
    },
}

/// What the log says, as far as it has been read.
#[derive(Default)]
struct State {
    snapshot: ModuleSnapshot,
    /// The blobs read whole, handed over by `snapshot` or not.
    stored: HashSet<String>,
    /// Blobs still missing chunks: (sha256, chunk size) → chunks by index. Hosts configured
    /// with different message sizes cut the same blob differently.
    partial: HashMap<(String, u32), Vec<Option<Vec<u8>>>>,
    /// Records applied, and after which of them each blob was whole (a deploy stores its blob
    /// before the manifest that names it: a blob no manifest names yet may be on its way).
    seq: u64,
    completed: HashMap<String, u64>,
}

/// A blob no manifest names is kept by a snapshot while it was stored within this many records.
const RECENT_BLOB: u64 = 64;

impl State {
    fn replay(&mut self, event: Replayed<ModuleRecord>) {
        match event {
            Replayed::Record(r) => self.apply(r),
            Replayed::Reset => *self = State::default(),
        }
    }

    fn apply(&mut self, record: ModuleRecord) {
        self.seq += 1;
        match record {
            ModuleRecord::Manifest { scope, name, manifest } => {
                self.snapshot.manifests.insert((scope, name), manifest.into_bytes());
            }
            ModuleRecord::Remove { scope, name } => {
                self.snapshot.manifests.remove(&(scope, name));
            }
            ModuleRecord::Chunk { sha256, size, index, count, data } => {
                if self.stored.contains(&sha256) || index >= count || count > 1 << 16 {
                    return;
                }
                let Ok(data) = B64.decode(data) else {
                    tracing::warn!(sha256, "skipping a module chunk that is not base64");
                    return;
                };
                let key = (sha256, size);
                let chunks = self.partial.entry(key.clone()).or_default();
                if chunks.len() != count as usize {
                    // The first chunk seen of this cut, or a write cut into a different count.
                    *chunks = vec![None; count as usize];
                }
                chunks[index as usize] = Some(data);
                if chunks.iter().all(Option::is_some) {
                    let chunks = self.partial.remove(&key).unwrap_or_default();
                    let bytes: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
                    let (sha256, _) = key;
                    if sha256_hex(&bytes) == sha256 {
                        // Other cuts of it are no longer needed.
                        self.partial.retain(|(s, _), _| *s != sha256);
                        self.stored.insert(sha256.clone());
                        self.completed.insert(sha256.clone(), self.seq);
                        self.snapshot.blobs.insert(sha256, bytes);
                    } else {
                        tracing::warn!(sha256, "a module blob in the log does not match its hash; ignored");
                    }
                }
            }
        }
    }
}

impl State {
    /// The records that rebuild the store from nothing: every manifest, and the blobs that a
    /// manifest names (by their SHA-256, whatever the manifest's format) or that were stored
    /// lately. Only while the blobs are still here: before the registries take them at start.
    fn rebuild(&self, chunk_bytes: usize) -> Vec<ModuleRecord> {
        let manifests: Vec<&str> =
            self.snapshot.manifests.values().map(|m| std::str::from_utf8(m).unwrap_or("")).collect();
        let mut out = Vec::new();
        let mut blobs: Vec<(&String, &Vec<u8>)> = self.snapshot.blobs.iter().collect();
        blobs.sort();
        for (sha256, bytes) in blobs {
            let named = manifests.iter().any(|m| m.contains(sha256.as_str()));
            let recent = self.completed.get(sha256).is_some_and(|at| self.seq - at < RECENT_BLOB);
            if named || recent {
                out.extend(chunk_records(sha256, bytes, chunk_bytes));
            }
        }
        for ((scope, name), manifest) in &self.snapshot.manifests {
            let manifest = String::from_utf8_lossy(manifest).into_owned();
            out.push(ModuleRecord::Manifest { scope: scope.clone(), name: name.clone(), manifest });
        }
        out
    }
}

/// `bytes` cut into chunk records of `chunk_bytes`.
fn chunk_records(sha256: &str, bytes: &[u8], chunk_bytes: usize) -> Vec<ModuleRecord> {
    let count = bytes.len().div_ceil(chunk_bytes).max(1);
    (0..count)
        .map(|i| ModuleRecord::Chunk {
            sha256: sha256.to_string(),
            size: chunk_bytes as u32,
            index: i as u32,
            count: count as u32,
            data: B64.encode(&bytes[i * chunk_bytes..((i + 1) * chunk_bytes).min(bytes.len())]),
        })
        .collect()
}

pub struct PulsarModules {
    shared: Arc<Shared>,
    log: Arc<tokio::sync::Mutex<MetaLog>>,
    state: Arc<parking_lot::Mutex<State>>,
    /// Raw bytes per chunk: base64 of it, in JSON, fits a message.
    chunk_bytes: usize,
}

impl PulsarModules {
    /// Open the `modules` log of `namespace` and replay it.
    pub(super) fn open(shared: Arc<Shared>, client: Client, namespace: &str) -> Result<Self, StorageError> {
        let topic = format!("persistent://{namespace}/modules");
        let handle = shared.bridge.handle().clone();
        let log = shared
            .bridge
            .run_blocking(move || async move { MetaLog::open(&client, &handle, topic).await })?;
        // At most 512 KiB a chunk (about 700 KB in base64): a Pulsar-protocol broker that
        // keeps Kafka's 1 MiB message limit (Guise's own endpoint does) takes it too.
        let chunk_bytes = (shared.max_payload.saturating_sub(1024) / 4 * 3).clamp(1024, 512 << 10);
        let modules = PulsarModules {
            shared,
            log: Arc::new(tokio::sync::Mutex::new(log)),
            state: Arc::default(),
            chunk_bytes,
        };
        modules.catch_up()?;
        if let Err(e) = modules.compact() {
            tracing::warn!(
                "cannot compact the module store's log (it is replayed whole at the next start): {e}"
            );
        }
        Ok(modules)
    }

    /// Snapshot the log when a start replays more than twice what it holds (see
    /// `meta::MetaLog::compact`).
    fn compact(&self) -> Result<(), StorageError> {
        let (log, state) = (self.log.clone(), self.state.clone());
        let records = state.lock().rebuild(self.chunk_bytes);
        self.shared.bridge.run_blocking(move || async move {
            let mut log = log.lock().await;
            let replayed = log.replayed;
            if replayed <= 2 * records.len() as u64 + 16 {
                return Ok(());
            }
            let took = log.compact(&records, |_, e: Replayed<ModuleRecord>| state.lock().replay(e)).await?;
            tracing::info!(replayed, kept = records.len(), took, "compacted the module store's log");
            Ok(())
        })
    }

    /// Read what other hosts appended.
    fn catch_up(&self) -> Result<(), StorageError> {
        let (log, state) = (self.log.clone(), self.state.clone());
        self.shared.bridge.run_blocking(move || async move {
            log.lock().await.catch_up(|_, e: Replayed<ModuleRecord>| state.lock().replay(e)).await
        })
    }

    /// Append `records` in order (each read back, with whatever other hosts appended before it).
    fn append(&self, records: Vec<ModuleRecord>) -> Result<(), StorageError> {
        let (log, state) = (self.log.clone(), self.state.clone());
        self.shared.bridge.run_blocking(move || async move {
            let mut log = log.lock().await;
            for record in &records {
                log.append(record, |_, e: Replayed<ModuleRecord>| state.lock().replay(e)).await?;
            }
            Ok(())
        })
    }
}

impl ModuleStore for PulsarModules {
    fn snapshot(&self) -> Result<ModuleSnapshot, StorageError> {
        self.catch_up()?;
        let mut state = self.state.lock();
        let blobs = std::mem::take(&mut state.snapshot.blobs);
        Ok(ModuleSnapshot { manifests: state.snapshot.manifests.clone(), blobs })
    }

    fn manifest(&self, scope: &str, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.catch_up()?;
        Ok(self.state.lock().snapshot.manifests.get(&(scope.to_string(), name.to_string())).cloned())
    }

    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if self.state.lock().stored.contains(sha256) {
            return Ok(());
        }
        self.append(chunk_records(sha256, bytes, self.chunk_bytes))?;
        let mut state = self.state.lock();
        if state.stored.contains(sha256) {
            state.snapshot.blobs.remove(sha256); // the registry has its own copy
            Ok(())
        } else {
            Err(StorageError::Unavailable(format!("module blob {sha256} did not read back whole")))
        }
    }

    fn put_manifest(&self, scope: &str, name: &str, manifest: &[u8]) -> Result<(), StorageError> {
        let manifest = String::from_utf8(manifest.to_vec()).map_err(|_| {
            StorageError::InvalidConfig(format!("the manifest of {scope}/{name} is not UTF-8"))
        })?;
        // Escaped once more inside the record, it must fit one message.
        let size = manifest.len() + manifest.len() / 4 + 1024;
        if size > self.shared.max_payload {
            return Err(StorageError::MessageTooLarge { size, max: self.shared.max_payload as u32 });
        }
        self.append(vec![ModuleRecord::Manifest { scope: scope.into(), name: name.into(), manifest }])
    }

    fn remove(&self, scope: &str, name: &str) -> Result<(), StorageError> {
        self.append(vec![ModuleRecord::Remove { scope: scope.into(), name: name.into() }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(bytes: &[u8], size: usize) -> Vec<ModuleRecord> {
        let sha256 = sha256_hex(bytes);
        let count = bytes.len().div_ceil(size) as u32;
        bytes
            .chunks(size)
            .enumerate()
            .map(|(i, c)| ModuleRecord::Chunk {
                sha256: sha256.clone(),
                size: size as u32,
                index: i as u32,
                count,
                data: B64.encode(c),
            })
            .collect()
    }

    #[test]
    fn blobs_count_when_whole_and_matching_and_manifests_replay_in_order() {
        let blob: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let sha = sha256_hex(&blob);
        let mut state = State::default();
        let mut parts = chunks(&blob, 3000);
        assert_eq!(parts.len(), 4);
        let last = parts.pop().unwrap();
        for p in parts.clone() {
            state.apply(p);
        }
        assert!(state.snapshot.blobs.is_empty(), "a blob with a chunk missing does not count");
        state.apply(last);
        assert_eq!(state.snapshot.blobs[&sha], blob);
        assert!(state.partial.is_empty());

        // Two hosts with different message sizes cut the same blob differently: the cuts are
        // not mixed.
        let other: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        let mut small = chunks(&other, 2000);
        let big = chunks(&other, 2500);
        state.apply(small.remove(0));
        state.apply(big[1].clone());
        state.apply(small.remove(0));
        assert!(!state.snapshot.blobs.contains_key(&sha256_hex(&other)));
        state.apply(big[0].clone());
        assert_eq!(state.snapshot.blobs[&sha256_hex(&other)], other);
        assert!(state.partial.is_empty(), "the other cut is dropped once one is whole");

        // Chunks whose bytes do not match the hash they claim are ignored.
        let mut forged = chunks(b"evil", 2);
        for c in &mut forged {
            if let ModuleRecord::Chunk { sha256, .. } = c {
                *sha256 = "00".repeat(32);
            }
        }
        forged.into_iter().for_each(|c| state.apply(c));
        assert!(!state.snapshot.blobs.contains_key(&"00".repeat(32)));

        let m = |n: &str, v: &str| ModuleRecord::Manifest {
            scope: "modules".into(),
            name: n.into(),
            manifest: v.into(),
        };
        state.apply(m("kafka", "v1"));
        state.apply(m("other", "v1"));
        state.apply(m("kafka", "v2"));
        state.apply(ModuleRecord::Remove { scope: "modules".into(), name: "other".into() });
        let names: Vec<_> =
            state.snapshot.manifests.iter().map(|((_, n), v)| (n.as_str(), v.as_slice())).collect();
        assert_eq!(names, [("kafka", b"v2".as_slice())]);

        // Records survive JSON.
        let json = serde_json::to_string(&m("kafka", "{}")).unwrap();
        assert!(json.contains("\"op\":\"manifest\""), "{json}");
        assert_eq!(serde_json::from_str::<ModuleRecord>(&json).unwrap(), m("kafka", "{}"));
    }
}
