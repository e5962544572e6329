//! The state one guest instance runs with (the wasmtime `Store` data): its call legs, variables, WASI
//! context that grants nothing, memory limits and CPU meter.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callwright_driver::{CommandError, SipHandle};
use callwright_sip::{CallHandle, EndReason, Event, IncomingRequestHandle};
use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{CallError, CallInfo};
use crate::limits::{EPOCH_TICK, SandboxLimits};

/// The host side of a guest's `call` resource: which SIP call it names.
#[derive(Debug)]
pub struct CallResource {
    pub(crate) handle: CallHandle,
}

/// One SIP call the guest holds, with the events routed to it.
pub(crate) struct Leg {
    pub(crate) info: CallInfo,
    /// Our address on the call's flow (for the SDP answer the host makes).
    pub(crate) local_ip: std::net::IpAddr,
    pub(crate) events: mpsc::Receiver<Event>,
    /// Events read while waiting for something else (e.g. a response), delivered by `next-event` first.
    pub(crate) backlog: VecDeque<Event>,
    pub(crate) ended: Option<EndReason>,
    pub(crate) answered: bool,
    /// Requests from the far end the guest has not answered yet.
    pub(crate) unanswered: HashSet<IncomingRequestHandle>,
}

/// Per-call variables, shared by every module that runs on the call.
pub type Variables = Arc<Mutex<BTreeMap<String, String>>>;

/// Measures guest CPU time from epoch ticks: consecutive ticks while wasm runs count, gaps (the guest
/// waiting in a host call) do not.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    pub(crate) used: Duration,
    pub(crate) budget: Duration,
    last_tick: Instant,
}

impl CpuMeter {
    fn new(budget: Duration) -> CpuMeter {
        CpuMeter { used: Duration::ZERO, budget, last_tick: Instant::now() }
    }

    /// Called on every epoch tick seen while the guest runs. Returns false when the budget is spent.
    pub(crate) fn tick(&mut self) -> bool {
        let now = Instant::now();
        let since = now - self.last_tick;
        self.last_tick = now;
        // A long gap means the guest was suspended in a host call: charge one tick, not the wait.
        self.used += if since <= EPOCH_TICK * 3 { since } else { EPOCH_TICK };
        self.used <= self.budget
    }
}

/// The data of one guest instance's store.
pub struct CallState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) sip: SipHandle,
    pub(crate) legs: std::collections::HashMap<CallHandle, Leg>,
    pub(crate) variables: Variables,
    pub(crate) cpu: CpuMeter,
    /// Names the call in logs.
    pub(crate) label: String,
}

impl CallState {
    pub(crate) fn new(sip: SipHandle, limits: &SandboxLimits, label: String) -> CallState {
        CallState {
            table: ResourceTable::new(),
            // No preopened dirs, no env, no args, no sockets, no inherited stdio: a WASI guest sees nothing.
            wasi: WasiCtxBuilder::new().build(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_per_call)
                .instances(16)
                .tables(64)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            sip,
            legs: std::collections::HashMap::new(),
            variables: Variables::default(),
            cpu: CpuMeter::new(limits.cpu_per_call),
            label,
        }
    }

    pub(crate) fn add_leg(
        &mut self,
        handle: CallHandle,
        info: CallInfo,
        local_ip: std::net::IpAddr,
        events: mpsc::Receiver<Event>,
    ) {
        let leg = Leg {
            info,
            local_ip,
            events,
            backlog: VecDeque::new(),
            ended: None,
            answered: false,
            unanswered: HashSet::new(),
        };
        self.legs.insert(handle, leg);
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Maps a refused SIP command to what the guest sees; a stopped driver is a host failure (trap).
pub(crate) fn call_error(error: CommandError) -> wasmtime::Result<CallError> {
    use callwright_sip::Error;
    match error {
        CommandError::Stopped => Err(wasmtime::Error::msg("the SIP driver stopped")),
        CommandError::Sip(Error::UnknownCall(_) | Error::UnknownRequest(_)) => Ok(CallError::CallEnded),
        CommandError::Sip(Error::InvalidState { state: "ended", .. }) => Ok(CallError::CallEnded),
        CommandError::Sip(error @ Error::InvalidState { .. }) => Ok(CallError::InvalidState(error.to_string())),
        CommandError::Sip(error @ Error::BadArgument(_)) => Ok(CallError::InvalidArgument(error.to_string())),
        CommandError::Sip(error) => Ok(CallError::Other(error.to_string())),
    }
}
