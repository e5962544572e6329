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
    /// The pool is sized to what the process's memory mappings allow ([`PoolPlan`]); `max_concurrent_calls`
    /// is lowered when even one instance per call would not fit.
    pub fn new(mut limits: SandboxLimits) -> anyhow::Result<HostEngine> {
        let plan = PoolPlan::for_calls(limits.max_concurrent_calls, max_map_count());
        if plan.max_calls < limits.max_concurrent_calls {
            warn!(
                max_calls = limits.max_concurrent_calls,
                lowered_to = plan.max_calls,
                "vm.max_map_count is too low for max_calls: max_calls lowered; to allow more, raise it (sysctl -w vm.max_map_count={})",
                memory_maps_needed(limits.max_concurrent_calls)
            );
            limits.max_concurrent_calls = plan.max_calls;
        }
        if plan.instances < limits.max_concurrent_calls * INSTANCES_PER_CALL {
            info!(
                instances = plan.instances,
                max_calls = limits.max_concurrent_calls,
                "the instance pool holds one instance per call and {} more for verbs (vm.max_map_count allows no more; raise it to {} for {INSTANCES_PER_CALL} per call)",
                plan.instances - limits.max_concurrent_calls,
                memory_maps_needed(limits.max_concurrent_calls)
            );
        }
        let (engine, pooling) = match Engine::new(&config(&limits, Some(&plan))) {
            Ok(engine) => (engine, true),
            Err(error) => {
                warn!(%error, "pooling allocator unavailable; allocating instances on demand");
                (Engine::new(&config(&limits, None)).map_err(context("creating the wasm engine"))?, false)
            }
        };
        HostEngine::with_engine(engine, limits, pooling)
    }

    /// An engine that allocates every instance on demand (no pooling): the fallback of
    /// [`HostEngine::new`], and the reference the instantiation benchmark compares pooling with.
    pub fn on_demand(limits: SandboxLimits) -> anyhow::Result<HostEngine> {
        let engine = Engine::new(&config(&limits, None)).map_err(context("creating the wasm engine"))?;
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

/// The engine's configuration; pooled as `pool` plans, or allocating on demand without one.
fn config(limits: &SandboxLimits, pool: Option<&PoolPlan>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    // A memory reserves its limit, not wasmtime's default 4 GiB, and never moves.
    config.memory_reservation(limits.memory_per_call as u64);
    config.memory_reservation_for_growth(0);
    config.memory_guard_size(MEMORY_GUARD_BYTES);
    if let Some(plan) = pool {
        config.memory_init_cow(plan.copy_on_write);
        let instances = u32::try_from(plan.instances).unwrap_or(u32::MAX);
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

/// Memory mappings the pool holds for each instance it has room for, live or not: its fiber stack and
/// the stack's guard page.
const MAPPINGS_PER_POOLED_STACK: usize = 2;
/// Memory mappings a live instance adds: its linear memory's slot split from the rest of the pool
/// (measured: 1,000 calls of the Rust `answer-hangup` added 1,999).
const MAPPINGS_PER_LIVE_INSTANCE: usize = 2;
/// The same with copy-on-write memory images: the image's mapping splits the slot twice more
/// (1,000 calls added 3,999).
const MAPPINGS_PER_LIVE_INSTANCE_COW: usize = 4;
/// Mappings left for everything else: the allocator's large blocks, threads' stacks, libraries, compiled
/// modules. When mappings run out, `malloc` fails and the process aborts, so this is generous.
const MAPPINGS_HEADROOM: usize = 8192;

/// How the instance pool is sized under the process's limit on memory mappings (`vm.max_map_count`,
/// 65,530 by default). Past that limit an instance fails to allocate, and so does `malloc`, which aborts
/// the process, so the pool must fit under it with every instance live:
/// 1. room for [`INSTANCES_PER_CALL`] instances per allowed call, with copy-on-write memory images (the
///    fastest instantiation for large modules), when that fits;
/// 2. else the same without copy-on-write (data segments are copied at instantiation, and a live
///    instance takes half the mappings);
/// 3. else one instance per allowed call and as many more as fit, shared by the calls' verbs (a verb
///    finding the pool full fails with wasmtime's message);
/// 4. else the call limit is lowered to the instances that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolPlan {
    instances: usize,
    max_calls: usize,
    copy_on_write: bool,
}

impl PoolPlan {
    fn for_calls(max_calls: usize, max_map_count: Option<usize>) -> PoolPlan {
        let wanted = max_calls.saturating_mul(INSTANCES_PER_CALL);
        let Some(limit) = max_map_count else {
            return PoolPlan { instances: wanted, max_calls, copy_on_write: true };
        };
        let budget = limit.saturating_sub(MAPPINGS_HEADROOM);
        let fitting = |per_instance: usize| budget / (MAPPINGS_PER_POOLED_STACK + per_instance);
        if wanted <= fitting(MAPPINGS_PER_LIVE_INSTANCE_COW) {
            return PoolPlan { instances: wanted, max_calls, copy_on_write: true };
        }
        let instances = fitting(MAPPINGS_PER_LIVE_INSTANCE).min(wanted);
        PoolPlan { instances, max_calls: max_calls.min(instances), copy_on_write: false }
    }
}

/// Memory mappings `max_calls` calls need with every call at [`INSTANCES_PER_CALL`] live instances and
/// copy-on-write images.
fn memory_maps_needed(max_calls: usize) -> usize {
    let per_instance = MAPPINGS_PER_POOLED_STACK + MAPPINGS_PER_LIVE_INSTANCE_COW;
    max_calls.saturating_mul(INSTANCES_PER_CALL * per_instance).saturating_add(MAPPINGS_HEADROOM)
}

/// Linux's limit on a process's memory mappings; `None` where it cannot be read.
fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
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
    fn the_pool_fits_the_memory_maps_with_every_instance_live() {
        let mappings = |plan: &PoolPlan| {
            let live = if plan.copy_on_write { MAPPINGS_PER_LIVE_INSTANCE_COW } else { MAPPINGS_PER_LIVE_INSTANCE };
            plan.instances * (MAPPINGS_PER_POOLED_STACK + live) + MAPPINGS_HEADROOM
        };
        // Linux's default: 10,000 calls, one instance each and 4,334 more for verbs, without copy-on-write.
        let default = PoolPlan::for_calls(10_000, Some(65_530));
        assert_eq!(default, PoolPlan { instances: 14_334, max_calls: 10_000, copy_on_write: false });
        // Few calls: three instances each, with copy-on-write.
        assert_eq!(
            PoolPlan::for_calls(1_000, Some(65_530)),
            PoolPlan { instances: 3_000, max_calls: 1_000, copy_on_write: true }
        );
        // A raised limit gives every call its three instances again.
        let raised = PoolPlan::for_calls(10_000, Some(memory_maps_needed(10_000)));
        assert_eq!(raised, PoolPlan { instances: 30_000, max_calls: 10_000, copy_on_write: true });
        // Too low for one instance per call: the call limit follows the pool.
        let low = PoolPlan::for_calls(10_000, Some(20_000));
        assert_eq!((low.max_calls, low.instances), (2_952, 2_952));
        for limit in [20_000, 65_530, 100_000, 262_144] {
            let plan = PoolPlan::for_calls(10_000, Some(limit));
            assert!(mappings(&plan) <= limit, "{limit}: {plan:?}");
            assert!(plan.instances >= plan.max_calls, "{limit}: every call has its flow's instance");
        }
        assert_eq!(PoolPlan::for_calls(10_000, Some(1_000)).max_calls, 0, "below the headroom no call fits");
    }
}
