//! Imports the host does not provide. Components built by other languages' toolchains import WASI
//! interfaces they may never call (StarlingMonkey's JavaScript imports `wasi:http`, for one). Such an
//! import is stubbed: the module loads, and a guest that calls the stub traps with a message naming it,
//! which ends its call like any other trap. `callwright:voice` imports are never stubbed: a guest built
//! against a callwright interface the host does not have is refused at upload.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker, LinkerInstance, ResourceType};

use crate::call_state::CallState;

/// Imports under this prefix must be satisfied by the host itself.
const OWN_PACKAGE: &str = "callwright:voice/";

/// The host type behind every stubbed resource: no value of it is ever created.
struct StubbedResource;

/// Resources of interfaces the host provides that other interfaces use (`wasi:http/types` uses
/// `wasi:io/streams.{input-stream, output-stream}`, for one): a stubbed interface must name them with the
/// host's own type, as wasmtime-wasi defines them.
fn provided_resource(interface: &str, resource: &str) -> Option<ResourceType> {
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};
    Some(match (interface.split('@').next()?, resource) {
        ("wasi:io/streams", "input-stream") => ResourceType::host::<DynInputStream>(),
        ("wasi:io/streams", "output-stream") => ResourceType::host::<DynOutputStream>(),
        ("wasi:io/poll", "pollable") => ResourceType::host::<DynPollable>(),
        ("wasi:io/error", "error") => ResourceType::host::<IoError>(),
        _ => return None,
    })
}

/// For each resource the component imports from the interfaces of [`provided_resource`]: its type as the
/// component sees it, and the host's type for it.
fn provided_resources(imports: &[(String, ComponentItem)], engine: &Engine) -> Vec<(ResourceType, ResourceType)> {
    let mut resources = Vec::new();
    for (name, item) in imports {
        if let ComponentItem::ComponentInstance(instance) = item {
            for (export, export_item) in instance.exports(engine) {
                if let (ComponentItem::Resource(seen), Some(host)) = (&export_item.ty, provided_resource(name, export))
                {
                    resources.push((*seen, host));
                }
            }
        }
    }
    resources
}

/// Links `component` against `linker`, stubbing each import the linker cannot satisfy. Returns the
/// pre-instantiated component and the names of the stubbed imports (empty when the linker satisfied
/// everything), or the link error that stubbing cannot fix.
pub(crate) fn link_with_stubs(
    linker: &Linker<CallState>,
    component: &Component,
) -> Result<(InstancePre<CallState>, Vec<String>), wasmtime::Error> {
    let engine = component.engine();
    let imports: Vec<(String, ComponentItem)> =
        component.component_type().imports(engine).map(|(name, item)| (name.to_string(), item.ty)).collect();
    let provided = provided_resources(&imports, engine);
    let mut stubbed: Vec<String> = Vec::new();
    let mut stubbing: Option<Linker<CallState>> = None;
    loop {
        let error = match stubbing.as_ref().unwrap_or(linker).instantiate_pre(component) {
            Ok(pre) => return Ok((pre, stubbed)),
            Err(error) => error,
        };
        let Some((name, item)) = unsatisfied_import(&format!("{error:#}"), &imports) else {
            return Err(error);
        };
        if name.starts_with(OWN_PACKAGE) {
            return Err(unserved(name, error));
        }
        if stubbed.contains(name) {
            return Err(error);
        }
        let extended = stubbing.get_or_insert_with(|| linker.clone());
        stub(&mut extended.root(), name, item, name, &Stubbing { engine, provided: &provided })?;
        stubbed.push(name.clone());
    }
}

/// The error for a `callwright:voice` import the linker did not satisfy: one no capability unit serves,
/// or serves at another version than 0.1 (a guest built for a newer host), is named with the interfaces
/// the units do serve.
fn unserved(name: &str, error: wasmtime::Error) -> wasmtime::Error {
    let (unversioned, version) = name.split_once('@').unwrap_or((name, "0.1.0"));
    let ours = version == "0.1" || version.starts_with("0.1.");
    if ours && crate::capabilities::served_interfaces().any(|served| served == unversioned) {
        return error;
    }
    let served: Vec<&str> = crate::capabilities::served_interfaces().collect();
    wasmtime::Error::msg(format!(
        "the module imports {name}, which this host does not have (it serves {} at @0.1.0)",
        served.join(", ")
    ))
}

