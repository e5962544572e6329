//! G.722 (ITU-T G.722, 64 kbit/s mode): sub-band ADPCM of 16 kHz audio, one octet per pair of samples.
//!
//! A quadrature mirror filter splits each pair of input samples into a low band (0–4 kHz, coded with 6
//! bits) and a high band (4–8 kHz, 2 bits); each band has an adaptive quantiser and a pole-zero predictor
//! (blocks 1 to 6 of the recommendation). Encoder and decoder keep the same state, so both ends must see
//! every octet in order: a lost packet is concealed after decoding, never skipped inside it.
//!
//! RTP carries G.722 with an 8 kHz clock although it samples at 16 kHz (RFC 3551 §4.5.2), so a 20 ms frame
//! is 160 octets, 320 samples and 160 timestamp units.

/// QMF coefficients h0, h2, … h22 (the odd ones are these reversed).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Low-band quantiser decision levels (QUANTL), scaled by the step size.
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121, 1219, 1339,
    1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// The 6-bit low-band code of each decision interval, for a negative and a positive difference.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
    4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
    33, 32, 0,
];
/// Low-band inverse quantiser of the full 6-bit code (INVQBL), and of its 4 most significant bits (INVQAL).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360, -8576,
    -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688, -1360, -1040,
    -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
    4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QM4: [i32; 16] =
    [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];
/// Low-band log step adaptation (LOGSCL): the 4-bit code's magnitude, and the step change it causes.
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// 2048 · 2^(i/32): the linear step of a log step (SCALEL, SCALEH).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025,
    3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// High band: the 2-bit code for a negative and a positive difference, its inverse quantiser, and the
/// step adaptation.
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const RH2: [usize; 4] = [2, 1, 2, 1];
const WH: [i32; 3] = [0, -214, 798];

fn saturate(value: i32) -> i32 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// The state of one sub-band's adaptive quantiser and predictor.
#[derive(Debug, Clone)]
struct Band {
    /// Signal estimate (s), its pole part (sp) and zero part (sz).
    s: i32,
    sp: i32,
    sz: i32,
    /// Reconstructed signals r, partial reconstructions p and pole coefficients a (index 0 is the newest).
    r: [i32; 3],
    p: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    /// Quantised differences d and zero coefficients b.
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    /// Log step (nb) and step size (det).
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Band {
        Band {
            s: 0,
            sp: 0,
            sz: 0,
            r: [0; 3],
            p: [0; 3],
            a: [0; 3],
            ap: [0; 3],
            d: [0; 7],
            b: [0; 7],
            bp: [0; 7],
            nb: 0,
            det,
        }
    }

    /// Log step adaptation (LOGSCL/LOGSCH) and the step size it gives (SCALEL/SCALEH).
    fn adapt_step(&mut self, change: i32, most: i32, shift: i32) {
        self.nb = ((self.nb * 127) >> 7) + change;
        self.nb = self.nb.clamp(0, most);
        let fraction = ILB[((self.nb >> 6) & 31) as usize];
        let exponent = shift - (self.nb >> 11);
        let step = if exponent < 0 { fraction << -exponent } else { fraction >> exponent };
        self.det = step << 2;
    }

    /// Block 4: reconstruction, predictor adaptation and the next estimate, from quantised difference `d`.
    fn update(&mut self, d: i32) {
        self.d[0] = d;
        self.r[0] = saturate(self.s + d);
        self.p[0] = saturate(self.sz + d);

        // UPPOL2: the second pole coefficient.
        let sign = |v: i32| v >> 15;
        let (sg0, sg1, sg2) = (sign(self.p[0]), sign(self.p[1]), sign(self.p[2]));
        let a1x4 = saturate(self.a[1] << 2);
        let wd2 = if sg0 == sg1 { -a1x4 } else { a1x4 }.min(32767);
        let mut wd3 = if sg0 == sg2 { 128 } else { -128 };
        wd3 += wd2 >> 7;
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);

        // UPPOL1: the first, bounded by the second.
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let bound = saturate(15360 - self.ap[2]);
        self.ap[1] = saturate(wd1 + wd2).clamp(-bound, bound);

        // UPZERO: the six zero coefficients.
        let step = if d == 0 { 0 } else { 128 };
        let sg0 = sign(d);
        for i in 1..7 {
            let wd2 = if sign(self.d[i]) == sg0 { step } else { -step };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = saturate(wd2 + wd3);
        }

        // DELAYA: age everything by one sample.
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }

        // FILTEP, FILTEZ, PREDIC: the next estimate.
        let pole = |a: i32, r: i32| (a * saturate(r + r)) >> 15;
        self.sp = saturate(pole(self.a[1], self.r[1]) + pole(self.a[2], self.r[2]));
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * saturate(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = saturate(sz);
        self.s = saturate(self.sp + self.sz);
    }
}

/// Encodes 16 kHz samples, two per octet.
#[derive(Debug, Clone)]
pub struct Encoder {
    low: Band,
    high: Band,
    qmf: [i32; 24],
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder { low: Band::new(32), high: Band::new(8), qmf: [0; 24] }
    }
}

