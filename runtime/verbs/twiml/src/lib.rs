//! The TwiML runner: a call flow (world `call-flow`) that runs Twilio voice TwiML unchanged.
//!
//! Its config is `{"twiml_url": "<url>"}` (optionally `"twiml_method": "GET"`). The runner requests the
//! URL as Twilio does (a form POST of `CallSid`, `From`, `To`, `CallStatus`, `Direction`, …) and runs the
//! `<Response>`'s verbs in order:
//! - `<Refer action method><Sip>uri</Sip></Refer>`: a SIP REFER; the action gets `ReferCallStatus`,
//!   `ReferSipResponseCode` and `NotifySipResponseCode`, and its TwiML replaces the rest.
//! - `<Dial action method timeout callerId timeLimit><Sip>uri</Sip></Dial>`: the `dial` verb; the action
//!   gets `DialCallStatus`, `DialCallSid`, `DialCallDuration` and `DialSipResponseCode`.
//! - `<Say loop language>text</Say>` and `<Play loop>url</Play>`: the `say` and `play` verbs (`loop="0"`:
//!   until the call ends; Twilio's voice names speak with the built-in voice); `<Play digits="…"/>` sends
//!   the digits (the `dtmf` verb).
//! - `<Record action method timeout finishOnKey maxLength playBeep>`: the `record` verb; the action gets
//!   `RecordingUrl`, `RecordingDuration` and `Digits`.
//! - `<Dial><Conference muted beep>name</Conference></Dial>`: the `conference` verb.
//! - `<Gather input numDigits finishOnKey timeout action method actionOnEmptyResult>` with `<Say>` and
//!   `<Play>` inside: the `gather` verb; the action gets `Digits`.
//! - `<Hangup/>`, `<Reject reason="busy|rejected"/>` (486 or 603), `<Pause length/>`, `<Redirect>`.
//!
//! Twilio answers a call before its first verb unless that verb is `<Reject>`; so does this runner (a
//! `<Dial answerOnBridge="true">` answers the caller only when the callee answers; the media is anchored in
//! the host either way).
//! The other verbs that need media (`<Record>`, …) stop the call with a clear error.

#![forbid(unsafe_code)]

use callwright_sdk::hooks::{BodyEncoding, Hook, send_json};
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::{Call, CallInfo, Config, Flow, Level, ReferRequest, dispatch, documents, log};

/// Verbs one call may run in total (a redirect loop ends here).
pub const MAX_VERBS_PER_CALL: usize = 1_000;

/// TwiML verbs that need media, which callwright does not carry yet.
pub const MEDIA_VERBS: [&str; 8] = ["Connect", "Enqueue", "Leave", "Stream", "Start", "Stop", "Pay", "Prompt"];

/// One verb of a TwiML document: its name, attributes and the text of its `<Sip>` child (or its own text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verb {
    /// The element name (`Refer`, `Dial`, …).
    pub name: String,
    /// Its attributes.
    pub attributes: Vec<(String, String)>,
    /// Its `<Sip>` child's text, when it has one.
    pub sip: Option<String>,
    /// Its own text (a `<Redirect>`'s URL), trimmed.
    pub text: String,
    /// The names of its other child elements (`<Number>`, `<Client>`, …).
    pub other_children: Vec<String>,
    /// Those children as verbs (a `<Gather>`'s `<Say>` and `<Play>`).
    pub children: Vec<Verb>,
}

