//! callwright-opus: Opus (RFC 6716) for the media core, over the system's libopus.
//!
//! The media core carries every call at 8 kHz mono, so the encoder takes and the decoder gives 8 kHz mono
//! samples; libopus converts to and from the 48 kHz of the RTP clock (RFC 7587) itself. This crate is the
//! only place where callwright calls C for media: the `unsafe` is here, behind [`Encoder`] and [`Decoder`],
//! whose pointers are owned, never shared, and freed on drop.

use std::ffi::{CStr, c_char, c_int, c_uchar};

/// The sampling rate of the samples going in and out.
pub const SAMPLE_RATE: u32 = 8000;

/// The most samples one packet can hold at [`SAMPLE_RATE`] (120 ms, RFC 6716 §3.2.5).
const MAX_PACKET_SAMPLES: usize = 960;

/// `OPUS_APPLICATION_VOIP`: tuned for speech.
const APPLICATION_VOIP: c_int = 2048;

#[repr(C)]
struct OpusEncoder {
    _private: [u8; 0],
}

#[repr(C)]
struct OpusDecoder {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn opus_encoder_create(rate: i32, channels: c_int, application: c_int, error: *mut c_int) -> *mut OpusEncoder;
    fn opus_encode(encoder: *mut OpusEncoder, pcm: *const i16, frame: c_int, data: *mut c_uchar, max: i32) -> i32;
    fn opus_encoder_destroy(encoder: *mut OpusEncoder);
    fn opus_decoder_create(rate: i32, channels: c_int, error: *mut c_int) -> *mut OpusDecoder;
    fn opus_decode(
        decoder: *mut OpusDecoder,
        data: *const c_uchar,
        len: i32,
        pcm: *mut i16,
        frame: c_int,
        fec: c_int,
    ) -> c_int;
    fn opus_decoder_destroy(decoder: *mut OpusDecoder);
    fn opus_strerror(error: c_int) -> *const c_char;
}

/// An error libopus reported, with its own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "opus: {}", self.0)
    }
}

impl std::error::Error for Error {}

fn error(code: c_int) -> Error {
    // SAFETY: opus_strerror returns a pointer to a static, NUL-terminated string for any code.
    let text = unsafe { CStr::from_ptr(opus_strerror(code)) };
    Error(text.to_string_lossy().into_owned())
}

/// Encodes 8 kHz mono frames of 2.5, 5, 10, 20, 40 or 60 ms.
#[derive(Debug)]
pub struct Encoder(*mut OpusEncoder);

// SAFETY: the encoder is plain memory owned by this value; libopus keeps no thread-local state.
unsafe impl Send for Encoder {}

impl Encoder {
    /// A speech encoder.
    pub fn new() -> Result<Encoder, Error> {
        let mut code = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let encoder = unsafe { opus_encoder_create(SAMPLE_RATE as i32, 1, APPLICATION_VOIP, &mut code) };
        if encoder.is_null() || code != 0 {
            return Err(error(code));
        }
        Ok(Encoder(encoder))
    }

    /// Appends the packet for one frame of `samples` to `out`.
    pub fn encode(&mut self, samples: &[i16], out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        // 1275 octets is the largest frame Opus codes (RFC 6716 §3.4, R2).
        out.resize(start + 1275, 0);
        // SAFETY: `samples` holds the frame's samples and `out[start..]` 1275 writable octets.
        let written =
            unsafe { opus_encode(self.0, samples.as_ptr(), samples.len() as c_int, out[start..].as_mut_ptr(), 1275) };
        if written < 0 {
            out.truncate(start);
            return Err(error(written));
        }
        out.truncate(start + written as usize);
        Ok(())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create and freed once.
        unsafe { opus_encoder_destroy(self.0) }
    }
}

/// Decodes packets into 8 kHz mono samples (a stereo stream is mixed down).
#[derive(Debug)]
pub struct Decoder {
    decoder: *mut OpusDecoder,
    scratch: Vec<i16>,
}

// SAFETY: as for the encoder.
unsafe impl Send for Decoder {}

impl Decoder {
    /// A decoder.
    pub fn new() -> Result<Decoder, Error> {
        let mut code = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let decoder = unsafe { opus_decoder_create(SAMPLE_RATE as i32, 1, &mut code) };
        if decoder.is_null() || code != 0 {
            return Err(error(code));
        }
        Ok(Decoder { decoder, scratch: vec![0; MAX_PACKET_SAMPLES] })
    }

    /// Appends the samples of `packet` to `out`; a packet libopus cannot read is an error and adds nothing.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<(), Error> {
        if packet.is_empty() {
            return Err(Error("empty packet".into()));
        }
        // SAFETY: `packet` is readable for its length, `scratch` writable for MAX_PACKET_SAMPLES samples.
        let decoded = unsafe {
            opus_decode(
                self.decoder,
                packet.as_ptr(),
                packet.len() as i32,
                self.scratch.as_mut_ptr(),
                MAX_PACKET_SAMPLES as c_int,
                0,
            )
        };
        if decoded < 0 {
            return Err(error(decoded));
        }
        out.extend_from_slice(&self.scratch[..decoded as usize]);
        Ok(())
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and freed once.
        unsafe { opus_decoder_destroy(self.decoder) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_a_round_trip_at_its_level() {
        let tone: Vec<i16> = (0..8000)
            .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8000.0).sin()) as i16)
            .collect();
        let (mut encoder, mut decoder) = (Encoder::new().unwrap(), Decoder::new().unwrap());
        let mut decoded = Vec::new();
        for frame in tone.chunks(160) {
            let mut packet = Vec::new();
            encoder.encode(frame, &mut packet).unwrap();
            assert!(!packet.is_empty() && packet.len() < 200, "{}", packet.len());
            decoder.decode(&packet, &mut decoded).unwrap();
        }
        assert_eq!(decoded.len(), 8000);
        let rms = |s: &[i16]| (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        let (level, original) = (rms(&decoded[2000..]), rms(&tone[2000..]));
        assert!((level / original - 1.0).abs() < 0.2, "{level} vs {original}");
    }

    #[test]
    fn garbage_is_an_error_not_a_crash_and_a_bad_frame_size_is_refused() {
        let mut decoder = Decoder::new().unwrap();
        let mut out = Vec::new();
        assert!(decoder.decode(&[], &mut out).is_err());
        // A code-3 packet (frame count byte) claiming 63 frames in two octets.
        assert!(decoder.decode(&[0x03, 0xff], &mut out).is_err());
        let mut packet = Vec::new();
        assert!(Encoder::new().unwrap().encode(&[0; 123], &mut packet).is_err());
        assert!(packet.is_empty());
    }
}
