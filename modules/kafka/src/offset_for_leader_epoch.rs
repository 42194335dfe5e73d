//! OffsetForLeaderEpoch v2–v4: the end offset of a leader epoch. The Java consumer asks it to
//! validate its position after a metadata change (KIP-320), and a follower to find where its log
//! diverges.
//!
//! Every partition has had one leader epoch, [`LEADER_EPOCH`], since it was created, so its
//! epoch history is one entry starting at the log start. As Kafka's epoch cache answers: the
//! current epoch ends at the log end offset; an epoch above it, or -1, is unknown (epoch and
//! offset -1); an epoch below it ends where the current one starts, the log start. A
//! `current_leader_epoch` other than -1 is checked first: older than ours is
//! FENCED_LEADER_EPOCH, newer is UNKNOWN_LEADER_EPOCH.

use crate::context::{ApiResult, Ctx};
use crate::metadata::LEADER_EPOCH;
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, error};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;
/// "No epoch given" in `current_leader_epoch`.
const NO_EPOCH: i32 = -1;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: OffsetForLeaderEpochRequest = cx.decode()?;
    let svc = cx.svc;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition { topic: t.topic.to_string(), partition: p.partition };
                    match end_offset(svc, &tp, p.current_leader_epoch, p.leader_epoch) {
                        Ok((epoch, offset)) => EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(error::NONE)
                            .with_leader_epoch(epoch)
                            .with_end_offset(offset),
                        Err(code) => failed(p.partition, code),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&OffsetForLeaderEpochResponse::default().with_topics(topics))
}

/// (epoch, end offset) of `requested` in `tp`'s one-entry epoch history.
fn end_offset<S: Services>(
    svc: &S,
    tp: &TopicPartition,
    current: i32,
    requested: i32,
) -> Result<(i32, i64), ErrorCode> {
    // The partition must exist before its epoch is compared (Kafka looks it up first).
    let end = svc.list_offset(tp, -1)?.map_or(0, |o| o.offset);
    if current != NO_EPOCH && current < LEADER_EPOCH {
        return Err(error::FENCED_LEADER_EPOCH);
    }
    if current > LEADER_EPOCH {
        return Err(error::UNKNOWN_LEADER_EPOCH);
    }
    Ok(if requested == UNDEFINED || requested > LEADER_EPOCH {
        (UNDEFINED, UNDEFINED_OFFSET)
    } else if requested == LEADER_EPOCH {
        (LEADER_EPOCH, end)
    } else {
        (requested, svc.list_offset(tp, -2)?.map_or(0, |o| o.offset))
    })
}

fn failed(partition: i32, code: ErrorCode) -> EpochEndOffset {
    EpochEndOffset::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_leader_epoch(UNDEFINED)
        .with_end_offset(UNDEFINED_OFFSET)
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: OffsetForLeaderEpochRequest = cx.decode()?;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(t.partitions.iter().map(|p| failed(p.partition, code)).collect())
        })
        .collect();
    cx.respond(&OffsetForLeaderEpochResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_util::{call, record_batch};
    use guise_guest_sdk::stub::{StubBuffer, StubServices};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };

    #[test]
    fn one_epoch_ends_at_the_log_end() {
        let svc = StubServices::new();
        svc.create_topic("a", 1, &[], false).unwrap();
        let tp = TopicPartition { topic: "a".into(), partition: 0 };
        svc.append(&tp, &StubBuffer(record_batch(&[b"x", b"y", b"z"], &[1, 2, 3]))).unwrap();
        svc.delete_records(&tp, 1).unwrap();
        // (current epoch, requested epoch) → (error, epoch, end offset)
        type Case = ((i32, i32), (i16, i32, i64));
        let cases: [Case; 7] = [
            ((-1, 0), (error::NONE, 0, 3)),
            ((0, 0), (error::NONE, 0, 3)),
            ((0, 4), (error::NONE, -1, -1)),
            ((0, -1), (error::NONE, -1, -1)),
            ((0, -3), (error::NONE, -3, 1)),
            ((1, 0), (error::UNKNOWN_LEADER_EPOCH, -1, -1)),
            ((-2, 0), (error::FENCED_LEADER_EPOCH, -1, -1)),
        ];
        for v in 2..=4 {
            for ((current, requested), want) in cases {
                let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
                    OffsetForLeaderTopic::default().with_topic(topic_name("a")).with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(requested),
                    ]),
                ]);
                let resp: OffsetForLeaderEpochResponse = call(&svc, ApiKey::OffsetForLeaderEpoch, v, &req);
                let p = &resp.topics[0].partitions[0];
                assert_eq!((p.error_code, p.leader_epoch, p.end_offset), want, "v{v} {current} {requested}");
            }
        }
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name("missing"))
                .with_partitions(vec![OffsetForLeaderPartition::default().with_partition(0)]),
        ]);
        let resp: OffsetForLeaderEpochResponse = call(&svc, ApiKey::OffsetForLeaderEpoch, 4, &req);
        assert_eq!(resp.topics[0].partitions[0].error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
    }
}
