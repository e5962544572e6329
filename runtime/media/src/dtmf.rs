//! DTMF in and out: RFC 4733 telephone events, SIP INFO bodies, in-band tones (Goertzel), and the one digit
//! stream they merge into.
//!
//! A peer may signal the same key press more than one way (some gateways send RFC 4733 and INFO, some leave
//! the tones in the audio too), and RFC 4733 repeats every packet of an event, its End three times. Users of
//! other platforms see digits twice or not at all because of it; here each press is reported once:
//! - RFC 4733 events are keyed by SSRC and timestamp: retransmissions and late End packets of a reported
//!   event are dropped, an event whose End packets were all lost is reported when the next one starts or its
//!   updates stop, and a long event split into segments (§2.5.1.3) is one press.
//! - In-band detection runs only when the peer did not offer telephone-event.
//! - [`DigitMerger`] drops a press of the same key from a second source while the first one's press lasts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Error;

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// RFC 4733 telephone events in the RTP stream.
    Rfc4733,
    /// A SIP INFO request (`application/dtmf-relay` or `application/dtmf`).
    SipInfo,
    /// Tones in the audio.
    InBand,
}

impl DigitSource {
    /// A short name for events and logs: `rfc4733`, `info`, `inband`.
    pub fn name(self) -> &'static str {
        match self {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::SipInfo => "info",
            DigitSource::InBand => "inband",
        }
    }
}

/// One key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub key: char,
    /// How long the key was held.
    pub duration: Duration,
    /// How it was signalled.
    pub source: DigitSource,
}

const KEYS: [char; 16] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D'];

/// The RFC 4733 event code of a key.
pub fn event_code(key: char) -> Option<u8> {
    KEYS.iter().position(|k| *k == key.to_ascii_uppercase()).map(|i| i as u8)
}

/// The key of an RFC 4733 event code (0–15); other events (flash, modem tones) are not keys.
pub fn key_of_event(code: u8) -> Option<char> {
    KEYS.get(usize::from(code)).copied()
}

/// The payload of an RFC 4733 telephone-event packet (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code.
    pub code: u8,
    /// The E bit: this is (a retransmission of) the last packet of the event.
    pub end: bool,
    /// Power level in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a 4-byte payload (more bytes are further events, which we do not use).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, Error> {
        let &[code, flags, high, low, ..] = payload else {
            return Err(Error::Malformed("telephone-event payload shorter than 4 bytes"));
        };
        Ok(TelephoneEvent {
            code,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([high, low]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let [high, low] = self.duration.to_be_bytes();
        [self.code, u8::from(self.end) << 7 | (self.volume & 0x3f), high, low]
    }
}

/// How long an event may go without an update before it counts as ended (its End packets lost). RFC 4733
/// §2.5.1.2 has senders update at least every 50 ms, so a few missed updates is a lost stream, not a pause.
const EVENT_LOST_AFTER: Duration = Duration::from_millis(400);
/// Events already reported, remembered so their retransmissions are dropped.
const REMEMBERED_EVENTS: usize = 16;

#[derive(Debug, Clone)]
struct OngoingEvent {
    ssrc: u32,
    timestamp: u32,
    code: u8,
    /// Samples of earlier segments of a long event, plus this segment's duration.
    earlier_segments: u64,
    duration: u16,
    last_update: Instant,
}

/// Turns a stream of telephone-event packets into key presses, each reported once.
#[derive(Debug, Clone)]
pub struct Rfc4733Receiver {
    clock_rate: u32,
    ongoing: Option<OngoingEvent>,
    ended: VecDeque<(u32, u32)>,
}

impl Rfc4733Receiver {
    /// A receiver for events at `clock_rate` (the rate of their rtpmap, 8000 for G.711).
    pub fn new(clock_rate: u32) -> Rfc4733Receiver {
        Rfc4733Receiver { clock_rate, ongoing: None, ended: VecDeque::new() }
    }

    /// Takes one packet; returns the presses it completes (the previous event, if its End was lost, and
    /// this one, if it ends).
    pub fn receive(&mut self, now: Instant, ssrc: u32, timestamp: u32, payload: &[u8]) -> Result<Vec<Digit>, Error> {
        let event = TelephoneEvent::parse(payload)?;
        let mut digits = Vec::new();
        if self.ended.contains(&(ssrc, timestamp)) || key_of_event(event.code).is_none() {
            return Ok(digits);
        }
        match &mut self.ongoing {
            Some(ongoing) if ongoing.ssrc == ssrc && ongoing.timestamp == timestamp => {
                ongoing.duration = ongoing.duration.max(event.duration);
                ongoing.last_update = now;
            }
            Some(ongoing) if ongoing.ssrc == ssrc && ongoing.code == event.code && continues(ongoing, timestamp) => {
                // The next segment of a long event (§2.5.1.3): the same press.
                let segment = crate::rtp::timestamp_distance(ongoing.timestamp, timestamp).max(0) as u64;
                self.ended.push_back((ongoing.ssrc, ongoing.timestamp));
                ongoing.earlier_segments += segment;
                ongoing.timestamp = timestamp;
                ongoing.duration = event.duration;
                ongoing.last_update = now;
            }
            _ => {
                digits.extend(self.finish());
                self.ongoing = Some(OngoingEvent {
                    ssrc,
                    timestamp,
                    code: event.code,
                    earlier_segments: 0,
                    duration: event.duration,
                    last_update: now,
                });
            }
        }
        if event.end {
            digits.extend(self.finish());
        }
        Ok(digits)
    }

    /// When an event without End packets counts as ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ongoing.as_ref().map(|o| o.last_update + EVENT_LOST_AFTER)
    }

    /// Reports an event whose updates stopped without an End.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Digit> {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) { self.finish() } else { None }
    }

    fn finish(&mut self) -> Option<Digit> {
        let ongoing = self.ongoing.take()?;
        if self.ended.len() == REMEMBERED_EVENTS {
            self.ended.pop_front();
        }
        self.ended.push_back((ongoing.ssrc, ongoing.timestamp));
        let samples = ongoing.earlier_segments + u64::from(ongoing.duration);
        Some(Digit {
            key: key_of_event(ongoing.code)?,
            duration: Duration::from_micros(samples * 1_000_000 / u64::from(self.clock_rate)),
            source: DigitSource::Rfc4733,
        })
    }
}

