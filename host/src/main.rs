//! `guise`: the command line. `anyhow` lives here, at the binary's edge.

use anyhow::Context;
use clap::{Parser, Subcommand};
use guise_host::admin::client::AdminClient;
use guise_host::config::Config;
use guise_host::server::Server;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "guise",
    version,
    about = "Kafka clients on Pulsar or an embedded log, through a WebAssembly translator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Kafka clients (on the embedded log by default).
    Serve(ServeArgs),
    /// Deploy, inspect and roll back Wasm modules on a running host (through its admin API).
    Module(ModuleArgs),
    /// Deploy, inspect, roll back and delete tenants' message transforms on a running host.
    Transform(TransformArgs),
    /// Print a `sasl_users_file` entry holding USER's salted SCRAM credential. The password is
    /// read from the first line of standard input, never from the command line; only the
    /// salted keys are printed.
    ScramCredential(ScramArgs),
    /// Make a bearer token for the admin API (`[admin_tokens.NAME]`): the token goes to standard
    /// output (keep it in a file only its owner reads), and the `sha256 = "..."` line the
    /// configuration may hold instead of a `token_file` to standard error. With `--hash`, the
    /// token is read from standard input and only that line is printed.
    AdminToken(AdminTokenArgs),
}

#[derive(Parser)]
struct AdminTokenArgs {
    /// Hash a token read from standard input instead of making one.
    #[arg(long)]
    hash: bool,
}

#[derive(Parser)]
struct ScramArgs {
    /// The user name (the principal becomes User:NAME).
    #[arg(long)]
    user: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against either).
    #[arg(long, default_value = "SCRAM-SHA-512")]
    mechanism: String,
    /// PBKDF2 iterations (at least 4096).
    #[arg(long, default_value_t = 8192)]
    iterations: u32,
}

/// How to reach the host's admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// The host's admin API address.
    #[arg(long, env = "GUISE_ADMIN_ADDR", default_value = "127.0.0.1:8080", global = true)]
    admin: String,
    /// With `admin_tls`: PEM file of the CA the host's certificate chains to (https).
    #[arg(long, env = "GUISE_ADMIN_CA_FILE", global = true)]
    admin_ca_file: Option<PathBuf>,
    /// With `tls_client_auth`: this client's certificate chain and key (PEM).
    #[arg(long, env = "GUISE_ADMIN_CERT_FILE", global = true, requires = "admin_key_file")]
    admin_cert_file: Option<PathBuf>,
    #[arg(long, env = "GUISE_ADMIN_KEY_FILE", global = true, requires = "admin_cert_file")]
    admin_key_file: Option<PathBuf>,
    /// A file holding the admin API bearer token (or the token itself in GUISE_ADMIN_TOKEN; never
    /// on the command line).
    #[arg(long, env = "GUISE_ADMIN_TOKEN_FILE", global = true)]
    admin_token_file: Option<PathBuf>,
}

impl AdminArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let mut client = AdminClient::new(&self.admin);
        let token = match &self.admin_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the admin token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("GUISE_ADMIN_TOKEN").ok().map(|t| t.trim().to_string()),
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            client = client.with_token(token);
        }
        Ok(match &self.admin_ca_file {
            None => client,
            Some(ca) => {
                let identity = self.admin_cert_file.as_deref().zip(self.admin_key_file.as_deref());
                client.with_tls(ca, identity)?
            }
        })
    }
}

#[derive(Parser)]
struct TransformArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The tenant whose transforms these are.
    #[arg(long, default_value = "public", global = true)]
    tenant: String,
    #[command(subcommand)]
    command: TransformCommand,
}

#[derive(Subcommand)]
enum TransformCommand {
    /// Upload FILE (a component of the `transform` world) as the next version of a transform
    /// bound to the --topic topics, and make it active. The host validates it first; a refused
    /// upload changes nothing.
    Deploy {
        /// An input topic (repeat for more).
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// A topic the transform may route records to (repeat, at most 8).
        #[arg(long = "output-topic")]
        output_topics: Vec<String>,
        /// What happens to a batch the transform fails on (trap, timeout, memory, error):
        /// reject | skip | pass | dead-letter=TOPIC.
        #[arg(long)]
        policy: String,
        /// Module configuration KEY=VALUE (repeat).
        #[arg(long = "config")]
        config: Vec<String>,
        /// The transform's name [default: from FILE's name].
        #[arg(long)]
        name: Option<String>,
        file: PathBuf,
    },
    /// The tenant's transforms: active version, topics, policy, records in and out.
    List,
    /// A transform's binding and versions: hash, records in/out, errors, traps, time.
    Show { name: String },
    /// Activate the previous version (or --to VERSION), with the binding it was deployed with.
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u32>,
    },
    /// Unbind a transform from its topics and remove all its versions.
    Delete { name: String },
}

