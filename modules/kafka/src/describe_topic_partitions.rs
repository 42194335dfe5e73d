//! DescribeTopicPartitions v0 (KIP-966): the AdminClient's `describeTopics` and
//! `kafka-topics --describe` use it instead of Metadata when the broker serves it. Topics come
//! sorted by name (every topic of the tenant, internal ones included, when none are named; a
//! named topic that does not exist gets UNKNOWN_TOPIC_OR_PARTITION), paged by
//! `response_partition_limit` (at most 2000, Kafka's default cap) with a cursor, as Kafka pages
//! them. One host leads every partition at [`LEADER_EPOCH`], its only replica and ISR; there are
//! no eligible leader replicas (empty lists, as Kafka reports when ELR is empty).
//!
//! As in Kafka, a named topic the principal may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED
//! (after the others, outside the paging), a listing of every topic holds only the topics the
//! host lists (those the principal may describe), and every other topic reports the topic
//! operations the host's authorizer allows.

use crate::acl_common::{TOPIC_OPERATIONS, authorized_operations};
use crate::context::{ApiResult, Ctx};
use crate::metadata::{LEADER_EPOCH, topic_name, topic_uuid};
use guise_guest_sdk::{ErrorCode, Services, TopicInfo, acl, error};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};

/// Kafka's max.request.partition.size.limit default: the most partitions one response holds.
const MAX_PARTITIONS: i32 = 2000;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeTopicPartitionsRequest = cx.decode()?;
    let svc = cx.svc;
    let cursor_topic = req.cursor.as_ref().map_or("", |c| c.topic_name.as_str());
    let all = req.topics.is_empty();
    // The names to describe, sorted, from the cursor's topic on.
    let mut names: Vec<String> = if all {
        svc.list_topics().into_iter().map(|t| t.name).collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.retain(|n| n.as_str() >= cursor_topic);
    names.sort();
    names.dedup();
    if let Some(c) = &req.cursor
        && (c.partition_index < 0 || !names.iter().any(|n| n.as_str() == c.topic_name.as_str()))
    {
        return error(cx, error::INVALID_REQUEST);
    }
    // Named topics the principal may not describe: refused, whether or not they exist.
    let mut refused = Vec::new();
    if !all {
        names.retain(|n| {
            let allowed = svc.authorize(acl::TOPIC, n, acl::DESCRIBE);
            if !allowed {
                refused.push(failed(n, error::TOPIC_AUTHORIZATION_FAILED));
            }
            allowed
        });
    }
    let operations = |name: &str| authorized_operations(svc, acl::TOPIC, name, TOPIC_OPERATIONS);
    let node = BrokerId(svc.self_broker().node_id);
    let mut remaining = req.response_partition_limit.clamp(1, MAX_PARTITIONS);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    let mut names = names.into_iter().peekable();
    while let Some(name) = names.next() {
        let Some(info) = svc.describe_topic(&name) else {
            if !all {
                let unknown = failed(&name, error::UNKNOWN_TOPIC_OR_PARTITION);
                topics.push(unknown.with_topic_authorized_operations(operations(&name)));
            }
            continue;
        };
        let start = match &req.cursor {
            Some(c) if c.topic_name.as_str() == name => c.partition_index,
            _ => 0,
        };
        let end = info.partitions.min(start.saturating_add(remaining));
        topics.push(found(&info, node, start.min(end)..end, operations(&name)));
        remaining -= end - start.min(end);
        if end < info.partitions {
            next_cursor = Some(cursor(&name, end));
            break;
        }
        if remaining == 0 {
            next_cursor = names.peek().map(|next| cursor(next, 0));
            break;
        }
    }
    topics.extend(refused);
    cx.respond(&DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor))
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default().with_topic_name(topic_name(topic)).with_partition_index(partition)
}

