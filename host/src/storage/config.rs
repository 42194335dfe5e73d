//! Topic configuration: the Kafka configs that exist here and take effect, with validation.

use super::StorageError;
use std::collections::BTreeMap;

const SEGMENT_BYTES: &str = "segment.bytes";
const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
const RETENTION_MS: &str = "retention.ms";
const RETENTION_BYTES: &str = "retention.bytes";
const CLEANUP_POLICY: &str = "cleanup.policy";
const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// How the `pulsar` storage backend stores this topic's records (see [`EntryFormat`]). Accepted
/// on every backend so that a topic's configs do not depend on where it lives; the embedded log
/// stores Kafka batches whatever it says.
pub const ENTRY_FORMAT: &str = "guise.entry.format";

/// The only cleanup policy: segments are never compacted.
const CLEANUP_POLICY_VALUE: &str = "delete";
/// The only timestamp type: the producer's timestamps are stored as sent.
const TIMESTAMP_TYPE_VALUE: &str = "CreateTime";

/// Kafka 4.x's lower bound for segment.bytes (KIP-1030): smaller segments only cost files.
const MIN_SEGMENT_BYTES: i64 = 1024 * 1024;

/// `guise.entry.format`: what one Pulsar message holds on the `pulsar` backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EntryFormat {
    /// One message per Kafka record batch, the batch bytes as stored (the fast path).
    #[default]
    Kafka,
    /// One message per record, mapped as Pulsar consumers expect (key, properties, event time).
    Pulsar,
}

impl EntryFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryFormat::Kafka => "kafka",
            EntryFormat::Pulsar => "pulsar",
        }
    }
}

/// Broker-wide defaults, used for every topic config that the topic does not override.
#[derive(Clone, Debug)]
pub struct LogDefaults {
    /// log.segment.bytes: roll a new segment when the active one would exceed this.
    pub segment_bytes: u64,
    /// message.max.bytes: the largest record batch accepted.
    pub max_message_bytes: u32,
    /// log.index.interval.bytes: bytes between two entries of the sparse offset index.
    pub index_interval_bytes: u32,
    /// When appended data is fsynced.
    pub fsync: FsyncPolicy,
    /// log.retention.ms: whole segments whose newest record is older are deleted (-1: never).
    pub retention_ms: i64,
    /// log.retention.bytes: oldest whole segments are deleted while a partition would still
    /// hold at least this much without them (-1: no limit).
    pub retention_bytes: i64,
}

/// When the log fsyncs what it appended. Every policy survives a crash of the Guise process
/// (acknowledged data is in the operating system's page cache); they differ on power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Leave it to the operating system's writeback (Kafka's default): a power loss can lose
    /// whatever the kernel had not written yet, typically up to ~30 s.
    Never,
    /// fsync every partition written to at this interval: a power loss loses at most about
    /// the last interval of acknowledged data. The host runs the timer (`flush`).
    Interval(std::time::Duration),
    /// fsync before an append returns, so before the produce is acknowledged: acknowledged
    /// data survives a power loss.
    EveryBatch,
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults {
            segment_bytes: 1024 * 1024 * 1024,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Interval(std::time::Duration::from_secs(1)),
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
        }
    }
}

/// One entry of DescribeConfigs.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub is_default: bool,
    pub sensitive: bool,
}

