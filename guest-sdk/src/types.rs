//! Plain Rust types shared by guests and their native test stubs.

/// A Kafka error code (the protocol's int16).
pub type ErrorCode = i16;

/// Kafka's error codes (`org.apache.kafka.common.protocol.Errors`), the ones Guise answers with:
/// the one table the host, this SDK and the translator all use.
pub mod error {
    use super::ErrorCode;
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = -1;
    pub const NONE: ErrorCode = 0;
    pub const OFFSET_OUT_OF_RANGE: ErrorCode = 1;
    pub const CORRUPT_MESSAGE: ErrorCode = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = 3;
    pub const INVALID_FETCH_SIZE: ErrorCode = 4;
    pub const LEADER_NOT_AVAILABLE: ErrorCode = 5;
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = 6;
    pub const REQUEST_TIMED_OUT: ErrorCode = 7;
    pub const MESSAGE_TOO_LARGE: ErrorCode = 10;
    pub const OFFSET_METADATA_TOO_LARGE: ErrorCode = 12;
    pub const COORDINATOR_LOAD_IN_PROGRESS: ErrorCode = 14;
    pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = 15;
    pub const NOT_COORDINATOR: ErrorCode = 16;
    pub const INVALID_TOPIC_EXCEPTION: ErrorCode = 17;
    pub const RECORD_LIST_TOO_LARGE: ErrorCode = 18;
    pub const NOT_ENOUGH_REPLICAS: ErrorCode = 19;
    pub const INVALID_REQUIRED_ACKS: ErrorCode = 21;
    pub const ILLEGAL_GENERATION: ErrorCode = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: ErrorCode = 23;
    pub const INVALID_GROUP_ID: ErrorCode = 24;
    pub const UNKNOWN_MEMBER_ID: ErrorCode = 25;
    pub const INVALID_SESSION_TIMEOUT: ErrorCode = 26;
    pub const REBALANCE_IN_PROGRESS: ErrorCode = 27;
    pub const INVALID_COMMIT_OFFSET_SIZE: ErrorCode = 28;
    pub const INVALID_TIMESTAMP: ErrorCode = 32;
    pub const TOPIC_AUTHORIZATION_FAILED: ErrorCode = 29;
    pub const GROUP_AUTHORIZATION_FAILED: ErrorCode = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: ErrorCode = 31;
    pub const UNSUPPORTED_SASL_MECHANISM: ErrorCode = 33;
    pub const ILLEGAL_SASL_STATE: ErrorCode = 34;
    pub const UNSUPPORTED_VERSION: ErrorCode = 35;
    pub const TOPIC_ALREADY_EXISTS: ErrorCode = 36;
    pub const INVALID_PARTITIONS: ErrorCode = 37;
    pub const INVALID_REPLICATION_FACTOR: ErrorCode = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: ErrorCode = 39;
    pub const INVALID_CONFIG: ErrorCode = 40;
    pub const INVALID_REQUEST: ErrorCode = 42;
    pub const POLICY_VIOLATION: ErrorCode = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: ErrorCode = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: ErrorCode = 46;
    pub const INVALID_PRODUCER_EPOCH: ErrorCode = 47;
    pub const INVALID_TXN_STATE: ErrorCode = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: ErrorCode = 49;
    pub const INVALID_TRANSACTION_TIMEOUT: ErrorCode = 50;
    pub const CONCURRENT_TRANSACTIONS: ErrorCode = 51;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: ErrorCode = 53;
    pub const SECURITY_DISABLED: ErrorCode = 54;
    pub const OPERATION_NOT_ATTEMPTED: ErrorCode = 55;
    pub const KAFKA_STORAGE_ERROR: ErrorCode = 56;
    pub const SASL_AUTHENTICATION_FAILED: ErrorCode = 58;
    pub const UNKNOWN_PRODUCER_ID: ErrorCode = 59;
    pub const NON_EMPTY_GROUP: ErrorCode = 68;
    pub const GROUP_ID_NOT_FOUND: ErrorCode = 69;
    pub const FETCH_SESSION_ID_NOT_FOUND: ErrorCode = 70;
    pub const FENCED_LEADER_EPOCH: ErrorCode = 74;
    pub const UNKNOWN_LEADER_EPOCH: ErrorCode = 75;
    pub const UNSUPPORTED_COMPRESSION_TYPE: ErrorCode = 76;
    pub const MEMBER_ID_REQUIRED: ErrorCode = 79;
    pub const FENCED_INSTANCE_ID: ErrorCode = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: ErrorCode = 86;
    pub const INVALID_RECORD: ErrorCode = 87;
    pub const UNSTABLE_OFFSET_COMMIT: ErrorCode = 88;
    pub const PRODUCER_FENCED: ErrorCode = 90;
    pub const RESOURCE_NOT_FOUND: ErrorCode = 91;
    pub const DUPLICATE_RESOURCE: ErrorCode = 92;
    pub const UNACCEPTABLE_CREDENTIAL: ErrorCode = 93;
    pub const UNKNOWN_TOPIC_ID: ErrorCode = 100;
    pub const INCONSISTENT_TOPIC_ID: ErrorCode = 103;
    pub const TRANSACTIONAL_ID_NOT_FOUND: ErrorCode = 105;
    pub const INVALID_REGULAR_EXPRESSION: ErrorCode = 128;
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

/// How IncrementalAlterConfigs changes one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    /// Back to the default.
    Delete,
    /// Add items to a list config.
    Append(String),
    /// Remove items from a list config.
    Subtract(String),
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

/// An idempotent producer a partition remembers (DescribeProducers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerState {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence of its last stored batch.
    pub last_sequence: i32,
    /// The max timestamp of its last stored batch.
    pub last_timestamp: i64,
    /// The first offset of its open transaction on the partition, -1 when it has none.
    pub current_txn_start_offset: i64,
}