impl Verb {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Parses a TwiML document into its verbs.
pub fn parse(text: &str) -> Result<Vec<Verb>, String> {
    let document = roxmltree::Document::parse(text).map_err(|e| format!("the TwiML is not XML: {e}"))?;
    let root = document.root_element();
    if root.tag_name().name() != "Response" {
        return Err(format!("the TwiML's root element is <{}>, not <Response>", root.tag_name().name()));
    }
    Ok(root.children().filter(roxmltree::Node::is_element).map(|node| verb_of(&node)).collect())
}

fn verb_of(node: &roxmltree::Node<'_, '_>) -> Verb {
    let elements: Vec<roxmltree::Node<'_, '_>> = node.children().filter(roxmltree::Node::is_element).collect();
    let sip = elements.iter().find(|c| c.tag_name().name() == "Sip").map(|c| text_of(c));
    let children: Vec<Verb> = elements.iter().filter(|c| c.tag_name().name() != "Sip").map(verb_of).collect();
    Verb {
        name: node.tag_name().name().to_string(),
        attributes: node.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect(),
        sip,
        text: text_of(node),
        other_children: children.iter().map(|c| c.name.clone()).collect(),
        children,
    }
}

fn text_of(node: &roxmltree::Node<'_, '_>) -> String {
    node.children().filter(roxmltree::Node::is_text).filter_map(|t| t.text()).collect::<String>().trim().to_string()
}

/// The runner.
pub struct TwimlRunner;

impl Flow for TwimlRunner {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        let url = config.get_str("twiml_url").ok_or(r#"the app gives no "twiml_url""#)?.to_string();
        let method = config.get_str("twiml_method").unwrap_or("POST").to_ascii_uppercase();
        let mut runner = Runner { call: &call, info: call.info(), answered: false, executed: 0 };
        let result = runner.run(&url, &method);
        if let Err(error) = &result {
            log(Level::Error, &format!("TwiML: {error}"));
        }
        result
    }
}

#[cfg(target_arch = "wasm32")]
mod export {
    callwright_sdk::flow!(super::TwimlRunner);
}

struct Runner<'a> {
    call: &'a Call,
    info: CallInfo,
    answered: bool,
    executed: usize,
}

/// What a verb asks for next.
enum Next {
    Continue,
    /// Fetch this URL (with this method and extra parameters) and run its TwiML instead.
    Fetch(String, String, Map<String, Value>),
    Stop,
}