/// Whether a new timestamp starts where a long event's segment ran out (within one packet of it).
fn continues(ongoing: &OngoingEvent, timestamp: u32) -> bool {
    let gap = crate::rtp::timestamp_distance(ongoing.timestamp, timestamp);
    ongoing.duration >= 0xff00 && (i64::from(ongoing.duration) - gap).abs() <= 480
}

/// Reads the key (and duration, when given) of a SIP INFO body: `application/dtmf-relay`
/// (`Signal=5\r\nDuration=160`) or `application/dtmf` (`5`).
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<Digit, Error> {
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|_| Error::BadDigit("the INFO body is not text".into()))?;
    let (signal, duration) = match media_type.as_str() {
        "application/dtmf-relay" => {
            let mut signal = None;
            let mut duration = None;
            for line in text.lines() {
                let Some((name, value)) = line.split_once('=') else { continue };
                match name.trim().to_ascii_lowercase().as_str() {
                    "signal" => signal = Some(value.trim()),
                    "duration" => duration = value.trim().parse::<u64>().ok(),
                    _ => {}
                }
            }
            (signal.ok_or_else(|| Error::BadDigit("dtmf-relay body has no Signal=".into()))?, duration)
        }
        "application/dtmf" => (text.trim(), None),
        other => return Err(Error::BadDigit(format!("INFO of type `{other}` carries no digit"))),
    };
    let key = match signal {
        // Some phones send the event code for * and # instead of the character.
        "10" => '*',
        "11" => '#',
        single if single.chars().count() == 1 => single.chars().next().unwrap_or_default().to_ascii_uppercase(),
        _ => return Err(Error::BadDigit(format!("`{signal}` is not a DTMF key"))),
    };
    if event_code(key).is_none() {
        return Err(Error::BadDigit(format!("`{signal}` is not a DTMF key")));
    }
    Ok(Digit {
        key,
        duration: Duration::from_millis(duration.unwrap_or(100).min(60_000)),
        source: DigitSource::SipInfo,
    })
}

/// How close a second source's press of the same key must be to count as the same press.
const SAME_PRESS_SLACK: Duration = Duration::from_millis(250);

/// Merges digits from several sources into one stream, dropping a press reported by a second source.
#[derive(Debug, Clone, Default)]
pub struct DigitMerger {
    last: Option<(Instant, Digit)>,
}

