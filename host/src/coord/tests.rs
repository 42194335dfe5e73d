//! The coordinator over a real embedded log: offsets and groups, their persistence and replay,
//! change counters, and the lag view.

use super::consumer::testing::{assignment, subscription};
use super::*;
use crate::record::batch::testing::batch;
use crate::storage::LogDefaults;
use crate::storage::embedded::EmbeddedLog;
use std::path::Path;

const T: &str = "public";

fn config() -> CoordConfig {
    CoordConfig {
        namespace: "default".into(),
        group: GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 100_000,
        },
        offset_metadata_max_bytes: 10,
    }
}

fn open_log(dir: &Path) -> Arc<EmbeddedLog> {
    Arc::new(EmbeddedLog::open(dir, LogDefaults::default()).unwrap())
}

fn open(log: &Arc<EmbeddedLog>) -> Coordinator {
    Coordinator::open(log.clone(), config(), &[T]).unwrap()
}

fn topic(name: &str) -> TopicName {
    TopicName::new(T, "default", name)
}

fn join_req(member_id: &str, conn_id: u64) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol { name: "range".into(), metadata: subscription(&["t"]) }],
        require_known_member: true,
        conn_id,
        ..JoinRequest::default()
    }
}

fn commit(topic: &str, partition: i32, offset: i64, metadata: Option<&str>) -> OffsetCommit {
    OffsetCommit {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 3,
        metadata: metadata.map(str::to_string),
    }
}

/// A stable one-member group "g" (generation 1) with partitions 0-2 of "t" assigned.
fn stable(coord: &Coordinator, now: Instant) -> String {
    let Step::Done(r) = wait(coord.join(T, &join_req("", 1), now)) else { panic!() };
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    let id = r.member_id;
    let Step::Done(r) = wait(coord.join(T, &join_req(&id, 1), now)) else { panic!() };
    assert_eq!((r.error, r.generation_id), (NONE, 1));
    let sync = SyncRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: id.clone(),
        assignments: vec![(id.clone(), assignment(&[("t", &[0, 1, 2])]))],
        ..SyncRequest::default()
    };
    let Step::Done(s) = wait(coord.sync(T, &sync, now)) else { panic!() };
    assert_eq!(s.error, NONE);
    id
}

#[test]
fn commits_fetches_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let member = {
        let log = open_log(dir.path());
        log.create_topic(&topic("t"), 3, &[], false).unwrap();
        let coord = open(&log);
        let member = stable(&coord, now);
        let codes = wait(coord.commit_offsets(
            T,
            "g",
            1,
            &member,
            None,
            &[
                commit("t", 0, 5, Some("m")),
                commit("t", 1, 7, None),
                commit("t", 3, 1, None),
                commit("nope", 0, 1, None),
                commit("t", 2, 1, Some("far too long metadata")),
            ],
            now,
        ));
        assert_eq!(
            codes,
            vec![
                NONE,
                NONE,
                UNKNOWN_TOPIC_OR_PARTITION,
                UNKNOWN_TOPIC_OR_PARTITION,
                OFFSET_METADATA_TOO_LARGE
            ]
        );
        // Later commits win.
        assert_eq!(
            wait(coord.commit_offsets(T, "g", 1, &member, None, &[commit("t", 1, 8, None)], now)),
            vec![NONE]
        );
        let all = wait(coord.fetch_offsets(T, "g", None)).unwrap();
        assert_eq!(all.iter().map(|c| (c.partition, c.offset)).collect::<Vec<_>>(), vec![(0, 5), (1, 8)]);
        assert_eq!(all[0].metadata.as_deref(), Some("m"));
        assert_eq!(all[0].leader_epoch, 3);
        let some = wait(coord.fetch_offsets(T, "g", Some(&[("t".into(), 2), ("t".into(), 0)]))).unwrap();
        assert_eq!(some.iter().map(|c| (c.partition, c.offset)).collect::<Vec<_>>(), vec![(2, -1), (0, 5)]);
        // The internal topic exists, kept forever, and is reported internal by the log glue.
        let meta = log.topic(&topic(records::OFFSETS_TOPIC)).unwrap();
        assert_eq!((meta.partitions, meta.config.retention_ms, meta.config.retention_bytes), (1, -1, -1));
        member
    };
    // A restart: a new log and coordinator over the same directory.
    let log = open_log(dir.path());
    let coord = open(&log);
    let all = wait(coord.fetch_offsets(T, "g", None)).unwrap();
    assert_eq!(all.iter().map(|c| (c.partition, c.offset)).collect::<Vec<_>>(), vec![(0, 5), (1, 8)]);
    let d = wait(coord.describe(T, "g"));
    assert_eq!(d.state, "Stable");
    assert_eq!(d.protocol_name, "range");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, member);
    assert_eq!(d.members[0].assignment, assignment(&[("t", &[0, 1, 2])]));
    // The member carries on in its generation, and its session runs from the restart.
    let later = Instant::now();
    assert_eq!(wait(coord.heartbeat(T, "g", 1, &member, None, later)), NONE);
    let sync = SyncRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: member.clone(),
        ..SyncRequest::default()
    };
    assert_eq!(
        wait(coord.sync(T, &sync, later)),
        Step::Done(SyncResult {
            error: NONE,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: assignment(&[("t", &[0, 1, 2])]),
        })
    );
    wait(coord.tick(later + Duration::from_millis(10_001)));
    assert_eq!(wait(coord.describe(T, "g")).state, "Empty", "expired without heartbeats");
    // The emptied group is persisted too.
    drop(coord);
    let coord = open(&log);
    let d = wait(coord.describe(T, "g"));
    assert_eq!((d.state.as_str(), d.members.len()), ("Empty", 0));
    assert_eq!(wait(coord.fetch_offsets(T, "g", None)).unwrap().len(), 2);
}

