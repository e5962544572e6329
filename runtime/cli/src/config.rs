//! `serve` settings: command-line flags, environment variables and an optional TOML file, in that order of
//! precedence, resolved into one [`ServeConfig`].

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use callwright_driver::DEFAULT_SHED_AFTER;
use callwright_driver::media::MediaConfig;
use callwright_host::limits::SandboxLimits;
use clap::Parser;
use serde::Deserialize;

/// The data directory when none is given: `callwright-data` in the working directory.
const DEFAULT_DATA_DIR: &str = "callwright-data";
const DEFAULT_SIP: &str = "127.0.0.1:5060";
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// One event-loop thread: measured fastest for the examples (no cross-thread wake-ups; see BENCHMARKS.md).
const DEFAULT_WORKERS: u16 = 1;
/// Seconds live calls may go on once shutdown begins (then they are hung up).
const DEFAULT_SHUTDOWN_GRACE_S: u64 = 30;

/// Flags of `callwright serve`.
#[derive(Parser, Debug, Default)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of the settings below (flags win over it).
    #[arg(long, env = "CALLWRIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// SIP listen address, UDP and TCP on the same port; repeat or comma-separate for several.
    #[arg(long = "sip", env = "CALLWRIGHT_SIP", value_delimiter = ',')]
    sip: Vec<SocketAddr>,
    /// Admin HTTP API listen address.
    #[arg(long, env = "CALLWRIGHT_HTTP")]
    http: Option<SocketAddr>,
    /// Where modules, apps and the admin token are kept.
    #[arg(long, env = "CALLWRIGHT_DATA")]
    data: Option<PathBuf>,
    /// Bearer token for the admin API. Without one, a token is generated once and kept in the data
    /// directory's `admin-token` file.
    #[arg(long, env = "CALLWRIGHT_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Do not deploy the built-in examples on first start.
    #[arg(long)]
    no_examples: bool,
    /// SIP timer T1 in milliseconds (RFC 3261 default 500). Lower it only on networks you know.
    #[arg(long = "sip-t1-ms", env = "CALLWRIGHT_SIP_T1_MS", value_parser = clap::value_parser!(u64).range(10..=5000))]
    sip_t1_ms: Option<u64>,
    /// Guest CPU time per call, in milliseconds.
    #[arg(long, env = "CALLWRIGHT_CPU_PER_CALL_MS")]
    cpu_per_call_ms: Option<u64>,
    /// Guest memory per call, in MiB.
    #[arg(long, env = "CALLWRIGHT_MEMORY_PER_CALL_MB")]
    memory_per_call_mb: Option<usize>,
    /// Largest module accepted on upload, in MiB (default 32).
    #[arg(long, env = "CALLWRIGHT_MAX_MODULE_MB")]
    max_module_mb: Option<usize>,
    /// Largest body a guest may send to a hook, and largest hook response it is handed, in KiB.
    #[arg(long, env = "CALLWRIGHT_HOOK_PAYLOAD_KB")]
    hook_payload_kb: Option<usize>,
    /// Bytes of variables one call may keep in the host, in KiB; a guest going past it is stopped.
    #[arg(long, env = "CALLWRIGHT_HOST_BUFFER_KB")]
    host_buffer_kb: Option<usize>,
    /// Calls with a live guest at once; more get 503.
    #[arg(long, env = "CALLWRIGHT_MAX_CALLS")]
    max_calls: Option<usize>,
    /// Threads running SIP and the guests (default 1: one event loop, the fastest for guests that mostly
    /// wait; more help guests that compute a lot, such as Python or JavaScript ones).
    #[arg(long, env = "CALLWRIGHT_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// On SIGTERM or Ctrl-C: new calls get 503 while live calls may go on for this many seconds; then
    /// they are hung up and the server exits.
    #[arg(long = "shutdown-grace-s", env = "CALLWRIGHT_SHUTDOWN_GRACE_S")]
    shutdown_grace_s: Option<u64>,
    /// Shed load: while every SIP request received in a 100 ms window waits longer than this many
    /// milliseconds to be handled, new calls get 503 with Retry-After (default 200; 0 never sheds).
    #[arg(long = "shed-after-ms", env = "CALLWRIGHT_SHED_AFTER_MS")]
    shed_after_ms: Option<u64>,
    /// UDP ports for RTP and RTCP, as FIRST-LAST (default 10000-32767): each call takes an even port
    /// for RTP and the odd one after it for RTCP.
    #[arg(long = "rtp-ports", env = "CALLWRIGHT_RTP_PORTS", value_parser = parse_port_range)]
    rtp_ports: Option<RangeInclusive<u16>>,
    /// The address written into SDP for our media, when it is not the one the SIP listener is bound to
    /// (a public address in front of a private one).
    #[arg(long = "media-address", env = "CALLWRIGHT_MEDIA_ADDRESS")]
    media_address: Option<IpAddr>,
    /// Hang up a call whose far end has sent no RTP for this many seconds, once it has sent any
    /// (default 60; 0 never).
    #[arg(long = "rtp-timeout-s", env = "CALLWRIGHT_RTP_TIMEOUT_S")]
    rtp_timeout_s: Option<u64>,
    /// Log as JSON lines.
    #[arg(long)]
    json_logs: bool,
}