impl Runner<'_> {
    fn run(&mut self, url: &str, method: &str) -> Result<(), String> {
        let (mut verbs, mut base) = (self.fetch(url, method, Map::new())?, url.to_string());
        let mut index = 0;
        while let Some(verb) = verbs.get(index).cloned() {
            index += 1;
            self.executed += 1;
            if self.executed > MAX_VERBS_PER_CALL {
                return Err(format!("more than {MAX_VERBS_PER_CALL} verbs ran on this call (a redirect loop?)"));
            }
            match self.run_verb(&verb, &base).map_err(|e| format!("<{}>: {e}", verb.name))? {
                Next::Continue => {}
                Next::Stop => return Ok(()),
                Next::Fetch(next, method, extra) => {
                    verbs = self.fetch(&next, &method, extra)?;
                    base = next;
                    index = 0;
                }
            }
        }
        Ok(())
    }

    fn run_verb(&mut self, verb: &Verb, base: &str) -> Result<Next, String> {
        if MEDIA_VERBS.contains(&verb.name.as_str()) {
            return Err("needs media, which callwright does not carry yet".into());
        }
        // `<Dial>` answers the caller itself, with the callee's session description.
        if verb.name != "Reject" && verb.name != "Dial" {
            self.answer()?;
        }
        let action = |verb: &Verb, extra: Map<String, Value>| match verb.attribute("action") {
            Some(action) => {
                let method = verb.attribute("method").unwrap_or("POST").to_ascii_uppercase();
                Next::Fetch(documents::resolve_url(action, Some(base)), method, extra)
            }
            None => Next::Continue,
        };
        match verb.name.as_str() {
            "Hangup" => {
                run_verb(self.call, "hangup", json!({}))?;
                Ok(Next::Stop)
            }
            "Reject" => {
                let status = if verb.attribute("reason") == Some("busy") { 486 } else { 603 };
                run_verb(self.call, "sip:decline", json!({"status": status}))?;
                Ok(Next::Stop)
            }
            "Pause" => {
                let length: f64 =
                    verb.attribute("length").map_or(Ok(1.0), str::parse).map_err(|_| "length must be a number")?;
                if length > 0.0 {
                    let result = run_verb(self.call, "pause", json!({"length": length}))?;
                    if result["call_ended"] == true {
                        return Ok(Next::Stop);
                    }
                }
                Ok(Next::Continue)
            }
            "Redirect" => {
                if verb.text.is_empty() {
                    return Err("give the URL as the element's text".into());
                }
                let method = verb.attribute("method").unwrap_or("POST").to_ascii_uppercase();
                Ok(Next::Fetch(documents::resolve_url(&verb.text, Some(base)), method, Map::new()))
            }
            "Refer" => {
                let target = verb.sip.as_deref().ok_or("give the target as <Sip>uri</Sip>")?;
                let refer = self.call.sip_refer(&ReferRequest::to(target)).map_err(|e| format!("{e:?}"))?;
                let report = refer.follow(|_| {});
                log(Level::Info, &format!("<Refer> to {target}: {}", report.outcome_name()));
                let extra = report.twilio_action_params().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                Ok(action(verb, extra))
            }
            "Say" | "Play" => {
                // Twilio's `loop="0"` repeats until the call ends.
                let repeats = match verb.attribute("loop").map(str::parse::<u32>) {
                    None => json!(1),
                    Some(Ok(0)) => json!("forever"),
                    Some(Ok(n)) => json!(n),
                    Some(Err(_)) => return Err("loop must be a whole number".into()),
                };
                // `<Play digits="wwww3"/>` sends digits (`w`: a 500 ms pause) instead of playing.
                if let Some(digits) = verb.attribute("digits").filter(|_| verb.name == "Play") {
                    let result = run_verb(self.call, "dtmf", json!({"dtmf": digits, "duration": 100}))?;
                    return Ok(if result["call_ended"] == true { Next::Stop } else { Next::Continue });
                }
                if verb.text.is_empty() {
                    return Err("give the text or URL as the element's text".into());
                }
                let result = if verb.name == "Say" {
                    let mut synthesizer = Map::new();
                    if let Some(language) = verb.attribute("language") {
                        synthesizer.insert("language".into(), json!(language));
                    }
                    // Twilio's `woman` and `alice` speak with flite's woman's voice; other voices with the default.
                    if matches!(verb.attribute("voice"), Some("woman" | "alice")) {
                        synthesizer.insert("vendor".into(), json!("flite"));
                        synthesizer.insert("voice".into(), json!("slt"));
                    }
                    run_verb(self.call, "say", json!({"text": verb.text, "loop": repeats, "synthesizer": synthesizer}))?
                } else {
                    let url = documents::resolve_url(&verb.text, Some(base));
                    run_verb(self.call, "play", json!({"url": url, "loop": repeats}))?
                };
                Ok(if result["call_ended"] == true { Next::Stop } else { Next::Continue })
            }
            "Gather" => self.gather(verb, base),
            "Record" => self.record(verb, base),
            "Dial" if verb.children.iter().any(|c| c.name == "Conference") => {
                let room = verb.children.iter().find(|c| c.name == "Conference").expect("checked");
                self.answer()?;
                let mut args = json!({"name": room.text});
                for (attribute, field) in [
                    ("startConferenceOnEnter", "startConferenceOnEnter"),
                    ("endConferenceOnExit", "endConferenceOnExit"),
                    ("muted", "joinMuted"),
                    ("beep", "beep"),
                ] {
                    if let Some(value) = room.attribute(attribute) {
                        // Twilio's beep is also `onEnter`/`onExit`; the joiner hears it on `true` and `onEnter`.
                        args[field] = json!(matches!(value, "true" | "onEnter"));
                    }
                }
                if let Some(most) = room.attribute("maxParticipants") {
                    args["maxParticipants"] = json!(most.parse::<u64>().unwrap_or(0));
                }
                let result = run_verb(self.call, "conference", args)?;
                Ok(if result["call_ended"] == true { Next::Stop } else { Next::Continue })
            }
            "Dial" => {
                if !verb.other_children.is_empty() || verb.sip.is_none() {
                    return Err("only <Sip> targets can be dialled (no <Number> or <Client>: no carrier)".into());
                }
                let mut args = json!({"target": [{"type": "sip", "sipUri": verb.sip}]});
                for (attribute, field) in [("timeout", "timeout"), ("timeLimit", "timeLimit")] {
                    if let Some(value) = verb.attribute(attribute) {
                        args[field] = json!(value.parse::<f64>().map_err(|_| format!("{attribute} must be a number"))?);
                    }
                }
                if let Some(caller) = verb.attribute("callerId") {
                    args["callerId"] = json!(caller);
                }
                // Twilio answers the caller before dialling unless `answerOnBridge`; `ringTone` is a country.
                args["answerOnBridge"] = json!(verb.attribute("answerOnBridge") == Some("true"));
                if let Some(country) = verb.attribute("ringTone") {
                    args["ringTone"] = json!(country);
                }
                let result = run_verb(self.call, "dial", args)?;
                self.answered = true;
                Ok(action(verb, dial_params(&result)))
            }
            other => Err(format!("<{other}> is not a TwiML voice verb callwright knows")),
        }
    }

    /// `<Gather>` as the `gather` verb: its `<Say>` and `<Play>` children are the prompt (the spoken ones
    /// first), `timeout` (default 5 s) is also the wait between digits, `finishOnKey` defaults to `#`.
    /// With digits, the action (default: this document's URL) gets `Digits` and its TwiML replaces the
    /// rest; without, the next verb runs (or the action gets empty `Digits` with
    /// `actionOnEmptyResult="true"`).
    fn gather(&mut self, verb: &Verb, base: &str) -> Result<Next, String> {
        let number = |name: &str| -> Result<Option<f64>, String> {
            verb.attribute(name).map(|v| v.parse::<f64>().map_err(|_| format!("{name} must be a number"))).transpose()
        };
        let input = verb.attribute("input").unwrap_or("dtmf");
        let inputs: Vec<&str> = input
            .split_whitespace()
            .map(|kind| if kind == "dtmf" { "digits" } else { kind })
            .filter(|kind| matches!(*kind, "digits" | "speech"))
            .collect();
        let timeout = number("timeout")?.unwrap_or(5.0);
        let mut args = json!({
            "input": inputs,
            "finishOnKey": verb.attribute("finishOnKey").unwrap_or("#"),
            "timeout": timeout,
            "interDigitTimeout": timeout,
        });
        if let Some(digits) = number("numDigits")? {
            args["numDigits"] = json!(digits.max(1.0) as u64);
        }
        let says: Vec<&str> = verb.children.iter().filter(|c| c.name == "Say").map(|c| c.text.as_str()).collect();
        let plays: Vec<String> = verb
            .children
            .iter()
            .filter(|c| c.name == "Play")
            .map(|c| documents::resolve_url(&c.text, Some(base)))
            .collect();
        if !says.is_empty() {
            args["say"] = json!({"text": says});
        }
        if !plays.is_empty() {
            args["play"] = json!({"url": plays});
        }
        let result = run_verb(self.call, "gather", args)?;
        if result["call_ended"] == true {
            return Ok(Next::Stop);
        }
        let digits = result["digits"].as_str().unwrap_or_default();
        let detected = result["reason"] == "dtmfDetected" && !digits.is_empty();
        if !detected && verb.attribute("actionOnEmptyResult") != Some("true") {
            return Ok(Next::Continue);
        }
        let action =
            verb.attribute("action").map_or_else(|| base.to_string(), |a| documents::resolve_url(a, Some(base)));
        let method = verb.attribute("method").unwrap_or("POST").to_ascii_uppercase();
        let mut extra = Map::new();
        extra.insert("Digits".into(), json!(if detected { digits } else { "" }));
        Ok(Next::Fetch(action, method, extra))
    }

    /// `<Record>` as the `record` verb (`maxLength`, `timeout`, `finishOnKey`, `playBeep`). The action (by
    /// default this document's URL) gets `RecordingUrl` (the admin API's, fetched with the admin token),
    /// `RecordingDuration` and `Digits` (the finish key, or `hangup`); nothing recorded: the next verb
    /// runs and the action is not requested, as on Twilio. After a hang-up the action is requested and its
    /// TwiML not run.
    fn record(&mut self, verb: &Verb, base: &str) -> Result<Next, String> {
        let mut args = json!({});
        for (attribute, field) in [("maxLength", "maxLength"), ("timeout", "timeout")] {
            if let Some(value) = verb.attribute(attribute) {
                args[field] = json!(value.parse::<f64>().map_err(|_| format!("{attribute} must be a number"))?);
            }
        }
        if let Some(keys) = verb.attribute("finishOnKey") {
            args["finishOnKey"] = json!(keys);
        }
        args["playBeep"] = json!(verb.attribute("playBeep") != Some("false"));
        let result = run_verb(self.call, "record", args)?;
        let hung_up = result["call_ended"] == true;
        if result["ended_by"] == "no-input" {
            return Ok(if hung_up { Next::Stop } else { Next::Continue });
        }
        let mut extra = Map::new();
        extra.insert("RecordingUrl".into(), result["recording_url"].clone());
        let seconds = (result["duration_ms"].as_u64().unwrap_or(0) + 500) / 1000;
        extra.insert("RecordingDuration".into(), json!(seconds.to_string()));
        let digits = if hung_up { "hangup".to_string() } else { result["digits"].as_str().unwrap_or("").to_string() };
        extra.insert("Digits".into(), json!(digits));
        let action =
            verb.attribute("action").map_or_else(|| base.to_string(), |a| documents::resolve_url(a, Some(base)));
        let method = verb.attribute("method").unwrap_or("POST").to_ascii_uppercase();
        if hung_up {
            if let Err(error) = self.fetch(&action, &method, extra) {
                log(Level::Warn, &format!("<Record> action after the hang-up: {error}"));
            }
            return Ok(Next::Stop);
        }
        Ok(Next::Fetch(action, method, extra))
    }

    fn answer(&mut self) -> Result<(), String> {
        if self.answered {
            return Ok(());
        }
        self.call.answer_if_needed().map_err(|error| format!("answering the call failed: {error:?}"))?;
        self.answered = true;
        Ok(())
    }

    /// Requests TwiML as Twilio does: the call's parameters (and `extra`) as a form POST or a GET query.
    fn fetch(&self, url: &str, method: &str, extra: Map<String, Value>) -> Result<Vec<Verb>, String> {
        let mut params = call_params(&self.info, if self.answered { "in-progress" } else { "ringing" });
        params.extend(extra);
        let hook = Hook {
            url: url.to_string(),
            method: Some(method.to_string()),
            username: None,
            password: None,
            encoding: Some(BodyEncoding::Form),
        };
        let response = send_json(&hook, &Value::Object(params)).map_err(|e| format!("requesting {url}: {e:?}"))?;
        if !(200..300).contains(&response.status) {
            return Err(format!("requesting {url}: the server answered {}", response.status));
        }
        parse(&response.body).map_err(|e| format!("{url}: {e}"))
    }
}