impl Encoder {
    /// Appends one octet per pair of `samples` (an odd last sample is dropped).
    pub fn encode(&mut self, samples: &[i16], out: &mut Vec<u8>) {
        for pair in samples.chunks_exact(2) {
            // Transmit QMF: split the pair into the two bands.
            self.qmf.copy_within(2.., 0);
            self.qmf[22] = i32::from(pair[0]);
            self.qmf[23] = i32::from(pair[1]);
            let (mut odd, mut even) = (0, 0);
            for i in 0..12 {
                odd += self.qmf[2 * i] * QMF[i];
                even += self.qmf[2 * i + 1] * QMF[11 - i];
            }
            let low_in = (even + odd) >> 14;
            let high_in = (even - odd) >> 14;

            // Low band: SUBTRA, QUANTL, INVQAL, then adaptation.
            let low_band = &mut self.low;
            let el = saturate(low_in - low_band.s);
            let magnitude = if el >= 0 { el } else { -(el + 1) };
            let interval = (1..30).find(|&i| magnitude < (Q6[i] * low_band.det) >> 12).unwrap_or(30);
            let low_code = if el < 0 { ILN[interval] } else { ILP[interval] };
            let ril = (low_code >> 2) as usize;
            let low_d = (low_band.det * QM4[ril]) >> 15;
            low_band.adapt_step(WL[RL42[ril]], 18432, 8);
            low_band.update(low_d);

            // High band: SUBTRA, QUANTH, INVQAH, then adaptation.
            let high_band = &mut self.high;
            let eh = saturate(high_in - high_band.s);
            let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
            let large = usize::from(magnitude >= (564 * high_band.det) >> 12) + 1;
            let high_code = if eh < 0 { IHN[large] } else { IHP[large] };
            let high_d = (high_band.det * QM2[high_code as usize]) >> 15;
            high_band.adapt_step(WH[RH2[high_code as usize]], 22528, 10);
            high_band.update(high_d);

            out.push(((high_code << 6) | low_code) as u8);
        }
    }
}

/// Decodes octets into 16 kHz samples, two per octet.
#[derive(Debug, Clone)]
pub struct Decoder {
    low: Band,
    high: Band,
    qmf: [i32; 24],
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder { low: Band::new(32), high: Band::new(8), qmf: [0; 24] }
    }
}

impl Decoder {
    /// Appends two samples per octet of `payload`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        for &octet in payload {
            let low_code = usize::from(octet & 0x3f);
            let high_code = usize::from(octet >> 6);

            // Low band: INVQBL and RECONS give the output; INVQAL drives the adaptation.
            let low_band = &mut self.low;
            let low = (low_band.s + ((low_band.det * QM6[low_code]) >> 15)).clamp(-16384, 16383);
            let ril = low_code >> 2;
            let low_d = (low_band.det * QM4[ril]) >> 15;
            low_band.adapt_step(WL[RL42[ril]], 18432, 8);
            low_band.update(low_d);

            // High band.
            let high_band = &mut self.high;
            let high_d = (high_band.det * QM2[high_code]) >> 15;
            let high = (high_d + high_band.s).clamp(-16384, 16383);
            high_band.adapt_step(WH[RH2[high_code]], 22528, 10);
            high_band.update(high_d);

            // Receive QMF: join the bands into two samples.
            self.qmf.copy_within(2.., 0);
            self.qmf[22] = low + high;
            self.qmf[23] = low - high;
            let (mut first, mut second) = (0, 0);
            for i in 0..12 {
                second += self.qmf[2 * i] * QMF[i];
                first += self.qmf[2 * i + 1] * QMF[11 - i];
            }
            out.push(saturate(first >> 11) as i16);
            out.push(saturate(second >> 11) as i16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, samples: usize, amplitude: f64) -> Vec<i16> {
        (0..samples)
            .map(|n| (amplitude * (2.0 * std::f64::consts::PI * hz * n as f64 / 16000.0).sin()) as i16)
            .collect()
    }

    /// The signal-to-noise ratio of `decoded` against `original`, at the best alignment (the two QMFs
    /// delay the signal by about 23 samples).
    fn snr_db(original: &[i16], decoded: &[i16]) -> f64 {
        (0..40)
            .map(|lag| {
                let pairs = original.iter().zip(&decoded[lag..]).skip(400);
                let (signal, noise) = pairs.fold((0.0, 0.0), |(s, n), (&a, &b)| {
                    (s + f64::from(a).powi(2), n + (f64::from(a) - f64::from(b)).powi(2))
                });
                10.0 * (signal / noise.max(1.0)).log10()
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn the_step_table_is_two_to_the_thirty_second() {
        for (i, &step) in ILB.iter().enumerate() {
            let exact = 2048.0 * 2f64.powf(i as f64 / 32.0);
            assert!((f64::from(step) - exact).abs() <= 5.5, "{i}: {step} vs {exact}");
        }
    }

    #[test]
    fn tones_in_both_bands_survive_a_round_trip() {
        for hz in [300.0, 1000.0, 3000.0, 5000.0, 6500.0] {
            let input = sine(hz, 16000, 8000.0);
            let mut payload = Vec::new();
            Encoder::default().encode(&input, &mut payload);
            assert_eq!(payload.len(), 8000);
            let mut decoded = Vec::new();
            Decoder::default().decode(&payload, &mut decoded);
            assert_eq!(decoded.len(), 16000);
            let snr = snr_db(&input, &decoded);
            assert!(snr > 15.0, "{hz} Hz: {snr:.1} dB");
        }
    }

    #[test]
    fn silence_stays_quiet_and_loud_input_does_not_overflow() {
        let mut payload = Vec::new();
        let mut encoder = Encoder::default();
        encoder.encode(&[0; 3200], &mut payload);
        let loud: Vec<i16> = (0..3200).map(|n| if n % 20 < 10 { i16::MAX } else { i16::MIN }).collect();
        encoder.encode(&loud, &mut payload);
        let mut decoded = Vec::new();
        Decoder::default().decode(&payload, &mut decoded);
        assert!(decoded[..3200].iter().all(|s| s.abs() < 64), "silence decodes near zero");
        // Every octet is a valid code: arbitrary bytes decode without panicking.
        let noise: Vec<u8> = (0..=255).cycle().take(4000).collect();
        Decoder::default().decode(&noise, &mut decoded);
    }
}
