//! When to shed load: a sans-IO detector fed with how long each received datagram waited before the
//! endpoint saw it.
//!
//! Past its capacity a server that keeps taking calls collapses: requests queue, answers come after the
//! callers' retransmission timers (T1, 500 ms), every retransmission adds work, and soon no call
//! completes. Refusing new calls with a cheap 503 while requests are queueing keeps the calls in progress
//! and the ones that are taken fast. The signal is the queueing itself, so it needs no notion of how fast
//! the machine is.

use std::time::Duration;

/// Turns shedding on when a datagram waited longer than `start_above`, and off again when one waited
/// less than `stop_below` (the gap keeps it from flapping).
#[derive(Debug, Clone)]
pub(crate) struct OverloadDetector {
    start_above: Duration,
    stop_below: Duration,
    shedding: bool,
}

/// A change of state the driver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shedding {
    Started,
    Stopped,
}

impl OverloadDetector {
    /// Sheds above `start_above` of queueing; stops below a quarter of it.
    pub(crate) fn new(start_above: Duration) -> OverloadDetector {
        OverloadDetector { start_above, stop_below: start_above / 4, shedding: false }
    }

    /// Takes how long one datagram waited; returns a change of state, if any.
    pub(crate) fn observe(&mut self, waited: Duration) -> Option<Shedding> {
        if !self.shedding && waited > self.start_above {
            self.shedding = true;
            return Some(Shedding::Started);
        }
        if self.shedding && waited < self.stop_below {
            self.shedding = false;
            return Some(Shedding::Stopped);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_above_the_threshold_and_stops_below_a_quarter_of_it() {
        let mut detector = OverloadDetector::new(ms(200));
        assert_eq!(detector.observe(ms(5)), None);
        assert_eq!(detector.observe(ms(200)), None, "at the threshold is not above it");
        assert_eq!(detector.observe(ms(201)), Some(Shedding::Started));
        assert_eq!(detector.observe(ms(900)), None);
        // Draining: still queueing more than 50 ms, so still shedding.
        assert_eq!(detector.observe(ms(120)), None);
        assert_eq!(detector.observe(ms(50)), None);
        assert_eq!(detector.observe(ms(49)), Some(Shedding::Stopped));
        assert_eq!(detector.observe(ms(150)), None, "between the two thresholds nothing changes");
        assert_eq!(detector.observe(ms(300)), Some(Shedding::Started));
    }
}
