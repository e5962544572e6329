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

/// The generated bindings, for anything the helpers here do not cover.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "call-flow",
        pub_export_macro: true,
        export_macro_name: "export_call_flow",
        default_bindings_module: "callwright_sdk::bindings",
        generate_all,
    });
}

pub use bindings::callwright::voice::call::{Call, CallEvent, CallInfo, EndReason, IncomingRequest, SipResponse};
pub use bindings::callwright::voice::log::Level;
pub use bindings::callwright::voice::types::{Body, CallError, Direction, Header};

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

        impl $crate::bindings::exports::callwright::voice::flow::Guest for __CallwrightFlowExport {
            fn handle(
                call: $crate::Call,
                config: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                <$flow as $crate::Flow>::handle(call, $crate::Config::parse(&config))
            }
        }

        $crate::bindings::export_call_flow!(__CallwrightFlowExport);
    };
}
