//! Durability of groups and committed offsets: the records the coordinator appends to each
//! tenant's internal `__consumer_offsets` topic (one partition, kept forever), written as
//! uncompressed v2 batches with the log's record codec, and the replay that rebuilds the state
//! at start.
//!
//! Format (our own; Kafka's binary schemas buy nothing here since no Kafka broker reads it):
//! the key is JSON, `{"t":"o","group":..,"topic":..,"partition":..}` for a committed offset and
//! `{"t":"g","group":..}` for a group's metadata; the value is JSON ([`Committed`] or
//! [`GroupValue`]; byte fields as hex), and a null value is a tombstone. The last record of a key
//! wins. The topic is compacted as Kafka's `__consumer_offsets` is (on the embedded log and on the
//! `pulsar://` backend), so it keeps about one record per key and replay reads that.

use super::offsets::Committed;
use crate::storage::{Log, StorageError, TopicName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The internal topic, per tenant, in the configured namespace.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Topic configs of the internal topic: nothing is ever deleted by retention; compacted where
/// the log compacts (`compact`), with Kafka's 100 MiB segments for its offsets topic.
pub fn offsets_topic_configs(compact: bool) -> Vec<(String, String)> {
    let mut configs = vec![
        ("retention.ms".into(), "-1".into()),
        ("retention.bytes".into(), "-1".into()),
        // Group metadata of a large group (every member's subscription and assignment) can be
        // well over the broker's default batch limit.
        ("max.message.bytes".into(), (64 << 20).to_string()),
    ];
    if compact {
        configs.extend(compaction_configs().into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }
    configs
}

/// What makes the offsets topic compacted (also applied to one created before it was).
pub fn compaction_configs() -> [(&'static str, &'static str); 2] {
    [("cleanup.policy", "compact"), ("segment.bytes", "104857600")]
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "t")]
pub enum RecordKey {
    #[serde(rename = "o")]
    Offset { group: String, topic: String, partition: i32 },
    #[serde(rename = "g")]
    Group { group: String },
}

impl RecordKey {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

pub use guise_guest_sdk::groups::{GroupValue, MemberValue};

pub use crate::storage::kv::{Decoded, Record, decode_batch, encode_batch};

pub fn offset_record(group: &str, topic: &str, partition: i32, value: Option<&Committed>) -> Record {
    let key = RecordKey::Offset { group: group.into(), topic: topic.into(), partition }.encode();
    (key, value.map(|v| serde_json::to_vec(v).unwrap_or_default()))
}

pub fn group_record(group: &str, value: Option<&GroupValue>) -> Record {
    let key = RecordKey::Group { group: group.into() }.encode();
    (key, value.map(|v| serde_json::to_vec(v).unwrap_or_default()))
}

/// One uncompressed v2 record batch holding `records` (at least one), every record stamped
/// `timestamp_ms`; no producer id, base offset 0 (the log assigns it), CRC-32C filled in.
/// What a tenant's offsets topic holds, last write winning.
#[derive(Default, Debug)]
pub struct Replayed {
    pub groups: BTreeMap<String, GroupValue>,
    pub offsets: BTreeMap<String, BTreeMap<(String, i32), Committed>>,
    /// Records read (for the log line).
    pub records: usize,
}

impl Replayed {
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.records += 1;
        let key: RecordKey = match serde_json::from_slice(key) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("skipping an unreadable offsets-topic key: {e}");
                return;
            }
        };
        match key {
            RecordKey::Offset { group, topic, partition } => match value.map(serde_json::from_slice) {
                Some(Ok(c)) => {
                    self.offsets.entry(group).or_default().insert((topic, partition), c);
                }
                Some(Err(e)) => tracing::warn!(group, topic, partition, "skipping an unreadable offset: {e}"),
                None => {
                    if let Some(offsets) = self.offsets.get_mut(&group) {
                        offsets.remove(&(topic, partition));
                        if offsets.is_empty() {
                            self.offsets.remove(&group);
                        }
                    }
                }
            },
            RecordKey::Group { group } => match value.map(serde_json::from_slice) {
                Some(Ok(g)) => {
                    self.groups.insert(group, g);
                }
                Some(Err(e)) => tracing::warn!(group, "skipping unreadable group metadata: {e}"),
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }
}

/// Read the whole offsets topic `name` (partition 0) from its log start to its end.
pub async fn replay(log: &dyn Log, name: &TopicName) -> Result<Replayed, StorageError> {
    let mut out = Replayed::default();
    crate::storage::kv::replay(log, name, |key, value| out.apply(key, value)).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::validate;
    use crate::storage::LogDefaults;
    use crate::storage::embedded::EmbeddedLog;

    fn committed(offset: i64) -> Committed {
        Committed { offset, leader_epoch: -1, metadata: Some("m".into()), commit_timestamp: 7 }
    }

    #[test]
    fn batches_validate_and_decode() {
        let records = vec![offset_record("g", "t", 0, Some(&committed(5))), offset_record("g", "t", 1, None)];
        let mut b = encode_batch(&records, 1234).unwrap();
        assert_eq!(validate(&b, 1 << 20).unwrap().len(), 1);
        b[0..8].copy_from_slice(&10i64.to_be_bytes());
        let decoded = decode_batch(&b).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].0, 10);
        assert_eq!(decoded[1].0, 11);
        assert_eq!(decoded[0].1.as_deref(), Some(records[0].0.as_slice()));
        assert_eq!(decoded[0].2, records[0].1);
        assert_eq!(decoded[1].2, None);
    }

    #[test]
    fn group_values_round_trip_with_hex() {
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            members: vec![MemberValue {
                member_id: "a".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: vec![0, 1, 0xab, 0xff],
                assignment: vec![],
            }],
        };
        let (_, v) = group_record("g", Some(&g));
        let text = String::from_utf8(v.clone().unwrap()).unwrap();
        assert!(text.contains("\"0001abff\""), "{text}");
        let back: GroupValue = serde_json::from_slice(&v.unwrap()).unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn replay_last_write_wins_and_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap();
        let name = TopicName::new("public", "default", OFFSETS_TOPIC);
        assert!(crate::storage::wait(replay(&log, &name)).unwrap().groups.is_empty(), "no topic yet");
        log.create_topic(&name, 1, &offsets_topic_configs(true), false).unwrap();
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            members: vec![],
        };
        let appends = vec![
            vec![
                offset_record("g", "t", 0, Some(&committed(1))),
                offset_record("g", "t", 1, Some(&committed(2))),
            ],
            vec![offset_record("g", "t", 0, Some(&committed(3))), group_record("g", Some(&g))],
            vec![offset_record("g", "t", 1, None), group_record("h", Some(&g))],
            vec![group_record("h", None), offset_record("h", "t", 0, Some(&committed(9)))],
        ];
        for records in appends {
            log.append(&name, 0, encode_batch(&records, 0).unwrap().into()).unwrap();
        }
        let r = crate::storage::wait(replay(&log, &name)).unwrap();
        assert_eq!(r.records, 8);
        assert_eq!(r.groups.keys().collect::<Vec<_>>(), vec!["g"]);
        assert_eq!(r.offsets["g"].len(), 1);
        assert_eq!(r.offsets["g"][&("t".to_string(), 0)].offset, 3);
        assert_eq!(r.offsets["h"][&("t".to_string(), 0)].offset, 9);
    }
}
