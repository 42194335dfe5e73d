//! DescribeLogDirs v1–v4: where the partitions are stored and their sizes (the AdminClient's
//! `describeLogDirs`, `kafka-log-dirs --describe`). A host has one log dir: the embedded log's
//! topics directory (with its volume's total and usable bytes, v4), or on Pulsar the service
//! URL (sizes -1: BookKeeper's disks are not the host's to know). Each partition reports the
//! bytes of its stored batches and an offset lag of 0 (the high watermark is the log end);
//! there are no future (moving) replicas. Topics asked for that do not exist are left out, and
//! `null` asks for every topic of the tenant, internal ones included, as in Kafka.
//!
//! It needs DESCRIBE on the cluster, as in Kafka: without it the answer is no log dirs, with
//! CLUSTER_AUTHORIZATION_FAILED as the top-level error from v3 (earlier versions have no field
//! for it).

use crate::context::{ApiResult, Ctx};
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, acl, error};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeLogDirsRequest = cx.decode()?;
    let svc = cx.svc;
    if !svc.authorize(acl::CLUSTER, acl::CLUSTER_NAME, acl::DESCRIBE) {
        return error(cx, error::CLUSTER_AUTHORIZATION_FAILED);
    }
    // (topic, partitions) to describe: those asked for that exist, or every one.
    let wanted: Vec<(TopicName, Vec<i32>)> = match &req.topics {
        None => svc
            .list_topics()
            .into_iter()
            .map(|t| (crate::metadata::topic_name(t.name), (0..t.partitions).collect()))
            .collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| {
                let info = svc.describe_topic(&t.topic)?;
                let parts =
                    t.partitions.iter().copied().filter(|p| (0..info.partitions).contains(p)).collect();
                Some((t.topic.clone(), parts))
            })
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, parts) in wanted {
        let partitions: Vec<DescribeLogDirsPartition> = parts
            .into_iter()
            .filter_map(|partition| {
                let tp = TopicPartition { topic: name.to_string(), partition };
                // A partition deleted meanwhile is left out, as a missing one is.
                let report = svc.partition_report(&tp).ok()?;
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(partition)
                        .with_partition_size(i64::try_from(report.size_bytes).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(DescribeLogDirsTopic::default().with_name(name).with_partitions(partitions));
        }
    }
    let dir = svc.log_dir();
    let bytes = |b: Option<u64>| b.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let result = DescribeLogDirsResult::default()
        .with_error_code(error::NONE)
        .with_log_dir(str_bytes(dir.path))
        .with_topics(topics);
    // The volume's sizes exist from v4; the codec refuses a non-default before.
    let result = if cx.version >= 4 {
        result.with_total_bytes(bytes(dir.total_bytes)).with_usable_bytes(bytes(dir.usable_bytes))
    } else {
        result
    };
    cx.respond(&DescribeLogDirsResponse::default().with_error_code(error::NONE).with_results(vec![result]))
}

/// The request failed as a whole: v3+ carries the code at the top, earlier versions answer no
/// log dirs (Kafka's `DescribeLogDirsResponse` error path).
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _: DescribeLogDirsRequest = cx.decode()?;
    let resp = DescribeLogDirsResponse::default().with_results(vec![]);
    cx.respond(&if cx.version >= 3 { resp.with_error_code(code) } else { resp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_util::{call, record_batch};
    use guise_guest_sdk::stub::{StubBuffer, StubServices};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;

    #[test]
    fn one_dir_with_every_partitions_size() {
        let svc = StubServices::new();
        svc.create_topic("a", 2, &[], false).unwrap();
        svc.create_topic("b", 1, &[], false).unwrap();
        let batch = record_batch(&[b"x", b"y"], &[1]);
        let tp = TopicPartition { topic: "a".into(), partition: 1 };
        svc.append(&tp, &StubBuffer(batch.clone())).unwrap();
        for v in 1..=4 {
            let all: DescribeLogDirsResponse =
                call(&svc, ApiKey::DescribeLogDirs, v, &DescribeLogDirsRequest::default().with_topics(None));
            assert_eq!(all.results.len(), 1);
            let dir = &all.results[0];
            assert_eq!((dir.error_code, dir.log_dir.as_str()), (error::NONE, "/stub/topics"));
            let sizes: Vec<(String, i32, i64)> = dir
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.partition_size))
                })
                .collect();
            assert_eq!(
                sizes,
                [("a".into(), 0, 0), ("a".into(), 1, batch.len() as i64), ("b".into(), 0, 0)],
                "v{v}"
            );
            let want = if v >= 4 { (1 << 30, 1 << 29) } else { (-1, -1) };
            assert_eq!((dir.total_bytes, dir.usable_bytes), want, "v{v}");

            let some = DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default().with_topic(topic_name("a")).with_partitions(vec![1, 9]),
                DescribableLogDirTopic::default().with_topic(topic_name("missing")).with_partitions(vec![0]),
            ]));
            let resp: DescribeLogDirsResponse = call(&svc, ApiKey::DescribeLogDirs, v, &some);
            let topics = &resp.results[0].topics;
            assert_eq!(topics.len(), 1, "v{v}: only what exists");
            assert_eq!(topics[0].partitions.len(), 1);
            assert_eq!(topics[0].partitions[0].partition_index, 1);
        }
    }

    #[test]
    fn needs_cluster_describe() {
        let svc = StubServices::new();
        svc.create_topic("a", 1, &[], false).unwrap();
        svc.deny(
            guise_guest_sdk::acl::CLUSTER,
            guise_guest_sdk::acl::CLUSTER_NAME,
            guise_guest_sdk::acl::DESCRIBE,
        );
        for v in 1..=4 {
            let resp: DescribeLogDirsResponse =
                call(&svc, ApiKey::DescribeLogDirs, v, &DescribeLogDirsRequest::default().with_topics(None));
            assert!(resp.results.is_empty(), "v{v}");
            let code = if v >= 3 { error::CLUSTER_AUTHORIZATION_FAILED } else { error::NONE };
            assert_eq!(resp.error_code, code, "v{v}");
        }
    }
}
