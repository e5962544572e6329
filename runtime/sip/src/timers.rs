//! RFC 3261 timer values (§17, Table 4) and the settings that scale them.

use std::time::Duration;

/// T1: round-trip time estimate (RFC 3261 §17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// T2: the longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// T4: the longest a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);

/// Timer values in force for one endpoint. Only T1, T2 and T4 are settable; every lettered timer derives
/// from them as RFC 3261 Table 4 says. Tests shorten T1 to make 64·T1 timeouts quick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerSettings {
    /// T1.
    pub t1: Duration,
    /// T2.
    pub t2: Duration,
    /// T4.
    pub t4: Duration,
}

impl Default for TimerSettings {
    fn default() -> TimerSettings {
        TimerSettings { t1: T1, t2: T2, t4: T4 }
    }
}

impl TimerSettings {
    /// 64·T1: Timers B, F, H, J (unreliable), L and M, and the wait for the ACK of a 2xx.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer A / E / G starting interval: T1 (only on unreliable transports).
    pub fn retransmit_start(&self) -> Duration {
        self.t1
    }

    /// The next retransmit interval: doubled, capped at T2 (Timers E and G, and 2xx retransmission).
    pub fn next_interval(&self, interval: Duration) -> Duration {
        (interval * 2).min(self.t2)
    }

    /// Timer D: wait for response retransmissions after a non-2xx final (32 s, 0 on reliable transports).
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { Duration::from_secs(32).max(self.timeout_64t1()) }
    }

    /// Timer I / K: T4 on unreliable transports, 0 on reliable ones.
    pub fn timer_i_k(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: 64·T1 on unreliable transports, 0 on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.timeout_64t1() }
    }
}