#[test]
fn simple_commits_and_commit_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&topic("t"), 3, &[], false).unwrap();
    let coord = open(&log);
    let now = Instant::now();
    // A generation into a group nobody knows: an older generation.
    assert_eq!(
        wait(coord.commit_offsets(T, "x", 5, "m", None, &[commit("t", 0, 1, None)], now)),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(wait(coord.describe(T, "x")).state, "Dead", "not created");
    // Outside the group protocol: allowed, and creates the group.
    assert_eq!(wait(coord.commit_offsets(T, "x", -1, "", None, &[commit("t", 0, 1, None)], now)), vec![NONE]);
    assert_eq!(wait(coord.describe(T, "x")).state, "Empty");
    let member = stable(&coord, now);
    assert_eq!(
        wait(coord.commit_offsets(T, "g", -1, "", None, &[commit("t", 0, 1, None)], now)),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert_eq!(
        wait(coord.commit_offsets(T, "g", 2, &member, None, &[commit("t", 0, 1, None)], now)),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(
        wait(coord.commit_offsets(T, "g", 1, "other", None, &[commit("t", 0, 1, None)], now)),
        vec![UNKNOWN_MEMBER_ID]
    );
    assert!(wait(coord.fetch_offsets(T, "g", None)).unwrap().is_empty(), "nothing stored");
}

#[test]
fn a_failed_append_fails_the_commit_with_a_code_clients_understand() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&topic("t"), 1, &[], false).unwrap();
    // An offsets topic that refuses every batch (a full disk would give KAFKA_STORAGE_ERROR).
    let small = [("max.message.bytes".to_string(), "64".to_string())];
    log.create_topic(&topic(records::OFFSETS_TOPIC), 1, &small, false).unwrap();
    let coord = open(&log);
    let now = Instant::now();
    let codes = wait(coord.commit_offsets(
        T,
        "g",
        -1,
        "",
        None,
        &[commit("t", 0, 9, None), commit("u", 0, 1, None)],
        now,
    ));
    // Too large for the offsets topic: INVALID_COMMIT_OFFSET_SIZE, as Kafka's coordinator says.
    assert_eq!(codes, vec![28, UNKNOWN_TOPIC_OR_PARTITION]);
    assert!(wait(coord.fetch_offsets(T, "g", None)).unwrap().is_empty(), "nothing stored");
    // The leader's sync cannot store the assignment: it gets the error, the group rebalances.
    let Step::Done(r) =
        wait(coord.join(T, &JoinRequest { require_known_member: false, ..join_req("", 1) }, now))
    else {
        panic!()
    };
    let sync = SyncRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: r.member_id,
        ..SyncRequest::default()
    };
    let Step::Done(s) = wait(coord.sync(T, &sync, now)) else { panic!() };
    assert_eq!(s.error, -1, "UNKNOWN_SERVER_ERROR, not the storage layer's MESSAGE_TOO_LARGE");
    assert_eq!(wait(coord.describe(T, "g")).state, "PreparingRebalance");
}

