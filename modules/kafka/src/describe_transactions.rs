//! DescribeTransactions v0: the state of transactional ids, from the host's transaction
//! coordinator (the AdminClient's `describeTransactions`, `kafka-transactions describe`): state,
//! timeout, when the open transaction started (-1 when none is), producer id and epoch, and the
//! partitions in the transaction, grouped by topic.
//!
//! As in Kafka: an id the principal may not DESCRIBE gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! an empty one INVALID_REQUEST, an unknown one TRANSACTIONAL_ID_NOT_FOUND (the coordinator's),
//! each entry in error carrying only its id and code; the partitions of topics the principal may
//! not DESCRIBE are left out. One host call for all the ids it is asked about.

use crate::context::{ApiResult, Ctx};
use crate::group_common::by_topic;
use crate::metadata::{str_bytes, topic_name};
use guise_guest_sdk::{ErrorCode, Services, TxnDescription, acl, error};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TransactionalId,
};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DescribeTransactionsRequest = cx.decode()?;
    let svc = cx.svc;
    // Each id's refusal, or None: the coordinator's to describe.
    let refusals: Vec<Option<ErrorCode>> = req
        .transactional_ids
        .iter()
        .map(|id| {
            if !svc.authorize(acl::TRANSACTIONAL_ID, id.as_str(), acl::DESCRIBE) {
                Some(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else if id.as_str().is_empty() {
                Some(error::INVALID_REQUEST)
            } else {
                None
            }
        })
        .collect();
    let asked: Vec<String> = req
        .transactional_ids
        .iter()
        .zip(&refusals)
        .filter(|(_, r)| r.is_none())
        .map(|(id, _)| id.as_str().to_string())
        .collect();
    let mut described =
        if asked.is_empty() { Vec::new() } else { svc.describe_transactions(&asked) }.into_iter();
    let states = req
        .transactional_ids
        .iter()
        .zip(refusals)
        .map(|(id, refusal)| match refusal {
            Some(code) => failed(id.clone(), code),
            // A host that answers fewer entries than ids fails the rest.
            None => match described.next() {
                Some(d) if d.error == error::NONE => found(svc, id.clone(), d),
                Some(d) => failed(id.clone(), d.error),
                None => failed(id.clone(), error::UNKNOWN_SERVER_ERROR),
            },
        })
        .collect();
    cx.respond(&DescribeTransactionsResponse::default().with_transaction_states(states))
}

/// The response to this request with `code` for every id.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DescribeTransactionsRequest = cx.decode()?;
    let states = req.transactional_ids.iter().map(|id| failed(id.clone(), code)).collect();
    cx.respond(&DescribeTransactionsResponse::default().with_transaction_states(states))
}

/// An id in error: only its id and code, as Kafka answers.
fn failed(id: TransactionalId, code: ErrorCode) -> TransactionState {
    TransactionState::default().with_transactional_id(id).with_error_code(code)
}

fn found<S: Services>(svc: &S, id: TransactionalId, d: TxnDescription) -> TransactionState {
    let topics = by_topic(d.partitions.into_iter().map(|tp| (tp.topic, tp.partition)))
        .into_iter()
        .filter(|(topic, _)| svc.authorize(acl::TOPIC, topic, acl::DESCRIBE))
        .map(|(topic, partitions)| {
            TopicData::default().with_topic(topic_name(topic)).with_partitions(partitions)
        })
        .collect();
    TransactionState::default()
        .with_transactional_id(id)
        .with_error_code(error::NONE)
        .with_transaction_state(str_bytes(d.state))
        .with_transaction_timeout_ms(d.timeout_ms)
        .with_transaction_start_time_ms(d.start_ms)
        .with_producer_id(ProducerId(d.producer_id))
        .with_producer_epoch(d.producer_epoch)
        .with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::TopicPartition;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    fn request(ids: &[&str]) -> DescribeTransactionsRequest {
        DescribeTransactionsRequest::default()
            .with_transactional_ids(ids.iter().map(|id| TransactionalId(str_bytes(*id))).collect())
    }

    fn ongoing(id: &str) -> TxnDescription {
        let tp = |topic: &str, partition| TopicPartition { topic: topic.into(), partition };
        TxnDescription {
            transactional_id: id.into(),
            error: error::NONE,
            state: "Ongoing".into(),
            timeout_ms: 60_000,
            start_ms: 1_700_000_000_000,
            producer_id: 7000,
            producer_epoch: 3,
            partitions: vec![tp("t", 1), tp("hidden", 0), tp("u", 0), tp("t", 0)],
        }
    }

    type Row = (String, i16, String, i32, i64, i64, i16, Vec<(String, Vec<i32>)>);

    fn rows(resp: &DescribeTransactionsResponse) -> Vec<Row> {
        resp.transaction_states
            .iter()
            .map(|s| {
                let topics = s.topics.iter().map(|t| (t.topic.to_string(), t.partitions.clone())).collect();
                (
                    s.transactional_id.to_string(),
                    s.error_code,
                    s.transaction_state.to_string(),
                    s.transaction_timeout_ms,
                    s.transaction_start_time_ms,
                    s.producer_id.0,
                    s.producer_epoch,
                    topics,
                )
            })
            .collect()
    }

    fn failed_row(id: &str, code: i16) -> Row {
        (id.into(), code, String::new(), 0, 0, 0, 0, vec![])
    }

    #[test]
    fn describes_each_id() {
        let host = TxnHost::new();
        host.descriptions.borrow_mut().push(ongoing("tx"));
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret", acl::DESCRIBE);
        host.stub.deny(acl::TOPIC, "hidden", acl::DESCRIBE);
        let resp: DescribeTransactionsResponse =
            call(&host, ApiKey::DescribeTransactions, 0, &request(&["tx", "secret", "unknown", ""]));
        assert_eq!(
            rows(&resp),
            [
                (
                    "tx".into(),
                    0,
                    "Ongoing".into(),
                    60_000,
                    1_700_000_000_000,
                    7000,
                    3,
                    vec![("t".into(), vec![1, 0]), ("u".into(), vec![0])]
                ),
                failed_row("secret", error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                failed_row("unknown", error::TRANSACTIONAL_ID_NOT_FOUND),
                failed_row("", error::INVALID_REQUEST),
            ]
        );
        assert_eq!(resp.throttle_time_ms, 0);
        assert_eq!(host.calls(), ["describe tx,unknown"]);
        // Nothing to ask the coordinator: no call.
        let _: DescribeTransactionsResponse =
            call(&host, ApiKey::DescribeTransactions, 0, &request(&["secret"]));
        let _: DescribeTransactionsResponse = call(&host, ApiKey::DescribeTransactions, 0, &request(&[]));
        assert_eq!(host.calls().len(), 1);
    }

    #[test]
    fn the_stub_host_knows_no_transaction() {
        let svc = StubServices::new();
        let resp: DescribeTransactionsResponse =
            call(&svc, ApiKey::DescribeTransactions, 0, &request(&["tx"]));
        assert_eq!(rows(&resp), [failed_row("tx", error::TRANSACTIONAL_ID_NOT_FOUND)]);
    }

    #[test]
    fn error_response_names_every_id() {
        let svc = StubServices::new();
        let bytes = error_response(&svc, frame(ApiKey::DescribeTransactions, 0, &request(&["a", "b"])), 7);
        let resp: DescribeTransactionsResponse = decode_response(ApiKey::DescribeTransactions, 0, &bytes);
        assert_eq!(rows(&resp), [failed_row("a", 7), failed_row("b", 7)]);
    }
}
