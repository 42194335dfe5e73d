//! DeleteTopics v1–v6: delete topics of the connection's tenant, by name (v1–v5 `topic_names`,
//! v6 `topics`) or, from v6, by topic id. As in Kafka, a topic named twice, or an entry naming
//! both a name and an id or neither, is INVALID_REQUEST.

use crate::context::{ApiResult, Ctx};
use crate::create_topics::{duplicates, host_error_message};
use crate::metadata::{str_bytes, topic_name, topic_uuid};
use guise_guest_sdk::{ErrorCode, Services, error};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

/// One entry of the request: a name, an id (0 = none), or both.
type Entry = (Option<String>, u128);

fn entries(req: &DeleteTopicsRequest, version: i16) -> Vec<Entry> {
    if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.as_str().to_string()), t.topic_id.as_u128()))
            .collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.as_str().to_string()), 0)).collect()
    }
}

fn result(name: Option<&str>, id: u128, outcome: Result<(), (ErrorCode, String)>) -> DeletableTopicResult {
    let r = DeletableTopicResult::default().with_name(name.map(topic_name)).with_topic_id(topic_uuid(id));
    match outcome {
        Ok(()) => r.with_error_code(error::NONE).with_error_message(None),
        Err((code, why)) => r.with_error_code(code).with_error_message(Some(str_bytes(why))),
    }
}

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DeleteTopicsRequest = cx.decode()?;
    let svc = cx.svc;
    let v = cx.version;
    let entries = entries(&req, v);
    let dup_names = duplicates(entries.iter().filter(|e| e.1 == 0).filter_map(|e| e.0.as_deref()));
    let dup_ids = duplicates(entries.iter().filter(|e| e.0.is_none() && e.1 != 0).map(|e| e.1));

    let mut results = Vec::with_capacity(entries.len());
    for name in &dup_names {
        results.push(result(Some(name), 0, Err((error::INVALID_REQUEST, "Duplicate topic name.".into()))));
    }
    for id in &dup_ids {
        results.push(result(None, *id, Err((error::INVALID_REQUEST, "Duplicate topic id.".into()))));
    }
    for (name, id) in &entries {
        match (name.as_deref(), *id) {
            (None, 0) => results.push(result(
                None,
                0,
                Err((error::INVALID_REQUEST, "Neither topic name nor id were specified.".into())),
            )),
            (Some(name), id) if id != 0 => results.push(result(
                Some(name),
                id,
                Err((error::INVALID_REQUEST, "You may not specify both topic name and topic id.".into())),
            )),
            (Some(name), _) if dup_names.contains(&name) => {}
            (Some(name), _) => {
                // The deleted topic's id is part of the answer from v6.
                let id = if v >= 6 { svc.describe_topic(name).map_or(0, |t| t.id) } else { 0 };
                let outcome = svc.delete_topic(name).map_err(|code| (code, host_error_message(code, name)));
                results.push(result(Some(name), id, outcome));
            }
            (None, id) if dup_ids.contains(&id) => {}
            (None, id) => results.push(match svc.topic_by_id(id) {
                None => result(None, id, Err(unknown_id())),
                Some(info) => {
                    let outcome = svc.delete_topic(&info.name).map_err(|code| match code {
                        // Deleted in the meantime.
                        error::UNKNOWN_TOPIC_OR_PARTITION => unknown_id(),
                        code => (code, host_error_message(code, &info.name)),
                    });
                    result(Some(&info.name), id, outcome)
                }
            }),
        }
    }
    cx.respond(&DeleteTopicsResponse::default().with_responses(results))
}

