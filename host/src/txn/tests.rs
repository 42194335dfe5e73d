//! The transaction coordinator over a real embedded log: the commit protocol, fencing, the
//! timeout, transactional offsets, KIP-890's append check, and recovery from every state a
//! crash can leave (prepare written; markers partly written; complete written).

use super::*;
use crate::coord::{CoordConfig, GroupConfig};
use crate::record::batch::testing::transactional_batch;
use crate::storage::embedded::EmbeddedLog;
use crate::storage::{Isolation, LogDefaults};
use std::path::Path;

const T: &str = "public";

fn open_log(dir: &Path) -> Arc<dyn Log> {
    Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap())
}

fn groups(log: &Arc<dyn Log>) -> Arc<crate::coord::Coordinator> {
    let config = CoordConfig {
        namespace: "default".into(),
        group: GroupConfig {
            initial_rebalance_delay: std::time::Duration::ZERO,
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 100_000,
        },
        offset_metadata_max_bytes: 100,
    };
    Arc::new(crate::coord::Coordinator::open(log.clone(), config, &[T]).unwrap())
}

async fn open(log: &Arc<dyn Log>) -> (Coordinator, Arc<crate::coord::Coordinator>) {
    let g = groups(log);
    let c = Coordinator::new(log.clone(), g.clone(), TxnConfig::default());
    c.open_tenants(&[T]).await.unwrap();
    (c, g)
}

fn topic(name: &str) -> TopicName {
    TopicName::new(T, "default", name)
}

async fn create(log: &Arc<dyn Log>, name: &str, partitions: i32) {
    log.create_topic(&topic(name), partitions, &[], false).await.unwrap();
}

fn tp(name: &str, p: i32) -> (String, i32) {
    (name.to_string(), p)
}

/// Append `n` transactional records of `producer` (sequence `seq`) after the coordinator's
/// check, as the host's append path does.
async fn send(
    c: &Coordinator,
    log: &Arc<dyn Log>,
    name: &str,
    p: i32,
    producer: Producer,
    seq: i32,
    n: usize,
) {
    c.verify_append(T, name, p, producer).await.unwrap();
    let batch = transactional_batch(n, producer.id, producer.epoch, seq);
    log.append(&topic(name), p, batch.into()).await.unwrap();
}

/// EndTxn at transaction version 1: its error code.
async fn end_v1(c: &Coordinator, id: &str, p: Producer, commit: bool) -> i16 {
    c.end(T, id, p, commit, false).await.err().unwrap_or(codes::NONE)
}

/// (high watermark, last stable offset, aborted producer ids) of a read_committed read from 0.
async fn committed_view(log: &Arc<dyn Log>, name: &str, p: i32) -> (i64, i64, Vec<i64>) {
    let r = log.read_with(&topic(name), p, 0, 1 << 20, true, Isolation::ReadCommitted).await.unwrap();
    (r.high_watermark, r.last_stable_offset, r.aborted.iter().map(|a| a.producer_id).collect())
}

#[tokio::test]
async fn a_committed_transaction_moves_the_last_stable_offset_past_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 2).await;
    let (c, _) = open(&log).await;
    let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    assert_eq!(p.epoch, 0);
    assert_eq!(c.add_partitions(T, "tx", p, &[tp("t", 0), tp("t", 1)]).await, vec![0, 0]);
    send(&c, &log, "t", 0, p, 0, 3).await;
    send(&c, &log, "t", 1, p, 0, 2).await;
    assert_eq!(committed_view(&log, "t", 0).await, (3, 0, vec![]), "open: nothing stable");
    assert_eq!(c.describe(T, &["tx".into()]).await[0].state, "Ongoing");
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::NONE);
    // Records and the commit marker.
    assert_eq!(committed_view(&log, "t", 0).await, (4, 4, vec![]));
    assert_eq!(committed_view(&log, "t", 1).await, (3, 3, vec![]));
    assert_eq!(c.describe(T, &["tx".into()]).await[0].state, "CompleteCommit");
    // A retried EndTxn is answered again; the opposite outcome is refused.
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::NONE);
    assert_eq!(end_v1(&c, "tx", p, false).await, codes::INVALID_TXN_STATE);
    // KIP-890: after the commit, a late transactional batch does not open a new transaction.
    assert_eq!(c.verify_append(T, "t", 0, p).await, Err(codes::INVALID_TXN_STATE));
}

