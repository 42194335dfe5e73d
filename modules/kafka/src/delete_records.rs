//! DeleteRecords v0–v2: move partitions' log start offsets up (the AdminClient's
//! `deleteRecords`; Kafka Streams purges its repartition topics with it). An offset of -1 means
//! the high watermark; one above it is OFFSET_OUT_OF_RANGE; one below the current log start
//! changes nothing. Each partition answers its new low watermark.

use crate::context::{ApiResult, Ctx};
use guise_guest_sdk::{ErrorCode, Services, TopicPartition, error};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

pub fn handle<S: Services>(cx: &Ctx<'_, S>) -> ApiResult<S> {
    let req: DeleteRecordsRequest = cx.decode()?;
    let svc = cx.svc;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            // A missing topic or partition is the host's UNKNOWN_TOPIC_OR_PARTITION.
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition { topic: t.name.to_string(), partition: p.partition_index };
                    let outcome = if p.offset < -1 {
                        Err(error::OFFSET_OUT_OF_RANGE)
                    } else {
                        svc.delete_records(&tp, p.offset)
                    };
                    let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    match outcome {
                        Ok(low) => r.with_low_watermark(low).with_error_code(error::NONE),
                        Err(code) => r.with_low_watermark(-1).with_error_code(code),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&DeleteRecordsResponse::default().with_topics(topics))
}

pub fn error<S: Services>(cx: &Ctx<'_, S>, code: ErrorCode) -> ApiResult<S> {
    let req: DeleteRecordsRequest = cx.decode()?;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(code)
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    cx.respond(&DeleteRecordsResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_name;
    use crate::test_util::{call, record_batch};
    use guise_guest_sdk::stub::StubServices;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};

    fn topic(name: &str, parts: &[(i32, i64)]) -> DeleteRecordsTopic {
        DeleteRecordsTopic::default().with_name(topic_name(name)).with_partitions(
            parts
                .iter()
                .map(|(p, o)| DeleteRecordsPartition::default().with_partition_index(*p).with_offset(*o))
                .collect(),
        )
    }

    #[test]
    fn moves_log_starts_and_refuses_what_it_cannot() {
        let svc = StubServices::new();
        svc.create_topic("a", 2, &[], false).unwrap();
        let tp = TopicPartition { topic: "a".into(), partition: 0 };
        for _ in 0..3 {
            svc.append(&tp, &guise_guest_sdk::stub::StubBuffer(record_batch(&[b"x", b"y"], &[1, 2])))
                .unwrap();
        }
        for v in 0..=2 {
            let req = DeleteRecordsRequest::default().with_topics(vec![
                topic("a", &[(0, 2), (1, 5), (7, 0), (0, -5)]),
                topic("missing", &[(0, 1)]),
            ]);
            let resp: DeleteRecordsResponse = call(&svc, ApiKey::DeleteRecords, v, &req);
            let got: Vec<(i32, i64, i16)> = resp.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.low_watermark, p.error_code))
                .collect();
            assert_eq!(
                got,
                [
                    (0, 2, error::NONE),
                    (1, -1, error::OFFSET_OUT_OF_RANGE),
                    (7, -1, error::UNKNOWN_TOPIC_OR_PARTITION),
                    (0, -1, error::OFFSET_OUT_OF_RANGE)
                ],
                "v{v}"
            );
            assert_eq!(resp.topics[1].partitions[0].error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
        }
        // -1: up to the high watermark.
        let req = DeleteRecordsRequest::default().with_topics(vec![topic("a", &[(0, -1)])]);
        let resp: DeleteRecordsResponse = call(&svc, ApiKey::DeleteRecords, 2, &req);
        assert_eq!(resp.topics[0].partitions[0].low_watermark, 6);
    }
}
