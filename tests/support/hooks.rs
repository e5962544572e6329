//! A webhook recording server for the end-to-end tests: it listens on 127.0.0.1, answers every HTTP request
//! (200 with `{}` by default, or what a responder chooses) and keeps each request, so a test can check what
//! callwright sent and when.
//!
//! It speaks as much HTTP/1.1 as webhook clients need: keep-alive connections carrying several requests in
//! turn or pipelined (reqwest pools its connections), request bodies framed by `Content-Length` or by
//! `Transfer-Encoding: chunked`, and `Expect: 100-continue` (curl sends it before large bodies). Responses
//! always carry a `Content-Length`, and `Content-Type: application/json`.
//!
//! One thread accepts connections and one thread serves each connection. Every read has a short timeout, so
//! the threads notice when the [`HookServer`] is dropped and it stops them all before its drop returns. An
//! idle connection is left open as long as the client keeps it (closing it could race a request the client
//! is sending on it), but a request that has started must arrive in full within [`REQUEST_TIMEOUT`], or it
//! is answered 408 and the connection closed: nothing here can hang a test.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a connection read blocks before the thread looks at the stop flag again.
const READ_POLL: Duration = Duration::from_millis(50);
/// How long the accept loop sleeps when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// How long one request may take to arrive in full once its first byte came; also the write timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and header fields) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// At most this much of each body goes into the summaries in panic messages.
const SUMMARY_BODY: usize = 400;

/// Chooses the status and the JSON body text of the response to a request.
type Responder = dyn Fn(&HookRequest) -> (u16, String) + Send + Sync;

/// One HTTP request the server received, as it arrived (the body de-chunked).
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target as sent: the path with its query, e.g. `/action?call=1`.
    pub path: String,
    /// The header fields in arrival order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
}

impl HookRequest {
    /// The value of the first header field called `name` (in any case), if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics, showing the body, if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body of {} {} is not JSON ({e}): {}", self.method, self.path, self.text()))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split_once('?').map_or(self.path.as_str(), |(route, _)| route)
    }

    /// One line for panic messages: method, path and the start of the body.
    fn summary(&self) -> String {
        let text = self.text();
        match text.char_indices().nth(SUMMARY_BODY) {
            Some((cut, _)) => format!("{} {} {}...", self.method, self.path, &text[..cut]),
            None => format!("{} {} {text}", self.method, self.path),
        }
    }
}

/// A running webhook server on 127.0.0.1; dropping it stops and joins all its threads.
pub struct HookServer {
    /// The address it listens on.
    addr: SocketAddr,
    /// What its threads share.
    shared: Arc<Shared>,
    /// The accept loop, which joins the connection threads when it ends.
    acceptor: Option<JoinHandle<()>>,
}

/// The state the server's threads share.
struct Shared {
    /// Every request received, in arrival order.
    requests: Mutex<Vec<HookRequest>>,
    /// Signalled whenever a request is added to `requests`.
    arrived: Condvar,
    /// Set when the server is dropped: every thread ends at its next poll.
    stop: AtomicBool,
    /// Chooses each response.
    responder: Box<Responder>,
}

impl HookServer {
    /// Listens on 127.0.0.1:0; answers every request 200 with body `{}` (Content-Type application/json).
    pub fn start() -> HookServer {
        HookServer::start_with(|_| (200, "{}".to_owned()))
    }

