//! TLS on the host's listeners, with clients nobody here wrote: rskafka (rustls) on Kafka SSL
//! listeners, with and without client certificates, beside a PLAINTEXT listener; the Pulsar
//! Rust client over `pulsar+ssl://`; curl on the admin API over https. Certificates come from
//! test CAs made with openssl; a renewed certificate is served without a restart.

use guise_host::config::{ListenerConfig, SecurityProtocol};
use guise_host::net::tls::ClientAuth;
use guise_tests::TestServer;
use guise_tests::certs::{Issued, TestCa};
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn tls_client(ca: &Path, identity: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    guise_tests::certs::rustls_client(ca, identity)
}

/// Connect within a few seconds (a refused client fails instead of retrying for minutes).
async fn connect(
    addr: String,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Client, rskafka::client::error::Error> {
    let mut builder = ClientBuilder::new(vec![addr])
        .backoff_config(BackoffConfig { deadline: Some(Duration::from_secs(3)), ..Default::default() });
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    builder.build().await
}

fn record(i: usize) -> Record {
    Record {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(format!("v{i}").into_bytes()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
}

async fn values(pc: &PartitionClient) -> Vec<Vec<u8>> {
    let (records, _) = pc.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
    records.into_iter().map(|r| r.record.value.unwrap()).collect()
}

fn tls_settings(c: &mut guise_host::config::Config, server: &Issued) {
    c.tls_cert_file = Some(server.cert.clone());
    c.tls_key_file = Some(server.key.clone());
}

/// An SSL listener requiring client certificates and a PLAINTEXT listener of the same tenant
/// serve the same topics; clients without a certificate, with one from another CA, or speaking
/// plaintext to the SSL port are refused, and the host keeps serving. The admin API over https
/// requires a client certificate too.
#[test]
fn kafka_clients_over_ssl_with_client_certificates_beside_a_plaintext_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let server_cert = ca.server("server");
    let writer = ca.client("writer", "/CN=writer/O=Guise");
    let other = TestCa::new(dir.path(), "other");
    let intruder = other.client("intruder", "/CN=writer/O=Guise");
    let acme_ci = ca.client("acme-ci", "/CN=ci/O=Acme");

    let server = TestServer::start_with(|c| {
        tls_settings(c, &server_cert);
        c.tls_client_ca_file = Some(ca.cert());
        c.tls_client_auth = ClientAuth::Required;
        c.kafka_security_protocol = SecurityProtocol::Ssl;
        c.admin_tls = true;
        // The writer's certificate is an admin operator; Acme's CI certificate manages acme.
        c.admin_operators = vec!["User:O=Guise,CN=writer".into()];
        c.principal_tenants
            .insert("User:O=Acme,CN=ci".into(), guise_host::tenant::TenantId::new("acme").unwrap());
        c.listeners.push(ListenerConfig {
            addr: "127.0.0.1:0".into(),
            tenant: c.tenant.clone(),
            advertised_addr: None,
            security_protocol: SecurityProtocol::Plaintext,
        });
    });
    let ssl = server.bootstrap();
    let plain = server.server().tenant_addrs[0].1.to_string();
    // The principal the writer's certificate gives, in Kafka's form (RFC 2253, last RDN first).
    let leaf = CertificateDer::from_pem_file(&writer.cert).unwrap();
    assert_eq!(guise_host::net::tls::subject_dn(&leaf).unwrap(), "O=Guise,CN=writer");
    rt().block_on(async {
        let client = connect(ssl.clone(), Some(tls_client(&ca.cert(), Some(&writer)))).await.unwrap();
        client.controller_client().unwrap().create_topic("secure", 1, 1, 5_000).await.unwrap();
        let pc = client.partition_client("secure", 0, UnknownTopicHandling::Retry).await.unwrap();
        assert_eq!(pc.produce((0..3).map(record).collect(), Compression::Lz4).await.unwrap(), vec![0, 1, 2]);
        let sent: Vec<Vec<u8>> = (0..3).map(|i| record(i).value.unwrap()).collect();
        assert_eq!(values(&pc).await, sent);

        // The same records through the PLAINTEXT listener (Metadata there names that listener).
        let plain_client = connect(plain.clone(), None).await.unwrap();
        let plain_pc = plain_client.partition_client("secure", 0, UnknownTopicHandling::Retry).await.unwrap();
        assert_eq!(values(&plain_pc).await, sent);

        // Refused: no client certificate, one from another CA, plaintext on the SSL port, and
        // a client that does not trust the host's CA.
        let refused = [
            ("no client certificate", Some(tls_client(&ca.cert(), None))),
            ("a certificate from another CA", Some(tls_client(&ca.cert(), Some(&intruder)))),
            ("plaintext to the SSL listener", None),
            ("a client trusting another CA", Some(tls_client(&other.cert(), Some(&writer)))),
        ];
        for (what, tls) in refused {
            let err = connect(ssl.clone(), tls).await.err().unwrap_or_else(|| panic!("{what}: connected"));
            eprintln!("{what}: {err}");
        }

        // Everyone else is still served.
        assert_eq!(pc.produce(vec![record(3)], Compression::NoCompression).await.unwrap(), vec![3]);
        assert_eq!(values(&plain_pc).await.len(), 4);
    });

    // The admin API over https, with the client certificate, and refused without one.
    let url = format!("https://{}/health", server.admin_addr);
    let curl = |extra: &[&Path]| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--cacert"]).arg(ca.cert());
        if let [cert, key] = extra {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        cmd.arg(&url).output().expect("curl")
    };
    let ok = curl(&[&writer.cert, &writer.key]);
    assert!(ok.status.success(), "curl: {}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok\n");
    let refused = curl(&[]);
    assert!(!refused.status.success(), "an admin client without a certificate was served");
    // The CLI's client (`guise module list --admin-ca-file … --admin-cert-file …`).
    let cli = guise_host::admin::client::AdminClient::new(server.admin_addr.to_string())
        .with_tls(&ca.cert(), Some((&writer.cert, &writer.key)))
        .unwrap();
    assert!(cli.list().unwrap().iter().any(|m| m.name == "kafka"));
    // A tenant's certificate (principal_tenants) reaches that tenant's transforms, not modules.
    let ci = guise_host::admin::client::AdminClient::new(server.admin_addr.to_string())
        .with_tls(&ca.cert(), Some((&acme_ci.cert, &acme_ci.key)))
        .unwrap();
    let err = ci.list().unwrap_err().to_string();
    assert!(err.contains("HTTP 403") && err.contains("operators"), "{err}");
    assert!(ci.list_transforms(Some("acme")).unwrap().is_empty());
    let err = ci.list_transforms(Some("public")).unwrap_err().to_string();
    assert!(err.contains("HTTP 403"), "{err}");
}

/// Certificate files renewed in place are served from the next handshake on, without a
/// restart; files changed into something that does not load leave the last good ones in use.
#[test]
fn renewed_certificates_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new(dir.path(), "first");
    let second = TestCa::new(dir.path(), "second");
    let (old, new) = (first.server("old"), second.server("new"));
    let live = Issued { cert: dir.path().join("live.crt"), key: dir.path().join("live.key") };
    let install = |from: &Issued| {
        // Written beside and renamed over, as certificate managers do.
        for (src, dst) in [(&from.cert, &live.cert), (&from.key, &live.key)] {
            let tmp = dst.with_extension("tmp");
            std::fs::copy(src, &tmp).unwrap();
            std::fs::rename(&tmp, dst).unwrap();
        }
    };
    install(&old);
    let server = TestServer::start_with(|c| {
        tls_settings(c, &live);
        c.kafka_security_protocol = SecurityProtocol::Ssl;
    });
    let addr = server.bootstrap();
    let rt = rt();
    rt.block_on(async {
        connect(addr.clone(), Some(tls_client(&first.cert(), None))).await.unwrap();
        assert!(connect(addr.clone(), Some(tls_client(&second.cert(), None))).await.is_err());
    });

    install(&new);
    std::thread::sleep(Duration::from_millis(1500));
    rt.block_on(async {
        let client = connect(addr.clone(), Some(tls_client(&second.cert(), None))).await.unwrap();
        client.controller_client().unwrap().create_topic("renewed", 1, 1, 5_000).await.unwrap();
        assert!(connect(addr.clone(), Some(tls_client(&first.cert(), None))).await.is_err());
    });

    // A half-written certificate is not taken: the renewed one stays.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\nMII").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    rt.block_on(async {
        connect(addr.clone(), Some(tls_client(&second.cert(), None))).await.unwrap();
    });
}

