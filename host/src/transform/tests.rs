//! The transforms service over a real embedded log and the `chaos` example transform.

use super::*;
use crate::record::batch::testing::idempotent_batch;
use crate::storage::StorageError;
use crate::storage::embedded::EmbeddedLog;
use crate::storage::{Log, LogDefaults};
use crate::storage::{TopicName, wait};
use crate::wasm::GuestLimits;
use std::time::Duration;

fn chaos() -> Vec<u8> {
    std::fs::read(guise_test_guests::CHAOS_TRANSFORM_PATH).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<dyn Log>,
    compiler: Compiler,
    transforms: Transforms,
}

impl Fixture {
    fn new() -> Self {
        Self::open(tempfile::tempdir().unwrap())
    }

    /// A host over `dir`, as after a restart.
    fn open(dir: tempfile::TempDir) -> Self {
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(&dir.path().join("log"), LogDefaults::default()).unwrap());
        let limits = GuestLimits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
            max_instances: 16,
            max_response_bytes: 1 << 20,
            warm_instances: 0,
            warm_transforms: 4,
        };
        let compiler = Compiler::for_limits(&limits).unwrap();
        let cfg =
            TransformsConfig { dir: Some(dir.path().join("transforms")), ..TransformsConfig::disabled() };
        let mut internal = InternalTopics::new();
        crate::coord::Coordinator::register_internal(&mut internal, "default");
        let transforms = Transforms::open(cfg, log.clone(), &compiler, Arc::new(internal), None).unwrap();
        Fixture { dir, log, compiler, transforms }
    }

    fn restart(self) -> Self {
        let Fixture { dir, log, compiler, transforms } = self;
        drop((transforms, compiler, log));
        Self::open(dir)
    }

    fn deploy(
        &self,
        name: &str,
        topics: &[&str],
        policy: &str,
        mode: &str,
    ) -> Result<TransformView, TransformError> {
        let spec = BindingSpec {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            output_topics: Vec::new(),
            policy: policy.parse()?,
            config: vec![("mode".into(), mode.into())],
        };
        self.transforms.deploy("public", name, &chaos(), spec)
    }

    fn bound(&self, topic: &str) -> Option<(String, u32)> {
        self.transforms.binding("public", topic).map(|b| (b.name.clone(), b.version))
    }
}

#[test]
fn bindings_are_checked_and_a_topic_runs_one_transform() {
    let fx = Fixture::new();
    fx.deploy("one", &["a"], "reject", "pass").unwrap();
    let err = fx.deploy("two", &["b", "a"], "reject", "pass").unwrap_err();
    assert!(err.to_string().contains("already runs the transform \"one\""), "{err}");
    assert!(fx.bound("b").is_none(), "a refused deploy binds nothing");
    for (topics, policy, what) in [
        (&["c"][..], "dead-letter=c", "also an input topic"),
        (&["__consumer_offsets"], "skip", "internal topic"),
        (&[], "skip", "at least one input topic"),
        (&["c"], "sometimes", "not one of reject"),
        (&["bad/name"], "skip", "bad/name"),
    ] {
        let err = fx.deploy("three", topics, policy, "pass").unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert_eq!(err.http_status(), 400, "{err}");
    }
    let err = fx.transforms.deploy(
        "Public!",
        "x",
        &chaos(),
        BindingSpec { topics: vec!["a".into()], output_topics: vec![], policy: Policy::Skip, config: vec![] },
    );
    assert!(matches!(err, Err(TransformError::InvalidTenant(_))));
    // A core module or garbage is refused with the registry's reasons.
    let spec =
        BindingSpec { topics: vec!["z".into()], output_topics: vec![], policy: Policy::Skip, config: vec![] };
    let err = fx.transforms.deploy("public", "junk", b"\0asm\x01\0\0\0", spec.clone()).unwrap_err();
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");
    // The translator is a component of another world.
    let err = fx.transforms.deploy("public", "junk", crate::wasm::DEFAULT_TRANSLATOR, spec).unwrap_err();
    assert!(err.to_string().contains("transform world"), "{err}");
}

