//! Webhooks ("hooks"): HTTP requests from a call to its app's servers.
//!
//! Two ways out: [`CallHooks::send`] waits for the answer (the guest decides what to do with it), and
//! [`CallHooks::notify`] queues a status callback that a per-call task delivers in order, retrying on
//! failure, without ever blocking the call. Every request is checked against the app's allow list and
//! signed when the app has a secret, the way jambonz signs its webhooks, so existing jambonz servers can
//! verify them unchanged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::apps::HookSettings;
use crate::bindings::{BodyEncoding, Hook, HookError, HookResponse};

/// How long one hook request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per status callback (the first try and the retries).
const NOTIFY_ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles after each.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Status callbacks one call may have queued; past this, new ones are refused.
const MAX_QUEUED_NOTIFICATIONS: usize = 256;
/// The header jambonz servers verify.
pub(crate) const SIGNATURE_HEADER: &str = "Jambonz-Signature";
/// The header Twilio's SDKs verify, on form requests (TwiML).
const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The HTTP client every call shares (connection pooling), built once per runtime.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("callwright/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("building the HTTP client for hooks: {e}"))
}

/// One call's hooks: the app's settings, the shared client, and the queue of its status callbacks.
pub(crate) struct CallHooks {
    client: reqwest::Client,
    settings: HookSettings,
    /// Started on the first `notify`; delivers in order and ends when the call's state is dropped.
    queue: Option<mpsc::Sender<Prepared>>,
    /// Names the call in logs.
    label: String,
    /// The largest payload sent, and the largest response body handed back
    /// ([`crate::limits::SandboxLimits::hook_payload_size`]).
    max_payload: usize,
}

/// A checked request, ready to send (and resend).
#[derive(Debug, Clone)]
struct Prepared {
    method: reqwest::Method,
    url: reqwest::Url,
    basic_auth: Option<(String, String)>,
    body: Option<String>,
    /// The body's content type.
    content_type: &'static str,
    /// For a Twilio-style (form) request: the POST parameters its signature covers (none for a GET).
    /// `None`: a JSON request, signed the jambonz way.
    twilio_params: Option<Vec<(String, String)>>,
}

impl CallHooks {
    pub(crate) fn new(client: reqwest::Client, settings: HookSettings, label: String, max_payload: usize) -> CallHooks {
        CallHooks { client, settings, queue: None, label, max_payload }
    }

    /// The same hooks for a verb running on this call, with the queue of status callbacks moved along so
    /// the verb's callbacks stay in order with the flow's. Hand them back with [`CallHooks::give_back`].
    pub(crate) fn lend(&mut self, label: String) -> CallHooks {
        CallHooks {
            client: self.client.clone(),
            settings: self.settings.clone(),
            queue: self.queue.take(),
            label,
            max_payload: self.max_payload,
        }
    }

    /// Takes back the queue lent with [`CallHooks::lend`] (or started by the verb).
    pub(crate) fn give_back(&mut self, mut lent: CallHooks) {
        self.queue = lent.queue.take();
    }

    /// Sends a hook and waits for its answer.
    pub(crate) async fn send(&self, hook: Hook, payload: String) -> Result<HookResponse, HookError> {
        let prepared = self.prepare(hook, payload)?;
        let response = execute(&self.client, &self.settings, &prepared).await?;
        let status = response.status().as_u16();
        let too_large = || {
            HookError::Transport(format!(
                "the response is larger than the hook payload limit of {} bytes",
                self.max_payload
            ))
        };
        if response.content_length().is_some_and(|len| len > self.max_payload as u64) {
            return Err(too_large());
        }
        let body = read_at_most(response, self.max_payload).await?.ok_or_else(too_large)?;
        debug!(call = %self.label, url = %redacted(&prepared.url), status, "hook answered");
        Ok(HookResponse { status, body: String::from_utf8_lossy(&body).into_owned() })
    }

