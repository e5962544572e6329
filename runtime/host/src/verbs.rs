//! Verbs: named pieces of call logic implemented by verb modules (world `verb`) and run by name on a call
//! through the `dispatch` import.
//!
//! The host knows no verb by name. A verb module says which verbs it has (`list-verbs`, asked once when
//! the module is loaded, with a JSON schema per verb); [`VerbContext::resolve`] picks the module for a
//! name (the app's pin, else a user's module before a built-in one, newest first); [`run_verb`] checks
//! the arguments against the schema and runs the verb in a fresh instance that borrows the caller's call
//! state (legs, variables, hooks, CPU and memory budgets) and gives it back when the verb returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use callwright_sip::CallHandle;
use serde_json::Value;
use tracing::{info, warn};
use wasmtime::Store;

use crate::bindings::{VerbError, VerbInfo, VerbPre};
use crate::call_state::{CallResource, CallState, Leg};
use crate::engine::HostEngine;
use crate::limits::MAX_VERB_DEPTH;
use crate::modules::{LoadedModule, ModuleSet};
use crate::schema;

/// The longest verb name a module may declare.
const MAX_NAME_LENGTH: usize = 64;
/// How long `list-verbs` may run when a module is loaded, in epoch ticks (10 ms each).
const LISTING_TICKS: u64 = 200;

/// A verb a module declares.
#[derive(Debug, Clone)]
pub struct VerbDefinition {
    /// Its name.
    pub name: String,
    /// Its argument schema, parsed.
    pub schema: Value,
    /// The schema as the module gave it.
    pub schema_text: String,
}

/// What a call's guests need to run verbs: the engine, the modules, and the app's pins.
pub(crate) struct VerbContext {
    pub(crate) engine: Arc<HostEngine>,
    /// The modules as they were when the call started.
    pub(crate) modules: Arc<ModuleSet>,
    /// Verb name → module, from the app definition.
    pub(crate) pinned: BTreeMap<String, String>,
}

impl VerbContext {
    /// The module that runs verb `name` for this app, and the verb's definition in it.
    pub(crate) fn resolve(&self, name: &str) -> Result<(Arc<LoadedModule>, VerbDefinition), VerbError> {
        if let Some(module_name) = self.pinned.get(name) {
            let module = self.modules.get(module_name).ok_or_else(|| {
                VerbError::UnknownVerb(format!(
                    "the app runs verb {name:?} with module {module_name:?}, which does not exist"
                ))
            })?;
            let verb = module.verbs.iter().find(|verb| verb.name == name).cloned().ok_or_else(|| {
                VerbError::UnknownVerb(format!(
                    "the app runs verb {name:?} with module {module_name:?}, which does not implement it"
                ))
            })?;
            return Ok((module, verb));
        }
        self.modules
            .verb_provider(name)
            .ok_or_else(|| VerbError::UnknownVerb(format!("no module provides verb {name:?}")))
    }

    /// Every verb this app can run, by name.
    pub(crate) fn available(&self) -> Vec<VerbInfo> {
        let mut names: Vec<String> = self.modules.verb_names();
        names.extend(self.pinned.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| self.resolve(&name).ok())
            .map(|(module, verb)| VerbInfo {
                name: verb.name,
                module: module.meta.name.clone(),
                schema: verb.schema_text,
            })
            .collect()
    }
}

/// Checks the verbs a module declares: names usable in documents, unique, each with a JSON schema.
pub(crate) fn check_declared(declared: Vec<(String, String)>) -> Result<Vec<VerbDefinition>, String> {
    let mut seen = HashSet::new();
    let mut verbs = Vec::with_capacity(declared.len());
    for (name, schema_text) in declared {
        if name.is_empty()
            || name.len() > MAX_NAME_LENGTH
            || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            return Err(format!(
                "verb name {name:?} must be 1-{MAX_NAME_LENGTH} characters without spaces, quotes or control characters"
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("verb {name:?} is declared twice"));
        }
        let schema: Value =
            serde_json::from_str(&schema_text).map_err(|e| format!("the schema of verb {name:?} is not JSON: {e}"))?;
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err(format!("the schema of verb {name:?} must be a JSON object (or true)"));
        }
        let unapplied = schema::unsupported_keywords(&schema);
        if !unapplied.is_empty() {
            warn!(verb = %name, keywords = ?unapplied, "the host does not apply these schema keywords");
        }
        verbs.push(VerbDefinition { name, schema, schema_text });
    }
    Ok(verbs)
}

