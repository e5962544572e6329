//! Turning bytes into a [`Message`], and the checks that decide between a normal answer and 400/505.

use std::borrow::Cow;
use std::fmt;

use super::header::{Headers, NameAddr, is_valid_call_id};
use super::syntax::is_token;
use super::uri::Uri;
use super::{Message, Method, Request, Response};

/// The largest message accepted (datagram or stream frame); larger ones are refused.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Header fields that may appear at most once (RFC 3261 §7.3.1; RFC 4475 multi01 and mcl01).
const SINGLE_VALUE_HEADERS: [&str; 7] =
    ["To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Type", "Content-Length"];

/// A request must carry these (RFC 3261 §8.1.1; Max-Forwards is left out because RFC 2543 peers omit it).
const REQUIRED_REQUEST_HEADERS: [&str; 5] = ["To", "From", "Call-ID", "CSeq", "Via"];

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No start line.
    Empty,
    /// Larger than [`MAX_MESSAGE_SIZE`].
    TooLarge(usize),
    /// The header section is not UTF-8.
    NotUtf8,
    /// The empty line ending the header section is missing.
    NoEndOfHeaders,
    /// The request or status line is malformed.
    BadStartLine(String),
    /// A SIP version other than 2.0.
    UnsupportedVersion(String),
    /// A header line with no colon or a bad field name.
    BadHeaderLine(String),
    /// A field whose value does not parse.
    BadHeader {
        /// The field name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A single-value field appears more than once.
    DuplicateHeader(String),
    /// A mandatory field is missing.
    MissingHeader(&'static str),
    /// Content-Length is not a number.
    BadContentLength(String),
    /// Content-Length claims more bytes than the datagram holds.
    BodyTruncated {
        /// What Content-Length said.
        declared: usize,
        /// What arrived.
        received: usize,
    },
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
}

/// A message that could not be parsed. When it was recognisably a request whose header fields could be
/// read, they are kept so the stack can answer it with [`ParseError::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// The header fields of a rejected request, when they could be read: lines that are not fields are
    /// skipped, and bytes that are not UTF-8 become U+FFFD.
    pub request_headers: Option<Headers>,
    /// The method of a rejected request, when it could be read.
    pub method: Option<Method>,
}

impl ParseError {
    fn new(kind: ParseErrorKind) -> ParseError {
        ParseError { kind, request_headers: None, method: None }
    }

    /// The status to answer a rejected request with: 505 for a wrong version, 513 for size, else 400.
    pub fn status(&self) -> u16 {
        match self.kind {
            ParseErrorKind::UnsupportedVersion(_) => 505,
            ParseErrorKind::TooLarge(_) => 513,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::Empty => write!(f, "empty message"),
            ParseErrorKind::TooLarge(n) => {
                write!(f, "message of {n} bytes is larger than {MAX_MESSAGE_SIZE}")
            }
            ParseErrorKind::NotUtf8 => write!(f, "header section is not UTF-8"),
            ParseErrorKind::NoEndOfHeaders => write!(f, "no empty line after the header fields"),
            ParseErrorKind::BadStartLine(why) => write!(f, "bad start line: {why}"),
            ParseErrorKind::UnsupportedVersion(v) => write!(f, "unsupported SIP version {v}"),
            ParseErrorKind::BadHeaderLine(line) => write!(f, "bad header line {line:?}"),
            ParseErrorKind::BadHeader { name, detail } => write!(f, "bad {name}: {detail}"),
            ParseErrorKind::DuplicateHeader(name) => write!(f, "{name} appears more than once"),
            ParseErrorKind::MissingHeader(name) => write!(f, "missing {name}"),
            ParseErrorKind::BadContentLength(v) => write!(f, "bad Content-Length {v:?}"),
            ParseErrorKind::BodyTruncated { declared, received } => {
                write!(f, "Content-Length {declared} but only {received} body bytes")
            }
            ParseErrorKind::CSeqMethodMismatch => {
                write!(f, "CSeq method differs from the request method")
            }
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for ParseError {}

/// Finds the end of the header section: the offset of the body, and the header section's length.
pub(crate) fn find_end_of_headers(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes[i + 1] == b'\n' {
                return Some((i + 2, i + 1));
            }
            if bytes[i + 1] == b'\r' && bytes.get(i + 2) == Some(&b'\n') {
                return Some((i + 3, i + 1));
            }
        }
        i += 1;
    }
    None
}

/// The longest excerpt of a bad header line kept in [`ParseErrorKind::BadHeaderLine`]: it is echoed in
/// the Warning of the 400, which should stay a small datagram whatever the peer sent.
const BAD_LINE_EXCERPT: usize = 80;

/// A header section split into lines, read past any malformed ones so a 400 can still echo its fields.
struct HeaderSection<'a> {
    start_line: &'a str,
    headers: Headers,
    /// The first line that is not a header field (excerpt); it and its continuation lines were skipped.
    first_bad_line: Option<String>,
}

