//! OffsetDelete v0 (KIP-496): delete a group's committed offsets of some partitions. A
//! group-level error (GROUP_ID_NOT_FOUND, ...) is the top-level error with no partitions, as in
//! Kafka; otherwise every partition is answered with the host's error for it
//! (GROUP_SUBSCRIBED_TO_TOPIC while the group's members consume the topic).

use crate::context::{ApiResult, Ctx};
use crate::group_common::string;
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, error};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: OffsetDeleteRequest = cx.decode()?;
    let partitions: Vec<TopicPartition> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition { topic: string(&t.name), partition: p.partition_index })
        })
        .collect();
    match cx.svc.delete_offsets(&string(&req.group_id), &partitions) {
        Ok(codes) => {
            let mut codes = codes.into_iter();
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(error::UNKNOWN_SERVER_ERROR))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
                })
                .collect();
            cx.respond(&OffsetDeleteResponse::default().with_topics(topics))
        }
        Err(code) => cx.respond(&OffsetDeleteResponse::default().with_error_code(code)),
    }
}

/// The response to this request carrying `code` at the top level.
pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let _req: OffsetDeleteRequest = cx.decode()?;
    cx.respond(&OffsetDeleteResponse::default().with_error_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_util::commit_request as commit;
    use crate::test_util::join;
    use crate::test_util::{call, decode_response, error_response, frame, group_id};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{ApiKey, OffsetCommitResponse};

    fn request(group: &str, parts: &[(&str, &[i32])]) -> OffsetDeleteRequest {
        OffsetDeleteRequest::default().with_group_id(group_id(group)).with_topics(
            parts
                .iter()
                .map(|(t, ps)| {
                    OffsetDeleteRequestTopic::default().with_name(topic_name(*t)).with_partitions(
                        ps.iter()
                            .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    fn codes(resp: &OffsetDeleteResponse) -> Vec<(String, i32, i16)> {
        resp.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code)))
            .collect()
    }

    #[test]
    fn deletes_offsets() {
        use guise_guest_sdk::Services;
        let svc = StubServices::new();
        svc.create_topic("t", 2, &[], false).unwrap();
        let _: OffsetCommitResponse =
            call(&svc, ApiKey::OffsetCommit, 2, &commit("g", -1, "", &[("t", 0, 1), ("t", 1, 2)]));
        let resp: OffsetDeleteResponse =
            call(&svc, ApiKey::OffsetDelete, 0, &request("g", &[("t", &[0]), ("nope", &[0])]));
        assert_eq!(resp.error_code, 0);
        assert_eq!(
            codes(&resp),
            vec![("t".into(), 0, 0), ("nope".into(), 0, error::UNKNOWN_TOPIC_OR_PARTITION)]
        );
        let left = svc.fetch_offsets("g", None).unwrap();
        assert_eq!(left.iter().map(|o| (o.partition, o.offset)).collect::<Vec<_>>(), vec![(1, 2)]);
        // A group with members consumes its topics (the stub's simplification).
        join(&svc, 3, "g");
        let resp: OffsetDeleteResponse = call(&svc, ApiKey::OffsetDelete, 0, &request("g", &[("t", &[1])]));
        assert_eq!(codes(&resp), vec![("t".into(), 1, error::GROUP_SUBSCRIBED_TO_TOPIC)]);
    }

    #[test]
    fn a_group_error_is_top_level() {
        let svc = StubServices::new();
        let resp: OffsetDeleteResponse =
            call(&svc, ApiKey::OffsetDelete, 0, &request("nope", &[("t", &[0])]));
        assert_eq!((resp.error_code, resp.topics.len()), (error::GROUP_ID_NOT_FOUND, 0));
        let bytes = error_response(
            &svc,
            frame(ApiKey::OffsetDelete, 0, &request("g", &[("t", &[0])])),
            error::REQUEST_TIMED_OUT,
        );
        let resp: OffsetDeleteResponse = decode_response(ApiKey::OffsetDelete, 0, &bytes);
        assert_eq!((resp.error_code, resp.topics.len()), (error::REQUEST_TIMED_OUT, 0));
    }
}
