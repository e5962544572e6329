//! callwright-media: a sans-IO media core for calls: RTP and RTCP (RFC 3550), SDP offer/answer for audio
//! (RFC 3264), G.711, G.722 and Opus, WAV and MP3 prompts, DTMF from RFC 4733 events, SIP INFO and in-band tones, a jitter buffer, tones and
//! prompts, recording, and the per-call [`MediaSession`] that paces it all from one timer.
//!
//! Like `callwright-sip`, nothing here does IO or reads a clock: datagrams and time go in; datagrams to
//! send, events and the next deadline come out. The driver owns the sockets and the timer.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use callwright_media::sdp::{self, LocalMedia, Origin, SessionDescription};
//! use callwright_media::{Input, MediaSession, Output, PlayOptions, SessionConfig, source::Tone};
//!
//! let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
//!     m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
//! let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
//! let offer = SessionDescription::parse(offer.as_bytes()).unwrap();
//! let (answer, negotiated) = sdp::answer(&offer, &local, &mut Origin::new(1)).unwrap();
//! assert!(String::from_utf8(answer).unwrap().contains("m=audio 40000 RTP/AVP 0 101"));
//!
//! let start = Instant::now();
//! let mut session = MediaSession::new(start, SessionConfig::new(negotiated, 0x1234));
//! session.play(Box::new(Tone::silence(Duration::from_millis(100), 8000)), PlayOptions::default());
//! let (mut now, mut packets) = (start, 0);
//! while now < start + Duration::from_millis(200) {
//!     session.handle_input(Input::Timeout(now));
//!     while let Some(output) = session.poll_output() {
//!         match output {
//!             Output::Transmit(transmit) => packets += usize::from(transmit.data.len() == 172),
//!             Output::Event(_event) => {}
//!             Output::Timeout(at) => {
//!                 now = at;
//!                 break;
//!             }
//!         }
//!     }
//! }
//! assert_eq!(packets, 10, "one 20 ms packet of 160 bytes per tick");
//! ```
#![forbid(unsafe_code)]

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod jitter;
pub mod mp3;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod source;
pub mod wav;

pub use codec::Codec;

/// Decodes a prompt file, WAV or MP3 (told apart by their first bytes), to mono at `rate` Hz.
pub fn decode_audio_file(bytes: &[u8], rate: u32) -> Result<wav::Decoded, Error> {
    if mp3::looks_like_mp3(bytes) {
        mp3::decode(bytes, rate)
    } else if bytes.starts_with(b"RIFF") {
        wav::decode(bytes, rate)
    } else {
        Err(Error::UnsupportedAudio("neither a WAV (RIFF/WAVE) nor an MP3 file".into()))
    }
}

/// The media type of a prompt file: `audio/mpeg` or `audio/wav`.
pub fn audio_file_type(bytes: &[u8]) -> &'static str {
    if mp3::looks_like_mp3(bytes) { "audio/mpeg" } else { "audio/wav" }
}
pub use dtmf::{Digit, DigitSource};
pub use session::{
    DigitsId, Input, MediaEvent, MediaSession, MediaStats, Output, PlayOptions, PlaybackEnd, PlaybackId,
    RecordDirection, RecordOptions, RecordingEnd, RecordingId, SessionConfig, Socket, Transmit,
};

/// What went wrong, for the caller to answer with (see [`Error::sip_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An RTP, RTCP or telephone-event packet that cannot be read.
    Malformed(&'static str),
    /// An SDP body that cannot be read.
    BadSdp(String),
    /// No stream of the offer or answer has a codec we carry.
    NoCommonCodec,
    /// A codec name we do not know.
    UnknownCodec(String),
    /// A digit string or INFO body that is not DTMF.
    BadDigit(String),
    /// Digits to send as RFC 4733 events when the peer offered no telephone-event.
    NoTelephoneEvent,
    /// Audio we cannot decode.
    UnsupportedAudio(String),
    /// A `silence_stream://`, `tone_stream://` or other source address that does not parse.
    BadSource(String),
}

impl Error {
    /// The SIP status that answers a request carrying this problem.
    pub fn sip_status(&self) -> u16 {
        match self {
            Error::NoCommonCodec | Error::UnknownCodec(_) => 488,
            _ => 400,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "malformed packet: {why}"),
            Error::BadSdp(why) => write!(f, "malformed SDP: {why}"),
            Error::NoCommonCodec => {
                write!(f, "no audio stream with a codec in common (we carry PCMU, PCMA, G722 and opus)")
            }
            Error::UnknownCodec(name) => write!(f, "unknown codec `{name}` (known: PCMU, PCMA, G722, opus)"),
            Error::BadDigit(why) => write!(f, "not DTMF: {why}"),
            Error::NoTelephoneEvent => write!(f, "the peer did not offer telephone-event; send digits as SIP INFO"),
            Error::UnsupportedAudio(why) => write!(f, "unsupported audio: {why}"),
            Error::BadSource(why) => write!(f, "bad audio source {why}"),
        }
    }
}

impl std::error::Error for Error {}
