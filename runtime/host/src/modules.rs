//! The module store: uploaded components and their compiled artifacts on disk, loaded modules in memory.
//!
//! Layout under the data directory:
//! `modules/<name>/component.wasm` (as uploaded), `modules/<name>/meta.json`, and
//! `modules/<name>/<engine key>.cwasm` (the compiled artifact, rebuilt when the engine changes). Every
//! file is written to a temporary name and renamed, so a crash never leaves a half-written module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use wasmtime::component::Component;

use crate::bindings::{CallFlowPre, VerbPre, export_names};
use crate::call_state::CallState;
use crate::engine::HostEngine;
use crate::imports::link_with_stubs;
use crate::names::{BadName, StoreName, is_valid};
use crate::verbs::{VerbDefinition, list_verbs};

/// Which callwright world a module targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleWorld {
    /// Exports `callwright:voice/flow`: handles calls.
    CallFlow,
    /// Exports `callwright:voice/verbs`: implements verbs.
    Verb,
}

/// What the store records about a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleMeta {
    /// The module's name.
    pub name: String,
    /// Its world.
    pub world: ModuleWorld,
    /// Its exported interfaces.
    pub exports: Vec<String>,
    /// Its imported interfaces.
    pub imports: Vec<String>,
    /// Size of the component in bytes.
    pub size: usize,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// When it was uploaded (seconds since the UNIX epoch).
    pub uploaded_at: u64,
    /// Shipped with the runtime (name `builtin-*`): installed at start, not replaceable by upload.
    #[serde(default)]
    pub builtin: bool,
    /// The verbs a verb module implements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    /// Imports the host does not provide, stubbed so the module loads: calling one traps (see
    /// the `imports` module).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stubbed_imports: Vec<String>,
    /// How long compiling the upload took, in milliseconds (0 when it reused the compiled form of the
    /// same bytes uploaded before).
    #[serde(default)]
    pub compile_ms: u64,
}

/// The name prefix of the modules shipped with the runtime.
pub const BUILTIN_PREFIX: &str = "builtin-";

/// A module ready to instantiate.
pub struct LoadedModule {
    /// Its record.
    pub meta: ModuleMeta,
    pub(crate) flow: Option<CallFlowPre<CallState>>,
    pub(crate) verb: Option<VerbPre<CallState>>,
    /// The verbs of a verb module, with their schemas.
    pub verbs: Vec<VerbDefinition>,
    /// The compiled component, reused when the same bytes are uploaded again.
    component: Component,
}

/// What linking a component gives: the pre-instantiated form of its world, and its verbs.
struct Prepared {
    flow: Option<CallFlowPre<CallState>>,
    verb: Option<VerbPre<CallState>>,
    verbs: Vec<VerbDefinition>,
    stubbed_imports: Vec<String>,
}

/// Why an upload was refused; every variant names the problem for the 400 answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum UploadError {
    /// The module name is not `[a-z0-9][a-z0-9_-]{0,62}`.
    BadName(BadName),
    /// Larger than the configured limit.
    TooLarge {
        /// Bytes uploaded.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a wasm component (e.g. a core module, or not wasm at all).
    NotAComponent(String),
    /// A component that exports neither `callwright:voice/flow` nor `callwright:voice/verbs`.
    NoCallwrightWorld {
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// It imports something the host does not provide.
    UnsatisfiedImports(String),
    /// A verb module whose `list-verbs` failed or declared verbs badly.
    BadVerbs(String),
    /// The name is reserved for the modules shipped with the runtime.
    Reserved(String),
    /// Storing it failed (disk).
    Storage(std::io::Error),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::BadName(bad) => bad.fmt(f),
            UploadError::TooLarge { size, limit } => write!(f, "module is {size} bytes; the limit is {limit}"),
            UploadError::NotAComponent(why) => write!(f, "not a WebAssembly component: {why}"),
            UploadError::NoCallwrightWorld { exports } => write!(
                f,
                "the component targets no callwright world: it must export {} (world call-flow) or {} (world verb); it exports [{}]",
                export_names::FLOW,
                export_names::VERBS,
                exports.join(", ")
            ),
            UploadError::UnsatisfiedImports(why) => {
                write!(f, "the component imports what the host does not provide: {why}")
            }
            UploadError::BadVerbs(why) => write!(f, "the verb module's verbs cannot be used: {why}"),
            UploadError::Reserved(name) => write!(
                f,
                "module name {name:?} is reserved for the built-in modules ({BUILTIN_PREFIX}*); to replace a built-in verb, upload a module implementing it under another name"
            ),
            UploadError::Storage(error) => write!(f, "storing the module failed: {error}"),
        }
    }
}

