//! Header fields: the ordered list every message carries, and typed views of the fields the stack relies on
//! (Via, From/To/Contact/Route name-addrs, CSeq).

use std::fmt;

use super::Method;
use super::params::Params;
use super::syntax::{is_token, is_word_char, quote, split_unquoted, take_quoted, unquote};
use super::uri::{Host, Uri, parse_hostport};

/// Full names of the compact forms (RFC 3261 §7.3.3 and later RFCs), and the canonical spelling of the
/// names the stack looks up.
const CANONICAL_NAMES: &[(&str, Option<char>)] = &[
    ("Accept", None),
    ("Accept-Contact", Some('a')),
    ("Allow", None),
    ("Allow-Events", Some('u')),
    ("Authorization", None),
    ("Call-ID", Some('i')),
    ("Contact", Some('m')),
    ("Content-Encoding", Some('e')),
    ("Content-Length", Some('l')),
    ("Content-Type", Some('c')),
    ("CSeq", None),
    ("Event", Some('o')),
    ("From", Some('f')),
    ("Identity", Some('y')),
    ("Max-Forwards", None),
    ("Proxy-Authenticate", None),
    ("Proxy-Authorization", None),
    ("Proxy-Require", None),
    ("Reason", None),
    ("Record-Route", None),
    ("Refer-Sub", None),
    ("Refer-To", Some('r')),
    ("Referred-By", Some('b')),
    ("Reject-Contact", Some('j')),
    ("Replaces", None),
    ("Request-Disposition", Some('d')),
    ("Require", None),
    ("Retry-After", None),
    ("Route", None),
    ("Server", None),
    ("Session-Expires", Some('x')),
    ("Subject", Some('s')),
    ("Subscription-State", None),
    ("Supported", Some('k')),
    ("To", Some('t')),
    ("Unsupported", None),
    ("User-Agent", None),
    ("Via", Some('v')),
    ("WWW-Authenticate", None),
];

/// The canonical name for a received field name: compact forms expanded, known names in their usual
/// spelling, unknown names as sent.
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() == 1 {
        let c = name.as_bytes()[0].to_ascii_lowercase() as char;
        if let Some((full, _)) = CANONICAL_NAMES.iter().find(|(_, compact)| *compact == Some(c)) {
            return (*full).into();
        }
    }
    known_spelling(name)
}

/// Known names in their usual spelling; anything else (including one-letter names) as given.
fn known_spelling(name: &str) -> std::borrow::Cow<'_, str> {
    match CANONICAL_NAMES.iter().find(|(full, _)| full.eq_ignore_ascii_case(name)) {
        Some((full, _)) => (*full).into(),
        None => name.into(),
    }
}

