//! The state machine of one group, driven with explicit times.

use super::super::consumer::testing::{assignment, subscription};
use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn cfg(delay_ms: u64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::from_millis(delay_ms),
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 100_000,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names.iter().map(|n| Protocol { name: n.to_string(), metadata: subscription(&["t"]) }).collect()
}

fn req(member_id: &str, conn_id: u64) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols(&["range"]),
        require_known_member: true,
        reason: None,
        conn_id,
    }
}

fn static_req(instance: &str, member_id: &str, conn_id: u64) -> JoinRequest {
    JoinRequest { group_instance_id: Some(instance.into()), ..req(member_id, conn_id) }
}

fn sync_req(member_id: &str, generation: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments.iter().map(|(m, a)| (m.to_string(), a.to_vec())).collect(),
    }
}

fn done(step: JoinStep) -> JoinResult {
    match step {
        JoinStep::Done(r) => r,
        JoinStep::Pending => panic!("expected a join result, got Pending"),
    }
}

fn sync_done(step: SyncStep) -> SyncResult {
    match step {
        SyncStep::Done(r) => r,
        other => panic!("expected a sync result, got {other:?}"),
    }
}

/// A new member id through the MEMBER_ID_REQUIRED round trip.
fn member_id(g: &mut Group, c: &GroupConfig, conn: u64, now: Instant) -> String {
    let r = done(g.join(&req("", conn), c, now));
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    assert!(r.member_id.starts_with("client-"), "{}", r.member_id);
    r.member_id
}

/// The leader's sync with these assignments, stored successfully.
fn leader_sync(
    g: &mut Group,
    leader: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
    now: Instant,
) -> SyncResult {
    let sync = sync_req(leader, generation, assignments);
    match g.sync(&sync, now) {
        SyncStep::Store(a) => g.finish_leader_sync(&sync, a, Ok(()), now),
        other => panic!("expected Store, got {other:?}"),
    }
}

/// A stable group of one member: (group, member id).
fn stable_one(c: &GroupConfig, t0: Instant) -> (Group, String) {
    let mut g = Group::new("g", c, t0);
    let id = member_id(&mut g, c, 1, t0);
    let r = done(g.join(&req(&id, 1), c, t0));
    assert_eq!(r.generation_id, 1);
    leader_sync(&mut g, &id, 1, &[(&id, b"a1")], t0);
    (g, id)
}

/// A stable group of `n` dynamic members at generation 1, with zero initial delay: the first
/// member completes a generation alone, and the rest join it in a second one. Returns the member
/// ids (the leader first) and the generation.
fn stable_many(c: &GroupConfig, n: usize, t0: Instant) -> (Group, Vec<String>, i32) {
    let mut g = Group::new("g", c, t0);
    let ids: Vec<String> = (0..n).map(|i| member_id(&mut g, c, i as u64, t0)).collect();
    for (i, id) in ids.iter().enumerate() {
        let _ = g.join(&req(id, i as u64), c, t0);
    }
    // Re-runs: every member gets the result of the completed join.
    let results: Vec<JoinResult> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            loop {
                match g.join(&req(id, i as u64), c, t0) {
                    JoinStep::Done(r) => break r,
                    JoinStep::Pending => g.tick(t0 + ms(REBALANCE as u64)),
                }
            }
        })
        .collect();
    let generation = g.generation();
    let leader = g.leader().unwrap().to_string();
    for r in &results {
        assert_eq!(r.error, NONE);
        assert_eq!(r.generation_id, generation);
        assert_eq!(r.leader, leader);
    }
    let assignments: Vec<(&str, &[u8])> = ids.iter().map(|id| (id.as_str(), id.as_bytes())).collect();
    for id in ids.iter().filter(|id| **id != leader) {
        assert_eq!(g.sync(&sync_req(id, generation, &[]), t0), SyncStep::Pending);
    }
    leader_sync(&mut g, &leader, generation, &assignments, t0);
    assert_eq!(g.state(), GroupState::Stable);
    let mut ordered = vec![leader.clone()];
    ordered.extend(ids.into_iter().filter(|id| *id != leader));
    (g, ordered, generation)
}

