//! Plain Rust types shared by guests and their native test stubs.

/// A Kafka error code (the protocol's int16).
pub type ErrorCode = i16;

/// Kafka error codes a translator commonly returns.
pub mod error {
    use super::ErrorCode;
    pub const NONE: ErrorCode = 0;
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = -1;
    pub const OFFSET_OUT_OF_RANGE: ErrorCode = 1;
    pub const CORRUPT_MESSAGE: ErrorCode = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = 3;
    pub const INVALID_FETCH_SIZE: ErrorCode = 4;
    pub const LEADER_NOT_AVAILABLE: ErrorCode = 5;
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = 6;
    pub const REQUEST_TIMED_OUT: ErrorCode = 7;
    pub const MESSAGE_TOO_LARGE: ErrorCode = 10;
    pub const INVALID_TOPIC_EXCEPTION: ErrorCode = 17;
    pub const RECORD_LIST_TOO_LARGE: ErrorCode = 18;
    pub const INVALID_REQUIRED_ACKS: ErrorCode = 21;
    pub const UNSUPPORTED_VERSION: ErrorCode = 35;
    pub const TOPIC_ALREADY_EXISTS: ErrorCode = 36;
    pub const INVALID_PARTITIONS: ErrorCode = 37;
    pub const INVALID_REPLICATION_FACTOR: ErrorCode = 38;
    pub const INVALID_REQUEST: ErrorCode = 42;
    pub const INVALID_CONFIG: ErrorCode = 40;
    pub const POLICY_VIOLATION: ErrorCode = 44;
    pub const KAFKA_STORAGE_ERROR: ErrorCode = 56;
    pub const UNKNOWN_TOPIC_ID: ErrorCode = 100;
    pub const INCONSISTENT_TOPIC_ID: ErrorCode = 103;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// A stable topic id (a UUID as a 128-bit number).
    pub id: u128,
    pub partitions: i32,
    pub internal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub is_default: bool,
    pub sensitive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// Stored batches read from a partition, as a host buffer the guest splices into its response.
#[derive(Debug)]
pub struct Fetched<B> {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Option<B>,
    pub records_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    pub offset: i64,
    pub timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub cluster_id: String,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub max_frame_bytes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A response segment: guest bytes, or a host buffer spliced in by the host's vectored write.
#[derive(Debug)]
pub enum Segment<B> {
    Bytes(Vec<u8>),
    Buffer(B),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WakeSource {
    /// New data appended to this partition.
    Partition(TopicPartition),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    pub wake_on: Vec<WakeSource>,
    /// Milliseconds after the request was received.
    pub deadline_ms: u32,
}

#[derive(Debug)]
pub enum Outcome<B> {
    /// Send this response; `None` sends nothing (acks=0 produce).
    Respond(Option<Vec<Segment<B>>>),
    /// Park the request until woken or the deadline, then re-run it.
    Wait(Wait),
    /// Close the connection, with the reason for the host's log.
    Close(String),
}
