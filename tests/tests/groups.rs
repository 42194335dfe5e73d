//! Consumer groups with librdkafka: members share a topic's partitions, rebalance when one leaves
//! or stops heartbeating, commit and resume; committed offsets survive a host restart; the
//! cooperative-sticky assignor and static membership work.

use guise_tests::TestServer;
use guise_tests::proxy::Proxy;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Rec = (i32, i64, String);

/// A group member polling on its own thread; every record is committed (synchronously) before
/// the next one is processed.
struct Member {
    consumed: Arc<Mutex<Vec<Rec>>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, name: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("client.id", name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "3000")
            .set("heartbeat.interval.ms", "300");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let consumer: BaseConsumer = cfg.create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let consumed = Arc::new(Mutex::new(Vec::new()));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumed, assignment, stop, name) =
                (consumed.clone(), assignment.clone(), stop.clone(), name.to_string());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                            consumed.lock().unwrap().push((m.partition(), m.offset(), value));
                            if let Err(e) = consumer.commit_message(&m, CommitMode::Sync) {
                                eprintln!("{name}: commit failed: {e}");
                            }
                        }
                        Some(Err(e)) => eprintln!("{name}: {e}"),
                        None => {}
                    }
                    if let Ok(tpl) = consumer.assignment() {
                        *assignment.lock().unwrap() = tpl.elements().iter().map(|e| e.partition()).collect();
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    drop(consumer); // close: commit nothing more, leave the group
                }
            })
        };
        Member { consumed, assignment, stop, thread: Some(thread) }
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    /// Close the consumer (it leaves the group, unless it is a static member).
    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn wait_for(what: &str, secs: u64, cond: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

fn produce(bootstrap: &str, topic: &str, from: usize, count: usize) -> Vec<Rec> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("linger.ms", "5").create().unwrap();
    let values: Vec<String> = (from..from + count).map(|i| format!("v{i}")).collect();
    let pending: Vec<_> = values
        .iter()
        .map(|v| producer.send_result(FutureRecord::<str, str>::to(topic).payload(v).key(v)).unwrap())
        .collect();
    pending
        .into_iter()
        .zip(values)
        .map(|(d, v)| {
            let d = rt.block_on(d).unwrap().unwrap();
            (d.partition, d.offset, v)
        })
        .collect()
}

fn unique(recs: &[Rec]) -> BTreeSet<Rec> {
    recs.iter().cloned().collect()
}

fn group_server(proxy_addr: Option<String>) -> TestServer {
    TestServer::start_with(|c| {
        c.default_partitions = 6;
        c.group_initial_rebalance_delay_ms = 100;
        c.group_min_session_timeout_ms = 1000;
        c.advertised_kafka_addr = proxy_addr;
    })
}

