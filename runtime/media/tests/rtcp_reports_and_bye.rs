//! RTCP: each side sends reports every few seconds (an SR while it sends, with a report block on what it
//! hears), a BYE when it closes; callwright reports the far end's BYE, and ignores a BYE from a stranger.

mod common;

use std::time::Duration;

use callwright_media::rtcp::{self, RtcpPacket};
use callwright_media::{MediaEvent, Socket};
use common::Pair;

fn reports(pair: &Pair) -> Vec<(Duration, Vec<RtcpPacket>)> {
    pair.callwright_sent
        .iter()
        .filter(|(_, t)| callwright_media::rtp::is_rtcp(&t.data))
        .map(|(at, t)| (*at, rtcp::parse(&t.data).unwrap()))
        .collect()
}

#[test]
fn reports_are_sent_every_few_seconds_with_what_we_heard() {
    let mut pair = Pair::new(true);
    pair.to_callwright.loss_per_mille = 100;
    pair.run_until(Duration::from_secs(31));
    let sent = reports(&pair);
    assert!((4..=12).contains(&sent.len()), "{} reports in 30 s", sent.len());
    let last = &sent.last().unwrap().1;
    let RtcpPacket::SenderReport { info, reports, .. } = &last[0] else { panic!("{last:?}") };
    assert!(info.packets > 1000);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].cumulative_lost > 50, "{:?}", reports[0]);
    assert!(pair.callwright_sent.iter().all(|(_, t)| t.socket == Socket::Rtp), "rtcp-mux was offered and answered");
}

#[test]
fn a_bye_from_the_far_end_is_reported_and_a_strangers_ignored() {
    let mut pair = Pair::new(true);
    pair.run_until(Duration::from_secs(1));
    let bye = rtcp::build(0xfee7, None, None, "x", true);
    pair.inject("127.0.0.66:50000".parse().unwrap(), &bye);
    pair.run_until(Duration::from_secs(2));
    assert!(!pair.callwright_events.iter().any(|(_, e)| *e == MediaEvent::RemoteBye));
    let now = pair.now;
    pair.peer.close(now);
    pair.run_until(Duration::from_secs(3));
    assert!(pair.callwright_events.iter().any(|(_, e)| *e == MediaEvent::RemoteBye));
}

#[test]
fn closing_sends_a_bye_and_ends_what_runs() {
    let mut pair = Pair::new(true);
    pair.callwright.record(Default::default());
    pair.run_until(Duration::from_millis(500));
    let now = pair.now;
    pair.callwright.close(now);
    pair.run_until(Duration::from_secs(1));
    let last = reports(&pair).pop().unwrap().1;
    assert!(matches!(last.last(), Some(RtcpPacket::Goodbye { .. })));
    assert!(pair.callwright_events.iter().any(|(_, e)| matches!(e, MediaEvent::RecordingEnded { .. })));
}
