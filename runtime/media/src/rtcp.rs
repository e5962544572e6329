//! RTCP (RFC 3550 §6): the compound packets a session sends (a sender or receiver report, SDES CNAME, BYE
//! when it ends) and the reports and BYEs it reads; the receive statistics of §A.1, A.3 and A.8 that its
//! report blocks carry.

use crate::Error;

/// RTCP packet types.
const SENDER_REPORT: u8 = 200;
const RECEIVER_REPORT: u8 = 201;
const SOURCE_DESCRIPTION: u8 = 202;
const GOODBYE: u8 = 203;
const CNAME: u8 = 1;

/// What a sender says of its own stream in an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wall-clock time as a 64-bit NTP timestamp.
    pub ntp_time: u64,
    /// The RTP timestamp matching `ntp_time`.
    pub rtp_time: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// A reception report block: what we heard of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source it reports on.
    pub ssrc: u32,
    /// Loss since the last report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Packets lost in all (24 bits, signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// The highest sequence number received, with the count of wraps in the high 16 bits.
    pub highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of the last SR from the source.
    pub last_sender_report: u32,
    /// The delay since that SR, in units of 1/65536 s.
    pub delay_since_last_sender_report: u32,
}

/// An RTCP packet we act on; others in a compound are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// An SR.
    SenderReport {
        /// The sender.
        ssrc: u32,
        /// Its sender information.
        info: SenderInfo,
        /// Its report blocks.
        reports: Vec<ReportBlock>,
    },
    /// An RR.
    ReceiverReport {
        /// The reporter.
        ssrc: u32,
        /// Its report blocks.
        reports: Vec<ReportBlock>,
    },
    /// A BYE: these sources have left.
    Goodbye {
        /// The sources.
        ssrcs: Vec<u32>,
    },
}

/// Parses a compound RTCP packet. Every packet in it must have version 2 and a length that fits.
pub fn parse(datagram: &[u8]) -> Result<Vec<RtcpPacket>, Error> {
    let mut packets = Vec::new();
    let mut rest = datagram;
    if rest.is_empty() {
        return Err(Error::Malformed("empty RTCP packet"));
    }
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Error::Malformed("RTCP packet shorter than its 4-byte header"));
        }
        if rest[0] >> 6 != 2 {
            return Err(Error::Malformed("RTCP version is not 2"));
        }
        let count = usize::from(rest[0] & 0x1f);
        let length = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        let packet = rest.get(..length).ok_or(Error::Malformed("RTCP length runs past the packet"))?;
        let word = |i: usize| packet.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let truncated = Error::Malformed("RTCP report shorter than its count says");
        match rest[1] {
            SENDER_REPORT => {
                let (Some(ssrc), Some(high), Some(low), Some(rtp_time), Some(packets_sent), Some(octets)) =
                    (word(4), word(8), word(12), word(16), word(20), word(24))
                else {
                    return Err(truncated);
                };
                let info = SenderInfo {
                    ntp_time: u64::from(high) << 32 | u64::from(low),
                    rtp_time,
                    packets: packets_sent,
                    octets,
                };
                packets.push(RtcpPacket::SenderReport { ssrc, info, reports: report_blocks(&packet[28..], count)? });
            }
            RECEIVER_REPORT => {
                let ssrc = word(4).ok_or(truncated)?;
                packets.push(RtcpPacket::ReceiverReport { ssrc, reports: report_blocks(&packet[8..], count)? });
            }
            GOODBYE => {
                let ssrcs = (0..count).map(|i| word(4 + 4 * i)).collect::<Option<Vec<_>>>().ok_or(truncated)?;
                packets.push(RtcpPacket::Goodbye { ssrcs });
            }
            _ => {}
        }
        rest = &rest[length..];
    }
    Ok(packets)
}

fn report_blocks(bytes: &[u8], count: usize) -> Result<Vec<ReportBlock>, Error> {
    (0..count)
        .map(|i| {
            let block =
                bytes.get(24 * i..24 * i + 24).ok_or(Error::Malformed("RTCP report block runs past the packet"))?;
            let word = |j: usize| u32::from_be_bytes([block[j], block[j + 1], block[j + 2], block[j + 3]]);
            let lost = word(4) & 0x00ff_ffff;
            Ok(ReportBlock {
                ssrc: word(0),
                fraction_lost: block[4],
                cumulative_lost: ((lost << 8) as i32) >> 8,
                highest_sequence: word(8),
                jitter: word(12),
                last_sender_report: word(16),
                delay_since_last_sender_report: word(20),
            })
        })
        .collect()
}

