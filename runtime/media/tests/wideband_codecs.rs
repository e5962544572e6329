//! G.722 and Opus carry a call like G.711 does: a far end that offers only one of them is answered with
//! it, its audio is heard (a tone through a lossy, reordering link comes out as that tone), what we send
//! steps by the codec's own RTP clock (160 per 20 ms for G.722, whose clock is 8 kHz; 960 for Opus at
//! 48 kHz), and RFC 4733 digits at the codec's clock arrive once each.

mod common;

use std::time::Duration;

use callwright_media::rtp::RtpPacket;
use callwright_media::sdp::{self, LocalMedia, Negotiated, Origin, SessionDescription};
use callwright_media::source::{Tone, ToneStep};
use callwright_media::{Codec, PlayOptions, RecordOptions, SessionConfig, dtmf};
use common::{LinkConditions, Pair, tone_share};

/// The streams both sides agree on when the peer offers only `codec` (and telephone-event).
fn negotiate_only(codec: Codec) -> (Negotiated, Negotiated) {
    let peer_local = LocalMedia { codecs: vec![codec], ..LocalMedia::new("127.0.0.2".parse().unwrap(), 50000) };
    let offer = SessionDescription::parse(&sdp::offer(&peer_local, &mut Origin::new(1))).unwrap();
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
    let (answer, ours) = sdp::answer(&offer, &local, &mut Origin::new(2)).unwrap();
    let theirs = sdp::accept_answer(&SessionDescription::parse(&answer).unwrap(), &peer_local).unwrap();
    (ours, theirs)
}

fn pair_on(codec: Codec) -> Pair {
    let (ours, theirs) = negotiate_only(codec);
    assert_eq!((ours.codec, theirs.codec), (codec, codec));
    assert!(ours.telephone_event.is_some(), "telephone-event at {} Hz", codec.clock_rate());
    Pair::with(SessionConfig::new(ours, 0xca11), SessionConfig::new(theirs, 0xfee7))
}

fn tone(hz: f32, seconds: u64) -> Box<Tone> {
    let step = ToneStep { frequencies: vec![hz], on: Duration::from_secs(seconds), off: Duration::ZERO };
    Box::new(Tone::new(vec![step], Some(1), 8000))
}

#[test]
fn a_tone_through_a_lossy_reordering_link_is_heard_as_that_tone() {
    for codec in [Codec::G722, Codec::Opus] {
        let mut pair = pair_on(codec);
        pair.to_callwright =
            LinkConditions { loss_per_mille: 20, delay: Duration::from_millis(20), jitter: Duration::from_millis(15) };
        pair.peer.play(tone(440.0, 4), PlayOptions::default());
        pair.callwright.record(RecordOptions { max_length: Duration::from_secs(3), ..RecordOptions::default() });
        pair.run_until(Duration::from_secs(4));
        let recorded = pair.recorded();
        assert_eq!(recorded.len(), 3 * 8000, "{codec}: the recording is at 8 kHz whatever the codec");
        // After the jitter buffer's delay, almost every frame holds the tone (a lost one is concealed).
        let frames: Vec<&[i16]> = recorded[8000 / 2..].chunks(160).collect();
        let toned = frames.iter().filter(|frame| tone_share(frame, 440.0) > 0.8).count();
        assert!(toned * 100 >= frames.len() * 90, "{codec}: {toned} of {} frames hold the tone", frames.len());
        assert_eq!(pair.callwright.stats().codec_errors, 0, "{codec}");
    }
}

#[test]
fn what_we_send_steps_by_the_codecs_own_clock() {
    for (codec, step) in [(Codec::G722, 160u32), (Codec::Opus, 960)] {
        let mut pair = pair_on(codec);
        pair.callwright.play(tone(1000.0, 1), PlayOptions::default());
        pair.run_until(Duration::from_millis(500));
        let packets: Vec<RtpPacket<'_>> = pair
            .callwright_sent
            .iter()
            .filter(|(_, t)| !callwright_media::rtp::is_rtcp(&t.data))
            .map(|(_, t)| RtpPacket::parse(&t.data).unwrap())
            .collect();
        assert!(packets.len() >= 24, "{codec}: {} packets", packets.len());
        for pair in packets.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), step, "{codec}");
        }
        if codec == Codec::G722 {
            assert!(packets.iter().all(|p| p.payload.len() == 160), "one octet per two 16 kHz samples");
        }
    }
}

#[test]
fn digits_at_the_codecs_clock_arrive_once_each() {
    for codec in [Codec::G722, Codec::Opus] {
        let mut pair = pair_on(codec);
        pair.peer.send_digits(dtmf::parse_digit_string("159#").unwrap(), Duration::from_millis(120)).unwrap();
        pair.run_until(Duration::from_secs(3));
        assert_eq!(pair.digits_heard(), "159#", "{codec}");
    }
}
