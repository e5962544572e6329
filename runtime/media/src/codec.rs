//! The audio codecs a session can send and receive, and how each turns samples into payloads.
//!
//! Inside callwright every call's audio is 16-bit linear at 8 kHz ([`SAMPLE_RATE`]): prompts, recordings,
//! bridges and conferences all meet at that rate, whatever the codec on the wire. G.711 is 8 kHz already,
//! one byte per sample. G.722 codes 16 kHz and is converted at its edge (so it sounds like narrowband, but
//! a peer that speaks only G.722 is understood); Opus is coded and decoded at 8 kHz by libopus. RTP clocks
//! differ: 8 kHz for G.711 and G.722 (RFC 3551 §4.5.2), 48 kHz for Opus (RFC 7587), so a frame's
//! timestamp step is [`Codec::timestamp_units_per_sample`] times its samples.

use crate::g711;
use crate::g722;
use crate::resample::{Downsampler, Upsampler};

/// The rate of every call's audio inside callwright.
pub const SAMPLE_RATE: u32 = 8000;

/// An audio codec callwright encodes and decodes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9.
    G722,
    /// Opus (RFC 7587), a dynamic payload type.
    Opus,
}

impl Codec {
    /// Every codec, in the default order of preference: G.711 first, as it costs least and loses nothing
    /// at the rate calls are carried at.
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    /// The encoding name of `a=rtpmap` (case-insensitive on the wire).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48000,
            _ => 8000,
        }
    }

    /// RTP timestamp units per sample of [`SAMPLE_RATE`] audio.
    pub fn timestamp_units_per_sample(self) -> u32 {
        self.clock_rate() / SAMPLE_RATE
    }

    /// The payload type RFC 3551 assigns, if any.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
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

    /// Whether RTP may carry this codec in packets of `ptime_ms` (Opus frames are 10, 20, 40 or 60 ms).
    pub fn allows_ptime(self, ptime_ms: u32) -> bool {
        match self {
            Codec::Opus => matches!(ptime_ms, 10 | 20 | 40 | 60),
            _ => true,
        }
    }

    /// Samples of [`SAMPLE_RATE`] audio in one frame of `ptime_ms`.
    pub fn samples_per_frame(self, ptime_ms: u32) -> usize {
        (SAMPLE_RATE * ptime_ms / 1000) as usize
    }

    /// The encoder of one stream.
    pub fn encoder(self) -> Result<Encoder, crate::Error> {
        Ok(match self {
            Codec::Pcmu | Codec::Pcma => Encoder::G711(self),
            Codec::G722 => Encoder::G722(Box::default()),
            Codec::Opus => Encoder::Opus(callwright_opus::Encoder::new().map_err(codec_failed)?),
        })
    }

    /// The decoder of one stream.
    pub fn decoder(self) -> Result<Decoder, crate::Error> {
        Ok(match self {
            Codec::Pcmu | Codec::Pcma => Decoder::G711(self),
            Codec::G722 => Decoder::G722(Box::default()),
            Codec::Opus => Decoder::Opus(callwright_opus::Decoder::new().map_err(codec_failed)?),
        })
    }
}

fn codec_failed(error: callwright_opus::Error) -> crate::Error {
    crate::Error::UnsupportedAudio(error.to_string())
}

/// Turns one stream's frames of [`SAMPLE_RATE`] audio into payloads; G.722 and Opus keep state from frame
/// to frame, so each stream has its own.
#[derive(Debug)]
pub enum Encoder {
    /// µ-law or A-law: a table per sample.
    G711(Codec),
    /// G.722 behind an 8 → 16 kHz converter.
    G722(Box<(Upsampler, g722::Encoder, Vec<i16>)>),
    /// Opus at 8 kHz.
    Opus(callwright_opus::Encoder),
}

impl Encoder {
    /// Appends the payload of one frame of `samples` to `out`.
    pub fn encode(&mut self, samples: &[i16], out: &mut Vec<u8>) -> Result<(), crate::Error> {
        match self {
            Encoder::G711(Codec::Pcma) => out.extend(samples.iter().map(|&s| g711::alaw_encode(s))),
            Encoder::G711(_) => out.extend(samples.iter().map(|&s| g711::mulaw_encode(s))),
            Encoder::G722(state) => {
                let (upsampler, encoder, wide) = &mut **state;
                wide.clear();
                upsampler.process(samples, wide);
                encoder.encode(wide, out);
            }
            Encoder::Opus(encoder) => encoder.encode(samples, out).map_err(codec_failed)?,
        }
        Ok(())
    }
}