fn excerpt(line: &str) -> String {
    match line.char_indices().nth(BAD_LINE_EXCERPT) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line.to_string(),
    }
}

/// Splits the header section into the start line and unfolded `(name, value)` fields.
fn split_header_section(section: &str) -> Result<HeaderSection<'_>, ParseErrorKind> {
    let mut lines = section.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().filter(|l| !l.is_empty()).ok_or(ParseErrorKind::Empty)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut first_bad_line = None;
    // Whether the last line was skipped: its continuation lines are skipped with it, not folded into
    // the field before it.
    let mut skipping = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if skipping {
                continue;
            }
            let Some(last) = fields.last_mut() else {
                first_bad_line.get_or_insert_with(|| excerpt(line));
                skipping = true;
                continue;
            };
            let more = line.trim();
            if !more.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(more);
            }
            continue;
        }
        let field = line.split_once(':').map(|(name, value)| (name.trim_end_matches([' ', '\t']), value));
        match field {
            Some((name, value)) if is_token(name) => {
                fields.push((name.to_string(), value.trim().to_string()));
                skipping = false;
            }
            _ => {
                first_bad_line.get_or_insert_with(|| excerpt(line));
                skipping = true;
            }
        }
    }
    let mut headers = Headers::new();
    for (name, value) in fields {
        headers.push_received(&name, value);
    }
    Ok(HeaderSection { start_line, headers, first_bad_line })
}

enum StartLine {
    Request { method: Method, uri: Result<Uri, String> },
    Response { status: u16, reason: String },
}

fn parse_version(version: &str) -> Result<(), ParseErrorKind> {
    let Some(number) = version.get(..4).filter(|p| p.eq_ignore_ascii_case("SIP/")).map(|_| &version[4..]) else {
        return Err(ParseErrorKind::BadStartLine(format!("bad version {version:?}")));
    };
    let well_formed = number.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_string() + b).bytes().all(|c| c.is_ascii_digit())
    });
    match (well_formed, number) {
        (true, "2.0") => Ok(()),
        (true, _) => Err(ParseErrorKind::UnsupportedVersion(version.into())),
        (false, _) => Err(ParseErrorKind::BadStartLine(format!("bad version {version:?}"))),
    }
}

