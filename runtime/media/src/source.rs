//! What a playback reads samples from: decoded audio (a WAV file, speech), tones and silence, including the
//! FreeSWITCH-style `silence_stream://N` and `tone_stream://…` addresses that jambonz apps send, and ring-back
//! by country as SWML's `ring:us` names it.

use std::f32::consts::PI;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// Something that fills frames with 16-bit samples at the session's clock rate.
pub trait AudioSource: Send + std::fmt::Debug {
    /// Writes up to `out.len()` samples; fewer means the source ended.
    fn read(&mut self, out: &mut [i16]) -> usize;
    /// Starts again from the beginning, for loops. Returns false if the source cannot.
    fn rewind(&mut self) -> bool;
}

/// Decoded audio held in memory and shared between the calls that play it (a cached prompt).
#[derive(Debug, Clone)]
pub struct Samples {
    samples: Arc<[i16]>,
    position: usize,
}

impl Samples {
    /// Plays `samples` from the start.
    pub fn new(samples: Arc<[i16]>) -> Samples {
        Samples { samples, position: 0 }
    }

    /// Plays from `offset` samples in (jambonz `seekOffset`).
    pub fn starting_at(samples: Arc<[i16]>, offset: usize) -> Samples {
        let position = offset.min(samples.len());
        Samples { samples, position }
    }
}

impl AudioSource for Samples {
    fn read(&mut self, out: &mut [i16]) -> usize {
        let rest = &self.samples[self.position..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.position += n;
        n
    }

    fn rewind(&mut self) -> bool {
        self.position = 0;
        true
    }
}

/// Sources played one after another as one (a playlist: jambonz `url` arrays, SWML `urls`); a loop
/// replays the whole list.
#[derive(Debug)]
pub struct Sequence {
    sources: Vec<Box<dyn AudioSource>>,
    current: usize,
}

impl Sequence {
    /// Plays `sources` in order.
    pub fn new(sources: Vec<Box<dyn AudioSource>>) -> Sequence {
        Sequence { sources, current: 0 }
    }
}

impl AudioSource for Sequence {
    fn read(&mut self, out: &mut [i16]) -> usize {
        let mut filled = 0;
        while filled < out.len() && self.current < self.sources.len() {
            let n = self.sources[self.current].read(&mut out[filled..]);
            filled += n;
            if filled < out.len() {
                self.current += 1;
            }
        }
        filled
    }

    fn rewind(&mut self) -> bool {
        self.current = 0;
        self.sources.iter_mut().all(|source| source.rewind())
    }
}

/// One step of a tone cadence: these frequencies for `on`, then silence for `off`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneStep {
    /// Frequencies in Hz, summed (none: silence).
    pub frequencies: Vec<f32>,
    /// How long the tone sounds.
    pub on: Duration,
    /// The silence after it.
    pub off: Duration,
}

/// A cadence of tones, played once, a number of times, or until stopped.
#[derive(Debug, Clone)]
pub struct Tone {
    steps: Vec<ToneStep>,
    /// How many times the cadence plays; `None` is forever.
    repeats: Option<u32>,
    amplitude: f32,
    clock_rate: u32,
    played_repeats: u32,
    step: usize,
    sample_in_step: u64,
    total: Option<u64>,
    produced: u64,
}

/// The level of generated tones: about -13 dBm0 per tone pair, as telephone tones are.
const TONE_AMPLITUDE: f32 = 4000.0;

impl Tone {
    /// A cadence at `clock_rate`, repeated `repeats` times (`None`: until stopped).
    pub fn new(steps: Vec<ToneStep>, repeats: Option<u32>, clock_rate: u32) -> Tone {
        Tone {
            steps,
            repeats,
            amplitude: TONE_AMPLITUDE,
            clock_rate,
            played_repeats: 0,
            step: 0,
            sample_in_step: 0,
            total: None,
            produced: 0,
        }
    }

    /// Silence of `duration`.
    pub fn silence(duration: Duration, clock_rate: u32) -> Tone {
        Tone::new(vec![ToneStep { frequencies: Vec::new(), on: duration, off: Duration::ZERO }], Some(1), clock_rate)
    }

    /// The tones of a DTMF key, held for `duration`.
    pub fn dtmf(key: char, duration: Duration, clock_rate: u32) -> Option<Tone> {
        let (low, high) = crate::dtmf::key_frequencies(key)?;
        Some(Tone::new(
            vec![ToneStep { frequencies: vec![low, high], on: duration, off: Duration::ZERO }],
            Some(1),
            clock_rate,
        ))
    }

    /// Ends the tone after `duration`, whatever its cadence (SWML `ring:20.0:us`).
    pub fn limited_to(mut self, duration: Duration) -> Tone {
        self.total = Some(samples_in(duration, self.clock_rate));
        self
    }