#[tokio::test]
async fn an_aborted_transaction_is_listed_for_read_committed_readers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, p, 0, 2).await;
    assert_eq!(end_v1(&c, "tx", p, false).await, codes::NONE);
    assert_eq!(committed_view(&log, "t", 0).await, (3, 3, vec![p.id]));
    // The next transaction of the same producer commits.
    c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, p, 2, 1).await;
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::NONE);
    let (hw, lso, aborted) = committed_view(&log, "t", 0).await;
    assert_eq!((hw, lso, aborted), (5, 5, vec![p.id]));
}

#[tokio::test]
async fn a_new_instance_fences_the_old_one_and_aborts_what_it_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let old = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    c.add_partitions(T, "tx", old, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, old, 0, 2).await;
    let new = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    assert_eq!((new.id, new.epoch), (old.id, old.epoch + 2), "fenced (+1, the abort's) and bumped (+1)");
    assert_eq!(committed_view(&log, "t", 0).await, (3, 3, vec![old.id]), "the open transaction was aborted");
    // The zombie is fenced everywhere.
    assert_eq!(c.add_partitions(T, "tx", old, &[tp("t", 0)]).await, vec![codes::PRODUCER_FENCED]);
    assert_eq!(end_v1(&c, "tx", old, true).await, codes::PRODUCER_FENCED);
    assert_eq!(c.verify_append(T, "t", 0, old).await, Err(codes::INVALID_PRODUCER_EPOCH));
    let zombie = transactional_batch(1, old.id, old.epoch, 2);
    let refused = log.append(&topic("t"), 0, zombie.into()).await.unwrap_err();
    assert_eq!(
        refused.kafka_code(),
        codes::INVALID_PRODUCER_EPOCH,
        "the abort marker moved the partition's epoch"
    );
    // KIP-360: only the current producer may bump its epoch.
    assert_eq!(c.init_producer_id(T, "tx", 60_000, Some(old)).await, Err(codes::PRODUCER_FENCED));
    let bumped = c.init_producer_id(T, "tx", 60_000, Some(new)).await.unwrap();
    assert_eq!(bumped.epoch, new.epoch + 1);
    assert_eq!(c.init_producer_id(T, "tx", 0, None).await, Err(codes::INVALID_TRANSACTION_TIMEOUT));
    assert_eq!(c.init_producer_id(T, "tx", 900_001, None).await, Err(codes::INVALID_TRANSACTION_TIMEOUT));
}

