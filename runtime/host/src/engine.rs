//! The wasmtime engine and linker, configured once per process for running one instance per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};
use wasmtime::component::Linker;
use wasmtime::{CallHook, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

use crate::call_state::CallState;
use crate::limits::{EPOCH_TICK, INSTANCES_PER_CALL, SandboxLimits};

/// Guard pages after each linear memory. Memories are bounds-checked (their reservation is only the
/// memory limit, so that tens of thousands fit in the address space), so the guard only catches
/// offsets a check lets through.
const MEMORY_GUARD_BYTES: u64 = 2 << 20;
/// Bytes of each pooled linear memory (and table) reset with `memset` instead of being returned to the
/// kernel when an instance ends: a new call reusing the slot then takes no page faults there. With
/// `pagemap_scan` (Linux 6.7+) only the pages the guest touched are reset.
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;
/// Decommits of ended instances batched into one system call (fewer TLB shootdowns under load).
const DECOMMIT_BATCH: usize = 16;

/// The engine, the linker with every host interface, and the epoch ticker that meters CPU.
pub struct HostEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) limits: SandboxLimits,
    pooling: bool,
    ticker_stop: Arc<AtomicBool>,
}

impl HostEngine {
    /// Builds the engine: async support, component model, epoch interruption, the pooling allocator when
    /// the machine can reserve its address space (else on-demand allocation, as wasmtime's own server does).
    /// `max_concurrent_calls` is lowered to what the process's memory mappings allow (see
    /// [`calls_the_memory_maps_allow`]).
    pub fn new(mut limits: SandboxLimits) -> anyhow::Result<HostEngine> {
        if let Some(allowed) = calls_the_memory_maps_allow()
            && allowed < limits.max_concurrent_calls
        {
            warn!(
                max_calls = limits.max_concurrent_calls,
                lowered_to = allowed,
                "vm.max_map_count is too low for max_calls: max_calls lowered; to allow more, raise it (sysctl -w vm.max_map_count={})",
                memory_maps_needed(limits.max_concurrent_calls)
            );
            limits.max_concurrent_calls = allowed;
        }
        let (engine, pooling) = match Engine::new(&config(&limits, true)) {
            Ok(engine) => (engine, true),
            Err(error) => {
                warn!(%error, "pooling allocator unavailable; allocating instances on demand");
                (Engine::new(&config(&limits, false)).map_err(context("creating the wasm engine"))?, false)
            }
        };
        HostEngine::with_engine(engine, limits, pooling)
    }

    /// An engine that allocates every instance on demand (no pooling): the fallback of
    /// [`HostEngine::new`], and the reference the instantiation benchmark compares pooling with.
    pub fn on_demand(limits: SandboxLimits) -> anyhow::Result<HostEngine> {
        let engine = Engine::new(&config(&limits, false)).map_err(context("creating the wasm engine"))?;
        HostEngine::with_engine(engine, limits, false)
    }

    fn with_engine(engine: Engine, limits: SandboxLimits, pooling: bool) -> anyhow::Result<HostEngine> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(context("linking WASI"))?;
        crate::capabilities::link_all(&mut linker).map_err(context("linking callwright:voice"))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        info!(pooling, "wasm engine ready");
        Ok(HostEngine { engine, linker, limits, pooling, ticker_stop })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// True when instances come from the pooling allocator.
    pub fn uses_pooling(&self) -> bool {
        self.pooling
    }