/// `FIRST-LAST` with FIRST ≤ LAST, holding at least one even/odd pair.
fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text.split_once('-').ok_or_else(|| format!("{text:?} is not FIRST-LAST"))?;
    let port = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("{p:?} is not a port"));
    let (first, last) = (port(first)?, port(last)?);
    let first_even = first.checked_add(first % 2).filter(|&even| even < last && first > 0);
    match first_even {
        Some(_) => Ok(first..=last),
        None => Err(format!("{text} holds no even RTP port with an RTCP port after it")),
    }
}

/// The TOML file: the same settings, snake_case.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    sip: Option<Vec<SocketAddr>>,
    http: Option<SocketAddr>,
    data: Option<PathBuf>,
    admin_token: Option<String>,
    examples: Option<bool>,
    sip_t1_ms: Option<u64>,
    cpu_per_call_ms: Option<u64>,
    memory_per_call_mb: Option<usize>,
    max_calls: Option<usize>,
    workers: Option<u16>,
    max_call_duration_s: Option<u64>,
    after_call_grace_s: Option<u64>,
    max_module_mb: Option<usize>,
    hook_payload_kb: Option<usize>,
    host_buffer_kb: Option<usize>,
    shutdown_grace_s: Option<u64>,
    shed_after_ms: Option<u64>,
    rtp_ports: Option<String>,
    media_address: Option<IpAddr>,
    rtp_timeout_s: Option<u64>,
    json_logs: Option<bool>,
}

/// Settings in force.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) sip: Vec<SocketAddr>,
    pub(crate) http: SocketAddr,
    pub(crate) data: PathBuf,
    pub(crate) admin_token: Option<String>,
    pub(crate) examples: bool,
    pub(crate) sip_t1_ms: u64,
    pub(crate) limits: SandboxLimits,
    pub(crate) json_logs: bool,
    /// Runtime threads.
    pub(crate) workers: u16,
    /// How long live calls may go on once shutdown begins.
    pub(crate) shutdown_grace: Duration,
    /// Queueing of SIP requests past which new calls are refused (`None`: never).
    pub(crate) shed_after: Option<Duration>,
    /// RTP ports, the address SDP names, the inactivity timeout.
    pub(crate) media: MediaConfig,
}

