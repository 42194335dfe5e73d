//! CreatePartitions v0–v3: grow topics of the connection's tenant. `count` is the new total; a
//! manual assignment must give one entry per new partition, each naming only this broker.
//! A topic the principal may not ALTER is TOPIC_AUTHORIZATION_FAILED, as in Kafka.

use crate::context::{ApiResult, Ctx};
use crate::create_topics::{INVALID_REPLICA_ASSIGNMENT, check_replicas, duplicates, host_error_message};
use crate::metadata::str_bytes;
use guise_guest_sdk::{ErrorCode, Services, acl, error};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: CreatePartitionsRequest = cx.decode()?;
    let svc = cx.svc;
    let me = svc.self_broker().node_id;
    let dups = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for name in &dups {
        results.push(result(name, Err((error::INVALID_REQUEST, "Duplicate topic in request.".into()))));
    }
    for t in req.topics.iter().filter(|t| !dups.contains(&t.name.as_str())) {
        results.push(result(t.name.as_str(), grow(svc, t, me, req.validate_only)));
    }
    cx.respond(&CreatePartitionsResponse::default().with_results(results))
}

fn grow<S: Services>(
    svc: &S,
    t: &CreatePartitionsTopic,
    me: i32,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let name = t.name.as_str();
    // As Kafka, before looking the topic up (the host hides topics the principal may not see).
    if !svc.authorize(acl::TOPIC, name, acl::ALTER) {
        return Err((error::TOPIC_AUTHORIZATION_FAILED, "The topic authorization is failed.".into()));
    }
    let current = svc
        .describe_topic(name)
        .ok_or_else(|| {
            (error::UNKNOWN_TOPIC_OR_PARTITION, host_error_message(error::UNKNOWN_TOPIC_OR_PARTITION, name))
        })?
        .partitions;
    if t.count == current {
        return Err((error::INVALID_PARTITIONS, format!("Topic already has {current} partition(s).")));
    }
    if t.count < current {
        return Err((
            error::INVALID_PARTITIONS,
            format!(
                "Topic currently has {current} partition(s), which is higher than the requested {}: \
                 partitions can only be added.",
                t.count
            ),
        ));
    }
    if let Some(assignments) = &t.assignments {
        let added = i64::from(t.count) - i64::from(current);
        if assignments.len() as i64 != added {
            return Err((
                INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "Attempted to add {added} additional partition(s), but {} assignment(s) were specified.",
                    assignments.len()
                ),
            ));
        }
        for (partition, a) in (current..).zip(assignments) {
            check_replicas(partition, &a.broker_ids, me).map_err(|why| (INVALID_REPLICA_ASSIGNMENT, why))?;
        }
    }
    svc.create_partitions(name, t.count, validate_only).map_err(|code| {
        let why = match code {
            error::INVALID_PARTITIONS => format!("The topic cannot have {} partitions here.", t.count),
            code => host_error_message(code, name),
        };
        (code, why)
    })
}