    /// Same, with a responder choosing the status and the JSON body text of each response. The request is
    /// recorded before the responder is called; a responder that panics gets the client a 500.
    pub fn start_with(responder: impl Fn(&HookRequest) -> (u16, String) + Send + Sync + 'static) -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hook server on 127.0.0.1");
        let addr = listener.local_addr().expect("hook server address");
        listener.set_nonblocking(true).expect("make the hook listener non-blocking");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            responder: Box::new(responder),
        });
        let for_acceptor = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("hooks-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &for_acceptor))
            .expect("start the hook server thread");
        HookServer { addr, shared, acceptor: Some(acceptor) }
    }

    /// The address the server listens on (127.0.0.1 and a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`; `path` starts with `/` and may carry a query.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// All requests so far, in arrival order.
    pub fn requests(&self) -> Vec<HookRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until at least `n` requests to `path` (compared with each request's path without its query) have
    /// arrived, for at most `timeout`, and returns all of them in arrival order. On timeout it panics, listing
    /// every request that did arrive.
    pub fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<HookRequest> {
        let deadline = Instant::now() + timeout;
        let mut requests = lock(&self.shared.requests);
        loop {
            let matching: Vec<HookRequest> = requests.iter().filter(|r| r.route() == path).cloned().collect();
            if matching.len() >= n {
                return matching;
            }
            let now = Instant::now();
            if now >= deadline {
                let arrived: Vec<String> = requests.iter().map(|r| format!("  {}", r.summary())).collect();
                drop(requests);
                let arrived = if arrived.is_empty() { "  (none)".to_owned() } else { arrived.join("\n") };
                panic!(
                    "hook server {}: expected {n} request(s) to {path} within {timeout:?}, got {}; all requests:\n\
                     {arrived}",
                    self.addr,
                    matching.len(),
                );
            }
            requests =
                self.shared.arrived.wait_timeout(requests, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl std::fmt::Debug for HookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let received = lock(&self.shared.requests).len();
        f.debug_struct("HookServer").field("addr", &self.addr).field("received", &received).finish()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Locks `mutex`, also after a thread panicked while holding it (the data stays usable here).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections, one thread each, until the server stops; then joins those threads.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                connections.retain(|c| !c.is_finished());
                let shared = Arc::clone(shared);
                let thread = std::thread::Builder::new().name("hooks-connection".to_owned());
                match thread.spawn(move || serve(stream, &shared)) {
                    Ok(handle) => connections.push(handle),
                    Err(e) => eprintln!("hook server: cannot start a connection thread: {e}"),
                }
            }
            // No connection waiting, or a transient failure (e.g. out of file descriptors): try again soon.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Serves one connection: reads requests one after the other, records and answers each, until the client
/// closes the connection or asks for it to close, a request is unacceptable, or the server stops.
fn serve(stream: TcpStream, shared: &Shared) {
    // The accepted socket may inherit the listener's non-blocking mode; reads poll with a timeout instead.
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(READ_POLL)).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut connection = Connection { stream, buffer: Vec::new(), stop: &shared.stop };
    loop {
        let (request, close) = match connection.read_request() {
            Ok(read) => read,
            Err(Failure::Quiet) => break,
            Err(Failure::Reject(status, reason)) => {
                let body = serde_json::json!({ "error": reason }).to_string();
                let _ = connection.write_response(status, &body, true);
                break;
            }
        };
        let (status, body) = record_and_answer(shared, request);
        if connection.write_response(status, &body, close).is_err() || close {
            break;
        }
    }
    let _ = connection.stream.shutdown(Shutdown::Both);
}

/// Records `request` (waking [`HookServer::wait_for`]), then asks the responder for the response.
fn record_and_answer(shared: &Shared, request: HookRequest) -> (u16, String) {
    lock(&shared.requests).push(request.clone());
    shared.arrived.notify_all();
    catch_unwind(AssertUnwindSafe(|| (shared.responder)(&request))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        (500, serde_json::json!({ "error": format!("hook responder panicked: {message}") }).to_string())
    })
}

/// Why no request could be read.
enum Failure {
    /// The client closed the connection (between requests or in the middle of one), the connection failed,
    /// or the server is stopping: nothing to answer.
    Quiet,
    /// The request is unacceptable: answer this status with this reason, then close the connection.
    Reject(u16, String),
}

/// One client connection and the bytes read from it but not consumed yet (pipelined requests).
struct Connection<'a> {
    /// The socket, with a read timeout of [`READ_POLL`].
    stream: TcpStream,
    /// Bytes received and not yet parsed.
    buffer: Vec<u8>,
    /// The server's stop flag.
    stop: &'a AtomicBool,
}