    /// A store for one guest instance with `state`: memory limited, CPU metered from wasmtime's call hooks
    /// (the guest's own execution, see [`crate::call_state::CpuMeter`]) and checked at every epoch tick,
    /// where the guest also yields so other calls run; past its budget it traps.
    pub(crate) fn store(&self, state: CallState) -> Store<CallState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.call_hook(|mut context, hook| {
            let cpu = &mut context.data_mut().cpu;
            match hook {
                CallHook::CallingWasm | CallHook::ReturningFromHost => cpu.resume(),
                CallHook::CallingHost | CallHook::ReturningFromWasm => cpu.pause(),
            }
            Ok(())
        });
        store.epoch_deadline_callback(|mut context| {
            let cpu = &mut context.data_mut().cpu;
            if cpu.within_budget() {
                // Within budget: let other calls run, then check again next tick.
                Ok(UpdateDeadline::Yield(1))
            } else {
                Err(wasmtime::Error::msg(format!("guest used its CPU budget of {:?}", cpu.budget)))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// The limits in force.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// A string that changes whenever compiled artifacts of this engine stop being loadable.
    pub fn artifact_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Turns a wasmtime error into an anyhow error with `what` in front (wasmtime 48's error is its own type).
pub(crate) fn context(what: &'static str) -> impl FnOnce(wasmtime::Error) -> anyhow::Error {
    move |error| anyhow::anyhow!("{what}: {error:#}")
}

fn config(limits: &SandboxLimits, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    // A memory reserves its limit, not wasmtime's default 4 GiB, and never moves.
    config.memory_reservation(limits.memory_per_call as u64);
    config.memory_reservation_for_growth(0);
    config.memory_guard_size(MEMORY_GUARD_BYTES);
    if pooling {
        // Slots for every call the limits allow, so the pool never refuses a call the limit admitted.
        let instances =
            u32::try_from(limits.max_concurrent_calls.saturating_mul(INSTANCES_PER_CALL)).unwrap_or(u32::MAX);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances);
        pool.total_core_instances(instances.saturating_mul(4));
        pool.total_memories(instances.saturating_mul(2));
        pool.total_tables(instances.saturating_mul(4));
        // A running guest is a fiber with its own stack.
        pool.total_stacks(instances);
        pool.max_memory_size(limits.memory_per_call);
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        pool.table_keep_resident(KEEP_RESIDENT_BYTES / 16);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        pool.decommit_batch_size(DECOMMIT_BATCH);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Memory mappings the pool holds for each call it has room for, live or not: each fiber stack is a
/// mapping and its guard page another ([`INSTANCES_PER_CALL`] stacks).
const STATIC_MAPPINGS_PER_CALL: usize = 2 * INSTANCES_PER_CALL;
/// Memory mappings a live instance adds: its linear memory and table slots, each split from its guard
/// (measured: 1,000 calls of the Rust `answer-hangup`, one instance each, added 4,006).
const MAPPINGS_PER_LIVE_INSTANCE: usize = 4;
/// Memory mappings one call needs at most: its share of the pool's stacks, and every instance it may hold.
const MAPPINGS_PER_CALL: usize = STATIC_MAPPINGS_PER_CALL + INSTANCES_PER_CALL * MAPPINGS_PER_LIVE_INSTANCE;
/// Mappings left for everything else: the allocator's large blocks, threads' stacks, libraries, compiled
/// modules. When mappings run out, `malloc` fails and the process aborts, so this is generous.
const MAPPINGS_HEADROOM: usize = 8192;

/// Memory mappings `max_calls` calls need at most (every call at [`INSTANCES_PER_CALL`] instances).
fn memory_maps_needed(max_calls: usize) -> usize {
    max_calls.saturating_mul(MAPPINGS_PER_CALL).saturating_add(MAPPINGS_HEADROOM)
}

/// How many concurrent calls Linux's limit on a process's memory mappings (`vm.max_map_count`, 65,530 by
/// default) allows; `None` where it cannot be read. Past that limit an instance fails to allocate, and so
/// does `malloc`, which aborts the process: the call limit must stay under it.
pub fn calls_the_memory_maps_allow() -> Option<usize> {
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    Some(calls_allowed_by(limit))
}

fn calls_allowed_by(max_map_count: usize) -> usize {
    max_map_count.saturating_sub(MAPPINGS_HEADROOM) / MAPPINGS_PER_CALL
}

/// One thread advances the epoch every [`EPOCH_TICK`]; guests check it to yield and to meter CPU.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
    });
    if let Err(error) = spawned {
        warn!(%error, "no epoch ticker: guests cannot be interrupted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_limit_fits_the_memory_maps_with_headroom() {
        // Linux's default: about 3,000 calls, each at its most instances.
        assert_eq!(calls_allowed_by(65_530), 3_185);
        for limit in [10_000, 65_530, 262_144, 1_048_576] {
            let allowed = calls_allowed_by(limit);
            assert!(memory_maps_needed(allowed) <= limit, "{limit}");
            assert!(memory_maps_needed(allowed + 1) > limit, "{limit}: one call more would not fit");
        }
        assert_eq!(calls_allowed_by(1_000), 0, "below the headroom no call fits");
    }
}
