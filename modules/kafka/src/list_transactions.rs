//! ListTransactions v0–v2: the transactional ids the host's transaction coordinator knows, with
//! their producer id and state (the AdminClient's `listTransactions`, `kafka-transactions list`),
//! filtered by state names and producer ids (empty: any), from v1 by how long the open
//! transaction has run (`duration_filter`; -1: any), and from v2 by a regular expression the
//! whole id must match (`transactional_id_pattern`, KIP-1152; null or empty: any). Kafka
//! compiles it with RE2/J, whose syntax `regex-lite` shares (without Unicode classes); one that does not compile is
//! INVALID_REGULAR_EXPRESSION.
//!
//! As in Kafka: a state filter that is not one of Kafka's state names is reported in
//! `unknown_state_filters` (and matches nothing), and only the ids the principal may DESCRIBE are
//! listed.

use crate::context::{ApiResult, Ctx};
use crate::metadata::str_bytes;
use crate::txn_common::STATES;
use guise_guest_sdk::{ErrorCode, Services, acl, error};
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: ListTransactionsRequest = cx.decode()?;
    let svc = cx.svc;
    let states: Vec<String> = req.state_filters.iter().map(|s| s.as_str().to_string()).collect();
    let unknown = req.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms = if cx.version >= 1 { req.duration_filter } else { -1 };
    let pattern = match req.transactional_id_pattern.as_deref().filter(|p| cx.version >= 2 && !p.is_empty()) {
        None => None,
        // Matches the whole id, as Java's `Matcher.matches`. Kafka's regular expressions are
        // limited in size; so is this one (and it runs in linear time).
        Some(p) => match regex_lite::RegexBuilder::new(&format!("^(?:{p})$")).size_limit(1 << 20).build() {
            Ok(re) => Some(re),
            Err(_) => return error(cx, error::INVALID_REGULAR_EXPRESSION),
        },
    };
    let listed = svc
        .list_transactions(&states, &producer_ids, min_duration_ms)
        .into_iter()
        .filter(|t| pattern.as_ref().is_none_or(|re| re.is_match(&t.transactional_id)))
        .filter(|t| svc.authorize(acl::TRANSACTIONAL_ID, &t.transactional_id, acl::DESCRIBE))
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(str_bytes(t.state))
        })
        .collect();
    cx.respond(
        &ListTransactionsResponse::default()
            .with_error_code(error::NONE)
            .with_unknown_state_filters(unknown)
            .with_transaction_states(listed),
    )
}

/// The response to this request carrying `code`.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: ListTransactionsRequest = cx.decode()?;
    cx.respond(&ListTransactionsResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_txn::TxnHost;
    use crate::test_util::{call, decode_response, error_response, frame};
    use guise_guest_sdk::TxnListing;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;

    fn listing(id: &str, producer_id: i64, state: &str) -> TxnListing {
        TxnListing { transactional_id: id.into(), producer_id, state: state.into() }
    }

    fn rows(resp: &ListTransactionsResponse) -> Vec<(String, i64, String)> {
        resp.transaction_states
            .iter()
            .map(|s| (s.transactional_id.to_string(), s.producer_id.0, s.transaction_state.to_string()))
            .collect()
    }

    #[test]
    fn lists_what_the_principal_may_describe() {
        let host = TxnHost::new();
        host.listings.replace(vec![
            listing("a", 1, "Ongoing"),
            listing("secret", 2, "Empty"),
            listing("b", 3, "CompleteCommit"),
        ]);
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret", acl::DESCRIBE);
        for v in 0..=1 {
            let req = ListTransactionsRequest::default()
                .with_state_filters(vec![
                    str_bytes("Ongoing"),
                    str_bytes("Bogus"),
                    str_bytes("CompleteCommit"),
                ])
                .with_producer_id_filters(vec![ProducerId(1), ProducerId(3)]);
            let req = if v >= 1 { req.with_duration_filter(5_000) } else { req };
            let resp: ListTransactionsResponse = call(&host, ApiKey::ListTransactions, v, &req);
            assert_eq!(resp.error_code, 0);
            assert_eq!(resp.unknown_state_filters, [str_bytes("Bogus")], "v{v}");
            assert_eq!(
                rows(&resp),
                [("a".into(), 1, "Ongoing".into()), ("b".into(), 3, "CompleteCommit".into())],
                "v{v}"
            );
        }
        assert_eq!(
            host.calls(),
            [
                r#"list ["Ongoing", "Bogus", "CompleteCommit"] [1, 3] -1"#,
                r#"list ["Ongoing", "Bogus", "CompleteCommit"] [1, 3] 5000"#
            ]
        );
    }

    #[test]
    fn no_filters_list_everything() {
        let svc = StubServices::new();
        for v in 0..=2 {
            let resp: ListTransactionsResponse =
                call(&svc, ApiKey::ListTransactions, v, &ListTransactionsRequest::default());
            assert_eq!(
                (resp.error_code, resp.unknown_state_filters.len(), resp.transaction_states.len()),
                (0, 0, 0)
            );
        }
        let host = TxnHost::new();
        let req = ListTransactionsRequest::default().with_duration_filter(-1);
        let _: ListTransactionsResponse = call(&host, ApiKey::ListTransactions, 1, &req);
        assert_eq!(host.calls(), ["list [] [] -1"]);
    }

    #[test]
    fn from_v2_a_pattern_must_match_the_whole_id() {
        let host = TxnHost::new();
        host.listings.replace(vec![
            listing("app-1", 1, "Ongoing"),
            listing("app-22", 2, "Empty"),
            listing("my-app-3", 3, "Empty"),
            listing("secret-app-4", 4, "Empty"),
        ]);
        host.stub.deny(acl::TRANSACTIONAL_ID, "secret-app-4", acl::DESCRIBE);
        let list = |v: i16, pattern: Option<&str>| -> ListTransactionsResponse {
            let req =
                ListTransactionsRequest::default().with_transactional_id_pattern(pattern.map(str_bytes));
            call(&host, ApiKey::ListTransactions, v, &req)
        };
        let ids = |r: &ListTransactionsResponse| rows(r).into_iter().map(|(id, _, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(&list(2, Some("app-\\d"))), ["app-1"], "not a prefix or a substring: the whole id");
        assert_eq!(ids(&list(2, Some(".*app-\\d+"))), ["app-1", "app-22", "my-app-3"]);
        assert_eq!(ids(&list(2, Some("app-1|app-22"))), ["app-1", "app-22"], "the alternation is grouped");
        assert_eq!(ids(&list(2, Some(""))).len(), 3, "empty: any");
        assert_eq!(ids(&list(2, None)).len(), 3, "null: any");
        let bad = list(2, Some("app-("));
        assert_eq!((bad.error_code, bad.transaction_states.len()), (error::INVALID_REGULAR_EXPRESSION, 0));
    }

    #[test]
    fn error_response_at_every_version() {
        let svc = StubServices::new();
        for v in 0..=2 {
            let bytes = error_response(
                &svc,
                frame(ApiKey::ListTransactions, v, &ListTransactionsRequest::default()),
                15,
            );
            let resp: ListTransactionsResponse = decode_response(ApiKey::ListTransactions, v, &bytes);
            assert_eq!(resp.error_code, 15, "v{v}");
        }
    }
}