impl DigitMerger {
    /// Whether `digit`, reported at `now`, is a new press (true) or another source's report of the last one.
    /// The last report is remembered either way, so the next press from the same source is new.
    pub fn accept(&mut self, now: Instant, digit: Digit) -> bool {
        let duplicate = self.last.is_some_and(|(at, last)| {
            let apart = now.saturating_duration_since(at);
            last.key == digit.key
                && last.source != digit.source
                && apart <= last.duration.max(digit.duration) + SAME_PRESS_SLACK
        });
        self.last = Some((now, digit));
        !duplicate
    }
}

/// One step of a digit string to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitStep {
    /// Press a key.
    Key(char),
    /// Wait.
    Pause(Duration),
}

/// Parses a digit string as apps write them: keys, `w` for half a second, `W` for a second (SWML
/// `send_digits`, TwiML `<Play digits>`); spaces and commas are pauses too, as on a dial pad.
pub fn parse_digit_string(digits: &str) -> Result<Vec<DigitStep>, Error> {
    digits
        .chars()
        .map(|c| match c {
            'w' | ',' => Ok(DigitStep::Pause(Duration::from_millis(500))),
            'W' => Ok(DigitStep::Pause(Duration::from_secs(1))),
            key if event_code(key).is_some() => Ok(DigitStep::Key(key.to_ascii_uppercase())),
            other => Err(Error::BadDigit(format!("`{other}` in `{digits}` is not a DTMF key or a pause (w, W)"))),
        })
        .collect()
}

/// The two frequencies (row, column) of a key.
pub fn key_frequencies(key: char) -> Option<(f32, f32)> {
    let index = "123A456B789C*0#D".find(key.to_ascii_uppercase())?;
    Some((ROWS[index / 4], COLUMNS[index % 4]))
}

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const PAD: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// The classic Goertzel block at 8 kHz: its bins fall close to every DTMF frequency.
const BLOCK: usize = 205;
/// Blocks a tone must last to start a press (about 51 ms; ITU-T Q.24 asks for 40 ms), and blocks without it
/// to end one.
const BLOCKS_TO_START: u32 = 2;
const BLOCKS_TO_END: u32 = 2;
/// The share of a block's energy the two tones must hold: speech and music spread theirs.
const TONE_ENERGY_SHARE: f32 = 0.6;
/// A tone at least this loud (about -35 dBm0 per tone at 8 kHz G.711 scale).
const MIN_TONE_AMPLITUDE: f32 = 300.0;
/// Allowed twist between the two tones and margin over the other bins of a group: 8 dB in power.
const POWER_RATIO_8DB: f32 = 6.3;

/// Finds DTMF tones in 8 kHz audio.
#[derive(Debug, Clone)]
pub struct InBandDetector {
    coefficients: [f32; 8],
    block: Vec<f32>,
    candidate: Option<char>,
    candidate_blocks: u32,
    pressed: Option<(char, u32)>,
    quiet_blocks: u32,
}

impl Default for InBandDetector {
    fn default() -> Self {
        let coefficient = |f: f32| 2.0 * (2.0 * std::f32::consts::PI * f / 8000.0).cos();
        let mut coefficients = [0.0; 8];
        for (i, f) in ROWS.iter().chain(&COLUMNS).enumerate() {
            coefficients[i] = coefficient(*f);
        }
        InBandDetector {
            coefficients,
            block: Vec::with_capacity(BLOCK),
            candidate: None,
            candidate_blocks: 0,
            pressed: None,
            quiet_blocks: 0,
        }
    }
}

impl InBandDetector {
    /// Feeds 8 kHz samples; returns presses that ended within them.
    pub fn feed(&mut self, samples: &[i16]) -> Vec<Digit> {
        let mut digits = Vec::new();
        for &sample in samples {
            self.block.push(f32::from(sample));
            if self.block.len() == BLOCK {
                let key = self.detect_block();
                self.block.clear();
                digits.extend(self.advance(key));
            }
        }
        digits
    }

