//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): answering 401/407 challenges.
//!
//! Sans-IO: the caller supplies the client nonce and the nonce count; nothing here reads
//! a clock or a random source. [`DigestAuthorization`] is the server side, used by tests
//! and by a future registrar.
//!
//! Not supported: `userhash`, `username*` (RFC 7616 §3.4.4) and `auth-conf`. Each header
//! value must carry exactly one challenge, as is usual in SIP.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Username and password for one realm (or any realm).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The name sent in the `username` parameter.
    pub username: String,
    /// The shared secret; never sent on the wire and never printed by `Debug`.
    pub password: String,
}

impl Credentials {
    /// Builds credentials from a username and a password.
    #[must_use]
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        let (username, password) = (username.into(), password.into());
        Self { username, password }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// The hash algorithm named by the `algorithm` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `MD5`, the default when the parameter is absent.
    Md5,
    /// `MD5-sess`: HA1 also covers the server and client nonces.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl DigestAlgorithm {
    /// The token as written on the wire, e.g. `SHA-256-sess`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Parses the `algorithm` parameter (ASCII case-insensitive); absent means MD5.
    fn from_param(token: Option<&str>) -> Result<Self, AuthError> {
        let Some(token) = token else {
            return Ok(Self::Md5);
        };
        [Self::Md5, Self::Md5Sess, Self::Sha256, Self::Sha256Sess]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token))
            .ok_or_else(|| AuthError::UnsupportedAlgorithm(token.to_owned()))
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Preference rank for [`DigestChallenge::best`] (RFC 8760: SHA-256 over MD5).
    fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 1,
            Self::Sha256 | Self::Sha256Sess => 2,
        }
    }

    /// Lowercase hex of `H(data)`.
    fn digest(self, data: &[u8]) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hex(&Md5::digest(data)),
            Self::Sha256 | Self::Sha256Sess => hex(&Sha256::digest(data)),
        }
    }

    /// `H(parts joined by ":")`, the building block of HA1, HA2 and KD.
    fn hash(self, parts: &[&str]) -> String {
        self.digest(parts.join(":").as_bytes())
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// Protection space; also part of HA1.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Opaque value to echo back unchanged, if the server sent one.
    pub opaque: Option<String>,
    /// Hash algorithm ([`DigestAlgorithm::Md5`] when absent).
    pub algorithm: DigestAlgorithm,
    /// Offered qop tokens, lowercase; empty for RFC 2069 style challenges.
    pub qop: Vec<String>,
    /// `stale=true`: the nonce expired but the credentials were right; retry silently.
    pub stale: bool,
}

