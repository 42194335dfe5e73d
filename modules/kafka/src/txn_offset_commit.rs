//! TxnOffsetCommit v0–v5: commit a group's offsets within the producer's open transaction; the
//! host's coordinator keeps them pending until EndTxn commits (then they are the group's committed
//! offsets) or aborts (then they are dropped).
//!
//! The committed leader epoch exists from v2 (-1 before); v3 (KIP-447) adds the consumer's
//! generation, member id and static instance id, which the coordinator checks as OffsetCommit's
//! (before v3: generation -1, member "", no instance: not checked). As Kafka's `KafkaApis` does:
//! without WRITE on the transactional id every partition gets
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, without READ on the group GROUP_AUTHORIZATION_FAILED; a
//! topic the principal may not READ gets TOPIC_AUTHORIZATION_FAILED and an unknown topic or
//! partition UNKNOWN_TOPIC_OR_PARTITION, while the other partitions are committed. Kafka answers
//! a stale producer epoch here with INVALID_PRODUCER_EPOCH (never PRODUCER_FENCED), and before v2
//! COORDINATOR_LOAD_IN_PROGRESS as COORDINATOR_NOT_AVAILABLE (for 0.11–2.0 clients): so does this
//! translator. v4 only tells that the client knows TRANSACTION_ABORTABLE (never answered here).
//! v5 is transaction version 2 (KIP-890 part 2): the client sends no AddOffsetsToTxn, and the
//! group joins the transaction with the commit, as Kafka's group coordinator adds its partition.

use crate::context::{ApiResult, Ctx};
use crate::group_common::{opt_string, string};
use crate::txn_common::{may_write, producer};
use guise_guest_sdk::{ErrorCode, OffsetCommit, Services, acl, error};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use std::collections::HashMap;

/// The first version at which the commit adds the group to the transaction.
const ADDS_THE_GROUP_FROM: i16 = 5;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: TxnOffsetCommitRequest = cx.decode()?;
    let svc = cx.svc;
    let v = cx.version;
    let transactional_id = req.transactional_id.as_str();
    let group_id = req.group_id.as_str();
    if !may_write(svc, transactional_id) {
        return respond(cx, &req, |_, _| error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    if !svc.authorize(acl::GROUP, group_id, acl::READ) {
        return respond(cx, &req, |_, _| error::GROUP_AUTHORIZATION_FAILED);
    }
    // Each topic's partition count, or why none of its partitions can be committed.
    let mut topics: HashMap<&str, Result<i32, ErrorCode>> = HashMap::new();
    for t in &req.topics {
        let name = t.name.as_str();
        topics.entry(name).or_insert_with(|| {
            if !svc.authorize(acl::TOPIC, name, acl::READ) {
                return Err(error::TOPIC_AUTHORIZATION_FAILED);
            }
            svc.describe_topic(name).map(|info| info.partitions).ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
        });
    }
    let refusal = |topic: &str, partition: i32| match topics[topic] {
        Err(code) => Some(code),
        Ok(n) if !(0..n).contains(&partition) => Some(error::UNKNOWN_TOPIC_OR_PARTITION),
        Ok(_) => None,
    };
    let offsets: Vec<OffsetCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter(|p| refusal(t.name.as_str(), p.partition_index).is_none()).map(|p| {
                OffsetCommit {
                    topic: string(&t.name),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if v >= 2 { p.committed_leader_epoch } else { -1 },
                    metadata: opt_string(&p.committed_metadata),
                }
            })
        })
        .collect();
    let codes = if offsets.is_empty() {
        Vec::new()
    } else {
        let producer = producer(req.producer_id, req.producer_epoch);
        // Transaction version 2: the group joins the transaction here (no AddOffsetsToTxn).
        let added = if v >= ADDS_THE_GROUP_FROM {
            svc.add_offsets_to_txn(transactional_id, producer, group_id)
        } else {
            error::NONE
        };
        let (generation_id, member_id, instance) = if v >= 3 {
            (req.generation_id, string(&req.member_id), opt_string(&req.group_instance_id))
        } else {
            (-1, String::new(), None)
        };
        if added != error::NONE {
            // The group is not in the transaction: nothing is committed.
            vec![added; offsets.len()]
        } else {
            svc.txn_commit_offsets(
                transactional_id,
                producer,
                group_id,
                generation_id,
                &member_id,
                instance.as_deref(),
                &offsets,
            )
        }
    };
    let mut codes = codes.into_iter();
    respond(cx, &req, |topic, partition| match refusal(topic, partition) {
        Some(code) => code,
        // A host that answers fewer codes than offsets fails the rest.
        None => match codes.next().unwrap_or(error::UNKNOWN_SERVER_ERROR) {
            error::PRODUCER_FENCED => error::INVALID_PRODUCER_EPOCH,
            error::COORDINATOR_LOAD_IN_PROGRESS if v < 2 => error::COORDINATOR_NOT_AVAILABLE,
            code => code,
        },
    })
}

