//! When to shed load: a sans-IO detector fed with how long each received datagram waited before the
//! endpoint saw it.
//!
//! Past its capacity a server that keeps taking calls collapses: requests queue, answers come after the
//! callers' retransmission timers (T1, 500 ms), every retransmission adds work, and soon no call
//! completes. Refusing new calls with a cheap 503 while requests are queueing keeps the calls in progress
//! and the ones that are taken fast. The signal is the queueing itself, so it needs no notion of how fast
//! the machine is.
//!
//! A burst is not an overload: after the process was descheduled for a moment (a busy machine), the
//! datagrams read at once waited from nothing to the length of the pause, and are handled in
//! milliseconds. An overload is a queue that stands: even the freshest datagram waited. So, as CoDel does
//! for network queues, the detector looks at the *shortest* wait in each [`WINDOW`] of traffic.

use std::time::{Duration, Instant};

/// The span of traffic whose shortest wait decides.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// Turns shedding on when every datagram of a window waited longer than `start_above`, and off again
/// when one of a window waited less than `stop_below` (the gap keeps it from flapping), or when traffic
/// paused for a window (the queue is gone).
#[derive(Debug, Clone)]
pub(crate) struct OverloadDetector {
    start_above: Duration,
    stop_below: Duration,
    shedding: bool,
    window_start: Option<Instant>,
    shortest_wait: Duration,
}

/// A change of state the driver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shedding {
    Started,
    Stopped,
}

impl OverloadDetector {
    /// Sheds above `start_above` of standing queueing; stops below a quarter of it.
    pub(crate) fn new(start_above: Duration) -> OverloadDetector {
        OverloadDetector {
            start_above,
            stop_below: start_above / 4,
            shedding: false,
            window_start: None,
            shortest_wait: Duration::MAX,
        }
    }

    /// Takes how long the datagram handled `now` waited; returns a change of state, if any.
    pub(crate) fn observe(&mut self, now: Instant, waited: Duration) -> Option<Shedding> {
        let Some(start) = self.window_start else {
            self.open_window(now, waited);
            return None;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            self.shortest_wait = self.shortest_wait.min(waited);
            return None;
        }
        // A window that ended long after it should have had a pause in its traffic: not a standing queue.
        let shortest = (elapsed < 2 * WINDOW).then_some(self.shortest_wait);
        self.open_window(now, waited);
        match shortest {
            Some(shortest) if !self.shedding && shortest > self.start_above => {
                self.shedding = true;
                Some(Shedding::Started)
            }
            Some(shortest) if self.shedding && shortest < self.stop_below => {
                self.shedding = false;
                Some(Shedding::Stopped)
            }
            None if self.shedding => {
                self.shedding = false;
                Some(Shedding::Stopped)
            }
            _ => None,
        }
    }

    /// Ends shedding when no datagram has come for a window: the queue is gone. [`Self::observe`] would see
    /// that only when the next datagram comes, and meanwhile a call arriving another way (over TCP) would
    /// be refused and the server's stats would still say it sheds.
    pub(crate) fn check_pause(&mut self, now: Instant) -> Option<Shedding> {
        let paused = self.window_start.is_some_and(|start| now.saturating_duration_since(start) >= 2 * WINDOW);
        if !(self.shedding && paused) {
            return None;
        }
        self.shedding = false;
        Some(Shedding::Stopped)
    }

    fn open_window(&mut self, now: Instant, waited: Duration) {
        self.window_start = Some(now);
        self.shortest_wait = waited;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds one datagram every 10 ms from `from` for `span`, each having waited `waited`; returns the
    /// changes seen and the time after the last.
    fn traffic(
        detector: &mut OverloadDetector,
        from: Instant,
        span: Duration,
        waited: Duration,
    ) -> (Vec<Shedding>, Instant) {
        let mut changes = Vec::new();
        let mut now = from;
        while now < from + span {
            changes.extend(detector.observe(now, waited));
            now += ms(10);
        }
        (changes, now)
    }

    #[test]
    fn a_standing_queue_starts_shedding_and_a_short_one_stops_it() {
        let mut detector = OverloadDetector::new(ms(200));
        let start = Instant::now();
        let (changes, now) = traffic(&mut detector, start, ms(300), ms(5));
        assert!(changes.is_empty());
        let (changes, now) = traffic(&mut detector, now, ms(300), ms(250));
        assert_eq!(changes, [Shedding::Started], "every datagram of a window waited 250 ms");
        // Draining: still 100 ms of standing queue, still shedding.
        let (changes, now) = traffic(&mut detector, now, ms(300), ms(100));
        assert!(changes.is_empty());
        let (changes, _) = traffic(&mut detector, now, ms(300), ms(20));
        assert_eq!(changes, [Shedding::Stopped]);
    }

    #[test]
    fn a_burst_after_a_pause_is_not_an_overload() {
        let mut detector = OverloadDetector::new(ms(200));
        let start = Instant::now();
        let (_, now) = traffic(&mut detector, start, ms(300), ms(5));
        // Descheduled 400 ms: the datagrams read at once waited 400 ms down to nothing.
        let now = now + ms(400);
        for (i, waited) in (0..40).rev().map(|i| ms(i * 10)).enumerate() {
            assert_eq!(detector.observe(now + Duration::from_micros(i as u64 * 50), waited), None);
        }
        let (changes, _) = traffic(&mut detector, now + ms(2), ms(300), ms(5));
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn one_late_datagram_after_idle_is_not_an_overload_and_a_pause_ends_shedding() {
        let mut detector = OverloadDetector::new(ms(200));
        let start = Instant::now();
        assert_eq!(detector.observe(start, ms(900)), None);
        assert_eq!(detector.observe(start + ms(5_000), ms(900)), None, "two lone datagrams are no window");
        let (changes, now) = traffic(&mut detector, start + ms(10_000), ms(300), ms(250));
        assert_eq!(changes, [Shedding::Started]);
        // Traffic stops; the next datagram, a second later, finds the queue gone.
        assert_eq!(detector.observe(now + ms(1_000), ms(250)), Some(Shedding::Stopped));
    }

    #[test]
    fn a_pause_ends_shedding_before_the_next_datagram_comes() {
        let mut detector = OverloadDetector::new(ms(200));
        let (changes, now) = traffic(&mut detector, Instant::now(), ms(300), ms(250));
        assert_eq!(changes, [Shedding::Started]);
        // The last window opened at `now - 100 ms`: one window without traffic is not yet a pause.
        assert_eq!(detector.check_pause(now + ms(50)), None);
        assert_eq!(detector.check_pause(now + ms(100)), Some(Shedding::Stopped));
        assert_eq!(detector.check_pause(now + ms(200)), None, "said once");
        assert_eq!(detector.observe(now + ms(300), ms(5)), None, "the next datagram changes nothing");
    }
}
