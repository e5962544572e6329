//! TCP connections: one task per connection frames what it reads and writes what the driver sends.
//!
//! A peer cannot hold the server's resources by being slow (slowloris): a message must arrive whole
//! within its deadline (64·T1, [`TimerSettings::stream_message_deadline`]) of its first byte (an inbound
//! connection's first message within that time of the accept), a write may not block longer than that
//! on a peer that does not read, and at
//! most [`MAX_INBOUND_CONNECTIONS`] inbound connections are open at once; past that, new ones are
//! accepted and closed at once so the listen backlog never fills.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callwright_sip::message::{Frame, FramingError, StreamFramer};
use callwright_sip::timers::TimerSettings;
use callwright_sip::{Flow, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, info, warn};

use crate::StreamInput;

/// A connection with no bytes either way for this long is closed (keep-alives count as bytes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Inbound connections open at once, as Kamailio's `tcp_max_connections` default: enough for the
/// proxies, SBCs and softphones in front of a server of a few thousand calls, and bounded in memory
/// (at worst a 64 KiB partial message and the read buffer each: about 160 MiB). Lowered to half the
/// open-file limit when that is smaller (see [`inbound_connection_cap`]). Connections we open are not
/// counted: their number follows our own calls.
const MAX_INBOUND_CONNECTIONS: usize = 2048;
/// At most one warning about refused connections per this interval: a flood must not flood the log.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Read size per call; a 64 KiB message takes a few reads.
const READ_BUFFER: usize = 16 * 1024;
/// Messages queued for one connection before further ones are dropped.
const WRITE_BACKLOG: usize = 256;
/// How long a connection that is closing waits for the driver's last messages (a 513) to write them.
const LINGER: Duration = Duration::from_secs(1);
/// How long an outbound connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The time limits of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a message may take to arrive once its first byte has, and an inbound connection to send
    /// its first message. At the default T1 (32 s) a 64 KiB message needs only 16 kbit/s to make it; a
    /// peer slower than that is broken or is holding the connection.
    message_deadline: Duration,
    /// How long writing one message may wait on a peer that does not read (its receive window is full).
    write_timeout: Duration,
}

impl Limits {
    /// The limits that follow the endpoint's timers (both are [`TimerSettings::stream_message_deadline`]).
    pub(crate) fn for_timers(timers: &TimerSettings) -> Limits {
        let deadline = timers.stream_message_deadline();
        Limits { message_deadline: deadline, write_timeout: deadline }
    }
}

/// [`MAX_INBOUND_CONNECTIONS`], or half the soft open-file limit when that is lower: a listener that hits
/// the file limit first fails every `accept` (the backlog fills and nobody is told why), and the rest of
/// the process (outbound connections, the admin API, module files) runs out of descriptors with it. Linux
/// only (`/proc/self/limits`); elsewhere the constant holds.
fn inbound_connection_cap() -> usize {
    match crate::open_file_limit() {
        Some(files) => MAX_INBOUND_CONNECTIONS.min(files / 2).max(1),
        None => MAX_INBOUND_CONNECTIONS,
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, to_driver: mpsc::Sender<StreamInput>, limits: Limits) {
    accept_with_limits(listener, to_driver, limits, inbound_connection_cap()).await;
}

/// Accepts connections, at most `max_inbound` open at once.
async fn accept_with_limits(
    listener: TcpListener,
    to_driver: mpsc::Sender<StreamInput>,
    limits: Limits,
    max_inbound: usize,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    debug!(%local, max_inbound, "accepting TCP connections");
    let slots = Arc::new(Semaphore::new(max_inbound));
    let mut refusals = RefusalLog::default();
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Closed at once rather than left in the backlog, where it would block the ones behind it.
                    drop(stream);
                    refusals.refused(local, max_inbound);
                    continue;
                };
                let (writer, outbox) = mpsc::channel(WRITE_BACKLOG);
                if to_driver.send(StreamInput::Opened(remote, writer)).await.is_err() {
                    return;
                }
                let first_message_due = Some(Instant::now() + limits.message_deadline);
                let connection = Connection { local, remote, limits, to_driver: to_driver.clone() };
                tokio::spawn(connection.serve(stream, outbox, first_message_due, Some(slot)));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Counts connections refused at the limit and warns about them at most once per
/// [`REFUSAL_WARNING_INTERVAL`].
#[derive(Default)]
struct RefusalLog {
    since_warning: u64,
    warned_at: Option<Instant>,
}

impl RefusalLog {
    fn refused(&mut self, local: SocketAddr, limit: usize) {
        self.since_warning += 1;
        let now = Instant::now();
        if self.warned_at.is_none_or(|at| now.duration_since(at) >= REFUSAL_WARNING_INTERVAL) {
            warn!(%local, limit, refused = self.since_warning, "TCP connection limit reached: new connections are closed");
            self.since_warning = 0;
            self.warned_at = Some(now);
        }
    }
}

/// Opens a connection to `remote` in the background; bytes sent meanwhile wait in the returned channel.
pub(crate) fn connect(
    local: SocketAddr,
    remote: SocketAddr,
    to_driver: mpsc::Sender<StreamInput>,
    limits: Limits,
) -> mpsc::Sender<Vec<u8>> {
    let (writer, outbox) = mpsc::channel(WRITE_BACKLOG);
    tokio::spawn(async move {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(local, remote)).await {
            Ok(Ok(stream)) => {
                let connection = Connection { local, remote, limits, to_driver };
                // The peer owes us nothing until we have sent a request: no deadline before its first byte.
                connection.serve(stream, outbox, None, None).await;
            }
            Ok(Err(error)) => {
                debug!(%error, %remote, "TCP connect failed");
                let _ = to_driver.send(StreamInput::Closed(remote)).await;
            }
            Err(_) => {
                debug!(%remote, "TCP connect timed out");
                let _ = to_driver.send(StreamInput::Closed(remote)).await;
            }
        }
    });
    writer
}

