//! Write callwright call flows in Rust.
//!
//! A flow is a type implementing [`Flow`], exported with [`flow!`]. Build the crate as a `cdylib` for the
//! `wasm32-wasip2` target: the output is a component that `callwright deploy` (or `PUT /v1/modules/{name}`)
//! accepts. The host runs one instance per call; calls into the host block until SIP is done, so a flow
//! reads top to bottom.
//!
//! ```
//! use callwright_sdk::{Call, CallEvent, Config, Flow, flow};
//!
//! struct AnswerThenHangUp;
//!
//! impl Flow for AnswerThenHangUp {
//!     fn handle(call: Call, config: Config) -> Result<(), String> {
//!         call.answer(&[], None).map_err(|e| e.to_string())?;
//!         // Wait for the caller to hang up, at most `seconds` (default 30).
//!         let seconds = config.get_u64("seconds").unwrap_or(30);
//!         match call.next_event_until_end(seconds * 1000) {
//!             Some(CallEvent::Ended(_)) => Ok(()),
//!             _ => call.hangup().map_err(|e| e.to_string()),
//!         }
//!     }
//! }
//!
//! flow!(AnswerThenHangUp);
//! ```

/// The generated bindings, for anything the helpers here do not cover. The imports (what the host gives)
/// are generated once, from world `host-services`; each kind of module gets its exports from its own
/// world, so a flow component carries only the `call-flow` world and a verb component only `verb`.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "host-services",
        generate_all,
    });

    /// Generates the exports of one world, reusing the imports generated above (so every module kind
    /// shares one set of host-service types).
    macro_rules! exports_of {
        ($world:literal, $export_macro:literal, $module:literal) => {
            wit_bindgen::generate!({
                path: "../../wit",
                world: $world,
                pub_export_macro: true,
                export_macro_name: $export_macro,
                default_bindings_module: $module,
                with: {
                    "callwright:voice/types@0.1.0": crate::bindings::callwright::voice::types,
                    "callwright:voice/call@0.1.0": crate::bindings::callwright::voice::call,
                    "callwright:voice/variables@0.1.0": crate::bindings::callwright::voice::variables,
                    "callwright:voice/log@0.1.0": crate::bindings::callwright::voice::log,
                    "callwright:voice/clock@0.1.0": crate::bindings::callwright::voice::clock,
                    "callwright:voice/hooks@0.1.0": crate::bindings::callwright::voice::hooks,
                    "callwright:voice/dispatch@0.1.0": crate::bindings::callwright::voice::dispatch,
                    "callwright:voice/media@0.1.0": crate::bindings::callwright::voice::media,
                },
            });
        };
    }

    /// Exports of world `call-flow`.
    pub mod flow_world {
        exports_of!("call-flow", "export_call_flow", "callwright_sdk::bindings::flow_world");
    }

    /// Exports of world `verb`.
    pub mod verb_world {
        exports_of!("verb", "export_verb", "callwright_sdk::bindings::verb_world");
    }
}

pub use bindings::callwright::voice::call::{
    Call, CallEvent, CallInfo, CallUpdate, DialError, DialRequest, EndReason, InboundRefer, IncomingRequest, Refer,
    ReferEvent, ReferOutcome, ReferRequest, SipResponse, dial, start_dial, wait,
};
pub use bindings::callwright::voice::log::Level;
pub use bindings::callwright::voice::types::{Body, CallError, Credentials, Direction, Header};

pub mod transfer;

/// Media: prompts, speech and tones the caller hears, the keys the caller presses, digits we send,
/// recordings.
///
/// ```no_run
/// use callwright_sdk::media::{self, AudioSource, MediaUpdate};
/// use callwright_sdk::{Call, CallEvent, CallUpdate};
///
/// /// Asks for one key; `None` when the caller pressed nothing in 5 s or hung up.
/// fn ask(call: &Call) -> Option<String> {
///     let prompt = [AudioSource::Say(media::Speech::text("Press a key."))];
///     media::play(call, &prompt, media::PlayOptions::barge_in()).ok()?;
///     loop {
///         match media::wait(&[call], Some(5000))? {
///             (_, MediaUpdate::Digit(digit)) => return Some(digit.key),
///             (_, MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_)))) => return None,
///             _ => continue,
///         }
///     }
/// }
/// ```
pub mod media {
    pub use crate::bindings::callwright::voice::media::{
        AudioSource, Digit, DigitSource, MediaError, MediaUpdate, PlayOptions, Playback, PlaybackEnd, PlaybackEnded,
        RecordDirection, RecordOptions, Recording, RecordingEnd, RecordingEnded, Ringback, Speech, Voice, bridge,
        conference_join, conference_leave, conference_mute, play, record, send_digits, stop_playback, unbridge, wait,
    };

