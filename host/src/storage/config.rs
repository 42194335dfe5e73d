//! Topic configuration: the Kafka configs that exist here and take effect, with validation.

use super::StorageError;
use std::collections::BTreeMap;

/// How the `pulsar` storage backend stores this topic's records (see [`EntryFormat`]). Accepted
/// on every backend so that a topic's configs do not depend on where it lives; the embedded log
/// stores Kafka batches whatever it says. Fixed at creation.
pub const ENTRY_FORMAT: &str = "guise.entry.format";
/// Whether Pulsar applications may write to the topic through its ingress topic (the `pulsar`
/// backend; see `docs/pulsar.md`). Accepted everywhere, as the entry format is; may be altered.
pub const INGRESS: &str = "guise.pulsar.ingress";
/// `cleanup.policy`.
pub const CLEANUP_POLICY: &str = "cleanup.policy";

/// Kafka 4.x's lower bound for segment.bytes (KIP-1030): smaller segments only cost files.
const MIN_SEGMENT_BYTES: i64 = 1024 * 1024;

/// What values a topic config takes, as Kafka 4.4's `LogConfig` defines them.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Int(i64, i64),
    Long(i64, i64),
    Double(f64, f64),
    Bool,
    /// One of these strings (Kafka compares them case-sensitively, as here).
    Choice(&'static [&'static str]),
    /// A comma-separated list of these strings (`cleanup.policy`).
    List(&'static [&'static str]),
    /// `[partitionId]:[brokerId],...` or `*` (the replication throttles).
    Replicas,
}