fn found(
    info: &TopicInfo,
    node: BrokerId,
    partitions: std::ops::Range<i32>,
    operations: i32,
) -> DescribeTopicPartitionsResponseTopic {
    let partitions = partitions
        .map(|p| {
            DescribeTopicPartitionsResponsePartition::default()
                .with_error_code(error::NONE)
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_eligible_leader_replicas(Some(vec![]))
                .with_last_known_elr(Some(vec![]))
                .with_offline_replicas(vec![])
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error::NONE)
        .with_name(Some(topic_name(info.name.clone())))
        .with_topic_id(topic_uuid(info.id))
        .with_is_internal(info.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}

fn failed(name: &str, code: ErrorCode) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic_uuid(0))
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DescribeTopicPartitionsRequest = cx.decode()?;
    let topics = req.topics.iter().map(|t| failed(t.name.as_str(), code)).collect();
    cx.respond(&DescribeTopicPartitionsResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_topic_partitions_request::{self as request, TopicRequest};

    fn ask(
        svc: &StubServices,
        names: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsResponse {
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(names.iter().map(|n| TopicRequest::default().with_name(topic_name(*n))).collect())
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                request::Cursor::default().with_topic_name(topic_name(t)).with_partition_index(p)
            }));
        call(svc, ApiKey::DescribeTopicPartitions, 0, &req)
    }

    /// (topic, error, partitions) of each topic.
    type Seen = Vec<(String, i16, Vec<i32>)>;

    /// What the response says of each topic, and the next cursor.
    fn seen(r: &DescribeTopicPartitionsResponse) -> (Seen, Option<(String, i32)>) {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                (name, t.error_code, t.partitions.iter().map(|p| p.partition_index).collect())
            })
            .collect();
        (topics, r.next_cursor.as_ref().map(|c| (c.topic_name.to_string(), c.partition_index)))
    }

    #[test]
    fn sorted_paged_and_unknown_topics_named() {
        let svc = StubServices::new();
        svc.create_topic("b", 3, &[], false).unwrap();
        svc.create_topic("a", 2, &[], false).unwrap();
        let t = |n: &str, e: i16, p: &[i32]| (n.to_string(), e, p.to_vec());
        let all = ask(&svc, &[], 2000, None);
        assert_eq!(seen(&all), (vec![t("a", 0, &[0, 1]), t("b", 0, &[0, 1, 2])], None));
        let p = &all.topics[0].partitions[0];
        assert_eq!(
            (p.leader_epoch, p.eligible_leader_replicas.as_deref(), p.isr_nodes.len()),
            (0, Some(&[][..]), 1)
        );
        // Paged by three partitions: a, then b from where the cursor says.
        let first = ask(&svc, &[], 3, None);
        assert_eq!(seen(&first), (vec![t("a", 0, &[0, 1]), t("b", 0, &[0])], Some(("b".into(), 1))));
        let rest = ask(&svc, &[], 3, Some(("b", 1)));
        assert_eq!(seen(&rest), (vec![t("b", 0, &[1, 2])], None));
        // A limit that ends exactly at a topic's end points the cursor at the next topic.
        assert_eq!(seen(&ask(&svc, &[], 2, None)), (vec![t("a", 0, &[0, 1])], Some(("b".into(), 0))));
        // Named topics, sorted; a missing one is named with its error.
        let named = ask(&svc, &["b", "zz", "a"], 2000, None);
        assert_eq!(seen(&named), (vec![t("a", 0, &[0, 1]), t("b", 0, &[0, 1, 2]), t("zz", 3, &[])], None));
        // A cursor outside the named topics is INVALID_REQUEST.
        assert_eq!(ask(&svc, &["a"], 2000, Some(("b", 0))).topics[0].error_code, error::INVALID_REQUEST);
    }

    #[test]
    fn topics_the_principal_may_not_describe() {
        let svc = StubServices::new();
        for (name, n) in [("a", 2), ("b", 1), ("secret", 1)] {
            svc.create_topic(name, n, &[], false).unwrap();
        }
        svc.deny(acl::TOPIC, "secret", acl::DESCRIBE);
        svc.deny(acl::TOPIC, "nope", acl::DESCRIBE);
        svc.deny(acl::TOPIC, "b", acl::WRITE);
        let t = |n: &str, e: i16, p: &[i32]| (n.to_string(), e, p.to_vec());
        // A listing leaves it out.
        let all = ask(&svc, &[], 2000, None);
        assert_eq!(seen(&all), (vec![t("a", 0, &[0, 1]), t("b", 0, &[0])], None));
        assert_eq!(all.topics[0].topic_authorized_operations, 0b1101_1111_1000);
        assert_eq!(all.topics[1].topic_authorized_operations, 0b1101_1110_1000);
        // Named, it is refused after the others and outside the paging, existing or not.
        let named = ask(&svc, &["secret", "b", "nope", "a"], 2, None);
        assert_eq!(
            seen(&named),
            (
                vec![
                    t("a", 0, &[0, 1]),
                    t("nope", error::TOPIC_AUTHORIZATION_FAILED, &[]),
                    t("secret", error::TOPIC_AUTHORIZATION_FAILED, &[]),
                ],
                Some(("b".into(), 0))
            )
        );
        let refused = &named.topics[2];
        assert_eq!(refused.topic_id.as_u128(), 0);
        assert_eq!(refused.topic_authorized_operations, i32::MIN);
    }
}