#[tokio::test]
async fn calls_out_of_order_get_kafkas_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let unknown = Producer { id: 7, epoch: 0 };
    assert_eq!(end_v1(&c, "nobody", unknown, true).await, codes::INVALID_PRODUCER_ID_MAPPING);
    let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::INVALID_TXN_STATE, "nothing open");
    let other = Producer { id: p.id + 1, epoch: 0 };
    assert_eq!(
        c.add_partitions(T, "tx", other, &[tp("t", 0)]).await,
        vec![codes::INVALID_PRODUCER_ID_MAPPING]
    );
    assert_eq!(
        c.add_partitions(T, "tx", p, &[tp("t", 0), tp("missing", 0), tp("t", 5)]).await,
        vec![
            codes::OPERATION_NOT_ATTEMPTED,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    // A partition the transaction does not hold.
    assert_eq!(c.verify_append(T, "t", 0, p).await, Err(codes::INVALID_TXN_STATE));
    // Offsets before AddOffsetsToTxn.
    let o = OffsetCommit { topic: "t".into(), partition: 0, offset: 1, leader_epoch: -1, metadata: None };
    assert_eq!(
        c.commit_offsets(T, "tx", p, "g", -1, "", None, std::slice::from_ref(&o)).await,
        vec![codes::INVALID_TXN_STATE]
    );
}

#[tokio::test]
async fn transactional_offsets_become_visible_when_the_transaction_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "in", 1).await;
    create(&log, "out", 1).await;
    let (c, g) = open(&log).await;
    let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    let parts = [("in".to_string(), 0)];
    let o = OffsetCommit {
        topic: "in".into(),
        partition: 0,
        offset: 42,
        leader_epoch: -1,
        metadata: Some("m".into()),
    };
    for commit in [false, true] {
        c.add_partitions(T, "tx", p, &[tp("out", 0)]).await;
        assert_eq!(c.add_offsets(T, "tx", p, "g").await, codes::NONE);
        assert_eq!(c.commit_offsets(T, "tx", p, "g", -1, "", None, std::slice::from_ref(&o)).await, vec![0]);
        assert_eq!(c.pending_offsets(T, "g", &parts).await, vec![true]);
        assert_eq!(
            g.fetch_offsets(T, "g", Some(&parts)).await.unwrap()[0].offset,
            -1,
            "not before the commit"
        );
        assert_eq!(end_v1(&c, "tx", p, commit).await, codes::NONE);
        assert_eq!(c.pending_offsets(T, "g", &parts).await, vec![false]);
        let expected = if commit { 42 } else { -1 };
        assert_eq!(
            g.fetch_offsets(T, "g", Some(&parts)).await.unwrap()[0].offset,
            expected,
            "commit={commit}"
        );
    }
    // KIP-447: a member id the group does not know.
    c.add_offsets(T, "tx", p, "g").await;
    let refused = c.commit_offsets(T, "tx", p, "g", 3, "stranger", None, std::slice::from_ref(&o)).await;
    assert_eq!(refused, vec![codes::UNKNOWN_MEMBER_ID]);
}

#[tokio::test]
async fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let p = c.init_producer_id(T, "tx", 1, None).await.unwrap();
    c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, p, 0, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.tick().await;
    let d = &c.describe(T, &["tx".into()]).await[0];
    assert_eq!((d.state, d.producer.epoch), ("CompleteAbort", p.epoch + 1));
    assert_eq!(committed_view(&log, "t", 0).await, (2, 2, vec![p.id]));
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::PRODUCER_FENCED);
}

/// What a crash can leave: the prepared state stored, and markers on none, some or all of the
/// transaction's partitions. A new coordinator over the same log finishes the transaction.
#[tokio::test]
async fn recovery_finishes_a_transaction_interrupted_at_any_step_of_the_commit() {
    for markers_written in 0..=2usize {
        for commit in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let log = open_log(dir.path());
            create(&log, "t", 2).await;
            create(&log, "in", 1).await;
            let p = {
                let (c, _) = open(&log).await;
                let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
                c.add_partitions(T, "tx", p, &[tp("t", 0), tp("t", 1)]).await;
                c.add_offsets(T, "tx", p, "g").await;
                let o = OffsetCommit {
                    topic: "in".into(),
                    partition: 0,
                    offset: 9,
                    leader_epoch: -1,
                    metadata: None,
                };
                c.commit_offsets(T, "tx", p, "g", -1, "", None, &[o]).await;
                send(&c, &log, "t", 0, p, 0, 2).await;
                send(&c, &log, "t", 1, p, 0, 2).await;
                // The crash: the prepared state is stored and some markers written, then nothing.
                let tenant = c.tenant(T).await.unwrap();
                let mut meta = tenant.view.lock().ids.get("tx").cloned().unwrap();
                meta.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                c.store(T, &tenant, "tx", &meta).await.unwrap();
                let marker =
                    TxnMarker { producer_id: p.id, producer_epoch: p.epoch, commit, coordinator_epoch: 0 };
                for part in 0..markers_written {
                    log.write_marker(&topic("t"), part as i32, marker).await.unwrap();
                }
                p
            };
            // The restart: the log reopened, a new coordinator.
            drop(log);
            let log = open_log(dir.path());
            let (c, g) = open(&log).await;
            let case = format!("markers written: {markers_written}, commit: {commit}");
            let d = &c.describe(T, &["tx".into()]).await[0];
            assert_eq!(d.state, if commit { "CompleteCommit" } else { "CompleteAbort" }, "{case}");
            for part in 0..2 {
                let (hw, lso, aborted) = committed_view(&log, "t", part).await;
                assert_eq!(lso, hw, "{case}: stable on partition {part}");
                assert_eq!(aborted.is_empty(), commit, "{case}");
            }
            let offset = g.fetch_offsets(T, "g", Some(&[("in".to_string(), 0)])).await.unwrap()[0].offset;
            assert_eq!(offset, if commit { 9 } else { -1 }, "{case}");
            // The producer goes on after the restart.
            assert_eq!(c.add_partitions(T, "tx", p, &[tp("t", 0)]).await, vec![0], "{case}");
        }
    }
}