    /// Scales the level by `db` decibels.
    pub fn with_gain_db(mut self, db: f32) -> Tone {
        self.amplitude *= 10f32.powf(db / 20.0);
        self
    }

    fn next_sample(&mut self) -> Option<i16> {
        if self.total.is_some_and(|total| self.produced >= total) || self.steps.is_empty() {
            return None;
        }
        loop {
            let step = &self.steps[self.step];
            let on = samples_in(step.on, self.clock_rate);
            let length = on + samples_in(step.off, self.clock_rate);
            if self.sample_in_step < length {
                let n = self.sample_in_step;
                self.sample_in_step += 1;
                self.produced += 1;
                if n >= on || step.frequencies.is_empty() {
                    return Some(0);
                }
                let t = n as f32 / self.clock_rate as f32;
                let sum: f32 = step.frequencies.iter().map(|f| (2.0 * PI * f * t).sin()).sum();
                return Some((sum * self.amplitude).clamp(-32767.0, 32767.0) as i16);
            }
            self.sample_in_step = 0;
            self.step += 1;
            if self.step == self.steps.len() {
                self.step = 0;
                self.played_repeats += 1;
                if self.repeats.is_some_and(|r| self.played_repeats >= r) {
                    return None;
                }
            }
        }
    }
}

fn samples_in(duration: Duration, clock_rate: u32) -> u64 {
    (duration.as_micros() as u64 * u64::from(clock_rate)) / 1_000_000
}

impl AudioSource for Tone {
    fn read(&mut self, out: &mut [i16]) -> usize {
        for (i, slot) in out.iter_mut().enumerate() {
            match self.next_sample() {
                Some(sample) => *slot = sample,
                None => return i,
            }
        }
        out.len()
    }

    fn rewind(&mut self) -> bool {
        self.played_repeats = 0;
        self.step = 0;
        self.sample_in_step = 0;
        self.produced = 0;
        true
    }
}

/// Parses `silence_stream://N` (N ms; -1 or 0 means until stopped, as in FreeSWITCH) and `tone_stream://`
/// in FreeSWITCH's tone language: `%(on,off,f1[,f2…])` steps separated by `;`, with `loops=N` (-1: forever)
/// and `v=dB`. `None` when `address` is neither scheme.
pub fn parse_stream_address(address: &str, clock_rate: u32) -> Option<Result<Tone, Error>> {
    if let Some(ms) = address.strip_prefix("silence_stream://") {
        let ms = ms.split(',').next().unwrap_or_default().trim();
        return Some(match ms.parse::<i64>() {
            Ok(ms) if ms > 0 => Ok(Tone::silence(Duration::from_millis(ms as u64), clock_rate)),
            Ok(_) => Ok(Tone::new(
                vec![ToneStep { frequencies: Vec::new(), on: Duration::from_secs(1), off: Duration::ZERO }],
                None,
                clock_rate,
            )),
            Err(_) => Err(Error::BadSource(format!("`{address}`: the silence length is not a number of ms"))),
        });
    }
    let spec = address.strip_prefix("tone_stream://")?;
    Some(parse_tone_language(spec, clock_rate).map_err(|why| Error::BadSource(format!("`{address}`: {why}"))))
}

fn parse_tone_language(spec: &str, clock_rate: u32) -> Result<Tone, String> {
    let mut steps = Vec::new();
    let mut repeats = Some(1);
    let mut gain_db = 0.0;
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(inner) = part.strip_prefix("%(").and_then(|p| p.strip_suffix(')')) {
            let numbers: Vec<f32> = inner
                .split(',')
                .map(|n| n.trim().parse::<f32>().map_err(|_| format!("`{n}` in `{part}` is not a number")))
                .collect::<Result<_, _>>()?;
            let [on, off, frequencies @ ..] = numbers.as_slice() else {
                return Err(format!("`{part}` needs at least on and off times"));
            };
            if *on < 0.0 || *off < 0.0 || frequencies.iter().any(|f| !(0.0..4000.0).contains(f)) {
                return Err(format!("`{part}` has a negative time or a frequency outside 0–4000 Hz"));
            }
            steps.push(ToneStep {
                frequencies: frequencies.to_vec(),
                on: Duration::from_millis(*on as u64),
                off: Duration::from_millis(*off as u64),
            });
        } else if let Some(loops) = part.strip_prefix("loops=").or_else(|| part.strip_prefix("L=")) {
            let loops: i64 = loops.parse().map_err(|_| format!("`{part}`: loops is not a number"))?;
            repeats = u32::try_from(loops).ok().filter(|l| *l > 0);
        } else if let Some(volume) = part.strip_prefix("v=") {
            gain_db = volume.parse().map_err(|_| format!("`{part}`: the volume is not a number of dB"))?;
        } else {
            return Err(format!("`{part}` is not a tone step %(on,off,freq…), loops= or v="));
        }
    }
    if steps.is_empty() {
        return Err("no tone steps".into());
    }
    Ok(Tone::new(steps, repeats, clock_rate).with_gain_db(gain_db))
}