/// Turns one stream's payloads into [`SAMPLE_RATE`] audio.
#[derive(Debug)]
pub enum Decoder {
    /// µ-law or A-law.
    G711(Codec),
    /// G.722 then a 16 → 8 kHz converter.
    G722(Box<(g722::Decoder, Downsampler, Vec<i16>)>),
    /// Opus at 8 kHz.
    Opus(callwright_opus::Decoder),
}

impl Decoder {
    /// Appends the samples of `payload` to `out`; a payload the codec cannot read adds nothing.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), crate::Error> {
        match self {
            Decoder::G711(Codec::Pcma) => out.extend(payload.iter().map(|&b| g711::alaw_decode(b))),
            Decoder::G711(_) => out.extend(payload.iter().map(|&b| g711::mulaw_decode(b))),
            Decoder::G722(state) => {
                let (decoder, downsampler, wide) = &mut **state;
                wide.clear();
                decoder.decode(payload, wide);
                downsampler.process(wide, out);
            }
            Decoder::Opus(decoder) => decoder.decode(payload, out).map_err(codec_failed)?,
        }
        Ok(())
    }
}

impl std::fmt::Display for Codec {
    /// As in `a=rtpmap`: `PCMU/8000`, `G722/8000`, `opus/48000/2` (RFC 7587 §7 always says two channels).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.encoding_name(), self.clock_rate())?;
        if *self == Codec::Opus {
            f.write_str("/2")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Codec {
    type Err = crate::Error;

    /// Reads `PCMU`, `pcma`, `G722`, `opus`, or the rtpmap forms `PCMU/8000` and `opus/48000/2`, as apps
    /// name codecs in their preference lists.
    fn from_str(text: &str) -> Result<Codec, crate::Error> {
        let unknown = || crate::Error::UnknownCodec(text.to_string());
        let mut parts = text.split('/');
        let name = parts.next().unwrap_or_default();
        let codec =
            Codec::ALL.into_iter().find(|c| c.encoding_name().eq_ignore_ascii_case(name)).ok_or_else(unknown)?;
        match parts.next() {
            Some(rate) if rate.parse() != Ok(codec.clock_rate()) => Err(unknown()),
            _ => Ok(codec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_with_or_without_the_rate() {
        assert_eq!("pcma".parse::<Codec>().unwrap(), Codec::Pcma);
        assert_eq!("PCMU/8000".parse::<Codec>().unwrap(), Codec::Pcmu);
        assert_eq!("g722".parse::<Codec>().unwrap(), Codec::G722);
        assert_eq!("OPUS/48000/2".parse::<Codec>().unwrap(), Codec::Opus);
        assert!("G729".parse::<Codec>().is_err());
        assert!("PCMU/16000".parse::<Codec>().is_err());
        assert!("opus/8000".parse::<Codec>().is_err());
    }

    #[test]
    fn a_frame_round_trips_through_each_codec() {
        let samples: Vec<i16> = (0..160).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut payload = Vec::new();
            codec.encoder().unwrap().encode(&samples, &mut payload).unwrap();
            assert_eq!(payload.len(), codec.samples_per_frame(20));
            let mut decoded = Vec::new();
            codec.decoder().unwrap().decode(&payload, &mut decoded).unwrap();
            let worst = samples.iter().zip(&decoded).map(|(a, b)| (a - b).abs()).max().unwrap();
            assert!(worst < 300, "{codec}: {worst}");
        }
    }

    #[test]
    fn every_codec_carries_a_tone_frame_by_frame_at_its_level() {
        let tone: Vec<i16> = (0..8000).map(|n| (8000.0 * (n as f32 * 0.3).sin()) as i16).collect();
        let rms = |s: &[i16]| (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        for codec in Codec::ALL {
            let (mut encoder, mut decoder) = (codec.encoder().unwrap(), codec.decoder().unwrap());
            let mut decoded = Vec::new();
            for frame in tone.chunks(codec.samples_per_frame(20)) {
                let mut payload = Vec::new();
                encoder.encode(frame, &mut payload).unwrap();
                let before = decoded.len();
                decoder.decode(&payload, &mut decoded).unwrap();
                assert_eq!(decoded.len() - before, 160, "{codec}");
            }
            let (level, original) = (rms(&decoded[1000..]), rms(&tone[1000..]));
            assert!((level / original - 1.0).abs() < 0.15, "{codec}: {level} vs {original}");
        }
        assert_eq!(Codec::G722.to_string(), "G722/8000");
        assert_eq!(Codec::Opus.to_string(), "opus/48000/2");
        assert_eq!(Codec::Opus.timestamp_units_per_sample(), 6);
    }
}
