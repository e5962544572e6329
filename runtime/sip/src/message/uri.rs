//! URIs as SIP uses them: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), and any other scheme kept opaque.
//!
//! Escaped characters are kept exactly as sent, so a URI prints back byte for byte; compare users with
//! [`unescape`] when equivalence matters.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::params::Params;

/// A Request-URI or the URI inside a name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:` (RFC 3966).
    Tel(TelUri),
    /// Any other scheme (`http:`, `urn:`, …): kept as sent.
    Other {
        /// The scheme, as sent.
        scheme: String,
        /// Everything after the colon.
        opaque: String,
    },
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escapes kept as sent.
    pub user: Option<String>,
    /// The password part (deprecated by RFC 3261, but legal).
    pub password: Option<String>,
    /// The host.
    pub host: Host,
    /// The port, when given.
    pub port: Option<u16>,
    /// `;name=value` URI parameters.
    pub params: Params,
    /// The raw `?hname=hvalue&…` part without the `?`.
    pub headers: Option<String>,
}

/// A `tel:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    /// The number, as sent (`+15083084809`, `7042;phone-context=…` keeps only `7042` here).
    pub number: String,
    /// `;name=value` parameters.
    pub params: Params,
}

/// A host in a SIP URI or Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name.
    Name(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    V6(Ipv6Addr),
}

/// Why a URI could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError(pub String);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad URI: {}", self.0)
    }
}

impl std::error::Error for UriError {}

fn bad(what: impl Into<String>) -> UriError {
    UriError(what.into())
}

impl Uri {
    /// Parses a URI as it appears in a Request-URI or between `<` and `>`.
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let colon = text.find(':').ok_or_else(|| bad(format!("no scheme in {text:?}")))?;
        let scheme = &text[..colon];
        let rest = &text[colon + 1..];
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(bad(format!("bad scheme {scheme:?}")));
        }
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad(format!("whitespace or control character in {text:?}")));
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_after_scheme(scheme.eq_ignore_ascii_case("sips"), rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_after_scheme(rest).map(Uri::Tel)
        } else if rest.is_empty() {
            Err(bad(format!("empty {scheme}: URI")))
        } else {
            Ok(Uri::Other { scheme: scheme.to_string(), opaque: rest.to_string() })
        }
    }

    /// The SIP URI inside, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(sip) => Some(sip),
            _ => None,
        }
    }

    /// The scheme in lower case.
    pub fn scheme(&self) -> String {
        match self {
            Uri::Sip(sip) if sip.secure => "sips".into(),
            Uri::Sip(_) => "sip".into(),
            Uri::Tel(_) => "tel".into(),
            Uri::Other { scheme, .. } => scheme.to_ascii_lowercase(),
        }
    }

    /// The user part of a SIP URI, or the number of a tel URI.
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(sip) => sip.user.as_deref(),
            Uri::Tel(tel) => Some(&tel.number),
            Uri::Other { .. } => None,
        }
    }

    /// True when the URI contains a character that forces the `<…>` form in a header (RFC 3261 §20).
    pub fn needs_angle_brackets(&self) -> bool {
        self.to_string().contains([',', ';', '?'])
    }
}

impl SipUri {
    /// A plain `sip:user@host:port` URI.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_string),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }

    fn parse_after_scheme(secure: bool, rest: &str) -> Result<SipUri, UriError> {
        // '@' may not appear unescaped after the userinfo, so the first one ends it (the user part itself
        // may hold ';', '?' and ':' as RFC 4475 intmeth and semiuri show).
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some("") => return Err(bad("empty user part before '@'")),
            Some(info) => match info.find(':') {
                Some(c) => (Some(info[..c].to_string()), Some(info[c + 1..].to_string())),
                None => (Some(info.to_string()), None),
            },
        };
        let (before_headers, headers) = match hostpart.find('?') {
            Some(q) => (&hostpart[..q], Some(hostpart[q + 1..].to_string())),
            None => (hostpart, None),
        };
        let (hostport, params) = match before_headers.find(';') {
            Some(s) => (&before_headers[..s], Params::parse_uri_params(&before_headers[s..])?),
            None => (before_headers, Params::default()),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(SipUri { secure, user, password, host, port, params, headers })
    }

    /// The `transport` parameter in lower case, if any.
    pub fn transport_param(&self) -> Option<String> {
        self.params.get("transport").flatten().map(str::to_ascii_lowercase)
    }
}

