//! What the consumer-group APIs share: string conversions, and the wait on a group for a join
//! or sync that the host's coordinator cannot answer yet.

use crate::context::Out;
use guise_guest_sdk::{Outcome, Services, Wait, WakeSource};
use kafka_protocol::protocol::StrBytes;

/// A join waits for the rebalance at most its rebalance timeout (the host's coordinator completes
/// the rebalance itself when that passes, and wakes the request) plus this margin.
pub const JOIN_WAIT_MARGIN_MS: u32 = 5_000;

/// How long a sync waits for the leader's assignments before it is answered
/// REBALANCE_IN_PROGRESS. The bound Kafka applies is the member's session timeout, which the
/// translator does not know (the host's coordinator does: when the leader fails to sync in time
/// it starts a new rebalance, which wakes and answers the waiting syncs). So this is only a
/// backstop for a group that never changes again: a minute, longer than the default session
/// timeout (45 s), after which the member simply rejoins.
pub const SYNC_WAIT_MS: u32 = 60_000;

/// The deadline of a join: its rebalance timeout plus [`JOIN_WAIT_MARGIN_MS`].
pub fn join_deadline_ms(rebalance_timeout_ms: i32) -> u32 {
    u32::try_from(rebalance_timeout_ms.max(0)).unwrap_or(0).saturating_add(JOIN_WAIT_MARGIN_MS)
}

/// Park the request until `group_id` changes, or `deadline_ms` passes.
pub fn wait_on_group<S: Services>(group_id: &str, deadline_ms: u32) -> Out<S> {
    Outcome::Wait(Wait { wake_on: vec![WakeSource::Group(group_id.to_string())], deadline_ms })
}

pub fn string(s: &StrBytes) -> String {
    s.as_str().to_string()
}

pub fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(string)
}

pub fn opt_str_bytes(s: Option<String>) -> Option<StrBytes> {
    s.map(StrBytes::from_string)
}

/// `items` grouped by their topic, topics in order of first appearance.
pub fn by_topic<T>(items: impl IntoIterator<Item = (String, T)>) -> Vec<(String, Vec<T>)> {
    let mut out: Vec<(String, Vec<T>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (topic, item) in items {
        match index.get(&topic) {
            Some(&i) => out[i].1.push(item),
            None => {
                index.insert(topic.clone(), out.len());
                out.push((topic, vec![item]));
            }
        }
    }
    out
}
