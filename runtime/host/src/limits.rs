//! Sandbox limits: every bound a guest runs under, named, with its default.

use std::time::Duration;

/// Limits applied to every call's guest instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Guest CPU time one call may use in total (time spent waiting in host calls does not count).
    pub cpu_per_call: Duration,
    /// Linear memory one call's instances may hold together (its flow and the verbs it runs share it).
    pub memory_per_call: usize,
    /// Instances (calls with live guests) at once; further calls get 503 with Retry-After.
    pub max_concurrent_calls: usize,
    /// How long a guest may keep a call; then the host hangs up and stops it.
    pub max_call_duration: Duration,
    /// How long a guest may go on running after its call ended (for post-call work); then it is stopped.
    pub after_call_grace: Duration,
    /// Largest component accepted on upload.
    pub max_module_size: usize,
    /// Largest body a guest may send to a hook, and largest hook response handed back to it.
    pub hook_payload_size: usize,
    /// Bytes the host keeps for one call on its guests' behalf: the call's variables (names and values).
    /// A guest that would go past it is stopped.
    pub host_buffer_per_call: usize,
}

impl Default for SandboxLimits {
    fn default() -> SandboxLimits {
        SandboxLimits {
            cpu_per_call: Duration::from_secs(2),
            memory_per_call: 64 << 20,
            max_concurrent_calls: 10_000,
            max_call_duration: Duration::from_secs(4 * 3600),
            after_call_grace: Duration::from_secs(30),
            max_module_size: 32 << 20,
            hook_payload_size: 1 << 20,
            host_buffer_per_call: 1 << 20,
        }
    }
}

/// How often the engine's epoch advances; the CPU budget is checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How deep verbs may run verbs: a call's flow runs a verb (depth 1), which may run another (depth 2: a
/// custom verb built on a built-in one, as the `custom-verb` example's lookup refers through `sip:refer`).
/// Deeper is refused, so a verb that runs itself fails instead of exhausting the host.
pub const MAX_VERB_DEPTH: u32 = 2;

/// Instances one call holds at most at once: its flow and one verb at each depth. The instance pool has
/// room for this many per allowed call where the process's memory mappings allow it, else for one per
/// call and a share for verbs (see `PoolPlan` in `engine.rs`).
pub const INSTANCES_PER_CALL: usize = 1 + MAX_VERB_DEPTH as usize;
