//! The module lifecycle through the real `guise` binary: `guise module deploy | list | show |
//! rollback` against a running `guise serve`, refused uploads, and a restart that keeps the
//! active version (loaded from its cached artifact, not compiled again); and the same for
//! tenant transforms with `guise transform deploy | list | show | rollback | delete`.

mod common;

use common::Host;
use std::process::{Command, Output};

fn guise(admin: u16, args: &[&str]) -> Output {
    guise_cmd("module", admin, args)
}

fn transform(admin: u16, args: &[&str]) -> Output {
    guise_cmd("transform", admin, args)
}

fn guise_cmd(command: &str, admin: u16, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guise"))
        .arg(command)
        .args(args)
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn refused(out: Output) -> String {
    assert!(!out.status.success(), "expected a refusal, got {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn produce(kafka: u16, value: &str) -> i64 {
    produce_to(kafka, "cli", value)
}

/// The value of the record at `offset` of `topic`, partition 0.
fn fetch(kafka: u16, topic: &str, offset: i64) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client =
            rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{kafka}")]).build().await.unwrap();
        let pc = client
            .partition_client(topic, 0, rskafka::client::partition::UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let (records, _) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
        String::from_utf8(records[0].record.value.clone().unwrap()).unwrap()
    })
}

fn produce_to(kafka: u16, topic: &str, value: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client =
            rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{kafka}")]).build().await.unwrap();
        let pc = client
            .partition_client(topic, 0, rskafka::client::partition::UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let record = rskafka::record::Record {
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        pc.produce(vec![record], rskafka::client::partition::Compression::NoCompression).await.unwrap()[0]
    })
}

#[test]
fn deploy_list_show_rollback_and_restart_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Host::start(&data, 0, 0, &[]);
    let (kafka, admin) = (host.kafka, host.admin);

    let list = ok(guise(admin, &["list"]));
    assert!(list.lines().any(|l| l.starts_with("kafka") && l.contains("yes")), "{list}");
    assert_eq!(produce(kafka, "on v1"), 0);

    let faulty = guise_test_guests::FAULTY_TRANSLATOR_PATH;
    let out = ok(guise(admin, &["deploy", "kafka", faulty]));
    assert!(out.contains("deployed kafka version 2"), "{out}");
    assert_eq!(produce(kafka, "on v2"), 1);

    // Refused uploads say why, and version 2 stays.
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").unwrap();
    let err = refused(guise(admin, &["deploy", "kafka", garbage.to_str().unwrap()]));
    assert!(err.contains("does not compile") && err.contains("HTTP 422"), "{err}");
    let empty_component = dir.path().join("empty.wasm");
    std::fs::write(&empty_component, b"\0asm\x0d\0\x01\0").unwrap();
    let err = refused(guise(admin, &["deploy", "kafka", empty_component.to_str().unwrap()]));
    assert!(err.contains("protocol-handler"), "{err}");
    let err = refused(guise(admin, &["deploy", "Kafka!", faulty]));
    assert!(err.contains("invalid module name"), "{err}");
    let err = refused(guise(admin, &["rollback", "nothing-here"]));
    assert!(err.contains("no module named") && err.contains("404"), "{err}");

    let show = ok(guise(admin, &["show", "kafka"]));
    assert!(show.contains("active version 2"), "{show}");
    let v2 = show.lines().find(|l| l.starts_with('*')).expect("the active row is starred");
    assert!(v2.split_whitespace().nth(1) == Some("2"), "{show}");
    let calls: u64 = v2.split_whitespace().nth(7).unwrap().parse().unwrap();
    assert!(calls >= 1, "version 2 served the produce: {show}");
    assert!(show.contains("upload") && show.contains("embedded"), "{show}");

    let out = ok(guise(admin, &["rollback", "kafka"]));
    assert!(out.contains("kafka version 1"), "{out}");
    assert_eq!(produce(kafka, "on v1 again"), 2);
    let log = host.stop();
    assert!(log.contains("deployed"), "{log}");

    // Restart: version 1 is still the active one, loaded from the artifact cache.
    let host = Host::start(&data, kafka, admin, &[]);
    let show = ok(guise(admin, &["show", "kafka"]));
    assert!(show.contains("active version 1"), "{show}");
    assert_eq!(produce(kafka, "after restart"), 3);
    let log = host.stop();
    assert!(log.contains("loaded from the artifact cache"), "{log}");
    assert!(!log.contains("compiled again"), "{log}");

    // And with the host down, the CLI says so plainly.
    let err = refused(guise(admin, &["list"]));
    assert!(err.contains("cannot reach the admin API"), "{err}");
}