/// One partition as DescribeLogDirs and DescribeProducers report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionReport {
    /// Bytes of stored batches.
    pub size_bytes: u64,
    pub producers: Vec<ProducerState>,
}

/// Where the log keeps its data (DescribeLogDirs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDir {
    /// The embedded log's topics directory, or the Pulsar service URL.
    pub path: String,
    pub total_bytes: Option<u64>,
    pub usable_bytes: Option<u64>,
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
    /// The `transaction.version` feature level ApiVersions finalizes.
    pub transaction_version: u8,
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
    /// A change of this consumer group (a member joined, synced or left; a rebalance ended).
    Group(String),
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

// --- consumer groups (the WIT `groups` interface) ---

/// One protocol (assignor) a joining member supports, with its metadata as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED with its id (KIP-394).
    pub require_known_member: bool,
    pub reason: Option<String>,
}

/// A member of the generation, as the leader learns it from JoinGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// The member's id (also for MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<GroupMember>,
    /// JoinGroup v9: the leader of a static group that rejoined need not assign again.
    pub skip_assignment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    Done(JoinResult),
    /// The rebalance is not complete: wait on the group, then call again.
    Pending,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub member_id: String,
    pub assignment: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: every member's assignment. Empty from the others.
    pub assignments: Vec<Assignment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Done(SyncResult),
    /// The leader has not sent the assignments yet: wait on the group, then call again.
    Pending,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveResult {
    pub error: ErrorCode,
    /// One per [`Leaving`], in order.
    pub members: Vec<ErrorCode>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub error: ErrorCode,
    pub group_id: String,
    /// Kafka's state names: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: String,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: ErrorCode,
}

// --- producers ---

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

// --- transactions ---

/// An aborted transaction within a read_committed read (Fetch's aborted_transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One transactional id as DescribeTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub error: ErrorCode,
    /// Kafka's state names: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort.
    pub state: String,
    pub timeout_ms: i32,
    /// When the open transaction started (ms since the epoch), -1 when none is open.
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
}

/// One transactional id as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

// --- ACLs ---

/// Kafka's ACL codes (the protocol's int8 values), as DescribeAcls, CreateAcls and DeleteAcls
/// carry them and the `acls` import takes them.
pub mod acl {
    pub const ANY: i8 = 1;

    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    /// The one cluster resource's name.
    pub const CLUSTER_NAME: &str = "kafka-cluster";

    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;

    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;

    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;

    /// The bit set of `operations` a principal is authorized for, as Kafka's
    /// `*_authorized_operations` fields carry it (bit n = operation code n).
    pub fn operation_bits(operations: impl IntoIterator<Item = i8>) -> i32 {
        operations.into_iter().fold(0, |bits, op| bits | 1 << op)
    }
}

/// The same seven fields from one ACL binding or filter type to another (the WIT's and the
/// SDK's are field for field the same).
#[macro_export]
macro_rules! acl_fields {
    ($v:expr => $T:path) => {{
        let v = $v;
        $T {
            resource_type: v.resource_type,
            resource_name: v.resource_name,
            pattern_type: v.pattern_type,
            principal: v.principal,
            host: v.host,
            operation: v.operation,
            permission_type: v.permission_type,
        }
    }};
}

/// One ACL: who (principal, host) may or may not (permission) do what (operation) on which
/// resources (type, name, literal or prefixed pattern).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// What DescribeAcls and DeleteAcls match: `None` fields and ANY codes match anything; pattern
/// type MATCH matches the literal and prefixed bindings that would apply to the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

// --- SCRAM credentials ---

/// Kafka's SCRAM mechanism codes (`ScramMechanism.type()`), as DescribeUserScramCredentials and
/// AlterUserScramCredentials carry them and the `scram` import takes them, and the iteration
/// bounds Kafka accepts for a credential.
pub mod scram {
    pub const UNKNOWN: i8 = 0;
    pub const SCRAM_SHA_256: i8 = 1;
    pub const SCRAM_SHA_512: i8 = 2;

    /// The fewest iterations of a credential (`ScramMechanism.minIterations()`, both mechanisms).
    pub const MIN_ITERATIONS: i32 = 4096;
    /// The most iterations of a credential (Kafka's `maxIterations`).
    pub const MAX_ITERATIONS: i32 = 16384;

    /// The mechanism's name ("SCRAM-SHA-256"), or `None` for UNKNOWN and unknown codes.
    pub fn mechanism_name(code: i8) -> Option<&'static str> {
        match code {
            SCRAM_SHA_256 => Some("SCRAM-SHA-256"),
            SCRAM_SHA_512 => Some("SCRAM-SHA-512"),
            _ => None,
        }
    }
}

/// One stored credential of a user, as DescribeUserScramCredentials reports it (never its salt or
/// keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    /// A [`scram`] mechanism code.
    pub mechanism: i8,
    pub iterations: i32,
}

/// One user's answer to DescribeUserScramCredentials: its credentials (by mechanism), or why not
/// (RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE) with the host's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserScramCredentials {
    pub user: String,
    pub result: Result<Vec<ScramCredentialInfo>, (ErrorCode, String)>,
}

/// AlterUserScramCredentials: create or replace the user's credential of one mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramUpsertion {
    pub user: String,
    /// A [`scram`] mechanism code.
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    /// PBKDF2 of the password with `salt` and `iterations`, as the client computes it.
    pub salted_password: Vec<u8>,
}

/// AlterUserScramCredentials: remove the user's credential of one mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramDeletion {
    pub user: String,
    /// A [`scram`] mechanism code.
    pub mechanism: i8,
}
