//! `callwright-c-build`: the two steps of building a C call flow that are not the C compiler's, from the
//! same libraries as the `wit-bindgen` and `wasm-tools` command-line tools, in one small binary that builds
//! in a fraction of their time:
//!
//! - `callwright-c-build bindings <wit dir> <world> <out dir>`: the C bindings of a world (`<world>.h`,
//!   `<world>.c` and `<world>_component_type.o`), as `wit-bindgen c <wit dir> --world <world>` writes them;
//! - `callwright-c-build component <core.wasm> <out.wasm>`: a component from a core module built with
//!   `-mexec-model=reactor`, adapting its WASI preview1 imports with the reactor adapter of wasmtime 48
//!   (the host's), as `wasm-tools component new --adapt` does, and validated.

use std::path::Path;

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

const USAGE: &str = "usage: callwright-c-build bindings <wit dir> <world> <out dir>\n       \
                     callwright-c-build component <core.wasm> <out.wasm>";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bindings", wit, world, out] => bindings(Path::new(wit), world, Path::new(out)),
        ["component", core, out] => component(Path::new(core), Path::new(out)),
        ["--version"] => {
            println!("callwright-c-build {} (wit-bindgen-c 0.61.1, wit-component 0.258)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// Writes the C bindings of `world` in the WIT package at `wit` into `out`.
fn bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(wit).with_context(|| format!("reading the WIT at {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default().build().generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Turns the core module at `core` into a validated component at `out`.
fn component(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .context("the module carries no component type (link the bindings' *_component_type.o)")?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&component)
        .context("the component does not validate")?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}