#[test]
fn one_member_join_sync_heartbeat() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    assert_eq!(g.state(), GroupState::Empty);
    let id = member_id(&mut g, &c, 1, t0);
    assert_eq!(g.state(), GroupState::Empty, "a pending member does not rebalance yet");
    let r = done(g.join(&req(&id, 1), &c, t0));
    assert_eq!(r.error, NONE);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.member_id, id);
    assert_eq!(r.leader, id);
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, subscription(&["t"]));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert!(g.take_changed());
    assert_eq!(g.heartbeat(1, &id, None, t0), NONE, "heartbeats are fine while completing");

    let a = assignment(&[("t", &[0])]);
    let s = leader_sync(&mut g, &id, 1, &[(&id, &a)], t0);
    assert_eq!(s.error, NONE);
    assert_eq!(s.assignment, a);
    assert_eq!(s.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state(), GroupState::Stable);

    assert_eq!(g.heartbeat(1, &id, None, t0), NONE);
    assert_eq!(g.heartbeat(0, &id, None, t0), ILLEGAL_GENERATION);
    assert_eq!(g.heartbeat(1, "nobody", None, t0), UNKNOWN_MEMBER_ID);
    // A sync again (a lost response) returns the assignment; the leader's assignments are ignored.
    assert_eq!(sync_done(g.sync(&sync_req(&id, 1, &[(&id, b"other")]), t0)).assignment, a);

    let d = g.describe();
    assert_eq!(d.state, "Stable");
    assert_eq!(d.protocol_name, "range");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].assignment, a);
    assert_eq!(d.members[0].client_host, "/127.0.0.1");

    // The leader rejoining a Stable group forces a rebalance (alone, it completes at once).
    let r = done(g.join(&req(&id, 1), &c, t0));
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    // The same join again (a lost response) answers the current generation.
    assert_eq!(done(g.join(&req(&id, 1), &c, t0)), r);
}

#[test]
fn three_members_with_the_initial_delay() {
    let c = cfg(3000);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    let ids: Vec<String> = (0..3).map(|i| member_id(&mut g, &c, i, t0)).collect();
    assert_eq!(g.join(&req(&ids[0], 0), &c, t0), JoinStep::Pending);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.join(&req(&ids[1], 1), &c, t0 + ms(1000)), JoinStep::Pending);
    assert_eq!(g.join(&req(&ids[2], 2), &c, t0 + ms(2000)), JoinStep::Pending);
    // Re-runs while waiting: still pending, no second member, and no change to wake anyone.
    g.take_changed();
    assert_eq!(g.join(&req(&ids[0], 0), &c, t0 + ms(2500)), JoinStep::Pending);
    assert_eq!(g.members().len(), 3);
    assert!(!g.take_changed());
    // At 3 s members were added meanwhile: wait another delay.
    g.tick(t0 + ms(3000));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.tick(t0 + ms(5999));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.take_changed();
    g.tick(t0 + ms(6000));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert!(g.take_changed(), "completion wakes the parked joins");
    assert_eq!(g.generation(), 1);

    let t1 = t0 + ms(6000);
    let results: Vec<JoinResult> =
        ids.iter().enumerate().map(|(i, id)| done(g.join(&req(id, i as u64), &c, t1))).collect();
    let leader = ids[0].clone();
    for r in &results {
        assert_eq!((r.error, r.generation_id, r.leader.as_str()), (NONE, 1, leader.as_str()));
    }
    assert_eq!(results[0].members.len(), 3);
    assert!(results[1].members.is_empty() && results[2].members.is_empty());
    // A re-run of the leader's join after it got its result is not a new rebalance.
    assert_eq!(done(g.join(&req(&ids[0], 0), &c, t1)).generation_id, 1);
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    assert_eq!(g.sync(&sync_req(&ids[1], 1, &[]), t1), SyncStep::Pending);
    assert_eq!(g.sync(&sync_req(&ids[1], 1, &[]), t1), SyncStep::Pending, "re-run still waits");
    let a: Vec<Vec<u8>> = (0..3).map(|p| assignment(&[("t", &[p])])).collect();
    let s = leader_sync(&mut g, &leader, 1, &[(&ids[0], &a[0]), (&ids[1], &a[1]), (&ids[2], &a[2])], t1);
    assert_eq!(s.assignment, a[0]);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(sync_done(g.sync(&sync_req(&ids[1], 1, &[]), t1)).assignment, a[1]);
    assert_eq!(sync_done(g.sync(&sync_req(&ids[2], 1, &[]), t1)).assignment, a[2]);
}