/// A crash after a commit applied its offsets and before it was complete: the group committed
/// a later offset meanwhile, which recovery, applying the transaction's offsets again, keeps.
#[tokio::test]
async fn recovery_does_not_move_an_offset_committed_after_the_transactions_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "in", 1).await;
    let commit =
        |offset| OffsetCommit { topic: "in".into(), partition: 0, offset, leader_epoch: -1, metadata: None };
    {
        let (c, g) = open(&log).await;
        let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
        c.add_offsets(T, "tx", p, "g").await;
        c.commit_offsets(T, "tx", p, "g", -1, "", None, &[commit(9)]).await;
        let tenant = c.tenant(T).await.unwrap();
        let mut meta = tenant.view.lock().ids.get("tx").cloned().unwrap();
        meta.state = TxnState::PrepareCommit;
        c.store(T, &tenant, "tx", &meta).await.unwrap();
        for (group, offsets) in meta.offsets_by_group() {
            g.apply_txn_offsets(T, &group, &offsets).await.unwrap();
        }
        // Later (a clock tick at least), outside the transaction.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let codes = g.commit_offsets(T, "g", -1, "", None, &[commit(20)], std::time::Instant::now()).await;
        assert_eq!(codes, [codes::NONE]);
    }
    drop(log);
    let log = open_log(dir.path());
    let (c, g) = open(&log).await;
    assert_eq!(c.describe(T, &["tx".into()]).await[0].state, "CompleteCommit");
    let offset = g.fetch_offsets(T, "g", Some(&[("in".to_string(), 0)])).await.unwrap()[0].offset;
    assert_eq!(offset, 20, "the later commit stays");
}

#[tokio::test]
async fn an_open_transaction_survives_a_restart_and_can_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let p = {
        let (c, _) = open(&log).await;
        let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
        c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
        send(&c, &log, "t", 0, p, 0, 3).await;
        p
    };
    drop(log);
    let log = open_log(dir.path());
    let (c, _) = open(&log).await;
    assert_eq!(committed_view(&log, "t", 0).await, (3, 0, vec![]));
    send(&c, &log, "t", 0, p, 3, 1).await;
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::NONE);
    assert_eq!(committed_view(&log, "t", 0).await, (5, 5, vec![]));
    let listed = c.list(T, &[], &[], -1).await;
    assert_eq!(listed, vec![("tx".to_string(), p.id, "CompleteCommit")]);
}

/// KIP-890: an append that passed the coordinator's check and then waited (a slow disk, a
/// transform) cannot open a transaction after its producer's abort: the partition itself
/// refuses it, so its last stable offset cannot freeze.
#[tokio::test]
async fn a_late_append_after_the_abort_cannot_open_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, p, 0, 1).await;
    assert_eq!(end_v1(&c, "tx", p, false).await, codes::NONE);
    // The late batch: same producer, same epoch, the next sequence.
    let late = transactional_batch(1, p.id, p.epoch, 1);
    let refused = log.append(&topic("t"), 0, late.into()).await.unwrap_err();
    assert_eq!(refused.kafka_code(), codes::INVALID_TXN_STATE, "{refused}");
    assert_eq!(committed_view(&log, "t", 0).await, (2, 2, vec![p.id]), "nothing open");
    // The producer's next transaction registers the partition again.
    c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, p, 1, 1).await;
    assert_eq!(end_v1(&c, "tx", p, true).await, codes::NONE);
    assert_eq!(committed_view(&log, "t", 0).await, (4, 4, vec![p.id]));
}

