//! Committed offsets of one group.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One committed offset (also its persisted form).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// When it was committed, in milliseconds since the epoch.
    pub commit_timestamp: i64,
}

/// The committed offsets of one group, by (topic, partition).
#[derive(Default, Debug, Clone)]
pub struct Offsets {
    map: BTreeMap<(String, i32), Committed>,
}

impl Offsets {
    pub fn from_map(map: BTreeMap<(String, i32), Committed>) -> Self {
        Offsets { map }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&Committed> {
        // BTreeMap<(String, i32)> cannot be queried by (&str, i32) without allocating.
        self.map.get(&(topic.to_string(), partition))
    }

    pub fn put(&mut self, topic: String, partition: i32, committed: Committed) {
        self.map.insert((topic, partition), committed);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<Committed> {
        self.map.remove(&(topic.to_string(), partition))
    }

    pub fn contains(&self, topic: &str, partition: i32) -> bool {
        self.get(topic, partition).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every committed partition, in (topic, partition) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &Committed)> {
        self.map.iter().map(|((t, p), c)| (t.as_str(), *p, c))
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove() {
        let mut o = Offsets::default();
        let c = |offset| Committed { offset, leader_epoch: -1, metadata: None, commit_timestamp: 0 };
        o.put("b".into(), 1, c(5));
        o.put("a".into(), 2, c(6));
        o.put("a".into(), 2, c(7));
        assert_eq!(o.get("a", 2).unwrap().offset, 7);
        assert_eq!(o.iter().map(|(t, p, _)| (t, p)).collect::<Vec<_>>(), vec![("a", 2), ("b", 1)]);
        assert_eq!(o.remove("a", 2).unwrap().offset, 7);
        assert!(!o.contains("a", 2));
        assert_eq!(o.len(), 1);
    }
}
