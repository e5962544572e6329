//! RTP packets (RFC 3550 §5.1): parsing what arrives, writing what we send.
//!
//! Parsing borrows the datagram; nothing is copied until a payload is kept (the jitter buffer).

use crate::Error;

/// The fixed header is 12 bytes; CSRCs and an extension follow it.
pub const RTP_HEADER_LEN: usize = 12;

/// An RTP packet read from a datagram; `payload` borrows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The marker bit: the first packet of a talk spurt, or the start of a DTMF event.
    pub marker: bool,
    /// The payload type (0–127).
    pub payload_type: u8,
    /// The sequence number, which wraps at 65,536.
    pub sequence: u16,
    /// The media timestamp, in the clock rate of the payload type.
    pub timestamp: u32,
    /// The sender's synchronisation source.
    pub ssrc: u32,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses a datagram that `is_rtcp` did not claim.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Error> {
        if datagram.len() < RTP_HEADER_LEN {
            return Err(Error::Malformed("RTP packet shorter than its 12-byte header"));
        }
        if datagram[0] >> 6 != 2 {
            return Err(Error::Malformed("RTP version is not 2"));
        }
        let padding = datagram[0] & 0x20 != 0;
        let extension = datagram[0] & 0x10 != 0;
        let csrc_count = usize::from(datagram[0] & 0x0f);
        let mut start = RTP_HEADER_LEN + 4 * csrc_count;
        if extension {
            let words = datagram
                .get(start + 2..start + 4)
                .ok_or(Error::Malformed("RTP header extension runs past the packet"))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = datagram.len();
        if padding {
            let pad = usize::from(datagram[end - 1]);
            if pad == 0 || pad > end {
                return Err(Error::Malformed("RTP padding is longer than the packet"));
            }
            end -= pad;
        }
        if start > end {
            return Err(Error::Malformed("RTP header runs past the packet"));
        }
        Ok(Self {
            marker: datagram[1] & 0x80 != 0,
            payload_type: datagram[1] & 0x7f,
            sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
            timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
            ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
            payload: &datagram[start..end],
        })
    }

    /// Appends the packet (no CSRCs, extension or padding) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.reserve(RTP_HEADER_LEN + self.payload.len());
        out.push(0x80);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }

    /// The packet as a new datagram.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

/// Whether a datagram on a multiplexed port is RTCP rather than RTP (RFC 5761 §4: RTCP packet types
/// 192–223 fall where RTP would have a marker bit and payload types 64–95, which no one assigns).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// The signed distance from `from` to `to` in sequence-number space (RFC 3550 A.1's wrap handling).
pub fn sequence_distance(from: u16, to: u16) -> i32 {
    i32::from(to.wrapping_sub(from) as i16)
}

/// The signed distance from `from` to `to` in timestamp space.
pub fn timestamp_distance(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_packet_parses_back() {
        let packet = RtpPacket {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xfffffff0,
            ssrc: 7,
            payload: b"abc",
        };
        assert_eq!(RtpPacket::parse(&packet.to_bytes()).unwrap(), packet);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut bytes = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        bytes.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one extension word
        bytes.extend_from_slice(b"payload");
        bytes.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        assert_eq!(RtpPacket::parse(&bytes).unwrap().payload, b"payload");
    }

    #[test]
    fn malformed_packets_are_refused_not_panicked_on() {
        for bad in [&[0x80u8, 0][..], &[0x40; 12], &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0x8f; 13], &[0x90; 14]] {
            assert!(RtpPacket::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn distances_wrap() {
        assert_eq!(sequence_distance(65535, 1), 2);
        assert_eq!(sequence_distance(1, 65535), -2);
        assert_eq!(timestamp_distance(u32::MAX - 79, 80), 160);
    }
}