/// True when `line` starts with "SIP/" in any case (a status line). Compares bytes: the line may hold
/// multi-byte characters anywhere (fuzzing found a panic when slicing it as text).
fn starts_with_sip_version(line: &str) -> bool {
    line.as_bytes().get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

fn parse_start_line(line: &str) -> Result<StartLine, (ParseErrorKind, Option<Method>)> {
    if starts_with_sip_version(line) {
        let (version, rest) = line.split_once(' ').ok_or((ParseErrorKind::BadStartLine(line.into()), None))?;
        parse_version(version).map_err(|e| (e, None))?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| code.parse::<u16>().ok())
            .flatten()
            .filter(|s| (100..700).contains(s))
            .ok_or_else(|| (ParseErrorKind::BadStartLine(format!("bad status code {code:?}")), None))?;
        return Ok(StartLine::Response { status, reason: reason.to_string() });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let method = parts.first().filter(|m| is_token(m)).map(|m| Method::from_token(m));
    let [method_text, uri_text, version] = parts[..] else {
        let why = "request line must be Method SP Request-URI SP SIP-Version".to_string();
        return Err((ParseErrorKind::BadStartLine(why), method));
    };
    if !is_token(method_text) {
        return Err((ParseErrorKind::BadStartLine(format!("bad method {method_text:?}")), None));
    }
    parse_version(version).map_err(|e| (e, method.clone()))?;
    let method = Method::from_token(method_text);
    let uri = if uri_text.starts_with('<') {
        Err(format!("Request-URI may not be in angle brackets: {uri_text:?}"))
    } else {
        Uri::parse(uri_text).map_err(|e| e.to_string())
    };
    Ok(StartLine::Request { method, uri })
}

fn bad_header(name: &str, detail: impl Into<String>) -> ParseErrorKind {
    ParseErrorKind::BadHeader { name: name.to_string(), detail: detail.into() }
}

/// Checks shared by requests and responses: duplicates and the fields the transaction layer reads.
fn check_common(headers: &Headers) -> Result<(), ParseErrorKind> {
    for name in SINGLE_VALUE_HEADERS {
        if headers.count(name) > 1 {
            return Err(ParseErrorKind::DuplicateHeader(name.to_string()));
        }
    }
    headers.vias().map_err(|e| bad_header("Via", e))?;
    if headers.get("CSeq").is_some() {
        headers.cseq().map_err(|e| bad_header("CSeq", e))?;
    }
    if let Some(call_id) = headers.call_id().filter(|c| !is_valid_call_id(c)) {
        return Err(bad_header("Call-ID", format!("{call_id:?} is not a valid Call-ID")));
    }
    for name in ["From", "To"] {
        if let Some(value) = headers.get(name) {
            NameAddr::parse(value).map_err(|e| bad_header(name, e))?;
        }
    }
    Ok(())
}

fn check_request(method: &Method, headers: &Headers) -> Result<(), ParseErrorKind> {
    for name in REQUIRED_REQUEST_HEADERS {
        if headers.get(name).is_none() {
            return Err(ParseErrorKind::MissingHeader(name));
        }
    }
    check_common(headers)?;
    let cseq = headers.cseq().map_err(|e| bad_header("CSeq", e))?;
    // An unknown method with a mismatched CSeq is answered 501 rather than 400 (RFC 4475 mismatch02).
    let method_matches = cseq.method == *method;
    if !method_matches && !matches!(method, Method::Extension(_)) {
        return Err(ParseErrorKind::CSeqMethodMismatch);
    }
    if let Some(max_forwards) = headers.get("Max-Forwards") {
        let ok = !max_forwards.is_empty()
            && max_forwards.bytes().all(|b| b.is_ascii_digit())
            && max_forwards.parse::<u32>().is_ok_and(|n| n <= 255);
        if !ok {
            return Err(bad_header("Max-Forwards", format!("{max_forwards:?} is not 0-255")));
        }
    }
    for value in headers.get_all("Contact") {
        if value.trim() == "*" && *method == Method::Register {
            continue;
        }
        headers.name_addrs("Contact").map_err(|e| bad_header("Contact", e))?;
        break;
    }
    Ok(())
}

fn body_of(bytes: &[u8], body_start: usize, headers: &Headers) -> Result<Vec<u8>, ParseErrorKind> {
    let available = bytes.len().saturating_sub(body_start);
    let Some(declared) = headers.get("Content-Length") else {
        return Ok(bytes[body_start.min(bytes.len())..].to_vec());
    };
    if declared.is_empty() || !declared.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseErrorKind::BadContentLength(declared.to_string()));
    }
    let declared: usize = declared.parse().map_err(|_| ParseErrorKind::BadContentLength(declared.into()))?;
    if declared > available {
        return Err(ParseErrorKind::BodyTruncated { declared, received: available });
    }
    Ok(bytes[body_start..body_start + declared].to_vec())
}

