//! The storage error type and its Kafka error codes.

/// Why a storage operation failed. Every variant maps to one Kafka error code.
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OffsetOutOfRange { requested: i64, start: i64, end: i64 },
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    #[error("unknown producer id: {0}")]
    UnknownProducerId(String),
    #[error("transactions are not supported: {0}")]
    TransactionsUnsupported(String),
    /// A batch that does not fit the producer's transaction state on the partition (a
    /// non-transactional batch while its transaction is open): INVALID_TXN_STATE.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A CreateTime timestamp outside message.timestamp.before/after.max.ms.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// The request is valid but the topic's configs forbid it (DeleteRecords on a topic
    /// without the `delete` cleanup policy).
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// The host cannot serve the request now (e.g. no Wasm instance slot is free); clients retry.
    #[error("busy: {0}")]
    Busy(String),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// This host no longer writes the partition (another host fenced it, or its Pulsar producer
    /// failed): NOT_LEADER_OR_FOLLOWER, so clients refresh metadata and retry.
    #[error("not the leader of this partition: {0}")]
    NotLeader(String),
    /// The storage backend (Pulsar) failed or did not answer in time: retriable.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
}

use guise_guest_sdk::error;

impl From<crate::record::BatchError> for StorageError {
    fn from(e: crate::record::BatchError) -> Self {
        match e {
            crate::record::BatchError::Corrupt(m) => StorageError::CorruptMessage(m),
            crate::record::BatchError::TooLarge { size, max } => StorageError::MessageTooLarge { size, max },
        }
    }
}

impl From<crate::tenant::NameError> for StorageError {
    fn from(e: crate::tenant::NameError) -> Self {
        use crate::tenant::NameError;
        match e {
            NameError::InvalidTopic(m) => StorageError::InvalidTopic(m),
            NameError::InvalidPartitions(m) => StorageError::InvalidPartitions(m),
            NameError::TopicAlreadyExists(t) => StorageError::TopicAlreadyExists(t),
        }
    }
}

impl StorageError {
    /// The Kafka error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            StorageError::OffsetOutOfRange { .. } => error::OFFSET_OUT_OF_RANGE,
            StorageError::CorruptMessage(_) => error::CORRUPT_MESSAGE,
            StorageError::UnknownTopicOrPartition => error::UNKNOWN_TOPIC_OR_PARTITION,
            StorageError::MessageTooLarge { .. } => error::MESSAGE_TOO_LARGE,
            StorageError::InvalidTopic(_) => error::INVALID_TOPIC_EXCEPTION,
            StorageError::TopicAlreadyExists(_) => error::TOPIC_ALREADY_EXISTS,
            StorageError::InvalidPartitions(_) => error::INVALID_PARTITIONS,
            StorageError::InvalidConfig(_) => error::INVALID_CONFIG,
            StorageError::OutOfOrderSequence(_) => error::OUT_OF_ORDER_SEQUENCE_NUMBER,
            StorageError::InvalidProducerEpoch(_) => error::INVALID_PRODUCER_EPOCH,
            StorageError::TransactionsUnsupported(_) | StorageError::InvalidTxnState(_) => {
                error::INVALID_TXN_STATE
            }
            StorageError::Io(_) => error::KAFKA_STORAGE_ERROR,
            StorageError::UnknownProducerId(_) => error::UNKNOWN_PRODUCER_ID,
            StorageError::InvalidRecord(_) => error::INVALID_RECORD,
            StorageError::InvalidTimestamp(_) => error::INVALID_TIMESTAMP,
            StorageError::PolicyViolation(_) => error::POLICY_VIOLATION,
            // REQUEST_TIMED_OUT and KAFKA_STORAGE_ERROR are retried by clients.
            StorageError::Busy(_) => error::REQUEST_TIMED_OUT,
            StorageError::NotLeader(_) => error::NOT_LEADER_OR_FOLLOWER,
            StorageError::Unavailable(_) => error::KAFKA_STORAGE_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StorageError;

    #[test]
    fn kafka_codes() {
        assert_eq!(StorageError::UnknownTopicOrPartition.kafka_code(), 3);
        assert_eq!(StorageError::TopicAlreadyExists("t".into()).kafka_code(), 36);
        assert_eq!(StorageError::InvalidPartitions(String::new()).kafka_code(), 37);
        assert_eq!(StorageError::InvalidTopic(String::new()).kafka_code(), 17);
        assert_eq!(StorageError::InvalidConfig(String::new()).kafka_code(), 40);
        assert_eq!(StorageError::CorruptMessage(String::new()).kafka_code(), 2);
        assert_eq!(StorageError::MessageTooLarge { size: 2, max: 1 }.kafka_code(), 10);
        assert_eq!(StorageError::OffsetOutOfRange { requested: 5, start: 0, end: 1 }.kafka_code(), 1);
        assert_eq!(StorageError::Io(std::io::Error::other("x")).kafka_code(), 56);
        assert_eq!(StorageError::OutOfOrderSequence(String::new()).kafka_code(), 45);
        assert_eq!(StorageError::InvalidProducerEpoch(String::new()).kafka_code(), 47);
        assert_eq!(StorageError::TransactionsUnsupported(String::new()).kafka_code(), 48);
        assert_eq!(StorageError::InvalidTxnState(String::new()).kafka_code(), 48);
        assert_eq!(StorageError::UnknownProducerId(String::new()).kafka_code(), 59);
        assert_eq!(StorageError::InvalidRecord(String::new()).kafka_code(), 87);
        assert_eq!(StorageError::NotLeader(String::new()).kafka_code(), 6);
        assert_eq!(StorageError::Unavailable(String::new()).kafka_code(), 56);
    }
}