    fn advance(&mut self, key: Option<char>) -> Option<Digit> {
        if key.is_some() && key == self.candidate {
            self.candidate_blocks += 1;
        } else {
            self.candidate = key;
            self.candidate_blocks = u32::from(key.is_some());
        }
        match &mut self.pressed {
            Some((pressed, blocks)) if key == Some(*pressed) => {
                *blocks += 1;
                self.quiet_blocks = 0;
                None
            }
            Some((pressed, blocks)) => {
                self.quiet_blocks += 1;
                if self.quiet_blocks < BLOCKS_TO_END {
                    return None;
                }
                let digit = Digit {
                    key: *pressed,
                    duration: Duration::from_micros(u64::from(*blocks) * BLOCK as u64 * 125),
                    source: DigitSource::InBand,
                };
                self.pressed = None;
                self.quiet_blocks = 0;
                Some(digit)
            }
            None => {
                if let Some(key) = self.candidate.filter(|_| self.candidate_blocks >= BLOCKS_TO_START) {
                    self.pressed = Some((key, self.candidate_blocks));
                }
                None
            }
        }
    }

    fn detect_block(&self) -> Option<char> {
        let energy: f32 = self.block.iter().map(|s| s * s).sum();
        let half = BLOCK as f32 / 2.0;
        let min_power = (MIN_TONE_AMPLITUDE * half).powi(2);
        // No frequency's power exceeds BLOCK times the block's energy (Cauchy-Schwarz): a quiet block
        // (silence, most of every call) cannot hold a tone, and skips the eight filters.
        if BLOCK as f32 * energy < min_power {
            return None;
        }
        let mut powers = [0.0f32; 8];
        for (power, coefficient) in powers.iter_mut().zip(self.coefficients) {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for &x in &self.block {
                let s0 = x + coefficient * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            *power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
        }
        let strongest = |group: &[f32]| {
            let (index, power) = group
                .iter()
                .copied()
                .enumerate()
                .fold((0, 0.0f32), |best, (i, p)| if p > best.1 { (i, p) } else { best });
            let clear = group.iter().enumerate().all(|(i, p)| i == index || p * POWER_RATIO_8DB < power);
            (index, power, clear)
        };
        let (row, row_power, row_clear) = strongest(&powers[..4]);
        let (column, column_power, column_clear) = strongest(&powers[4..]);
        let tone_share = (row_power + column_power) / (half * energy.max(1.0));
        let twist_ok = row_power < column_power * POWER_RATIO_8DB && column_power < row_power * POWER_RATIO_8DB;
        (row_clear
            && column_clear
            && twist_ok
            && row_power > min_power
            && column_power > min_power
            && tone_share > TONE_ENERGY_SHARE)
            .then(|| PAD[row][column])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent { code, end, volume: 10, duration }.to_bytes()
    }

    #[test]
    fn an_event_with_three_ends_is_one_press() {
        let mut receiver = Rfc4733Receiver::new(8000);
        let now = Instant::now();
        let mut digits = Vec::new();
        for duration in [160, 320, 480, 640] {
            digits.extend(receiver.receive(now, 1, 1000, &packet(5, false, duration)).unwrap());
        }
        for _ in 0..3 {
            digits.extend(receiver.receive(now, 1, 1000, &packet(5, true, 800)).unwrap());
        }
        assert_eq!(digits, [Digit { key: '5', duration: Duration::from_millis(100), source: DigitSource::Rfc4733 }]);
    }

    #[test]
    fn lost_ends_are_reported_at_the_next_event_or_after_a_pause() {
        let mut receiver = Rfc4733Receiver::new(8000);
        let now = Instant::now();
        assert!(receiver.receive(now, 1, 1000, &packet(1, false, 160)).unwrap().is_empty());
        let digits = receiver.receive(now, 1, 5000, &packet(2, false, 160)).unwrap();
        assert_eq!(digits.iter().map(|d| d.key).collect::<String>(), "1");
        assert!(receiver.handle_timeout(now + Duration::from_millis(100)).is_none());
        assert_eq!(receiver.handle_timeout(now + EVENT_LOST_AFTER).unwrap().key, '2');
        assert!(receiver.receive(now, 1, 5000, &packet(2, true, 800)).unwrap().is_empty(), "late End dropped");
    }

    #[test]
    fn a_long_event_in_two_segments_is_one_press() {
        let mut receiver = Rfc4733Receiver::new(8000);
        let now = Instant::now();
        assert!(receiver.receive(now, 1, 0, &packet(0, false, 0xffff)).unwrap().is_empty());
        let digits = receiver.receive(now, 1, 0xffff, &packet(0, true, 8000)).unwrap();
        assert_eq!(digits.len(), 1);
        assert_eq!(digits[0].duration.as_millis(), (0xffff + 8000) / 8);
    }

    #[test]
    fn info_bodies_of_both_types() {
        let relay = parse_info("application/dtmf-relay", b"Signal=#\r\nDuration=250\r\n").unwrap();
        assert_eq!((relay.key, relay.duration.as_millis()), ('#', 250));
        assert_eq!(parse_info("Application/DTMF; charset=x", b"7").unwrap().key, '7');
        assert_eq!(parse_info("application/dtmf-relay", b"Signal=11\r\n").unwrap().key, '#');
        for (kind, body) in
            [("application/dtmf-relay", &b"Duration=1"[..]), ("application/dtmf", b"xy"), ("text/plain", b"5")]
        {
            assert!(parse_info(kind, body).is_err(), "{kind} {body:?}");
        }
    }

    #[test]
    fn a_second_source_of_the_same_press_is_dropped_but_a_second_press_is_not() {
        let mut merger = DigitMerger::default();
        let now = Instant::now();
        let press = |key, source| Digit { key, duration: Duration::from_millis(200), source };
        assert!(merger.accept(now, press('5', DigitSource::SipInfo)));
        assert!(!merger.accept(now + Duration::from_millis(200), press('5', DigitSource::Rfc4733)));
        assert!(
            merger.accept(now + Duration::from_millis(400), press('5', DigitSource::Rfc4733)),
            "same source: a new press"
        );
        assert!(merger.accept(now + Duration::from_millis(500), press('6', DigitSource::SipInfo)));
    }

    #[test]
    fn digit_strings_with_pauses() {
        assert_eq!(
            parse_digit_string("1w#W").unwrap(),
            [
                DigitStep::Key('1'),
                DigitStep::Pause(Duration::from_millis(500)),
                DigitStep::Key('#'),
                DigitStep::Pause(Duration::from_secs(1))
            ]
        );
        assert!(parse_digit_string("12x").unwrap_err().to_string().contains("`x`"));
    }

    fn tone(key: char, samples: usize, amplitude: f32) -> Vec<i16> {
        let (low, high) = key_frequencies(key).unwrap();
        (0..samples)
            .map(|n| {
                let t = n as f32 / 8000.0;
                (amplitude
                    * ((2.0 * std::f32::consts::PI * low * t).sin() + (2.0 * std::f32::consts::PI * high * t).sin()))
                    as i16
            })
            .collect()
    }

    #[test]
    fn every_key_is_heard_once_in_band() {
        let mut detector = InBandDetector::default();
        let mut heard = String::new();
        for key in KEYS {
            heard.extend(detector.feed(&tone(key, 800, 4000.0)).iter().map(|d| d.key));
            heard.extend(detector.feed(&vec![0; 800]).iter().map(|d| d.key));
        }
        assert_eq!(heard, KEYS.iter().collect::<String>());
    }

    #[test]
    fn a_tone_just_above_the_minimum_loudness_is_heard() {
        // Quiet blocks skip the filters; one loud enough to hold a tone must not.
        let mut detector = InBandDetector::default();
        let mut heard: Vec<char> =
            detector.feed(&tone('7', 800, MIN_TONE_AMPLITUDE * 1.3)).iter().map(|d| d.key).collect();
        heard.extend(detector.feed(&vec![0; 800]).iter().map(|d| d.key));
        assert_eq!(heard, ['7']);
    }

    #[test]
    fn short_quiet_or_impure_tones_are_not_digits() {
        let mut detector = InBandDetector::default();
        assert!(detector.feed(&tone('5', 200, 4000.0)).is_empty() && detector.feed(&vec![0; 800]).is_empty());
        assert!(detector.feed(&tone('5', 800, 100.0)).is_empty() && detector.feed(&vec![0; 800]).is_empty());
        let mut noisy = tone('5', 1600, 2000.0);
        let mut seed = 1u32;
        for sample in &mut noisy {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *sample = sample.saturating_add(((seed >> 16) as i16 >> 1) / 2);
        }
        assert!(detector.feed(&noisy).is_empty() && detector.feed(&vec![0; 800]).is_empty(), "buried in noise");
    }
}
