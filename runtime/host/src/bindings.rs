#![allow(missing_docs)] // generated code
//! The one place that generates Rust bindings for the `callwright:voice` WIT package.
//!
//! Imports are async on the host (a guest's blocking call suspends its instance while the host awaits
//! SIP) and trappable (a host failure stops the guest instead of surfacing as a value).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "call-flow",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "callwright:voice/call.call": crate::call_state::CallResource,
        "callwright:voice/call.refer": crate::call_state::ReferResource,
    },
});

pub use callwright::voice::call::{
    CallEvent, CallInfo, DialError, DialRequest, EndReason as WitEndReason, InboundRefer, IncomingRequest, ReferEvent,
    ReferOutcome, ReferRequest, SipResponse,
};
pub use callwright::voice::hooks::{Hook, HookError, HookResponse};
pub use callwright::voice::types::{Body, CallError, Credentials, Direction, Header};

/// Export names that tell which world a component targets.
pub mod export_names {
    /// The interface a call flow exports.
    pub const FLOW: &str = "callwright:voice/flow@0.1.0";
    /// The interface a verb module exports.
    pub const VERBS: &str = "callwright:voice/verbs@0.1.0";
}