/// Connects to `remote` from the listening address's IP (any port), so a node on its own address behind a
/// proxy sends from the address its Via and Contact name; from wherever the kernel picks when it listens
/// on every address.
async fn connect_from(local: SocketAddr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if remote.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    if !local.ip().is_unspecified() && local.is_ipv4() == remote.is_ipv4() {
        socket.bind(SocketAddr::new(local.ip(), 0))?;
    }
    socket.connect(remote).await
}

/// One connection's addresses and limits. The flow names our listening address as local, so Via and
/// Contact advertise the port peers can connect back to.
struct Connection {
    local: SocketAddr,
    remote: SocketAddr,
    limits: Limits,
    to_driver: mpsc::Sender<StreamInput>,
}

/// Why a connection ended.
#[derive(Debug)]
enum Closing {
    /// The peer closed it, reset it or the read failed.
    PeerGone,
    /// Nothing either way for [`IDLE_TIMEOUT`].
    Idle,
    /// A message (or an inbound connection's first one) did not arrive whole in time.
    MessageLate,
    /// A write could not finish in time or failed.
    WriteStuck,
    /// The stream cannot be framed (an endless header section, a bad Content-Length).
    Unframeable,
    /// A message's Content-Length was over the size limit; a request was answered 513 first.
    Oversized,
    /// The driver is gone.
    DriverStopped,
}