/// Why a challenge or authorization could not be parsed or answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The header uses another scheme (named here), e.g. `Basic`.
    NotDigest(String),
    /// A required parameter is absent.
    MissingParameter(&'static str),
    /// The `algorithm` parameter names an algorithm we do not implement.
    UnsupportedAlgorithm(String),
    /// None of the offered qop values (listed here) is `auth` or `auth-int`.
    UnsupportedQop(String),
    /// The header value is not valid Digest syntax, or a value cannot be sent.
    Malformed(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDigest(scheme) => write!(f, "authentication scheme `{scheme}` is not Digest"),
            Self::MissingParameter(name) => write!(f, "Digest parameter `{name}` is missing"),
            Self::UnsupportedAlgorithm(alg) => write!(f, "unsupported Digest algorithm `{alg}`"),
            Self::UnsupportedQop(qop) => write!(f, "no supported qop (auth, auth-int) in `{qop}`"),
            Self::Malformed(why) => write!(f, "malformed Digest header: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

impl DigestChallenge {
    /// Parses one challenge header value, e.g.
    /// `Digest realm="a", nonce="b", qop="auth,auth-int", algorithm=SHA-256`.
    ///
    /// # Errors
    /// Another scheme, bad syntax, a missing `realm`/`nonce` or an unknown algorithm.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let params = Params::parse(value)?;
        let qop = params.get("qop").unwrap_or_default().split(',').map(str::trim);
        Ok(Self {
            realm: params.require("realm")?.to_owned(),
            nonce: params.require("nonce")?.to_owned(),
            opaque: params.get("opaque").map(str::to_owned),
            algorithm: DigestAlgorithm::from_param(params.get("algorithm"))?,
            qop: qop.filter(|t| !t.is_empty()).map(str::to_ascii_lowercase).collect(),
            stale: params.get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// Picks the best challenge among several header values (RFC 8760: prefer SHA-256
    /// over MD5; skip ones we cannot answer).
    ///
    /// Among equally strong challenges the first wins, as servers list them in order of
    /// preference. If none can be answered, the first error is returned, preferring a
    /// Digest-specific one over [`AuthError::NotDigest`].
    ///
    /// # Errors
    /// No value holds a challenge that [`authorization`] can answer.
    pub fn best<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, AuthError> {
        let mut best: Option<Self> = None;
        let mut error: Option<AuthError> = None;
        for value in values {
            match Self::parse(value).and_then(|c| c.select_qop().map(|_| c)) {
                Ok(c) => {
                    let keep = |b: &Self| b.algorithm.strength() >= c.algorithm.strength();
                    best = best.filter(keep).or(Some(c));
                }
                Err(e) => {
                    let digest_error = |e: &AuthError| !matches!(e, AuthError::NotDigest(_));
                    let keep = |old: &AuthError| digest_error(old) || !digest_error(&e);
                    error = error.filter(keep).or(Some(e));
                }
            }
        }
        best.ok_or_else(|| error.unwrap_or_else(|| malformed("no challenge given")))
    }

    /// The qop we answer with: `auth` if offered, else `auth-int`, else none (RFC 2069).
    fn select_qop(&self) -> Result<Option<&'static str>, AuthError> {
        if self.qop.is_empty() {
            return Ok(None);
        }
        QOPS.into_iter()
            .find(|q| self.qop.iter().any(|offered| offered == q))
            .map(Some)
            .ok_or_else(|| AuthError::UnsupportedQop(self.qop.join(",")))
    }
}

/// Everything needed to answer a challenge for one request.
#[derive(Debug, Clone, Copy)]
pub struct DigestRequest<'a> {
    /// Request method, e.g. `REGISTER`.
    pub method: &'a str,
    /// The Request-URI, sent as `uri`.
    pub uri: &'a str,
    /// Message body; hashed only for `qop=auth-int`.
    pub body: &'a [u8],
    /// Client nonce chosen by the caller: fresh and unpredictable.
    pub cnonce: &'a str,
    /// How many requests (this one included) have used this server nonce, from 1.
    pub nonce_count: u32,
}

/// Builds the `Authorization` / `Proxy-Authorization` header value answering `challenge`.
///
/// qop: if the challenge offers `auth`, use `qop=auth` (with cnonce and `nc=%08x`); else if
/// it offers `auth-int`, use that (hash of body); if it offers no qop, answer RFC 2069
/// style without cnonce and nc, except that `-sess` algorithms still send the cnonce
/// since HA1 depends on it.
///
/// # Errors
/// No supported qop offered, an empty cnonce where one is needed, or a value containing
/// CR/LF (it cannot be sent in a quoted-string).
pub fn authorization(
    challenge: &DigestChallenge,
    credentials: &Credentials,
    request: &DigestRequest<'_>,
) -> Result<String, AuthError> {
    let qop = challenge.select_qop()?;
    let with_cnonce = qop.is_some() || challenge.algorithm.is_sess();
    if with_cnonce && request.cnonce.is_empty() {
        return Err(AuthError::MissingParameter("cnonce"));
    }
    let mut answer = DigestAuthorization {
        username: credentials.username.clone(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: request.uri.to_owned(),
        response: String::new(),
        algorithm: challenge.algorithm,
        cnonce: with_cnonce.then(|| request.cnonce.to_owned()),
        qop: qop.map(str::to_owned),
        nonce_count: qop.map(|_| format!("{:08x}", request.nonce_count)),
        opaque: challenge.opaque.clone(),
    };
    answer.response = answer
        .expected_response(&credentials.password, request.method, request.body)
        .ok_or(AuthError::MissingParameter("cnonce"))?;
    answer.to_header()
}

/// Server side, for tests and for a future registrar: parsed Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestAuthorization {
    /// Claimed username.
    pub username: String,
    /// Realm the client answered for.
    pub realm: String,
    /// Server nonce being answered; checking its freshness is the caller's job.
    pub nonce: String,
    /// The `uri` parameter (should match the Request-URI).
    pub uri: String,
    /// The client's hex response digest.
    pub response: String,
    /// Hash algorithm ([`DigestAlgorithm::Md5`] when absent).
    pub algorithm: DigestAlgorithm,
    /// Client nonce; present whenever qop is.
    pub cnonce: Option<String>,
    /// Chosen qop (`auth` or `auth-int`, as sent), or none for RFC 2069 style.
    pub qop: Option<String>,
    /// The `nc` value exactly as sent (eight hex digits); present whenever qop is.
    pub nonce_count: Option<String>,
    /// Echoed opaque value.
    pub opaque: Option<String>,
}

impl DigestAuthorization {
    /// Parses an `Authorization` / `Proxy-Authorization` Digest header value.
    ///
    /// # Errors
    /// Bad syntax, a missing required parameter, or an unknown algorithm or qop.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let params = Params::parse(value)?;
        let owned = |name| params.get(name).map(str::to_owned);
        if let Some(qop) = params.get("qop") {
            if !QOPS.iter().any(|q| q.eq_ignore_ascii_case(qop)) {
                return Err(AuthError::UnsupportedQop(qop.to_owned()));
            }
            params.require("cnonce")?;
            params.require("nc")?;
        }
        Ok(Self {
            username: params.require("username")?.to_owned(),
            realm: params.require("realm")?.to_owned(),
            nonce: params.require("nonce")?.to_owned(),
            uri: params.require("uri")?.to_owned(),
            response: params.require("response")?.to_owned(),
            algorithm: DigestAlgorithm::from_param(params.get("algorithm"))?,
            cnonce: owned("cnonce"),
            qop: owned("qop"),
            nonce_count: owned("nc"),
            opaque: owned("opaque"),
        })
    }

    /// True when `response` is right for this password, method and body. Compare in
    /// constant time.
    ///
    /// Only the digest is checked: nonce freshness, nc replay and the realm are the
    /// caller's business.
    #[must_use]
    pub fn verify(&self, password: &str, method: &str, body: &[u8]) -> bool {
        self.expected_response(password, method, body)
            .is_some_and(|expected| hex_eq_constant_time(&expected, &self.response))
    }

    /// RFC 7616 §3.4.1: `KD(HA1, nonce:nc:cnonce:qop:HA2)`, or `KD(HA1, nonce:HA2)`
    /// without qop. `None` when a parameter the computation needs is missing or unknown.
    fn expected_response(&self, password: &str, method: &str, body: &[u8]) -> Option<String> {
        let alg = self.algorithm;
        let (nonce, cnonce) = (self.nonce.as_str(), self.cnonce.as_deref());
        let mut ha1 = alg.hash(&[&self.username, &self.realm, password]);
        if alg.is_sess() {
            ha1 = alg.hash(&[&ha1, nonce, cnonce?]);
        }
        let Some(qop) = self.qop.as_deref() else {
            return Some(alg.hash(&[&ha1, nonce, &alg.hash(&[method, &self.uri])]));
        };
        let ha2 = if qop.eq_ignore_ascii_case("auth") {
            alg.hash(&[method, &self.uri])
        } else if qop.eq_ignore_ascii_case("auth-int") {
            alg.hash(&[method, &self.uri, &alg.digest(body)])
        } else {
            return None;
        };
        let nc = self.nonce_count.as_deref()?;
        Some(alg.hash(&[&ha1, nonce, nc, cnonce?, qop, &ha2]))
    }

    /// Renders the header value; fails on values a quoted-string cannot carry.
    fn to_header(&self) -> Result<String, AuthError> {
        let mut params = Vec::new();
        for (name, value) in [
            ("username", &self.username),
            ("realm", &self.realm),
            ("nonce", &self.nonce),
            ("uri", &self.uri),
            ("response", &self.response),
        ] {
            params.push(format!("{name}={}", quote(name, value)?));
        }
        params.push(format!("algorithm={}", self.algorithm.as_str()));
        for (name, value, quoted) in [
            ("cnonce", &self.cnonce, true),
            ("qop", &self.qop, false),
            ("nc", &self.nonce_count, false),
            ("opaque", &self.opaque, true),
        ] {
            match value {
                Some(v) if quoted => params.push(format!("{name}={}", quote(name, v)?)),
                Some(token) => params.push(format!("{name}={token}")),
                None => {}
            }
        }
        Ok(format!("Digest {}", params.join(", ")))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let nibbles = bytes.iter().flat_map(|b| [b >> 4, b & 0x0f]);
    nibbles.map(|n| char::from(DIGITS[usize::from(n)])).collect()
}

/// Compares lowercase hex `expected` with `given` ignoring ASCII case. Lengths are public;
/// the contents are folded without a data-dependent early exit.
fn hex_eq_constant_time(expected: &str, given: &str) -> bool {
    let pairs = expected.bytes().zip(given.bytes());
    expected.len() == given.len() && pairs.fold(0, |acc, (e, g)| acc | (e ^ g.to_ascii_lowercase())) == 0
}

/// The qop values we implement, in order of preference.
const QOPS: [&str; 2] = ["auth", "auth-int"];

fn malformed(why: impl fmt::Display) -> AuthError {
    AuthError::Malformed(why.to_string())
}

/// Renders `value` as a quoted-string, escaping `"` and `\`. A SIP quoted-string cannot
/// carry CR or LF (RFC 3261 §25.1), so those are refused rather than injected.
fn quote(name: &str, value: &str) -> Result<String, AuthError> {
    if value.contains(['\r', '\n']) {
        return Err(malformed(format_args!("`{name}` contains a line break")));
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("\"{escaped}\""))
}

/// The parameters of a Digest header value: names lowercased, values unquoted.
struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `Digest name=value, name="quoted", ...`; rejects other schemes and duplicates.
    fn parse(value: &str) -> Result<Self, AuthError> {
        let mut lx = Lexer(value.chars().peekable());
        lx.skip_ws();
        let scheme = lx.token();
        if scheme.is_empty() {
            return Err(malformed("missing authentication scheme"));
        }
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(AuthError::NotDigest(scheme));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            lx.skip_ws();
            let Some(&next) = lx.0.peek() else { break };
            if lx.eat(',') {
                continue;
            }
            let name = lx.token().to_ascii_lowercase();
            if name.is_empty() {
                return Err(malformed(format_args!("unexpected character {next:?}")));
            }
            lx.skip_ws();
            if !lx.eat('=') {
                return Err(malformed(format_args!("parameter `{name}` has no value")));
            }
            lx.skip_ws();
            let value = lx.value(&name)?;
            if params.iter().any(|(n, _)| *n == name) {
                return Err(malformed(format_args!("duplicate parameter `{name}`")));
            }
            params.push((name, value));
            lx.skip_ws();
            if lx.0.peek().is_some() && !lx.eat(',') {
                return Err(malformed("expected `,` between parameters"));
            }
        }
        Ok(Self(params))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &'static str) -> Result<&str, AuthError> {
        self.get(name).ok_or(AuthError::MissingParameter(name))
    }
}

struct Lexer<'a>(std::iter::Peekable<std::str::Chars<'a>>);

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.0.next_if(|&c| is_ws(c)).is_some() {}
    }

    fn eat(&mut self, c: char) -> bool {
        self.0.next_if_eq(&c).is_some()
    }

    /// An RFC 7230 token (possibly empty).
    fn token(&mut self) -> String {
        let tchar = |c: &char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c);
        std::iter::from_fn(|| self.0.next_if(tchar)).collect()
    }

    /// A quoted-string (unescaped) or a bare value. Bare values run leniently up to
    /// whitespace or a comma, since servers put `/` and `=` in unquoted nonces.
    fn value(&mut self, name: &str) -> Result<String, AuthError> {
        if self.eat('"') {
            let mut out = String::new();
            loop {
                match self.0.next() {
                    Some('"') => return Ok(out),
                    Some('\\') => out.extend(self.0.next()),
                    Some(c) => out.push(c),
                    None => return Err(malformed(format_args!("unterminated `{name}` value"))),
                }
            }
        }
        let bare: String = std::iter::from_fn(|| self.0.next_if(|&c| c != ',' && !is_ws(c))).collect();
        if bare.is_empty() {
            return Err(malformed(format_args!("empty value for `{name}`")));
        }
        Ok(bare)
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}
#[cfg(test)]
mod tests {
    use super::*;

