//! `guise`: the command line. `anyhow` lives here, at the binary's edge.

use anyhow::Context;
use clap::{Parser, Subcommand};
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
}

#[derive(Parser)]
struct ServeArgs {
    /// A TOML config file (keys as in GUISE_* variables, lower case).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Embedded log directory [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long)]
    kafka_addr: Option<String>,
    /// Admin HTTP address [default: 127.0.0.1:8080].
    #[arg(long)]
    admin_addr: Option<String>,
    /// The HOST:PORT Metadata returns to clients [default: the bound Kafka address].
    #[arg(long)]
    advertised_kafka_addr: Option<String>,
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
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config =
        Config::load(args.config.as_deref(), std::env::vars()).context("loading configuration")?;
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.kafka_addr {
        config.kafka_addr = v;
    }
    if let Some(v) = args.admin_addr {
        config.admin_addr = v;
    }
    if let Some(v) = args.advertised_kafka_addr {
        config.advertised_kafka_addr = Some(v);
    }
    config.validate().context("invalid configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let server = Server::start(&config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down: answering parked requests and flushing the log");
        server.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