impl std::error::Error for UploadError {}

/// Uploaded modules, on disk and loaded.
pub struct ModuleStore {
    engine: Arc<HostEngine>,
    dir: PathBuf,
    /// Replaced whole on every change, so a call can keep the set it started with (see [`ModuleSet`]).
    loaded: RwLock<Arc<ModuleSet>>,
    /// Held while compiling: one compile at a time, since one already uses every core (Cranelift
    /// compiles functions in parallel) and a large component's compile takes a lot of memory.
    compiling: Mutex<()>,
    /// Held while a module's files are written or removed, and the loaded set changed to match.
    writing: Mutex<()>,
}

/// The loaded modules at one moment. A call takes one when it starts and resolves its verbs in it, so a
/// module uploaded or replaced during the call affects only calls that start afterwards.
#[derive(Default)]
pub struct ModuleSet(HashMap<String, Arc<LoadedModule>>);

impl ModuleSet {
    /// A module by name.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModule>> {
        self.0.get(name).cloned()
    }

    /// The module that runs verb `name` when the app pins none: a user's module before a built-in one,
    /// the newest upload first (then by name, so the choice is stable).
    pub fn verb_provider(&self, name: &str) -> Option<(Arc<LoadedModule>, VerbDefinition)> {
        let rank = |module: &LoadedModule| {
            (!module.meta.builtin, module.meta.uploaded_at, std::cmp::Reverse(module.meta.name.clone()))
        };
        self.0
            .values()
            .filter_map(|module| module.verbs.iter().find(|verb| verb.name == name).map(|verb| (module, verb)))
            .max_by_key(|(module, _)| rank(module))
            .map(|(module, verb)| (module.clone(), verb.clone()))
    }

    /// The name of every verb some module provides, sorted.
    pub fn verb_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.values().flat_map(|m| m.verbs.iter().map(|v| v.name.clone())).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        // Make the rename itself durable.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// The SHA-256 of `bytes`, hex.
fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl ModuleStore {
    /// Opens (creating if needed) the store under `data_dir` and loads every module in it.
    pub fn open(engine: Arc<HostEngine>, data_dir: &Path) -> anyhow::Result<ModuleStore> {
        let dir = data_dir.join("modules");
        std::fs::create_dir_all(&dir)?;
        recover_interrupted_writes(&dir)?;
        let store = ModuleStore {
            engine,
            dir,
            loaded: RwLock::new(Arc::default()),
            compiling: Mutex::new(()),
            writing: Mutex::new(()),
        };
        for entry in std::fs::read_dir(&store.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(name) = StoreName::parse("module", &name) else { continue };
            if !store.module_dir(&name).join("meta.json").exists() {
                continue;
            }
            match store.load(&name) {
                Ok(module) => {
                    store.change(|modules| modules.insert(name.to_string(), Arc::new(module)));
                }
                Err(error) => warn!(module = %name, %error, "cannot load stored module; skipping it"),
            }
        }
        Ok(store)
    }

    /// The only way from a name to a path: the name was checked, so the path stays in the store.
    fn module_dir(&self, name: &StoreName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// Loads a stored module, reusing its compiled artifact when the engine still matches.
    fn load(&self, name: &StoreName) -> anyhow::Result<LoadedModule> {
        let dir = self.module_dir(name);
        let meta: ModuleMeta = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
        let artifact = dir.join(format!("{}.cwasm", self.engine.artifact_key()));
        let component = if artifact.exists() {
            // SAFETY: the artifact was produced by `Component::serialize` of this process's engine
            // configuration (its name carries the engine's compatibility hash) and written atomically to
            // our own data directory; wasmtime also checks the header before using it.
            #[allow(unsafe_code)]
            unsafe {
                Component::deserialize_file(&self.engine.engine, &artifact)?
            }
        } else {
            let bytes = std::fs::read(dir.join("component.wasm"))?;
            let component = Component::new(&self.engine.engine, &bytes)?;
            write_atomically(&artifact, &component.serialize()?)?;
            component
        };
        let Prepared { flow, verb, verbs, .. } =
            self.prepare(&component, meta.world).map_err(|e| anyhow::anyhow!(e.to_string()))?;
        info!(module = %name, world = ?meta.world, "module loaded");
        Ok(LoadedModule { meta, flow, verb, verbs, component })
    }

    /// Links the component against the host (imports outside `callwright:voice` that the host lacks are
    /// stubbed, whatever the world) and keeps the pre-instantiated form calls start from; a verb module
    /// is asked for its verbs.
    fn prepare(&self, component: &Component, world: ModuleWorld) -> Result<Prepared, UploadError> {
        let (pre, stubbed_imports) = link_with_stubs(&self.engine.linker, component)
            .map_err(|e| UploadError::UnsatisfiedImports(format!("{e:#}")))?;
        let invalid = |e: wasmtime::Error| UploadError::NotAComponent(format!("{e:#}"));
        Ok(match world {
            ModuleWorld::CallFlow => Prepared {
                flow: Some(CallFlowPre::new(pre).map_err(invalid)?),
                verb: None,
                verbs: vec![],
                stubbed_imports,
            },
            ModuleWorld::Verb => {
                let verb = VerbPre::new(pre).map_err(invalid)?;
                let verbs = list_verbs(&self.engine, &verb).map_err(UploadError::BadVerbs)?;
                Prepared { flow: None, verb: Some(verb), verbs, stubbed_imports }
            }
        })
    }

    /// Validates, compiles and stores an uploaded component; replaces a module of the same name (calls
    /// already running keep their old instance). Blocks for the compile: call it off the async threads.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<ModuleMeta, UploadError> {
        if name.starts_with(BUILTIN_PREFIX) {
            return Err(UploadError::Reserved(name.to_string()));
        }
        self.store(name, bytes, sha256_hex(bytes), false)
    }

    /// Installs a module shipped with the runtime (named `builtin-*`), unless the same bytes are
    /// installed already. Blocking, like [`ModuleStore::put`].
    pub fn install_builtin(&self, name: &str, bytes: &[u8]) -> Result<ModuleMeta, UploadError> {
        assert!(name.starts_with(BUILTIN_PREFIX), "built-in module names start with {BUILTIN_PREFIX}");
        let sha256 = sha256_hex(bytes);
        if let Some(installed) = self.get(name).filter(|m| m.meta.sha256 == sha256 && m.meta.builtin) {
            return Ok(installed.meta.clone());
        }
        self.store(name, bytes, sha256, true)
    }

    /// Stores `bytes` (whose SHA-256 is `sha256`) as module `name`.
    fn store(&self, name: &str, bytes: &[u8], sha256: String, builtin: bool) -> Result<ModuleMeta, UploadError> {
        let name = &StoreName::parse("module", name).map_err(UploadError::BadName)?;
        let limit = self.engine.limits.max_module_size;
        if bytes.len() > limit {
            return Err(UploadError::TooLarge { size: bytes.len(), limit });
        }
        if is_core_module(bytes) {
            return Err(UploadError::NotAComponent(
                "this is a core wasm module; build a component (e.g. the wasm32-wasip2 target, or `wasm-tools component new`)".into(),
            ));
        }
        let (component, compile_ms) = match self.compiled(&sha256) {
            Some(component) => (component, 0),
            None => {
                let _one_at_a_time = self.compiling.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let started = std::time::Instant::now();
                let component = Component::new(&self.engine.engine, bytes)
                    .map_err(|e| UploadError::NotAComponent(format!("{e:#}")))?;
                (component, (started.elapsed().as_millis() as u64).max(1))
            }
        };
        let ty = component.component_type();
        let engine = &self.engine.engine;
        let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
        let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
        let world = if exports.iter().any(|e| e == export_names::FLOW) {
            ModuleWorld::CallFlow
        } else if exports.iter().any(|e| e == export_names::VERBS) {
            ModuleWorld::Verb
        } else {
            return Err(UploadError::NoCallwrightWorld { exports });
        };
        let Prepared { flow, verb, verbs, stubbed_imports } = self.prepare(&component, world)?;
        if !stubbed_imports.is_empty() {
            warn!(module = %name, stubbed = ?stubbed_imports, "imports the host does not provide are stubbed: calling one traps");
        }
        let meta = ModuleMeta {
            name: name.to_string(),
            world,
            exports,
            imports,
            size: bytes.len(),
            sha256,
            uploaded_at: now_secs(),
            builtin,
            verbs: verbs.iter().map(|verb| verb.name.clone()).collect(),
            stubbed_imports,
            compile_ms,
        };
        let serialized = component.serialize().map_err(|e| UploadError::NotAComponent(format!("{e:#}")))?;
        let module = Arc::new(LoadedModule { meta: meta.clone(), flow, verb, verbs, component });
        {
            // One writer at a time, disk and memory together: two uploads of one name would move each
            // other's directories away, or leave memory holding the one the disk does not.
            let _one_writer = self.writing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.write(name, bytes, &serialized, &meta).map_err(UploadError::Storage)?;
            self.change(|modules| modules.insert(name.to_string(), module));
        }
        info!(module = %name, world = ?world, size = bytes.len(), compile_ms, "module stored");
        Ok(meta)
    }

    /// The compiled form of a loaded module with these bytes (by SHA-256), if any: uploading the same
    /// component again, under any name, skips the compile.
    fn compiled(&self, sha256: &str) -> Option<Component> {
        self.snapshot().0.values().find(|module| module.meta.sha256 == sha256).map(|module| module.component.clone())
    }

    /// Writes a module's files: component and artifact first, the record last, into a fresh directory
    /// that replaces the old one by rename. A crash at any point leaves either the old module or the new
    /// one (see [`recover_interrupted_writes`]).
    fn write(&self, name: &StoreName, component: &[u8], artifact: &[u8], meta: &ModuleMeta) -> std::io::Result<()> {
        let staging = self.dir.join(format!("{STAGING_PREFIX}{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        write_atomically(&staging.join("component.wasm"), component)?;
        write_atomically(&staging.join(format!("{}.cwasm", self.engine.artifact_key())), artifact)?;
        let meta_json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
        write_atomically(&staging.join("meta.json"), &meta_json)?;
        let target = self.module_dir(name);
        let old = self.dir.join(format!("{OLD_PREFIX}{name}-{}", std::process::id()));
        if target.exists() {
            std::fs::rename(&target, &old)?;
        }
        std::fs::rename(&staging, &target)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Applies `edit` to a copy of the loaded set and makes the copy current.
    fn change<T>(&self, edit: impl FnOnce(&mut HashMap<String, Arc<LoadedModule>>) -> T) -> T {
        let mut loaded = self.loaded.write().expect("module lock");
        let mut modules = loaded.0.clone();
        let result = edit(&mut modules);
        *loaded = Arc::new(ModuleSet(modules));
        result
    }

    /// The loaded modules as they are now.
    pub fn snapshot(&self) -> Arc<ModuleSet> {
        self.loaded.read().expect("module lock").clone()
    }

    /// A loaded module.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModule>> {
        self.snapshot().get(name)
    }

    /// Every module's record, sorted by name.
    pub fn list(&self) -> Vec<ModuleMeta> {
        let mut all: Vec<ModuleMeta> = self.snapshot().0.values().map(|m| m.meta.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Removes a module. Returns false when there was none. Live calls keep running on their instance.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let name = StoreName::parse("module", name)?;
        let _one_writer = self.writing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let removed = self.change(|modules| modules.remove(name.as_str())).is_some();
        let dir = self.module_dir(&name);
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(removed)
    }
}

/// Why a store could not remove or change something: a name that is not a name, or the disk.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The name breaks [`crate::names::NAME_RULE`]; nothing was touched.
    BadName(BadName),
    /// Disk.
    Storage(std::io::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::BadName(bad) => bad.fmt(f),
            StoreError::Storage(error) => write!(f, "the data directory: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<BadName> for StoreError {
    fn from(bad: BadName) -> StoreError {
        StoreError::BadName(bad)
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> StoreError {
        StoreError::Storage(error)
    }
}

/// A module being written (`.staging-<name>-<pid>`): complete only once renamed to `<name>`.
const STAGING_PREFIX: &str = ".staging-";
/// A module being replaced (`.old-<name>-<pid>`): the previous version, moved aside for the rename.
const OLD_PREFIX: &str = ".old-";

/// Undoes what a crash in the middle of [`ModuleStore::write`] left in `dir`: a module moved aside whose
/// replacement never took its place is put back; unfinished new versions and replaced old ones are
/// removed. An upload that was not answered may be lost, a stored module never is.
fn recover_interrupted_writes(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(rest) = file_name.strip_prefix(OLD_PREFIX) {
            // `<name>-<pid>`: names may contain '-', the pid is what follows the last one.
            let name = rest.rsplit_once('-').map_or(rest, |(name, _)| name);
            let current = dir.join(name);
            if is_valid(name) && !current.exists() {
                warn!(module = %name, "restoring the module an interrupted upload had moved aside");
                std::fs::rename(&path, &current)?;
                continue;
            }
            std::fs::remove_dir_all(&path)?;
        } else if file_name.starts_with(STAGING_PREFIX) {
            warn!(path = %path.display(), "removing an upload interrupted before it was stored");
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

/// A core module starts with `\0asm` version 1; a component with `\0asm` and layer 1 (bytes 6-7 = 1).
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_dir(dir: &Path, name: &str, marker: &str) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("meta.json"), marker).unwrap();
    }

    fn marker(dir: &Path, name: &str) -> Option<String> {
        std::fs::read_to_string(dir.join(name).join("meta.json")).ok()
    }

    #[test]
    fn a_crash_mid_write_leaves_the_old_module_or_the_new_one() {
        let dir = std::env::temp_dir().join(format!("callwright-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Crashed after moving "a-b" aside, before its new version took its place.
        module_dir(&dir, ".old-a-b-41", "a-b v1");
        module_dir(&dir, ".staging-a-b-41", "a-b v2, complete but not renamed");
        // Crashed after the rename, before removing the old version.
        module_dir(&dir, "c", "c v2");
        module_dir(&dir, ".old-c-42", "c v1");
        // Crashed while writing a new module.
        module_dir(&dir, ".staging-d-43", "d, half written");
        module_dir(&dir, "e", "e v1");

        recover_interrupted_writes(&dir).unwrap();

        assert_eq!(marker(&dir, "a-b").as_deref(), Some("a-b v1"));
        assert_eq!(marker(&dir, "c").as_deref(), Some("c v2"));
        assert_eq!(marker(&dir, "d"), None);
        assert_eq!(marker(&dir, "e").as_deref(), Some("e v1"));
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["a-b", "c", "e"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
