//! The host's internal topics: one registry that the services owning them register into (the
//! group coordinator, the Pulsar cursor store, later the transaction log) and that every front
//! end asks before letting a client at a topic. Kafka clients may read an internal topic (as
//! Kafka lets them read `__consumer_offsets`) but not create, delete, grow or produce to it; the
//! Pulsar endpoint refuses them altogether (`NotAllowedError`).

use crate::record::TopicName;

/// One internal topic: a topic name, in every namespace or in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalTopic {
    pub topic: &'static str,
    /// None: the name is internal in every namespace (each tenant and namespace has its own).
    pub namespace: Option<String>,
    /// Who owns it, for log lines and error messages.
    pub owner: &'static str,
}

/// The registry. Filled while the host is wired, then shared read-only.
#[derive(Clone, Debug, Default)]
pub struct InternalTopics {
    topics: Vec<InternalTopic>,
}

impl InternalTopics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `topic` (in `namespace`, or in all when None) as internal to `owner`.
    pub fn register(&mut self, topic: &'static str, namespace: Option<&str>, owner: &'static str) {
        let t = InternalTopic { topic, namespace: namespace.map(str::to_string), owner };
        if !self.topics.contains(&t) {
            self.topics.push(t);
        }
    }

    /// The registration `topic` of `namespace` falls under, if it is internal.
    pub fn lookup(&self, namespace: &str, topic: &str) -> Option<&InternalTopic> {
        self.topics
            .iter()
            .find(|t| t.topic == topic && t.namespace.as_deref().is_none_or(|ns| ns == namespace))
    }

    pub fn is_internal(&self, name: &TopicName) -> bool {
        self.lookup(&name.namespace, &name.topic).is_some()
    }

    /// Every registration, in the order they were made.
    pub fn all(&self) -> &[InternalTopic] {
        &self.topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_and_global() {
        let mut r = InternalTopics::new();
        r.register("__consumer_offsets", Some("default"), "groups");
        r.register("__pulsar_cursors", None, "pulsar cursors");
        r.register("__pulsar_cursors", None, "pulsar cursors");
        assert_eq!(r.all().len(), 2);
        assert!(r.is_internal(&TopicName::new("public", "default", "__consumer_offsets")));
        assert!(!r.is_internal(&TopicName::new("public", "other", "__consumer_offsets")));
        assert!(r.is_internal(&TopicName::new("acme", "other", "__pulsar_cursors")));
        assert!(!r.is_internal(&TopicName::new("public", "default", "__mine")));
        assert_eq!(r.lookup("x", "__pulsar_cursors").unwrap().owner, "pulsar cursors");
    }
}