/// One header field line, unfolded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name in canonical spelling (see [`canonical_name`]).
    pub name: String,
    /// The value, unfolded and trimmed.
    pub value: String,
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// The first value of `name` (case-insensitive; compact forms are expanded on parse).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    /// How many lines carry `name`.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header { name: known_spelling(name).into_owned(), value: value.into() });
    }

    /// Appends a field as received: compact names are expanded.
    pub(crate) fn push_received(&mut self, name: &str, value: String) {
        self.0.push(Header { name: canonical_name(name).into_owned(), value });
    }

    /// Replaces every `name` field with one holding `value` (kept at the first one's place).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        match self.0.iter().position(|h| h.name.eq_ignore_ascii_case(name)) {
            Some(at) => {
                self.0[at].value = value.into();
                let mut index = 0;
                self.0.retain(|h| {
                    index += 1;
                    index - 1 == at || !h.name.eq_ignore_ascii_case(name)
                });
            }
            None => self.push(name, value),
        }
    }

    /// Inserts a field before all others (for a new top Via).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(0, Header { name: known_spelling(name).into_owned(), value: value.into() });
    }

    /// Removes every `name` field.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    /// Removes the first `name` field and returns its value.
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|h| h.name.eq_ignore_ascii_case(name))?;
        Some(self.0.remove(at).value)
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Option tags of a list header such as Require or Supported, lower-cased.
    pub fn option_tags(&self, name: &str) -> Vec<String> {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Every Via, in order, parsed.
    pub fn vias(&self) -> Result<Vec<Via>, String> {
        let mut vias = Vec::new();
        for value in self.get_all("Via") {
            for entry in split_unquoted(value, b',') {
                vias.push(Via::parse(entry)?);
            }
        }
        Ok(vias)
    }

    /// The top Via, parsed.
    pub fn top_via(&self) -> Result<Via, String> {
        let value = self.get("Via").ok_or("no Via")?;
        let first = split_unquoted(value, b',').into_iter().next().unwrap_or_default();
        Via::parse(first)
    }

    /// Every name-addr in the `name` fields (Contact, Route, Record-Route), in order.
    pub fn name_addrs(&self, name: &str) -> Result<Vec<NameAddr>, String> {
        let mut out = Vec::new();
        for value in self.get_all(name) {
            for entry in split_unquoted(value, b',') {
                out.push(NameAddr::parse(entry)?);
            }
        }
        Ok(out)
    }

    /// The From or To field, parsed.
    pub fn name_addr(&self, name: &str) -> Result<NameAddr, String> {
        NameAddr::parse(self.get(name).ok_or_else(|| format!("no {name}"))?)
    }

    /// The CSeq field, parsed.
    pub fn cseq(&self) -> Result<CSeq, String> {
        CSeq::parse(self.get("CSeq").ok_or("no CSeq")?)
    }

    /// The Call-ID field.
    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID")
    }

    /// The `tag` parameter of From or To.
    pub fn tag(&self, name: &str) -> Option<String> {
        self.name_addr(name).ok()?.tag().map(str::to_string)
    }
}

/// One Via entry: `SIP/2.0/UDP host:port;branch=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport token, upper-cased (`UDP`, `TCP`, `TLS`, …).
    pub transport: String,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, …).
    pub params: Params,
}

impl Via {
    /// Parses one Via entry, allowing whitespace around the slashes.
    pub fn parse(text: &str) -> Result<Via, String> {
        let mut parts = text.splitn(3, '/');
        let (Some(name), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("bad Via {text:?}"));
        };
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(format!("unsupported protocol in Via {text:?}"));
        }
        let rest = rest.trim_start();
        let transport_end =
            rest.find(|c: char| c.is_ascii_whitespace()).ok_or(format!("no sent-by in Via {text:?}"))?;
        let transport = &rest[..transport_end];
        if !is_token(transport) {
            return Err(format!("bad transport in Via {text:?}"));
        }
        let rest = rest[transport_end..].trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(semi) => (rest[..semi].trim(), &rest[semi..]),
            None => (rest.trim(), ""),
        };
        let sent_by: String = sent_by.split_whitespace().collect();
        let (host, port) = parse_hostport(&sent_by).map_err(|e| format!("bad Via sent-by: {e}"))?;
        let params = Params::parse_header_params(params).map_err(|e| format!("bad Via parameters: {e}"))?;
        Ok(Via { transport: transport.to_ascii_uppercase(), host, port, params })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie (so it alone identifies the transaction).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// `[display-name] <uri> ;params` or `uri ;params` (From, To, Contact, Route, Refer-To, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display_name: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters after the URI (tag, expires, …).
    pub params: Params,
}