#[derive(Parser)]
struct ModuleArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: ModuleCommand,
}

#[derive(Subcommand)]
enum ModuleCommand {
    /// Upload FILE as the next version of NAME and make it active (the Kafka listener runs
    /// the module named "kafka"). The host validates it first; a refused upload changes nothing.
    Deploy { name: String, file: PathBuf },
    /// Every module, its active version and how many versions are kept.
    List,
    /// A module's versions: content hash, deploy time, source, calls, errors, traps, timeouts.
    Show { name: String },
    /// Activate the version that was active before the current one (or --to VERSION).
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u32>,
    },
}

/// `serve`'s flags: each one given is the last layer over the config file and the environment
/// (see `Config::load_layers`), under the setting of the same name.
#[derive(Parser, serde::Serialize)]
struct ServeArgs {
    /// A TOML config file (keys as in GUISE_* variables, lower case).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Embedded log directory [default: ./data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    kafka_addr: Option<String>,
    /// Admin HTTP address [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_addr: Option<String>,
    /// The HOST:PORT Metadata returns to clients [default: the bound Kafka address].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertised_kafka_addr: Option<String>,
    /// Serve the Pulsar binary protocol on this address too [default: off].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pulsar_addr: Option<String>,
    /// The HOST:PORT that Pulsar LOOKUP returns [default: the bound Pulsar address].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertised_pulsar_addr: Option<String>,
    /// Where topics live: `embedded` or `pulsar://HOST:PORT` [default: embedded].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<String>,
    /// With `pulsar://` storage: TENANT/NAMESPACE of the metadata logs [default: public/__guise].
    /// (The auth token is only read from the config or GUISE_PULSAR_AUTH_TOKEN, not from the
    /// command line, where other users could see it.)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pulsar_metadata_namespace: Option<String>,
    /// With `pulsar://` storage: the brokers' maxMessageSize in bytes [default: 5242880].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pulsar_max_message_bytes: Option<usize>,
    /// With `pulsar://` storage: http://HOST:PORT of Pulsar's admin API, to keep Kafka topics
    /// as Pulsar partitioned topics [default: none].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pulsar_admin_url: Option<String>,
    /// With `pulsar+ssl://` storage: PEM file of the CAs the brokers' certificate must chain to
    /// [default: the system's roots].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pulsar_tls_trust_certs_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUISE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Module(args) => module(args),
        Command::Transform(args) => transform(args),
        Command::ScramCredential(args) => scram_credential(args),
        Command::AdminToken(args) => admin_token(args),
    }
}

fn admin_token(args: AdminTokenArgs) -> anyhow::Result<()> {
    use guise_host::admin::auth::{MIN_TOKEN_CHARS, digest, generate_token, hex};
    if args.hash {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the token from standard input")?;
        let token = line.trim();
        anyhow::ensure!(
            token.chars().count() >= MIN_TOKEN_CHARS,
            "a token is at least {MIN_TOKEN_CHARS} characters"
        );
        println!("sha256 = \"{}\"", hex(&digest(token)));
    } else {
        let token = generate_token();
        println!("{token}");
        eprintln!("sha256 = \"{}\"", hex(&digest(&token)));
    }
    Ok(())
}

