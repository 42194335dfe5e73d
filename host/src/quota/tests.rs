use super::*;
use crate::storage::LogDefaults;
use crate::storage::embedded::EmbeddedLog;
use guise_guest_sdk::error::INVALID_REQUEST;
use guise_guest_sdk::quotas::{CLIENT_ID, EntityPart, Op, USER};

fn part(t: &str, n: Option<&str>) -> EntityPart {
    EntityPart { entity_type: t.into(), name: n.map(str::to_string) }
}

fn set(entity: &[EntityPart], key: &str, value: f64) -> Alteration {
    Alteration { entity: entity.to_vec(), ops: vec![Op { key: key.into(), value, remove: false }] }
}

const ALICE: Client<'static> = Client { tenant: "public", user: "alice", client_id: "app" };

/// An embedded log in a temporary directory (kept while the first is alive), the quotas'
/// config, and a runtime.
fn fixture() -> (tempfile::TempDir, Arc<dyn Log>, QuotaConfig, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap());
    let config = QuotaConfig { namespace: "default".into(), ..Default::default() };
    (dir, log, config, tokio::runtime::Runtime::new().unwrap())
}

#[test]
fn quotas_persist_per_tenant_and_throttle_their_clients() {
    let (_dir, log, config, rt) = fixture();
    rt.block_on(async {
        let q = Quotas::new(log.clone(), config.clone());
        q.load("public").await;
        assert_eq!(q.record(&ALICE, Kind::Produce, 1e9), Duration::ZERO, "no quota, no throttle");
        let results = q
            .alter(
                "public",
                &[
                    set(&[part(USER, Some("alice"))], PRODUCER_BYTE_RATE, 1000.0),
                    set(&[part(USER, Some("alice"))], PRODUCER_BYTE_RATE, 0.5),
                    set(&[part(CLIENT_ID, None)], REQUEST_PERCENTAGE, 25.0),
                ],
                false,
            )
            .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert_eq!(results[1].as_ref().unwrap_err().0, INVALID_REQUEST);
        // Within the quota: 10,000 bytes over the first ten seconds' window is 1,000 B/s.
        assert_eq!(q.record(&ALICE, Kind::Produce, 10_000.0), Duration::ZERO);
        // Twice the quota: throttled as long again as the window (Kafka's formula).
        assert_eq!(q.record(&ALICE, Kind::Produce, 10_000.0), Duration::from_secs(10));
        assert_eq!(q.throttle(&ALICE, &[Kind::Produce]), Duration::from_secs(10));
        // The quota is alice's, shared by her client ids; bob has none of his own.
        let other_app = Client { client_id: "other", ..ALICE };
        assert_eq!(q.throttle(&other_app, &[Kind::Produce]), Duration::from_secs(10));
        let bob = Client { user: "bob", ..ALICE };
        assert_eq!(q.throttle(&bob, &[Kind::Produce]), Duration::ZERO);
        assert_eq!(q.throttle(&ALICE, &[Kind::Fetch]), Duration::ZERO, "fetches are not limited");
        // Request time: 25% of a thread, and its throttle is bounded by one window.
        assert!(
            q.record(&bob, Kind::Request, request_percent(Duration::from_secs(30))) <= Duration::from_secs(1)
        );
        assert_eq!(q.throttle(&bob, &[Kind::Request]), Duration::from_secs(1));
        // Another tenant has none of public's quotas.
        q.load("acme").await;
        let acme = Client { tenant: "acme", ..ALICE };
        assert_eq!(q.record(&acme, Kind::Produce, 1e9), Duration::ZERO);
        assert!(q.describe("acme", &[], false).await.unwrap().is_empty());

        // A new host on the same log has them back.
        let again = Quotas::new(log.clone(), config.clone());
        let described = again.describe("public", &[], false).await.unwrap();
        assert_eq!(described.len(), 2, "{described:?}");
        let remove = Alteration {
            entity: vec![part(USER, Some("alice"))],
            ops: vec![Op { key: PRODUCER_BYTE_RATE.into(), value: 0.0, remove: true }],
        };
        assert!(again.alter("public", &[remove], false).await[0].is_ok());
        let third = Quotas::new(log, config);
        let described = third.describe("public", &[], false).await.unwrap();
        assert_eq!(described.len(), 1, "the removal is stored too: {described:?}");
    });
}

