//! The neutral record room: what storage, the Pulsar codec, tenant transforms and the front ends
//! all speak, without importing each other. [`batch`] reads and checks Kafka record-batch
//! headers (magic 2) without decompressing; [`records`] decodes and encodes whole batches (the
//! transforms' and the Pulsar mapping's view of records); [`TopicName`] names a topic of a
//! tenant in a namespace. Nothing here does I/O or knows a backend.

pub mod batch;
pub mod records;

pub use batch::BatchError;

/// A Kafka topic as seen by one tenant in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    pub tenant: String,
    pub namespace: String,
    pub topic: String,
}

impl TopicName {
    pub fn new(tenant: impl Into<String>, namespace: impl Into<String>, topic: impl Into<String>) -> Self {
        TopicName { tenant: tenant.into(), namespace: namespace.into(), topic: topic.into() }
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.topic)
    }
}