fn unknown_id() -> (ErrorCode, String) {
    (error::UNKNOWN_TOPIC_ID, host_error_message(error::UNKNOWN_TOPIC_ID, ""))
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DeleteTopicsRequest = cx.decode()?;
    let results = entries(&req, cx.version)
        .iter()
        .map(|(name, id)| {
            DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(topic_uuid(*id))
                .with_error_code(code)
                .with_error_message(None)
        })
        .collect();
    cx.respond(&DeleteTopicsResponse::default().with_responses(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    fn svc_with(names: &[&str]) -> StubServices {
        let svc = StubServices::new();
        for n in names {
            svc.create_topic(n, 1, &[], false).unwrap();
        }
        svc
    }

    fn summary(resp: &DeleteTopicsResponse) -> Vec<(Option<String>, ErrorCode)> {
        resp.responses
            .iter()
            .map(|r| (r.name.as_ref().map(|n| n.as_str().to_string()), r.error_code))
            .collect()
    }

    fn s(name: &str) -> Option<String> {
        Some(name.to_string())
    }

    #[test]
    fn by_name_at_versions_1_to_5() {
        for v in 1..=5 {
            let svc = svc_with(&["a", "b", "c"]);
            let req = DeleteTopicsRequest::default().with_topic_names(vec![
                topic_name("a"),
                topic_name("zz"),
                topic_name("c"),
            ]);
            let resp: DeleteTopicsResponse = call(&svc, ApiKey::DeleteTopics, v, &req);
            assert_eq!(
                summary(&resp),
                [(s("a"), 0), (s("zz"), error::UNKNOWN_TOPIC_OR_PARTITION), (s("c"), 0)],
                "v{v}"
            );
            let names: Vec<String> = svc.list_topics().into_iter().map(|t| t.name).collect();
            assert_eq!(names, ["b"], "v{v}");
            let message = resp.responses[1].error_message.as_deref();
            if v >= 5 {
                assert!(message.is_some_and(|m| !m.is_empty()), "v{v}");
                assert_eq!(resp.responses[0].error_message, None);
            }
        }
    }

    #[test]
    fn by_name_or_id_at_v6() {
        let svc = svc_with(&["a", "b", "c"]);
        let a = svc.describe_topic("a").unwrap().id;
        let b = svc.describe_topic("b").unwrap().id;
        let req = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name("a"))),
            DeleteTopicState::default().with_topic_id(topic_uuid(b)),
            DeleteTopicState::default().with_topic_id(topic_uuid(0xbad)),
            DeleteTopicState::default().with_name(Some(topic_name("c"))).with_topic_id(topic_uuid(b)),
            DeleteTopicState::default(),
        ]);
        let resp: DeleteTopicsResponse = call(&svc, ApiKey::DeleteTopics, 6, &req);
        assert_eq!(
            summary(&resp),
            [
                (s("a"), 0),
                (s("b"), 0),
                (None, error::UNKNOWN_TOPIC_ID),
                (s("c"), error::INVALID_REQUEST),
                (None, error::INVALID_REQUEST),
            ]
        );
        let ids: Vec<u128> = resp.responses.iter().map(|r| r.topic_id.as_u128()).collect();
        assert_eq!(ids, [a, b, 0xbad, b, 0]);
        let names: Vec<String> = svc.list_topics().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["c"]);
    }

    #[test]
    fn duplicates_are_invalid() {
        let svc = svc_with(&["a", "b"]);
        let req = DeleteTopicsRequest::default().with_topic_names(vec![
            topic_name("a"),
            topic_name("b"),
            topic_name("a"),
        ]);
        let resp: DeleteTopicsResponse = call(&svc, ApiKey::DeleteTopics, 4, &req);
        let mut got = summary(&resp);
        got.sort();
        assert_eq!(got, [(s("a"), error::INVALID_REQUEST), (s("b"), 0)]);
        assert!(svc.describe_topic("a").is_some());
        assert!(svc.describe_topic("b").is_none());
    }

    #[test]
    fn error_response_covers_every_entry() {
        let svc = StubServices::new();
        let req = DeleteTopicsRequest::default().with_topic_names(vec![topic_name("a"), topic_name("b")]);
        let bytes = crate::test_util::frame(ApiKey::DeleteTopics, 5, &req);
        let raw = crate::test_util::error_response(&svc, bytes, error::REQUEST_TIMED_OUT);
        let resp: DeleteTopicsResponse = crate::test_util::decode_response(ApiKey::DeleteTopics, 5, &raw);
        assert_eq!(summary(&resp), [(s("a"), error::REQUEST_TIMED_OUT), (s("b"), error::REQUEST_TIMED_OUT)]);
    }
}
