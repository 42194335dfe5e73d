//! A native, in-memory stand-in for the host, so handler logic unit-tests with `cargo test`.
//!
//! It keeps topics and record batches in memory and follows the host's contract where a handler
//! can observe it (offsets assigned per batch, whole batches on read, KIP-74's min-one rule,
//! Kafka error codes), but it does not verify CRCs: that is the real host's job.

use crate::{
    AppendInfo, Broker, ConfigEntry, ErrorCode, Fetched, HostBuffer, Level, OffsetAndTimestamp, Services,
    Settings, TopicInfo, TopicPartition, error,
};
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Host bytes in the stub: a cheap slice of a `Bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubBuffer(pub Bytes);

impl HostBuffer for StubBuffer {
    fn len(&self) -> u32 {
        self.0.len() as u32
    }
    fn read(&self, offset: u32, len: u32) -> Vec<u8> {
        let start = (offset as usize).min(self.0.len());
        let end = start.saturating_add(len as usize).min(self.0.len());
        self.0[start..end].to_vec()
    }
    fn slice(&self, offset: u32, len: u32) -> Result<Self, ErrorCode> {
        let (start, end) = (offset as usize, offset as usize + len as usize);
        if end > self.0.len() {
            return Err(error::CORRUPT_MESSAGE);
        }
        Ok(StubBuffer(self.0.slice(start..end)))
    }
}

#[derive(Default, Debug)]
struct StubPartition {
    /// (base offset, last offset, max timestamp, batch bytes with the base offset patched)
    batches: Vec<(i64, i64, i64, Bytes)>,
    next: i64,
}

#[derive(Debug)]
struct StubTopic {
    id: u128,
    partitions: Vec<StubPartition>,
    configs: Vec<(String, String)>,
}

/// An in-memory host.
#[derive(Debug)]
pub struct StubServices {
    topics: RefCell<BTreeMap<String, StubTopic>>,
    next_id: Cell<u128>,
    pub settings: Settings,
    pub broker: Broker,
    /// Lines the guest logged.
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl Default for StubServices {
    fn default() -> Self {
        StubServices {
            topics: RefCell::default(),
            next_id: Cell::new(1),
            settings: Settings {
                cluster_id: "stub-cluster".into(),
                auto_create_topics: true,
                default_partitions: 1,
                max_frame_bytes: 100 * 1024 * 1024,
            },
            broker: Broker { node_id: 0, host: "127.0.0.1".into(), port: 9092, rack: None },
            logs: RefCell::default(),
        }
    }
}

/// The host's limit on partitions per topic (its storage refuses more, as INVALID_PARTITIONS).
const MAX_PARTITIONS: i32 = 10_000;

const KNOWN_CONFIGS: &[(&str, &str)] =
    &[("cleanup.policy", "delete"), ("max.message.bytes", "1048588"), ("segment.bytes", "1073741824")];

impl StubServices {
    pub fn new() -> Self {
        Self::default()
    }

    fn info(name: &str, t: &StubTopic) -> TopicInfo {
        TopicInfo { name: name.to_string(), id: t.id, partitions: t.partitions.len() as i32, internal: false }
    }

    fn with_partition<T>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut StubPartition) -> Result<T, ErrorCode>,
    ) -> Result<T, ErrorCode> {
        let mut topics = self.topics.borrow_mut();
        let t = topics.get_mut(&tp.topic).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        let p = usize::try_from(tp.partition)
            .ok()
            .and_then(|p| t.partitions.get_mut(p))
            .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        f(p)
    }
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl Services for StubServices {
    type Buffer = StubBuffer;

    fn list_topics(&self) -> Vec<TopicInfo> {
        self.topics.borrow().iter().map(|(n, t)| Self::info(n, t)).collect()
    }
    fn describe_topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.borrow().get(name).map(|t| Self::info(name, t))
    }
    fn topic_by_id(&self, id: u128) -> Option<TopicInfo> {
        self.topics.borrow().iter().find(|(_, t)| t.id == id).map(|(n, t)| Self::info(n, t))
    }
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicInfo, ErrorCode> {
        if !valid_topic_name(name) {
            return Err(error::INVALID_TOPIC_EXCEPTION);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(error::INVALID_PARTITIONS);
        }
        if configs.iter().any(|(k, _)| !KNOWN_CONFIGS.iter().any(|(n, _)| n == k)) {
            return Err(error::INVALID_CONFIG);
        }
        if self.topics.borrow().contains_key(name) {
            return Err(error::TOPIC_ALREADY_EXISTS);
        }
        let id = self.next_id.get();
        let topic = StubTopic {
            id,
            partitions: (0..partitions).map(|_| StubPartition::default()).collect(),
            configs: configs.to_vec(),
        };
        let info = Self::info(name, &topic);
        if !validate_only {
            self.next_id.set(id + 1);
            self.topics.borrow_mut().insert(name.to_string(), topic);
        }
        Ok(info)
    }
    fn delete_topic(&self, name: &str) -> Result<(), ErrorCode> {
        self.topics.borrow_mut().remove(name).map(|_| ()).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
    }
    fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ErrorCode> {
        let mut topics = self.topics.borrow_mut();
        let t = topics.get_mut(name).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        if total <= t.partitions.len() as i32 || total > MAX_PARTITIONS {
            return Err(error::INVALID_PARTITIONS);
        }
        if !validate_only {
            t.partitions.resize_with(total as usize, StubPartition::default);
        }
        Ok(())
    }
    fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ErrorCode> {
        let topics = self.topics.borrow();
        let t = topics.get(name).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        Ok(KNOWN_CONFIGS
            .iter()
            .map(|(k, default)| {
                let set = t.configs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                ConfigEntry {
                    name: k.to_string(),
                    is_default: set.is_none(),
                    value: Some(set.unwrap_or_else(|| default.to_string())),
                    read_only: *k == "cleanup.policy",
                    sensitive: false,
                }
            })
            .collect())
    }
    fn broker_configs(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            name: "auto.create.topics.enable".into(),
            value: Some(self.settings.auto_create_topics.to_string()),
            read_only: true,
            is_default: true,
            sensitive: false,
        }]
    }

    fn append(&self, tp: &TopicPartition, records: &StubBuffer) -> Result<AppendInfo, ErrorCode> {
        let data = &records.0;
        // Split into batches (base offset 8, length 4, ..., magic at 16).
        let mut batches = Vec::new();
        let mut at = 0;
        while at < data.len() {
            if data.len() - at < 61 || data[at + 16] != 2 {
                return Err(error::CORRUPT_MESSAGE);
            }
            let len = be_i32(data, at + 8);
            let end = at + 12 + usize::try_from(len).map_err(|_| error::CORRUPT_MESSAGE)?;
            if end - at < 61 || end > data.len() {
                return Err(error::CORRUPT_MESSAGE);
            }
            batches.push(at..end);
            at = end;
        }
        if batches.is_empty() {
            return Err(error::CORRUPT_MESSAGE);
        }
        self.with_partition(tp, |p| {
            let base = p.next;
            for range in batches {
                let b = &data[range];
                let last_delta = be_i32(b, 23) as i64;
                let max_ts = be_i64(b, 35);
                let mut patched = BytesMut::from(b);
                patched[..8].copy_from_slice(&p.next.to_be_bytes());
                p.batches.push((p.next, p.next + last_delta, max_ts, patched.freeze()));
                p.next += last_delta + 1;
            }
            Ok(AppendInfo { base_offset: base, log_start_offset: 0 })
        })
    }

    fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: u32,
        min_one: bool,
    ) -> Result<Fetched<StubBuffer>, ErrorCode> {
        self.with_partition(tp, |p| {
            if offset < 0 || offset > p.next {
                return Err(error::OFFSET_OUT_OF_RANGE);
            }
            let mut out = BytesMut::new();
            for (_, _, _, b) in p.batches.iter().filter(|(_, last, _, _)| *last >= offset) {
                let fits = out.len() + b.len() <= max_bytes as usize;
                if fits || (min_one && out.is_empty()) {
                    out.extend_from_slice(b);
                } else {
                    break;
                }
            }
            let len = out.len() as u32;
            Ok(Fetched {
                high_watermark: p.next,
                last_stable_offset: p.next,
                log_start_offset: 0,
                records: (len > 0).then(|| StubBuffer(out.freeze())),
                records_len: len,
            })
        })
    }

    fn list_offset(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<OffsetAndTimestamp>, ErrorCode> {
        self.with_partition(tp, |p| {
            Ok(match timestamp {
                -1 => Some(OffsetAndTimestamp { offset: p.next, timestamp: -1 }),
                -2 => Some(OffsetAndTimestamp { offset: 0, timestamp: -1 }),
                -3 => p
                    .batches
                    .iter()
                    .max_by_key(|b| b.2)
                    .map(|b| OffsetAndTimestamp { offset: b.1, timestamp: b.2 }),
                ts => p
                    .batches
                    .iter()
                    .find(|b| b.2 >= ts)
                    .map(|b| OffsetAndTimestamp { offset: b.0, timestamp: b.2 }),
            })
        })
    }

    fn self_broker(&self) -> Broker {
        self.broker.clone()
    }
    fn brokers(&self) -> Vec<Broker> {
        vec![self.broker.clone()]
    }
    fn settings(&self) -> Settings {
        self.settings.clone()
    }
    fn tenant(&self) -> String {
        "public".into()
    }
    fn connection_id(&self) -> u64 {
        1
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

/// Run a handler natively on one request frame (without its size prefix).
pub fn run<H: crate::Handler>(svc: &StubServices, frame: Bytes, final_: bool) -> crate::Outcome<StubBuffer> {
    let buf = StubBuffer(frame.clone());
    let req = crate::Request { bytes: frame, frame: &buf };
    H::handle(svc, &req, final_)
}

/// Concatenate a response's segments, as the host's vectored write would put them on the wire.
pub fn flatten(segments: &[crate::Segment<StubBuffer>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        match s {
            crate::Segment::Bytes(b) => out.extend_from_slice(b),
            crate::Segment::Buffer(b) => out.extend_from_slice(&b.0),
        }
    }
    out
}
