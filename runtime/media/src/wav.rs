//! WAV files in and out: prompts people upload or link to, and recordings.
//!
//! Reading accepts what prompt tools write: PCM of 8, 16, 24 or 32 bits, µ-law, A-law and 32-bit float,
//! plain or `WAVE_FORMAT_EXTENSIBLE`, any rate and channel count; it returns mono at the rate asked for.

use crate::{Error, g711, resample};

/// Audio decoded from a WAV file: mono samples at `rate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The samples.
    pub samples: Vec<i16>,
    /// Their rate.
    pub rate: u32,
}

const PCM: u16 = 1;
const FLOAT: u16 = 3;
const ALAW: u16 = 6;
const MULAW: u16 = 7;
const EXTENSIBLE: u16 = 0xfffe;

/// Decodes a WAV file to mono at `rate` Hz.
pub fn decode(bytes: &[u8], rate: u32) -> Result<Decoded, Error> {
    let unsupported = |why: String| Error::UnsupportedAudio(why);
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(unsupported("not a RIFF/WAVE file".into()));
    }
    let mut format = None;
    let mut data = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        let body = &bytes[at + 8..(at + 8).saturating_add(size).min(bytes.len())];
        match id {
            b"fmt " => format = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        at = at + 8 + size + (size & 1);
    }
    let format = format.ok_or_else(|| unsupported("the WAV file has no fmt chunk".into()))?;
    let data = data.ok_or_else(|| unsupported("the WAV file has no data chunk".into()))?;
    if format.len() < 16 {
        return Err(unsupported("the WAV fmt chunk is too short".into()));
    }
    let word = |i: usize| u16::from_le_bytes([format[i], format[i + 1]]);
    let mut tag = word(0);
    let channels = usize::from(word(2));
    let source_rate = u32::from_le_bytes([format[4], format[5], format[6], format[7]]);
    let bits = word(14);
    if tag == EXTENSIBLE && format.len() >= 26 {
        tag = word(24);
    }
    if channels == 0 || source_rate == 0 || !(1000..=384_000).contains(&source_rate) {
        return Err(unsupported(format!("a WAV of {channels} channels at {source_rate} Hz")));
    }
    let linear: Vec<i32> = match (tag, bits) {
        (PCM, 8) => data.iter().map(|b| (i32::from(*b) - 128) << 8).collect(),
        (PCM, 16) => data.chunks_exact(2).map(|c| i32::from(i16::from_le_bytes([c[0], c[1]]))).collect(),
        (PCM, 24) => data.chunks_exact(3).map(|c| i32::from(i16::from_le_bytes([c[1], c[2]]))).collect(),
        (PCM, 32) => data.chunks_exact(4).map(|c| i32::from(i16::from_le_bytes([c[2], c[3]]))).collect(),
        (FLOAT, 32) => data
            .chunks_exact(4)
            .map(|c| (f32::from_le_bytes([c[0], c[1], c[2], c[3]]).clamp(-1.0, 1.0) * 32767.0) as i32)
            .collect(),
        (MULAW, 8) => data.iter().map(|b| i32::from(g711::mulaw_decode(*b))).collect(),
        (ALAW, 8) => data.iter().map(|b| i32::from(g711::alaw_decode(*b))).collect(),
        _ => {
            return Err(unsupported(format!(
                "WAV format {tag} with {bits} bits per sample is not PCM, µ-law or A-law"
            )));
        }
    };
    let mono: Vec<i16> = linear
        .chunks_exact(channels)
        .map(|frame| (frame.iter().sum::<i32>() / channels as i32).clamp(-32768, 32767) as i16)
        .collect();
    Ok(Decoded { samples: resample::convert(&mono, source_rate, rate), rate })
}

/// A 16-bit PCM WAV file of interleaved `samples` with `channels` channels at `rate`.
pub fn encode(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&PCM.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back() {
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let decoded = decode(&encode(&samples, 8000, 1), 8000).unwrap();
        assert_eq!(decoded.samples, samples);
    }

    #[test]
    fn stereo_at_16_khz_becomes_mono_at_8() {
        let stereo: Vec<i16> = (0..3200).flat_map(|_| [1000, 3000]).collect();
        let decoded = decode(&encode(&stereo, 16000, 2), 8000).unwrap();
        assert!((1590..=1610).contains(&decoded.samples.len()), "{}", decoded.samples.len());
        assert!(decoded.samples[100..1500].iter().all(|s| (s - 2000).abs() < 20), "{:?}", &decoded.samples[..10]);
    }

    #[test]
    fn mulaw_files_decode() {
        let mut file = encode(&[], 8000, 1);
        file[20..22].copy_from_slice(&MULAW.to_le_bytes());
        file[34..36].copy_from_slice(&8u16.to_le_bytes());
        file.extend_from_slice(&[0xff, 0x80]);
        file[40..44].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode(&file, 8000).unwrap().samples, [0, g711::mulaw_decode(0x80)]);
    }

    #[test]
    fn files_we_cannot_play_say_why() {
        let mut adpcm = encode(&[0; 10], 8000, 1);
        adpcm[20..22].copy_from_slice(&2u16.to_le_bytes());
        for (bytes, says) in [
            (b"ID3\x03mp3 data".to_vec(), "RIFF"),
            (adpcm, "format 2"),
            (b"RIFF\0\0\0\0WAVEdata\0\0\0\0".to_vec(), "fmt"),
        ] {
            let error = decode(&bytes, 8000).unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
    }
}