#[test]
fn rollback_restores_the_binding_delete_unbinds_and_a_restart_keeps_them() {
    let fx = Fixture::new();
    fx.deploy("one", &["a"], "reject", "pass").unwrap();
    fx.deploy("one", &["b"], "skip", "pass").unwrap();
    assert_eq!((fx.bound("a"), fx.bound("b")), (None, Some(("one".into(), 2))));
    let view = fx.transforms.rollback("public", "one", None).unwrap();
    assert_eq!(view.binding.unwrap().topics, ["a"]);
    assert_eq!((fx.bound("a"), fx.bound("b")), (Some(("one".into(), 1)), None));
    fx.deploy("other", &["b"], "pass", "drop").unwrap();

    let fx = fx.restart();
    assert_eq!(fx.bound("a"), Some(("one".into(), 1)));
    assert_eq!(fx.bound("b"), Some(("other".into(), 1)));
    fx.transforms.delete("public", "one").unwrap();
    assert_eq!(fx.bound("a"), None);
    assert!(matches!(fx.transforms.show("public", "one"), Err(TransformError::Registry(_))));
    assert_eq!(fx.transforms.list(None).unwrap().len(), 1);
    let fx = fx.restart();
    assert_eq!((fx.bound("a"), fx.bound("b")), (None, Some(("other".into(), 1))));
}

/// A transform that drops every record still keeps an idempotent producer's sequence: the
/// stored (empty) batch spans the original offsets and sequences, also after a restart, and a
/// retry is recognized before the transform runs again.
#[test]
fn a_dropping_transform_keeps_the_producers_sequence() {
    let fx = Fixture::new();
    let topic = TopicName::new("public", "default", "t");
    wait(fx.log.create_topic(&topic, 1, &[], false)).unwrap();
    fx.deploy("drop", &["t"], "reject", "drop").unwrap();
    let apply = |fx: &Fixture, b: Vec<u8>| {
        let binding = fx.transforms.binding("public", "t").unwrap();
        wait(fx.transforms.apply(&binding, &topic, 0, b.into(), None))
    };
    let calls = |fx: &Fixture| fx.transforms.show("public", "drop").unwrap().module.versions[0].stats.calls;

    let first = apply(&fx, idempotent_batch(3, 7, 0, 0)).unwrap();
    assert_eq!(first.base_offset, 0);
    assert_eq!(wait(fx.log.offsets(&topic, 0)).unwrap(), (0, 3), "the empty batch spans the 3 offsets");
    assert_eq!(apply(&fx, idempotent_batch(2, 7, 0, 3)).unwrap().base_offset, 3);
    let before = calls(&fx);
    let retry = apply(&fx, idempotent_batch(3, 7, 0, 0)).unwrap();
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2), "a retry gets its original offsets");
    assert_eq!(calls(&fx), before, "a retry is not transformed again");
    assert_eq!(wait(fx.log.offsets(&topic, 0)).unwrap(), (0, 5));

    let fx = fx.restart();
    assert_eq!(apply(&fx, idempotent_batch(1, 7, 0, 5)).unwrap().base_offset, 5, "state survives a restart");
    let gap = apply(&fx, idempotent_batch(1, 7, 0, 9)).unwrap_err();
    assert!(matches!(gap, StorageError::OutOfOrderSequence(_)), "{gap}");
    let r = wait(fx.log.read(&topic, 0, 0, 1 << 20, true)).unwrap();
    assert!(r.records.is_some(), "the empty batches are readable");
}

