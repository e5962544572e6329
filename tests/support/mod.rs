//! Shared support for the end-to-end tests: a `callwright serve` process and SIPp runs against it.
#![allow(dead_code, unreachable_pub)]

pub mod sipp;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP")
}

/// A running `callwright serve`, killed on drop. Its log is kept in a file and printed by [`Server::log`].
pub struct Server {
    child: Child,
    /// The SIP address (UDP and TCP).
    pub sip: SocketAddr,
    log_path: PathBuf,
}

impl Server {
    /// Starts `callwright serve` on a free port with T1 = 100 ms (so 64·T1 is 6.4 s) and `extra` arguments.
    pub fn start(extra: &[&str]) -> Server {
        let port = free_port();
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let log_path = std::env::temp_dir().join(format!("callwright-e2e-{port}-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_callwright"))
            .args(["serve", "--sip", &sip.to_string(), "--sip-t1-ms", "100"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start callwright");
        let server = Server { child, sip, log_path };
        let started = Instant::now();
        while !server.log().contains("SIP listening") {
            assert!(started.elapsed() < STARTUP_TIMEOUT, "callwright did not start:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- callwright log ({}) ---\n{}", self.log_path.display(), self.log());
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}