fn result(name: &str, outcome: Result<(), (ErrorCode, String)>) -> CreatePartitionsTopicResult {
    let r = CreatePartitionsTopicResult::default().with_name(crate::metadata::topic_name(name));
    match outcome {
        Ok(()) => r.with_error_code(error::NONE).with_error_message(None),
        Err((code, why)) => r.with_error_code(code).with_error_message(Some(str_bytes(why))),
    }
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: CreatePartitionsRequest = cx.decode()?;
    let results = req
        .topics
        .iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(None)
        })
        .collect();
    cx.respond(&CreatePartitionsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_util::call;
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::{ApiKey, BrokerId};

    fn grow_to(name: &str, count: i32, assignments: Option<&[&[i32]]>) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(count).with_assignments(
            assignments.map(|a| {
                a.iter()
                    .map(|ids| {
                        CreatePartitionsAssignment::default()
                            .with_broker_ids(ids.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect()
            }),
        )
    }

    fn request(
        svc: &StubServices,
        v: i16,
        topics: Vec<CreatePartitionsTopic>,
        validate_only: bool,
    ) -> CreatePartitionsResponse {
        let req = CreatePartitionsRequest::default().with_topics(topics).with_validate_only(validate_only);
        call(svc, ApiKey::CreatePartitions, v, &req)
    }

    fn summary(resp: &CreatePartitionsResponse) -> Vec<(String, ErrorCode)> {
        resp.results.iter().map(|r| (r.name.as_str().to_string(), r.error_code)).collect()
    }

    fn partitions(svc: &StubServices, name: &str) -> i32 {
        svc.describe_topic(name).unwrap().partitions
    }

    #[test]
    fn grows_at_every_version() {
        for v in 0..=3 {
            let svc = StubServices::new();
            svc.create_topic("t", 1, &[], false).unwrap();
            let resp = request(&svc, v, vec![grow_to("t", 3, None)], false);
            assert_eq!(summary(&resp), [("t".into(), 0)], "v{v}");
            assert_eq!(resp.results[0].error_message, None, "v{v}");
            assert_eq!(partitions(&svc, "t"), 3, "v{v}");
        }
    }

    #[test]
    fn topics_the_principal_may_not_alter_are_refused() {
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[], false).unwrap();
        svc.create_topic("hidden", 1, &[], false).unwrap();
        svc.deny(guise_guest_sdk::acl::TOPIC, "t", guise_guest_sdk::acl::ALTER);
        svc.deny(guise_guest_sdk::acl::TOPIC, "hidden", guise_guest_sdk::acl::ALL);
        let resp = request(&svc, 3, vec![grow_to("t", 3, None), grow_to("hidden", 2, None)], false);
        let refused = error::TOPIC_AUTHORIZATION_FAILED;
        assert_eq!(summary(&resp), [("t".into(), refused), ("hidden".into(), refused)]);
        assert_eq!(partitions(&svc, "t"), 1);
    }

    #[test]
    fn count_must_grow() {
        let svc = StubServices::new();
        svc.create_topic("t", 3, &[], false).unwrap();
        let resp = request(&svc, 3, vec![grow_to("t", 3, None)], false);
        assert_eq!(summary(&resp), [("t".into(), error::INVALID_PARTITIONS)]);
        assert!(resp.results[0].error_message.as_deref().is_some_and(|m| m.contains("already has 3")));
        let resp = request(&svc, 3, vec![grow_to("t", 2, None), grow_to("missing", 4, None)], false);
        assert_eq!(
            summary(&resp),
            [("t".into(), error::INVALID_PARTITIONS), ("missing".into(), error::UNKNOWN_TOPIC_OR_PARTITION)]
        );
        assert!(
            resp.results[0]
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains("higher than the requested 2"))
        );
        assert_eq!(partitions(&svc, "t"), 3);
    }

    #[test]
    fn assignments() {
        let svc = StubServices::new();
        for n in ["a", "b", "c", "d"] {
            svc.create_topic(n, 1, &[], false).unwrap();
        }
        let resp = request(
            &svc,
            2,
            vec![
                grow_to("a", 3, Some(&[&[0], &[0]])),
                grow_to("b", 3, Some(&[&[0]])),
                grow_to("c", 2, Some(&[&[0, 1]])),
                grow_to("d", 2, Some(&[])),
            ],
            false,
        );
        assert_eq!(
            summary(&resp),
            [
                ("a".into(), 0),
                ("b".into(), INVALID_REPLICA_ASSIGNMENT),
                ("c".into(), INVALID_REPLICA_ASSIGNMENT),
                ("d".into(), INVALID_REPLICA_ASSIGNMENT),
            ]
        );
        assert_eq!([partitions(&svc, "a"), partitions(&svc, "b"), partitions(&svc, "c")], [3, 1, 1]);
    }

    #[test]
    fn validate_only_and_duplicates() {
        let svc = StubServices::new();
        svc.create_topic("t", 1, &[], false).unwrap();
        svc.create_topic("u", 1, &[], false).unwrap();
        let resp = request(&svc, 1, vec![grow_to("t", 5, None)], true);
        assert_eq!(summary(&resp), [("t".into(), 0)]);
        assert_eq!(partitions(&svc, "t"), 1);
        let resp = request(
            &svc,
            1,
            vec![grow_to("u", 2, None), grow_to("t", 2, None), grow_to("u", 3, None)],
            false,
        );
        let mut got = summary(&resp);
        got.sort();
        assert_eq!(got, [("t".into(), 0), ("u".into(), error::INVALID_REQUEST)]);
        assert_eq!([partitions(&svc, "t"), partitions(&svc, "u")], [2, 1]);
    }

    #[test]
    fn error_response_covers_every_topic() {
        let svc = StubServices::new();
        let req = CreatePartitionsRequest::default().with_topics(vec![grow_to("a", 2, None)]);
        let bytes = crate::test_util::frame(ApiKey::CreatePartitions, 3, &req);
        let raw = crate::test_util::error_response(&svc, bytes, error::UNKNOWN_SERVER_ERROR);
        let resp: CreatePartitionsResponse =
            crate::test_util::decode_response(ApiKey::CreatePartitions, 3, &raw);
        assert_eq!(summary(&resp), [("a".into(), error::UNKNOWN_SERVER_ERROR)]);
    }
}