/// KIP-360: only the producer that named itself may retry its InitProducerId; after a new
/// instance's bump the old one is fenced, not let back in at the new epoch.
#[tokio::test]
async fn an_old_instance_cannot_take_the_new_ones_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let (c, _) = open(&log).await;
    let a = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    let b = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    assert_eq!(c.init_producer_id(T, "tx", 60_000, Some(a)).await, Err(codes::PRODUCER_FENCED));
    // B's own bump, and a retry of it (its answer lost), get the same epoch.
    let bumped = c.init_producer_id(T, "tx", 60_000, Some(b)).await.unwrap();
    assert_eq!(c.init_producer_id(T, "tx", 60_000, Some(b)).await, Ok(bumped));
}

/// A tenant nobody uses after a restart still has its open transactions timed out: the host
/// loads every tenant that has a transaction log.
#[tokio::test]
async fn every_tenant_with_a_transaction_log_is_loaded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let other = TopicName::new("other", "default", "t");
    log.create_topic(&other, 1, &[], false).await.unwrap();
    {
        let (c, _) = open(&log).await;
        let p = c.init_producer_id("other", "tx", 1, None).await.unwrap();
        c.add_partitions("other", "tx", p, &[tp("t", 0)]).await;
        c.verify_append("other", "t", 0, p).await.unwrap();
        log.append(&other, 0, transactional_batch(1, p.id, p.epoch, 0).into()).await.unwrap();
    }
    drop(log);
    let log = open_log(dir.path());
    let (c, _) = open(&log).await; // opens "public" by name, "other" because it has a log
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.tick().await;
    let r = log.read_with(&other, 0, 0, 1 << 20, true, Isolation::ReadCommitted).await.unwrap();
    assert_eq!((r.high_watermark, r.last_stable_offset), (2, 2), "aborted by the timeout");
}

#[tokio::test]
async fn the_append_check_names_the_transactional_id_of_the_batches_producer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let owner = c.init_producer_id(T, "owner", 60_000, None).await.unwrap();
    assert_eq!(c.add_partitions(T, "owner", owner, &[tp("t", 0)]).await, vec![0]);
    // The host checks the principal's WRITE on this id, whatever id the Produce named.
    assert_eq!(c.verify_append(T, "t", 0, owner).await, Ok("owner".to_string()));
}

/// EndTxn at transaction version 2: its error code.
async fn end_v2(c: &Coordinator, id: &str, p: Producer, commit: bool) -> Result<Producer, i16> {
    c.end(T, id, p, commit, true).await
}