#[test]
fn the_initial_delay_is_bounded_by_the_rebalance_timeout() {
    let c = cfg(3000);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    let a = member_id(&mut g, &c, 1, t0);
    let b = member_id(&mut g, &c, 2, t0);
    let short = |id: &str, conn| JoinRequest { rebalance_timeout_ms: 5000, ..req(id, conn) };
    assert_eq!(g.join(&short(&a, 1), &c, t0), JoinStep::Pending);
    assert_eq!(g.join(&short(&b, 2), &c, t0 + ms(1000)), JoinStep::Pending);
    g.tick(t0 + ms(3000)); // extended by min(3000, 5000 - 3000) = 2000
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.tick(t0 + ms(5000));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn without_a_delay_a_lone_member_completes_at_once() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (g, id) = stable_one(&c, t0);
    assert_eq!(g.leader(), Some(id.as_str()));
    assert_eq!(g.generation(), 1);
}

#[test]
fn a_new_member_rebalances_a_stable_group() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, first) = stable_one(&c, t0);
    let second = member_id(&mut g, &c, 2, t0);
    assert_eq!(g.join(&req(&second, 2), &c, t0), JoinStep::Pending);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // The first member learns of it from its heartbeat, and rejoins.
    assert_eq!(g.heartbeat(1, &first, None, t0), REBALANCE_IN_PROGRESS);
    assert_eq!(sync_done(g.sync(&sync_req(&first, 1, &[]), t0)).error, REBALANCE_IN_PROGRESS);
    let r = done(g.join(&req(&first, 1), &c, t0));
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.leader, first, "the previous leader stays leader");
    assert_eq!(r.members.len(), 2);
    let r2 = done(g.join(&req(&second, 2), &c, t0));
    assert_eq!((r2.generation_id, r2.members.len()), (2, 0));
    assert_eq!(sync_done(g.sync(&sync_req(&first, 1, &[]), t0)).error, ILLEGAL_GENERATION);
}

#[test]
fn old_style_joins_without_member_ids_are_idempotent_per_connection() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, first) = stable_one(&c, t0);
    let v3 = |conn| JoinRequest { require_known_member: false, ..req("", conn) };
    assert_eq!(g.join(&v3(9), &c, t0), JoinStep::Pending);
    assert_eq!(g.join(&v3(9), &c, t0), JoinStep::Pending);
    assert_eq!(g.members().len(), 2, "the re-run is the same member");
    let _ = done(g.join(&req(&first, 1), &c, t0));
    let r = done(g.join(&v3(9), &c, t0));
    assert_eq!(r.error, NONE);
    assert_eq!(r.generation_id, 2);
    assert_ne!(r.member_id, first);
    assert!(g.has(&r.member_id));
    // Once delivered, a join without a member id from that connection is a new member again.
    assert_eq!(g.join(&v3(9), &c, t0), JoinStep::Pending);
    assert_eq!(g.members().len(), 3);
}

#[test]
fn join_errors() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, id) = stable_one(&c, t0);
    let bad_session = JoinRequest { session_timeout_ms: 5, ..req(&id, 1) };
    assert_eq!(done(g.join(&bad_session, &c, t0)).error, INVALID_SESSION_TIMEOUT);
    let too_long = JoinRequest { session_timeout_ms: 100_001, ..req(&id, 1) };
    assert_eq!(done(g.join(&too_long, &c, t0)).error, INVALID_SESSION_TIMEOUT);
    let other_type = JoinRequest { protocol_type: "connect".into(), ..req("", 2) };
    assert_eq!(done(g.join(&other_type, &c, t0)).error, INCONSISTENT_GROUP_PROTOCOL);
    let no_common = JoinRequest { protocols: protocols(&["roundrobin"]), ..req("", 2) };
    assert_eq!(done(g.join(&no_common, &c, t0)).error, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(done(g.join(&req("unknown", 3), &c, t0)).error, UNKNOWN_MEMBER_ID);
    let no_group = JoinRequest { group_id: String::new(), ..req("", 3) };
    assert_eq!(done(g.join(&no_group, &c, t0)).error, INVALID_GROUP_ID);
    let mut empty = Group::new("e", &c, t0);
    let no_type = JoinRequest { protocol_type: String::new(), ..req("", 2) };
    assert_eq!(done(empty.join(&no_type, &c, t0)).error, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(done(empty.join(&req("unknown", 3), &c, t0)).error, UNKNOWN_MEMBER_ID);
    assert_eq!(g.state(), GroupState::Stable, "nothing changed");
}

#[test]
fn protocol_selection_by_votes() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    let join = |g: &mut Group, names: &[&str], conn| {
        let id = member_id(g, &c, conn, t0);
        let r = JoinRequest { protocols: protocols(names), ..req(&id, conn) };
        let _ = g.join(&r, &c, t0);
        (id, r)
    };
    // The first member completes generation 1 alone (no delay); then the others join.
    let (_, ra) = join(&mut g, &["range", "roundrobin"], 1);
    let _ = join(&mut g, &["range", "roundrobin"], 2);
    let _ = join(&mut g, &["roundrobin", "range"], 3);
    let _ = g.join(&ra, &c, t0);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.protocol_name(), Some("range"), "two votes to one");

    let mut g = Group::new("h", &c, t0);
    let (_, ra) = join(&mut g, &["range", "roundrobin"], 1);
    let _ = join(&mut g, &["roundrobin"], 2);
    let _ = g.join(&ra, &c, t0);
    assert_eq!(g.protocol_name(), Some("roundrobin"), "the only common protocol");
}