#[test]
fn a_tenant_ceiling_is_shared_by_all_its_clients() {
    let mut config = QuotaConfig { namespace: "default".into(), ..Default::default() };
    config.ceilings.insert("b".into(), Ceiling { producer_byte_rate: Some(100.0), ..Default::default() });
    let q = Quotas::build(config, None);
    let one = Client { tenant: "b", user: "x", client_id: "1" };
    let two = Client { tenant: "b", user: "y", client_id: "2" };
    assert_eq!(q.record(&one, Kind::Produce, 1000.0), Duration::ZERO);
    // 2,000 bytes over 10 s against 100 B/s: (200 - 100) / 100 × 10 s.
    assert_eq!(q.record(&two, Kind::Produce, 1000.0), Duration::from_secs(10));
    assert_eq!(q.throttle(&one, &[Kind::Produce, Kind::Request]), Duration::from_secs(10));
    // A ceiling's request-time throttle is not bounded by one window, unlike a client quota's.
    let mut config = QuotaConfig { namespace: "default".into(), ..Default::default() };
    config.ceilings.insert("a".into(), Ceiling { request_percentage: Some(10.0), ..Default::default() });
    let qa = Quotas::build(config, None);
    let spinner = Client { tenant: "a", user: "x", client_id: "1" };
    // 3 s of a thread over the first 10 s against 10 %: (30 - 10) / 10 × 10 s.
    assert_eq!(
        qa.record(&spinner, Kind::Request, request_percent(Duration::from_secs(3))),
        Duration::from_secs(20)
    );
    let c = Client { tenant: "c", ..one };
    assert_eq!(q.record(&c, Kind::Produce, 1e9), Duration::ZERO, "other tenants are not bound by it");
    q.expire();
    assert_eq!(q.rates.lock().len(), 1, "a rate recorded within the horizon stays");
}

/// A log that, while `broken`, answers a replay's first question (does the topic exist?) from
/// `inner` and its next (the topic's offsets) from `empty`, which has no such topic: the
/// replay fails as it would on a storage error. `calls` counts the questions.
struct Flaky {
    inner: Arc<dyn Log>,
    empty: Arc<dyn Log>,
    broken: AtomicBool,
    calls: std::sync::atomic::AtomicU32,
}

impl Flaky {
    fn inner(&self) -> &dyn Log {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.broken.load(Ordering::Relaxed) && n % 2 == 1 { &*self.empty } else { &*self.inner }
    }
}

crate::storage::delegate_log!(Flaky, inner, {
    async fn append_with(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        how: crate::storage::Append,
    ) -> Result<crate::storage::AppendInfo, StorageError> {
        self.inner().append_with(name, partition, records, how).await
    }
});

#[test]
fn a_failed_replay_is_retried_after_a_pause_not_on_every_request() {
    let (_dir, log, config, rt) = fixture();
    rt.block_on(async {
        let q = Quotas::new(log.clone(), config.clone());
        let alice = set(&[part(USER, Some("alice"))], PRODUCER_BYTE_RATE, 1000.0);
        assert!(q.alter("public", &[alice], false).await[0].is_ok());
        let other = tempfile::tempdir().unwrap();
        let empty: Arc<dyn Log> = Arc::new(EmbeddedLog::open(other.path(), LogDefaults::default()).unwrap());
        let flaky =
            Arc::new(Flaky { inner: log, empty, broken: AtomicBool::new(true), calls: Default::default() });
        let q = Quotas::new(flaky.clone(), config);
        let first = q.describe("public", &[], false).await.unwrap_err();
        assert!(first.1.contains("reading the client quotas topic"), "{first:?}");
        let tried = flaky.calls.load(Ordering::Relaxed);
        assert_eq!(tried, 2, "the topic looked up, its offsets failed");
        // Requests right after it do not try again.
        for _ in 0..100 {
            q.load("public").await;
        }
        let soon = q.describe("public", &[], false).await.unwrap_err();
        assert!(soon.1.contains("a moment ago"), "{soon:?}");
        assert_eq!(flaky.calls.load(Ordering::Relaxed), tried, "no replay within the pause");
        assert!(q.unlimited("public"), "not enforced while unreadable");
        // After the pause (backdated here), the next request replays, and the quota is back.
        flaky.broken.store(false, Ordering::Relaxed);
        let t = q.tenants.lock().get("public").cloned().unwrap();
        *t.failed.lock() = Some(Instant::now() - REPLAY_RETRY);
        q.load("public").await;
        assert!(flaky.calls.load(Ordering::Relaxed) > tried, "replayed");
        assert_eq!(q.describe("public", &[], false).await.unwrap().len(), 1);
        assert!(!q.unlimited("public"));
    });
}