#[tokio::test]
async fn at_transaction_version_2_each_transaction_ends_at_the_next_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    let p0 = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    assert_eq!(c.add_partitions(T, "tx", p0, &[tp("t", 0)]).await, vec![0]);
    send(&c, &log, "t", 0, p0, 0, 2).await;
    let p1 = end_v2(&c, "tx", p0, true).await.unwrap();
    assert_eq!(p1, Producer { id: p0.id, epoch: p0.epoch + 1 });
    assert_eq!(committed_view(&log, "t", 0).await, (3, 3, vec![]), "the marker closed the transaction");
    // The answer was lost: the retry gets the same, the other outcome is refused.
    assert_eq!(end_v2(&c, "tx", p0, true).await, Ok(p1));
    assert_eq!(end_v2(&c, "tx", p0, false).await, Err(codes::INVALID_TXN_STATE));
    // The old epoch is done: it can neither add nor append.
    assert_eq!(c.add_partitions(T, "tx", p0, &[tp("t", 0)]).await, vec![codes::PRODUCER_FENCED]);
    assert_eq!(c.verify_append(T, "t", 0, p0).await, Err(codes::INVALID_PRODUCER_EPOCH));
    // The next transaction, at the new epoch, starts its sequence at 0 on the partition.
    assert_eq!(c.add_partitions(T, "tx", p1, &[tp("t", 0)]).await, vec![0]);
    send(&c, &log, "t", 0, p1, 0, 1).await;
    let p2 = end_v2(&c, "tx", p1, false).await.unwrap();
    assert_eq!(p2.epoch, p0.epoch + 2);
    // (The test batches' timestamps are old: each append rolls a segment, and a read stops at
    // the end of one; the abort's batch is at offset 3.)
    let r = log.read_with(&topic("t"), 0, 3, 1 << 20, true, Isolation::ReadCommitted).await.unwrap();
    let aborted: Vec<(i64, i64, i64)> =
        r.aborted.iter().map(|a| (a.producer_id, a.first_offset, a.last_offset)).collect();
    assert_eq!((r.last_stable_offset, aborted), (5, vec![(p0.id, 3, 4)]));
    assert_eq!(end_v2(&c, "tx", p1, false).await, Ok(p2), "a retried abort");
    assert_eq!(end_v2(&c, "tx", p1, true).await, Err(codes::INVALID_TXN_STATE));
    // Older still, or newer than the coordinator's: fenced.
    assert_eq!(end_v2(&c, "tx", p0, false).await, Err(codes::PRODUCER_FENCED));
    let ahead = Producer { id: p2.id, epoch: p2.epoch + 1 };
    assert_eq!(end_v2(&c, "tx", ahead, false).await, Err(codes::PRODUCER_FENCED));
    let other = Producer { id: p2.id + 1000, epoch: p2.epoch };
    assert_eq!(end_v2(&c, "tx", other, false).await, Err(codes::INVALID_PRODUCER_ID_MAPPING));
    let d = &c.describe(T, &["tx".into()]).await[0];
    assert_eq!((d.state, d.producer), ("CompleteAbort", p2));
}

#[tokio::test]
async fn at_transaction_version_2_an_abort_with_nothing_open_bumps_and_a_commit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let (c, _) = open(&log).await;
    let p = c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
    assert_eq!(end_v2(&c, "tx", p, true).await, Err(codes::INVALID_TXN_STATE), "commit from Empty");
    let next = end_v2(&c, "tx", p, false).await.unwrap();
    assert_eq!(next, Producer { id: p.id, epoch: p.epoch + 1 }, "an empty abort");
    let d = &c.describe(T, &["tx".into()]).await[0];
    assert_eq!((d.state, d.partitions.len()), ("CompleteAbort", 0));
    // From CompleteAbort at the current epoch: another empty abort; a commit is refused.
    assert_eq!(end_v2(&c, "tx", next, true).await, Err(codes::INVALID_TXN_STATE));
    assert_eq!(end_v2(&c, "tx", next, false).await.unwrap().epoch, p.epoch + 2);
}

/// Set the stored epoch of `id` to `epoch` (as if that many transactions had ended).
async fn set_epoch(c: &Coordinator, id: &str, epoch: i16) -> Producer {
    let tenant = c.tenant(T).await.unwrap();
    let slot = tenant.ids.lock().get(id).cloned().unwrap();
    let mut guard = slot.lock().await;
    let meta = guard.as_mut().unwrap();
    meta.epoch = epoch;
    c.store(T, &tenant, id, meta).await.unwrap();
    Producer { id: meta.producer_id, epoch }
}

#[tokio::test]
async fn at_transaction_version_2_an_exhausted_epoch_moves_to_a_new_producer_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (old, new) = {
        let (c, _) = open(&log).await;
        c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
        let old = set_epoch(&c, "tx", crate::storage::producers::MAX_EPOCH).await;
        assert_eq!(c.add_partitions(T, "tx", old, &[tp("t", 0)]).await, vec![0]);
        send(&c, &log, "t", 0, old, 0, 1).await;
        let new = end_v2(&c, "tx", old, true).await.unwrap();
        assert_ne!(new.id, old.id);
        assert_eq!(new.epoch, 0);
        // The marker carried the old id at the next epoch; the commit is visible.
        assert_eq!(committed_view(&log, "t", 0).await, (2, 2, vec![]));
        // A retry with the old producer is answered with the new one.
        assert_eq!(end_v2(&c, "tx", old, true).await, Ok(new));
        assert_eq!(end_v2(&c, "tx", old, false).await, Err(codes::INVALID_TXN_STATE));
        (old, new)
    };
    // After a restart the new producer id goes on.
    drop(log);
    let log = open_log(dir.path());
    let (c, _) = open(&log).await;
    assert_eq!(end_v2(&c, "tx", old, true).await, Ok(new), "the rotation is stored");
    assert_eq!(c.add_partitions(T, "tx", new, &[tp("t", 0)]).await, vec![0]);
    send(&c, &log, "t", 0, new, 0, 1).await;
    assert_eq!(end_v2(&c, "tx", new, true).await.unwrap(), Producer { id: new.id, epoch: 1 });
}

