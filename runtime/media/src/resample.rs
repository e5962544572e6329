//! Sample-rate conversion between 8, 16, 48 kHz and whatever rate a prompt file has.
//!
//! A windowed-sinc interpolator: each output sample is a Hann-windowed sinc over the nearest input samples,
//! with the cut-off below the lower Nyquist frequency so downsampling does not alias. It is meant for prompts
//! converted once and cached, and for the occasional transcoded leg, not for hot loops of many channels.

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
    fn a_tone_above_the_new_nyquist_is_filtered_out() {
        let output = convert(&sine(6000.0, 48000, 4800), 48000, 8000);
        assert!(rms(&output[50..750]) < 500.0, "{}", rms(&output[50..750]));
    }
}