#[test]
fn static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    // Static members skip MEMBER_ID_REQUIRED.
    let r = done(g.join(&static_req("i1", "", 1), &c, t0));
    assert_eq!(r.error, NONE);
    let old = r.member_id.clone();
    assert!(old.starts_with("i1-"));
    let a = assignment(&[("t", &[0, 1])]);
    leader_sync(&mut g, &old, 1, &[(&old, &a)], t0);
    g.take_persist();

    // The instance restarts and joins with no member id.
    let r = done(g.join(&static_req("i1", "", 2), &c, t0 + ms(100)));
    assert_eq!(r.error, NONE);
    let new = r.member_id.clone();
    assert_ne!(new, old);
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert_eq!(r.leader, new);
    assert!(r.skip_assignment, "the leader must not assign again");
    assert_eq!(r.members.len(), 1);
    assert_eq!(g.state(), GroupState::Stable);
    assert!(g.take_persist(), "the new member id is persisted");
    assert_eq!(
        sync_done(
            g.sync(&SyncRequest { group_instance_id: Some("i1".into()), ..sync_req(&new, 1, &[]) }, t0)
        )
        .assignment,
        a
    );

    // The old incarnation is fenced.
    assert_eq!(g.heartbeat(1, &old, Some("i1"), t0), FENCED_INSTANCE_ID);
    assert_eq!(
        sync_done(
            g.sync(&SyncRequest { group_instance_id: Some("i1".into()), ..sync_req(&old, 1, &[]) }, t0)
        )
        .error,
        FENCED_INSTANCE_ID
    );
    assert_eq!(done(g.join(&static_req("i1", &old, 1), &c, t0)).error, FENCED_INSTANCE_ID);
    assert_eq!(g.heartbeat(1, &new, Some("i1"), t0), NONE);
    assert_eq!(g.heartbeat(1, &new, Some("i2"), t0), UNKNOWN_MEMBER_ID);
}

#[test]
fn static_follower_rejoin_keeps_the_leader() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    let leader = done(g.join(&static_req("i1", "", 1), &c, t0)).member_id;
    assert_eq!(g.join(&static_req("i2", "", 2), &c, t0), JoinStep::Pending);
    assert_eq!(g.join(&static_req("i2", "", 2), &c, t0), JoinStep::Pending, "a re-run");
    assert_eq!(g.members().len(), 2);
    // The leader rejoins for generation 2 and everyone completes.
    let r = done(g.join(&static_req("i1", &leader, 1), &c, t0));
    assert_eq!(r.generation_id, 2);
    let follower = done(g.join(&static_req("i2", "", 2), &c, t0)).member_id;
    assert!(follower.starts_with("i2-"));
    leader_sync(&mut g, &leader, 2, &[], t0);
    assert_eq!(g.state(), GroupState::Stable);

    let r = done(g.join(&static_req("i2", "", 3), &c, t0));
    assert_ne!(r.member_id, follower);
    assert_eq!(r.leader, leader);
    assert!(!r.skip_assignment);
    assert!(r.members.is_empty());
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn static_rejoin_with_new_protocols_rebalances() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    let old = done(g.join(&static_req("i1", "", 1), &c, t0)).member_id;
    leader_sync(&mut g, &old, 1, &[], t0);
    // (A protocol no current member supports would be INCONSISTENT_GROUP_PROTOCOL, as in Kafka.)
    let changed =
        JoinRequest { protocols: protocols(&["cooperative-sticky", "range"]), ..static_req("i1", "", 2) };
    // With one member the rebalance completes at once: generation 2, new protocol.
    let r = done(g.join(&changed, &c, t0));
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.protocol_name.as_deref(), Some("cooperative-sticky"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
}