impl Connection<'_> {
    /// Reads the next request; also says whether the connection is to close after the response.
    fn read_request(&mut self) -> Result<(HookRequest, bool), Failure> {
        // Idle until the first byte of a request (empty lines before a request are allowed and skipped),
        // then the whole request must arrive before the deadline.
        let mut deadline = None;
        let head_end = loop {
            while self.buffer.starts_with(b"\r\n") {
                self.buffer.drain(..2);
            }
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(Failure::Reject(431, format!("request head longer than {MAX_HEAD} bytes")));
            }
            if deadline.is_none() && !self.buffer.is_empty() && self.buffer != b"\r" {
                deadline = Some(Instant::now() + REQUEST_TIMEOUT);
            }
            self.fill(deadline)?;
        };
        let deadline = deadline.unwrap_or_else(|| Instant::now() + REQUEST_TIMEOUT);
        let head: Vec<u8> = self.buffer.drain(..head_end + 4).collect();
        let Head { method, path, version, headers } = parse_head(&head[..head_end])?;
        let mut request = HookRequest { method, path, headers, body: Vec::new() };

        if version == "HTTP/1.1" && request.header("Expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|_| Failure::Quiet)?;
        }
        request.body = self.read_body(&request, deadline)?;

        let connection = request.header("Connection").unwrap_or_default().to_ascii_lowercase();
        let has = |token: &str| connection.split(',').any(|t| t.trim() == token);
        let close = has("close") || (version == "HTTP/1.0" && !has("keep-alive"));
        Ok((request, close))
    }

    /// Reads the body framed as the request's header fields say: chunked, `Content-Length`, or none.
    fn read_body(&mut self, request: &HookRequest, deadline: Instant) -> Result<Vec<u8>, Failure> {
        if let Some(codings) = request.header("Transfer-Encoding") {
            let last = codings.rsplit(',').next().unwrap_or_default().trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(Failure::Reject(400, format!("unsupported Transfer-Encoding: {codings}")));
            }
            return self.read_chunked(deadline);
        }
        let lengths: Vec<&str> = request
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Content-Length"))
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .collect();
        let Some(first) = lengths.first() else { return Ok(Vec::new()) };
        if lengths.iter().any(|l| l != first) {
            return Err(Failure::Reject(400, format!("conflicting Content-Length values: {lengths:?}")));
        }
        let length: usize = first.parse().map_err(|_| Failure::Reject(400, format!("bad Content-Length: {first}")))?;
        if length > MAX_BODY {
            return Err(Failure::Reject(413, format!("body longer than {MAX_BODY} bytes")));
        }
        self.take(length, deadline)
    }

    /// Reads a chunked body: `size[;extension]` CRLF, data CRLF, ..., then `0` CRLF, trailer fields (ignored)
    /// and an empty line.
    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line = self.line(deadline)?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Failure::Reject(400, format!("bad chunk size line: {line:?}")))?;
            if size == 0 {
                while !self.line(deadline)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(Failure::Reject(413, format!("body longer than {MAX_BODY} bytes")));
            }
            body.extend(self.take(size, deadline)?);
            if self.take(2, deadline)? != b"\r\n" {
                return Err(Failure::Reject(400, "chunk data not followed by CRLF".to_owned()));
            }
        }
    }

    /// The next line (without its CRLF), as text.
    fn line(&mut self, deadline: Instant) -> Result<String, Failure> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).take(end).collect();
                return String::from_utf8(line).map_err(|_| Failure::Reject(400, "line is not UTF-8".to_owned()));
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(Failure::Reject(400, format!("line longer than {MAX_HEAD} bytes")));
            }
            self.fill(Some(deadline))?;
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, Failure> {
        while self.buffer.len() < n {
            self.fill(Some(deadline))?;
        }
        Ok(self.buffer.drain(..n).collect())
    }

    /// Reads more bytes into the buffer, waiting as long as needed (no deadline) or until `deadline`.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<(), Failure> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(Failure::Quiet);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Quiet),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Failure::Reject(408, format!("request not complete within {REQUEST_TIMEOUT:?}")));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Quiet),
            }
        }
    }

    /// Writes a response with a JSON body (none for 204 and 304), closing the connection after it if `close`.
    fn write_response(&mut self, status: u16, body: &str, close: bool) -> io::Result<()> {
        let body = if matches!(status, 204 | 304) { "" } else { body };
        let length = if status == 204 { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
        let connection = if close { "Connection: close\r\n" } else { "" };
        let response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n{length}{connection}\r\n{body}",
            reason(status)
        );
        self.stream.write_all(response.as_bytes())?;
        self.stream.flush()
    }
}

/// A parsed request head.
struct Head {
    /// The method.
    method: String,
    /// The request target.
    path: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    /// The header fields, names as sent, values trimmed.
    headers: Vec<(String, String)>,
}

/// Splits a request head (without its final empty line) into method, target, version and header fields;
/// continuation lines (obsolete line folding) are joined to the field before them.
fn parse_head(head: &[u8]) -> Result<Head, Failure> {
    let bad = |what: String| Failure::Reject(400, what);
    let head = std::str::from_utf8(head).map_err(|_| bad("request head is not UTF-8".to_owned()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("bad request line: {request_line:?}")));
    };
    if method.is_empty() || !path.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(bad(format!("bad request line: {request_line:?}")));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = headers.last_mut() else { return Err(bad("folded first header line".to_owned())) };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("bad header line: {line:?}")));
        };
        if name.is_empty() || name.ends_with([' ', '\t']) {
            return Err(bad(format!("bad header name: {line:?}")));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head { method: method.to_owned(), path: path.to_owned(), version: version.to_owned(), headers })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The reason phrase for `status` (any phrase will do for a client; these read well in traces).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