impl NameAddr {
    /// A name-addr holding just `uri`.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr { display_name: None, uri, params: Params::default() }
    }

    /// Parses a name-addr or addr-spec with trailing header parameters.
    pub fn parse(text: &str) -> Result<NameAddr, String> {
        let text = text.trim();
        let (display_name, after_display) = if text.starts_with('"') {
            let (quoted, rest) = take_quoted(text).ok_or_else(|| format!("unbalanced quote in {text:?}"))?;
            (Some(unquote(quoted)), rest.trim_start())
        } else if let Some(open) = text.find('<') {
            let display = text[..open].trim();
            if !display.is_empty() && !display.split_whitespace().all(is_token) {
                return Err(format!("display name must be quoted: {display:?}"));
            }
            ((!display.is_empty()).then(|| display.to_string()), &text[open..])
        } else {
            (None, text)
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let close = inner.find('>').ok_or_else(|| format!("missing '>' in {text:?}"))?;
            // RFC 4475 badaspec: whitespace inside the brackets is tolerated.
            let uri = Uri::parse(inner[..close].trim()).map_err(|e| e.to_string())?;
            let params = Params::parse_header_params(&inner[close + 1..])?;
            return Ok(NameAddr { display_name, uri, params });
        }
        if display_name.is_some() {
            return Err(format!("missing '<' after display name in {text:?}"));
        }
        // addr-spec form: the URI ends at the first ';', which starts header parameters (RFC 3261 §20).
        let (uri_text, params) = match after_display.find(';') {
            Some(semi) => (&after_display[..semi], &after_display[semi..]),
            None => (after_display, ""),
        };
        let uri_text = uri_text.trim();
        if uri_text.contains(['?', ',']) {
            return Err(format!("URI with '?' or ',' must be in angle brackets: {uri_text:?}"));
        }
        let uri = Uri::parse(uri_text).map_err(|e| e.to_string())?;
        Ok(NameAddr { display_name: None, uri, params: Params::parse_header_params(params)? })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            if name.split_whitespace().all(is_token) && !name.is_empty() {
                write!(f, "{name} ")?;
            } else {
                write!(f, "{} ", quote(name))?;
            }
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The CSeq field: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (< 2^31 when we generate it, up to 2^32-1 accepted).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1234 INVITE`.
    pub fn parse(text: &str) -> Result<CSeq, String> {
        let mut parts = text.split_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("bad CSeq {text:?}"));
        };
        if !seq.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
            return Err(format!("bad CSeq {text:?}"));
        }
        let seq = seq.parse().map_err(|_| format!("CSeq number out of range in {text:?}"))?;
        Ok(CSeq { seq, method: Method::from_token(method) })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// True when `text` is a legal Call-ID (`word ["@" word]`).
pub fn is_valid_call_id(text: &str) -> bool {
    let mut parts = text.splitn(2, '@');
    let word = |w: Option<&str>| w.is_some_and(|w| !w.is_empty() && w.bytes().all(is_word_char));
    let first = parts.next();
    word(first) && parts.next().is_none_or(|w| word(Some(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_names_expand() {
        assert_eq!(canonical_name("i"), "Call-ID");
        assert_eq!(canonical_name("V"), "Via");
        assert_eq!(canonical_name("content-LENGTH"), "Content-Length");
        assert_eq!(canonical_name("X-Custom"), "X-Custom");
    }

    #[test]
    fn via_with_whitespace_everywhere() {
        let via = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.branch(), Some("390skdjuw"));
        let via = Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8").unwrap();
        assert_eq!(via.host, Host::Name("spindle.example.com".into()));
        assert!(via.has_rfc3261_branch());
        let via = Via::parse("SIP/2.0/UDP [::1]:5070;rport;branch=z9hG4bKx").unwrap();
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.params.get("rport"), Some(None));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let from =
            NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8").unwrap();
        assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(from.tag(), Some("98asjd8"));
        let to = NameAddr::parse("sip:user@example.com;tag=abc").unwrap();
        assert_eq!(to.tag(), Some("abc"));
        let lws = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(lws.display_name.as_deref(), Some("caller"));
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_err());
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1").is_err());
    }

    #[test]
    fn set_replaces_all_and_keeps_place() {
        let mut headers = Headers::new();
        headers.push("A", "1");
        headers.push("Via", "x");
        headers.push("B", "2");
        headers.push("via", "y");
        headers.set("Via", "z");
        let names: Vec<_> = headers.iter().map(|h| format!("{}={}", h.name, h.value)).collect();
        assert_eq!(names, ["A=1", "Via=z", "B=2"]);
    }

    #[test]
    fn call_ids() {
        assert!(is_valid_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"));
        assert!(!is_valid_call_id("a b"));
        assert!(!is_valid_call_id(""));
        assert!(!is_valid_call_id("a@b@c"));
    }
}