#[test]
fn parked_joins_see_the_change_counter() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let coord = open(&log);
    let now = Instant::now();
    let first = stable(&coord, now);
    let Step::Done(r) = wait(coord.join(T, &join_req("", 2), now)) else { panic!() };
    let second = r.member_id;
    let mut rx = coord.subscribe(T, "g");
    let Step::Pending { seq } = wait(coord.join(T, &join_req(&second, 2), now)) else {
        panic!("should wait")
    };
    assert_eq!(seq, coord.group_seq(T, "g"), "the counter after the join's own change");
    assert_eq!(*rx.borrow_and_update(), seq);
    // A re-run changes nothing: same counter.
    assert_eq!(wait(coord.join(T, &join_req(&second, 2), now)), Step::Pending { seq });
    // The first member rejoins: the rebalance completes and the counter moves.
    let Step::Done(r) = wait(coord.join(T, &join_req(&first, 1), now)) else { panic!() };
    assert_eq!(r.generation_id, 2);
    assert!(rx.has_changed().unwrap());
    assert!(coord.group_seq(T, "g") > seq);
    let Step::Done(r) = wait(coord.join(T, &join_req(&second, 2), now)) else { panic!() };
    assert_eq!((r.error, r.generation_id), (NONE, 2));
    // The follower's sync waits for the leader's.
    let follower = SyncRequest {
        group_id: "g".into(),
        generation_id: 2,
        member_id: second.clone(),
        ..SyncRequest::default()
    };
    let Step::Pending { seq } = wait(coord.sync(T, &follower, now)) else { panic!("should wait") };
    let leader = SyncRequest {
        group_id: "g".into(),
        generation_id: 2,
        member_id: first,
        assignments: vec![(second.clone(), b"x".to_vec())],
        ..SyncRequest::default()
    };
    assert!(matches!(wait(coord.sync(T, &leader, now)), Step::Done(SyncResult { error: NONE, .. })));
    assert!(coord.group_seq(T, "g") > seq);
    let Step::Done(s) = wait(coord.sync(T, &follower, now)) else { panic!() };
    assert_eq!(s.assignment, b"x");
    // The timer wakes parked requests too: a session expiry.
    let seq = coord.group_seq(T, "g");
    wait(coord.tick(now + Duration::from_millis(10_000)));
    assert!(coord.group_seq(T, "g") > seq);
    assert_eq!(wait(coord.describe(T, "g")).state, "Empty");
}

#[test]
fn join_and_sync_of_unknown_groups() {
    let coord = Coordinator::default();
    let now = Instant::now();
    let Step::Done(r) = wait(coord.join(T, &join_req("m", 1), now)) else { panic!() };
    assert_eq!(r.error, UNKNOWN_MEMBER_ID);
    assert_eq!(wait(coord.describe(T, "g")).state, "Dead", "not created");
    let sync = SyncRequest { group_id: "g".into(), member_id: "m".into(), ..SyncRequest::default() };
    assert_eq!(wait(coord.sync(T, &sync, now)), Step::Done(SyncResult::error(UNKNOWN_MEMBER_ID)));
    assert_eq!(wait(coord.heartbeat(T, "g", 1, "m", None, now)), UNKNOWN_MEMBER_ID);
    assert_eq!(wait(coord.heartbeat(T, "", 1, "m", None, now)), INVALID_GROUP_ID);
    let left = wait(coord.leave(T, "g", &[("m".into(), None)], now));
    assert_eq!(left, LeaveResult { error: NONE, members: vec![UNKNOWN_MEMBER_ID] });
    let bad = JoinRequest { session_timeout_ms: 1, ..join_req("", 1) };
    let Step::Done(r) = wait(coord.join(T, &bad, now)) else { panic!() };
    assert_eq!(r.error, INVALID_SESSION_TIMEOUT);
    assert_eq!(wait(coord.list(T, &[])).unwrap(), vec![]);
}

