//! Hooks: the app's webhooks, called by the guest (`hooks.send` waits for the answer, `hooks.notify`
//! queues a status callback). The requests themselves, the allow list and the signatures are
//! `crate::hooks`.

use wasmtime::Result;
use wasmtime::component::{HasSelf, Linker};

use super::{CallSetup, Capability};
use crate::bindings::callwright::voice::hooks;
use crate::bindings::{Hook, HookError, HookResponse};
use crate::call_state::CallState;
use crate::hooks::CallHooks;

/// The hooks unit.
pub(crate) struct Hooks;

impl Capability for Hooks {
    const INTERFACES: &'static [&'static str] = &["callwright:voice/hooks"];
    type State = CallHooks;

    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        hooks::add_to_linker::<CallState, HasSelf<CallHooks>>(linker, |state| &mut state.hooks)
    }

    fn state(setup: &CallSetup<'_>) -> CallHooks {
        CallHooks::new(
            setup.hook_client.clone(),
            setup.hooks.clone(),
            setup.label.clone(),
            setup.limits.hook_payload_size,
        )
    }

    /// The same hooks, with the queue of status callbacks moved along so the verb's stay in order.
    fn lend(caller: &mut CallHooks, label: &str) -> CallHooks {
        caller.lend(label.to_string())
    }

    fn give_back(caller: &mut CallHooks, verb: CallHooks) {
        caller.give_back(verb);
    }
}

impl hooks::Host for CallHooks {
    async fn send(&mut self, hook: Hook, payload: String) -> Result<Result<HookResponse, HookError>> {
        Ok(CallHooks::send(self, hook, payload).await)
    }

    async fn notify(&mut self, hook: Hook, payload: String) -> Result<Result<(), HookError>> {
        Ok(CallHooks::notify(self, hook, payload))
    }
}
