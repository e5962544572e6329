//! Shared support for the end-to-end tests: a `callwright serve` process with its own data directory,
//! a small HTTP client for its admin API, and SIPp runs against it.
#![allow(dead_code, unreachable_pub)]

pub mod baresip;
pub mod bench;
pub mod hooks;
pub mod languages;
pub mod rtp;
pub mod sipp;
pub mod transfer;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to start listening (it compiles the test modules on upload).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The admin token every test server uses.
pub const TOKEN: &str = "test-admin-token";

/// The test guests built by runtime/cli/build.rs.
pub const SIP_BEHAVIOURS: &str = env!("GUEST_SIP_BEHAVIOURS");
pub const HOSTILE: &str = env!("GUEST_HOSTILE");
pub const ANSWER_HANGUP: &str = env!("GUEST_ANSWER_HANGUP");
pub const IVR: &str = env!("GUEST_IVR");
pub const VERB_SAMPLE: &str = env!("GUEST_VERB_SAMPLE");
/// The same verbs as [`VERB_SAMPLE`], reporting version 2.
pub const VERB_SAMPLE_V2: &str = env!("GUEST_VERB_SAMPLE_V2");
pub const BLIND_TRANSFER: &str = env!("GUEST_BLIND_TRANSFER");
pub const ATTENDED_TRANSFER: &str = env!("GUEST_ATTENDED_TRANSFER");
pub const CUSTOM_VERB: &str = env!("GUEST_CUSTOM_VERB");
pub const LOOKUP_FLOW: &str = env!("GUEST_LOOKUP_FLOW");
pub const TRANSFER_VERBS: &str = env!("GUEST_CALLWRIGHT_VERBS_TRANSFER");
pub const STUBBED_IMPORT: &str = env!("GUEST_STUBBED_IMPORT");
pub const MEDIA_PLAYER: &str = env!("GUEST_MEDIA_PLAYER");

