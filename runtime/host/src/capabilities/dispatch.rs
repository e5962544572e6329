//! Verb dispatch: running verbs by name (`dispatch.run`), checking arguments (`dispatch.check`) and
//! listing what can run (`dispatch.available`). The resolution, the schemas and the nested instance are
//! `crate::verbs`.

use std::sync::Arc;

use wasmtime::Result;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::{CallSetup, Capability};
use crate::bindings::callwright::voice::dispatch;
use crate::bindings::{VerbError, VerbInfo};
use crate::call_state::{CallResource, CallState};
use crate::verbs::VerbContext;

/// The verb-dispatch unit.
pub(crate) struct Dispatch;

/// Its state: where verbs resolve, and how deep this guest runs inside verbs.
pub(crate) struct VerbDispatch {
    /// None where verbs cannot run (listing a module's verbs).
    pub(crate) context: Option<Arc<VerbContext>>,
    /// How many verbs this guest runs inside (0 for a call's flow).
    pub(crate) depth: u32,
}

impl Capability for Dispatch {
    const INTERFACES: &'static [&'static str] = &["callwright:voice/dispatch"];
    type State = VerbDispatch;

    /// Linked over the whole state: a verb borrows every unit's part of its caller's (see
    /// [`crate::verbs::run_verb`]).
    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        dispatch::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
    }

    fn state(setup: &CallSetup<'_>) -> VerbDispatch {
        VerbDispatch { context: setup.verbs.clone(), depth: 0 }
    }

    fn lend(caller: &mut VerbDispatch, _label: &str) -> VerbDispatch {
        VerbDispatch { context: caller.context.clone(), depth: caller.depth + 1 }
    }
}

impl dispatch::Host for CallState {
    async fn run(
        &mut self,
        call: Resource<CallResource>,
        name: String,
        args: String,
    ) -> Result<Result<String, VerbError>> {
        let handle = self.table.get(&call)?.handle;
        // Boxed: a verb may run verbs, so this future contains itself.
        Box::pin(crate::verbs::run_verb(self, handle, &name, &args)).await
    }

    async fn check(&mut self, name: String, args: String) -> Result<Result<(), VerbError>> {
        Ok(match &self.verbs.context {
            Some(context) => crate::verbs::check_verb(context, &name, &args).map(|_| ()),
            None => Err(VerbError::Failed("verbs cannot run here".into())),
        })
    }

    async fn available(&mut self) -> Result<Vec<VerbInfo>> {
        Ok(self.verbs.context.as_ref().map(|context| context.available()).unwrap_or_default())
    }
}
