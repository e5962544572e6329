//! The admin API's listener: how many connections it holds, and for how long.
//!
//! The admin port faces whoever can reach it, token or not, so a client must not be able to hold the
//! process's file descriptors (and with them SIP over TCP, which needs them to accept). Bounds:
//! - at most [`MAX_CONNECTIONS`] open at once (a quarter of the open-file limit when that is lower; SIP's
//!   TCP listener takes at most half); past it a connection gets 503 and is closed at once;
//! - a request's header section must arrive within [`HEADER_READ_TIMEOUT`] of the connection opening or
//!   of the previous response (so an idle keep-alive connection is closed too);
//! - its body within [`BODY_READ_TIMEOUT`] of the header section (a 32 MiB upload needs about 0.5 MB/s);
//!   then 408. Compiling an upload is not bounded here: it runs one at a time and answers when done.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::admin::BodyLimits;

/// Connections the admin API holds at once: far more than operators and their tools use.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's header section.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body once its header section arrived.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections refused past the cap that may linger (up to [`REFUSAL_LINGER`]) to get their 503 out.
const MAX_LINGERING_REFUSALS: usize = 64;
/// How long a refused connection may take to read its 503.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// At most one warning about refused connections per this interval.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// [`MAX_CONNECTIONS`], or a quarter of the soft open-file limit when that is lower.
pub(crate) fn connection_cap() -> usize {
    match callwright_driver::open_file_limit() {
        Some(files) => MAX_CONNECTIONS.min(files / 4).max(1),
        None => MAX_CONNECTIONS,
    }
}

/// Serves `router` on `listener` within the bounds above; bodies past `body_limits` get 413.
pub(crate) async fn serve(listener: TcpListener, router: Router, max_connections: usize, body_limits: BodyLimits) {
    let router = router.layer(axum::middleware::from_fn_with_state(body_limits, read_body_in_time));
    let slots = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(%error, "admin API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_INTERVAL) {
                warn!(max_connections, "admin API at its connection limit: refusing connections");
                last_warning = Some(tokio::time::Instant::now());
            }
            // Told with FIN after reading off what it sent: closing with its request unread would reset the
            // connection, and the peer's kernel would drop the 503. A bounded number linger so; past that,
            // a flood is closed at once.
            if let Ok(lingering) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(lingering);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                debug!(%remote, %error, "admin connection ended");
            }
            drop(slot);
        });
    }
}

/// Answers 503 on a connection past the cap, closes our side, and reads off what the client still sends
/// until it closes too (at most [`REFUSAL_LINGER`]).
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let refusal =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n";
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(refusal).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Reads the whole body (at most `limits.any` bytes) before the handler runs, within
/// [`BODY_READ_TIMEOUT`]; a client that trickles it gets 408. A module upload announcing more than the
/// module limit goes to its handler unread, which refuses it from the Content-Length (413 naming the
/// module limit); any other request announcing more is refused here, unread.
async fn read_body_in_time(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = announced.filter(|length| *length > limits.upload as u64) {
        let is_upload = request.method() == Method::PUT && request.uri().path().starts_with("/v1/modules/");
        if is_upload {
            return next.run(request).await;
        }
        if length > limits.any as u64 {
            return refusal(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {} bytes", limits.any));
        }
    }
    let limit = limits.any;
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(_)) => {
            refusal(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {limit} bytes, or was cut off"))
        }
        Err(_) => refusal(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
        ),
    }
}

fn refusal(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}
