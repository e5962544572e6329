//! The host's capabilities: what a guest can do, one unit per file, every unit of the same shape.
//!
//! A unit ([`Capability`]) names the `callwright:voice` interfaces it serves, links their bindings into
//! the engine's linker once ([`link_all`]), builds its part of a guest's state from the call's
//! [`CallSetup`] (its field of [`CallState`]), lends that part to a verb the guest runs and takes it back.
//! Its glue, the generated `Host` traits, sees its own state only (call control also sees the resource
//! table); each glue method looks the resource up and calls the unit's logic.
//!
//! | unit | file | serves | state |
//! |---|---|---|---|
//! | call control | `call_control.rs` | `call` (the `call` resource, `wait`), `types` | [`Calls`]: the guest's SIP calls |
//! | outbound calls | `outbound.rs` | `call.dial`, `call.start-dial` | the calls it places join [`Calls`] |
//! | transfer | `transfer.rs` | `call.sip-refer`, `call.accept-refer`, the `refer` resource | REFERs of [`Calls`] |
//! | hooks | `hooks.rs` | `hooks` | the app's hooks and their queue |
//! | variables | `variables.rs` | `variables` | the call's variables, shared |
//! | verb dispatch | `dispatch.rs` | `dispatch` | the modules verbs resolve in, the nesting depth |
//! | log and clock | `log_clock.rs` | `log`, `clock` | the call's name in logs |
//! | media | `media.rs` | `media` (the `playback` resource, `media.wait`) | where prompts come from; the calls' media is in [`Calls`] |
//!
//! The `call` interface holds three units (WIT `@0.1.0` is kept as guests were built against it): call
//! control links it, and its glue hands dialling to `outbound.rs` and REFERs to `transfer.rs`, which work
//! on the same calls. A new capability is one more file here: a unit, its state as one more field of
//! [`CallState`] (built in `CallState::new`, lent in `for_verb`), and its line in [`UNITS`].

pub(crate) mod call_control;
pub(crate) mod dispatch;
pub(crate) mod hooks;
pub(crate) mod log_clock;
pub(crate) mod media;
pub(crate) mod outbound;
pub(crate) mod transfer;
pub(crate) mod variables;

use std::sync::Arc;

use callwright_driver::SipHandle;
use wasmtime::component::Linker;

pub(crate) use call_control::Calls;

use crate::apps::HookSettings;
use crate::call_state::{CallState, Registrar};
use crate::limits::SandboxLimits;
use crate::media_store::MediaStore;
use crate::verbs::VerbContext;

/// What a call's guest is given, from which every unit builds its state.
pub(crate) struct CallSetup<'a> {
    pub(crate) limits: &'a SandboxLimits,
    pub(crate) sip: SipHandle,
    /// Names the call in logs.
    pub(crate) label: String,
    /// The app the call runs (what is shared by name, such as conferences, is shared within it).
    pub(crate) app: String,
    /// Registers the outbound calls the guest places with the router.
    pub(crate) registrar: Registrar,
    pub(crate) hook_client: reqwest::Client,
    /// The app's hooks.
    pub(crate) hooks: HookSettings,
    /// The app's codecs, in order of preference.
    pub(crate) codecs: Vec<callwright_media::Codec>,
    /// Where the app's finished recordings are posted.
    pub(crate) recording_hook: Option<String>,
    /// How the guest runs verbs; none where verbs cannot run (listing a module's verbs).
    pub(crate) verbs: Option<Arc<VerbContext>>,
    /// Uploaded media, speech and the prompt cache; none where nothing plays (listing a module's verbs).
    pub(crate) media: Option<Arc<MediaStore>>,
}

/// One capability of the host.
pub(crate) trait Capability {
    /// The `callwright:voice` interfaces it serves, without the package version.
    const INTERFACES: &'static [&'static str];
    /// Its part of a guest's state.
    type State: Send;

    /// Adds the bindings of its interfaces to the engine's linker (once per engine).
    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()>;

    /// Its state for a call's flow.
    fn state(setup: &CallSetup<'_>) -> Self::State;

    /// Its state for a verb the guest holding `caller` runs (`label` names the verb in logs): shared with
    /// the caller, lent, or new.
    fn lend(caller: &mut Self::State, label: &str) -> Self::State;

    /// Takes back what [`Capability::lend`] lent once the verb returned.
    fn give_back(caller: &mut Self::State, verb: Self::State) {
        let _ = (caller, verb);
    }
}

/// Links a unit's interfaces into the engine's linker.
type Link = fn(&mut Linker<CallState>) -> wasmtime::Result<()>;

/// Every unit: the interfaces it serves and how it links them. The one list to add a unit to (its state
/// goes into [`CallState`]).
const UNITS: [(&[&str], Link); 6] = [
    (call_control::CallControl::INTERFACES, call_control::CallControl::link),
    (hooks::Hooks::INTERFACES, hooks::Hooks::link),
    (variables::CallVariables::INTERFACES, variables::CallVariables::link),
    (dispatch::Dispatch::INTERFACES, dispatch::Dispatch::link),
    (log_clock::LogClock::INTERFACES, log_clock::LogClock::link),
    (media::Media::INTERFACES, media::Media::link),
];

/// Links every unit's interfaces.
pub(crate) fn link_all(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    UNITS.iter().try_for_each(|(_, link)| link(linker))
}

/// Every `callwright:voice` interface the units serve (without the package version).
pub(crate) fn served_interfaces() -> impl Iterator<Item = &'static str> {
    UNITS.iter().flat_map(|(interfaces, _)| interfaces.iter().copied())
}