    const GET: DigestRequest<'static> =
        DigestRequest { method: "GET", uri: "/dir/index.html", body: b"", cnonce: "0a4f113b", nonce_count: 1 };

    /// Answers `challenge` as Mufasa and parses the result back.
    fn answer(challenge: &str, password: &str, request: &DigestRequest<'_>) -> DigestAuthorization {
        let challenge = DigestChallenge::parse(challenge).expect("challenge parses");
        let credentials = Credentials::new("Mufasa", password);
        let header = authorization(&challenge, &credentials, request).expect("answerable");
        DigestAuthorization::parse(&header).expect("own header parses")
    }

    #[test]
    fn rfc2617_md5_vector() {
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let auth = answer(challenge, "Circle Of Life", &GET);
        assert_eq!(auth.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!((auth.qop.as_deref(), auth.nonce_count.as_deref()), (Some("auth"), Some("00000001")));
        assert_eq!(auth.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
        assert!(auth.verify("Circle Of Life", "GET", b""));
    }

    #[test]
    fn rfc7616_sha256_and_md5_vectors() {
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let get = DigestRequest { cnonce, ..GET };
        for (algorithm, expected) in [
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let challenge = format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm},
                nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            );
            let auth = answer(&challenge, "Circle of Life", &get);
            assert_eq!(auth.response, expected, "{algorithm}");
            assert!(auth.verify("Circle of Life", "GET", b""));
        }
    }