    impl RecordOptions {
        /// The caller's voice, mono, up to `max_ms`, no beep, no end on silence or keys.
        pub fn caller(max_ms: u32) -> RecordOptions {
            RecordOptions {
                direction: None,
                stereo: false,
                max_ms: Some(max_ms),
                end_on_silence_ms: None,
                no_input_ms: None,
                finish_on_keys: None,
                beep: false,
            }
        }
    }

    impl RecordingEnd {
        /// Its WIT name: `max-length`, `silence`, `no-input`, `key`, `stopped`.
        pub fn name(&self) -> &'static str {
            match self {
                RecordingEnd::MaxLength => "max-length",
                RecordingEnd::Silence => "silence",
                RecordingEnd::NoInput => "no-input",
                RecordingEnd::Key(_) => "key",
                RecordingEnd::Stopped => "stopped",
            }
        }
    }

    impl Speech {
        /// `text` in the default voice (the built-in provider's).
        pub fn text(text: &str) -> Speech {
            Speech { text: text.to_string(), voice: Voice { provider: None, name: None, language: None } }
        }
    }

    impl PlayOptions {
        /// Once, at its own level, to the end.
        pub fn once() -> PlayOptions {
            PlayOptions { loops: None, volume_db: None, barge_in: false }
        }

        /// Once, stopped by the caller's first key.
        pub fn barge_in() -> PlayOptions {
            PlayOptions { barge_in: true, ..PlayOptions::once() }
        }
    }

    impl DigitSource {
        /// Its WIT name: `rtp-event`, `sip-info`, `in-band`.
        pub fn name(self) -> &'static str {
            match self {
                DigitSource::RtpEvent => "rtp-event",
                DigitSource::SipInfo => "sip-info",
                DigitSource::InBand => "in-band",
            }
        }
    }

    impl PlaybackEnd {
        /// Its WIT name: `completed`, `stopped`, `barged-in`.
        pub fn name(self) -> &'static str {
            match self {
                PlaybackEnd::Completed => "completed",
                PlaybackEnd::Stopped => "stopped",
                PlaybackEnd::BargedIn => "barged-in",
            }
        }
    }

    impl MediaError {
        /// What went wrong, in words.
        pub fn message(&self) -> String {
            match self {
                MediaError::NoMedia => "the call carries no media of the host's".into(),
                MediaError::CallEnded => "the call has ended".into(),
                MediaError::BadSource(why) => format!("cannot play: {why}"),
                MediaError::InvalidArgument(why) => format!("invalid argument: {why}"),
            }
        }
    }

    /// Speaks `text` in the default voice, once; returns when it is ready to play (not when it has played).
    pub fn say(call: &crate::Call, text: &str) -> Result<Playback, MediaError> {
        play(call, &[AudioSource::Say(Speech::text(text))], PlayOptions::once())
    }
}

/// Webhooks to the app's servers (the app's `hooks.allow` list says which hosts).
pub mod hooks {
    pub use crate::bindings::callwright::voice::hooks::{BodyEncoding, Hook, HookError, HookResponse, notify, send};

    impl Hook {
        /// A POST hook to `url`.
        pub fn post(url: &str) -> Hook {
            Hook { url: url.to_string(), method: None, username: None, password: None, encoding: None }
        }

        /// A hook from an app's JSON: a URL string, or `{"url": …, "method": …, "username": …,
        /// "password": …}` (jambonz's webhook object). `None` for anything else.
        pub fn from_json(value: &serde_json::Value) -> Option<Hook> {
            if let Some(url) = value.as_str() {
                return Some(Hook::post(url));
            }
            let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
            Some(Hook {
                url: text("url")?,
                method: text("method"),
                username: text("username"),
                password: text("password"),
                encoding: None,
            })
        }
    }

    /// Sends `payload` and waits for the answer.
    pub fn send_json(hook: &Hook, payload: &serde_json::Value) -> Result<HookResponse, HookError> {
        send(hook, &payload.to_string())
    }

    /// Queues `payload` as a status callback (ordered, retried, never blocking).
    pub fn notify_json(hook: &Hook, payload: &serde_json::Value) -> Result<(), HookError> {
        notify(hook, &payload.to_string())
    }