    /// Queues a status callback behind the call's earlier ones.
    pub(crate) fn notify(&mut self, hook: Hook, payload: String) -> Result<(), HookError> {
        let prepared = self.prepare(hook, payload)?;
        let queue = self.queue.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(MAX_QUEUED_NOTIFICATIONS);
            tokio::spawn(deliver_in_order(self.client.clone(), self.settings.clone(), receiver, self.label.clone()));
            sender
        });
        queue.try_send(prepared).map_err(|_| {
            HookError::Transport(format!("more than {MAX_QUEUED_NOTIFICATIONS} status callbacks are waiting"))
        })
    }

    /// Checks the hook against the app's settings and builds the request.
    fn prepare(&self, hook: Hook, payload: String) -> Result<Prepared, HookError> {
        if payload.len() > self.max_payload {
            return Err(HookError::Invalid(format!(
                "the payload is {} bytes, over the hook payload limit of {} bytes",
                payload.len(),
                self.max_payload
            )));
        }
        let mut url =
            reqwest::Url::parse(&hook.url).map_err(|e| HookError::Invalid(format!("hook URL {:?}: {e}", hook.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HookError::Invalid(format!("hook URL {:?} is not http or https", hook.url)));
        }
        if !self.settings.allows(&url) {
            let host = url.host_str().unwrap_or_default();
            return Err(HookError::NotAllowed(format!(
                "{host}:{} is not in the app's hooks.allow list",
                url.port_or_known_default().unwrap_or_default()
            )));
        }
        let method = match hook.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => reqwest::Method::POST,
            Some("GET") => reqwest::Method::GET,
            Some(other) => return Err(HookError::Invalid(format!("hook method {other:?} is not POST or GET"))),
        };
        let json: serde_json::Value =
            serde_json::from_str(&payload).map_err(|e| HookError::Invalid(format!("the payload is not JSON: {e}")))?;
        let form = matches!(hook.encoding, Some(BodyEncoding::Form));
        let (body, content_type, twilio_params) = if method == reqwest::Method::GET || form {
            let serde_json::Value::Object(fields) = json else {
                let what = if form { "a form hook's" } else { "a GET hook's" };
                return Err(HookError::Invalid(format!("{what} payload must be a JSON object")));
            };
            let pairs = text_pairs(fields);
            if method == reqwest::Method::GET {
                url.query_pairs_mut().extend_pairs(&pairs);
                (None, "", form.then(Vec::new))
            } else {
                let mut encoded = reqwest::Url::parse("http://form.invalid/").expect("a valid URL");
                encoded.query_pairs_mut().extend_pairs(&pairs);
                let body = encoded.query().unwrap_or_default().to_string();
                (Some(body), "application/x-www-form-urlencoded", Some(pairs))
            }
        } else {
            (Some(payload), "application/json", None)
        };
        let basic_auth = match (hook.username, hook.password) {
            (Some(user), password) => Some((user, password.unwrap_or_default())),
            (None, Some(_)) => return Err(HookError::Invalid("a hook password needs a username".into())),
            (None, None) => None,
        };
        Ok(Prepared { method, url, basic_auth, body, content_type, twilio_params })
    }
}

/// An object's fields as text pairs: strings as they are, null as empty, other values as JSON.
fn text_pairs(fields: serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    fields
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (name, text)
        })
        .collect()
}

/// Sends one request, signed when the app has a secret.
async fn execute(
    client: &reqwest::Client,
    settings: &HookSettings,
    prepared: &Prepared,
) -> Result<reqwest::Response, HookError> {
    let mut request = client.request(prepared.method.clone(), prepared.url.clone());
    if let Some((user, password)) = &prepared.basic_auth {
        request = request.basic_auth(user, Some(password));
    }
    let body = prepared.body.clone().unwrap_or_default();
    if let Some(secret) = &settings.secret {
        request = match &prepared.twilio_params {
            Some(params) => {
                request.header(TWILIO_SIGNATURE_HEADER, twilio_signature(secret, prepared.url.as_str(), params))
            }
            None => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                request.header(SIGNATURE_HEADER, signature(secret, now, body.as_bytes()))
            }
        };
    }
    if prepared.body.is_some() {
        request = request.header(reqwest::header::CONTENT_TYPE, prepared.content_type).body(body);
    }
    request.send().await.map_err(transport_error)
}

/// Twilio's `X-Twilio-Signature`: Base64 of the HMAC-SHA1, keyed with the auth token (the app's secret), of
/// the full URL followed by each POST parameter's name and value, sorted by name.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`, as jambonz signs.
pub fn signature(secret: &str, unix_seconds: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{unix_seconds}.").as_bytes());
    mac.update(body);
    let digest: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_seconds},v1={digest}")
}

/// Delivers one call's status callbacks in order; each is retried on a transport failure or a 5xx.
async fn deliver_in_order(
    client: reqwest::Client,
    settings: HookSettings,
    queue: mpsc::Receiver<Prepared>,
    label: String,
) {
    retry_in_order(queue, &label, &mut HttpDelivery { client, settings }).await;
}

/// One attempt at delivering a status callback: the status it was delivered with, or why to try again.
trait Delivery {
    fn attempt(&mut self, prepared: &Prepared) -> impl Future<Output = Result<u16, String>> + Send;
}

/// Delivery over HTTP; a 5xx is tried again, any other answer is final.
struct HttpDelivery {
    client: reqwest::Client,
    settings: HookSettings,
}

impl Delivery for HttpDelivery {
    async fn attempt(&mut self, prepared: &Prepared) -> Result<u16, String> {
        match execute(&self.client, &self.settings, prepared).await {
            Ok(response) if !response.status().is_server_error() => Ok(response.status().as_u16()),
            Ok(response) => Err(format!("HTTP {}", response.status())),
            Err(error) => Err(format!("{error:?}")),
        }
    }
}

