//! A far end that stops sending RTP is reported once its inactivity timeout passes; one that put the
//! stream on hold (sends nothing by agreement) is not, and the timer starts again on resume.

mod common;

use std::time::Duration;

use callwright_media::sdp::Direction;
use callwright_media::{MediaEvent, SessionConfig};
use common::Pair;

fn inactive_at(pair: &Pair) -> Vec<Duration> {
    pair.callwright_events.iter().filter(|(_, e)| matches!(e, MediaEvent::Inactive(_))).map(|(at, _)| *at).collect()
}

fn pair_with_timeout(seconds: u64) -> Pair {
    let (ours, theirs) = common::negotiate(true);
    let mut config = SessionConfig::new(ours, 1);
    config.inactivity_timeout = Some(Duration::from_secs(seconds));
    Pair::with(config, SessionConfig::new(theirs, 2))
}

#[test]
fn silence_on_the_wire_is_reported_after_the_timeout() {
    let mut pair = pair_with_timeout(5);
    pair.run_until(Duration::from_secs(3));
    assert!(inactive_at(&pair).is_empty());
    pair.to_callwright.loss_per_mille = 1000;
    pair.run_until(Duration::from_secs(20));
    let reported = inactive_at(&pair);
    assert_eq!(reported.len(), 1, "reported once: {reported:?}");
    let at = reported[0];
    assert!(at >= Duration::from_secs(8) && at <= Duration::from_millis(8100), "{at:?}");
}

#[test]
fn a_far_end_that_never_sends_is_reported_only_when_asked() {
    let mut pair = pair_with_timeout(2);
    pair.to_callwright.loss_per_mille = 1000;
    pair.run_until(Duration::from_secs(5));
    assert!(inactive_at(&pair).is_empty(), "never sending is not stopping");
    let (ours, theirs) = common::negotiate(true);
    let mut config = SessionConfig::new(ours, 1);
    config.inactivity_timeout = Some(Duration::from_secs(2));
    config.inactivity_before_first_packet = true;
    let mut strict = Pair::with(config, SessionConfig::new(theirs, 2));
    strict.to_callwright.loss_per_mille = 1000;
    strict.run_until(Duration::from_secs(3));
    assert_eq!(inactive_at(&strict).len(), 1);
}

#[test]
fn a_held_stream_is_not_inactive_and_resume_restarts_the_timer() {
    let mut pair = pair_with_timeout(2);
    pair.run_until(Duration::from_secs(1));
    let mut held = pair.callwright.negotiated().clone();
    held.direction = Direction::SendOnly; // the peer sent `recvonly`: it will not send to us
    let now = pair.now;
    pair.callwright.update(now, held.clone());
    pair.to_callwright.loss_per_mille = 1000;
    pair.run_until(Duration::from_secs(10));
    assert!(inactive_at(&pair).is_empty(), "on hold nothing is expected");
    held.direction = Direction::SendRecv;
    let now = pair.now;
    pair.callwright.update(now, held);
    pair.run_until(Duration::from_millis(11_900));
    assert!(inactive_at(&pair).is_empty());
    pair.run_until(Duration::from_millis(12_100));
    assert_eq!(inactive_at(&pair).len(), 1);
}