#[test]
fn transform_deploy_list_show_rollback_delete_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Host::start(&data, 0, 0, &[]);
    let (kafka, admin) = (host.kafka, host.admin);
    // `chaos` is test-only: the fixtures build it, not the host.
    let module = |name: &str| {
        let dir = if name == "chaos" { guise_test_guests::DIR } else { guise_host::wasm::GUEST_DIR };
        format!("{dir}/guise_transform_{name}.wasm")
    };
    let card = r#"{"card_number":"4111 1111 1111 1234"}"#;

    let out = ok(transform(admin, &["list"]));
    assert!(out.contains("tenant public has no transforms"), "{out}");
    let out =
        ok(transform(admin, &["deploy", "--topic", "cards", "--policy", "reject", &module("mask_card")]));
    assert!(out.contains("deployed public/mask-card version 1") && out.contains("runs on cards"), "{out}");
    assert_eq!(produce_to(kafka, "cards", card), 0);
    assert_eq!(fetch(kafka, "cards", 0), r#"{"card_number":"**** **** **** 1234"}"#);

    // Version 2 drops everything; refused uploads say why and change nothing.
    let chaos = module("chaos");
    let args =
        ["deploy", "--name", "mask-card", "--topic", "cards", "--policy", "skip", "--config", "mode=drop"];
    let out = ok(transform(admin, &[&args[..], &[chaos.as_str()]].concat()));
    assert!(out.contains("version 2"), "{out}");
    let err = refused(transform(admin, &["deploy", "--topic", "cards", "--policy", "sometimes", &chaos]));
    assert!(err.contains("not one of reject, skip, pass, dead-letter=TOPIC"), "{err}");
    let translator = guise_test_guests::FAULTY_TRANSLATOR_PATH;
    let err = refused(transform(admin, &["deploy", "--topic", "x", "--policy", "skip", translator]));
    assert!(err.contains("transform world") && err.contains("HTTP 422"), "{err}");
    let err = refused(transform(
        admin,
        &["deploy", "--name", "other", "--topic", "cards", "--policy", "skip", &chaos],
    ));
    assert!(err.contains("already runs the transform"), "{err}");
    let before = produce_to(kafka, "cards", card);
    assert_eq!(before, -1, "nothing was appended: no offset");

    let show = ok(transform(admin, &["show", "mask-card"]));
    assert!(
        show.contains("active version 2")
            && show.contains("policy skip")
            && show.contains("config mode=drop"),
        "{show}"
    );
    let list = ok(transform(admin, &["list"]));
    assert!(
        list.lines().any(|l| l.starts_with("mask-card") && l.contains("cards") && l.contains("skip")),
        "{list}"
    );

    let out = ok(transform(admin, &["rollback", "mask-card"]));
    assert!(out.contains("version 1 is active"), "{out}");
    assert_eq!(produce_to(kafka, "cards", card), 1);
    assert_eq!(fetch(kafka, "cards", 1), r#"{"card_number":"**** **** **** 1234"}"#);

    // A restart keeps the rolled-back binding; delete unbinds.
    host.stop();
    let host = Host::start(&data, kafka, admin, &[]);
    assert_eq!(produce_to(kafka, "cards", card), 2);
    assert_eq!(fetch(kafka, "cards", 2), r#"{"card_number":"**** **** **** 1234"}"#);
    ok(transform(admin, &["delete", "mask-card"]));
    assert_eq!(produce_to(kafka, "cards", card), 3);
    assert_eq!(fetch(kafka, "cards", 3), card);
    let err = refused(transform(admin, &["show", "mask-card"]));
    assert!(err.contains("HTTP 404"), "{err}");
    let err = refused(transform(admin, &["--tenant", "Bad!", "list"]));
    assert!(err.contains("invalid tenant"), "{err}");
    host.stop();
}

/// `guise <command>` with `env` set (the admin token travels in the environment or a file,
/// never on the command line).
fn guise_env(admin: u16, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guise"))
        .args(args)
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn transform_deploy<'a>(tenant: &'a str, module: &'a str) -> [&'a str; 9] {
    ["transform", "--tenant", tenant, "deploy", "--topic", "cards", "--policy", "reject", module]
}

/// curl's status code and body for `method path` with these extra arguments.
fn curl(admin: u16, method: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-X", method, "-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("http://127.0.0.1:{admin}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap_or_else(|_| panic!("curl: {text}")), body.to_string())
}

/// With `[admin_tokens]`, every admin request but `/health` needs a bearer token: an operator's
/// reaches everything, a tenant's only its own transforms (not the translator, not another
/// tenant's transforms, not the translator's metrics); none or a wrong one gets 401. Tokens come
/// from `guise admin-token`, are kept as a file or only as a hash, and never reach the log.
#[test]
fn admin_tokens_and_roles_through_the_cli_and_curl() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two fresh tokens: the operator's kept in a file, the tenant's only as its SHA-256.
    let made = |_| {
        let out = Command::new(env!("CARGO_BIN_EXE_guise")).arg("admin-token").output().unwrap();
        assert!(out.status.success());
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let sha = String::from_utf8(out.stderr).unwrap();
        let sha = sha.trim().strip_prefix("sha256 = \"").unwrap().strip_suffix('"').unwrap().to_string();
        (token, sha)
    };
    let ((ops, _), (acme, acme_sha)) = (made(0), made(1));
    assert_ne!(ops, acme);
    let hashed = Command::new(env!("CARGO_BIN_EXE_guise"))
        .args(["admin-token", "--hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(format!("{acme}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hashed.stdout).trim(), format!("sha256 = \"{acme_sha}\""));
    let ops_file = dir.path().join("ops.token");
    std::fs::write(&ops_file, format!("{ops}\n")).unwrap();
    std::fs::set_permissions(&ops_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tokens = format!(
        r#"{{ ops = {{ role = "operator", token_file = "{}" }}, acme-ci = {{ role = "tenant", tenant = "acme", sha256 = "{acme_sha}" }} }}"#,
        ops_file.display()
    );
    let host = Host::start(&data, 0, 0, &[("GUISE_ADMIN_TOKENS", &tokens)]);
    let admin = host.admin;
    let ops_env = [("GUISE_ADMIN_TOKEN_FILE", ops_file.to_str().unwrap())];
    let acme_env = [("GUISE_ADMIN_TOKEN", acme.as_str())];
    let mask = format!("{}/guise_transform_mask_card.wasm", guise_host::wasm::GUEST_DIR);
    let faulty = guise_test_guests::FAULTY_TRANSLATOR_PATH;
    let deploy = |tenant| transform_deploy(tenant, &mask);

    // No credential: 401 (with the scheme to use), except /health.
    let err = refused(guise_env(admin, &[], &["module", "list"]));
    assert!(err.contains("HTTP 401") && err.contains("Bearer"), "{err}");
    assert_eq!(curl(admin, "GET", "/health", &[]), (200, "ok\n".into()));
    let (status, _) = curl(admin, "GET", "/metrics", &[]);
    assert_eq!(status, 401);
    let head = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{admin}/modules"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&head.stdout).to_ascii_lowercase().contains("www-authenticate: bearer"));
    // A wrong token: 401, whatever the tenant.
    let wrong = "Authorization: Bearer not-a-token-of-this-host";
    let (status, body) = curl(admin, "GET", "/transforms/acme", &["-H", wrong]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not valid"), "{body}");

    // The tenant's token: its own transforms only.
    let out = ok(guise_env(admin, &acme_env, &deploy("acme")));
    assert!(out.contains("deployed acme/mask-card version 1"), "{out}");
    let err = refused(guise_env(admin, &acme_env, &deploy("public")));
    assert!(err.contains("HTTP 403") && err.contains("does not reach tenant"), "{err}");
    let err = refused(guise_env(admin, &acme_env, &["module", "deploy", "kafka", faulty]));
    assert!(err.contains("HTTP 403") && err.contains("operators"), "{err}");
    let err = refused(guise_env(admin, &acme_env, &["module", "list"]));
    assert!(err.contains("HTTP 403"), "{err}");
    let err = refused(guise_env(admin, &acme_env, &["transform", "--tenant", "public", "delete", "x"]));
    assert!(err.contains("HTTP 403"), "{err}");
    let bearer = format!("Authorization: Bearer {acme}");
    let (status, body) = curl(admin, "GET", "/transforms", &["-H", &bearer]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"acme\"") && !body.contains("\"public\""), "{body}");

    // The operator's token (from a file): everything.
    let out = ok(guise_env(admin, &ops_env, &deploy("public")));
    assert!(out.contains("deployed public/mask-card version 1"), "{out}");
    let out = ok(guise_env(admin, &ops_env, &["module", "deploy", "kafka", faulty]));
    assert!(out.contains("deployed kafka version 2"), "{out}");
    let ops_bearer = format!("Authorization: Bearer {ops}");
    let (_, all) = curl(admin, "GET", "/transforms", &["-H", &ops_bearer]);
    assert!(all.contains("\"acme\"") && all.contains("\"public\""), "{all}");
    // Metrics: the operator sees the translator's and every tenant's; the tenant only its own.
    let (_, metrics) = curl(admin, "GET", "/metrics", &["-H", &ops_bearer]);
    assert!(
        metrics.contains("guise_module_calls_total") && metrics.contains("tenant=\"public\""),
        "{metrics}"
    );
    let (status, metrics) = curl(admin, "GET", "/metrics", &["-H", &bearer]);
    assert_eq!(status, 200);
    assert!(metrics.contains("tenant=\"acme\""), "{metrics}");
    assert!(!metrics.contains("guise_module") && !metrics.contains("tenant=\"public\""), "{metrics}");
    let (status, groups) = curl(admin, "GET", "/groups", &["-H", &bearer]);
    assert_eq!((status, groups.trim()), (200, "[]"));

    let log = host.stop();
    assert!(log.contains("the admin API requires a credential"), "{log}");
    assert!(log.contains("caller=token acme-ci") && log.contains("status=403"), "{log}");
    assert!(log.contains("caller=token ops"), "{log}");
    assert!(log.contains("admin request refused"), "{log}");
    for secret in [&ops, &acme, "not-a-token-of-this-host"] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}