#[test]
fn session_expiry_removes_members_and_rebalances() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, ids, generation) = stable_many(&c, 2, t0);
    let (leader, follower) = (&ids[0], &ids[1]);
    let session = ms(SESSION as u64);
    // The leader heartbeats, the follower goes silent.
    assert_eq!(g.heartbeat(generation, leader, None, t0 + session / 2), NONE);
    g.tick(t0 + session - ms(1));
    assert_eq!(g.members().len(), 2);
    g.take_changed();
    g.tick(t0 + session);
    assert_eq!(g.members().len(), 1);
    assert!(!g.has(follower));
    assert!(g.take_changed());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(generation, follower, None, t0 + session), UNKNOWN_MEMBER_ID);
    assert_eq!(g.heartbeat(generation, leader, None, t0 + session), REBALANCE_IN_PROGRESS);
    let r = done(g.join(&req(leader, 0), &c, t0 + session));
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn members_waiting_in_a_join_are_not_expired() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, ids, _) = stable_many(&c, 2, t0);
    // The leader rejoins (a rebalance) and waits; the follower heartbeats but does not rejoin.
    assert_eq!(g.join(&req(&ids[0], 0), &c, t0), JoinStep::Pending);
    let session = ms(SESSION as u64);
    assert_eq!(g.heartbeat(1, &ids[1], None, t0 + session / 2), REBALANCE_IN_PROGRESS);
    assert_eq!(g.heartbeat(1, &ids[1], None, t0 + session), REBALANCE_IN_PROGRESS);
    g.tick(t0 + session + ms(1));
    assert!(g.has(&ids[0]), "the waiting member is kept alive past its session");
    assert!(g.has(&ids[1]));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // The rebalance timeout removes the member that did not rejoin.
    g.tick(t0 + ms(REBALANCE as u64));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(g.members().len(), 1);
    let r = done(g.join(&req(&ids[0], 0), &c, t0 + ms(REBALANCE as u64)));
    assert_eq!(r.members.len(), 1);
}

#[test]
fn the_rebalance_timeout_removes_members_that_did_not_rejoin() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, ids, generation) = stable_many(&c, 3, t0);
    // A follower rejoining a Stable group with the same metadata just gets the generation.
    assert_eq!(done(g.join(&req(&ids[1], 1), &c, t0)).generation_id, generation);
    // The leader rejoins (a rebalance), then member 1; member 2 keeps heartbeating but never
    // rejoins.
    assert_eq!(g.join(&req(&ids[0], 0), &c, t0), JoinStep::Pending);
    assert_eq!(g.join(&req(&ids[1], 1), &c, t0), JoinStep::Pending);
    let mut t = t0;
    while t < t0 + ms(REBALANCE as u64 - 1000) {
        t += ms(1000);
        assert_eq!(g.heartbeat(generation, &ids[2], None, t), REBALANCE_IN_PROGRESS);
        g.tick(t);
    }
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.tick(t0 + ms(REBALANCE as u64));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert!(!g.has(&ids[2]));
    assert_eq!(done(g.join(&req(&ids[0], 0), &c, t0)).members.len(), 2);
}

