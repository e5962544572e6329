//! SIP messages: parsing, typed views of the fields the stack needs, and serialisation.
//!
//! The parser is our own rather than rsip's: rsip 0.4 fails a whole message on an unknown method (so no 501
//! can be sent), ignores Content-Length, and accepts several RFC 4475 invalid messages. Strictness follows
//! RFC 4475: tolerant of whitespace, folding, compact names and odd-but-legal characters; strict about
//! framing, duplicated single-value fields and malformed addresses. See `docs/sip-message.md`.

mod framing;
mod header;
mod params;
mod parse;
mod syntax;
mod uri;

use std::fmt;

pub use framing::{Frame, FramingError, StreamFramer};
pub use header::{CSeq, Header, Headers, NameAddr, Via, canonical_name, is_valid_call_id};
pub use params::Params;
pub use parse::{MAX_MESSAGE_SIZE, ParseError, ParseErrorKind};
pub use uri::{Host, SipUri, TelUri, Uri, UriError, unescape};

/// A SIP method. Unknown methods are kept (as [`Method::Extension`]) so they can be answered 501.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// INFO (RFC 6086)
    Info,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// UPDATE (RFC 3311)
    Update,
    /// MESSAGE (RFC 3428)
    Message,
    /// REFER (RFC 3515)
    Refer,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token, as sent (methods are case-sensitive).
    Extension(String),
}

impl Method {
    const KNOWN: [(&'static str, Method); 14] = [
        ("INVITE", Method::Invite),
        ("ACK", Method::Ack),
        ("BYE", Method::Bye),
        ("CANCEL", Method::Cancel),
        ("OPTIONS", Method::Options),
        ("REGISTER", Method::Register),
        ("INFO", Method::Info),
        ("PRACK", Method::Prack),
        ("SUBSCRIBE", Method::Subscribe),
        ("NOTIFY", Method::Notify),
        ("UPDATE", Method::Update),
        ("MESSAGE", Method::Message),
        ("REFER", Method::Refer),
        ("PUBLISH", Method::Publish),
    ];

    /// The method named by `token` (case-sensitive, as RFC 3261 §7.1 says).
    pub fn from_token(token: &str) -> Method {
        Method::KNOWN
            .iter()
            .find(|(name, _)| *name == token)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| Method::Extension(token.to_string()))
    }

    /// The method name.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Extension(token) => token,
            known => Method::KNOWN.iter().find(|(_, m)| m == known).map(|(name, _)| *name).unwrap_or("?"),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Header fields.
    pub headers: Headers,
    /// The body (Content-Length is written from it).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (100-699).
    pub status: u16,
    /// The reason phrase, kept as sent.
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// Parses one complete message (a datagram, or a frame from [`StreamFramer`]). For a datagram the body
    /// is framed by Content-Length when present (trailing bytes ignored), else runs to the end.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        parse::parse_message(bytes)
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Serialises the message, writing Content-Length from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn write_message(start_line: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(start_line.len() + 64 * 12 + body.len());
    out.extend_from_slice(start_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in headers.iter().filter(|h| !h.name.eq_ignore_ascii_case("Content-Length")) {
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request { method, uri, headers: Headers::new(), body: Vec::new() }
    }

    /// Serialises the request.
    pub fn to_bytes(&self) -> Vec<u8> {
        write_message(&format!("{} {} SIP/2.0", self.method, self.uri), &self.headers, &self.body)
    }
}

impl Response {
    /// A response with the standard reason phrase and no headers.
    pub fn new(status: u16) -> Response {
        Response { status, reason: reason_phrase(status).to_string(), headers: Headers::new(), body: Vec::new() }
    }

    /// Serialises the response.
    pub fn to_bytes(&self) -> Vec<u8> {
        write_message(&format!("SIP/2.0 {} {}", self.status, self.reason), &self.headers, &self.body)
    }

    /// True for 1xx.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The usual reason phrase for a status code (RFC 3261 §21 and extensions).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        429 => "Provide Referrer Identity",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}