#[test]
fn a_failing_batch_follows_the_policy() {
    let fx = Fixture::new();
    for t in ["r", "s", "p", "d"] {
        wait(fx.log.create_topic(&TopicName::new("public", "default", t), 1, &[], false)).unwrap();
    }
    fx.deploy("r", &["r"], "reject", "error").unwrap();
    fx.deploy("s", &["s"], "skip", "error").unwrap();
    fx.deploy("p", &["p"], "pass", "error").unwrap();
    fx.deploy("d", &["d"], "dead-letter=dlq", "error").unwrap();
    let apply = |t: &str| {
        let binding = fx.transforms.binding("public", t).unwrap();
        wait(fx.transforms.apply(
            &binding,
            &TopicName::new("public", "default", t),
            0,
            idempotent_batch(2, -1, -1, -1).into(),
            None,
        ))
    };
    assert!(matches!(apply("r"), Err(StorageError::InvalidRecord(m)) if m.contains("policy is reject")));
    apply("s").unwrap();
    apply("p").unwrap();
    apply("d").unwrap();
    let end = |t: &str| wait(fx.log.offsets(&TopicName::new("public", "default", t), 0)).unwrap().1;
    assert_eq!([end("r"), end("s"), end("p"), end("d"), end("dlq")], [0, 0, 2, 0, 2]);
    let v = fx.transforms.show("public", "d").unwrap();
    assert_eq!((v.outcomes.dead_lettered, v.module.versions[0].stats.errors), (1, 1));
}

/// A transform whose active version cannot be loaded at start keeps its topics closed: a topic
/// meant to be masked is never written unmasked. Deleting the transform opens them again.
#[test]
fn an_unloadable_transform_fails_closed() {
    let fx = Fixture::new();
    let topic = TopicName::new("public", "default", "a");
    wait(fx.log.create_topic(&topic, 1, &[], false)).unwrap();
    fx.deploy("one", &["a"], "pass", "pass").unwrap();
    let artifacts = fx.dir.path().join("transforms/public/artifacts");
    for f in std::fs::read_dir(&artifacts).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let fx = fx.restart();
    let binding = fx.transforms.binding("public", "a").expect("still bound");
    let err = wait(fx.transforms.apply(&binding, &topic, 0, idempotent_batch(1, -1, -1, -1).into(), None))
        .unwrap_err();
    assert!(matches!(&err, StorageError::Busy(m) if m.contains("could not be loaded")), "{err}");
    assert_eq!(wait(fx.log.offsets(&topic, 0)).unwrap().1, 0, "nothing written");
    fx.transforms.delete("public", "one").unwrap();
    assert!(fx.transforms.binding("public", "a").is_none());
}

/// Retries of an idempotent producer's batch sent while the original still runs (a client's
/// request timeout): each waits for the one before, finds the batch stored, and routes nothing
/// again, so the routed topic holds its records once.
#[test]
fn concurrent_retries_of_a_batch_route_it_once() {
    let fx = Fixture::new();
    let topic = TopicName::new("public", "default", "in");
    let out = TopicName::new("public", "default", "out");
    wait(fx.log.create_topic(&topic, 1, &[], false)).unwrap();
    wait(fx.log.create_topic(&out, 1, &[], false)).unwrap();
    let spec = BindingSpec {
        topics: vec!["in".into()],
        output_topics: vec!["out".into()],
        policy: "reject".parse().unwrap(),
        config: vec![("mode".into(), "route".into()), ("topic".into(), "out".into())],
    };
    fx.transforms.deploy("public", "route", &chaos(), spec).unwrap();
    let binding = fx.transforms.binding("public", "in").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let answers = rt.block_on(async {
        let tries = (0..8).map(|_| {
            let (t, b, topic) = (&fx.transforms, binding.clone(), topic.clone());
            async move { t.apply(&b, &topic, 0, idempotent_batch(3, 11, 0, 0).into(), None).await }
        });
        futures::future::join_all(tries).await
    });
    for a in answers {
        let a = a.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 2), "every try gets the original offsets");
    }
    assert_eq!(wait(fx.log.offsets(&out, 0)).unwrap().1, 3, "the routed records, once");
}