/// Three consumers split six partitions; one leaves, then one stops heartbeating (its traffic
/// is swallowed by a proxy): each time its partitions move to the others, and every record is
/// consumed, none twice past a committed offset.
#[test]
fn three_members_share_six_partitions_and_take_over_when_one_leaves_or_dies() {
    let proxy = Proxy::listen("127.0.0.1:0");
    let server = group_server(Some(proxy.addr.to_string()));
    proxy.forward_to(server.kafka_addr);
    let bootstrap = proxy.addr.to_string();
    let mut produced = produce(&bootstrap, "g6", 0, 600);
    let all: BTreeSet<i32> = (0..6).collect();

    let m1 = Member::start(&bootstrap, "g", "m1", "g6", &[]);
    let m2 = Member::start(&bootstrap, "g", "m2", "g6", &[]);
    let m3 = Member::start(&bootstrap, "g", "m3", "g6", &[]);
    let logs = [m1.consumed.clone(), m2.consumed.clone(), m3.consumed.clone()];
    let everything = || logs.iter().flat_map(|l| l.lock().unwrap().clone()).collect::<Vec<Rec>>();
    wait_for("the three members to split the partitions", 60, || {
        let (a, b, c) = (m1.assigned(), m2.assigned(), m3.assigned());
        a.len() == 2
            && b.len() == 2
            && c.len() == 2
            && a.union(&b).chain(c.iter()).copied().collect::<BTreeSet<_>>() == all
    });
    wait_for("all 600 records", 60, || unique(&everything()).len() == 600);

    // m3 leaves: its partitions go to m1 and m2.
    m3.close();
    let took = wait_for("m1 and m2 to take over m3's partitions", 60, || {
        let (a, b) = (m1.assigned(), m2.assigned());
        a.is_disjoint(&b) && a.union(&b).copied().collect::<BTreeSet<_>>() == all
    });
    eprintln!("after a leave, the partitions moved in {took:?}");
    produced.extend(produce(&bootstrap, "g6", 600, 300));
    wait_for("900 records", 60, || unique(&everything()).len() == 900);

    // m2 stops heartbeating (nothing of it reaches the host): after its session timeout, m1
    // owns everything.
    let m2_owned = m2.assigned();
    proxy.blackhole("m2");
    let took = wait_for("m1 to take over everything", 60, || m1.assigned() == all);
    eprintln!("after a member went silent (session timeout 3 s), the partitions moved in {took:?}");
    produced.extend(produce(&bootstrap, "g6", 900, 300));
    wait_for("1200 records", 60, || unique(&everything()).len() == 1200);

    let consumed = everything();
    let expected: BTreeSet<Rec> = produced.iter().cloned().collect();
    assert_eq!(unique(&consumed), expected, "every record consumed, nothing else");
    let mut counts: HashMap<(i32, i64), usize> = HashMap::new();
    for (p, o, _) in &consumed {
        *counts.entry((*p, *o)).or_default() += 1;
    }
    // A record consumed twice can only be one m2 consumed but whose commit the proxy swallowed:
    // at most one per partition m2 owned, and never one that had been committed.
    let m2_consumed = unique(&m2.consumed.lock().unwrap());
    for ((p, o), n) in counts.iter().filter(|(_, n)| **n > 1) {
        assert_eq!(*n, 2, "partition {p} offset {o} consumed {n} times");
        assert!(m2_owned.contains(p), "partition {p} offset {o} consumed twice, not one of m2's");
        assert!(m2_consumed.iter().any(|(mp, mo, _)| mp == p && mo == o), "{p}/{o}");
    }
    std::mem::forget(m2); // its connection is blackholed: closing would wait for the broker
    m1.close();
}

