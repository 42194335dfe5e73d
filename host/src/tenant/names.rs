//! Naming rules: Kafka's for topics and partition counts, the tenant rule ([`super::TenantId`]),
//! and safe path components for the namespace (tenants and namespaces become directory names).

use super::TenantId;
use crate::record::TopicName;
use guise_guest_sdk::error;

/// Why a name or a partition count was refused; each maps to one Kafka error code.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// INVALID_TOPIC_EXCEPTION (17).
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS (37).
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// TOPIC_ALREADY_EXISTS (36).
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
}

impl NameError {
    pub fn kafka_code(&self) -> i16 {
        match self {
            NameError::InvalidTopic(_) => error::INVALID_TOPIC_EXCEPTION,
            NameError::InvalidPartitions(_) => error::INVALID_PARTITIONS,
            NameError::TopicAlreadyExists(_) => error::TOPIC_ALREADY_EXISTS,
        }
    }
}

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// The most partitions one topic may have. Each partition holds open files, so the bound keeps
/// one request from exhausting the host's file descriptors.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::InvalidTopic("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(NameError::InvalidTopic(format!("topic name cannot be '{name}'")));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(NameError::InvalidTopic(format!(
            "topic name is {} characters long, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(NameError::InvalidTopic(format!(
            "topic name '{}' contains '{}'; only ASCII alphanumerics, '.', '_' and '-' are allowed",
            name.escape_default(),
            c.escape_default()
        )));
    }
    Ok(())
}

/// A partition count for a new topic (or a new total): at least 1, at most [`MAX_PARTITIONS`].
pub fn validate_partitions(partitions: i32) -> Result<(), NameError> {
    if partitions < 1 {
        return Err(NameError::InvalidPartitions(format!(
            "number of partitions must be at least 1, not {partitions}"
        )));
    }
    if partitions > MAX_PARTITIONS {
        return Err(NameError::InvalidPartitions(format!(
            "number of partitions {partitions} exceeds the limit of {MAX_PARTITIONS}"
        )));
    }
    Ok(())
}

/// CreatePartitions' check: a topic of `current` partitions may grow to `total`.
pub fn validate_growth(current: i32, total: i32) -> Result<(), NameError> {
    if total <= current {
        return Err(NameError::InvalidPartitions(format!(
            "topic currently has {current} partitions, which is higher than or equal to the requested {total}"
        )));
    }
    validate_partitions(total)
}

/// A tenant or namespace: used as one directory name, so it must be a plain path component.
pub fn validate_path_component(what: &str, value: &str) -> Result<(), NameError> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value != "."
        && value != ".."
        && !value.chars().any(|c| c == '/' || c == '\\' || c == '\0');
    if ok {
        Ok(())
    } else {
        Err(NameError::InvalidTopic(format!(
            "{what} '{}' cannot be used as a directory name",
            value.escape_default()
        )))
    }
}

/// Every rule a full topic name must satisfy before it touches the filesystem: the tenant rule,
/// a namespace that is a plain path component, and Kafka's topic rules.
pub fn validate_full_name(name: &TopicName) -> Result<(), NameError> {
    TenantId::new(&name.tenant).map_err(|e| NameError::InvalidTopic(e.to_string()))?;
    validate_path_component("namespace", &name.namespace)?;
    validate_topic_name(&name.topic)
}

/// CreateTopics' check of `topic` against the topics of its tenant and namespace: it must be
/// new, and must not collide with one of them.
pub fn check_new_topic<'a>(
    topic: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), NameError> {
    for other in existing {
        if other == topic {
            return Err(NameError::TopicAlreadyExists(topic.to_string()));
        }
        if collides(other, topic) {
            return Err(NameError::InvalidTopic(format!(
                "topic '{topic}' collides with existing topic '{other}' ('.' and '_' are the same in metric names)"
            )));
        }
    }
    Ok(())
}

/// Kafka's collision rule: '.' and '_' are the same in metric names, so `a.b` and `a_b` cannot
/// both exist.
fn collides(a: &str, b: &str) -> bool {
    a != b && a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

fn norm(b: u8) -> u8 {
    if b == b'.' { b'_' } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü", "a\0"] {
            assert!(matches!(validate_topic_name(bad), Err(NameError::InvalidTopic(_))), "{bad:?}");
        }
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn partitions() {
        assert!(validate_partitions(1).is_ok());
        assert!(matches!(validate_partitions(0), Err(NameError::InvalidPartitions(_))));
        assert!(matches!(validate_partitions(-1), Err(NameError::InvalidPartitions(_))));
    }

    #[test]
    fn path_components_and_collisions() {
        assert!(validate_path_component("tenant", "public").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(validate_path_component("tenant", bad).is_err(), "{bad:?}");
        }
        assert!(collides("a.b", "a_b"));
        assert!(!collides("a.b", "a.b"));
        assert!(!collides("a.b", "a-b"));
    }
}
