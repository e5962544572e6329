//! Two bridged calls hear each other: what one call's far end sends is what the other's far end
//! receives, in both directions, a few frames late; a playback on one call is heard instead of the bridge
//! while it plays, and ending the bridge leaves silence.

mod common;

use std::time::Duration;

use callwright_media::source::{Tone, ToneStep};
use callwright_media::{MediaEvent, PlayOptions, RecordOptions};
use common::{Pair, tone_share};

/// The far end of `pair` sends a tone of `frequency` for `seconds`.
fn talk(pair: &mut Pair, frequency: f32, seconds: u64) {
    let step = ToneStep { frequencies: vec![frequency], on: Duration::from_secs(seconds), off: Duration::ZERO };
    pair.peer.play(Box::new(Tone::new(vec![step], Some(1), 8000)), PlayOptions::default());
}

/// What the far end of `pair` recorded (what it heard).
fn heard(pair: &Pair) -> Vec<i16> {
    pair.peer_events
        .iter()
        .filter_map(
            |(_, e)| if let MediaEvent::RecordingAudio { samples, .. } = e { Some(samples.clone()) } else { None },
        )
        .flatten()
        .collect()
}

/// Runs both calls in 20 ms steps up to `until`, handing each call's bridge audio to the other.
fn run_bridged(a: &mut Pair, b: &mut Pair, until: Duration) {
    let (mut from_a, mut from_b) = (a.callwright_events.len(), b.callwright_events.len());
    while a.elapsed() < until {
        let next = a.elapsed() + Duration::from_millis(20);
        a.run_until(next);
        b.run_until(next);
        for (_, event) in &a.callwright_events[from_a..] {
            if let MediaEvent::BridgeAudio(samples) = event {
                b.callwright.push_bridge_audio(samples);
            }
        }
        for (_, event) in &b.callwright_events[from_b..] {
            if let MediaEvent::BridgeAudio(samples) = event {
                a.callwright.push_bridge_audio(samples);
            }
        }
        (from_a, from_b) = (a.callwright_events.len(), b.callwright_events.len());
    }
}

#[test]
fn each_far_end_hears_the_other_and_a_prompt_takes_over_while_it_plays() {
    let (mut a, mut b) = (Pair::new(true), Pair::new(true));
    for pair in [&mut a, &mut b] {
        pair.callwright.set_bridged(true);
        pair.peer.record(RecordOptions { max_length: Duration::from_secs(6), ..RecordOptions::default() });
    }
    talk(&mut a, 500.0, 6);
    talk(&mut b, 700.0, 6);
    run_bridged(&mut a, &mut b, Duration::from_secs(2));
    // A prompt to A's far end for a second: it hears the prompt, not B, then B again.
    let prompt = ToneStep { frequencies: vec![1200.0], on: Duration::from_secs(1), off: Duration::ZERO };
    a.callwright.play(Box::new(Tone::new(vec![prompt], Some(1), 8000)), PlayOptions::default());
    run_bridged(&mut a, &mut b, Duration::from_secs(4));
    for pair in [&mut a, &mut b] {
        pair.callwright.set_bridged(false);
    }
    run_bridged(&mut a, &mut b, Duration::from_secs(6));

    let (heard_by_a, heard_by_b) = (heard(&a), heard(&b));
    assert_eq!(heard_by_a.len(), 6 * 8000);
    // Away from each change (the link and the jitter buffers delay it by a few frames): bridged until
    // 2 s, the prompt until 3 s, bridged again until 4 s, then silence.
    let share = |samples: &[i16], from_ms: usize, to_ms: usize, frequency: f32| {
        tone_share(&samples[from_ms * 8..to_ms * 8], frequency)
    };
    for (from, to) in [(250, 2000), (3250, 4000)] {
        assert!(share(&heard_by_a, from, to, 700.0) > 0.95, "A hears B from {from} ms");
    }
    assert!(share(&heard_by_a, 2250, 3000, 1200.0) > 0.95, "A hears the prompt");
    assert!(share(&heard_by_a, 2250, 3000, 700.0) < 0.02, "the prompt replaces B");
    assert!(share(&heard_by_b, 250, 4000, 500.0) > 0.95, "B hears A throughout");
    let after: &[i16] = &heard_by_b[5 * 8000..];
    assert!(after.iter().all(|s| s.unsigned_abs() < 64), "silence once the bridge ended");
}
