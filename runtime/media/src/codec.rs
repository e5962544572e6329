//! The audio codecs a session can send and receive, and how each turns samples into payloads.
//!
//! Every session works in 16-bit linear samples at the codec's clock rate; the G.711 pair is 8 kHz with one
//! byte per sample, so a 20 ms frame is 160 samples and 160 bytes.

use crate::g711;

/// An audio codec callwright encodes and decodes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// Every codec, in the default order of preference.
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// The encoding name of `a=rtpmap` (case-insensitive on the wire).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// The payload type RFC 3551 assigns, if any.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
        }
    }

    /// The codec with this encoding name (as in `a=rtpmap:0 PCMU/8000`) and clock rate.
    pub fn from_encoding(name: &str, clock_rate: u32) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.encoding_name().eq_ignore_ascii_case(name) && c.clock_rate() == clock_rate)
    }

    /// The codec of a static payload type, when the SDP gives no rtpmap for it.
    pub fn from_static_payload_type(payload_type: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.static_payload_type() == Some(payload_type))
    }

    /// Samples in one frame of `ptime_ms`.
    pub fn samples_per_frame(self, ptime_ms: u32) -> usize {
        (self.clock_rate() * ptime_ms / 1000) as usize
    }

    /// Appends the payload for `samples` to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        match self {
            Codec::Pcmu => out.extend(samples.iter().map(|&s| g711::mulaw_encode(s))),
            Codec::Pcma => out.extend(samples.iter().map(|&s| g711::alaw_encode(s))),
        }
    }

    /// Appends the samples of `payload` to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Codec::Pcmu => out.extend(payload.iter().map(|&b| g711::mulaw_decode(b))),
            Codec::Pcma => out.extend(payload.iter().map(|&b| g711::alaw_decode(b))),
        }
    }

    /// The samples a payload of `len` bytes holds.
    pub fn samples_in_payload(self, len: usize) -> usize {
        len
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.encoding_name(), self.clock_rate())
    }
}

impl std::str::FromStr for Codec {
    type Err = crate::Error;

    /// Reads `PCMU`, `pcma`, or `PCMU/8000`, as apps name codecs in their preference lists.
    fn from_str(text: &str) -> Result<Codec, crate::Error> {
        let (name, rate) = match text.split_once('/') {
            Some((name, rate)) => (name, rate.parse().map_err(|_| crate::Error::UnknownCodec(text.to_string()))?),
            None => (text, 8000),
        };
        Codec::from_encoding(name, rate).ok_or_else(|| crate::Error::UnknownCodec(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_with_or_without_the_rate() {
        assert_eq!("pcma".parse::<Codec>().unwrap(), Codec::Pcma);
        assert_eq!("PCMU/8000".parse::<Codec>().unwrap(), Codec::Pcmu);
        assert!("G729".parse::<Codec>().is_err());
        assert!("PCMU/16000".parse::<Codec>().is_err());
    }

    #[test]
    fn a_frame_round_trips_through_each_codec() {
        let samples: Vec<i16> = (0..160).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect();
        for codec in Codec::ALL {
            let mut payload = Vec::new();
            codec.encode(&samples, &mut payload);
            assert_eq!(payload.len(), codec.samples_per_frame(20));
            let mut decoded = Vec::new();
            codec.decode(&payload, &mut decoded);
            let worst = samples.iter().zip(&decoded).map(|(a, b)| (a - b).abs()).max().unwrap();
            assert!(worst < 300, "{codec}: {worst}");
        }
    }
}