/// A compound packet: an SR when `info` is given (we sent since the last report), else an RR; then SDES
/// with `cname`; then a BYE when `goodbye`.
pub fn build(ssrc: u32, info: Option<SenderInfo>, report: Option<ReportBlock>, cname: &str, goodbye: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let blocks = u8::from(report.is_some());
    let start = out.len();
    out.extend_from_slice(&[0x80 | blocks, if info.is_some() { SENDER_REPORT } else { RECEIVER_REPORT }, 0, 0]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(info) = info {
        out.extend_from_slice(&info.ntp_time.to_be_bytes());
        out.extend_from_slice(&info.rtp_time.to_be_bytes());
        out.extend_from_slice(&info.packets.to_be_bytes());
        out.extend_from_slice(&info.octets.to_be_bytes());
    }
    if let Some(block) = report {
        out.extend_from_slice(&block.ssrc.to_be_bytes());
        let lost = (block.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
        out.extend_from_slice(&(u32::from(block.fraction_lost) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&block.highest_sequence.to_be_bytes());
        out.extend_from_slice(&block.jitter.to_be_bytes());
        out.extend_from_slice(&block.last_sender_report.to_be_bytes());
        out.extend_from_slice(&block.delay_since_last_sender_report.to_be_bytes());
    }
    finish_length(&mut out, start);
    let start = out.len();
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    out.extend_from_slice(&[0x81, SOURCE_DESCRIPTION, 0, 0]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&[CNAME, cname.len() as u8]);
    out.extend_from_slice(cname);
    // The item list ends with a zero byte, then pads to a word.
    out.push(0);
    while (out.len() - start) % 4 != 0 {
        out.push(0);
    }
    finish_length(&mut out, start);
    if goodbye {
        let start = out.len();
        out.extend_from_slice(&[0x81, GOODBYE, 0, 0]);
        out.extend_from_slice(&ssrc.to_be_bytes());
        finish_length(&mut out, start);
    }
    out
}

fn finish_length(out: &mut [u8], start: usize) {
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// Reception statistics of one source (RFC 3550 A.1 sequence tracking, A.3 loss, A.8 jitter).
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    started: bool,
    base_sequence: u32,
    max_sequence: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    last_transit: Option<i64>,
    jitter: f64,
}

impl ReceiveStats {
    /// Counts a packet with `sequence` and `timestamp` that arrived at `arrival` (in timestamp units of
    /// any fixed origin).
    pub fn record(&mut self, sequence: u16, timestamp: u32, arrival: i64) {
        if !self.started {
            self.started = true;
            self.base_sequence = u32::from(sequence);
            self.max_sequence = sequence;
        } else if crate::rtp::sequence_distance(self.max_sequence, sequence) > 0 {
            if sequence < self.max_sequence {
                self.cycles += 1 << 16;
            }
            self.max_sequence = sequence;
        }
        self.received += 1;
        let transit = arrival - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = ((transit - last) as i32).unsigned_abs();
            self.jitter += (f64::from(d) - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// The extended highest sequence number.
    pub fn extended_max(&self) -> u32 {
        self.cycles + u32::from(self.max_sequence)
    }

    /// Packets expected less packets received.
    pub fn lost(&self) -> i64 {
        let expected = i64::from(self.extended_max()) - i64::from(self.base_sequence) + 1;
        if self.started { expected - i64::from(self.received) } else { 0 }
    }

    /// Packets received.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// A report block for `ssrc`, moving the interval for the fraction lost on.
    pub fn report(&mut self, ssrc: u32, last_sender_report: u32, delay: u32) -> ReportBlock {
        let expected = self.extended_max().wrapping_sub(self.base_sequence).wrapping_add(1);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)) as u8
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_sequence: self.extended_max(),
            jitter: self.jitter(),
            last_sender_report,
            delay_since_last_sender_report: delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_compound_parses_back() {
        let info = SenderInfo { ntp_time: 0x0102_0304_0506_0708, rtp_time: 160, packets: 3, octets: 480 };
        let block = ReportBlock {
            ssrc: 9,
            fraction_lost: 64,
            cumulative_lost: -2,
            highest_sequence: 70_000,
            jitter: 12,
            ..Default::default()
        };
        let bytes = build(5, Some(info), Some(block), "callwright@node", true);
        assert_eq!(bytes.len() % 4, 0);
        let packets = parse(&bytes).unwrap();
        assert_eq!(
            packets,
            [RtcpPacket::SenderReport { ssrc: 5, info, reports: vec![block] }, RtcpPacket::Goodbye { ssrcs: vec![5] }]
        );
        assert!(crate::rtp::is_rtcp(&bytes));
        let rr = parse(&build(5, None, None, "x", false)).unwrap();
        assert_eq!(rr, [RtcpPacket::ReceiverReport { ssrc: 5, reports: vec![] }]);
    }

    #[test]
    fn malformed_compounds_are_refused() {
        let good = build(5, None, None, "x", false);
        let mut long = good.clone();
        long[3] = 40;
        let mut lying_count = good.clone();
        lying_count[0] = 0x83;
        for bad in [&[][..], &[0x80, 201], &good[..good.len() - 1], &long, &lying_count, &[0x40, 201, 0, 0]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loss_and_wraps_are_counted() {
        let mut stats = ReceiveStats::default();
        for sequence in [65534u16, 65535, 1, 2] {
            stats.record(sequence, u32::from(sequence) * 160, i64::from(sequence) * 160);
        }
        assert_eq!(stats.extended_max(), 65536 + 2);
        assert_eq!(stats.lost(), 1);
        let block = stats.report(1, 0, 0);
        assert_eq!(block.fraction_lost, (256 / 5) as u8);
        assert_eq!(stats.report(1, 0, 0).fraction_lost, 0, "nothing new lost in the next interval");
    }
}