impl ServeConfig {
    pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = SandboxLimits::default();
        let limits = SandboxLimits {
            cpu_per_call: args
                .cpu_per_call_ms
                .or(file.cpu_per_call_ms)
                .map(Duration::from_millis)
                .unwrap_or(defaults.cpu_per_call),
            memory_per_call: args
                .memory_per_call_mb
                .or(file.memory_per_call_mb)
                .map(|mb| mb << 20)
                .unwrap_or(defaults.memory_per_call),
            max_concurrent_calls: args.max_calls.or(file.max_calls).unwrap_or(defaults.max_concurrent_calls),
            max_call_duration: file.max_call_duration_s.map(Duration::from_secs).unwrap_or(defaults.max_call_duration),
            after_call_grace: file.after_call_grace_s.map(Duration::from_secs).unwrap_or(defaults.after_call_grace),
            max_module_size: args
                .max_module_mb
                .or(file.max_module_mb)
                .map(|mb| mb << 20)
                .unwrap_or(defaults.max_module_size),
            hook_payload_size: args
                .hook_payload_kb
                .or(file.hook_payload_kb)
                .map(|kb| kb << 10)
                .unwrap_or(defaults.hook_payload_size),
            host_buffer_per_call: args
                .host_buffer_kb
                .or(file.host_buffer_kb)
                .map(|kb| kb << 10)
                .unwrap_or(defaults.host_buffer_per_call),
        };
        let sip = if !args.sip.is_empty() {
            args.sip
        } else {
            file.sip.unwrap_or_else(|| vec![DEFAULT_SIP.parse().expect("valid default")])
        };
        let file_rtp_ports = file.rtp_ports.as_deref().map(parse_port_range).transpose();
        let file_rtp_ports = file_rtp_ports.map_err(|why| anyhow::anyhow!("rtp_ports in the config file: {why}"))?;
        let media_defaults = MediaConfig::default();
        let media = MediaConfig {
            ports: args.rtp_ports.or(file_rtp_ports).unwrap_or(media_defaults.ports),
            advertise: args.media_address.or(file.media_address),
            inactivity_timeout: match args.rtp_timeout_s.or(file.rtp_timeout_s) {
                Some(0) => None,
                Some(seconds) => Some(Duration::from_secs(seconds)),
                None => media_defaults.inactivity_timeout,
            },
        };
        Ok(ServeConfig {
            media,
            sip,
            http: args.http.or(file.http).unwrap_or_else(|| DEFAULT_HTTP.parse().expect("valid default")),
            data: args.data.or(file.data).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            admin_token: args.admin_token.or(file.admin_token),
            examples: !args.no_examples && file.examples.unwrap_or(true),
            sip_t1_ms: args.sip_t1_ms.or(file.sip_t1_ms).unwrap_or(500),
            limits,
            json_logs: args.json_logs || file.json_logs.unwrap_or(false),
            workers: args.workers.or(file.workers).unwrap_or(DEFAULT_WORKERS),
            shutdown_grace: Duration::from_secs(
                args.shutdown_grace_s.or(file.shutdown_grace_s).unwrap_or(DEFAULT_SHUTDOWN_GRACE_S),
            ),
            shed_after: match args.shed_after_ms.or(file.shed_after_ms) {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => Some(DEFAULT_SHED_AFTER),
            },
        })
    }
}

/// The default data directory (used by the client commands to find a generated admin token).
pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_port_ranges_hold_an_even_odd_pair() {
        assert_eq!(parse_port_range("20000-29999"), Ok(20000..=29999));
        assert_eq!(parse_port_range("4001-4003"), Ok(4001..=4003));
        for bad in ["4000", "4001-4002", "5000-4000", "0-1", "a-b", "4000-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("callwright-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("callwright.toml");
        std::fs::write(&file, "http = \"127.0.0.1:9999\"\nsip_t1_ms = 250\ncpu_per_call_ms = 100\nworkers = 4\n")
            .unwrap();
        let args = ServeArgs { config: Some(file), sip_t1_ms: Some(100), ..ServeArgs::default() };
        let config = ServeConfig::resolve(args).unwrap();
        assert_eq!(config.http.port(), 9999);
        assert_eq!(config.sip_t1_ms, 100);
        assert_eq!(config.limits.cpu_per_call, Duration::from_millis(100));
        assert_eq!(config.sip, vec![DEFAULT_SIP.parse::<SocketAddr>().unwrap()]);
        assert_eq!(config.workers, 4);
        assert!(config.examples);
        assert_eq!(ServeConfig::resolve(ServeArgs::default()).unwrap().workers, DEFAULT_WORKERS);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = std::env::temp_dir().join(format!("callwright-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("callwright.toml");
        std::fs::write(&file, "htp = \"127.0.0.1:9999\"\n").unwrap();
        let error = ServeConfig::resolve(ServeArgs { config: Some(file), ..ServeArgs::default() }).unwrap_err();
        assert!(format!("{error:#}").contains("htp"), "{error:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