fn run_verb(call: &Call, name: &str, args: Value) -> Result<Value, String> {
    dispatch::run_verb(call, name, &args).map_err(|e| e.message().to_string())
}

/// A `<Dial>` action's parameters from the `dial` verb's result.
pub fn dial_params(result: &Value) -> Map<String, Value> {
    let status = match result["dial_call_status"].as_str() {
        Some("completed") => "completed",
        Some("busy") => "busy",
        Some("no-answer") => "no-answer",
        _ => "failed",
    };
    let mut params = Map::new();
    params.insert("DialCallStatus".into(), json!(status));
    if let Some(sid) = result["dial_call_sid"].as_str() {
        params.insert("DialCallSid".into(), json!(sid));
    }
    if let Some(duration) = result["dial_call_duration"].as_u64() {
        params.insert("DialCallDuration".into(), json!(duration.to_string()));
    }
    if let Some(code) = result["dial_sip_status"].as_u64() {
        params.insert("DialSipResponseCode".into(), json!(code.to_string()));
    }
    params
}

/// The parameters Twilio sends with every request about a call.
pub fn call_params(info: &CallInfo, call_status: &str) -> Map<String, Value> {
    let (from, to) = (uri_of(&info.from), uri_of(&info.to));
    let mut params = Map::new();
    for (name, value) in [
        ("CallSid", info.id.as_str()),
        ("AccountSid", ""),
        ("From", from.as_str()),
        ("To", to.as_str()),
        ("Caller", from.as_str()),
        ("Called", to.as_str()),
        ("CallStatus", call_status),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
        ("SipCallId", info.sip_call_id.as_str()),
    ] {
        params.insert(name.into(), json!(value));
    }
    params
}