#[test]
fn members_that_do_not_sync_are_removed() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    // Sessions longer than the rebalance timeout, so that only the sync deadline matters.
    let long = |id: &str, conn| JoinRequest { session_timeout_ms: 60_000, ..req(id, conn) };
    let a = member_id(&mut g, &c, 1, t0);
    let _ = done(g.join(&long(&a, 1), &c, t0));
    leader_sync(&mut g, &a, 1, &[], t0);
    let b = member_id(&mut g, &c, 2, t0);
    assert_eq!(g.join(&long(&b, 2), &c, t0), JoinStep::Pending);
    let _ = done(g.join(&long(&a, 1), &c, t0));
    let _ = done(g.join(&long(&b, 2), &c, t0));
    // The leader syncs; b got its join result but never syncs.
    leader_sync(&mut g, &a, 2, &[], t0);
    assert_eq!(g.state(), GroupState::Stable);
    g.tick(t0 + ms(REBALANCE as u64 - 1));
    assert!(g.has(&b));
    g.tick(t0 + ms(REBALANCE as u64));
    assert!(!g.has(&b));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_pending_member_holds_the_rebalance_until_it_joins_or_expires() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, id) = stable_one(&c, t0);
    let pending = member_id(&mut g, &c, 2, t0);
    // The leader rejoins: a rebalance, which waits for the pending member.
    assert_eq!(g.join(&req(&id, 1), &c, t0), JoinStep::Pending);
    g.tick(t0 + ms(SESSION as u64 - 1));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.tick(t0 + ms(SESSION as u64));
    assert_eq!(g.state(), GroupState::CompletingRebalance, "the pending member expired");
    assert_eq!(done(g.join(&req(&pending, 2), &c, t0)).error, UNKNOWN_MEMBER_ID);
}

#[test]
fn leave() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, ids, generation) = stable_many(&c, 2, t0);
    let none: Option<String> = None;
    assert_eq!(g.leave(&[("nobody".into(), none.clone())], t0), Ok(vec![UNKNOWN_MEMBER_ID]));
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.leave(&[(ids[1].clone(), none.clone())], t0), Ok(vec![NONE]));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let r = done(g.join(&req(&ids[0], 0), &c, t0));
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
    leader_sync(&mut g, &ids[0], generation + 1, &[], t0);
    g.take_persist();
    // The last member leaves: the group is Empty (a new generation) and is persisted.
    assert_eq!(g.leave(&[(ids[0].clone(), none)], t0), Ok(vec![NONE]));
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), generation + 2);
    assert!(g.take_persist());
    assert_eq!(g.describe().state, "Empty");

    // Static members leave by instance id.
    let mut g = Group::new("s", &c, t0);
    let m = done(g.join(&static_req("i1", "", 1), &c, t0)).member_id;
    assert_eq!(g.leave(&[(String::new(), Some("i2".into()))], t0), Ok(vec![UNKNOWN_MEMBER_ID]));
    assert_eq!(
        g.leave(&[(m.clone(), Some("i1".into())), (String::new(), Some("i1".into()))], t0),
        Ok(vec![NONE, UNKNOWN_MEMBER_ID])
    );
    assert_eq!(g.state(), GroupState::Empty);
}

#[test]
fn sync_errors() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut g = Group::new("g", &c, t0);
    let id = member_id(&mut g, &c, 1, t0);
    let _ = done(g.join(&req(&id, 1), &c, t0));
    assert_eq!(sync_done(g.sync(&sync_req(&id, 2, &[]), t0)).error, ILLEGAL_GENERATION);
    assert_eq!(sync_done(g.sync(&sync_req("x", 1, &[]), t0)).error, UNKNOWN_MEMBER_ID);
    let wrong = SyncRequest { protocol_name: Some("roundrobin".into()), ..sync_req(&id, 1, &[]) };
    assert_eq!(sync_done(g.sync(&wrong, t0)).error, INCONSISTENT_GROUP_PROTOCOL);
    let wrong = SyncRequest { protocol_type: Some("connect".into()), ..sync_req(&id, 1, &[]) };
    assert_eq!(sync_done(g.sync(&wrong, t0)).error, INCONSISTENT_GROUP_PROTOCOL);
    let unset = SyncRequest { protocol_type: None, protocol_name: None, ..sync_req(&id, 1, &[]) };
    assert!(matches!(g.sync(&unset, t0), SyncStep::Store(_)), "v0-v4 send no protocol");
    // A failed store: the leader gets the storage error and the group rebalances.
    let s = sync_req(&id, 1, &[]);
    let SyncStep::Store(a) = g.sync(&s, t0) else { panic!() };
    assert_eq!(g.finish_leader_sync(&s, a, Err(56), t0).error, 56);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_rebalance_during_completing_tells_waiting_syncs() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, ids, generation) = stable_many(&c, 2, t0);
    let _ = g.join(&req(&ids[0], 0), &c, t0);
    let _ = g.join(&req(&ids[1], 1), &c, t0);
    let _ = done(g.join(&req(&ids[0], 0), &c, t0));
    let _ = done(g.join(&req(&ids[1], 1), &c, t0));
    assert_eq!(g.sync(&sync_req(&ids[1], generation + 1, &[]), t0), SyncStep::Pending);
    // A third member arrives before the leader syncs.
    let third = member_id(&mut g, &c, 3, t0);
    assert_eq!(g.join(&req(&third, 3), &c, t0), JoinStep::Pending);
    assert_eq!(sync_done(g.sync(&sync_req(&ids[1], generation + 1, &[]), t0)).error, REBALANCE_IN_PROGRESS);
}

