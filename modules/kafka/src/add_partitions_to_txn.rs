//! AddPartitionsToTxn v0–v3: a transactional producer names the partitions it is about to write
//! in its open transaction, and the host's transaction coordinator records them (the first adds
//! start the transaction).
//!
//! v0–v3 are the clients' versions (one transactional id per request); v4+ batch several
//! transactions and are sent by brokers only (KIP-890), v5 adds TRANSACTION_ABORTABLE: neither is
//! served. As Kafka's `KafkaApis` does before it asks the coordinator: without WRITE on the
//! transactional id every partition gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED; a topic the
//! principal may not WRITE (or an internal topic) gets TOPIC_AUTHORIZATION_FAILED, an unknown
//! topic or partition UNKNOWN_TOPIC_OR_PARTITION, and then no partition is added: the others get
//! OPERATION_NOT_ATTEMPTED and the coordinator is not called. Otherwise every partition gets the
//! coordinator's answer, in request order; PRODUCER_FENCED is INVALID_PRODUCER_EPOCH before v2.

use crate::context::{ApiResult, Ctx};
use crate::txn_common::{fenced_before, may_write, producer};
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, acl, error};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use std::collections::HashMap;

/// The first version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_FROM: i16 = 2;

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: AddPartitionsToTxnRequest = cx.decode()?;
    let svc = cx.svc;
    let transactional_id = req.v3_and_below_transactional_id.as_str();
    if !may_write(svc, transactional_id) {
        return respond(cx, &req, |_, _| error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    // Each topic's partition count, or why none of its partitions can be added.
    let mut topics: HashMap<&str, Result<i32, ErrorCode>> = HashMap::new();
    for t in &req.v3_and_below_topics {
        let name = t.name.as_str();
        topics.entry(name).or_insert_with(|| {
            if !svc.authorize(acl::TOPIC, name, acl::WRITE) {
                return Err(error::TOPIC_AUTHORIZATION_FAILED);
            }
            match svc.describe_topic(name) {
                // Kafka never authorizes writes to an internal topic here.
                Some(info) if info.internal => Err(error::TOPIC_AUTHORIZATION_FAILED),
                Some(info) => Ok(info.partitions),
                None => Err(error::UNKNOWN_TOPIC_OR_PARTITION),
            }
        });
    }
    let refusal = |topic: &str, partition: i32| match topics[topic] {
        Err(code) => Some(code),
        Ok(n) if !(0..n).contains(&partition) => Some(error::UNKNOWN_TOPIC_OR_PARTITION),
        Ok(_) => None,
    };
    let partitions: Vec<TopicPartition> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|&partition| TopicPartition { topic: t.name.to_string(), partition })
        })
        .collect();
    if partitions.iter().any(|tp| refusal(&tp.topic, tp.partition).is_some()) {
        return respond(cx, &req, |topic, partition| {
            refusal(topic, partition).unwrap_or(error::OPERATION_NOT_ATTEMPTED)
        });
    }
    let codes = if partitions.is_empty() {
        Vec::new()
    } else {
        let producer = producer(req.v3_and_below_producer_id, req.v3_and_below_producer_epoch);
        svc.add_partitions_to_txn(transactional_id, producer, &partitions)
    };
    let mut codes = codes.into_iter();
    // A host that answers fewer codes than partitions fails the rest.
    respond(cx, &req, |_, _| {
        fenced_before(codes.next().unwrap_or(error::UNKNOWN_SERVER_ERROR), cx.version, PRODUCER_FENCED_FROM)
    })
}

/// The response to this request with `code` for every partition.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: AddPartitionsToTxnRequest = cx.decode()?;
    respond(cx, &req, |_, _| code)
}

