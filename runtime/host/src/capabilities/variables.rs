//! Variables: name/value pairs of the call, shared by every module that runs on it (its flow and its
//! verbs), counted against the host buffer limit; a guest that would go past it is stopped (the WIT
//! call has no error, as when it outgrows its memory).

use std::sync::{Arc, Mutex};

use wasmtime::Result;
use wasmtime::component::{HasSelf, Linker};

use super::{CallSetup, Capability};
use crate::bindings::callwright::voice::variables;
use crate::call_state::{CallState, VariableStore, Variables};

/// The variables unit.
pub(crate) struct CallVariables;

/// Its state: the call's variables and the bytes they may take.
pub(crate) struct VariableAccess {
    pub(crate) shared: Variables,
    /// Bytes the call's variables may take ([`crate::limits::SandboxLimits::host_buffer_per_call`]).
    limit: usize,
}

impl Capability for CallVariables {
    const INTERFACES: &'static [&'static str] = &["callwright:voice/variables"];
    type State = VariableAccess;

    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        variables::add_to_linker::<CallState, HasSelf<VariableAccess>>(linker, |state| &mut state.variables)
    }

    fn state(setup: &CallSetup<'_>) -> VariableAccess {
        VariableAccess {
            shared: Arc::new(Mutex::new(VariableStore::default())),
            limit: setup.limits.host_buffer_per_call,
        }
    }

    /// The same variables: a verb sees what the flow set, and the flow what the verb set.
    fn lend(caller: &mut VariableAccess, _label: &str) -> VariableAccess {
        VariableAccess { shared: caller.shared.clone(), limit: caller.limit }
    }
}

impl VariableAccess {
    fn store(&self) -> Result<std::sync::MutexGuard<'_, VariableStore>> {
        self.shared.lock().map_err(|_| wasmtime::Error::msg("call variables lock poisoned"))
    }
}

impl variables::Host for VariableAccess {
    async fn get(&mut self, name: String) -> Result<Option<String>> {
        Ok(self.store()?.get(&name).cloned())
    }

    async fn set(&mut self, name: String, value: String) -> Result<()> {
        let limit = self.limit;
        self.store()?.set(name, value, limit).map_err(wasmtime::Error::msg)
    }

    async fn remove(&mut self, name: String) -> Result<()> {
        self.store()?.remove(&name);
        Ok(())
    }

    async fn entries(&mut self) -> Result<Vec<(String, String)>> {
        Ok(self.store()?.entries().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