/// A transform version's batches run on the instance its earlier batch left (warm instances):
/// never on another tenant's, never after a trap; a new version starts fresh and the old
/// version's instances go with it, as they do at a rollback or a delete.
#[test]
fn batches_reuse_their_versions_warm_instance_and_nothing_else() {
    let fx = Fixture::new();
    let topic = |tenant: &str| TopicName::new(tenant, "default", "a");
    let spec = |policy: &str, mode: &str| BindingSpec {
        topics: vec!["a".into()],
        output_topics: Vec::new(),
        policy: policy.parse().unwrap(),
        config: vec![("mode".into(), mode.into())],
    };
    let apply = |tenant: &str| {
        let binding = fx.transforms.binding(tenant, "a").unwrap();
        wait(fx.transforms.apply(&binding, &topic(tenant), 0, idempotent_batch(2, -1, -1, -1).into(), None))
    };
    for tenant in ["public", "acme"] {
        wait(fx.log.create_topic(&topic(tenant), 1, &[], false)).unwrap();
        fx.transforms.deploy(tenant, "one", &chaos(), spec("reject", "pass")).unwrap();
    }
    assert_eq!(fx.transforms.warm(), (0, 0), "deploying keeps no instance");
    for _ in 0..3 {
        apply("public").unwrap();
    }
    assert_eq!(fx.transforms.warm(), (2, 1), "the first batch's instance served the next two");
    // The other tenant's deployment of the same code is another version: its own instance.
    apply("acme").unwrap();
    assert_eq!(fx.transforms.warm(), (2, 2));
    apply("acme").unwrap();
    assert_eq!(fx.transforms.warm(), (3, 2));

    // A new version: the old one's instance goes; trapping calls leave none behind.
    fx.transforms.deploy("public", "one", &chaos(), spec("skip", "trap")).unwrap();
    assert_eq!(fx.transforms.warm(), (3, 1));
    apply("public").unwrap();
    apply("public").unwrap();
    assert_eq!(fx.transforms.warm(), (3, 1), "a trapped instance is never kept");
    let v2 = fx.transforms.show("public", "one").unwrap();
    assert_eq!(v2.module.versions.iter().map(|v| v.stats.traps).sum::<u64>(), 2);
    assert_eq!(wait(fx.log.offsets(&topic("public"), 0)).unwrap().1, 6, "skipped: 3 batches of 2");

    // Rolled back, the first version runs afresh, then warm again; a delete drops its instances.
    fx.transforms.rollback("public", "one", None).unwrap();
    apply("public").unwrap();
    apply("public").unwrap();
    assert_eq!(fx.transforms.warm(), (4, 2));
    fx.transforms.delete("acme", "one").unwrap();
    assert_eq!(fx.transforms.warm(), (4, 1));
    assert_eq!(wait(fx.log.offsets(&topic("public"), 0)).unwrap().1, 10);

    // Nor is an instance kept that ran past its deadline, or that routed records to a topic that
    // is not one of its outputs (the call returned, but the batch failed).
    for (name, config) in
        [("spin", vec![("mode", "loop")]), ("stray", vec![("mode", "route"), ("topic", "x")])]
    {
        wait(fx.log.create_topic(&TopicName::new("acme", "default", name), 1, &[], false)).unwrap();
        let spec = BindingSpec {
            topics: vec![name.into()],
            output_topics: Vec::new(),
            policy: Policy::Skip,
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        fx.transforms.deploy("acme", name, &chaos(), spec).unwrap();
        let binding = fx.transforms.binding("acme", name).unwrap();
        for _ in 0..2 {
            let batch = idempotent_batch(2, -1, -1, -1).into();
            wait(fx.transforms.apply(&binding, &TopicName::new("acme", "default", name), 0, batch, None))
                .unwrap();
        }
        let failed = fx.transforms.show("acme", name).unwrap().module.versions[0].stats;
        assert_eq!((failed.calls, failed.errors), (2, 2), "{name}");
        assert_eq!(fx.transforms.warm(), (4, 1), "{name}: no instance kept");
    }
}
