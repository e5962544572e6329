//! TCP connections: one task per connection frames what it reads and writes what the driver sends.

use std::net::SocketAddr;
use std::time::Duration;

use callwright_sip::message::{Frame, StreamFramer};
use callwright_sip::{Flow, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::StreamInput;

/// A connection with no bytes either way for this long is closed (keep-alives count as bytes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Messages queued for one connection before further ones are dropped.
const WRITE_BACKLOG: usize = 256;
/// How long an outbound connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn accept_loop(listener: TcpListener, to_driver: mpsc::Sender<StreamInput>) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let (writer, outbox) = mpsc::channel(WRITE_BACKLOG);
                if to_driver.send(StreamInput::Opened(remote, writer)).await.is_err() {
                    return;
                }
                tokio::spawn(serve_connection(stream, local, remote, outbox, to_driver.clone()));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a connection to `remote` in the background; bytes sent meanwhile wait in the returned channel.
pub(crate) fn connect(
    local: SocketAddr,
    remote: SocketAddr,
    to_driver: mpsc::Sender<StreamInput>,
) -> mpsc::Sender<Vec<u8>> {
    let (writer, outbox) = mpsc::channel(WRITE_BACKLOG);
    tokio::spawn(async move {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(remote)).await {
            Ok(Ok(stream)) => serve_connection(stream, local, remote, outbox, to_driver).await,
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

/// Reads and frames messages from one connection; writes what arrives on `outbox`. The flow names our
/// listening address as local, so Via and Contact advertise the port peers can connect back to.
async fn serve_connection(
    mut stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    to_driver: mpsc::Sender<StreamInput>,
) {
    let _ = stream.set_nodelay(true);
    let flow = Flow { transport: Transport::Tcp, local, remote };
    let (mut reader, mut writer) = stream.split();
    let mut framer = StreamFramer::new();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut buffer)) => {
                let Ok(Ok(len)) = read else { break };
                if len == 0 {
                    break;
                }
                framer.push(&buffer[..len]);
                loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Message(bytes))) => {
                            if to_driver.send(StreamInput::Message(flow, bytes)).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Frame::KeepAlive)) => {
                            if writer.write_all(b"\r\n").await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            warn!(%remote, %error, "closing TCP connection");
                            let _ = to_driver.send(StreamInput::Closed(remote)).await;
                            return;
                        }
                    }
                }
            }
            message = outbox.recv() => {
                let Some(bytes) = message else { break };
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_driver.send(StreamInput::Closed(remote)).await;
}