/// Where a config's default comes from: a constant, or the broker's [`LogDefaults`].
#[derive(Clone, Copy, Debug)]
enum DefaultValue {
    Const(&'static str),
    Broker(fn(&LogDefaults) -> String),
}

/// One topic config: its name, its values and its default.
struct Def {
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
}

const I32: i64 = i32::MAX as i64;

/// Every topic config of Apache Kafka 4.4 (`LogConfig.nonInternalConfigNames()`, with the types,
/// ranges and defaults its ConfigDef gives), sorted by name. All are accepted, stored and
/// described; which of them take effect here is said on the typed fields of [`TopicConfig`]. The
/// others describe replication, tiered storage, flushing or preallocation, which mean nothing
/// for one host's log (or the Pulsar brokers do their part), and are kept as Kafka keeps them.
const DEFS: &[Def] = &[
    Def {
        name: "cleanup.policy",
        kind: Kind::List(&["compact", "delete"]),
        default: DefaultValue::Const("delete"),
    },
    Def { name: "compression.gzip.level", kind: Kind::Int(-1, 9), default: DefaultValue::Const("-1") },
    Def { name: "compression.lz4.level", kind: Kind::Int(1, 17), default: DefaultValue::Const("9") },
    Def {
        name: "compression.type",
        kind: Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        default: DefaultValue::Const("producer"),
    },
    Def { name: "compression.zstd.level", kind: Kind::Int(-131072, 22), default: DefaultValue::Const("3") },
    Def {
        name: "delete.retention.ms",
        kind: Kind::Long(0, i64::MAX),
        default: DefaultValue::Const("86400000"),
    },
    Def {
        name: "errors.deadletterqueue.group.enable",
        kind: Kind::Bool,
        default: DefaultValue::Const("false"),
    },
    Def {
        name: "file.delete.delay.ms",
        kind: Kind::Long(0, i64::MAX),
        default: DefaultValue::Const("60000"),
    },
    Def {
        name: "flush.messages",
        kind: Kind::Long(1, i64::MAX),
        default: DefaultValue::Const("9223372036854775807"),
    },
    Def {
        name: "flush.ms",
        kind: Kind::Long(0, i64::MAX),
        default: DefaultValue::Const("9223372036854775807"),
    },
    Def {
        name: "follower.replication.throttled.replicas",
        kind: Kind::Replicas,
        default: DefaultValue::Const(""),
    },
    Def {
        name: "index.interval.bytes",
        kind: Kind::Int(0, I32),
        default: DefaultValue::Broker(|d| d.index_interval_bytes.to_string()),
    },
    Def {
        name: "leader.replication.throttled.replicas",
        kind: Kind::Replicas,
        default: DefaultValue::Const(""),
    },
    Def { name: "local.retention.bytes", kind: Kind::Long(-2, i64::MAX), default: DefaultValue::Const("-2") },
    Def { name: "local.retention.ms", kind: Kind::Long(-2, i64::MAX), default: DefaultValue::Const("-2") },
    Def {
        name: "max.compaction.lag.ms",
        kind: Kind::Long(1, i64::MAX),
        default: DefaultValue::Const("9223372036854775807"),
    },
    Def {
        name: "max.decompressed.message.bytes",
        kind: Kind::Int(1, 2147483639),
        default: DefaultValue::Const("2147483639"),
    },
    Def {
        name: "max.message.bytes",
        kind: Kind::Int(0, I32),
        default: DefaultValue::Broker(|d| d.max_message_bytes.to_string()),
    },
    Def {
        name: "message.timestamp.after.max.ms",
        kind: Kind::Long(0, i64::MAX),
        default: DefaultValue::Const("3600000"),
    },
    Def {
        name: "message.timestamp.before.max.ms",
        kind: Kind::Long(0, i64::MAX),
        default: DefaultValue::Const("9223372036854775807"),
    },
    Def {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: DefaultValue::Const("CreateTime"),
    },
    Def {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Double(0.0, 1.0),
        default: DefaultValue::Const("0.5"),
    },
    Def { name: "min.compaction.lag.ms", kind: Kind::Long(0, i64::MAX), default: DefaultValue::Const("0") },
    Def { name: "min.insync.replicas", kind: Kind::Int(1, I32), default: DefaultValue::Const("1") },
    Def { name: "preallocate", kind: Kind::Bool, default: DefaultValue::Const("false") },
    Def { name: "remote.copy.lag.bytes", kind: Kind::Long(-1, i64::MAX), default: DefaultValue::Const("-1") },
    Def { name: "remote.copy.lag.ms", kind: Kind::Long(-1, i64::MAX), default: DefaultValue::Const("0") },
    Def { name: "remote.log.copy.disable", kind: Kind::Bool, default: DefaultValue::Const("false") },
    Def { name: "remote.log.delete.on.disable", kind: Kind::Bool, default: DefaultValue::Const("false") },
    Def { name: "remote.storage.enable", kind: Kind::Bool, default: DefaultValue::Const("false") },
    Def {
        name: "retention.bytes",
        kind: Kind::Long(i64::MIN, i64::MAX),
        default: DefaultValue::Broker(|d| d.retention_bytes.to_string()),
    },
    Def {
        name: "retention.ms",
        kind: Kind::Long(-1, i64::MAX),
        default: DefaultValue::Broker(|d| d.retention_ms.to_string()),
    },
    Def {
        name: "segment.bytes",
        kind: Kind::Int(MIN_SEGMENT_BYTES, I32),
        default: DefaultValue::Broker(|d| d.segment_bytes.to_string()),
    },
    Def { name: "segment.index.bytes", kind: Kind::Int(4, I32), default: DefaultValue::Const("10485760") },
    Def { name: "segment.jitter.ms", kind: Kind::Long(0, i64::MAX), default: DefaultValue::Const("0") },
    Def { name: "segment.ms", kind: Kind::Long(1, i64::MAX), default: DefaultValue::Const("604800000") },
    Def { name: "unclean.leader.election.enable", kind: Kind::Bool, default: DefaultValue::Const("false") },
];

/// Guise's own topic configs that are altered like Kafka's (the entry format, fixed at creation,
/// is handled apart).
const GUISE_DEFS: &[Def] = &[Def { name: INGRESS, kind: Kind::Bool, default: DefaultValue::Const("false") }];

fn def(name: &str) -> Option<&'static Def> {
    DEFS.binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &DEFS[i])
        .or_else(|| GUISE_DEFS.iter().find(|d| d.name == name))
}

/// Kafka's words for a value a config does not take.
fn bad_value(name: &str, value: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::InvalidConfig(format!("Invalid value {value} for configuration {name}: {why}"))
}

