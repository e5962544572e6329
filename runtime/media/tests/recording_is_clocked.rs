//! A recording is as long as the time it ran, whether RTP arrived or not (silence is written for the gaps),
//! and it ends on its maximum length, on silence after speech, on no input, or on a finish key, which is
//! not reported as a digit too. A beep plays before it starts.

mod common;

use std::time::Duration;

use callwright_media::dtmf;
use callwright_media::source::{Tone, ToneStep};
use callwright_media::{MediaEvent, PlayOptions, RecordDirection, RecordOptions, RecordingEnd};
use common::{Pair, tone_share};

fn ended(pair: &Pair) -> Vec<(Duration, RecordingEnd, Duration)> {
    pair.callwright_events
        .iter()
        .filter_map(|(at, e)| match e {
            MediaEvent::RecordingEnded { reason, duration, .. } => Some((*at, *reason, *duration)),
            _ => None,
        })
        .collect()
}

fn speak(pair: &mut Pair, seconds: u64) {
    let step = ToneStep { frequencies: vec![500.0], on: Duration::from_secs(seconds), off: Duration::ZERO };
    pair.peer.play(Box::new(Tone::new(vec![step], Some(1), 8000)), PlayOptions::default());
}

#[test]
fn no_rtp_still_records_the_time_that_passed() {
    let mut pair = Pair::new(true);
    pair.to_callwright.loss_per_mille = 1000;
    pair.callwright.record(RecordOptions { max_length: Duration::from_secs(3), ..RecordOptions::default() });
    pair.run_until(Duration::from_secs(5));
    assert_eq!(pair.recorded().len(), 3 * 8000);
    assert_eq!(ended(&pair).iter().map(|e| e.1).collect::<Vec<_>>(), [RecordingEnd::MaxLength]);
}

#[test]
fn it_ends_on_silence_after_speech_and_on_no_input() {
    let mut pair = Pair::new(true);
    speak(&mut pair, 2);
    pair.callwright.record(RecordOptions { end_on_silence: Some(Duration::from_secs(1)), ..RecordOptions::default() });
    pair.run_until(Duration::from_secs(6));
    let [(at, RecordingEnd::Silence, length)] = ended(&pair)[..] else { panic!("{:?}", ended(&pair)) };
    assert!(at > Duration::from_millis(2900) && at < Duration::from_millis(3200), "{at:?}");
    assert_eq!(pair.recorded().len() as u128, length.as_millis() * 8);

    let mut quiet = Pair::new(true);
    quiet
        .callwright
        .record(RecordOptions { initial_timeout: Some(Duration::from_secs(2)), ..RecordOptions::default() });
    quiet.run_until(Duration::from_secs(4));
    assert_eq!(ended(&quiet).iter().map(|e| e.1).collect::<Vec<_>>(), [RecordingEnd::NoInput]);
}

#[test]
fn a_finish_key_ends_it_and_is_not_a_digit() {
    let mut pair = Pair::new(true);
    pair.callwright.record(RecordOptions { finish_on_keys: "#".into(), ..RecordOptions::default() });
    pair.peer.send_digits(dtmf::parse_digit_string("1#2").unwrap(), Duration::from_millis(100)).unwrap();
    pair.run_until(Duration::from_secs(2));
    assert_eq!(ended(&pair).iter().map(|e| e.1).collect::<Vec<_>>(), [RecordingEnd::Key('#')]);
    assert_eq!(pair.digits_heard(), "12");
}

#[test]
fn stereo_both_directions_with_a_beep_first() {
    let mut pair = Pair::new(true);
    speak(&mut pair, 3);
    let step = ToneStep { frequencies: vec![1500.0], on: Duration::from_secs(3), off: Duration::ZERO };
    let id = pair.callwright.record(RecordOptions {
        direction: RecordDirection::Both,
        stereo: true,
        beep: true,
        ..RecordOptions::default()
    });
    pair.callwright.play(Box::new(Tone::new(vec![step], Some(1), 8000)), PlayOptions::default());
    pair.run_until(Duration::from_secs(2));
    pair.callwright.stop_recording(id);
    pair.run_until(Duration::from_millis(2100));
    let recorded = pair.recorded();
    let left: Vec<i16> = recorded.iter().step_by(2).copied().collect();
    let right: Vec<i16> = recorded.iter().skip(1).step_by(2).copied().collect();
    // The frames of 400 ms to 2,000 ms, both ends included: the beep's 400 ms are not recorded.
    assert_eq!(left.len() as u128, (2000 - 400 + 20) * 8);
    assert!(tone_share(&left[4000..], 500.0) > 0.9, "left: the far end");
    assert!(tone_share(&right[4000..], 1500.0) > 0.9, "right: what we sent");
    let beep: Vec<i16> = pair
        .callwright_sent
        .iter()
        .take(20)
        .flat_map(|(_, t)| callwright_media::rtp::RtpPacket::parse(&t.data).unwrap().payload.to_vec())
        .map(callwright_media::g711::mulaw_decode)
        .collect();
    assert!(tone_share(&beep, 1000.0) > 0.9, "the first 400 ms sent are the beep");
}
