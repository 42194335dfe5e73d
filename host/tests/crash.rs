//! Durability across a crash of the `guise` process: produce with acks=all while the host is
//! killed with SIGKILL, restart it on the same data directory, and check that every acknowledged
//! record is there exactly once and in order, and that the log takes new writes at the right
//! offset.
//!
//! SIGKILL ends the process, not the machine: what this proves is that an acknowledged produce is
//! in the operating system's page cache before the response is sent. Whether it would survive a
//! power loss depends on the fsync policy, which a process kill cannot observe; the test runs
//! with `fsync = "never"` to show that process-crash durability does not rest on fsync.

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Host;

/// `guise serve` without fsync (see above).
fn start(data: &std::path::Path, port: u16) -> Host {
    // The records are stamped 2023: no time retention, which would delete them at the restart.
    Host::start(data, port, 0, &[("GUISE_FSYNC", "never"), ("GUISE_RETENTION_MS", "-1")])
}

fn record(i: usize) -> Record {
    Record {
        key: Some(i.to_be_bytes().to_vec()),
        value: Some(format!("record-{i:08}").into_bytes()),
        headers: Default::default(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = start(&data, 0);
    let port = host.kafka;
    let bootstrap = vec![format!("127.0.0.1:{port}")];

    // Produce batches of 10 (acks=all) as fast as they are acknowledged, until the kill.
    // rskafka retries a dead broker forever, so the producer task is aborted after the kill and
    // what was acknowledged is shared as it happens.
    let acked = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<(i64, usize)>>> = Arc::default();
    let producer = {
        let (acked, bootstrap, log) = (acked.clone(), bootstrap.clone(), log.clone());
        rt.spawn(async move {
            let client = ClientBuilder::new(bootstrap).build().await.unwrap();
            client.controller_client().unwrap().create_topic("crash", 1, 1, 5000).await.unwrap();
            let pc = client.partition_client("crash", 0, UnknownTopicHandling::Retry).await.unwrap();
            let mut next = 0;
            loop {
                let batch: Vec<Record> = (next..next + 10).map(record).collect();
                let Ok(offsets) = pc.produce(batch, Compression::NoCompression).await else { return };
                let mut log = log.lock().unwrap();
                log.extend(offsets.into_iter().zip(next..next + 10));
                next += 10;
                acked.store(log.len(), Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < 2000 {
        assert!(Instant::now() < deadline, "producing stalled before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    host.kill9();
    producer.abort();
    let _ = rt.block_on(producer);
    let acknowledged = log.lock().unwrap().clone();
    assert!(acknowledged.len() >= 2000);

    let host = start(&data, port);
    let (stored, end) = rt.block_on(async {
        let client = ClientBuilder::new(bootstrap.clone()).build().await.unwrap();
        let pc = client.partition_client("crash", 0, UnknownTopicHandling::Error).await.unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        let mut stored = Vec::new();
        while (stored.len() as i64) < end {
            let (records, _) = pc.fetch_records(stored.len() as i64, 1..1_000_000, 1000).await.unwrap();
            for r in records {
                assert_eq!(r.offset, stored.len() as i64, "offsets are contiguous");
                stored.push(r.record.value.unwrap());
            }
        }
        // The log accepts new writes at the right offset.
        let new = pc.produce(vec![record(999_999)], Compression::NoCompression).await.unwrap();
        assert_eq!(new, vec![end]);
        (stored, end)
    });
    host.kill9();

    // Every acknowledged record is there, at its acknowledged offset.
    for (offset, i) in &acknowledged {
        assert_eq!(stored.get(*offset as usize), Some(&record(*i).value.unwrap()), "offset {offset}");
    }
    // Exactly once and in order: at most the unacknowledged in-flight batch follows.
    assert!(end as usize >= acknowledged.len() && end as usize <= acknowledged.len() + 10, "end {end}");
    for (n, value) in stored.iter().enumerate() {
        assert_eq!(value, &record(n).value.unwrap(), "record {n} out of order or duplicated");
    }
}