fn scram_credential(args: ScramArgs) -> anyhow::Result<()> {
    use guise_host::net::kafka::sasl::{Credential, MIN_ITERATIONS, Mechanism, Scram, Users};
    let scram = match Mechanism::parse(&args.mechanism) {
        Some(Mechanism::ScramSha256) => Scram::Sha256,
        Some(Mechanism::ScramSha512) => Scram::Sha512,
        _ => anyhow::bail!("--mechanism is SCRAM-SHA-256 or SCRAM-SHA-512"),
    };
    anyhow::ensure!(args.iterations >= MIN_ITERATIONS, "--iterations must be at least {MIN_ITERATIONS}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let cred = Credential::new(scram, password.as_bytes(), args.iterations);
    print!("{}", Users::entry(&args.user, scram, &cred));
    Ok(())
}

fn transform(args: TransformArgs) -> anyhow::Result<()> {
    use guise_host::transform::BindingSpec;
    let client = args.admin.client()?;
    let tenant = args.tenant.as_str();
    match args.command {
        TransformCommand::Deploy { topics, output_topics, policy, config, name, file } => {
            let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let name = name.unwrap_or_else(|| name_from_file(&file));
            let config = config
                .iter()
                .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Option<Vec<_>>>()
                .context("--config takes KEY=VALUE")?;
            let spec = BindingSpec { topics, output_topics, policy: policy.parse()?, config };
            let started = std::time::Instant::now();
            let t = client
                .deploy_transform(tenant, &name, &spec, &wasm)
                .with_context(|| format!("deploying {} as {tenant}/{name}", file.display()))?;
            let v = t.module.versions.iter().find(|v| v.active).context("no active version")?;
            println!(
                "deployed {tenant}/{name} version {} ({} bytes, sha256 {}) in {:.0?}; it runs on {} with policy {}",
                v.version,
                v.size,
                &v.sha256[..12],
                started.elapsed(),
                spec.topics.join(", "),
                spec.policy
            );
        }
        TransformCommand::List => {
            let all = client.list_transforms(Some(tenant))?;
            if all.is_empty() {
                println!("tenant {tenant} has no transforms");
                return Ok(());
            }
            println!(
                "{:<24} {:>6} {:<28} {:<20} {:>10} {:>10} {:>7}",
                "NAME", "ACTIVE", "TOPICS", "POLICY", "IN", "OUT", "ERRORS"
            );
            for t in all {
                let active = t.module.versions.iter().find(|v| v.active);
                let (topics, policy) = t
                    .binding
                    .as_ref()
                    .map_or(("-".into(), "-".into()), |b| (b.topics.join(","), b.policy.to_string()));
                println!(
                    "{:<24} {:>6} {:<28} {:<20} {:>10} {:>10} {:>7}",
                    t.module.name,
                    t.module.active.map_or("-".into(), |v| v.to_string()),
                    topics,
                    policy,
                    active.map_or(0, |v| v.stats.records_in),
                    active.map_or(0, |v| v.stats.records_out),
                    active.map_or(0, |v| v.stats.errors)
                );
            }
        }
        TransformCommand::Show { name } => {
            let t = client.show_transform(tenant, &name)?;
            println!(
                "transform {tenant}/{} — active version {}",
                t.module.name,
                t.module.active.map_or("none".into(), |v| v.to_string())
            );
            if let Some(b) = &t.binding {
                println!(
                    "  topics {}; output topics {}; policy {}",
                    b.topics.join(", "),
                    if b.output_topics.is_empty() { "none".into() } else { b.output_topics.join(", ") },
                    b.policy
                );
                for (k, v) in &b.config {
                    println!("  config {k}={v}");
                }
            }
            let o = t.outcomes;
            println!(
                "  failed batches: {} rejected, {} skipped, {} passed, {} dead-lettered",
                o.rejected, o.skipped, o.passed, o.dead_lettered
            );
            println!(
                "  {:>7} {:<12} {:>9} {:<20} {:>8} {:>10} {:>10} {:>7} {:>6} {:>8} {:>9}",
                "VERSION",
                "SHA256",
                "BYTES",
                "DEPLOYED (UTC)",
                "CALLS",
                "IN",
                "OUT",
                "ERRORS",
                "TRAPS",
                "TIMEOUTS",
                "TIME (ms)"
            );
            for v in t.module.versions.iter().rev() {
                let s = v.stats;
                println!(
                    "{} {:>7} {:<12} {:>9} {:<20} {:>8} {:>10} {:>10} {:>7} {:>6} {:>8} {:>9}",
                    if v.active { "*" } else { " " },
                    v.version,
                    &v.sha256[..12],
                    v.size,
                    utc(v.deployed_at_ms),
                    s.calls,
                    s.records_in,
                    s.records_out,
                    s.errors,
                    s.traps,
                    s.timeouts,
                    s.busy_ms
                );
            }
        }
        TransformCommand::Rollback { name, to } => {
            let t = client.rollback_transform(tenant, &name, to)?;
            println!(
                "{tenant}/{name} version {} is active",
                t.module.active.map_or("none".into(), |v| v.to_string())
            );
        }
        TransformCommand::Delete { name } => {
            client.delete_transform(tenant, &name)?;
            println!("deleted {tenant}/{name}; its topics run without a transform");
        }
    }
    Ok(())
}

/// A transform name from a file name: `guise_transform_mask_card.wasm` → `mask-card`.
fn name_from_file(file: &std::path::Path) -> String {
    let stem = file.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let stem = stem.strip_prefix("guise_transform_").unwrap_or(&stem);
    stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(64).collect()
}

fn module(args: ModuleArgs) -> anyhow::Result<()> {
    let client = args.admin.client()?;
    match args.command {
        ModuleCommand::Deploy { name, file } => {
            let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let started = std::time::Instant::now();
            let v = client
                .deploy(&name, &wasm)
                .with_context(|| format!("deploying {} as {name}", file.display()))?;
            println!(
                "deployed {name} version {} ({} bytes, sha256 {}) in {:.0?}; it is active",
                v.version,
                v.size,
                v.sha256,
                started.elapsed()
            );
        }
        ModuleCommand::List => {
            let modules = client.list()?;
            if modules.is_empty() {
                println!("no modules");
            }
            println!(
                "{:<20} {:>7} {:>9} {:>12} {:>8}  serving",
                "NAME", "ACTIVE", "VERSIONS", "CALLS", "ERRORS"
            );
            for m in modules {
                let active = m.versions.iter().find(|v| v.active);
                println!(
                    "{:<20} {:>7} {:>9} {:>12} {:>8}  {}",
                    m.name,
                    m.active.map_or("-".into(), |v| v.to_string()),
                    m.versions.len(),
                    active.map_or(0, |v| v.stats.calls),
                    active.map_or(0, |v| v.stats.errors),
                    if m.serving { "yes (Kafka listener)" } else { "no" }
                );
            }
        }
        ModuleCommand::Show { name } => {
            let m = client.show(&name)?;
            println!(
                "module {} — active version {}",
                m.name,
                m.active.map_or("none".into(), |v| v.to_string())
            );
            println!(
                "  {:>7} {:<12} {:>9} {:<20} {:<10} {:>10} {:>7} {:>6} {:>8}",
                "VERSION",
                "SHA256",
                "BYTES",
                "DEPLOYED (UTC)",
                "SOURCE",
                "CALLS",
                "ERRORS",
                "TRAPS",
                "TIMEOUTS"
            );
            for v in m.versions.iter().rev() {
                println!(
                    "{} {:>7} {:<12} {:>9} {:<20} {:<10} {:>10} {:>7} {:>6} {:>8}",
                    if v.active { "*" } else { " " },
                    v.version,
                    &v.sha256[..12],
                    v.size,
                    utc(v.deployed_at_ms),
                    v.source.chars().take(10).collect::<String>(),
                    v.stats.calls,
                    v.stats.errors,
                    v.stats.traps,
                    v.stats.timeouts
                );
            }
        }
        ModuleCommand::Rollback { name, to } => {
            let v = client.rollback(&name, to)?;
            println!("{name} version {} (sha256 {}) is active", v.version, &v.sha256[..12]);
        }
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` for milliseconds since the epoch (civil-from-days, no time zone).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let flags = toml::Table::try_from(&args).context("reading the flags")?;
    let config = Config::load_layers(args.config.as_deref(), std::env::vars(), flags)
        .context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let server = Server::start(&config).await?;
        let lost = server.members.as_ref().map(|m| m.lost());
        let why = wait_for_signal(lost).await?;
        tracing::info!("shutting down: answering parked requests and flushing the log");
        server.shutdown().await;
        match why {
            Some(lost) => Err(anyhow::anyhow!(lost)),
            None => anyhow::Ok(()),
        }
    })
}

/// SIGTERM or SIGINT (None), or this host's node lease taken by another (why).
async fn wait_for_signal(
    lost: Option<tokio::sync::watch::Receiver<Option<String>>>,
) -> anyhow::Result<Option<String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let lease = async {
        match lost {
            Some(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(why) => why.clone(),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => Ok(None),
        _ = int.recv() => Ok(None),
        why = lease => Ok(why),
    }
}