#[test]
fn commit_checks() {
    let c = cfg(0);
    let t0 = Instant::now();
    let mut empty = Group::new("e", &c, t0);
    assert_eq!(empty.check_commit(-1, "", None, t0), Ok(()), "simple commit into an empty group");
    assert_eq!(empty.check_commit(1, "m", None, t0), Err(UNKNOWN_MEMBER_ID));

    let mut g = Group::new("g", &c, t0);
    let id = member_id(&mut g, &c, 1, t0);
    let _ = done(g.join(&req(&id, 1), &c, t0));
    assert_eq!(g.check_commit(1, &id, None, t0), Err(REBALANCE_IN_PROGRESS), "completing");
    leader_sync(&mut g, &id, 1, &[], t0);
    assert_eq!(g.check_commit(1, &id, None, t0), Ok(()));
    assert_eq!(g.check_commit(-1, "", None, t0), Err(UNKNOWN_MEMBER_ID), "only members commit");
    assert_eq!(g.check_commit(2, &id, None, t0), Err(ILLEGAL_GENERATION));
    assert_eq!(g.check_commit(1, "x", None, t0), Err(UNKNOWN_MEMBER_ID));
    // A commit is a heartbeat.
    let late = t0 + ms(SESSION as u64 - 1);
    assert_eq!(g.check_commit(1, &id, None, late), Ok(()));
    g.tick(t0 + ms(SESSION as u64 + 10));
    assert!(g.has(&id));
}

#[test]
fn offset_delete_and_group_delete_checks() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (mut g, id) = stable_one(&c, t0);
    assert_eq!(g.check_offset_delete(&["t", "u"]), Ok(vec![true, false]));
    assert_eq!(g.check_delete(), Err(NON_EMPTY_GROUP));
    let none: Option<String> = None;
    g.leave(&[(id, none)], t0).unwrap();
    assert_eq!(g.check_offset_delete(&["t"]), Ok(vec![false]));
    assert_eq!(g.check_delete(), Ok(()));
    g.kill(t0);
    assert_eq!(g.check_delete(), Err(GROUP_ID_NOT_FOUND));
    assert_eq!(g.heartbeat(1, "x", None, t0), COORDINATOR_NOT_AVAILABLE);

    // A non-consumer group with members cannot have offsets deleted.
    let mut other = Group::new("o", &c, t0);
    let r = JoinRequest { protocol_type: "connect".into(), require_known_member: false, ..req("", 1) };
    let _ = done(other.join(&r, &c, t0));
    assert_eq!(other.check_offset_delete(&["t"]), Err(NON_EMPTY_GROUP));
}

#[test]
fn restore_from_persisted_metadata() {
    let c = cfg(0);
    let t0 = Instant::now();
    let (g, ids, generation) = stable_many(&c, 2, t0);
    let value = g.to_value();
    let t1 = t0 + ms(60_000);
    let mut r = Group::restore("g", &value, &c, t1);
    assert_eq!(r.state(), GroupState::Stable);
    assert_eq!(r.generation(), generation);
    assert_eq!(r.leader(), Some(ids[0].as_str()));
    assert_eq!(r.describe().members, g.describe().members);
    // Fresh sessions: they keep heartbeating or are expired.
    assert_eq!(r.heartbeat(generation, &ids[0], None, t1 + ms(1000)), NONE);
    r.tick(t1 + ms(SESSION as u64 - 1));
    assert_eq!(r.members().len(), 2);
    r.tick(t1 + ms(SESSION as u64));
    assert_eq!(r.members().len(), 1, "the silent member expired");
    // An emptied group comes back Empty with its generation.
    let empty = GroupValue { members: vec![], protocol: None, ..value };
    let e = Group::restore("g", &empty, &c, t1);
    assert_eq!((e.state(), e.generation()), (GroupState::Empty, generation));
}