/// A crash after the prepare of a rotating EndTxn: the next coordinator writes the markers at
/// the bumped epoch of the old producer id and moves to the id the prepare named.
#[tokio::test]
async fn at_transaction_version_2_recovery_finishes_a_rotation_the_prepare_decided() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (old, next) = {
        let (c, _) = open(&log).await;
        c.init_producer_id(T, "tx", 60_000, None).await.unwrap();
        let old = set_epoch(&c, "tx", crate::storage::producers::MAX_EPOCH).await;
        c.add_partitions(T, "tx", old, &[tp("t", 0)]).await;
        send(&c, &log, "t", 0, old, 0, 1).await;
        let tenant = c.tenant(T).await.unwrap();
        let mut meta = tenant.view.lock().ids.get("tx").cloned().unwrap();
        meta.bump_epoch(true);
        meta.next_producer_id = log.allocate_producer_id().await.unwrap();
        meta.state = TxnState::PrepareAbort;
        c.store(T, &tenant, "tx", &meta).await.unwrap();
        (old, meta.next_producer_id)
    };
    drop(log);
    let log = open_log(dir.path());
    let (c, _) = open(&log).await;
    let d = &c.describe(T, &["tx".into()]).await[0];
    assert_eq!((d.state, d.producer), ("CompleteAbort", Producer { id: next, epoch: 0 }));
    assert_eq!(committed_view(&log, "t", 0).await, (2, 2, vec![old.id]));
    assert_eq!(end_v2(&c, "tx", old, false).await, Ok(Producer { id: next, epoch: 0 }));
}

/// A timeout at the last usable epoch saturates it (as Kafka 4.0 does); the client's abort is
/// answered with it, and its next transaction moves to a new producer id, which a retry of that
/// EndTxn with the saturated epoch is answered with too. Only the exhausted epoch of the
/// previous producer id counts as such a retry.
#[tokio::test]
async fn at_transaction_version_2_a_timeout_at_the_last_epoch_still_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    create(&log, "t", 1).await;
    let (c, _) = open(&log).await;
    c.init_producer_id(T, "tx", 1, None).await.unwrap();
    let p = set_epoch(&c, "tx", crate::storage::producers::MAX_EPOCH).await;
    c.add_partitions(T, "tx", p, &[tp("t", 0)]).await;
    send(&c, &log, "t", 0, p, 0, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.tick().await;
    let saturated = Producer { id: p.id, epoch: i16::MAX };
    assert_eq!(end_v2(&c, "tx", p, false).await, Ok(saturated), "the abort the timeout did");
    assert_eq!(c.add_partitions(T, "tx", saturated, &[tp("t", 0)]).await, vec![0]);
    send(&c, &log, "t", 0, saturated, 0, 1).await;
    let new = end_v2(&c, "tx", saturated, true).await.unwrap();
    assert_ne!(new.id, p.id);
    assert_eq!(new.epoch, 0);
    assert_eq!(end_v2(&c, "tx", saturated, true).await, Ok(new), "a retry after the rotation");
    let older = Producer { id: p.id, epoch: crate::storage::producers::MAX_EPOCH - 1 };
    assert_eq!(end_v2(&c, "tx", older, true).await, Err(codes::INVALID_PRODUCER_ID_MAPPING));
    let r = log.read_with(&topic("t"), 0, 2, 1 << 20, true, Isolation::ReadCommitted).await.unwrap();
    assert_eq!((r.high_watermark, r.last_stable_offset), (4, 4), "both transactions are closed");
}
