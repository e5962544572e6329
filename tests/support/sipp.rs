//! Runs SIPp (the `sipp` binary, Debian package `sip-tester`) with a scenario from `tests/sipp/` and reports
//! how many calls succeeded.
//!
//! A run is always bounded: `-m` calls, SIPp's global `-timeout` (with `-timeout_error`, so reaching it is an
//! error), and a watchdog here that kills SIPp if it is still running 10 s after that timeout. Every address is
//! on 127.0.0.1: SIPp gets `-i`, `-mi`, `-ci` 127.0.0.1 and `-bind_local`, and always an explicit local port
//! (`-p`), so it never falls back to 5060.
//!
//! How the result is read: SIPp writes its statistics as CSV (`-trace_stat -stf stats.csv`) periodically and
//! once more when it exits; the last line's cumulative `SuccessfulCall(C)` and `FailedCall(C)` columns are the
//! counts. The exit code is kept as well (0: every call succeeded, 1: some call failed, 97: internal exit,
//! 99: normal exit without calls, 255: fatal error or `-timeout` reached, 254: a socket could not be bound;
//! `None` when killed). [`SippOutcome::assert_all_succeeded`] requires exit code 0 *and* the expected count of
//! successful calls *and* no failed call: calls cut short by the global timeout count as neither successful
//! nor failed, and SIPp would exit 0 for them without `-timeout_error`.
//!
//! Each run has its own directory under [`std::env::temp_dir`] with the error log (`-trace_err`), the message
//! trace (`-trace_msg`), the scenario's `<log>` actions (`-trace_logs`), the final screen (`-trace_screen`),
//! the statistics and SIPp's stdout and stderr. [`SippOutcome::log`] gathers the useful parts for assertion
//! messages; the directory is deleted when the run fully succeeded and kept (its path is in the log) otherwise.
//!
//! The `sipp` binary is taken from `PATH`, or from the `SIPP` environment variable when it is set.

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The global SIPp timeout unless [`Sipp::timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after its own timeout SIPp may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long a SIPp server may take to bind its port.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a running SIPp is polled.
const POLL: Duration = Duration::from_millis(20);
/// At most this much of each log file goes into [`SippOutcome::log`] (its end).
const LOG_EXCERPT: usize = 16 * 1024;
/// The only address SIPp uses.
const LOCAL_IP: &str = "127.0.0.1";

/// Which SIP transport SIPp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP, one socket (`-t u1`).
    Udp,
    /// TCP, one connection (`-t t1`).
    Tcp,
}

impl Transport {
    /// SIPp's `-t` value.
    fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// Whether SIPp calls out or answers.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// A UAC calling this address.
    Client(SocketAddr),
    /// A UAS listening on 127.0.0.1 (port 0: a free one is picked).
    Server(u16),
}

/// One SIPp run against `target` (a client) or on a local port (a server), set up builder-style and started
/// with [`Sipp::run`] (blocking) or [`Sipp::spawn`] (in the background).
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: PathBuf,
    role: Role,
    transport: Transport,
    service: Option<String>,
    calls: u32,
    rate: u32,
    timeout: Duration,
    extra: Vec<String>,
}

impl Sipp {
    /// A SIPp client running `scenario` against `target`.
    ///
    /// `scenario` is a file name in `tests/sipp/`, or a path (anything with a `/`) used as given. Defaults:
    /// UDP, 1 call, 10 calls per second, a 30 s timeout, SIPp's default request user (`service`).
    pub fn client(scenario: &str, target: SocketAddr) -> Self {
        Self::new(scenario, Role::Client(target))
    }

    /// A SIPp server (UAS) running `scenario` on 127.0.0.1:`port` (port 0 = pick a free one; readable with
    /// [`SippProcess::port`] once spawned). Same defaults as [`Sipp::client`]; `calls` is how many calls the
    /// server handles before it exits.
    pub fn server(scenario: &str, port: u16) -> Self {
        Self::new(scenario, Role::Server(port))
    }

    fn new(scenario: &str, role: Role) -> Self {
        Sipp {
            scenario: scenario_path(scenario),
            role,
            transport: Transport::Udp,
            service: None,
            calls: 1,
            rate: 10,
            timeout: DEFAULT_TIMEOUT,
            extra: Vec::new(),
        }
    }

    /// The SIP transport (`-t u1` or `-t t1`).
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// The user part of the Request-URI, `[service]` in the scenarios (`-s`).
    pub fn service(mut self, user: &str) -> Self {
        self.service = Some(user.to_owned());
        self
    }

    /// How many calls to make (or, for a server, to handle) before SIPp exits (`-m`).
    pub fn calls(mut self, n: u32) -> Self {
        self.calls = n;
        self
    }

    /// New calls per second (`-r`, default 10).
    pub fn rate(mut self, per_second: u32) -> Self {
        self.rate = per_second;
        self
    }

    /// SIPp's global timeout (`-timeout`, default 30 s): the whole run stops then, as a failure.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// One extra raw argument for SIPp, after the ones set here (e.g. `-trace_rtt`, or `-key` and its name and
    /// value as three calls).
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_owned());
        self
    }

    /// Runs to completion (blocking) and returns the outcome.
    pub fn run(self) -> SippOutcome {
        self.spawn().wait()
    }

    /// Starts SIPp in the background; the returned guard kills it on drop. A server has bound its port when
    /// this returns (waited for up to 5 s), so a client started next finds it.
    pub fn spawn(self) -> SippProcess {
        let port = match self.role {
            Role::Server(port) if port != 0 => port,
            _ => super::free_port(),
        };
        let dir = run_dir(&self.scenario);
        let mut args: Vec<String> = Vec::new();
        if let Role::Client(target) = self.role {
            args.push(target.to_string());
        }
        let scenario = self.scenario.to_string_lossy().into_owned();
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (port_arg, calls, rate) = (port.to_string(), self.calls.to_string(), self.rate.to_string());
        let timeout = format!("{}ms", self.timeout.as_millis().max(1));
        let (errors, messages, actions) = (file("errors.log"), file("messages.log"), file("actions.log"));
        let (screen, stats) = (file("screen.log"), file("stats.csv"));
        // SIPp's own addresses follow the target's family: ::1 toward an IPv6 target.
        let local_ip = match self.role {
            Role::Client(target) if target.is_ipv6() => "::1",
            _ => LOCAL_IP,
        };
        #[rustfmt::skip]
        let common = [
            "-sf", &scenario,
            "-t", self.transport.sipp_mode(),
            "-i", local_ip, "-mi", local_ip, "-ci", local_ip, "-bind_local",
            "-p", &port_arg,
            "-m", &calls,
            "-r", &rate,
            "-timeout", &timeout, "-timeout_error",
            "-nostdin",
            "-trace_err", "-error_file", &errors,
            "-trace_msg", "-message_file", &messages,
            "-trace_logs", "-log_file", &actions,
            "-trace_screen", "-screen_file", &screen,
            "-trace_stat", "-stf", &stats,
        ];
        args.extend(common.map(str::to_owned));
        if let Some(service) = &self.service {
            args.extend(["-s".to_owned(), service.clone()]);
        }
        args.extend(self.extra.iter().cloned());

        let program = std::env::var_os("SIPP").unwrap_or_else(|| "sipp".into());
        let command_line = format!("{} {}", program.to_string_lossy(), args.join(" "));
        let stdout = std::fs::File::create(dir.join("stdout.log")).expect("create SIPp stdout file");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create SIPp stderr file");
        let child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start SIPp ({command_line}): {e}; install it (Debian: sip-tester) or set SIPP")
            });
        let mut process = SippProcess {
            child: Some(child),
            port,
            dir,
            command_line,
            calls: self.calls,
            deadline: Instant::now() + self.timeout + EXIT_GRACE,
        };
        if let Role::Server(_) = self.role {
            process.wait_until_bound(self.transport);
        }
        process
    }
}

/// A SIPp started by [`Sipp::spawn`]. Dropping it kills SIPp (and keeps its logs if the thread is panicking).
#[derive(Debug)]
pub struct SippProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    command_line: String,
    calls: u32,
    deadline: Instant,
}

impl SippProcess {
    /// SIPp's local SIP port on 127.0.0.1: for a server, the port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until SIPp exits (killing it if it outlives its timeout by 10 s) and returns the outcome.
    pub fn wait(mut self) -> SippOutcome {
        let mut child = self.child.take().expect("SIPp child");
        let mut killed = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= self.deadline => {
                    let _ = child.kill();
                    killed = true;
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(_) => break None,
            }
        };
        self.outcome(status, killed)
    }

    /// Waits until the server's port is bound, SIPp has exited, or [`BIND_TIMEOUT`] has passed.
    fn wait_until_bound(&mut self, transport: Transport) {
        let started = Instant::now();
        while started.elapsed() < BIND_TIMEOUT {
            match port_is_bound(self.port, transport) {
                Some(true) => return,
                Some(false) => {}
                None => {
                    // No /proc/net: give SIPp a moment instead.
                    std::thread::sleep(Duration::from_millis(500));
                    return;
                }
            }
            if let Some(child) = self.child.as_mut()
                && !matches!(child.try_wait(), Ok(None))
            {
                return; // exited early; wait() reports why
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reads the statistics and logs of a finished run; deletes its directory if every call succeeded.
    fn outcome(&self, status: Option<ExitStatus>, killed: bool) -> SippOutcome {
        let exit_code = status.and_then(|s| s.code());
        let stats = read_stats(&self.dir.join("stats.csv"));
        let (successful, failed) = stats.map_or((0, 0), |s| (s.successful, s.failed));
        let all_good = exit_code == Some(0) && failed == 0 && successful == u64::from(self.calls);

        let mut log = String::new();
        let _ = writeln!(log, "{}", self.command_line);
        let _ = write!(log, "exit code: {exit_code:?}");
        if killed {
            let _ = write!(log, " (killed: still running {} s after its timeout)", EXIT_GRACE.as_secs());
        }
        let _ = writeln!(log);
        match stats {
            Some(stats) => {
                let (s, f) = (stats.successful, stats.failed);
                let _ = writeln!(log, "calls: {s} successful, {f} failed (of {} asked)", self.calls);
            }
            None => {
                let _ = writeln!(log, "calls: no statistics written (SIPp did not start or died)");
            }
        }
        for (name, title) in [
            ("errors.log", "errors (-trace_err)"),
            ("stderr.log", "stderr"),
            ("actions.log", "scenario <log> actions"),
            ("screen.log", "final screen"),
        ] {
            let text = read_tail(&self.dir.join(name));
            if !text.trim().is_empty() {
                let _ = writeln!(log, "--- {title} ---\n{}", text.trim_end());
            }
        }
        if !all_good || std::thread::panicking() {
            let _ = writeln!(log, "--- logs and message trace kept in {} ---", self.dir.display());
        }
        if all_good {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        SippOutcome { exit_code, successful, failed, log }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("SIPp ({}) killed; its logs are in {}", self.command_line, self.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// What a SIPp run did.
#[derive(Debug)]
pub struct SippOutcome {
    /// SIPp's exit code (0: every call succeeded, 1: some failed, 255: fatal error or timeout; `None`: killed).
    pub exit_code: Option<i32>,
    /// Calls that reached the end of the scenario.
    pub successful: u64,
    /// Calls that failed (unexpected message, receive timeout, failed check, ...).
    pub failed: u64,
    /// The command line, the exit code, the counts, SIPp's error log, stderr and final screen: for assertion
    /// messages.
    pub log: String,
}

impl SippOutcome {
    /// Panics, with the log, unless SIPp exited 0 with exactly `expected_calls` successful calls and none failed.
    pub fn assert_all_succeeded(&self, expected_calls: u64) {
        assert!(
            self.exit_code == Some(0) && self.successful == expected_calls && self.failed == 0,
            "SIPp: expected {expected_calls} successful calls, got {} successful and {} failed \
             (exit code {:?})\n{}",
            self.successful,
            self.failed,
            self.exit_code,
            self.log
        );
    }
}

/// The committed scenarios: `tests/sipp/` of the repository.
pub fn scenarios_dir() -> PathBuf {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/sipp"));
    dir.canonicalize().unwrap_or_else(|e| panic!("SIPp scenarios directory {}: {e}", dir.display()))
}

/// `scenario` as a file name in [`scenarios_dir`], or as a path if it has a `/`; it must exist.
fn scenario_path(scenario: &str) -> PathBuf {
    let path = if scenario.contains('/') { PathBuf::from(scenario) } else { scenarios_dir().join(scenario) };
    path.canonicalize().unwrap_or_else(|e| panic!("SIPp scenario {}: {e}", path.display()))
}

/// A new, empty directory for one run's logs.
fn run_dir(scenario: &Path) -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let stem = scenario.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("callwright-sipp-{}-{run}-{stem}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Whether some socket is bound to `port` (for TCP: listening), read from /proc/net without touching the
/// port; `None` if /proc/net cannot be read.
fn port_is_bound(port: u16, transport: Transport) -> Option<bool> {
    let (files, listening_only) = match transport {
        Transport::Udp => (["/proc/net/udp", "/proc/net/udp6"], false),
        Transport::Tcp => (["/proc/net/tcp", "/proc/net/tcp6"], true),
    };
    let mut readable = false;
    for file in files {
        let Ok(table) = std::fs::read_to_string(file) else { continue };
        readable = true;
        // "  sl  local_address rem_address   st ...", then "   0: 0100007F:3AFC 00000000:0000 07 ..."
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let local_port = local.rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && (!listening_only || *state == "0A") {
                return Some(true);
            }
        }
    }
    readable.then_some(false)
}

/// The end of a text file (at most [`LOG_EXCERPT`] bytes), or "" if it does not exist.
fn read_tail(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    let start = bytes.len().saturating_sub(LOG_EXCERPT);
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if start > 0 { format!("[... {start} bytes left out ...]\n{text}") } else { text }
}

/// SIPp's cumulative statistics at the end of a run (the last line of its `-trace_stat` CSV).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SippStats {
    pub successful: u64,
    pub failed: u64,
    /// Failed calls that got a response the scenario did not expect (for SIPp's built-in UAC, a 4xx–6xx).
    pub unexpected: u64,
    /// Failed calls that got no answer in time.
    pub timed_out: u64,
    pub retransmissions: u64,
    /// Wall time of the run, from the StartTime and CurrentTime columns (each "date<TAB>time<TAB>unix-seconds").
    pub elapsed_s: f64,
}

/// Reads the last line of a `-trace_stat` CSV; `None` if the file or a column is missing.
pub fn read_stats(path: &Path) -> Option<SippStats> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let column = |name: &str| header.iter().position(|h| h.trim() == name).and_then(|i| last.get(i).copied());
    let count = |name: &str| column(name).and_then(|v| v.trim().parse::<u64>().ok());
    let seconds = |name: &str| column(name).and_then(|v| v.rsplit('\t').next()?.trim().parse::<f64>().ok());
    Some(SippStats {
        successful: count("SuccessfulCall(C)")?,
        failed: count("FailedCall(C)")?,
        unexpected: count("FailedUnexpectedMessage(C)")?,
        timed_out: count("FailedMaxUDPRetrans(C)")? + count("FailedTimeoutOnRecv(C)")?,
        retransmissions: count("Retransmissions(C)")?,
        elapsed_s: seconds("CurrentTime")? - seconds("StartTime")?,
    })
}

/// SIPp's built-in UAC (`-sn uac`: INVITE, ACK, BYE at once) placing `calls` calls to `user` at `rate` per
/// second, with statistics only (no message trace: this is for loads of thousands of calls). Bounded by
/// SIPp's `-timeout` and a watchdog as for scenario runs.
pub fn flood(target: SocketAddr, user: &str, calls: u32, rate: u32, timeout: Duration) -> Flood {
    let dir = run_dir(Path::new("flood"));
    let stats = dir.join("stats.csv");
    let errors = dir.join("errors.log");
    let mut child = Command::new(std::env::var_os("SIPP").unwrap_or_else(|| "sipp".into()))
        .arg(target.to_string())
        .args(["-sn", "uac", "-s", user, "-i", "127.0.0.1", "-t", "u1", "-nostdin", "-bind_local"])
        .args(["-p", &super::free_port().to_string()])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
        .args(["-timeout", &format!("{}s", timeout.as_secs()), "-trace_stat", "-stf"])
        .arg(&stats)
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp (install Debian's sip-tester)");
    let deadline = Instant::now() + timeout + Duration::from_secs(10);
    while child.try_wait().expect("wait for sipp").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let counts = read_stats(&stats).unwrap_or_else(|| panic!("SIPp wrote no statistics in {}", dir.display()));
    let unexpected_statuses = unexpected_statuses(&std::fs::read_to_string(&errors).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&dir);
    Flood { counts, unexpected_statuses }
}

/// What a [`flood`] got.
#[derive(Debug)]
pub struct Flood {
    pub counts: SippStats,
    /// The status of each unexpected response that failed a call, by status.
    pub unexpected_statuses: std::collections::BTreeMap<u16, u64>,
}

/// The statuses in SIPp's error log lines "Aborting call on unexpected message … received 'SIP/2.0 503 …".
fn unexpected_statuses(error_log: &str) -> std::collections::BTreeMap<u16, u64> {
    let mut statuses = std::collections::BTreeMap::new();
    for line in error_log.lines().filter(|line| line.contains("unexpected message")) {
        let status = line.split("received 'SIP/2.0 ").nth(1).and_then(|rest| rest.get(..3)?.parse().ok());
        *statuses.entry(status.unwrap_or(0)).or_default() += 1;
    }
    statuses
}