/// A port free for both UDP and TCP on 127.0.0.1, never handed out twice in this process (tests run in
/// parallel threads, and a port is free again between this check and the server binding it).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("local addr").port();
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no port free for both UDP and TCP")
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`); `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `GET /healthz` at `addr` answers 200.
pub fn answers_health_check(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    // Before the server binds its port, a connect can get that very port as its own source port and meet
    // itself (TCP simultaneous open): it then holds the port, and the server fails to bind it. Let go at once.
    if stream.local_addr().is_ok_and(|local| local == addr) {
        return false;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("callwright-{tag}-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `callwright serve`, killed on drop; its log goes to a file printed when a test fails.
pub struct Server {
    child: Child,
    /// The SIP address (UDP and TCP).
    pub sip: SocketAddr,
    /// The admin API address.
    pub http: SocketAddr,
    /// The data directory.
    pub data: PathBuf,
    log_path: PathBuf,
}

impl Server {
    /// Starts `callwright serve` on free ports with T1 = 100 ms (64·T1 = 6.4 s), no examples, the test
    /// token, data in `data`, and `extra` flags.
    pub fn start_in(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(data, &[&["--sip-t1-ms", "100"], extra].concat(), "info")
    }

    /// Starts `callwright serve` on free ports with no examples, the test token, data in `data`, `args`
    /// added to the command line and `RUST_LOG` set to `log_filter`.
    pub fn start_with(data: &Path, args: &[&str], log_filter: &str) -> Server {
        Server::launch(data, args, log_filter, None, false)
    }

    /// `callwright serve` as the README's first command runs it (the built-in examples deployed on first
    /// start), on free ports with T1 = 100 ms, the test token and data in `data`.
    pub fn with_examples(data: &Path) -> Server {
        Server::launch(data, &["--sip-t1-ms", "100"], "info", None, true)
    }

    /// [`Server::start_in`] with the open-file limit of the process set to `files` (soft and hard), as on a
    /// machine with the common default of 1024.
    pub fn start_with_file_limit(data: &Path, extra: &[&str], files: u32) -> Server {
        Server::launch(data, &[&["--sip-t1-ms", "100"], extra].concat(), "info", Some(files), false)
    }

    /// Starts a server on fresh ports. A port found free may be taken by another test's process before
    /// the server binds it (the admin API binds only after the built-in modules compile, seconds later):
    /// then the server exits naming the address, and it is started again on other ports.
    fn launch(data: &Path, args: &[&str], log_filter: &str, file_limit: Option<u32>, examples: bool) -> Server {
        for _ in 0..2 {
            match Server::try_launch(data, args, log_filter, file_limit, examples) {
                Ok(server) => return server,
                Err(log) => eprintln!("a port was taken before callwright bound it; starting again:\n{log}"),
            }
        }
        Server::try_launch(data, args, log_filter, file_limit, examples)
            .unwrap_or_else(|log| panic!("callwright exited:\n{log}"))
    }

    /// Starts a server; `Err` with its log when it exited because an address was in use.
    fn try_launch(
        data: &Path,
        args: &[&str],
        log_filter: &str,
        file_limit: Option<u32>,
        examples: bool,
    ) -> Result<Server, String> {
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let log_path = data.with_extension(format!("{}.log", sip.port()));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let mut command = match file_limit {
            Some(files) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={files}:{files}")).arg("--").arg(env!("CARGO_BIN_EXE_callwright"));
                prlimit
            }
            None => Command::new(env!("CARGO_BIN_EXE_callwright")),
        };
        let child = command
            .args(["serve", "--sip", &sip.to_string(), "--http", &http.to_string()])
            .arg("--data")
            .arg(data)
            .args(["--admin-token", TOKEN])
            .args((!examples).then_some("--no-examples"))
            .args(args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start callwright");
        let mut server = Server { child, sip, http, data: data.to_path_buf(), log_path };
        let started = Instant::now();
        // The admin API binds after the SIP sockets: once it answers, the server is ready. (A bare connect
        // is not proof: with many connections open, a connect to a port nobody listens on can meet itself.)
        while !answers_health_check(http) {
            if !server.is_running() {
                let log = server.log();
                assert!(log.contains("Address already in use"), "callwright exited:\n{log}");
                return Err(log);
            }
            assert!(started.elapsed() < STARTUP_TIMEOUT, "callwright did not start:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// A server with the `sip-behaviours` test guest as the catch-all app.
    pub fn with_behaviours(data: &Path) -> Server {
        let server = Server::start_in(data, &[]);
        server.deploy("sip-behaviours", SIP_BEHAVIOURS).assert_status(201);
        server.put_app("any", &serde_like::app("sip-behaviours", None, "null")).assert_status(201);
        server
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server (as `kill -9` would) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An admin API request with the test token.
    pub fn api(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        http(self.http, method, path, Some(TOKEN), body)
    }

    /// Uploads the component at `file` as module `name`.
    pub fn deploy(&self, name: &str, file: &str) -> HttpResponse {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        self.api("PUT", &format!("/v1/modules/{name}"), &bytes)
    }

    /// Creates or replaces app `name` from JSON.
    pub fn put_app(&self, name: &str, json: &str) -> HttpResponse {
        self.api("PUT", &format!("/v1/apps/{name}"), json.as_bytes())
    }

    /// Creates app `name` for calls to `user` running `flow` (a module and config, or a document), its hooks
    /// allowed to reach `hooks` and signed with `secret` when given.
    pub fn put_app_with_hooks(
        &self,
        name: &str,
        user: &str,
        flow: serde_json::Value,
        hooks: &hooks::HookServer,
        secret: Option<&str>,
    ) {
        let mut settings = serde_json::json!({"allow": [hooks.addr().to_string()]});
        if let Some(secret) = secret {
            settings["secret"] = secret.into();
        }
        let app = serde_json::json!({"route": {"to_user": user}, "flow": flow, "hooks": settings});
        self.put_app(name, &app.to_string()).assert_status(201);
    }

    /// One SIPp call to `user` with `scenario` (a file of `tests/sipp/`), which must succeed.
    pub fn call(&self, user: &str, scenario: &str) {
        sipp::Sipp::client(scenario, self.sip)
            .service(user)
            .timeout(Duration::from_secs(30))
            .run()
            .assert_all_succeeded(1);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- callwright log ({}) ---\n{}", self.log_path.display(), self.log());
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// App JSON without a JSON library.
pub mod serde_like {
    /// `{"route": {"to_user": …}, "flow": {"module": …, "config": …}}`; `config` is raw JSON.
    pub fn app(module: &str, to_user: Option<&str>, config: &str) -> String {
        let route = to_user.map(|u| format!("\"route\": {{\"to_user\": \"{u}\"}}, ")).unwrap_or_default();
        format!("{{{route}\"flow\": {{\"module\": \"{module}\", \"config\": {config}}}}}")
    }
}

/// An HTTP response: status and body text.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// The body as sent (not chunked: the admin API gives files with a Content-Length).
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected HTTP status; body: {}", self.body);
        self
    }
}

/// A minimal HTTP/1.1 request (Connection: close) with an optional bearer token.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the admin API");
    // Uploads answer when compiled: a large component (Python's, 19 MB) takes many seconds on a busy machine.
    stream.set_read_timeout(Some(Duration::from_secs(180))).expect("set timeout");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let content_type = if body.first() == Some(&b'{') { "Content-Type: application/json\r\n" } else { "" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write request");
    stream.write_all(body).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let bytes =
        response.windows(4).position(|w| w == b"\r\n\r\n").map(|end| response[end + 4..].to_vec()).unwrap_or_default();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Chunked bodies are small here; strip chunk sizes roughly by taking the JSON part.
    let body = match (body.find(['{', '[']), body.rfind(['}', ']'])) {
        (Some(start), Some(end)) if end >= start => body[start..=end].to_string(),
        _ => body,
    };
    HttpResponse { status, body, bytes }
}
