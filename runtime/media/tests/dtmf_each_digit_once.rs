//! Every key press is reported once: RFC 4733 events over a lossy, reordering link (retransmitted End
//! packets, lost ones), the same press also signalled by SIP INFO, and in-band tones when the peer offered
//! no telephone-event.

mod common;

use std::time::Duration;

use callwright_media::dtmf::{self, Digit, DigitSource};
use callwright_media::source::Tone;
use callwright_media::{MediaEvent, PlayOptions};
use common::{LinkConditions, Pair};

const KEYS: &str = "0123456789*#ABCD";

#[test]
fn rfc4733_events_over_a_lossy_link_give_each_key_once() {
    for seed in 1..=5 {
        let mut pair = Pair::new(true);
        pair.rng = common::Rng::new(seed);
        pair.to_callwright =
            LinkConditions { loss_per_mille: 100, delay: Duration::from_millis(20), jitter: Duration::from_millis(30) };
        let steps = dtmf::parse_digit_string(KEYS).unwrap();
        pair.peer.send_digits(steps, Duration::from_millis(120)).unwrap();
        pair.run_until(Duration::from_secs(8));
        assert_eq!(pair.digits_heard(), KEYS, "seed {seed}");
        let sources: Vec<DigitSource> = pair
            .callwright_events
            .iter()
            .filter_map(|(_, e)| if let MediaEvent::Digit(d) = e { Some(d.source) } else { None })
            .collect();
        assert!(sources.iter().all(|s| *s == DigitSource::Rfc4733));
    }
}

#[test]
fn a_press_sent_as_both_info_and_rfc4733_is_one_digit() {
    let mut pair = Pair::new(true);
    pair.peer.send_digits(dtmf::parse_digit_string("55").unwrap(), Duration::from_millis(100)).unwrap();
    pair.run_until(Duration::from_millis(30));
    let info = dtmf::parse_info("application/dtmf-relay", b"Signal=5\r\nDuration=100\r\n").unwrap();
    let now = pair.now;
    pair.callwright.handle_info_digit(now, info);
    pair.run_until(Duration::from_millis(330));
    let now = pair.now;
    pair.callwright.handle_info_digit(now, Digit { source: DigitSource::SipInfo, ..info });
    pair.run_until(Duration::from_secs(2));
    assert_eq!(pair.digits_heard(), "55", "two presses, each signalled twice");
}

#[test]
fn in_band_tones_are_heard_when_there_is_no_telephone_event() {
    let mut pair = Pair::new(false);
    assert!(pair.peer.send_digits(dtmf::parse_digit_string("1").unwrap(), Duration::from_millis(100)).is_err());
    for key in "159#".chars() {
        pair.peer.play(Box::new(Tone::dtmf(key, Duration::from_millis(120), 8000).unwrap()), PlayOptions::default());
        pair.peer.play(Box::new(Tone::silence(Duration::from_millis(120), 8000)), PlayOptions::default());
    }
    pair.to_callwright.jitter = Duration::from_millis(15);
    pair.run_until(Duration::from_secs(3));
    assert_eq!(pair.digits_heard(), "159#");
}

#[test]
fn a_digit_stops_a_barge_in_prompt_but_not_another() {
    let mut pair = Pair::new(true);
    let tone = || Box::new(Tone::silence(Duration::from_secs(5), 8000));
    let barge = pair.callwright.play(tone(), PlayOptions { barge_in: true, ..PlayOptions::default() });
    pair.peer.send_digits(dtmf::parse_digit_string("7").unwrap(), Duration::from_millis(100)).unwrap();
    pair.run_until(Duration::from_secs(1));
    let ended: Vec<_> = pair
        .callwright_events
        .iter()
        .filter_map(
            |(_, e)| if let MediaEvent::PlaybackEnded { id, reason, .. } = e { Some((*id, *reason)) } else { None },
        )
        .collect();
    assert_eq!(ended, [(barge, callwright_media::PlaybackEnd::BargedIn)]);
    let kept = pair.callwright.play(tone(), PlayOptions::default());
    pair.peer.send_digits(dtmf::parse_digit_string("8").unwrap(), Duration::from_millis(100)).unwrap();
    pair.run_until(Duration::from_secs(2));
    assert!(pair.callwright.is_playing(), "{kept:?} ignores digits");
    assert_eq!(pair.digits_heard(), "78");
}