/// A consumer restarted with the same group resumes at its committed offset, also after the
/// host restarts (committed offsets are in the log's `__consumer_offsets`).
#[test]
fn a_restarted_consumer_resumes_from_its_committed_offset_across_a_host_restart() {
    let server = group_server(None);
    let bootstrap = server.bootstrap();
    produce(&bootstrap, "resume", 0, 600);
    let first_seen = |bootstrap: &str, name: &str| -> Vec<Rec> {
        let m = Member::start(bootstrap, "r", name, "resume", &[]);
        wait_for("some records", 60, || m.consumed.lock().unwrap().len() >= 50);
        let consumed = m.consumed.clone();
        m.close();
        consumed.lock().unwrap().clone()
    };
    let committed_after = |recs: &[Rec]| -> HashMap<i32, i64> {
        let mut next = HashMap::new();
        for (p, o, _) in recs {
            let e = next.entry(*p).or_insert(0);
            *e = (*e).max(o + 1);
        }
        next
    };
    let first = first_seen(&bootstrap, "c1");
    let second = first_seen(&bootstrap, "c2");
    // The second consumer starts each partition where the first one's commits left it.
    let resume = committed_after(&first);
    for (p, o, _) in &second {
        if let Some(next) = resume.get(p) {
            assert!(*o >= *next, "partition {p}: re-read offset {o}, committed {next}");
        }
    }
    let first_of_second: HashMap<i32, i64> = second.iter().fold(HashMap::new(), |mut m, (p, o, _)| {
        m.entry(*p).and_modify(|x: &mut i64| *x = (*x).min(*o)).or_insert(*o);
        m
    });
    for (p, o) in &first_of_second {
        assert_eq!(Some(o), resume.get(p).or(Some(&0)), "partition {p} resumes exactly at the commit");
    }

    let mut both = first.clone();
    both.extend(second.iter().cloned());
    let resume = committed_after(&both);

    // The admin API's lag: per committed partition, the log end minus the committed offset.
    let body = guise_host::admin::client::AdminClient::new(server.admin_addr.to_string())
        .request("GET", "/groups", &[])
        .unwrap()
        .1;
    let groups: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let r = groups.as_array().unwrap().iter().find(|g| g["group_id"] == "r").expect("group r is listed");
    assert_eq!(r["state"], "Empty", "{r}");
    assert_eq!(r["offsets"].as_array().unwrap().len(), resume.len(), "every committed partition: {r}");
    let mut ends = 0;
    for p in r["offsets"].as_array().unwrap() {
        let (partition, committed, end, lag) = (
            p["partition"].as_i64().unwrap() as i32,
            p["committed_offset"].as_i64().unwrap(),
            p["log_end_offset"].as_i64().unwrap(),
            p["lag"].as_i64().unwrap(),
        );
        assert_eq!(Some(&committed), resume.get(&partition), "partition {partition}: {r}");
        assert_eq!(lag, end - committed, "{r}");
        ends += end;
    }
    assert!(ends <= 600, "{r}");
    let server = server.restart();
    let third = first_seen(&server.bootstrap(), "c3");
    for (p, o, _) in &third {
        if let Some(next) = resume.get(p) {
            assert!(
                *o >= *next,
                "after the host restarted, partition {p}: re-read offset {o}, committed {next}"
            );
        }
    }
}

/// The cooperative-sticky assignor (incremental rebalances) and static membership: a static
/// member that restarts within its session timeout gets its partitions back with no rebalance.
#[test]
fn cooperative_sticky_and_static_membership() {
    let server = group_server(None);
    let bootstrap = server.bootstrap();
    produce(&bootstrap, "coop", 0, 300);
    let all: BTreeSet<i32> = (0..6).collect();
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = Member::start(&bootstrap, "coop", "a", "coop", &coop);
    wait_for("a to own everything", 60, || a.assigned() == all);
    let b = Member::start(&bootstrap, "coop", "b", "coop", &coop);
    wait_for("a and b to share", 60, || {
        let (x, y) = (a.assigned(), b.assigned());
        x.len() == 3 && y.len() == 3 && x.is_disjoint(&y)
    });
    let c = Member::start(&bootstrap, "coop", "c", "coop", &coop);
    wait_for("three to share", 60, || {
        let (x, y, z) = (a.assigned(), b.assigned(), c.assigned());
        x.len() == 2
            && y.len() == 2
            && z.len() == 2
            && x.union(&y).chain(z.iter()).copied().collect::<BTreeSet<_>>() == all
    });
    let logs = [a.consumed.clone(), b.consumed.clone(), c.consumed.clone()];
    wait_for("all 300 records", 60, || {
        unique(&logs.iter().flat_map(|l| l.lock().unwrap().clone()).collect::<Vec<_>>()).len() == 300
    });
    a.close();
    b.close();
    c.close();

    // Static membership.
    let statics = |id: &'static str| [("group.instance.id", id), ("session.timeout.ms", "10000")];
    let s1 = Member::start(&bootstrap, "static", "s1", "coop", &statics("s1"));
    let s2 = Member::start(&bootstrap, "static", "s2", "coop", &statics("s2"));
    wait_for("s1 and s2 to share", 60, || {
        let (x, y) = (s1.assigned(), s2.assigned());
        x.len() == 3 && y.len() == 3 && x.is_disjoint(&y)
    });
    let s1_partitions = s1.assigned();
    let generation = || -> i64 {
        let text = guise_host::admin::client::AdminClient::new(server.admin_addr.to_string())
            .request("GET", "/groups", &[])
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v.as_array()
            .and_then(|gs| gs.iter().find(|g| g["group_id"] == "static"))
            .and_then(|g| g["generation"].as_i64())
            .unwrap_or(-1)
    };
    let before = generation();
    assert!(before > 0, "the admin API shows the group's generation");
    // A static member does not leave when it closes; its replacement takes its place.
    s1.close();
    let s1 = Member::start(&bootstrap, "static", "s1-again", "coop", &statics("s1"));
    wait_for("the restarted static member to get its partitions back", 60, || s1.assigned() == s1_partitions);
    assert_eq!(s2.assigned().len(), 3);
    assert_eq!(generation(), before, "no rebalance for a static member that came back");
    s1.close();
    s2.close();
}