/// Answer every partition of `req`, in order, with `code_of(topic, partition)`.
fn respond<S: Services>(
    cx: &Ctx<'_, S>,
    req: &AddPartitionsToTxnRequest,
    mut code_of: impl FnMut(&str, i32) -> ErrorCode,
) -> ApiResult<S> {
    let results = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code_of(t.name.as_str(), p))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    cx.respond(&AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{ApiKey, ProducerId, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    fn request(id: &str, parts: &[(&str, &[i32])]) -> AddPartitionsToTxnRequest {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_v3_and_below_producer_id(ProducerId(7000))
            .with_v3_and_below_producer_epoch(3)
            .with_v3_and_below_topics(
                parts
                    .iter()
                    .map(|(t, p)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(topic_name(*t))
                            .with_partitions(p.to_vec())
                    })
                    .collect(),
            )
    }

    /// (topic, partition, error) of every partition.
    fn rows(resp: &AddPartitionsToTxnResponse) -> Vec<(String, i32, i16)> {
        resp.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.partition_error_code))
            })
            .collect()
    }

    fn row(t: &str, p: i32, code: i16) -> (String, i32, i16) {
        (t.to_string(), p, code)
    }

    #[test]
    fn adds_the_partitions_at_every_version() {
        for v in 0..=3 {
            let host = TxnHost::with_topics();
            host.codes.replace(vec![0, error::CONCURRENT_TRANSACTIONS, 0]);
            let req = request("tx", &[("t", &[0, 1]), ("u", &[0])]);
            let resp: AddPartitionsToTxnResponse = call(&host, ApiKey::AddPartitionsToTxn, v, &req);
            assert_eq!(
                rows(&resp),
                [row("t", 0, 0), row("t", 1, error::CONCURRENT_TRANSACTIONS), row("u", 0, 0)],
                "v{v}"
            );
            assert_eq!(resp.throttle_time_ms, 0);
            assert_eq!(host.calls(), ["add_partitions tx 7000/3 t-0,t-1,u-0"], "v{v}");
        }
        // The stub host has no coordinator.
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[], false).unwrap();
        let resp: AddPartitionsToTxnResponse =
            call(&svc, ApiKey::AddPartitionsToTxn, 3, &request("tx", &[("t", &[0])]));
        assert_eq!(rows(&resp), [row("t", 0, error::COORDINATOR_NOT_AVAILABLE)]);
    }

    #[test]
    fn producer_fenced_is_invalid_producer_epoch_before_v2() {
        let host = TxnHost::with_topics();
        host.answer.set(error::PRODUCER_FENCED);
        for v in 0..=3 {
            let resp: AddPartitionsToTxnResponse =
                call(&host, ApiKey::AddPartitionsToTxn, v, &request("tx", &[("t", &[0])]));
            let want = if v >= 2 { error::PRODUCER_FENCED } else { error::INVALID_PRODUCER_EPOCH };
            assert_eq!(rows(&resp), [row("t", 0, want)], "v{v}");
        }
    }

    #[test]
    fn refused_or_unknown_partitions_add_none() {
        let host = TxnHost::with_topics();
        host.stub.deny(acl::TOPIC, "u", acl::WRITE);
        let req = request("tx", &[("t", &[0, 5]), ("u", &[0]), ("nope", &[0]), ("t", &[1])]);
        let resp: AddPartitionsToTxnResponse = call(&host, ApiKey::AddPartitionsToTxn, 3, &req);
        assert_eq!(
            rows(&resp),
            [
                row("t", 0, error::OPERATION_NOT_ATTEMPTED),
                row("t", 5, error::UNKNOWN_TOPIC_OR_PARTITION),
                row("u", 0, error::TOPIC_AUTHORIZATION_FAILED),
                row("nope", 0, error::UNKNOWN_TOPIC_OR_PARTITION),
                row("t", 1, error::OPERATION_NOT_ATTEMPTED),
            ]
        );
        assert!(host.calls().is_empty(), "{:?}", host.calls());
    }

    #[test]
    fn the_transactional_id_needs_write() {
        let host = TxnHost::with_topics();
        host.stub.deny(acl::TRANSACTIONAL_ID, "tx", acl::WRITE);
        let req = request("tx", &[("t", &[0, 1]), ("nope", &[0])]);
        for v in 0..=3 {
            let resp: AddPartitionsToTxnResponse = call(&host, ApiKey::AddPartitionsToTxn, v, &req);
            let e = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            assert_eq!(rows(&resp), [row("t", 0, e), row("t", 1, e), row("nope", 0, e)], "v{v}");
        }
        assert!(host.calls().is_empty());
    }

    #[test]
    fn no_partitions_make_no_call() {
        let host = TxnHost::with_topics();
        let resp: AddPartitionsToTxnResponse =
            call(&host, ApiKey::AddPartitionsToTxn, 3, &request("tx", &[]));
        assert!(rows(&resp).is_empty());
        assert!(host.calls().is_empty());
    }

    #[test]
    fn error_response_names_every_partition() {
        let svc = StubServices::new();
        for v in 0..=3 {
            let req = request("tx", &[("t", &[0, 1]), ("u", &[2])]);
            let bytes =
                error_response(&svc, frame(ApiKey::AddPartitionsToTxn, v, &req), error::REQUEST_TIMED_OUT);
            let resp: AddPartitionsToTxnResponse = decode_response(ApiKey::AddPartitionsToTxn, v, &bytes);
            let e = error::REQUEST_TIMED_OUT;
            assert_eq!(rows(&resp), [row("t", 0, e), row("t", 1, e), row("u", 2, e)], "v{v}");
        }
    }
}