    /// Sends an action hook (such as a jambonz `actionHook`) and returns its JSON answer. `None` when the
    /// hook failed, answered other than 2xx, or answered nothing or something that is not JSON; each is
    /// logged, prefixed with `context` (e.g. the verb's name). A failed action hook does not fail the verb
    /// that sends it: what it reports on has happened.
    pub fn send_for_answer(hook: &Hook, payload: &serde_json::Value, context: &str) -> Option<serde_json::Value> {
        use crate::{Level, log};
        let response = match send_json(hook, payload) {
            Ok(response) => response,
            Err(error) => {
                log(Level::Warn, &format!("{context}: hook {} failed: {error}", hook.url));
                return None;
            }
        };
        if !(200..300).contains(&response.status) {
            log(Level::Warn, &format!("{context}: hook {} answered {}", hook.url, response.status));
            return None;
        }
        if response.body.trim().is_empty() {
            return None;
        }
        match serde_json::from_str(&response.body) {
            Ok(value) => Some(value),
            Err(error) => {
                log(Level::Warn, &format!("{context}: hook {} answered with invalid JSON: {error}", hook.url));
                None
            }
        }
    }
}

impl ReferRequest {
    /// A blind transfer to `target` (SIP or tel URI, or a number) with the defaults: Referred-By the
    /// transferred party, an implicit subscription, 15 s for the final NOTIFY.
    pub fn to(target: &str) -> ReferRequest {
        ReferRequest {
            target: target.to_string(),
            referred_by: None,
            headers: Vec::new(),
            credentials: None,
            no_refer_sub: false,
            replaces: None,
            timeout_ms: None,
        }
    }
}

impl DialRequest {
    /// An outbound call to `target` with the defaults: our address as From, the host's SDP offer, UDP,
    /// 30 s to answer.
    pub fn to(target: &str) -> DialRequest {
        DialRequest {
            target: target.to_string(),
            from: None,
            headers: Vec::new(),
            body: None,
            credentials: None,
            timeout_ms: None,
            transport: None,
        }
    }
}

/// Running verbs by name: the built-in ones (`sip:refer`, `sip_refer`, …) and any a verb module adds.
///
/// ```no_run
/// use callwright_sdk::serde_json::json;
/// use callwright_sdk::{Call, dispatch};
///
/// fn transfer(call: &Call) -> Result<(), String> {
///     let result = dispatch::run_verb(call, "sip:refer", &json!({"referTo": "sip:bob@example.com"}))
///         .map_err(|e| e.to_string())?;
///     if result["final_referred_call_status"] == 200 {
///         return Ok(());
///     }
///     call.hangup().map_err(|e| e.to_string())
/// }
/// ```
pub mod dispatch {
    pub use crate::bindings::callwright::voice::dispatch::{VerbError, VerbInfo, available, check, run};

    impl VerbError {
        /// What went wrong, in words (the host's message names the verb and, for bad arguments, the field).
        pub fn message(&self) -> &str {
            match self {
                VerbError::UnknownVerb(why) | VerbError::InvalidArguments(why) | VerbError::Failed(why) => why,
            }
        }
    }

    /// Runs verb `name` with `args` on `call` and returns its JSON result (`null` when the verb returned
    /// nothing or text that is not JSON).
    pub fn run_verb(call: &crate::Call, name: &str, args: &serde_json::Value) -> Result<serde_json::Value, VerbError> {
        let result = run(call, name, &args.to_string())?;
        Ok(serde_json::from_str(&result).unwrap_or(serde_json::Value::Null))
    }

    /// Checks that verb `name` exists and `args` match its schema, without running it.
    pub fn check_verb(name: &str, args: &serde_json::Value) -> Result<(), VerbError> {
        check(name, &args.to_string())
    }
}