impl TelUri {
    fn parse_after_scheme(rest: &str) -> Result<TelUri, UriError> {
        let (number, params) = match rest.find(';') {
            Some(s) => (&rest[..s], Params::parse_uri_params(&rest[s..])?),
            None => (rest, Params::default()),
        };
        let digits = number.strip_prefix('+').unwrap_or(number);
        let ok = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit() || "-.()*#".contains(c));
        if !ok {
            return Err(bad(format!("bad telephone number {number:?}")));
        }
        Ok(TelUri { number: number.to_string(), params })
    }
}

/// Parses `host[:port]` with bracketed IPv6.
pub(crate) fn parse_hostport(text: &str) -> Result<(Host, Option<u16>), UriError> {
    let (host_text, port_text) = if let Some(inner) = text.strip_prefix('[') {
        let close = inner.find(']').ok_or_else(|| bad(format!("unclosed '[' in {text:?}")))?;
        let after = &inner[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad(format!("junk after ']' in {text:?}")))?),
        };
        let v6: Ipv6Addr = inner[..close].parse().map_err(|_| bad(format!("bad IPv6 address in {text:?}")))?;
        return Ok((Host::V6(v6), port.map(parse_port).transpose()?));
    } else {
        match text.rfind(':') {
            Some(c) => (&text[..c], Some(&text[c + 1..])),
            None => (text, None),
        }
    };
    Ok((Host::parse(host_text)?, port_text.map(parse_port).transpose()?))
}

fn parse_port(text: &str) -> Result<u16, UriError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("bad port {text:?}")));
    }
    text.parse().map_err(|_| bad(format!("port out of range {text:?}")))
}

impl Host {
    /// Parses a hostname, IPv4 address or bracketed IPv6 reference.
    pub fn parse(text: &str) -> Result<Host, UriError> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner.parse().map(Host::V6).map_err(|_| bad(format!("bad IPv6 address {text:?}")));
        }
        if let Ok(v4) = text.parse::<Ipv4Addr>() {
            return Ok(Host::V4(v4));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let name = text.strip_suffix('.').unwrap_or(text);
        if name.is_empty() || !name.split('.').all(label_ok) {
            return Err(bad(format!("bad host {text:?}")));
        }
        Ok(Host::Name(text.to_string()))
    }

    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Host::V4(v4) => Some((*v4).into()),
            Host::V6(v6) => Some((*v6).into()),
            Host::Name(_) => None,
        }
    }
}

impl From<std::net::IpAddr> for Host {
    fn from(ip: std::net::IpAddr) -> Host {
        match ip {
            std::net::IpAddr::V4(v4) => Host::V4(v4),
            std::net::IpAddr::V6(v6) => Host::V6(v6),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::V4(v4) => write!(f, "{v4}"),
            Host::V6(v6) => write!(f, "[{v6}]"),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(headers) = &self.headers {
            write!(f, "?{headers}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}{}", self.number, self.params)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(sip) => sip.fmt(f),
            Uri::Tel(tel) => tel.fmt(f),
            Uri::Other { scheme, opaque } => write!(f, "{scheme}:{opaque}"),
        }
    }
}

/// Decodes `%XX` escapes (for comparing users); invalid escapes are kept as they are.
pub fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_round_trips() {
        for text in [
            "sip:alice@example.com",
            "sips:alice:secret@[2001:db8::1]:5061;transport=tcp?subject=hi",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "sip:user;par=u%40example.net@example.com",
            "sip:example.com;lr",
            "tel:+15083084809;phone-context=example.com",
        ] {
            let uri = Uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(uri.to_string(), text);
        }
    }

    #[test]
    fn semicolon_in_user_part_stays_in_user() {
        let uri = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        let sip = uri.as_sip().unwrap();
        assert_eq!(sip.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(sip.host, Host::Name("example.com".into()));
    }

    #[test]
    fn ipv6_and_ports() {
        let sip = Uri::parse("sip:[::1]:5070").unwrap();
        let sip = sip.as_sip().unwrap();
        assert_eq!(sip.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(sip.port, Some(5070));
        assert!(Uri::parse("sip:[::1:5070").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
        assert!(Uri::parse("sip:host:").is_err());
    }

    #[test]
    fn rejects_bad_uris() {
        for text in ["<sip:a@b>", "sip:a@b c", "sip:", "sip:@host", "sip:bad_host!", "tel:", "tel:abc!", "nocolon"] {
            assert!(Uri::parse(text).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        let uri = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(uri.scheme(), "soap.beep");
        assert_eq!(uri.to_string(), "soap.beep://192.0.2.103:3002");
    }

    #[test]
    fn unescape_decodes_percent_escapes() {
        assert_eq!(unescape("%75se%72"), "user");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%Z1"), "%Z1");
    }
}
