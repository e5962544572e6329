//! Sample-rate conversion between 8, 16, 48 kHz and whatever rate a prompt file has.
//!
//! A windowed-sinc interpolator: each output sample is a Hann-windowed sinc over the nearest input samples,
//! with the cut-off below the lower Nyquist frequency so downsampling does not alias. It is meant for prompts
//! converted once and cached, and for the occasional transcoded leg, not for hot loops of many channels.
//!
//! For a call whose codec samples at 16 kHz (G.722), [`Upsampler`] and [`Downsampler`] convert a stream
//! frame by frame between 8 and 16 kHz, keeping the filter's history across frames so no seam is heard.

use std::f64::consts::PI;

/// Input samples on each side of the interpolation point.
const HALF_TAPS: i64 = 16;

/// Converts `input` at `from` Hz to `to` Hz.
pub fn convert(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    // Cut off a little under the lower of the two Nyquist frequencies, in units of the input rate.
    let cutoff = 0.95 * ratio.min(1.0);
    let output_len = (input.len() as f64 * ratio).round() as usize;
    let half_taps = (HALF_TAPS as f64 / cutoff).ceil() as i64;
    (0..output_len)
        .map(|n| {
            let position = n as f64 / ratio;
            let centre = position.floor() as i64;
            let mut sum = 0.0;
            let mut weights = 0.0;
            for k in centre - half_taps + 1..=centre + half_taps {
                let Some(&sample) = usize::try_from(k).ok().and_then(|k| input.get(k)) else { continue };
                let x = position - k as f64;
                let window = 0.5 + 0.5 * (PI * x / half_taps as f64).cos();
                let weight = cutoff * sinc(cutoff * x) * window;
                sum += f64::from(sample) * weight;
                weights += weight;
            }
            // Normalising by the weights keeps DC gain at one near the edges, where taps fall off the input.
            let value = if weights.abs() > 1e-9 { sum / weights } else { 0.0 };
            value.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Taps of the 16 kHz low-pass filter behind both stream converters (odd: a symmetric, linear-phase filter).
const STREAM_TAPS: usize = 31;

/// The low-pass filter at 16 kHz cutting off just under 4 kHz, its taps summing to one.
fn stream_filter() -> [f32; STREAM_TAPS] {
    let cutoff = 3800.0 / 16000.0;
    let middle = (STREAM_TAPS / 2) as f64;
    let mut taps = [0f32; STREAM_TAPS];
    let mut sum = 0.0;
    for (j, tap) in taps.iter_mut().enumerate() {
        let x = j as f64 - middle;
        let window = 0.5 + 0.5 * (PI * x / (middle + 1.0)).cos();
        let value = 2.0 * cutoff * sinc(2.0 * cutoff * x) * window;
        *tap = value as f32;
        sum += value;
    }
    taps.iter_mut().for_each(|tap| *tap /= sum as f32);
    taps
}

/// The last [`STREAM_TAPS`] samples at 16 kHz and the filter over them.
#[derive(Debug, Clone)]
struct StreamFilter {
    taps: [f32; STREAM_TAPS],
    history: [f32; STREAM_TAPS],
    next: usize,
}

impl StreamFilter {
    fn new() -> StreamFilter {
        StreamFilter { taps: stream_filter(), history: [0.0; STREAM_TAPS], next: 0 }
    }

    fn push(&mut self, sample: f32) {
        self.history[self.next] = sample;
        self.next = (self.next + 1) % STREAM_TAPS;
    }

    /// The filtered sample at the newest position.
    fn output(&self) -> f32 {
        // history[next] is the oldest sample; the filter is symmetric, so the order of taps does not matter.
        let (older, newer) = self.history.split_at(self.next);
        newer.iter().chain(older).zip(&self.taps).map(|(s, t)| s * t).sum()
    }
}

fn to_sample(value: f32) -> i16 {
    value.round().clamp(-32768.0, 32767.0) as i16
}

/// Turns an 8 kHz stream into 16 kHz, two samples out for each in.
#[derive(Debug, Clone)]
pub struct Upsampler(StreamFilter);

impl Default for Upsampler {
    fn default() -> Upsampler {
        Upsampler(StreamFilter::new())
    }
}

impl Upsampler {
    /// Appends `2 × input.len()` samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for &sample in input {
            // Zero stuffing halves the level; the gain of two restores it.
            self.0.push(2.0 * f32::from(sample));
            out.push(to_sample(self.0.output()));
            self.0.push(0.0);
            out.push(to_sample(self.0.output()));
        }
    }
}

/// Turns a 16 kHz stream into 8 kHz, one sample out for each two in (the first of each pair, even when the
/// pair is split between calls).
#[derive(Debug, Clone)]
pub struct Downsampler {
    filter: StreamFilter,
    odd: bool,
}

impl Default for Downsampler {
    fn default() -> Downsampler {
        Downsampler { filter: StreamFilter::new(), odd: false }
    }
}

impl Downsampler {
    /// Appends `input.len() / 2` samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for &sample in input {
            self.filter.push(f32::from(sample));
            // The first of each pair: with the upsampler's filter delay (odd, 15), that is where an 8 kHz
            // sample went in, so up and down again is a whole-sample delay.
            if !self.odd {
                out.push(to_sample(self.filter.output()));
            }
            self.odd = !self.odd;
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 { 1.0 } else { (PI * x).sin() / (PI * x) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(frequency: f64, rate: u32, samples: usize) -> Vec<i16> {
        (0..samples).map(|n| ((2.0 * PI * frequency * n as f64 / f64::from(rate)).sin() * 10000.0) as i16).collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn a_tone_in_band_keeps_its_level_both_ways() {
        for (from, to) in [(16000, 8000), (8000, 16000), (48000, 8000), (44100, 8000), (8000, 48000)] {
            let output = convert(&sine(1000.0, from, from as usize / 10), from, to);
            assert_eq!(output.len(), to as usize / 10);
            let level = rms(&output[100..output.len() - 100]);
            assert!((level - 7071.0).abs() < 250.0, "{from}->{to}: {level}");
        }
    }

    #[test]
    fn a_stream_converted_frame_by_frame_keeps_its_level_and_has_no_seams() {
        let input = sine(1000.0, 8000, 1600);
        let (mut up, mut down) = (Upsampler::default(), Downsampler::default());
        let (mut wide, mut back) = (Vec::new(), Vec::new());
        for frame in input.chunks(160) {
            let start = wide.len();
            up.process(frame, &mut wide);
            down.process(&wide[start..], &mut back);
        }
        assert_eq!((wide.len(), back.len()), (3200, 1600));
        assert!((rms(&wide[400..]) - 7071.0).abs() < 250.0, "{}", rms(&wide[400..]));
        // Back at 8 kHz, the tone is the input delayed by the two filters (15 samples at 16 kHz each).
        let delay = 15;
        let worst = input.iter().zip(&back[delay..]).skip(100).map(|(a, b)| (a - b).abs()).max().unwrap();
        assert!(worst < 400, "{worst}");
    }

    #[test]
    fn the_stream_downsampler_filters_out_the_upper_band() {
        let mut out = Vec::new();
        Downsampler::default().process(&sine(6000.0, 16000, 3200), &mut out);
        assert!(rms(&out[50..]) < 400.0, "{}", rms(&out[50..]));
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_filtered_out() {
        let output = convert(&sine(6000.0, 48000, 4800), 48000, 8000);
        assert!(rms(&output[50..750]) < 500.0, "{}", rms(&output[50..750]));
    }
}
