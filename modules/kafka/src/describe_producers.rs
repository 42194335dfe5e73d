//! DescribeProducers v0: the idempotent producers each partition remembers (the AdminClient's
//! `describeProducers`, `kafka-transactions describe-producers` and `find-hanging`): producer id,
//! epoch, the last sequence and the max timestamp of its last stored batch, and the first offset
//! of its open transaction on the partition (-1 without one). The coordinator epoch of its last
//! marker is not kept: always -1. A missing topic or partition is UNKNOWN_TOPIC_OR_PARTITION; a
//! topic the principal may not READ is TOPIC_AUTHORIZATION_FAILED in each of its partitions, as
//! Kafka's broker answers.

use crate::acl_common::authorization_message;
use crate::context::{ApiResult, Ctx};
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, acl, error};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeProducersRequest = cx.decode()?;
    let svc = cx.svc;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            if !svc.authorize(acl::TOPIC, t.name.as_str(), acl::READ) {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| failed(p, error::TOPIC_AUTHORIZATION_FAILED))
                    .collect();
                return TopicResponse::default().with_name(t.name.clone()).with_partitions(partitions);
            }
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&partition| {
                    let tp = TopicPartition { topic: t.name.to_string(), partition };
                    match svc.partition_report(&tp) {
                        Ok(report) => PartitionResponse::default()
                            .with_partition_index(partition)
                            .with_error_code(error::NONE)
                            .with_active_producers(
                                report
                                    .producers
                                    .iter()
                                    .map(|p| {
                                        ProducerState::default()
                                            .with_producer_id(ProducerId(p.producer_id))
                                            .with_producer_epoch(i32::from(p.epoch))
                                            .with_last_sequence(p.last_sequence)
                                            .with_last_timestamp(p.last_timestamp)
                                            .with_coordinator_epoch(-1)
                                            .with_current_txn_start_offset(p.current_txn_start_offset)
                                    })
                                    .collect(),
                            ),
                        Err(code) => failed(partition, code),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&DescribeProducersResponse::default().with_topics(topics))
}

fn failed(partition: i32, code: ErrorCode) -> PartitionResponse {
    let message = match code {
        error::UNKNOWN_TOPIC_OR_PARTITION => {
            Some(str_bytes("This server does not host this topic-partition."))
        }
        error::TOPIC_AUTHORIZATION_FAILED => Some(str_bytes(authorization_message(code))),
        _ => None,
    };
    PartitionResponse::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_error_message(message)
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DescribeProducersRequest = cx.decode()?;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(t.partition_indexes.iter().map(|&p| failed(p, code)).collect())
        })
        .collect();
    cx.respond(&DescribeProducersResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_util::{call, record_batch};
    use guise_guest_sdk::stub::{StubBuffer, StubServices};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;

    /// `values` as one batch of producer `pid` at `epoch`, first sequence `seq`.
    fn producer_batch(values: &[&[u8]], ts: i64, pid: i64, epoch: i16, seq: i32) -> StubBuffer {
        let mut b = record_batch(values, &[ts]).to_vec();
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        StubBuffer(b.into())
    }

    #[test]
    fn lists_each_producers_last_batch() {
        let svc = StubServices::new();
        svc.create_topic("a", 2, &[], false).unwrap();
        let tp = TopicPartition { topic: "a".into(), partition: 0 };
        svc.append(&tp, &producer_batch(&[b"x", b"y"], 100, 7, 1, 0)).unwrap();
        svc.append(&tp, &producer_batch(&[b"z"], 200, 7, 1, 2)).unwrap();
        // Producer 9's batch is transactional: its transaction starts at its offset, 3.
        let mut w = producer_batch(&[b"w"], 150, 9, 0, 0).0.to_vec();
        w[22] |= 0x10;
        svc.append(&tp, &StubBuffer(w.into())).unwrap();
        svc.append(&tp, &StubBuffer(record_batch(&[b"plain"], &[300]))).unwrap();
        let req = DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default().with_name(topic_name("a")).with_partition_indexes(vec![0, 1, 5]),
            TopicRequest::default().with_name(topic_name("missing")).with_partition_indexes(vec![0]),
        ]);
        let resp: DescribeProducersResponse = call(&svc, ApiKey::DescribeProducers, 0, &req);
        let p0 = &resp.topics[0].partitions[0];
        let got: Vec<(i64, i32, i32, i64, i32, i64)> = p0
            .active_producers
            .iter()
            .map(|p| {
                (
                    p.producer_id.0,
                    p.producer_epoch,
                    p.last_sequence,
                    p.last_timestamp,
                    p.coordinator_epoch,
                    p.current_txn_start_offset,
                )
            })
            .collect();
        assert_eq!(got, [(7, 1, 2, 200, -1, -1), (9, 0, 0, 150, -1, 3)]);
        assert_eq!(resp.topics[0].partitions[1].error_code, error::NONE);
        assert!(resp.topics[0].partitions[1].active_producers.is_empty());
        assert_eq!(resp.topics[0].partitions[2].error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
        assert_eq!(resp.topics[1].partitions[0].error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
    }

    #[test]
    fn topics_the_principal_may_not_read_are_refused() {
        let svc = StubServices::new();
        svc.create_topic("a", 2, &[], false).unwrap();
        svc.create_topic("b", 1, &[], false).unwrap();
        svc.deny(guise_guest_sdk::acl::TOPIC, "a", guise_guest_sdk::acl::READ);
        let req = DescribeProducersRequest::default().with_topics(vec![
            TopicRequest::default().with_name(topic_name("a")).with_partition_indexes(vec![0, 1]),
            TopicRequest::default().with_name(topic_name("b")).with_partition_indexes(vec![0]),
        ]);
        let resp: DescribeProducersResponse = call(&svc, ApiKey::DescribeProducers, 0, &req);
        let got: Vec<(&str, i32, i16, Option<&str>)> = resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.as_str(), p.partition_index, p.error_code, p.error_message.as_deref()))
            })
            .collect();
        let refused = Some("Topic authorization failed.");
        assert_eq!(
            got,
            [
                ("a", 0, error::TOPIC_AUTHORIZATION_FAILED, refused),
                ("a", 1, error::TOPIC_AUTHORIZATION_FAILED, refused),
                ("b", 0, error::NONE, None),
            ]
        );
    }
}
