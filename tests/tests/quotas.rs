//! Client quotas (issue 15, item 8) with clients nobody here wrote: Kafka 4.4's own
//! `kafka-configs` sets a client id's byte rates through AlterClientQuotas; the Java producer
//! and consumer with that client id are throttled (the brokers' `throttle_time_ms`, which the
//! client reports as its `produce-throttle-time-max` and `fetch-throttle-time-max` metrics)
//! and still deliver every record; another client id and another tenant are not throttled; the
//! quota survives a restart; and a tenant's ceiling from the operator's config throttles all of
//! that tenant's clients. No timing is asserted: only that the brokers said "throttled".

use guise_host::admin::client::AdminClient;
use guise_host::config::{ListenerConfig, TenantConfig};
use guise_host::transform::BindingSpec;
use guise_tests::TestServer;
use guise_tests::java::{clients, tool};
use serde_json::Value;

/// 1,500 records of 1 KiB: half again what a 100 KiB/s quota allows over Kafka's 10 s
/// measuring window, so the client is throttled for a few seconds.
const RECORDS: &str = "1500";
const RATE: u64 = 102_400;

fn produce(bootstrap: &str, topic: &str, client_id: &str) -> Value {
    let out = clients(&[
        "produce",
        bootstrap,
        topic,
        RECORDS,
        &format!("client.id={client_id}"),
        "guise.value.bytes=1024",
        "linger.ms=5",
    ]);
    let sent = out["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 1500);
    assert!(sent.iter().all(Value::is_array), "every record is acknowledged: {out}");
    out
}

/// Bind the test-only `chaos` transform in its looping mode (policy skip: every call runs into
/// the deadline and the batch is acknowledged, dropped) to `tenant`'s `topic`.
fn deploy_looping(admin: &AdminClient, tenant: &str, topic: &str) {
    let chaos = std::path::Path::new(guise_test_guests::DIR).join("guise_transform_chaos.wasm");
    let spec = BindingSpec {
        topics: vec![topic.into()],
        output_topics: vec![],
        policy: "skip".parse().unwrap(),
        config: vec![("mode".into(), "loop".into())],
    };
    admin.deploy_transform(tenant, "spin", &spec, &std::fs::read(chaos).unwrap()).unwrap();
}

fn configs(bootstrap: &str, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    let (ok, out) = tool("org.apache.kafka.tools.ConfigCommand", &all);
    assert!(ok, "kafka-configs {args:?}: {out}");
    out
}

#[test]
fn byte_rate_quotas_throttle_the_clients_they_govern() {
    let mut server = TestServer::start_with(|c| {
        c.listeners.push(ListenerConfig {
            addr: "127.0.0.1:0".into(),
            tenant: "acme".parse().unwrap(),
            advertised_addr: None,
            security_protocol: Default::default(),
        });
        let ceiling = TenantConfig { producer_byte_rate: Some(RATE), ..Default::default() };
        c.tenants.insert("acme".parse().unwrap(), ceiling);
    });
    let bootstrap = server.bootstrap();
    let rates = format!("producer_byte_rate={RATE},consumer_byte_rate={RATE}");
    configs(
        &bootstrap,
        &["--alter", "--add-config", &rates, "--entity-type", "clients", "--entity-name", "slow-app"],
    );
    let described =
        configs(&bootstrap, &["--describe", "--entity-type", "clients", "--entity-name", "slow-app"]);
    assert!(described.contains("producer_byte_rate=102400.0"), "{described}");

    let throttled = produce(&bootstrap, "quota-topic", "slow-app");
    assert!(
        throttled["throttle_max"].as_f64().unwrap() > 0.0,
        "the producer was throttled: {}",
        throttled["throttle_max"]
    );
    let consumed =
        clients(&["consume", &bootstrap, "quota-topic", "quota-group", RECORDS, "client.id=slow-app"]);
    assert_eq!(consumed["records"].as_array().map(Vec::len), Some(1500), "every record is read");
    assert!(
        consumed["throttle_max"].as_f64().unwrap() > 0.0,
        "the consumer was throttled: {}",
        consumed["throttle_max"]
    );

    // Another client id has no quota; nor has the same client id in another tenant, which
    // has only its ceiling (below).
    let free = produce(&bootstrap, "quota-topic", "fast-app");
    assert_eq!(free["throttle_max"].as_f64(), Some(0.0), "{}", free["throttle_max"]);

    // The tenant ceiling: acme's clients together may produce 100 KiB/s, whatever their ids.
    let acme = server.server().tenant_addrs[0].1.to_string();
    let capped = produce(&acme, "acme-topic", "fast-app");
    assert!(
        capped["throttle_max"].as_f64().unwrap() > 0.0,
        "acme's ceiling throttles: {}",
        capped["throttle_max"]
    );
    // acme cannot see public's quotas.
    let theirs = configs(&acme, &["--describe", "--entity-type", "clients"]);
    assert!(!theirs.contains("slow-app"), "{theirs}");

    // The quota is stored: after a restart it is there, and removing it is stored too.
    server = server.restart();
    let bootstrap = server.bootstrap();
    let again = configs(&bootstrap, &["--describe", "--entity-type", "clients", "--entity-name", "slow-app"]);
    assert!(again.contains("consumer_byte_rate=102400.0"), "{again}");
    configs(
        &bootstrap,
        &[
            "--alter",
            "--delete-config",
            "producer_byte_rate,consumer_byte_rate",
            "--entity-type",
            "clients",
            "--entity-name",
            "slow-app",
        ],
    );
    let gone = configs(&bootstrap, &["--describe", "--entity-type", "clients", "--entity-name", "slow-app"]);
    assert!(!gone.contains("byte_rate"), "{gone}");
}

/// A tenant transform's time is its requests' time: tenant `loopy`'s ceiling of 0.2% of a
/// thread is far below one call of its looping transform (~100 ms, its deadline), so the Java
/// producer's one request is answered with a throttle — the time the transform took on the
/// host's transform threads was charged to it — while its record is still acknowledged (the
/// transform's policy is `skip`).
#[test]
fn a_tenants_transform_time_counts_against_its_request_ceiling() {
    let server = TestServer::start_with(|c| {
        c.listeners.push(ListenerConfig {
            addr: "127.0.0.1:0".into(),
            tenant: "loopy".parse().unwrap(),
            advertised_addr: None,
            security_protocol: Default::default(),
        });
        let ceiling = TenantConfig { request_percentage: Some(0.2), ..Default::default() };
        c.tenants.insert("loopy".parse().unwrap(), ceiling);
    });
    deploy_looping(&AdminClient::new(server.admin_addr.to_string()), "loopy", "spin");
    let loopy = server.server().tenant_addrs[0].1.to_string();
    let out = clients(&["produce", &loopy, "spin", "1", "client.id=loop-app", "linger.ms=0"]);
    assert_eq!(out["sent"].as_array().map(Vec::len), Some(1), "{out}");
    assert!(out["throttle_max"].as_f64().unwrap() > 0.0, "the transform's time throttles: {out}");
    // The default tenant has no ceiling (and no transform on `spin`): its producer is not
    // throttled, so the throttle above is loopy's ceiling at work.
    let free = clients(&["produce", &server.bootstrap(), "spin", "1", "client.id=loop-app"]);
    assert_eq!(free["throttle_max"].as_f64(), Some(0.0), "{free}");
}

/// A tenant's ceiling reaches its Pulsar producers too. A SEND to tenant loopy's topic whose
/// transform loops: its ~100 ms count against loopy's 0.2 % `request_percentage`, so the
/// endpoint holds the connection (`/metrics` counts it) and the message is still acknowledged
/// (policy skip). Then the Pulsar Rust client sends 1.5 MB to tenant public, allowed 100 KiB/s:
/// the endpoint stops reading the connection while it is over (Pulsar's answers have no
/// throttle field), and every message is still stored.
#[test]
fn a_tenant_ceiling_holds_its_pulsar_producers() {
    use pulsar::{Pulsar, TokioExecutor};
    let server = TestServer::start_with_pulsar(|c| {
        c.pulsar_tenants = vec!["public".parse().unwrap(), "loopy".parse().unwrap()];
        let bytes = TenantConfig { producer_byte_rate: Some(RATE), ..Default::default() };
        c.tenants.insert("public".parse().unwrap(), bytes);
        let time = TenantConfig { request_percentage: Some(0.2), ..Default::default() };
        c.tenants.insert("loopy".parse().unwrap(), time);
    });
    let admin = AdminClient::new(server.admin_addr.to_string());
    deploy_looping(&admin, "loopy", "pulsar-spin");
    let held = |tenant: &str| {
        let metrics = admin.text("/metrics").unwrap();
        let prefix = format!("guise_quota_throttled_total{{tenant=\"{tenant}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client: Pulsar<TokioExecutor> =
            Pulsar::builder(server.pulsar_url(), TokioExecutor).build().await.unwrap();
        let mut spin =
            client.producer().with_topic("persistent://loopy/default/pulsar-spin").build().await.unwrap();
        spin.send_non_blocking(b"looped".to_vec()).await.unwrap().await.unwrap();
        assert!(held("loopy") > 0, "the transform's time held the producer");
        let mut producer =
            client.producer().with_topic("persistent://public/default/pulsar-quota").build().await.unwrap();
        for i in 0..150u32 {
            let mut value = vec![b'x'; 10 * 1024];
            value[..4].copy_from_slice(&i.to_be_bytes());
            producer.send_non_blocking(value).await.unwrap().await.unwrap();
        }
    });
    assert!(held("public") > 0, "the byte rate held the producer");
    let stored = server.stored(&guise_host::storage::TopicName::new("public", "default", "pulsar-quota"), 0);
    assert_eq!(stored.len(), 150, "every message is stored");
}
