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
    #[error("invalid record: {0}")]
    InvalidRecord(String),
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

impl StorageError {
    /// The Kafka error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            StorageError::OffsetOutOfRange { .. } => 1,
            StorageError::CorruptMessage(_) => 2,
            StorageError::UnknownTopicOrPartition => 3,
            StorageError::MessageTooLarge { .. } => 10,
            StorageError::InvalidTopic(_) => 17,
            StorageError::TopicAlreadyExists(_) => 36,
            StorageError::InvalidPartitions(_) => 37,
            StorageError::InvalidConfig(_) => 40,
            StorageError::OutOfOrderSequence(_) => 45,
            StorageError::InvalidProducerEpoch(_) => 47,
            StorageError::TransactionsUnsupported(_) => 48,
            StorageError::Io(_) => 56,
            StorageError::UnknownProducerId(_) => 59,
            StorageError::InvalidRecord(_) => 87,
            StorageError::Busy(_) => 7, // REQUEST_TIMED_OUT: retried by clients
            StorageError::NotLeader(_) => 6,
            StorageError::Unavailable(_) => 56, // KAFKA_STORAGE_ERROR: retried by clients
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
        assert_eq!(StorageError::UnknownProducerId(String::new()).kafka_code(), 59);
        assert_eq!(StorageError::InvalidRecord(String::new()).kafka_code(), 87);
        assert_eq!(StorageError::NotLeader(String::new()).kafka_code(), 6);
        assert_eq!(StorageError::Unavailable(String::new()).kafka_code(), 56);
    }
}