/// The URI of a From or To header field, without display name, brackets or parameters.
fn uri_of(field: &str) -> String {
    let inner = match (field.find('<'), field.find('>')) {
        (Some(open), Some(close)) if open < close => &field[open + 1..close],
        _ => field.split(';').next().unwrap_or(field),
    };
    inner.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_with_attributes_and_sip_targets() {
        let verbs = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response>
              <Refer action="/refer-done" method="POST"><Sip>sip:alice@example.com</Sip></Refer>
              <Pause length="2"/>
              <Redirect method="GET"> https://a.example/next </Redirect>
              <Dial timeout="10"><Number>+15551234567</Number></Dial>
            </Response>"#,
        )
        .unwrap();
        assert_eq!(verbs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["Refer", "Pause", "Redirect", "Dial"]);
        assert_eq!(verbs[0].sip.as_deref(), Some("sip:alice@example.com"));
        assert_eq!(verbs[0].attribute("action"), Some("/refer-done"));
        assert_eq!(verbs[1].attribute("length"), Some("2"));
        assert_eq!(verbs[2].text, "https://a.example/next");
        assert_eq!(verbs[3].other_children, ["Number"]);
    }

    #[test]
    fn bad_documents_are_named() {
        assert!(parse("<Response><Hangup></Response>").unwrap_err().contains("not XML"));
        assert!(parse("<Document/>").unwrap_err().contains("<Document>, not <Response>"));
        assert!(parse("{}").unwrap_err().contains("not XML"));
    }

    #[test]
    fn urls_and_parameters() {
        assert_eq!(documents::resolve_url("/next", Some("http://127.0.0.1:9/doc")), "http://127.0.0.1:9/next");
        assert_eq!(uri_of(r#""Alice" <sip:alice@example.com>;tag=1"#), "sip:alice@example.com");
        assert_eq!(uri_of("sip:bob@example.com;tag=2"), "sip:bob@example.com");
        let params = dial_params(&json!({"dial_call_status": "completed", "dial_call_sid": "call-9",
                                         "dial_call_duration": 12, "dial_sip_status": 200}));
        assert_eq!(
            Value::Object(params),
            json!({"DialCallStatus": "completed", "DialCallSid": "call-9", "DialCallDuration": "12",
                   "DialSipResponseCode": "200"})
        );
        assert_eq!(
            dial_params(&json!({"dial_call_status": "no-answer", "dial_sip_status": 487}))["DialCallStatus"],
            "no-answer"
        );
    }
}