/// Every internal topic of the tenant room's registry is refused, not only the coordinator's.
#[test]
fn clients_cannot_create_or_write_the_pulsar_cursor_topic() {
    // Every internal topic of the tenant room's registry is refused, not only the coordinator's:
    // `__pulsar_cursors` belongs to the Pulsar endpoint's cursor store, registered whether the
    // endpoint is on or not (here it is off).
    let server = TestServer::start();
    let bootstrap = server.bootstrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![bootstrap.clone()]).build().await.unwrap();
        let err = client
            .controller_client()
            .unwrap()
            .create_topic("__pulsar_cursors", 1, 1, 5000)
            .await
            .expect_err("creating __pulsar_cursors is refused");
        assert!(format!("{err:?}").contains("InvalidTopic"), "{err:?}");
    });
    // librdkafka's produce (auto-creation through Metadata) fails and creates nothing.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "3000")
        .create()
        .unwrap();
    let sent = rt.block_on(
        producer
            .send(FutureRecord::to("__pulsar_cursors").key("forged").payload("{}"), Duration::from_secs(5)),
    );
    assert!(sent.is_err(), "a produce to __pulsar_cursors is refused: {sent:?}");
    let listed = rt.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![bootstrap.clone()]).build().await.unwrap();
        client.list_topics().await.unwrap()
    });
    assert!(!listed.iter().any(|t| t.name == "__pulsar_cursors"), "{listed:?}");
}

/// The coordinator's own topic is not the clients' to write or delete: a stray batch or a
/// deletion there would lose every group's offsets at the next start.
#[test]
fn clients_cannot_write_or_delete_the_offsets_topic() {
    let server = group_server(None);
    let bootstrap = server.bootstrap();
    // A commit creates the topic.
    let m = Member::start(&bootstrap, "internal", "i1", "some-topic", &[]);
    produce(&bootstrap, "some-topic", 0, 10);
    wait_for("a commit", 60, || !m.consumed.lock().unwrap().is_empty());
    m.close();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![bootstrap.clone()]).build().await.unwrap();
        let pc = client
            .partition_client(
                "__consumer_offsets",
                0,
                rskafka::client::partition::UnknownTopicHandling::Error,
            )
            .await
            .unwrap();
        let record = rskafka::record::Record {
            key: Some(b"o\0forged".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        let err = pc
            .produce(vec![record], rskafka::client::partition::Compression::NoCompression)
            .await
            .expect_err("a client produce to __consumer_offsets is refused");
        assert!(format!("{err:?}").contains("InvalidTopic"), "{err:?}");
        let err = client
            .controller_client()
            .unwrap()
            .delete_topic("__consumer_offsets", 5000)
            .await
            .expect_err("deleting __consumer_offsets is refused");
        assert!(format!("{err:?}").contains("InvalidTopic"), "{err:?}");
    });
    // The group's offsets are intact after a restart.
    let server = server.restart();
    let body = guise_host::admin::client::AdminClient::new(server.admin_addr.to_string())
        .request("GET", "/groups", &[])
        .unwrap()
        .1;
    let groups: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let g = groups.as_array().unwrap().iter().find(|g| g["group_id"] == "internal").expect("listed");
    assert!(!g["offsets"].as_array().unwrap().is_empty(), "{g}");
}
