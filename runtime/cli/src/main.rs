//! `callwright`: the voice runtime's command line.
//!
//! `callwright serve` runs the SIP stack. Until the wasm host lands, calls are handled by a built-in test
//! handler (see [`test_handler`]) so the SIP layer can be exercised end to end with SIPp and softphones.

mod test_handler;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use callwright_driver::{DriverConfig, SipDriver};
use clap::{Parser, Subcommand};
use tracing::info;

/// A programmable voice runtime whose call logic is WebAssembly.
#[derive(Parser, Debug)]
#[command(name = "callwright", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
}

#[derive(Parser, Debug)]
struct ServeArgs {
    /// SIP listen address (UDP and TCP on the same port); repeat for several (e.g. IPv4 and IPv6).
    #[arg(
        long = "sip",
        env = "CALLWRIGHT_SIP",
        default_value = "127.0.0.1:5060",
        value_delimiter = ','
    )]
    sip: Vec<SocketAddr>,
    /// SIP timer T1 in milliseconds (RFC 3261 default 500). Lower it only on networks you know.
    #[arg(long = "sip-t1-ms", env = "CALLWRIGHT_SIP_T1_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=5000))]
    sip_t1_ms: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = DriverConfig::new(args.sip.clone()).with_t1(Duration::from_millis(args.sip_t1_ms));
    let (handle, events) = SipDriver::start(config)
        .await
        .with_context(|| format!("cannot listen for SIP on {:?}", args.sip))?;
    for (transport, addr) in handle.local_addrs() {
        info!(%transport, %addr, "SIP listening");
    }
    let handler = tokio::spawn(test_handler::run(handle, events));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("shutting down"),
        result = handler => result.context("call handler stopped")??,
    }
    Ok(())
}