/// Helpers for guests that run documents (jambonz arrays, SWML, TwiML).
pub mod documents {
    /// The JSON type of a value, with its article, for error messages ("a string", "an object").
    pub fn kind(value: &serde_json::Value) -> &'static str {
        use serde_json::Value;
        match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// `url` resolved against the URL of the document it came from when it is a path (`/next` against
    /// `https://a.example/doc` is `https://a.example/next`); anything else as it is.
    pub fn resolve_url(url: &str, base: Option<&str>) -> String {
        match (url.starts_with('/'), base) {
            (true, Some(base)) => {
                let after_scheme = base.find("://").map_or(0, |i| i + 3);
                let origin = base[after_scheme..].find('/').map_or(base, |slash| &base[..after_scheme + slash]);
                format!("{origin}{url}")
            }
            _ => url.to_string(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn relative_urls_resolve_against_the_documents_origin() {
            assert_eq!(resolve_url("/next", Some("http://127.0.0.1:8080/doc?x=1")), "http://127.0.0.1:8080/next");
            assert_eq!(resolve_url("/next", Some("https://a.example")), "https://a.example/next");
            assert_eq!(resolve_url("/next", None), "/next");
            assert_eq!(resolve_url("https://b.example/x", Some("http://a.example/doc")), "https://b.example/x");
            assert_eq!(kind(&serde_json::json!({})), "an object");
        }
    }
}

/// The call variable holding a hook (JSON) that routine in-dialog requests are posted to; see
/// [`Call::answer_routine_request`].
pub const ROUTINE_REQUEST_HOOK: &str = "jambonz.sip_request_hook";

/// Per-call variables shared by every module running on the call.
pub mod variables {
    pub use crate::bindings::callwright::voice::variables::{entries, get, remove, set};
}

/// Sleeping and wall-clock time.
pub mod clock {
    pub use crate::bindings::callwright::voice::clock::{now_ms, sleep};
}

/// Logs `message` into the runtime's log, tagged with the call.
pub fn log(level: Level, message: &str) {
    bindings::callwright::voice::log::log(level, message);
}

/// The logic of one call.
pub trait Flow {
    /// Handles the call. When it returns, the host hangs up if the call is still up (or rejects it with
    /// 480 if it was never answered; 500 if this returned an error).
    fn handle(call: Call, config: Config) -> Result<(), String>;
}

/// The app's `flow.config` JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Config(pub serde_json::Value);

impl Config {
    /// Parses the JSON the host passes; invalid JSON becomes `null`.
    pub fn parse(text: &str) -> Config {
        Config(serde_json::from_str(text).unwrap_or(serde_json::Value::Null))
    }

    /// A string field.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    /// An unsigned number field.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.0.get(key)?.as_u64()
    }

    /// Any field.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }
}

impl Header {
    /// A header field.
    pub fn new(name: &str, value: &str) -> Header {
        Header { name: name.to_string(), value: value.to_string() }
    }
}

impl Body {
    /// A body of the given content type.
    pub fn new(content_type: &str, data: impl Into<Vec<u8>>) -> Body {
        Body { content_type: content_type.to_string(), data: data.into() }
    }
}

impl Call {
    /// Answers the call unless it is answered already: an answered call stays as it is.
    pub fn answer_if_needed(&self) -> Result<(), CallError> {
        match self.answer(&[], None) {
            Ok(()) | Err(CallError::InvalidState(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Answers a request the far end sent while nothing in particular expects one (a verb waiting, a
    /// document between steps): INFO, MESSAGE, NOTIFY and OPTIONS get 200, as a SIP server answers them;
    /// anything else gets 501. When the call's variable [`ROUTINE_REQUEST_HOOK`] holds a hook (jambonz
    /// `config`'s `sipRequestWithinDialogHook`), each request answered 200 is also queued to it: the
    /// call's jambonz fields with `sip_method`, `sip_headers` (lower-case names) and `sip_body`.
    pub fn answer_routine_request(&self, request: &IncomingRequest) {
        let routine = matches!(request.method.as_str(), "INFO" | "MESSAGE" | "NOTIFY" | "OPTIONS");
        let _ = self.respond(request.id, if routine { 200 } else { 501 }, &[], None);
        let hook = variables::get(ROUTINE_REQUEST_HOOK)
            .and_then(|text| serde_json::from_str(&text).ok())
            .and_then(|value| hooks::Hook::from_json(&value));
        if let (true, Some(hook)) = (routine, hook) {
            let mut payload = transfer::jambonz_call_fields(&self.info(), "in-progress");
            let headers: serde_json::Map<String, serde_json::Value> =
                request.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.clone().into())).collect();
            let body = request.body.as_ref().map(|b| String::from_utf8_lossy(&b.data).into_owned());
            payload.insert("sip_method".into(), request.method.clone().into());
            payload.insert("sip_headers".into(), headers.into());
            payload.insert("sip_body".into(), body.unwrap_or_default().into());
            if let Err(error) = hooks::notify_json(&hook, &serde_json::Value::Object(payload)) {
                log(Level::Warn, &format!("sipRequestWithinDialogHook {} not queued: {error:?}", hook.url));
            }
        }
    }

    /// True when the call has ended. Reads the events already queued without waiting, answering routine
    /// requests among them (see [`Call::answer_routine_request`]).
    pub fn has_ended(&self) -> bool {
        loop {
            match self.next_event(Some(0)) {
                None => return false,
                Some(CallEvent::Ended(_)) => return true,
                Some(CallEvent::Request(request)) => self.answer_routine_request(&request),
                Some(_) => {}
            }
        }
    }

    /// Waits up to `timeout_ms` for the call to end, answering routine requests meanwhile. True when it
    /// ended.
    pub fn wait_for_end(&self, timeout_ms: u64) -> bool {
        let end = clock::now_ms() + timeout_ms;
        loop {
            let now = clock::now_ms();
            if now >= end {
                return false;
            }
            match self.next_event(Some((end - now).min(u64::from(u32::MAX)) as u32)) {
                None => return false,
                Some(CallEvent::Ended(_)) => return true,
                Some(CallEvent::Request(request)) => self.answer_routine_request(&request),
                Some(_) => {}
            }
        }
    }

    /// Waits up to `timeout_ms` for an event that matters to a flow waiting on the call: the end, or a
    /// request from the far end (INFO, MESSAGE, …). `Confirmed` is skipped. `None` when the time ran out.
    pub fn next_event_until_end(&self, timeout_ms: u64) -> Option<CallEvent> {
        let deadline = clock::now_ms() + timeout_ms;
        loop {
            let left = deadline.saturating_sub(clock::now_ms());
            if left == 0 {
                return None;
            }
            match self.next_event(Some(left.min(u32::MAX as u64) as u32))? {
                CallEvent::Confirmed => continue,
                event => return Some(event),
            }
        }
    }

    /// A header field of the INVITE that started the call.
    pub fn header(&self, name: &str) -> Option<String> {
        self.info().headers.into_iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// Exports `$flow` (a type implementing [`Flow`]) as the component's call flow.
#[macro_export]
macro_rules! flow {
    ($flow:ty) => {
        #[doc(hidden)]
        pub struct __CallwrightFlowExport;

        impl $crate::bindings::flow_world::exports::callwright::voice::flow::Guest for __CallwrightFlowExport {
            fn handle(
                call: $crate::Call,
                config: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                <$flow as $crate::Flow>::handle(call, $crate::Config::parse(&config))
            }
        }

        $crate::bindings::flow_world::export_call_flow!(__CallwrightFlowExport);
    };
}

pub use bindings::verb_world::exports::callwright::voice::verbs::VerbSpec;
/// Re-exported for the `verbs!` macro and for verb arguments.
pub use serde_json;

/// A module of verbs: named operations that documents (jambonz verb arrays, SWML) run on a call.
pub trait Verbs {
    /// The verbs this module implements, each with a JSON schema of its arguments.
    fn verbs() -> Vec<VerbSpec>;
    /// Runs verb `name` with JSON `args` on `call`; returns JSON for the caller (e.g. an action hook's
    /// payload) or an error message.
    fn run(call: &Call, name: &str, args: serde_json::Value) -> Result<serde_json::Value, String>;
}

/// Exports `$verbs` (a type implementing [`Verbs`]) as the component's verbs.
///
/// ```
/// use callwright_sdk::{Call, VerbSpec, Verbs, verbs};
///
/// struct Greeting;
///
/// impl Verbs for Greeting {
///     fn verbs() -> Vec<VerbSpec> {
///         vec![VerbSpec { name: "greet".into(), schema: r#"{"type": "object"}"#.into() }]
///     }
///     fn run(call: &Call, name: &str, _args: serde_json::Value) -> Result<serde_json::Value, String> {
///         call.answer(&[], None).map_err(|e| e.to_string())?;
///         Ok(serde_json::json!({ "verb": name }))
///     }
/// }
///
/// verbs!(Greeting);
/// ```
#[macro_export]
macro_rules! verbs {
    ($verbs:ty) => {
        #[doc(hidden)]
        pub struct __CallwrightVerbsExport;

        impl $crate::bindings::verb_world::exports::callwright::voice::verbs::Guest for __CallwrightVerbsExport {
            fn list_verbs() -> ::std::vec::Vec<$crate::VerbSpec> {
                <$verbs as $crate::Verbs>::verbs()
            }

            fn run(
                call: &$crate::Call,
                name: ::std::string::String,
                args: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                let args = $crate::serde_json::from_str(&args)
                    .map_err(|e| format!("arguments of {name} are not JSON: {e}"))?;
                <$verbs as $crate::Verbs>::run(call, &name, args).map(|value| value.to_string())
            }
        }

        $crate::bindings::verb_world::export_verb!(__CallwrightVerbsExport);
    };
}
