//! One memory budget per call, shared by every instance the call runs: its flow and the verbs it nests.
//! Each instance's store holds a [`CallMemory`], wasmtime's resource limiter for it, which takes what a
//! memory grows by from the call's budget and gives it back when the instance ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

/// Instances, tables and memories one store may create, and elements one table may hold: far above what
/// a component of any language here needs, and a bound on what a hostile one can ask of the host.
const INSTANCES_PER_STORE: usize = 16;
const TABLES_PER_STORE: usize = 64;
const MEMORIES_PER_STORE: usize = 4;
const TABLE_ELEMENTS: usize = 1 << 20;

/// The bytes of linear memory one call's instances hold together, against their limit.
#[derive(Debug)]
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    /// Takes `bytes` if they fit under the limit.
    fn take(&self, bytes: usize) -> Result<(), usize> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One instance's share of its call's memory budget: the limiter of its store.
#[derive(Debug)]
pub(crate) struct CallMemory {
    budget: Arc<Budget>,
    /// What this instance's memories took from the budget.
    held: usize,
}

impl CallMemory {
    /// The budget of a new call: `limit` bytes for all its instances together.
    pub(crate) fn new(limit: usize) -> CallMemory {
        CallMemory { budget: Arc::new(Budget { limit, used: AtomicUsize::new(0) }), held: 0 }
    }

    /// A share of the same budget for another instance of the call (a verb it runs).
    pub(crate) fn share(&self) -> CallMemory {
        CallMemory { budget: self.budget.clone(), held: 0 }
    }

    /// Bytes the call's instances hold now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.budget.used.load(Ordering::Acquire)
    }
}

impl Drop for CallMemory {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

impl ResourceLimiter for CallMemory {
    /// A memory may grow while the call's instances stay within the budget together; past it the guest
    /// traps (a failed `memory.grow` would leave most languages' allocators aborting anyway, with a less
    /// clear message).
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        match self.budget.take(growth) {
            Ok(()) => {
                self.held += growth;
                Ok(true)
            }
            Err(used) => Err(wasmtime::Error::msg(format!(
                "the call's guests would hold {} bytes of memory, over the limit of {} bytes per call",
                used.saturating_add(growth),
                self.budget.limit
            ))),
        }
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired <= TABLE_ELEMENTS {
            Ok(true)
        } else {
            Err(wasmtime::Error::msg(format!(
                "a table would hold {desired} elements, over the limit of {TABLE_ELEMENTS}"
            )))
        }
    }

    fn instances(&self) -> usize {
        INSTANCES_PER_STORE
    }

    fn tables(&self) -> usize {
        TABLES_PER_STORE
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_STORE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_of_one_call_share_the_budget_and_give_back_what_they_held() {
        let mut flow = CallMemory::new(100);
        assert!(flow.memory_growing(0, 60, None).unwrap());
        let mut verb = flow.share();
        let error = verb.memory_growing(0, 50, None).unwrap_err();
        assert!(error.to_string().contains("would hold 110 bytes of memory, over the limit of 100"), "{error}");
        assert!(verb.memory_growing(0, 40, None).unwrap(), "what is left fits");
        assert_eq!(flow.used(), 100);
        drop(verb);
        assert_eq!(flow.used(), 60, "the verb's memory is the call's again when it ends");
        assert!(flow.memory_growing(60, 100, None).unwrap());
        let other_call = CallMemory::new(100);
        assert_eq!(other_call.used(), 0, "another call has its own budget");
    }
}