/// The Pulsar endpoint over TLS: the Pulsar Rust client connects with `pulsar+ssl://`, trusting
/// the test CA; lookups answer the TLS URL, and what it produced is read by Kafka clients.
#[test]
fn pulsar_clients_connect_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let server_cert = ca.server("server");
    let server = TestServer::start_with_pulsar(|c| {
        tls_settings(c, &server_cert);
        c.pulsar_tls = true;
    });
    let url = format!("pulsar+ssl://{}", server.pulsar_addr.unwrap());
    let pem = std::fs::read(ca.cert()).unwrap();
    let kafka = server.bootstrap();
    rt().block_on(async {
        use pulsar::{Pulsar, TokioExecutor};
        let client: Pulsar<TokioExecutor> =
            Pulsar::builder(&url, TokioExecutor).with_certificate_chain(pem).build().await.unwrap();
        let mut producer =
            client.producer().with_topic("persistent://public/default/sealed").build().await.unwrap();
        for i in 0..3 {
            producer.send_non_blocking(format!("sealed-{i}").into_bytes()).await.unwrap().await.unwrap();
        }
        let kafka = connect(kafka, None).await.unwrap();
        let pc = kafka.partition_client("sealed", 0, UnknownTopicHandling::Retry).await.unwrap();
        assert_eq!(values(&pc).await, (0..3).map(|i| format!("sealed-{i}").into_bytes()).collect::<Vec<_>>());
    });
}

