//! `callwright`: the voice runtime's command line.
//!
//! - `callwright serve` runs the server: SIP (UDP and TCP), the wasm host, and the admin HTTP API. With no
//!   arguments it uses a local data directory and deploys the built-in examples on first start.
//! - `callwright deploy`, `apps`, `modules` and `calls` talk to a running server's admin API.

mod admin;
mod admin_listener;
mod client;
mod config;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use callwright_driver::{DriverConfig, SipDriver};
use callwright_host::apps::{AppDefinition, AppStore, FlowSpec, HookSettings, Route};
use callwright_host::engine::HostEngine;
use callwright_host::media_store::MediaStore;
use callwright_host::modules::ModuleStore;
use callwright_host::runtime::Runtime;
use clap::{Parser, Subcommand};
use tracing::{info, warn};

use crate::config::{ServeArgs, ServeConfig};

/// Components built from `guest-examples/` (by build.rs) that `serve` deploys on first start.
const EXAMPLES: &[(&str, &[u8])] =
    &[("answer-hangup", include_bytes!(env!("GUEST_ANSWER_HANGUP"))), ("ivr", include_bytes!(env!("GUEST_IVR")))];

/// The modules shipped with the runtime, installed at every start: verbs and the document runners.
const BUILTIN_MODULES: &[(&str, &[u8])] = &[
    ("builtin-core", include_bytes!(env!("GUEST_CALLWRIGHT_VERBS_CORE"))),
    ("builtin-transfer", include_bytes!(env!("GUEST_CALLWRIGHT_VERBS_TRANSFER"))),
    ("builtin-jambonz", include_bytes!(env!("GUEST_CALLWRIGHT_JAMBONZ"))),
    ("builtin-swml", include_bytes!(env!("GUEST_CALLWRIGHT_SWML"))),
    ("builtin-twiml", include_bytes!(env!("GUEST_CALLWRIGHT_TWIML"))),
];
/// Written in the data directory once the examples were deployed, so deleting them sticks.
const SEEDED_MARKER: &str = ".examples-deployed";

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
    Serve(Box<ServeArgs>),
    /// Upload a wasm component to a running server.
    Deploy(client::DeployArgs),
    /// List, show, create or delete apps.
    Apps(client::AppsArgs),
    /// List, show or delete modules.
    Modules(client::ModulesArgs),
    /// List live calls.
    Calls(client::ServerArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json { builder.json().init() } else { builder.init() }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Serve(args) = cli.command {
        let config = ServeConfig::resolve(*args)?;
        return runtime(config.workers)?.block_on(serve(config));
    }
    let client = runtime(1)?;
    client.block_on(async {
        match cli.command {
            Command::Serve(_) => unreachable!("handled above"),
            Command::Deploy(args) => client::deploy(args).await,
            Command::Apps(args) => client::apps(args).await,
            Command::Modules(args) => client::modules(args).await,
            Command::Calls(args) => client::calls(args).await,
        }
    })
}

