//! End to end with rskafka (a pure-Rust client: Metadata v0–v4, Produce v3–v7, Fetch v4).

use guise_tests::TestServer;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use std::collections::BTreeMap;

fn record(i: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!("value-{i}-").repeat(1 + i % 7).into_bytes()),
        headers: BTreeMap::from([("n".to_string(), i.to_string().into_bytes())]),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
}

#[test]
fn produce_and_fetch_with_every_codec() {
    let server = TestServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        client.controller_client().unwrap().create_topic("rs", 2, 1, 5000).await.unwrap();
        let topics = client.list_topics().await.unwrap();
        let t = topics.iter().find(|t| t.name == "rs").expect("topic listed");
        assert_eq!(t.partitions.len(), 2);

        let codecs = [
            Compression::NoCompression,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Snappy,
            Compression::Zstd,
        ];
        let pc = client.partition_client("rs", 1, UnknownTopicHandling::Error).await.unwrap();
        let mut expected = Vec::new();
        for (round, codec) in codecs.into_iter().enumerate() {
            let batch: Vec<Record> = (0..20).map(|i| record(round * 20 + i)).collect();
            let offsets = pc.produce(batch.clone(), codec).await.unwrap();
            assert_eq!(offsets, ((round * 20) as i64..(round * 20 + 20) as i64).collect::<Vec<_>>());
            expected.extend(batch);
        }
        assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), 100);
        assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 0);

        let mut got = Vec::new();
        let mut offset = 0;
        while got.len() < expected.len() {
            let (records, high_watermark) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
            assert_eq!(high_watermark, 100);
            for r in records {
                assert_eq!(r.offset, offset, "offsets contiguous");
                offset += 1;
                got.push(r.record);
            }
        }
        assert_eq!(got, expected);

        // The other partition is untouched.
        let p0 = client.partition_client("rs", 0, UnknownTopicHandling::Error).await.unwrap();
        assert_eq!(p0.get_offset(OffsetAt::Latest).await.unwrap(), 0);
    });
}

#[test]
fn unknown_partition_and_offset_out_of_range_are_errors() {
    let server = TestServer::start_with(|c| c.auto_create_topics = false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
        assert!(client.partition_client("missing", 0, UnknownTopicHandling::Error).await.is_err());
        client.controller_client().unwrap().create_topic("one", 1, 1, 5000).await.unwrap();
        let pc = client.partition_client("one", 0, UnknownTopicHandling::Error).await.unwrap();
        pc.produce(vec![record(0)], Compression::NoCompression).await.unwrap();
        let err = pc.fetch_records(5, 1..1_000_000, 100).await.unwrap_err();
        assert!(format!("{err:?}").contains("OffsetOutOfRange"), "{err:?}");
    });
}