/// The ring-back tone of a country (ITU-T E.180 and national practice), by ISO 3166 code or SWML's names.
pub fn ringback(country: &str, clock_rate: u32) -> Option<Tone> {
    let ms = Duration::from_millis;
    let step = |frequencies: &[f32], on, off| ToneStep { frequencies: frequencies.to_vec(), on: ms(on), off: ms(off) };
    let double = |frequencies: &[f32]| vec![step(frequencies, 400, 200), step(frequencies, 400, 2000)];
    let steps = match country.to_ascii_lowercase().as_str() {
        "us" | "ca" => vec![step(&[440.0, 480.0], 2000, 4000)],
        "uk" | "gb" | "ie" | "nz" => double(&[400.0, 450.0]),
        "au" => double(&[400.0, 425.0, 450.0]),
        "in" => double(&[400.0]),
        "fr" => vec![step(&[440.0], 1500, 3500)],
        "es" => vec![step(&[425.0], 1500, 3000)],
        "jp" => vec![step(&[400.0], 1000, 2000)],
        "cn" => vec![step(&[450.0], 1000, 4000)],
        "ru" => vec![step(&[425.0], 800, 3200)],
        "se" => vec![step(&[425.0], 1000, 5000)],
        "de" | "at" | "ch" | "it" | "nl" | "be" | "br" | "mx" | "pl" | "pt" | "dk" | "no" | "fi" => {
            vec![step(&[425.0], 1000, 4000)]
        }
        _ => return None,
    };
    Some(Tone::new(steps, None, clock_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(source: &mut dyn AudioSource, limit: usize) -> Vec<i16> {
        let mut out = vec![0; limit];
        let n = source.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn silence_stream_lasts_its_milliseconds() {
        let mut tone = parse_stream_address("silence_stream://100", 8000).unwrap().unwrap();
        let samples = read_all(&mut tone, 10_000);
        assert_eq!(samples.len(), 800);
        assert!(samples.iter().all(|s| *s == 0));
        let mut forever = parse_stream_address("silence_stream://-1", 8000).unwrap().unwrap();
        assert_eq!(read_all(&mut forever, 100_000).len(), 100_000);
        assert!(parse_stream_address("https://x/y.wav", 8000).is_none());
        assert!(parse_stream_address("silence_stream://abc", 8000).unwrap().is_err());
    }

    #[test]
    fn tone_stream_cadence_and_loops() {
        let mut tone = parse_stream_address("tone_stream://%(100,50,440,480);loops=2", 8000).unwrap().unwrap();
        let samples = read_all(&mut tone, 100_000);
        assert_eq!(samples.len(), 2 * 1200);
        assert!(samples[..800].iter().any(|s| s.abs() > 1000));
        assert!(samples[800..1200].iter().all(|s| *s == 0));
        for bad in ["tone_stream://%(100)", "tone_stream://%(a,b,c)", "tone_stream://beep", "tone_stream://"] {
            let error = parse_stream_address(bad, 8000).unwrap().unwrap_err();
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn ringback_by_country_with_a_limit() {
        let mut us = ringback("US", 8000).unwrap().limited_to(Duration::from_secs(3));
        assert_eq!(read_all(&mut us, 100_000).len(), 24_000);
        assert!(ringback("uk", 8000).is_some() && ringback("zz", 8000).is_none());
    }

    #[test]
    fn a_sequence_plays_its_sources_in_order_and_loops_whole() {
        let first: Box<dyn AudioSource> = Box::new(Samples::new(Arc::from(vec![1, 2, 3])));
        let second: Box<dyn AudioSource> = Box::new(Samples::new(Arc::from(vec![4, 5])));
        let mut sequence = Sequence::new(vec![first, second]);
        assert_eq!(read_all(&mut sequence, 4), [1, 2, 3, 4], "a read spans the boundary");
        assert_eq!(read_all(&mut sequence, 4), [5]);
        assert!(read_all(&mut sequence, 4).is_empty());
        assert!(sequence.rewind());
        assert_eq!(read_all(&mut sequence, 10), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn samples_loop_by_rewinding() {
        let mut samples = Samples::new(Arc::from(vec![1, 2, 3]));
        assert_eq!(read_all(&mut samples, 10), [1, 2, 3]);
        assert!(read_all(&mut samples, 10).is_empty());
        assert!(samples.rewind());
        assert_eq!(read_all(&mut samples, 2), [1, 2]);
    }
}