    #[test]
    fn round_trips_every_algorithm_and_qop() {
        let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
        for algorithm in ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"] {
            for qop in [r#", qop="auth""#, r#", qop="auth-int""#, ""] {
                let case = format!("{algorithm}{qop}");
                let challenge = format!(r#"Digest realm="r", nonce="n", algorithm={algorithm}{qop}"#);
                let invite = DigestRequest { method: "INVITE", body, nonce_count: 7, ..GET };
                let auth = answer(&challenge, "secret", &invite);
                assert_eq!(auth.algorithm.as_str(), algorithm, "{case}");
                assert!(auth.verify("secret", "INVITE", body), "{case}");
                assert!(!auth.verify("wrong", "INVITE", body), "{case}");
                assert!(!auth.verify("secret", "BYE", body), "{case}");
                let body_covered = qop.contains("auth-int");
                assert_eq!(auth.verify("secret", "INVITE", b"other"), !body_covered, "{case}");
                let with_cnonce = !qop.is_empty() || algorithm.ends_with("-sess");
                assert_eq!(auth.cnonce.is_some(), with_cnonce, "{case}");
                assert_eq!(auth.nonce_count.is_some(), !qop.is_empty(), "{case}");
            }
        }
    }

    #[test]
    fn header_format_and_escaping() {
        let challenge = DigestChallenge::parse(r#"Digest realm="r", nonce="n", opaque="o""#).expect("parses");
        let register = DigestRequest { method: "REGISTER", uri: "sip:example.com", ..GET };
        let credentials = Credentials::new(r#"a"b\c"#, "p");
        let header = authorization(&challenge, &credentials, &register).expect("answers");
        let auth = DigestAuthorization::parse(&header).expect("parses");
        let expected = format!(
            r#"Digest username="a\"b\\c", realm="r", nonce="n", uri="sip:example.com", response="{}", algorithm=MD5, opaque="o""#,
            auth.response
        );
        assert_eq!(header, expected);
        assert_eq!(auth.username, r#"a"b\c"#);
        assert!(auth.verify("p", "REGISTER", b""));
        let injected = Credentials::new("alice\r\nVia: x", "p");
        let result = authorization(&challenge, &injected, &register);
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn lenient_parsing() {
        let value = r#"  dIgEsT  REALM = "a,\"b" ,,NONCE=x/y==, Algorithm = sha-256-SESS ,foo="bar",
            qop="Auth-Int , auth", stale=TRUE"#;
        let c = DigestChallenge::parse(value).expect("parses");
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("a,\"b", "x/y=="));
        assert_eq!(c.algorithm, DigestAlgorithm::Sha256Sess);
        assert_eq!(c.qop, ["auth-int", "auth"]);
        assert!(c.stale && c.opaque.is_none());
    }

    #[test]
    fn best_prefers_sha256_and_skips_unanswerable() {
        let md5 = r#"Digest realm="r", nonce="1", algorithm=MD5, qop="auth""#;
        let sha = r#"Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth""#;
        let odd = r#"Digest realm="r", nonce="3", algorithm=SHA-512-256"#;
        let basic = r#"Basic realm="r""#;
        for order in [[md5, sha, odd, basic], [basic, odd, sha, md5]] {
            let best = DigestChallenge::best(order).map(|c| c.algorithm);
            assert_eq!(best, Ok(DigestAlgorithm::Sha256));
        }
        assert_eq!(DigestChallenge::best([basic, md5]).map(|c| c.nonce), Ok("1".into()));
        let unsupported = AuthError::UnsupportedAlgorithm("SHA-512-256".into());
        assert_eq!(DigestChallenge::best([basic, odd]), Err(unsupported));
        assert!(DigestChallenge::best([]).is_err());
    }

    #[test]
    fn parse_errors() {
        let parse = DigestChallenge::parse;
        assert_eq!(parse(r#"Basic realm="r""#), Err(AuthError::NotDigest("Basic".into())));
        assert_eq!(parse(r#"Digest realm="r""#), Err(AuthError::MissingParameter("nonce")));
        let sha1 = parse(r#"Digest realm="r", nonce="n", algorithm=SHA-1"#);
        assert_eq!(sha1, Err(AuthError::UnsupportedAlgorithm("SHA-1".into())));
        for bad in [r#"Digest realm="r"#, "Digest realm", "Digest realm=", r#"Digest realm="a"x"#] {
            assert!(matches!(parse(bad), Err(AuthError::Malformed(_))), "{bad}");
        }
        let dup = parse(r#"Digest realm="a", nonce="n", REALM="b""#);
        assert!(matches!(dup, Err(AuthError::Malformed(_))));

        let conf = parse(r#"Digest realm="r", nonce="n", qop="auth-conf""#).expect("parses");
        let result = authorization(&conf, &Credentials::new("a", "b"), &GET);
        assert_eq!(result, Err(AuthError::UnsupportedQop("auth-conf".into())));
        assert!(result.is_err_and(|e| e.to_string().contains("auth-conf")));
        let no_cnonce = r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=00000001"#;
        assert_eq!(DigestAuthorization::parse(no_cnonce), Err(AuthError::MissingParameter("cnonce")));
    }

    #[test]
    fn debug_hides_password() {
        let debug = format!("{:?}", Credentials::new("alice", "hunter2"));
        assert!(debug.contains("alice") && debug.contains("***") && !debug.contains("hunter2"));
    }

    #[test]
    fn garbage_never_panics() {
        let valid = [
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b", opaque="5c""#,
            r#"Digest username="a\"é", realm="r", nonce="n", uri="sip:b", response="0", qop=auth, nc=01, cnonce="c""#,
        ];
        let mut inputs: Vec<String> = valid
            .iter()
            .flat_map(|v| v.char_indices().flat_map(|(i, _)| [v[..i].to_owned(), v[i..].to_owned()]))
            .collect();
        let alphabet: Vec<char> = "Digest realm=\"\\,= \t\r\nqop-intSHA256é€".chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        for _ in 0..2000 {
            let prefix = if next() % 2 == 0 { "Digest " } else { "" };
            let len = next() % 40;
            let garbage: String = (0..len).map(|_| alphabet[next() % alphabet.len()]).collect();
            inputs.push(format!("{prefix}{garbage}"));
        }
        for input in &inputs {
            let _ = DigestChallenge::best([input.as_str()]);
            if let Ok(auth) = DigestAuthorization::parse(input) {
                assert!(!auth.verify("p", "GET", b""));
            }
        }
    }
}