/// The tokio runtime: one event-loop thread, or a pool of `workers` threads. Compiling uploads and other
/// blocking work always runs on tokio's separate blocking pool.
fn runtime(workers: u16) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers.into());
        builder
    };
    builder.enable_all().build().context("cannot start the async runtime")
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    init_logging(config.json_logs);
    match callwright_driver::raise_open_file_limit() {
        Ok(files) => info!(files, "open-file limit"),
        Err(error) => warn!(%error, "cannot raise the open-file limit"),
    }
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("cannot create the data directory {}", config.data.display()))?;
    let token = admin_token(&config)?;
    let engine = Arc::new(HostEngine::new(config.limits.clone())?);
    let modules = Arc::new(ModuleStore::open(engine.clone(), &config.data)?);
    let apps = Arc::new(AppStore::open(&config.data)?);
    let media = Arc::new(MediaStore::open(&config.data)?);
    install_builtins(&modules).await?;
    if config.examples {
        seed_examples(&config.data, &modules, &apps).await?;
    }
    let mut driver = DriverConfig::new(config.sip.clone()).with_t1(Duration::from_millis(config.sip_t1_ms));
    driver.shed_after = config.shed_after;
    driver.media = config.media.clone();
    let (sip, events) =
        SipDriver::start(driver).await.with_context(|| format!("cannot listen for SIP on {:?}", config.sip))?;
    let runtime = Runtime::new(engine, modules, apps, media, sip.clone())?;
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
    info!(addr = %listener.local_addr()?, "admin API listening");
    // A wildcard address is reached here on loopback; a public name would be a setting of its own.
    let mut admin_addr = listener.local_addr()?;
    if admin_addr.ip().is_unspecified() {
        admin_addr.set_ip(if admin_addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    runtime.media.set_recordings_url(format!("http://{admin_addr}/v1/recordings"));
    for (transport, addr) in sip.local_addrs() {
        info!(%transport, %addr, "SIP listening");
    }
    let admin_state = admin::AdminState { runtime: runtime.clone(), token: Arc::new(token) };
    let body_limits = admin::body_limits(&admin_state);
    let admin = admin::router(admin_state);
    let router = tokio::spawn(runtime.clone().route_events(events));
    let max_connections = admin_listener::connection_cap();
    let http = tokio::spawn(admin_listener::serve(listener, admin, max_connections, body_limits));
    tokio::select! {
        () = stop_requested() => {
            // SIP keeps running while the calls in progress finish; a second signal stops at once.
            tokio::select! {
                () = runtime.shut_down(config.shutdown_grace) => info!("stopped"),
                () = stop_requested() => warn!("second stop signal: stopping now"),
            }
        }
        result = router => warn!(?result, "SIP event loop ended"),
        result = http => warn!(?result, "admin API ended"),
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            Err(error) => warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The admin token: configured, or generated once and kept (owner-only) in the data directory.
fn admin_token(config: &ServeConfig) -> anyhow::Result<String> {
    if let Some(token) = &config.admin_token {
        return Ok(token.clone());
    }
    let path = config.data.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        info!(file = %path.display(), "admin token read from the data directory");
        return Ok(token.trim().to_string());
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness for the admin token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &token)?;
    // The token itself never goes to the log; only where to find it.
    info!(file = %path.display(), "generated an admin token");
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?
    };
    #[cfg(not(unix))]
    let mut file = std::fs::File::create_new(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Installs (or updates) the modules shipped with the runtime: the built-in verbs and document runners.
async fn install_builtins(modules: &Arc<ModuleStore>) -> anyhow::Result<()> {
    for (name, bytes) in BUILTIN_MODULES {
        let modules = modules.clone();
        tokio::task::spawn_blocking(move || modules.install_builtin(name, bytes))
            .await?
            .with_context(|| format!("installing the built-in module {name}"))?;
    }
    Ok(())
}

/// Deploys the built-in examples once per data directory: `answer-hangup` as the catch-all app `default`
/// and `ivr` on calls to 2000.
async fn seed_examples(data: &Path, modules: &Arc<ModuleStore>, apps: &Arc<AppStore>) -> anyhow::Result<()> {
    let marker = data.join(SEEDED_MARKER);
    if marker.exists() {
        return Ok(());
    }
    for (name, bytes) in EXAMPLES {
        if modules.get(name).is_none() {
            let modules = modules.clone();
            tokio::task::spawn_blocking(move || modules.put(name, bytes))
                .await?
                .with_context(|| format!("deploying example {name}"))?;
        }
    }
    let default_app = AppDefinition {
        route: None,
        flow: FlowSpec { module: "answer-hangup".into(), config: serde_json::json!({ "hangup_after_ms": 30_000 }) },
        hooks: HookSettings::default(),
        verbs: Default::default(),
        media: Default::default(),
    };
    let ivr_app = AppDefinition {
        route: Some(Route { to_user: Some("2000".into()) }),
        flow: FlowSpec { module: "ivr".into(), config: serde_json::json!({ "timeout_ms": 20_000 }) },
        hooks: HookSettings::default(),
        verbs: Default::default(),
        media: Default::default(),
    };
    for (name, app) in [("default", default_app), ("ivr", ivr_app)] {
        if let Err(error) = apps.put(name, app) {
            warn!(app = name, %error, "example app not created");
        }
    }
    std::fs::write(&marker, b"")?;
    info!("deployed the examples: app 'default' (answer-hangup, any number) and app 'ivr' (calls to 2000)");
    Ok(())
}