/// A topic's effective configuration.
#[derive(Clone, Debug)]
pub struct TopicConfig {
    /// segment.bytes
    pub segment_bytes: u64,
    /// max.message.bytes
    pub max_message_bytes: u32,
    /// index.interval.bytes
    pub index_interval_bytes: u32,
    /// retention.ms (-1: keep forever)
    pub retention_ms: i64,
    /// retention.bytes (-1: no size limit)
    pub retention_bytes: i64,
    /// guise.entry.format (the `pulsar` backend only)
    pub entry_format: EntryFormat,
    /// The settable configs this topic overrides, normalized (name -> value). They are what is
    /// persisted: the other values follow the broker defaults, also after a restart.
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Validate Kafka config pairs (e.g. `("segment.bytes", "1048576")`) over `defaults`. An
    /// unknown key, a repeated key or a bad value is InvalidConfig. `cleanup.policy=delete` and
    /// `message.timestamp.type=CreateTime` are accepted (they are the only values) but not
    /// recorded as overrides.
    pub fn from_pairs(defaults: &LogDefaults, pairs: &[(String, String)]) -> Result<Self, StorageError> {
        let mut config = TopicConfig {
            segment_bytes: defaults.segment_bytes,
            max_message_bytes: defaults.max_message_bytes,
            index_interval_bytes: defaults.index_interval_bytes,
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            entry_format: EntryFormat::Kafka,
            overrides: BTreeMap::new(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for (key, value) in pairs {
            if !seen.insert(key.as_str()) {
                return Err(StorageError::InvalidConfig(format!("config '{key}' is given more than once")));
            }
            let value = value.trim();
            match key.as_str() {
                SEGMENT_BYTES => {
                    let v = parse_int(key, value, MIN_SEGMENT_BYTES)?;
                    config.segment_bytes = v as u64;
                    config.overrides.insert(key.clone(), v.to_string());
                }
                MAX_MESSAGE_BYTES => {
                    let v = parse_int(key, value, 0)?;
                    config.max_message_bytes = v as u32;
                    config.overrides.insert(key.clone(), v.to_string());
                }
                INDEX_INTERVAL_BYTES => {
                    let v = parse_int(key, value, 0)?;
                    config.index_interval_bytes = v as u32;
                    config.overrides.insert(key.clone(), v.to_string());
                }
                RETENTION_MS => {
                    config.retention_ms = parse_long(key, value)?;
                    config.overrides.insert(key.clone(), config.retention_ms.to_string());
                }
                RETENTION_BYTES => {
                    config.retention_bytes = parse_long(key, value)?;
                    config.overrides.insert(key.clone(), config.retention_bytes.to_string());
                }
                ENTRY_FORMAT => {
                    config.entry_format = match value {
                        "kafka" => EntryFormat::Kafka,
                        "pulsar" => EntryFormat::Pulsar,
                        other => {
                            return Err(StorageError::InvalidConfig(format!(
                                "config '{key}': '{other}' is neither 'kafka' nor 'pulsar'"
                            )));
                        }
                    };
                    config.overrides.insert(key.clone(), config.entry_format.as_str().to_string());
                }
                CLEANUP_POLICY => fixed(key, value, CLEANUP_POLICY_VALUE)?,
                MESSAGE_TIMESTAMP_TYPE => fixed(key, value, TIMESTAMP_TYPE_VALUE)?,
                _ => {
                    return Err(StorageError::InvalidConfig(format!(
                        "unknown or unsupported topic config '{key}'"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// The configs that exist and take effect, with their values, sorted by name.
    pub fn entries(&self, defaults: &LogDefaults) -> Vec<ConfigEntry> {
        let settable = |name: &str, value: String, default: String| {
            let overridden = self.overrides.contains_key(name);
            ConfigEntry {
                name: name.to_string(),
                value: Some(if overridden { value } else { default }),
                read_only: false,
                is_default: !overridden,
                sensitive: false,
            }
        };
        let fixed = |name: &str, value: &str| ConfigEntry {
            name: name.to_string(),
            value: Some(value.to_string()),
            read_only: true,
            is_default: true,
            sensitive: false,
        };
        vec![
            fixed(CLEANUP_POLICY, CLEANUP_POLICY_VALUE),
            settable(
                ENTRY_FORMAT,
                self.entry_format.as_str().to_string(),
                EntryFormat::Kafka.as_str().to_string(),
            ),
            settable(
                INDEX_INTERVAL_BYTES,
                self.index_interval_bytes.to_string(),
                defaults.index_interval_bytes.to_string(),
            ),
            settable(
                MAX_MESSAGE_BYTES,
                self.max_message_bytes.to_string(),
                defaults.max_message_bytes.to_string(),
            ),
            fixed(MESSAGE_TIMESTAMP_TYPE, TIMESTAMP_TYPE_VALUE),
            settable(RETENTION_BYTES, self.retention_bytes.to_string(), defaults.retention_bytes.to_string()),
            settable(RETENTION_MS, self.retention_ms.to_string(), defaults.retention_ms.to_string()),
            settable(SEGMENT_BYTES, self.segment_bytes.to_string(), defaults.segment_bytes.to_string()),
        ]
    }
}

/// A Kafka INT config: an i32 in `[min, i32::MAX]`.
fn parse_int(key: &str, value: &str, min: i64) -> Result<i64, StorageError> {
    let v: i32 = value
        .parse()
        .map_err(|_| StorageError::InvalidConfig(format!("config '{key}': '{value}' is not an int")))?;
    let v = i64::from(v);
    if v < min {
        return Err(StorageError::InvalidConfig(format!("config '{key}': {v} is below the minimum {min}")));
    }
    Ok(v)
}

/// A Kafka LONG config where -1 means "no limit".
fn parse_long(key: &str, value: &str) -> Result<i64, StorageError> {
    let v: i64 = value
        .parse()
        .map_err(|_| StorageError::InvalidConfig(format!("config '{key}': '{value}' is not a long")))?;
    if v < -1 {
        return Err(StorageError::InvalidConfig(format!("config '{key}': {v} is below the minimum -1")));
    }
    Ok(v)
}

/// A read-only config: only its one value is accepted.
fn fixed(key: &str, value: &str, only: &str) -> Result<(), StorageError> {
    if value == only {
        Ok(())
    } else {
        Err(StorageError::InvalidConfig(format!("config '{key}': only '{only}' is supported, not '{value}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_apply_without_overrides() {
        let d = LogDefaults::default();
        let c = TopicConfig::from_pairs(&d, &[]).unwrap();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert!(c.entries(&d).iter().all(|e| e.is_default));
    }

    #[test]
    fn overrides_take_effect_and_show() {
        let d = LogDefaults::default();
        let c = TopicConfig::from_pairs(
            &d,
            &pairs(&[
                ("segment.bytes", " 2097152 "),
                ("max.message.bytes", "1000"),
                ("cleanup.policy", "delete"),
                ("message.timestamp.type", "CreateTime"),
            ]),
        )
        .unwrap();
        assert_eq!(c.segment_bytes, 2_097_152);
        assert_eq!(c.max_message_bytes, 1000);
        assert_eq!(c.overrides.len(), 2);
        let entries = c.entries(&d);
        let seg = entries.iter().find(|e| e.name == "segment.bytes").unwrap();
        assert_eq!(seg.value.as_deref(), Some("2097152"));
        assert!(!seg.is_default && !seg.read_only);
        let policy = entries.iter().find(|e| e.name == "cleanup.policy").unwrap();
        assert!(policy.read_only && policy.is_default);
        assert_eq!(policy.value.as_deref(), Some("delete"));
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn entry_format_is_a_topic_config() {
        let d = LogDefaults::default();
        let c = TopicConfig::from_pairs(&d, &pairs(&[("guise.entry.format", "pulsar")])).unwrap();
        assert_eq!(c.entry_format, EntryFormat::Pulsar);
        let e = c.entries(&d).into_iter().find(|e| e.name == ENTRY_FORMAT).unwrap();
        assert_eq!((e.value.as_deref(), e.is_default), (Some("pulsar"), false));
        let c = TopicConfig::from_pairs(&d, &[]).unwrap();
        assert_eq!(c.entry_format, EntryFormat::Kafka);
        let e = c.entries(&d).into_iter().find(|e| e.name == ENTRY_FORMAT).unwrap();
        assert_eq!((e.value.as_deref(), e.is_default), (Some("kafka"), true));
    }

    #[test]
    fn bad_configs_are_rejected() {
        let d = LogDefaults::default();
        for bad in [
            ("min.compaction.lag.ms", "1000"),
            ("segment.bytes", "abc"),
            ("segment.bytes", "100"),
            ("segment.bytes", "4294967296"),
            ("max.message.bytes", "-1"),
            ("cleanup.policy", "compact"),
            ("message.timestamp.type", "LogAppendTime"),
            ("guise.entry.format", "avro"),
        ] {
            let err = TopicConfig::from_pairs(&d, &pairs(&[bad])).unwrap_err();
            assert!(matches!(err, StorageError::InvalidConfig(_)), "{bad:?}: {err}");
        }
        let dup = pairs(&[("max.message.bytes", "1"), ("max.message.bytes", "2")]);
        assert!(matches!(TopicConfig::from_pairs(&d, &dup), Err(StorageError::InvalidConfig(_))));
    }
}
