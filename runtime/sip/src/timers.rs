//! RFC 3261 timer values (§17, Table 4) and the settings that scale them.

use std::time::Duration;

/// T1: round-trip time estimate (RFC 3261 §17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// T2: the longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// T4: the longest a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);

/// Timer values in force for one endpoint. Only T1, T2 and T4 are settable; every other timer derives
/// from them: the lettered ones as RFC 3261 Table 4 says, and the endpoint's own (how long an ended call
/// lingers, how long a stream message may take) from 64·T1. Tests shorten T1 to make them all quick.
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

    /// Timer D: wait for response retransmissions after a non-2xx final: 64·T1 on unreliable transports
    /// (32 s at the default T1, RFC 3261's "at least 32 s"; it scales with T1 as the response's
    /// retransmissions do), 0 on reliable ones.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.timeout_64t1() }
    }

    /// Timer I / K: T4 on unreliable transports, 0 on reliable ones.
    pub fn timer_i_k(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: 64·T1 on unreliable transports, 0 on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.timeout_64t1() }
    }

    /// How long an ended call keeps answering what comes late: retransmitted BYEs, and the NOTIFYs of its
    /// REFERs (RFC 5057: BYE ends only the INVITE usage). 64·T1, the longest a peer's transaction retries.
    pub fn call_linger(&self) -> Duration {
        self.timeout_64t1()
    }

    /// How long one message on a stream transport may take to arrive once its first byte has (and an
    /// inbound connection to send its first message), and to be written to a peer that does not read:
    /// 64·T1, after which the sender's transaction has given up (Timers B and F), so the rest of a slower
    /// message would be answered to nobody.
    pub fn stream_message_deadline(&self) -> Duration {
        self.timeout_64t1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timer_of_the_endpoint_follows_t1() {
        let default = TimerSettings::default();
        assert_eq!(default.timer_d(false), Duration::from_secs(32), "RFC 3261's Timer D at the default T1");
        assert_eq!(default.call_linger(), Duration::from_secs(32));
        assert_eq!(default.stream_message_deadline(), Duration::from_secs(32));
        let short = TimerSettings { t1: Duration::from_millis(100), ..default };
        for timer in [short.timer_d(false), short.timer_j(false), short.call_linger(), short.stream_message_deadline()]
        {
            assert_eq!(timer, Duration::from_millis(6400));
        }
        assert_eq!(short.timer_d(true), Duration::ZERO, "no wait for retransmissions on a reliable transport");
    }
}
