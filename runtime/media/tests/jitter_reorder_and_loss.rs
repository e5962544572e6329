//! Audio over a reordering, lossy link comes out in order: a recording of a tone the peer plays holds that
//! tone, reordered packets are put back, lost ones concealed, late ones dropped and counted.

mod common;

use std::time::Duration;

use callwright_media::source::{Tone, ToneStep};
use callwright_media::{PlayOptions, RecordOptions};
use common::{LinkConditions, Pair, tone_share};

fn play_tone(pair: &mut Pair, frequency: f32, seconds: u64) {
    let step = ToneStep { frequencies: vec![frequency], on: Duration::from_secs(seconds), off: Duration::ZERO };
    pair.peer.play(Box::new(Tone::new(vec![step], Some(1), 8000)), PlayOptions::default());
}

#[test]
fn reordered_packets_are_heard_in_order() {
    let mut pair = Pair::new(true);
    // Up to 40 ms of extra delay reorders about every other packet; the buffer holds 60 ms.
    pair.to_callwright =
        LinkConditions { loss_per_mille: 0, delay: Duration::from_millis(20), jitter: Duration::from_millis(40) };
    play_tone(&mut pair, 1000.0, 3);
    pair.callwright.record(RecordOptions::default());
    pair.run_until(Duration::from_secs(3));
    let recorded = pair.recorded();
    let middle = &recorded[8000..16000];
    assert!(tone_share(middle, 1000.0) > 0.9, "{}", tone_share(middle, 1000.0));
    let stats = pair.callwright.stats();
    assert_eq!((stats.packets_late, stats.packets_lost), (0, 0), "{stats:?}");
}

#[test]
fn loss_is_concealed_and_late_packets_dropped() {
    let mut pair = Pair::new(true);
    pair.to_callwright =
        LinkConditions { loss_per_mille: 50, delay: Duration::from_millis(20), jitter: Duration::from_millis(200) };
    play_tone(&mut pair, 600.0, 4);
    pair.callwright.record(RecordOptions::default());
    pair.run_until(Duration::from_secs(4));
    let stats = pair.callwright.stats();
    assert!(stats.packets_lost > 0 && stats.packets_late > 0, "{stats:?}");
    let recorded = pair.recorded();
    assert!(tone_share(&recorded[8000..24000], 600.0) > 0.45, "{}", tone_share(&recorded[8000..24000], 600.0));
    assert!(stats.jitter_us > 10_000, "jitter is measured: {stats:?}");
}