impl Connection {
    /// Reads and frames messages, and writes what arrives on `outbox`, until the connection ends; then tells
    /// the driver. `message_due` is when the first message must be complete (for inbound connections), and
    /// `_slot` the inbound connection's place under the limit, given back when this returns.
    async fn serve(
        self,
        mut stream: TcpStream,
        mut outbox: mpsc::Receiver<Vec<u8>>,
        mut message_due: Option<Instant>,
        _slot: Option<OwnedSemaphorePermit>,
    ) {
        let _ = stream.set_nodelay(true);
        let remote = self.remote;
        let flow = Flow { transport: Transport::Tcp, local: self.local, remote };
        let (mut reader, mut writer) = stream.split();
        let mut framer = StreamFramer::new();
        let mut buffer = vec![0u8; READ_BUFFER];
        let closing = 'connection: loop {
            let idle_due = Instant::now() + IDLE_TIMEOUT;
            let read_due = message_due.map_or(idle_due, |due| due.min(idle_due));
            tokio::select! {
                read = timeout_at(read_due, reader.read(&mut buffer)) => {
                    let len = match read {
                        Err(_) if message_due.is_some_and(|due| due <= Instant::now()) => break Closing::MessageLate,
                        Err(_) => break Closing::Idle,
                        Ok(Ok(0) | Err(_)) => break Closing::PeerGone,
                        Ok(Ok(len)) => len,
                    };
                    framer.push(&buffer[..len]);
                    let mut completed = false;
                    loop {
                        match framer.next_frame() {
                            Ok(Some(Frame::Message(bytes))) => {
                                completed = true;
                                if self.to_driver.send(StreamInput::Message(flow, bytes)).await.is_err() {
                                    break 'connection Closing::DriverStopped;
                                }
                            }
                            Ok(Some(Frame::KeepAlive)) => {
                                completed = true;
                                if !self.write(&mut writer, b"\r\n").await {
                                    break 'connection Closing::WriteStuck;
                                }
                            }
                            Ok(None) => break,
                            Err(FramingError::BodyTooLarge { size, head }) => {
                                warn!(%remote, size, "message too large: answering 513 and closing the TCP connection");
                                let oversized = StreamInput::Oversized { flow, head, size };
                                if self.to_driver.send(oversized).await.is_err() {
                                    break 'connection Closing::DriverStopped;
                                }
                                self.close_after_answer(&mut reader, &mut writer, &mut outbox, &mut buffer).await;
                                break 'connection Closing::Oversized;
                            }
                            Err(error) => {
                                warn!(%remote, %error, "closing TCP connection");
                                break 'connection Closing::Unframeable;
                            }
                        }
                    }
                    // The clock runs from a message's first byte (or the accept) until a message completes.
                    if completed {
                        message_due = None;
                    }
                    if framer.buffered() > 0 && message_due.is_none() {
                        message_due = Some(Instant::now() + self.limits.message_deadline);
                    }
                }
                message = outbox.recv() => {
                    let Some(bytes) = message else { break Closing::DriverStopped };
                    if !self.write(&mut writer, &bytes).await {
                        break Closing::WriteStuck;
                    }
                }
            }
        };
        debug!(%remote, ?closing, "TCP connection closed");
        let _ = self.to_driver.send(StreamInput::Closed(remote)).await;
    }

    /// Closes a connection that cannot go on reading, within [`LINGER`], without losing its last answer:
    /// writes what the driver still sends before it lets the connection go (closing `outbox`), which is the
    /// answer to the message that could not be taken and whatever was queued before it; then sends FIN and
    /// reads and drops what the peer still sends. Closing with unread bytes would send RST instead, and a
    /// peer's kernel drops data not yet read when RST arrives, so the answer would often be lost.
    async fn close_after_answer(
        &self,
        reader: &mut ReadHalf<'_>,
        writer: &mut WriteHalf<'_>,
        outbox: &mut mpsc::Receiver<Vec<u8>>,
        buffer: &mut [u8],
    ) {
        let due = Instant::now() + LINGER;
        while let Ok(Some(bytes)) = timeout_at(due, outbox.recv()).await {
            if !self.write(writer, &bytes).await {
                return;
            }
        }
        let _ = timeout_at(due, writer.shutdown()).await;
        while let Ok(Ok(1..)) = timeout_at(due, reader.read(buffer)).await {}
    }

    /// Writes `bytes` whole; false if that failed or took longer than the write timeout.
    async fn write(&self, writer: &mut WriteHalf<'_>, bytes: &[u8]) -> bool {
        match timeout(self.limits.write_timeout, writer.write_all(bytes)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                debug!(remote = %self.remote, %error, "TCP write failed");
                false
            }
            Err(_) => {
                info!(remote = %self.remote, "TCP peer does not read: closing the connection");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    const DEADLINE: Duration = Duration::from_millis(400);

    /// A listener with `max_inbound` slots and [`DEADLINE`] for messages and writes; its address and what
    /// it tells the driver.
    async fn listener(max_inbound: usize) -> (SocketAddr, mpsc::Receiver<StreamInput>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_driver, from_connections) = mpsc::channel(1024);
        let limits = Limits { message_deadline: DEADLINE, write_timeout: DEADLINE };
        tokio::spawn(accept_with_limits(listener, to_driver, limits, max_inbound));
        (addr, from_connections)
    }

    #[tokio::test]
    async fn outbound_connections_leave_from_the_listening_address() {
        // A peer on 127.0.0.1; we listen on 127.0.0.61, as a node on its own address behind a proxy.
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listening: SocketAddr = "127.0.0.61:5080".parse().unwrap();
        let stream = connect_from(listening, peer.local_addr().unwrap()).await.unwrap();
        let (_, seen_from) = peer.accept().await.unwrap();
        assert_eq!(seen_from.ip(), listening.ip());
        assert_eq!(stream.local_addr().unwrap().ip(), listening.ip());
        // Listening on every address: the kernel picks the source.
        let any: SocketAddr = "0.0.0.0:5080".parse().unwrap();
        connect_from(any, peer.local_addr().unwrap()).await.unwrap();
    }

    /// How long until the server closes `stream` (reads until EOF or reset), at most 5 s.
    async fn time_to_close(stream: &mut TcpStream) -> Duration {
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        loop {
            match timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("the connection is still open after 5 s"),
            }
        }
    }

    /// The next thing the listener told the driver that is not `Opened`. The writers of opened connections
    /// are kept, as the driver keeps them: a connection whose writer is dropped closes.
    async fn next_input(inputs: &mut mpsc::Receiver<StreamInput>) -> StreamInput {
        static WRITERS: std::sync::Mutex<Vec<mpsc::Sender<Vec<u8>>>> = std::sync::Mutex::new(Vec::new());
        loop {
            match timeout(Duration::from_secs(5), inputs.recv()).await.expect("no input for 5 s").expect("open") {
                StreamInput::Opened(_, writer) => WRITERS.lock().unwrap().push(writer),
                input => return input,
            }
        }
    }

    #[tokio::test]
    async fn a_message_trickled_past_the_deadline_closes_the_connection() {
        let (addr, mut inputs) = listener(8).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // A complete message first: the deadline then runs from the next message's first byte.
        stream.write_all(OPTIONS).await.unwrap();
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Message(..)));
        tokio::time::sleep(DEADLINE * 2).await;
        let trickle = async {
            for byte in OPTIONS {
                if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let started = Instant::now();
        trickle.await;
        let closed_after = started.elapsed() + time_to_close(&mut stream).await;
        // Closed at the deadline, long before the trickle would have ended (47 bytes at 50 ms: 2.35 s).
        assert!(closed_after >= DEADLINE && closed_after < DEADLINE * 3, "closed after {closed_after:?}");
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Closed(_)));
    }

    #[tokio::test]
    async fn an_inbound_connection_that_sends_nothing_is_closed_at_the_deadline() {
        let (addr, mut inputs) = listener(8).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let closed_after = time_to_close(&mut stream).await;
        let early = Duration::from_millis(50);
        assert!(closed_after >= DEADLINE - early && closed_after < DEADLINE * 3, "closed after {closed_after:?}");
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Closed(_)));
    }

    #[tokio::test]
    async fn a_connection_whose_messages_arrive_whole_outlives_the_deadline() {
        let (addr, mut inputs) = listener(8).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            // Split across writes, each message well within the deadline; idle in between for longer than it.
            let (head, tail) = OPTIONS.split_at(20);
            stream.write_all(head).await.unwrap();
            tokio::time::sleep(DEADLINE / 4).await;
            stream.write_all(tail).await.unwrap();
            assert!(matches!(next_input(&mut inputs).await, StreamInput::Message(..)));
            tokio::time::sleep(DEADLINE * 2).await;
        }
        // A keep-alive is answered, so the connection is still served.
        stream.write_all(b"\r\n\r\n").await.unwrap();
        let mut pong = [0u8; 2];
        timeout(Duration::from_secs(2), stream.read_exact(&mut pong)).await.unwrap().unwrap();
        assert_eq!(&pong, b"\r\n");
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_at_once_until_a_slot_frees() {
        let (addr, mut inputs) = listener(2).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let mut refused = TcpStream::connect(addr).await.unwrap();
        assert!(time_to_close(&mut refused).await < DEADLINE / 2, "the third connection was not closed at once");
        first.write_all(OPTIONS).await.unwrap();
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Message(..)));
        drop(first);
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Closed(_)));
        // The slot is free again: a new connection is served.
        let mut again = TcpStream::connect(addr).await.unwrap();
        again.write_all(OPTIONS).await.unwrap();
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Message(..)));
    }

    #[tokio::test]
    async fn a_message_too_large_gets_the_drivers_answer_before_the_close_while_its_body_still_comes() {
        let (addr, mut inputs) = listener(8).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let Some(StreamInput::Opened(_, writer)) = inputs.recv().await else { panic!("not opened") };
        let (mut reader, mut sender) = stream.into_split();
        let head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000000\r\n\r\n";
        sender.write_all(head).await.unwrap();
        // The body keeps coming: a close with it unread would reset the connection, losing the answer.
        let body = tokio::spawn(async move {
            let chunk = [b'a'; 8192];
            for _ in 0..1_000_000 / chunk.len() {
                if sender.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let input = timeout(Duration::from_secs(5), inputs.recv()).await.expect("told in time");
        let Some(StreamInput::Oversized { head: told, size, .. }) = input else { panic!("not told it is oversized") };
        assert_eq!((told.as_slice(), size), (&head[..], head.len() + 1_000_000));
        let answer = b"SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n";
        writer.send(answer.to_vec()).await.unwrap();
        drop(writer);
        let mut received = Vec::new();
        timeout(Duration::from_secs(5), reader.read_to_end(&mut received)).await.unwrap().expect("FIN, not RST");
        assert_eq!(received, answer);
        let input = timeout(Duration::from_secs(5), inputs.recv()).await.expect("closed in time");
        assert!(matches!(input, Some(StreamInput::Closed(_))));
        timeout(Duration::from_secs(5), body).await.expect("the body's writes end with the connection").unwrap();
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_is_closed_after_the_write_timeout() {
        let (addr, mut inputs) = listener(8).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let Some(StreamInput::Opened(_, writer)) = inputs.recv().await else { panic!("not opened") };
        // Far more than the socket buffers hold, and never read.
        let started = Instant::now();
        for _ in 0..WRITE_BACKLOG {
            if writer.send(vec![b'x'; 64 * 1024]).await.is_err() {
                break;
            }
        }
        assert!(matches!(next_input(&mut inputs).await, StreamInput::Closed(_)));
        assert!(started.elapsed() < DEADLINE * 4, "closed after {:?}", started.elapsed());
        drop(stream);
    }
}