/// Settings that name TLS without certificate files, or client verification without a CA, do
/// not start.
#[test]
fn tls_settings_without_their_files_are_refused() {
    let err = TestServer::try_start_with(|c| c.admin_tls = true).err().unwrap();
    assert!(err.contains("tls_cert_file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let cert = ca.server("server");
    let err = TestServer::try_start_with(|c| {
        tls_settings(c, &cert);
        c.kafka_security_protocol = SecurityProtocol::Ssl;
        c.tls_client_auth = ClientAuth::Required;
    })
    .err()
    .unwrap();
    assert!(err.contains("tls_client_ca_file"), "{err}");
    // A key that is not the certificate's.
    let stranger = ca.server("stranger");
    let err = TestServer::try_start_with(|c| {
        c.tls_cert_file = Some(cert.cert.clone());
        c.tls_key_file = Some(stranger.key.clone());
        c.kafka_security_protocol = SecurityProtocol::Ssl;
    })
    .err()
    .unwrap();
    assert!(err.contains("tls") || err.contains("key"), "{err}");
}

/// Kafka's Java client over SSL with its PEM trust store and key store (client certificate
/// required): an idempotent producer and a group consumer that commits.
#[test]
fn the_java_client_produces_and_consumes_over_ssl_with_a_client_certificate() {
    use guise_tests::java::clients;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let server_cert = ca.server("server");
    let client = ca.client("java", "/CN=java-client/OU=tests/O=Guise");
    // Kafka's PEM key store: the private key and the certificate chain in one file.
    let keystore = dir.path().join("java.pem");
    let pem = [std::fs::read(&client.key).unwrap(), std::fs::read(&client.cert).unwrap()].concat();
    std::fs::write(&keystore, pem).unwrap();
    let server = TestServer::start_with(|c| {
        tls_settings(c, &server_cert);
        c.tls_client_ca_file = Some(ca.cert());
        c.tls_client_auth = ClientAuth::Required;
        c.kafka_security_protocol = SecurityProtocol::Ssl;
    });
    let bootstrap = server.bootstrap();
    let ssl = [
        "security.protocol=SSL".to_string(),
        "ssl.truststore.type=PEM".to_string(),
        format!("ssl.truststore.location={}", ca.cert().display()),
        "ssl.keystore.type=PEM".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
    ];
    let args = |head: &[&str]| -> Vec<String> {
        head.iter().map(|s| s.to_string()).chain(ssl.iter().cloned()).collect()
    };
    let run = |a: Vec<String>| clients(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let sent = run(args(&["produce", &bootstrap, "java-ssl", "10"]));
    let sent = sent["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 10);
    assert!(sent.iter().all(|s| s.is_array()), "every send acknowledged: {sent:?}");
    let got = run(args(&["consume", &bootstrap, "java-ssl", "readers", "10"]));
    let values: Vec<&str> =
        got["records"].as_array().unwrap().iter().map(|r| r[3].as_str().unwrap()).collect();
    assert_eq!(values, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(got["committed"]["0"], 10);
}

/// `principal_tenants` maps a client certificate's principal to a tenant: its topics are
/// created there, and the listener's tenant does not see them.
#[test]
fn a_certificates_principal_is_mapped_to_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "guise");
    let server_cert = ca.server("server");
    let acme = ca.client("acme", "/CN=writer/O=Acme");
    let other = ca.client("other", "/CN=reader/O=Guise");
    let server = TestServer::start_with(|c| {
        tls_settings(c, &server_cert);
        c.tls_client_ca_file = Some(ca.cert());
        c.tls_client_auth = ClientAuth::Required;
        c.kafka_security_protocol = SecurityProtocol::Ssl;
        c.principal_tenants.insert("User:O=Acme,CN=writer".into(), "acme".parse().unwrap());
    });
    let addr = server.bootstrap();
    rt().block_on(async {
        let writer = connect(addr.clone(), Some(tls_client(&ca.cert(), Some(&acme)))).await.unwrap();
        writer.controller_client().unwrap().create_topic("invoices", 1, 1, 5_000).await.unwrap();
        let reader = connect(addr.clone(), Some(tls_client(&ca.cert(), Some(&other)))).await.unwrap();
        assert!(reader.list_topics().await.unwrap().iter().all(|t| t.name != "invoices"));
        assert!(writer.list_topics().await.unwrap().iter().any(|t| t.name == "invoices"));
    });
    assert!(server.server().log.topics("acme", "default").iter().any(|t| t.name.topic == "invoices"));
}
