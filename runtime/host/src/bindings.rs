#![allow(missing_docs)] // generated code
//! The one place that generates Rust bindings for the `callwright:voice` WIT package.
//!
//! Imports are async on the host (a guest's blocking call suspends its instance while the host awaits
//! SIP) and trappable (a host failure stops the guest instead of surfacing as a value). The imports are
//! generated once, with world `call-flow`; world `verb` reuses them and adds only its export.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "call-flow",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "callwright:voice/call.call": crate::call_state::CallResource,
        "callwright:voice/call.refer": crate::call_state::ReferResource,
        "callwright:voice/media.playback": crate::capabilities::media::PlaybackResource,
        "callwright:voice/media.recording": crate::capabilities::media::RecordingResource,
    },
});

/// World `verb`: the `verbs` export of verb modules.
pub mod verb_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "verb",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "callwright:voice/types": super::callwright::voice::types,
            "callwright:voice/call": super::callwright::voice::call,
            "callwright:voice/variables": super::callwright::voice::variables,
            "callwright:voice/log": super::callwright::voice::log,
            "callwright:voice/clock": super::callwright::voice::clock,
            "callwright:voice/hooks": super::callwright::voice::hooks,
            "callwright:voice/dispatch": super::callwright::voice::dispatch,
            "callwright:voice/media": super::callwright::voice::media,
        },
    });
}

pub use callwright::voice::call::{
    CallEvent, CallInfo, CallUpdate, DialError, DialRequest, EndReason as WitEndReason, InboundRefer, IncomingRequest,
    ReferEvent, ReferOutcome, ReferRequest, SipResponse,
};
pub use callwright::voice::dispatch::{VerbError, VerbInfo};
pub use callwright::voice::hooks::{BodyEncoding, Hook, HookError, HookResponse};
pub use callwright::voice::types::{Body, CallError, Credentials, Direction, Header};
pub use verb_world::VerbPre;

/// Export names that tell which world a component targets.
pub mod export_names {
    /// The interface a call flow exports.
    pub const FLOW: &str = "callwright:voice/flow@0.1.0";
    /// The interface a verb module exports.
    pub const VERBS: &str = "callwright:voice/verbs@0.1.0";
}