/// `value` checked against `kind`, normalized as Kafka would store it (trimmed; lists without
/// spaces; booleans lower case).
fn normalize(name: &str, kind: Kind, value: &str) -> Result<String, StorageError> {
    let value = value.trim();
    let range = |v: String, ok: bool, min: &dyn std::fmt::Display, max: &dyn std::fmt::Display| {
        if ok { Ok(v) } else { Err(bad_value(name, value, format!("Value must be in [{min}, {max}]"))) }
    };
    match kind {
        Kind::Int(min, max) => {
            let v: i32 = value.parse().map_err(|_| bad_value(name, value, "Not a number of type INT"))?;
            let v = i64::from(v);
            range(v.to_string(), (min..=max).contains(&v), &min, &max)
        }
        Kind::Long(min, max) => {
            let v: i64 = value.parse().map_err(|_| bad_value(name, value, "Not a number of type LONG"))?;
            range(v.to_string(), (min..=max).contains(&v), &min, &max)
        }
        Kind::Double(min, max) => {
            let v: f64 = value.parse().map_err(|_| bad_value(name, value, "Not a number of type DOUBLE"))?;
            range(v.to_string(), v >= min && v <= max, &min, &max)
        }
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => Ok(b.to_string()),
            _ => Err(bad_value(name, value, "Expected value to be either true or false")),
        },
        Kind::Choice(options) => {
            if options.contains(&value) {
                Ok(value.to_string())
            } else {
                Err(bad_value(name, value, format!("String must be one of: {}", options.join(", "))))
            }
        }
        Kind::List(options) => {
            let items: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if let Some(bad) = items.iter().find(|i| !options.contains(i)) {
                return Err(bad_value(name, value, format!("'{bad}' is not one of {options:?}")));
            }
            if items.is_empty() {
                return Err(bad_value(name, value, "Empty list is not a valid cleanup policy here"));
            }
            Ok(items.join(","))
        }
        Kind::Replicas => {
            let ok = value == "*"
                || value.split(',').map(str::trim).filter(|s| !s.is_empty()).all(|pair| {
                    pair.split_once(':')
                        .is_some_and(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
                });
            if ok {
                Ok(value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(","))
            } else {
                Err(bad_value(
                    name,
                    value,
                    "must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                ))
            }
        }
    }
}

/// `cleanup.policy`: which of Kafka's two cleanups run on a topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// `delete`: retention.ms and retention.bytes remove whole old segments.
    pub delete: bool,
    /// `compact`: the cleaner keeps only the latest record of each key.
    pub compact: bool,
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are stored as sent.
    #[default]
    CreateTime,
    /// The log stamps every batch with the time it appended it.
    LogAppendTime,
}

/// How a change of configs (IncrementalAlterConfigs) applies to one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterOp {
    Set(String),
    /// Back to the default.
    Delete,
    /// Add items to a list config.
    Append(String),
    /// Remove items from a list config.
    Subtract(String),
}

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
    /// Partitions of all topics together at most (the embedded log keeps a file open per
    /// partition): a creation beyond it is PolicyViolation.
    pub max_partitions: usize,
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
    /// A sealed segment's file nobody read for this long is closed by the retention pass and
    /// opened again on its next read (the embedded log), so open files do not grow with the
    /// number of segments.
    pub idle_file_close_ms: i64,
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
            max_partitions: usize::MAX,
            segment_bytes: 1024 * 1024 * 1024,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Interval(std::time::Duration::from_secs(1)),
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            idle_file_close_ms: 10 * 60 * 1000,
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
    /// segment.bytes: roll a new segment when the active one would exceed this.
    pub segment_bytes: u64,
    /// segment.ms: roll the active segment once its first batch is this old (so that retention
    /// and the cleaner, which never touch the active segment, can reach its records).
    pub segment_ms: i64,
    /// max.message.bytes: the largest record batch accepted.
    pub max_message_bytes: u32,
    /// index.interval.bytes
    pub index_interval_bytes: u32,
    /// retention.ms (-1: keep forever); applies when `cleanup_policy.delete`.
    pub retention_ms: i64,
    /// retention.bytes (-1: no size limit); applies when `cleanup_policy.delete`.
    pub retention_bytes: i64,
    /// cleanup.policy
    pub cleanup_policy: CleanupPolicy,
    /// delete.retention.ms: how long the cleaner keeps a tombstone (a null value) after it
    /// cleaned the segment holding it, so that consumers can see the delete.
    pub delete_retention_ms: i64,
    /// min.cleanable.dirty.ratio: clean once this share of the log is not yet cleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// min.compaction.lag.ms: records younger than this are never compacted away.
    pub min_compaction_lag_ms: i64,
    /// max.compaction.lag.ms: a record may stay uncompacted at most this long, whatever the
    /// dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// message.timestamp.type
    pub timestamp_type: TimestampType,
    /// message.timestamp.before.max.ms and message.timestamp.after.max.ms: how far a CreateTime
    /// timestamp may lie before or after the append time.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// compression.type as a Kafka codec id (0 uncompressed, 1 gzip, 2 snappy, 3 lz4, 4 zstd);
    /// None for `producer`: batches are stored in the producer's codec.
    pub compression: Option<u8>,
    /// guise.entry.format (the `pulsar` backend only)
    pub entry_format: EntryFormat,
    /// guise.pulsar.ingress (the `pulsar` backend only)
    pub ingress: bool,
    /// The configs this topic overrides, normalized (name -> value). They are what is persisted:
    /// the other values follow the broker defaults, also after a restart.
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Validate Kafka config pairs (e.g. `("segment.bytes", "1048576")`) over `defaults`, as
    /// Kafka 4.4 does: an unknown name, a repeated name or a value outside the config's type or
    /// range is InvalidConfig; so are settings that contradict each other.
    pub fn from_pairs(defaults: &LogDefaults, pairs: &[(String, String)]) -> Result<Self, StorageError> {
        let mut overrides = BTreeMap::new();
        for (key, value) in pairs {
            let normalized = if key == ENTRY_FORMAT {
                match value.trim() {
                    v @ ("kafka" | "pulsar") => v.to_string(),
                    other => {
                        return Err(StorageError::InvalidConfig(format!(
                            "config '{key}': '{other}' is neither 'kafka' nor 'pulsar'"
                        )));
                    }
                }
            } else {
                let Some(def) = def(key) else {
                    return Err(StorageError::InvalidConfig(format!("Unknown topic config name: {key}")));
                };
                normalize(key, def.kind, value)?
            };
            if overrides.insert(key.clone(), normalized).is_some() {
                return Err(StorageError::InvalidConfig(format!("config '{key}' is given more than once")));
            }
        }
        Self::from_overrides(defaults, overrides)
    }

    /// The configs after `ops` (IncrementalAlterConfigs): each sets a value, returns one to its
    /// default, or adds or removes items of a list config. The result is validated as a whole.
    pub fn altered(&self, defaults: &LogDefaults, ops: &[(String, AlterOp)]) -> Result<Self, StorageError> {
        let mut overrides = self.overrides.clone();
        let mut seen = std::collections::BTreeSet::new();
        for (key, op) in ops {
            if !seen.insert(key.as_str()) {
                return Err(StorageError::InvalidConfig(format!("config '{key}' is altered more than once")));
            }
            if key == ENTRY_FORMAT {
                return Err(StorageError::InvalidConfig(format!(
                    "config '{ENTRY_FORMAT}' is fixed when a topic is created"
                )));
            }
            let Some(def) = def(key) else {
                return Err(StorageError::InvalidConfig(format!("Unknown topic config name: {key}")));
            };
            match op {
                AlterOp::Set(v) => {
                    overrides.insert(key.clone(), normalize(key, def.kind, v)?);
                }
                AlterOp::Delete => {
                    overrides.remove(key);
                }
                AlterOp::Append(v) | AlterOp::Subtract(v) => {
                    if !matches!(def.kind, Kind::List(_) | Kind::Replicas) {
                        return Err(StorageError::InvalidConfig(format!(
                            "Config value append is not allowed for config key: {key}"
                        )));
                    }
                    let current = overrides.get(key).cloned().unwrap_or_else(|| def.default_value(defaults));
                    let mut items: Vec<String> = current
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if matches!(op, AlterOp::Append(_)) {
                            if !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            }
                        } else {
                            items.retain(|i| i != item);
                        }
                    }
                    overrides.insert(key.clone(), normalize(key, def.kind, &items.join(","))?);
                }
            }
        }
        Self::from_overrides(defaults, overrides)
    }

    /// The configs of legacy AlterConfigs: `pairs` replace every override (the entry format is
    /// kept, it cannot change).
    pub fn replaced(&self, defaults: &LogDefaults, pairs: &[(String, String)]) -> Result<Self, StorageError> {
        let mut config = Self::from_pairs(defaults, pairs)?;
        let new_format = config.overrides.remove(ENTRY_FORMAT);
        if new_format.is_some() && new_format != self.overrides.get(ENTRY_FORMAT).cloned() {
            return Err(StorageError::InvalidConfig(format!(
                "config '{ENTRY_FORMAT}' is fixed when a topic is created"
            )));
        }
        let mut overrides = config.overrides;
        if let Some(format) = self.overrides.get(ENTRY_FORMAT) {
            overrides.insert(ENTRY_FORMAT.to_string(), format.clone());
        }
        config = Self::from_overrides(defaults, overrides)?;
        Ok(config)
    }

    /// The typed settings of normalized `overrides` over `defaults`, with Kafka's checks across
    /// configs.
    fn from_overrides(
        defaults: &LogDefaults,
        overrides: BTreeMap<String, String>,
    ) -> Result<Self, StorageError> {
        let get = |name: &str| -> String {
            overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| def(name).expect("a known config").default_value(defaults))
        };
        let long = |name: &str| get(name).parse::<i64>().expect("validated");
        let policy = get(CLEANUP_POLICY);
        let remote_storage = get("remote.storage.enable") == "true";
        let compression = get("compression.type");
        let config = TopicConfig {
            segment_bytes: long("segment.bytes") as u64,
            segment_ms: long("segment.ms"),
            max_message_bytes: long("max.message.bytes") as u32,
            index_interval_bytes: long("index.interval.bytes") as u32,
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            cleanup_policy: CleanupPolicy {
                delete: policy.split(',').any(|p| p == "delete"),
                compact: policy.split(',').any(|p| p == "compact"),
            },
            delete_retention_ms: long("delete.retention.ms"),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().expect("validated"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms"),
            timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            compression: match compression.as_str() {
                "uncompressed" => Some(0),
                "gzip" => Some(1),
                "snappy" => Some(2),
                "lz4" => Some(3),
                "zstd" => Some(4),
                _ => None,
            },
            entry_format: match overrides.get(ENTRY_FORMAT).map(String::as_str) {
                Some("pulsar") => EntryFormat::Pulsar,
                _ => EntryFormat::Kafka,
            },
            ingress: get(INGRESS) == "true",
            overrides,
        };
        if config.min_compaction_lag_ms > config.max_compaction_lag_ms {
            return Err(StorageError::InvalidConfig(format!(
                "conflict topic config setting min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                config.min_compaction_lag_ms, config.max_compaction_lag_ms
            )));
        }
        if remote_storage {
            // As Kafka answers when its broker has no remote log storage system: Guise's tiered
            // storage is the `pulsar://` backend, chosen per host, not per topic.
            return Err(StorageError::InvalidConfig(
                "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage."
                    .into(),
            ));
        }
        Ok(config)
    }

    /// Every topic config with its value, sorted by name: Kafka's 37 and Guise's own.
    pub fn entries(&self, defaults: &LogDefaults) -> Vec<ConfigEntry> {
        let entry = |name: &str, default: String| {
            let value = self.overrides.get(name).cloned();
            ConfigEntry {
                name: name.to_string(),
                is_default: value.is_none(),
                value: Some(value.unwrap_or(default)),
                read_only: false,
                sensitive: false,
            }
        };
        let mut out: Vec<ConfigEntry> =
            DEFS.iter().chain(GUISE_DEFS).map(|d| entry(d.name, d.default_value(defaults))).collect();
        out.push(entry(ENTRY_FORMAT, EntryFormat::Kafka.as_str().to_string()));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

impl Def {
    fn default_value(&self, defaults: &LogDefaults) -> String {
        match self.default {
            DefaultValue::Const(v) => v.to_string(),
            DefaultValue::Broker(f) => f(defaults),
        }
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
        // As Kafka, a value given at creation is an override even when it equals the default.
        assert_eq!(c.overrides.len(), 4);
        let entries = c.entries(&d);
        let seg = entries.iter().find(|e| e.name == "segment.bytes").unwrap();
        assert_eq!(seg.value.as_deref(), Some("2097152"));
        assert!(!seg.is_default && !seg.read_only);
        let policy = entries.iter().find(|e| e.name == "cleanup.policy").unwrap();
        assert!(!policy.read_only && !policy.is_default);
        assert_eq!(policy.value.as_deref(), Some("delete"));
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        // Kafka 4.4's 37 topic configs, and Guise's entry format.
        assert_eq!(entries.len(), 39);
    }

    #[test]
    fn every_kafka_config_is_accepted_and_compaction_settings_take_effect() {
        let d = LogDefaults::default();
        let c = TopicConfig::from_pairs(
            &d,
            &pairs(&[
                ("cleanup.policy", "compact, delete"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("delete.retention.ms", "100"),
                ("min.compaction.lag.ms", "5"),
                ("segment.ms", "1000"),
                ("message.timestamp.type", "LogAppendTime"),
                ("min.insync.replicas", "2"),
                ("preallocate", "TRUE"),
                ("leader.replication.throttled.replicas", "0:1, 1:1"),
                ("compression.type", "producer"),
            ]),
        )
        .unwrap();
        assert_eq!(c.cleanup_policy, CleanupPolicy { delete: true, compact: true });
        assert_eq!(c.overrides["cleanup.policy"], "compact,delete");
        assert_eq!(
            (c.min_cleanable_dirty_ratio, c.delete_retention_ms, c.min_compaction_lag_ms),
            (0.1, 100, 5)
        );
        assert_eq!((c.segment_ms, c.timestamp_type), (1000, TimestampType::LogAppendTime));
        assert_eq!(c.overrides["preallocate"], "true");
        assert_eq!(c.overrides["leader.replication.throttled.replicas"], "0:1,1:1");
    }

    #[test]
    fn alterations_set_delete_append_and_subtract() {
        let d = LogDefaults::default();
        let c = TopicConfig::from_pairs(
            &d,
            &pairs(&[("retention.ms", "1000"), ("guise.entry.format", "pulsar")]),
        )
        .unwrap();
        let ops =
            |o: &[(&str, AlterOp)]| o.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Vec<_>>();
        let a = c
            .altered(
                &d,
                &ops(&[
                    ("retention.ms", AlterOp::Delete),
                    ("cleanup.policy", AlterOp::Append("compact".into())),
                    ("segment.bytes", AlterOp::Set("2097152".into())),
                ]),
            )
            .unwrap();
        assert_eq!(a.retention_ms, d.retention_ms);
        assert_eq!(a.cleanup_policy, CleanupPolicy { delete: true, compact: true });
        assert_eq!(a.segment_bytes, 2_097_152);
        assert_eq!(a.entry_format, EntryFormat::Pulsar);
        let b = a.altered(&d, &ops(&[("cleanup.policy", AlterOp::Subtract("delete".into()))])).unwrap();
        assert_eq!(b.cleanup_policy, CleanupPolicy { delete: false, compact: true });
        for bad in [
            ops(&[("retention.ms", AlterOp::Append("5".into()))]),
            ops(&[("guise.entry.format", AlterOp::Set("kafka".into()))]),
            ops(&[("cleanup.policy", AlterOp::Subtract("delete,compact".into()))]),
            ops(&[("no.such.config", AlterOp::Delete)]),
        ] {
            assert!(matches!(b.altered(&d, &bad), Err(StorageError::InvalidConfig(_))), "{bad:?}");
        }
        // Legacy AlterConfigs replaces every override but keeps the entry format.
        let r = b.replaced(&d, &pairs(&[("retention.ms", "5")])).unwrap();
        assert_eq!(r.overrides.len(), 2);
        assert_eq!((r.retention_ms, r.entry_format), (5, EntryFormat::Pulsar));
        assert!(b.replaced(&d, &pairs(&[("guise.entry.format", "kafka")])).is_err());
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
            ("no.such.config", "1"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("remote.storage.enable", "true"),
            ("cleanup.policy", "shred"),
            ("compression.type", "brotli"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("segment.bytes", "abc"),
            ("segment.bytes", "100"),
            ("segment.bytes", "4294967296"),
            ("max.message.bytes", "-1"),
            ("guise.entry.format", "avro"),
        ] {
            let err = TopicConfig::from_pairs(&d, &pairs(&[bad])).unwrap_err();
            assert!(matches!(err, StorageError::InvalidConfig(_)), "{bad:?}: {err}");
        }
        let conflict = pairs(&[("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")]);
        assert!(matches!(TopicConfig::from_pairs(&d, &conflict), Err(StorageError::InvalidConfig(_))));
        let dup = pairs(&[("max.message.bytes", "1"), ("max.message.bytes", "2")]);
        assert!(matches!(TopicConfig::from_pairs(&d, &dup), Err(StorageError::InvalidConfig(_))));
    }
}