/// Asks a verb module for its verbs, in an instance that has no call, no hooks and a short CPU budget.
/// Blocking: runs on a thread of its own, so it may be called from async code and from blocking threads.
pub(crate) fn list_verbs(engine: &Arc<HostEngine>, pre: &VerbPre<CallState>) -> Result<Vec<VerbDefinition>, String> {
    let engine = engine.clone();
    let pre = pre.clone();
    let declared = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime to list the verbs: {e}"))?;
                runtime.block_on(async {
                    let mut store = engine.store(CallState::detached(&engine.limits));
                    // Listing runs no call: past its ticks it traps instead of yielding.
                    store.epoch_deadline_trap();
                    store.set_epoch_deadline(LISTING_TICKS);
                    let instance = pre.instantiate_async(&mut store).await.map_err(|e| format!("{e:#}"))?;
                    let specs = instance
                        .callwright_voice_verbs()
                        .call_list_verbs(&mut store)
                        .await
                        .map_err(|e| format!("list-verbs failed: {e:#}"))?;
                    Ok::<_, String>(specs.into_iter().map(|spec| (spec.name, spec.schema)).collect::<Vec<_>>())
                })
            })
            .join()
            .map_err(|_| "listing the verbs panicked".to_string())?
    })?;
    check_declared(declared)
}

/// Finds verb `name` and checks `args` (JSON text) against its schema; returns the module and the
/// arguments parsed.
pub(crate) fn check_verb(
    context: &VerbContext,
    name: &str,
    args: &str,
) -> Result<(Arc<LoadedModule>, VerbDefinition), VerbError> {
    let (module, verb) = context.resolve(name)?;
    let arguments: Value = serde_json::from_str(args)
        .map_err(|error| VerbError::InvalidArguments(format!("{name}: the arguments are not JSON: {error}")))?;
    schema::validate(&verb.schema, &arguments)
        .map_err(|error| VerbError::InvalidArguments(format!("{name}: {error}")))?;
    Ok((module, verb))
}

/// Keeps the caller's legs safe while a verb holds them: if the verb's future is dropped (the call ran out
/// of time while the verb waited), every leg the verb held goes back to the caller, whose teardown then
/// ends them.
struct LegsGuard<'c> {
    store: Option<Store<CallState>>,
    caller_legs: &'c mut HashMap<CallHandle, Leg>,
}

impl Drop for LegsGuard<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store.as_mut() {
            self.caller_legs.extend(store.data_mut().calls.legs.drain());
        }
    }
}

/// Runs verb `name` on `call` for the guest whose state is `caller`.
pub(crate) async fn run_verb(
    caller: &mut CallState,
    call: CallHandle,
    name: &str,
    args: &str,
) -> wasmtime::Result<Result<String, VerbError>> {
    let Some(context) = caller.verbs.context.clone() else {
        return Ok(Err(VerbError::Failed("verbs cannot run here".into())));
    };
    if caller.verbs.depth >= MAX_VERB_DEPTH {
        return Ok(Err(VerbError::Failed(format!("verb {name:?}: verbs nest deeper than {MAX_VERB_DEPTH}"))));
    }
    let (module, verb) = match context.resolve(name) {
        Ok(found) => found,
        Err(error) => return Ok(Err(error)),
    };
    let arguments: Value = match serde_json::from_str(args) {
        Ok(arguments) => arguments,
        Err(error) => {
            return Ok(Err(VerbError::InvalidArguments(format!("{name}: the arguments are not JSON: {error}"))));
        }
    };
    if let Err(error) = schema::validate(&verb.schema, &arguments) {
        return Ok(Err(VerbError::InvalidArguments(format!("{name}: {error}"))));
    }
    let Some(pre) = module.verb.clone() else {
        return Ok(Err(VerbError::UnknownVerb(format!("module {:?} is not a verb module", module.meta.name))));
    };

    let label = format!("{}/{name}", caller.calls.label);
    let state = CallState::for_verb(caller, &label);
    let mut guard = LegsGuard { store: Some(context.engine.store(state)), caller_legs: &mut caller.calls.legs };
    let store = guard.store.as_mut().expect("set above");
    let outcome = async {
        let instance = pre.instantiate_async(&mut *store).await?;
        let resource = store.data_mut().table.push(CallResource { handle: call })?;
        instance.callwright_voice_verbs().call_run(&mut *store, resource, name, args).await
    }
    .await;

    // Give back what was lent; the calls the verb placed itself end with it.
    let store = guard.store.take().expect("taken once");
    drop(guard);
    caller.give_back(store.into_data());
    caller.calls.finish_placed(outcome.is_err()).await;

    let module_name = &module.meta.name;
    Ok(match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(message)) => {
            info!(call = %label, module = %module_name, %message, "verb failed");
            Err(VerbError::Failed(message))
        }
        Err(trap) => {
            warn!(call = %label, module = %module_name, error = %format!("{trap:#}"), "verb stopped");
            Err(VerbError::Failed(format!("verb {name:?} (module {module_name:?}) stopped: {trap:#}")))
        }
    })
}