pub(crate) fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::new(ParseErrorKind::TooLarge(bytes.len())));
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let skip = bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let bytes = &bytes[skip..];
    if bytes.is_empty() {
        return Err(ParseError::new(ParseErrorKind::Empty));
    }
    let (body_start, section_len, no_blank_line) = match find_end_of_headers(bytes) {
        Some((body_start, section_len)) => (body_start, section_len, false),
        None => (bytes.len(), bytes.len(), true),
    };
    // A section that is not UTF-8 is still read, leniently, so that a request can be answered with 400.
    let (section, not_utf8) = match std::str::from_utf8(&bytes[..section_len]) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (String::from_utf8_lossy(&bytes[..section_len]), true),
    };
    let HeaderSection { start_line, headers, first_bad_line } =
        split_header_section(&section).map_err(ParseError::new)?;
    let start = parse_start_line(start_line);
    let is_request = !matches!(start, Ok(StartLine::Response { .. })) && !starts_with_sip_version(start_line);
    let reject = |kind: ParseErrorKind, method: Option<Method>| ParseError {
        kind,
        request_headers: is_request.then(|| headers.clone()),
        method,
    };
    // Bytes that are not text are answered only behind a well-formed request line: random datagrams that
    // happen to hold a line like `v: …` get nothing.
    if not_utf8 && !matches!(start, Ok(StartLine::Request { .. })) {
        return Err(ParseError::new(ParseErrorKind::NotUtf8));
    }
    let unreadable =
        if not_utf8 { Some(ParseErrorKind::NotUtf8) } else { first_bad_line.map(ParseErrorKind::BadHeaderLine) };
    if let Some(kind) = unreadable {
        let method = match &start {
            Ok(StartLine::Request { method, .. }) => Some(method.clone()),
            Ok(StartLine::Response { .. }) => None,
            Err((_, method)) => method.clone(),
        };
        return Err(reject(kind, method));
    }
    let start = start.map_err(|(kind, method)| reject(kind, method))?;
    if no_blank_line {
        return Err(reject(ParseErrorKind::NoEndOfHeaders, None));
    }
    match start {
        StartLine::Request { method, uri } => {
            let rejected = |kind| reject(kind, Some(method.clone()));
            let uri = uri.map_err(|why| rejected(ParseErrorKind::BadStartLine(why)))?;
            check_request(&method, &headers).map_err(rejected)?;
            let body = body_of(bytes, body_start, &headers).map_err(rejected)?;
            Ok(Message::Request(Request { method, uri, headers, body }))
        }
        StartLine::Response { status, reason } => {
            check_common(&headers).map_err(ParseError::new)?;
            for name in ["Via", "CSeq", "Call-ID", "From", "To"] {
                if headers.get(name).is_none() {
                    return Err(ParseError::new(ParseErrorKind::MissingHeader(
                        REQUIRED_REQUEST_HEADERS.iter().find(|n| **n == name).copied().unwrap_or("Via"),
                    )));
                }
            }
            let body = body_of(bytes, body_start, &headers).map_err(ParseError::new)?;
            Ok(Message::Response(Response { status, reason, headers, body }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn parses_a_plain_request_and_round_trips() {
        let Message::Request(request) = Message::parse(OPTIONS.as_bytes()).unwrap() else { panic!() };
        assert_eq!(request.method, Method::Options);
        let again = Message::parse(&request.to_bytes()).unwrap();
        assert_eq!(again, Message::Request(request));
    }

    #[test]
    fn reason_phrases_are_kept_as_sent() {
        let text = OPTIONS.replace("OPTIONS sip:a@example.com SIP/2.0", "SIP/2.0 299 Very Odd  Reason ");
        let Message::Response(response) = Message::parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(response.reason, "Very Odd  Reason ");
    }

    #[test]
    fn missing_blank_line_is_an_error_not_a_body() {
        let text = OPTIONS.trim_end();
        let error = Message::parse(text.as_bytes()).unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::NoEndOfHeaders);
        assert!(error.request_headers.is_some());
    }

    #[test]
    fn content_length_frames_datagrams() {
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 3") + "abcdef";
        let Message::Request(request) = Message::parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(request.body, b"abc");
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 30") + "abc";
        assert!(matches!(Message::parse(text.as_bytes()).unwrap_err().kind, ParseErrorKind::BodyTruncated { .. }));
    }

    #[test]
    fn unknown_method_parses() {
        let text = OPTIONS.replace("OPTIONS sip", "FROBNICATE sip").replace("1 OPTIONS", "1 FROBNICATE");
        let Message::Request(request) = Message::parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(request.method, Method::Extension("FROBNICATE".into()));
    }

    #[test]
    fn a_header_line_without_a_colon_is_reported_with_the_other_fields_kept() {
        let text = OPTIONS.replace("Call-ID: x\r\n", "Max-Forwards 70\r\n folded: onto the bad line\r\nCall-ID: x\r\n");
        let error = Message::parse(text.as_bytes()).unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::BadHeaderLine("Max-Forwards 70".into()));
        assert_eq!(error.method, Some(Method::Options));
        let headers = error.request_headers.expect("the fields around the bad line are kept");
        assert_eq!(headers.call_id(), Some("x"));
        assert_eq!(headers.get("CSeq"), Some("1 OPTIONS"));
        // The continuation of the bad line is skipped with it, not folded into the field before.
        assert_eq!(headers.get("From"), Some("<sip:b@example.com>;tag=1"));
        assert_eq!(headers.get("Max-Forwards"), None);
    }

    #[test]
    fn the_first_of_several_bad_header_lines_is_the_one_reported() {
        let text = OPTIONS.replace("SIP/2.0\r\nVia", "SIP/2.0\r\n leading fold\r\nNot A Field: 1\r\nVia");
        let error = Message::parse(text.as_bytes()).unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::BadHeaderLine(" leading fold".into()));
        assert!(error.request_headers.is_some_and(|h| h.get("To").is_some()));
        let long = format!("X{}", "é".repeat(200));
        let error = Message::parse(OPTIONS.replace("Call-ID: x", &long).as_bytes()).unwrap_err();
        let ParseErrorKind::BadHeaderLine(excerpt) = error.kind else { panic!("{error}") };
        assert!(excerpt.chars().count() < 100, "{excerpt}");
    }

    #[test]
    fn a_bad_header_line_in_a_response_keeps_no_fields() {
        let text =
            OPTIONS.replace("OPTIONS sip:a@example.com SIP/2.0", "SIP/2.0 200 OK").replace("Call-ID: x", "Call-ID x");
        let error = Message::parse(text.as_bytes()).unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::BadHeaderLine("Call-ID x".into()));
        assert_eq!((error.request_headers, error.method), (None, None));
    }

    #[test]
    fn bytes_that_are_not_text_without_a_request_line_keep_no_fields() {
        // Random bytes holding a compact Via line: nothing to answer.
        let error = Message::parse(b"\xff\xfe garbage\r\nv: x\r\ni: y\r\n\r\n").unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::NotUtf8);
        assert!(error.request_headers.is_none() && error.method.is_none(), "{error:?}");
    }

    #[test]
    fn a_header_section_not_utf8_is_reported_with_the_fields_read_leniently() {
        let mut bytes = OPTIONS.replace("Call-ID: x", "Subject: caf\u{fffd}\r\nCall-ID: x").into_bytes();
        let at = bytes.windows(3).position(|w| w == "\u{fffd}".as_bytes()).unwrap();
        bytes.splice(at..at + 3, [0xe9]);
        let error = Message::parse(&bytes).unwrap_err();
        assert_eq!(error.kind, ParseErrorKind::NotUtf8);
        assert_eq!(error.method, Some(Method::Options));
        let headers = error.request_headers.expect("the fields are kept");
        assert_eq!(headers.get("Subject"), Some("caf\u{fffd}"));
        assert_eq!(headers.call_id(), Some("x"));
        assert!(headers.top_via().is_ok());
    }

    #[test]
    fn never_panics_on_prefixes_or_bytes() {
        let bytes = OPTIONS.as_bytes();
        for end in 0..bytes.len() {
            let _ = Message::parse(&bytes[..end]);
        }
        for flip in 0..bytes.len() {
            let mut copy = bytes.to_vec();
            copy[flip] ^= 0x80;
            let _ = Message::parse(&copy);
        }
    }
}
