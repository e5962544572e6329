//! MP3 prompts: a file people upload or link to, decoded once to mono at the rate a call plays it.
//!
//! symphonia reads the MPEG audio frames (after any ID3v2 tag) and decodes them; a frame that does not
//! decode is skipped, as players do, but a file in which none decodes is refused.

use std::io::Cursor;

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::wav::Decoded;
use crate::{Error, resample};

/// Whether `bytes` look like MP3: an ID3v2 tag or an MPEG audio frame header (11 sync bits, layer III).
pub fn looks_like_mp3(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xff && bytes[1] & 0xe6 == 0xe2)
}

/// Decodes an MP3 file to mono at `rate` Hz.
pub fn decode(bytes: &[u8], rate: u32) -> Result<Decoded, Error> {
    let unsupported = |why: String| Error::UnsupportedAudio(why);
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut format = symphonia::default::get_probe()
        .probe(&hint, source, FormatOptions::default(), MetadataOptions::default())
        .map_err(|error| unsupported(format!("not an MP3 file we can read ({error})")))?;
    let track = format.first_track(TrackType::Audio).ok_or_else(|| unsupported("the MP3 file has no audio".into()))?;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(unsupported("the MP3 file has no audio".into()));
    };
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|error| unsupported(format!("its audio cannot be decoded ({error})")))?;

    let (mut mono, mut interleaved) = (Vec::new(), Vec::<f32>::new());
    let mut source_rate = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A damaged frame in the stream: what came before it stays.
            Err(DecodeError::DecodeError(_)) => continue,
            Err(_) => break,
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(DecodeError::DecodeError(_)) => continue,
            Err(error) => return Err(unsupported(format!("decoding failed: {error}"))),
        };
        let spec = buffer.spec();
        let (frame_rate, channels) = (spec.rate(), spec.channels().count().max(1));
        if *source_rate.get_or_insert(frame_rate) != frame_rate {
            return Err(unsupported("the MP3 file changes its sample rate".into()));
        }
        interleaved.clear();
        buffer.copy_to_vec_interleaved(&mut interleaved);
        mono.extend(interleaved.chunks_exact(channels).map(|frame| {
            let sum: f32 = frame.iter().sum();
            (sum / channels as f32 * 32767.0).round().clamp(-32768.0, 32767.0) as i16
        }));
    }
    let source_rate = source_rate.ok_or_else(|| unsupported("no frame of the MP3 file decodes".into()))?;
    Ok(Decoded { samples: resample::convert(&mono, source_rate, rate), rate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_encoded_by_lame_decodes_to_that_tone_at_the_rate_asked_for() {
        let bytes = include_bytes!("../../../tests/fixtures/tone-1khz-1s.mp3");
        assert!(looks_like_mp3(bytes));
        let decoded = decode(bytes, 8000).unwrap();
        // LAME pads the start and end by a frame or two: about a second.
        assert!((7800..=8800).contains(&decoded.samples.len()), "{}", decoded.samples.len());
        let middle = &decoded.samples[2000..6000];
        let rms = (middle.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
        assert!((rms - 5657.0).abs() < 600.0, "level {rms}");
        // The power at 1 kHz (Goertzel) against all the power: a pure tone gives one.
        let coefficient = 2.0 * (2.0 * std::f64::consts::PI * 1000.0 / 8000.0).cos();
        let (mut s1, mut s2, mut energy) = (0.0, 0.0, 0.0);
        for &x in middle {
            let x = f64::from(x);
            energy += x * x;
            (s1, s2) = (x + coefficient * s1 - s2, s1);
        }
        let share = (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / (middle.len() as f64 / 2.0 * energy);
        assert!(share > 0.9, "1 kHz share {share}");
    }

    #[test]
    fn what_is_not_mp3_is_refused_with_a_reason() {
        assert!(!looks_like_mp3(b"RIFF....WAVE"));
        assert!(looks_like_mp3(b"ID3\x04\0\0\0\0\0\0"));
        assert!(looks_like_mp3(&[0xff, 0xfb, 0x90, 0x64]));
        let garbage: Vec<u8> = [0xff, 0xfb].into_iter().chain((0..5000).map(|i| (i * 7 % 251) as u8)).collect();
        let error = decode(&garbage, 8000).unwrap_err();
        assert!(matches!(error, Error::UnsupportedAudio(_)), "{error}");
    }
}