/// The import a link error is about: of the names the error quotes, the one it quotes first.
fn unsatisfied_import<'a>(
    message: &str,
    imports: &'a [(String, ComponentItem)],
) -> Option<&'a (String, ComponentItem)> {
    imports
        .iter()
        .filter_map(|import| message.find(&format!("`{}`", import.0)).map(|at| (at, import)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, import)| import)
}

/// What stubbing needs besides the item: the engine, and the resources the host provides.
struct Stubbing<'a> {
    engine: &'a Engine,
    provided: &'a [(ResourceType, ResourceType)],
}

/// Defines `item` as `name` in `instance`: functions that trap when called, resources no one can create
/// (or, for a resource the host provides, the host's).
fn stub(
    instance: &mut LinkerInstance<'_, CallState>,
    name: &str,
    item: &ComponentItem,
    path: &str,
    stubbing: &Stubbing<'_>,
) -> Result<(), wasmtime::Error> {
    match item {
        ComponentItem::ComponentInstance(nested) => {
            let mut nested_linker = instance.instance(name)?;
            for (export, export_item) in nested.exports(stubbing.engine) {
                stub(&mut nested_linker, export, &export_item.ty, &format!("{path}#{export}"), stubbing)?;
            }
        }
        ComponentItem::ComponentFunc(func) => {
            let message = format!("`{path}` is not available in callwright (the host stubs this import)");
            if func.async_() {
                instance.func_new_concurrent(name, move |_, _, _, _| {
                    let message = message.clone();
                    Box::pin(async move { Err(wasmtime::Error::msg(message)) })
                })?;
            } else {
                instance.func_new(name, move |_, _, _, _| Err(wasmtime::Error::msg(message.clone())))?;
            }
        }
        ComponentItem::Resource(seen) => {
            let host = stubbing.provided.iter().find(|(provided, _)| provided == seen).map(|(_, host)| *host);
            instance.resource(name, host.unwrap_or_else(ResourceType::host::<StubbedResource>), |_, _| Ok(()))?;
        }
        // Types need no definition; core modules, components and core functions are not imported by the
        // toolchains we support, and stay unsatisfied (the upload is refused with the linker's error).
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use wasmtime::component::Component;

    use super::*;
    use crate::engine::HostEngine;
    use crate::limits::SandboxLimits;

    fn link(engine: &HostEngine, text: &str) -> Result<Vec<String>, String> {
        let bytes = wat::parse_str(text).expect("component text");
        let component = Component::new(engine.engine(), &bytes).expect("component");
        link_with_stubs(&engine.linker, &component).map(|(_, stubbed)| stubbed).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn a_callwright_interface_no_unit_serves_is_refused_naming_the_served_ones_and_others_are_stubbed() {
        let engine = HostEngine::on_demand(SandboxLimits::default()).unwrap();
        let newer = r#"(component (import "callwright:voice/media@0.2.0" (instance (export "play" (func)))))"#;
        let error = link(&engine, newer).unwrap_err();
        assert!(error.contains("imports callwright:voice/media@0.2.0, which this host does not have"), "{error}");
        let unknown = r#"(component (import "callwright:voice/conference@0.1.0" (instance (export "join" (func)))))"#;
        let error = link(&engine, unknown).unwrap_err();
        assert!(error.contains("imports callwright:voice/conference@0.1.0, which this host does not have"), "{error}");
        for served in ["callwright:voice/call", "callwright:voice/hooks", "callwright:voice/dispatch"] {
            assert!(error.contains(served), "{served} missing from: {error}");
        }
        let foreign = r#"(component (import "example:other/thing@1.0.0" (instance (export "go" (func)))))"#;
        assert_eq!(link(&engine, foreign).unwrap(), ["example:other/thing@1.0.0"]);
    }
}