/// Takes the queued callbacks one at a time and makes up to [`NOTIFY_ATTEMPTS`] attempts at each,
/// waiting [`FIRST_RETRY_DELAY`], doubled each time, between them. The next callback waits for the one
/// before.
async fn retry_in_order(mut queue: mpsc::Receiver<Prepared>, label: &str, delivery: &mut impl Delivery) {
    while let Some(prepared) = queue.recv().await {
        let url = redacted(&prepared.url);
        let mut delay = FIRST_RETRY_DELAY;
        for tried in 1..=NOTIFY_ATTEMPTS {
            let failure = match delivery.attempt(&prepared).await {
                Ok(status) => {
                    debug!(call = %label, %url, status, "status callback delivered");
                    break;
                }
                Err(failure) => failure,
            };
            if tried == NOTIFY_ATTEMPTS {
                warn!(call = %label, %url, %failure, "status callback dropped after {tried} attempts");
            } else {
                debug!(call = %label, %url, %failure, attempt = tried, "status callback failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// A response body of at most `limit` bytes; `None` when it is longer (reading stops there, so a hook
/// server streaming without end costs at most `limit`).
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, HookError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn transport_error(error: reqwest::Error) -> HookError {
    if error.is_timeout() {
        HookError::Timeout
    } else {
        // reqwest's message names the URL; strip credentials and query from what the guest sees.
        HookError::Transport(error.without_url().to_string())
    }
}

/// A URL for logs: no user info, no query (either may carry secrets).
fn redacted(url: &reqwest::Url) -> String {
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or_default(), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(allow: &[&str], secret: Option<&str>) -> CallHooks {
        let settings =
            HookSettings { allow: allow.iter().map(|s| s.to_string()).collect(), secret: secret.map(str::to_string) };
        CallHooks::new(reqwest::Client::new(), settings, "test".into(), 1 << 20)
    }

    fn hook(url: &str, method: Option<&str>) -> Hook {
        Hook { url: url.into(), method: method.map(str::to_string), username: None, password: None, encoding: None }
    }

    fn status_callback(path: &str) -> Prepared {
        Prepared {
            method: reqwest::Method::POST,
            url: reqwest::Url::parse(&format!("http://hooks.example.com{path}")).unwrap(),
            basic_auth: None,
            body: Some("{}".into()),
            content_type: "application/json",
            twilio_params: None,
        }
    }

    /// Records when each callback was tried; `/first` is delivered at its fourth attempt, nothing else is.
    struct Recorder {
        started: tokio::time::Instant,
        attempts: Vec<(String, Duration)>,
    }

    impl Delivery for Recorder {
        async fn attempt(&mut self, prepared: &Prepared) -> Result<u16, String> {
            let path = prepared.url.path().to_string();
            self.attempts.push((path.clone(), self.started.elapsed()));
            let tries = self.attempts.iter().filter(|(tried, _)| *tried == path).count();
            if path == "/first" && tries == 4 { Ok(200) } else { Err("HTTP 503".into()) }
        }
    }

    /// In virtual time: the first callback fails three times and is delivered at the fourth attempt, after
    /// 0.5 + 1 + 2 s; the second waits for it, fails four times and is dropped.
    #[tokio::test(start_paused = true)]
    async fn status_callbacks_are_retried_with_doubling_waits_in_order_and_dropped_after_four_attempts() {
        let (queue, callbacks) = mpsc::channel(8);
        queue.send(status_callback("/first")).await.unwrap();
        queue.send(status_callback("/second")).await.unwrap();
        drop(queue);
        let mut recorder = Recorder { started: tokio::time::Instant::now(), attempts: Vec::new() };
        retry_in_order(callbacks, "test", &mut recorder).await;
        let attempts = recorder.attempts;
        let ms = |ms| Duration::from_millis(ms);
        let expected: Vec<(String, Duration)> = [
            ("/first", 0),
            ("/first", 500),
            ("/first", 1500),
            ("/first", 3500),
            ("/second", 3500),
            ("/second", 4000),
            ("/second", 5000),
            ("/second", 7000),
        ]
        .into_iter()
        .map(|(path, at)| (path.to_string(), ms(at)))
        .collect();
        assert_eq!(attempts, expected);
    }

    #[test]
    fn the_allow_list_decides_which_hosts_a_hook_reaches() {
        let hooks = hooks(&["hooks.example.com", "127.0.0.1:8080"], None);
        assert!(hooks.prepare(hook("https://hooks.example.com/a", None), "{}".into()).is_ok());
        assert!(hooks.prepare(hook("http://127.0.0.1:8080/a", None), "{}".into()).is_ok());
        let refused = hooks.prepare(hook("http://127.0.0.1:9090/a", None), "{}".into()).unwrap_err();
        assert!(matches!(&refused, HookError::NotAllowed(why) if why.contains("127.0.0.1:9090")), "{refused:?}");
        let refused = hooks.prepare(hook("http://169.254.169.254/latest", None), "{}".into()).unwrap_err();
        assert!(matches!(refused, HookError::NotAllowed(_)));
    }

    #[test]
    fn bad_hooks_are_named() {
        let hooks = hooks(&["*"], None);
        let check = |h: Hook, payload: &str, needle: &str| match hooks.prepare(h, payload.into()) {
            Err(HookError::Invalid(why)) => assert!(why.contains(needle), "{why}"),
            other => panic!("expected invalid ({needle}), got {other:?}"),
        };
        check(hook("ftp://x/a", None), "{}", "not http");
        check(hook("not a url", None), "{}", "hook URL");
        check(hook("http://x/a", Some("PUT")), "{}", "not POST or GET");
        check(hook("http://x/a", None), "{oops", "not JSON");
        check(hook("http://x/a", Some("GET")), "[1]", "JSON object");
    }

    #[test]
    fn get_hooks_carry_the_payload_as_query_parameters() {
        let hooks = hooks(&["*"], None);
        let prepared =
            hooks.prepare(hook("http://x/status?app=1", Some("get")), r#"{"a":"b c","n":3}"#.into()).unwrap();
        assert_eq!(prepared.url.as_str(), "http://x/status?app=1&a=b+c&n=3");
        assert!(prepared.body.is_none());
    }

    #[test]
    fn form_hooks_post_the_payload_as_form_fields() {
        let hooks = hooks(&["*"], None);
        let mut form = hook("http://x/twiml", None);
        form.encoding = Some(BodyEncoding::Form);
        let prepared = hooks.prepare(form.clone(), r#"{"CallSid":"c 1","From":"sip:a@b","N":3}"#.into()).unwrap();
        assert_eq!(prepared.body.as_deref(), Some("CallSid=c+1&From=sip%3Aa%40b&N=3"));
        assert_eq!(prepared.content_type, "application/x-www-form-urlencoded");
        assert_eq!(prepared.url.as_str(), "http://x/twiml");
        assert!(matches!(hooks.prepare(form, "[1]".into()), Err(HookError::Invalid(why)) if why.contains("form hook")));
        let json = hooks.prepare(hook("http://x/a", None), "{}".into()).unwrap();
        assert_eq!(json.content_type, "application/json");
    }

    #[test]
    fn twilio_signatures_match_twilios_reference() {
        // Twilio's published example (as in its SDKs' tests), checked with Python's hmac as well.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .rev()
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(twilio_signature("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(twilio_signature("12345", url, &[]), "zYQTYrRWXE7LtzbG4PfP7/bkkGo=");
    }

    #[test]
    fn credentials_become_basic_auth() {
        let hooks = hooks(&["*"], None);
        let mut with_user = hook("http://x/a", None);
        with_user.username = Some("app".into());
        with_user.password = Some("pw".into());
        let prepared = hooks.prepare(with_user, "{}".into()).unwrap();
        assert_eq!(prepared.basic_auth, Some(("app".into(), "pw".into())));
        let mut password_only = hook("http://x/a", None);
        password_only.password = Some("pw".into());
        assert!(matches!(hooks.prepare(password_only, "{}".into()), Err(HookError::Invalid(_))));
    }

    /// A one-thread HTTP server on 127.0.0.1 answering each request with the next status of `statuses`;
    /// returns its address and the request bodies it saw, in order.
    fn scripted_server(statuses: Vec<u16>) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for status in statuses {
                let Ok((stream, _)) = listener.accept() else { return };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                record.lock().unwrap().push(String::from_utf8(body).unwrap());
                let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                reader.get_mut().write_all(response.as_bytes()).unwrap();
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn status_callbacks_are_retried_on_5xx_and_kept_in_order() {
        let (addr, seen) = scripted_server(vec![503, 200, 200]);
        let mut hooks = CallHooks::new(
            http_client().unwrap(),
            HookSettings { allow: vec!["*".into()], secret: None },
            "t".into(),
            1024,
        );
        let url = format!("http://{addr}/status");
        hooks.notify(hook(&url, None), r#"{"n":1}"#.into()).unwrap();
        hooks.notify(hook(&url, None), r#"{"n":2}"#.into()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first attempt got 503, so the first callback came again before the second one.
        assert_eq!(*seen.lock().unwrap(), [r#"{"n":1}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    }

    #[test]
    fn signatures_match_an_independent_hmac() {
        // HMAC-SHA256(key="secret", "1700000000.{}") computed with Python's hmac module.
        assert_eq!(
            signature("secret", 1_700_000_000, b"{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
