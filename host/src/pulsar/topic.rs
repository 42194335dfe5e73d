//! Pulsar topic names and Kafka topics: `persistent://TENANT/NAMESPACE/TOPIC` is the Kafka topic
//! TOPIC of that tenant and namespace, a partitioned topic with the Kafka topic's partition count,
//! and `persistent://TENANT/NAMESPACE/TOPIC-partition-N` is its partition N (as in KoP).

use crate::record::TopicName;

const PERSISTENT: &str = "persistent://";
const PARTITION: &str = "-partition-";

/// A parsed Pulsar topic name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulsarTopic {
    /// The name as given, tenant/namespace/topic, without a partition suffix.
    pub base: TopicName,
    /// The partition, when the name ends in `-partition-N`.
    pub partition: Option<i32>,
}

impl PulsarTopic {
    /// The whole name without the partition suffix, as a Kafka topic of its tenant and namespace.
    pub fn whole(&self) -> TopicName {
        match self.partition {
            None => self.base.clone(),
            Some(p) => TopicName { topic: format!("{}{PARTITION}{p}", self.base.topic), ..self.base.clone() },
        }
    }
}

/// Parse a topic name as clients send it: `persistent://t/ns/x`, `t/ns/x`, or a short `x` (in
/// `tenant`/`namespace`). Non-persistent topics are refused: there is only one kind of storage.
pub fn parse(name: &str, tenant: &str, namespace: &str) -> Result<PulsarTopic, String> {
    let rest = if let Some(rest) = name.strip_prefix(PERSISTENT) {
        rest
    } else if name.contains("://") {
        return Err(format!("{name}: only persistent:// topics are served"));
    } else {
        name
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (t, ns, topic) = match parts.as_slice() {
        [topic] => (tenant, namespace, *topic),
        [t, ns, topic] => (*t, *ns, *topic),
        _ => return Err(format!("{name}: expected persistent://TENANT/NAMESPACE/TOPIC")),
    };
    if t.is_empty() || ns.is_empty() || topic.is_empty() {
        return Err(format!("{name}: empty tenant, namespace or topic"));
    }
    let (topic, partition) = match topic.rsplit_once(PARTITION) {
        Some((base, n)) if !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            match n.parse::<i32>() {
                Ok(p) => (base, Some(p)),
                Err(_) => return Err(format!("{name}: partition {n} is out of range")),
            }
        }
        _ => (topic, None),
    };
    Ok(PulsarTopic { base: TopicName::new(t, ns, topic), partition })
}

/// The Pulsar name of a Kafka topic's partition (None: the whole partitioned topic).
pub fn pulsar_name(name: &TopicName, partition: Option<i32>) -> String {
    match partition {
        None => format!("{PERSISTENT}{}/{}/{}", name.tenant, name.namespace, name.topic),
        Some(p) => format!("{PERSISTENT}{}/{}/{}{PARTITION}{p}", name.tenant, name.namespace, name.topic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_short_and_partitioned_names() {
        let t = parse("persistent://acme/ns/orders-partition-3", "public", "default").unwrap();
        assert_eq!(t.base, TopicName::new("acme", "ns", "orders"));
        assert_eq!(t.partition, Some(3));
        assert_eq!(t.whole().topic, "orders-partition-3");
        assert_eq!(pulsar_name(&t.base, t.partition), "persistent://acme/ns/orders-partition-3");

        let t = parse("orders", "public", "default").unwrap();
        assert_eq!((t.base, t.partition), (TopicName::new("public", "default", "orders"), None));
        let t = parse("a/b/my-partition-x", "public", "default").unwrap();
        assert_eq!(t.partition, None, "a suffix that is not a number is part of the name");
        assert_eq!(t.base.topic, "my-partition-x");
    }

    #[test]
    fn refusals() {
        for bad in [
            "non-persistent://a/b/c",
            "a/b",
            "persistent://a//c",
            "persistent://a/b/c/d",
            "x-partition-99999999999",
            "",
        ] {
            assert!(parse(bad, "public", "default").is_err(), "{bad}");
        }
    }
}