#[test]
fn list_describe_and_delete_groups() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&topic("t"), 3, &[], false).unwrap();
    let coord = open(&log);
    let now = Instant::now();
    let member = stable(&coord, now);
    assert_eq!(
        wait(coord.commit_offsets(T, "simple", -1, "", None, &[commit("t", 0, 1, None)], now)),
        vec![NONE]
    );
    assert_eq!(
        wait(coord.commit_offsets(T, "g", 1, &member, None, &[commit("t", 1, 1, None)], now)),
        vec![NONE]
    );
    let names = |states: &[&str]| -> Vec<(String, String, String)> {
        let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
        wait(coord.list(T, &states))
            .unwrap()
            .into_iter()
            .map(|g| (g.group_id, g.protocol_type, g.state))
            .collect()
    };
    assert_eq!(
        names(&[]),
        vec![
            ("g".into(), "consumer".into(), "Stable".into()),
            ("simple".into(), String::new(), "Empty".into())
        ]
    );
    assert_eq!(names(&["stable"]).len(), 1);
    assert_eq!(names(&["Empty", "Dead"]).len(), 1);
    assert_eq!(names(&["PreparingRebalance"]).len(), 0);
    assert!(wait(coord.list("other-tenant", &[])).unwrap().is_empty());

    assert_eq!(wait(coord.delete(T, "g", now)), NON_EMPTY_GROUP);
    assert_eq!(wait(coord.delete(T, "nope", now)), GROUP_ID_NOT_FOUND);
    assert_eq!(wait(coord.delete(T, "simple", now)), NONE);
    assert_eq!(wait(coord.delete(T, "simple", now)), GROUP_ID_NOT_FOUND);
    assert_eq!(wait(coord.fetch_offsets(T, "simple", None)).unwrap(), vec![]);
    assert_eq!(wait(coord.describe(T, "simple")).state, "Dead");
    // g empties, then goes too.
    assert_eq!(wait(coord.leave(T, "g", &[(member, None)], now)).members, vec![NONE]);
    assert_eq!(wait(coord.describe(T, "g")).state, "Empty");
    assert_eq!(wait(coord.delete(T, "g", now)), NONE);
    drop(coord);
    let coord = open(&log);
    assert!(wait(coord.list(T, &[])).unwrap().is_empty(), "tombstones survive the restart");
    assert_eq!(wait(coord.fetch_offsets(T, "g", Some(&[("t".into(), 1)]))).unwrap()[0].offset, -1);
}

#[test]
fn delete_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&topic("t"), 3, &[], false).unwrap();
    log.create_topic(&topic("u"), 1, &[], false).unwrap();
    let coord = open(&log);
    let now = Instant::now();
    assert_eq!(wait(coord.delete_offsets(T, "g", &[("t".into(), 0)], now)), Err(GROUP_ID_NOT_FOUND));
    let member = stable(&coord, now);
    let c = [commit("t", 0, 1, None), commit("u", 0, 2, None)];
    assert_eq!(wait(coord.commit_offsets(T, "g", 1, &member, None, &c, now)), vec![NONE, NONE]);
    // The group consumes t (its members subscribe to it) but not u.
    let parts = [("t".to_string(), 0), ("u".to_string(), 0), ("gone".to_string(), 0)];
    assert_eq!(
        wait(coord.delete_offsets(T, "g", &parts, now)),
        Ok(vec![GROUP_SUBSCRIBED_TO_TOPIC, NONE, UNKNOWN_TOPIC_OR_PARTITION])
    );
    let left = wait(coord.fetch_offsets(T, "g", None)).unwrap();
    assert_eq!(left.iter().map(|c| c.topic.as_str()).collect::<Vec<_>>(), vec!["t"]);
    // Once the group is empty, anything goes.
    wait(coord.leave(T, "g", &[(member, None)], now));
    assert_eq!(wait(coord.delete_offsets(T, "g", &parts[..1], now)), Ok(vec![NONE]));
    drop(coord);
    let coord = open(&log);
    assert!(wait(coord.fetch_offsets(T, "g", None)).unwrap().is_empty());
}

#[test]
fn other_tenants_are_replayed_when_first_used() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&TopicName::new("acme", "default", "t"), 1, &[], false).unwrap();
    let coord = open(&log);
    let now = Instant::now();
    assert_eq!(
        wait(coord.commit_offsets("acme", "g", -1, "", None, &[commit("t", 0, 4, None)], now)),
        vec![NONE]
    );
    assert!(wait(coord.fetch_offsets(T, "g", None)).unwrap().is_empty(), "tenants are separate");
    drop(coord);
    let coord = open(&log);
    assert!(wait(coord.groups_overview()).iter().all(|g| g.tenant != "acme"), "not loaded yet");
    assert_eq!(wait(coord.fetch_offsets("acme", "g", None)).unwrap()[0].offset, 4);
    assert_eq!(wait(coord.groups_overview()).len(), 1);
}