/// The response to this request with `code` for every partition.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: TxnOffsetCommitRequest = cx.decode()?;
    respond(cx, &req, |_, _| code)
}

/// Answer every partition of `req`, in order, with `code_of(topic, partition)`.
fn respond<S: Services>(
    cx: &Ctx<'_, S>,
    req: &TxnOffsetCommitRequest,
    mut code_of: impl FnMut(&str, i32) -> ErrorCode,
) -> ApiResult<S> {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code_of(t.name.as_str(), p.partition_index))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&TxnOffsetCommitResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{str_bytes, topic_name};
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame, group_id};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{ApiKey, ProducerId, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    /// A request of (topic, partition, offset), each with metadata "m{offset}" (leader epoch 4
    /// from v2).
    fn request(v: i16, id: &str, group: &str, parts: &[(&str, i32, i64)]) -> TxnOffsetCommitRequest {
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in parts {
            let p = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some(str_bytes(format!("m{offset}"))));
            let p = if v >= 2 { p.with_committed_leader_epoch(4) } else { p };
            match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name(*topic))
                        .with_partitions(vec![p]),
                ),
            }
        }
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_group_id(group_id(group))
            .with_producer_id(ProducerId(7000))
            .with_producer_epoch(3)
            .with_topics(topics)
    }

    fn rows(resp: &TxnOffsetCommitResponse) -> Vec<(String, i32, i16)> {
        resp.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code)))
            .collect()
    }

    fn row(t: &str, p: i32, code: i16) -> (String, i32, i16) {
        (t.to_string(), p, code)
    }

    #[test]
    fn commits_within_the_transaction_at_every_version() {
        for v in 0..=5 {
            let host = TxnHost::with_topics();
            host.codes.replace(vec![0, error::UNKNOWN_MEMBER_ID]);
            let mut req = request(v, "tx", "g", &[("t", 1, 5), ("u", 0, 9)]);
            if v >= 3 {
                req = req
                    .with_generation_id(2)
                    .with_member_id(str_bytes("m-1"))
                    .with_group_instance_id(Some(str_bytes("i-1")));
            }
            let resp: TxnOffsetCommitResponse = call(&host, ApiKey::TxnOffsetCommit, v, &req);
            assert_eq!(rows(&resp), [row("t", 1, 0), row("u", 0, error::UNKNOWN_MEMBER_ID)], "v{v}");
            assert_eq!(resp.throttle_time_ms, 0);
            let want = match v {
                0 | 1 => "txn_commit tx 7000/3 g -1 '' - t-1@5/-1/m5,u-0@9/-1/m9",
                2 => "txn_commit tx 7000/3 g -1 '' - t-1@5/4/m5,u-0@9/4/m9",
                _ => "txn_commit tx 7000/3 g 2 'm-1' i-1 t-1@5/4/m5,u-0@9/4/m9",
            };
            if v >= 5 {
                // Transaction version 2: the commit adds the group first.
                assert_eq!(host.calls(), ["add_offsets tx 7000/3 g", want], "v{v}");
            } else {
                assert_eq!(host.calls(), [want], "v{v}");
            }
        }
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[], false).unwrap();
        let resp: TxnOffsetCommitResponse =
            call(&svc, ApiKey::TxnOffsetCommit, 3, &request(3, "tx", "g", &[("t", 0, 1)]));
        assert_eq!(rows(&resp), [row("t", 0, error::COORDINATOR_NOT_AVAILABLE)]);
    }

    #[test]
    fn error_codes_as_kafka_answers_them() {
        let host = TxnHost::with_topics();
        for v in 0..=5 {
            host.answer.set(error::PRODUCER_FENCED);
            let resp: TxnOffsetCommitResponse =
                call(&host, ApiKey::TxnOffsetCommit, v, &request(v, "tx", "g", &[("t", 0, 1)]));
            assert_eq!(rows(&resp), [row("t", 0, error::INVALID_PRODUCER_EPOCH)], "v{v}");
            host.answer.set(error::COORDINATOR_LOAD_IN_PROGRESS);
            let resp: TxnOffsetCommitResponse =
                call(&host, ApiKey::TxnOffsetCommit, v, &request(v, "tx", "g", &[("t", 0, 1)]));
            let want =
                if v < 2 { error::COORDINATOR_NOT_AVAILABLE } else { error::COORDINATOR_LOAD_IN_PROGRESS };
            assert_eq!(rows(&resp), [row("t", 0, want)], "v{v}");
        }
    }

    #[test]
    fn v5_stops_at_a_group_the_transaction_cannot_take() {
        let host = TxnHost::with_topics();
        host.answer.set(error::CONCURRENT_TRANSACTIONS);
        let req = request(5, "tx", "g", &[("t", 0, 1), ("nope", 0, 2)]);
        let resp: TxnOffsetCommitResponse = call(&host, ApiKey::TxnOffsetCommit, 5, &req);
        assert_eq!(
            rows(&resp),
            [row("t", 0, error::CONCURRENT_TRANSACTIONS), row("nope", 0, error::UNKNOWN_TOPIC_OR_PARTITION)]
        );
        assert_eq!(host.calls(), ["add_offsets tx 7000/3 g"], "no commit after a failed add");
    }

    #[test]
    fn refused_and_unknown_partitions_while_the_others_commit() {
        let host = TxnHost::with_topics();
        host.stub.deny(acl::TOPIC, "u", acl::READ);
        let req =
            request(3, "tx", "g", &[("t", 0, 1), ("t", 7, 2), ("u", 0, 3), ("nope", 0, 4), ("t", 1, 5)]);
        let resp: TxnOffsetCommitResponse = call(&host, ApiKey::TxnOffsetCommit, 3, &req);
        assert_eq!(
            rows(&resp),
            [
                row("t", 0, 0),
                row("t", 7, error::UNKNOWN_TOPIC_OR_PARTITION),
                row("t", 1, 0),
                row("u", 0, error::TOPIC_AUTHORIZATION_FAILED),
                row("nope", 0, error::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        assert_eq!(host.calls(), ["txn_commit tx 7000/3 g -1 '' - t-0@1/4/m1,t-1@5/4/m5"]);
        // Nothing left to commit: no call.
        let req = request(3, "tx", "g", &[("u", 0, 3), ("nope", 0, 4)]);
        let _: TxnOffsetCommitResponse = call(&host, ApiKey::TxnOffsetCommit, 3, &req);
        assert_eq!(host.calls().len(), 1);
    }

    #[test]
    fn needs_write_on_the_transactional_id_then_read_on_the_group() {
        let host = TxnHost::with_topics();
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret", acl::WRITE);
        host.stub.deny(acl::GROUP, "locked", acl::READ);
        let parts = [("t", 0, 1), ("nope", 0, 2)];
        let resp: TxnOffsetCommitResponse =
            call(&host, ApiKey::TxnOffsetCommit, 3, &request(3, "secret", "locked", &parts));
        let e = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        assert_eq!(rows(&resp), [row("t", 0, e), row("nope", 0, e)]);
        let resp: TxnOffsetCommitResponse =
            call(&host, ApiKey::TxnOffsetCommit, 3, &request(3, "tx", "locked", &parts));
        let e = error::GROUP_AUTHORIZATION_FAILED;
        assert_eq!(rows(&resp), [row("t", 0, e), row("nope", 0, e)]);
        assert!(host.calls().is_empty());
    }

    #[test]
    fn error_response_names_every_partition() {
        let svc = StubServices::new();
        for v in 0..=5 {
            let req = request(v, "tx", "g", &[("t", 0, 1), ("u", 2, 3)]);
            let bytes =
                error_response(&svc, frame(ApiKey::TxnOffsetCommit, v, &req), error::REQUEST_TIMED_OUT);
            let resp: TxnOffsetCommitResponse = decode_response(ApiKey::TxnOffsetCommit, v, &bytes);
            let e = error::REQUEST_TIMED_OUT;
            assert_eq!(rows(&resp), [row("t", 0, e), row("u", 2, e)], "v{v}");
        }
    }
}