#[test]
fn lag_overview() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&topic("t"), 3, &[], false).unwrap();
    log.append(&topic("t"), 0, batch(5, 3, 0).into()).unwrap();
    let coord = open(&log);
    let now = Instant::now();
    let member = stable(&coord, now);
    assert_eq!(
        wait(coord.commit_offsets(
            T,
            "g",
            1,
            &member,
            None,
            &[commit("t", 0, 2, None), commit("t", 1, 0, None)],
            now
        )),
        vec![NONE, NONE]
    );
    let overview = wait(coord.groups_overview());
    assert_eq!(overview.len(), 1);
    let g = &overview[0];
    assert_eq!(
        (g.tenant.as_str(), g.group_id.as_str(), g.state.as_str(), g.generation),
        (T, "g", "Stable", 1)
    );
    assert_eq!(g.members.len(), 1);
    let a = g.members[0].assignment.as_ref().unwrap();
    assert_eq!((a[0].topic.as_str(), a[0].partitions.clone()), ("t", vec![0, 1, 2]));
    let lags: Vec<(i32, i64, Option<i64>, Option<i64>)> =
        g.offsets.iter().map(|p| (p.partition, p.committed_offset, p.log_end_offset, p.lag)).collect();
    assert_eq!(lags, vec![(0, 2, Some(5), Some(3)), (1, 0, Some(0), Some(0))]);
    let json = serde_json::to_value(&overview).unwrap();
    assert_eq!(json[0]["group_id"], "g");
    assert_eq!(json[0]["offsets"][0]["lag"], 3);
}

#[test]
fn idle_empty_groups_are_forgotten() {
    let coord = Coordinator::default();
    let now = Instant::now();
    let Step::Done(r) = wait(coord.join(T, &join_req("", 1), now)) else { panic!() };
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    assert_eq!(
        wait(coord.commit_offsets(T, "kept", -1, "", None, &[commit("t", 0, 1, None)], now)),
        vec![NONE]
    );
    coord.notify(T, "g");
    assert_eq!(wait(coord.list(T, &[])).unwrap().len(), 2);
    wait(coord.tick(now + EMPTY_GROUP_RETENTION - Duration::from_millis(1)));
    assert_eq!(wait(coord.list(T, &[])).unwrap().len(), 2);
    wait(coord.tick(now + EMPTY_GROUP_RETENTION));
    let left: Vec<String> = wait(coord.list(T, &[])).unwrap().into_iter().map(|g| g.group_id).collect();
    assert_eq!(left, vec!["kept"], "a group with offsets stays");
    assert_eq!(coord.group_seq(T, "g"), 0, "its change counter is dropped too");
}

#[test]
fn the_offsets_topic_is_compacted_and_replays_the_latest_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic(&topic("t"), 2, &[], false).unwrap();
    let offsets = TopicName::new(T, "default", records::OFFSETS_TOPIC);
    {
        let coord = open(&log);
        let now = Instant::now();
        for i in 0..50 {
            let codes = wait(coord.commit_offsets(
                T,
                "x",
                -1,
                "",
                None,
                &[commit("t", 0, i, None), commit("t", 1, 100 + i, None)],
                now,
            ));
            assert_eq!(codes, vec![NONE, NONE]);
        }
        let meta = log.topic(&offsets).expect("created on the first commit");
        assert!(meta.config.cleanup_policy.compact && !meta.config.cleanup_policy.delete);
        // Roll the active segment at the next append, so that the cleaner can reach the commits.
        let roll = crate::storage::ConfigChange::Incremental(vec![(
            "segment.ms".into(),
            crate::storage::AlterOp::Set("1".into()),
        )]);
        log.alter_topic_config(&offsets, &roll, false).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let codes = wait(coord.commit_offsets(T, "x", -1, "", None, &[commit("t", 0, 50, None)], now));
        assert_eq!(codes, vec![NONE]);
    }
    let before = wait(records::replay(&*log, &offsets)).unwrap().records;
    let stats = log.clean(crate::storage::now_ms() + 1_000).unwrap();
    assert_eq!(stats.partitions, 1, "{stats:?}");
    let after = wait(records::replay(&*log, &offsets)).unwrap().records;
    assert!(after < before / 10, "the cleaner kept {after} of {before} records");
    // A host starting now replays the latest commit of each partition.
    let coord = open(&log);
    let got: Vec<(i32, i64)> =
        wait(coord.fetch_offsets(T, "x", None)).unwrap().iter().map(|c| (c.partition, c.offset)).collect();
    assert_eq!(got, [(0, 50), (1, 149)]);
}
