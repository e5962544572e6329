//! G.711 (ITU-T G.711) µ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8): one byte per
//! 16-bit sample at 8 kHz. Decoding is a table lookup; encoding is a segment search.

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32635;

/// Encodes one linear sample as µ-law.
pub fn mulaw_encode(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let sign = if value < 0 { 0x80 } else { 0 };
    if value < 0 {
        value = -value;
    }
    value = value.min(MULAW_CLIP) + MULAW_BIAS;
    let exponent = (31 - (value as u32).leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (value >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as i32 | mantissa) as u8
}

/// Decodes one µ-law byte.
pub fn mulaw_decode(byte: u8) -> i16 {
    MULAW_TABLE[usize::from(byte)]
}

/// Encodes one linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let value = i32::from(sample);
    let (sign, magnitude) = if value >= 0 { (0xd5, value) } else { (0x55, -value - 1) };
    let magnitude = magnitude.min(0x7fff);
    let encoded = if magnitude < 256 {
        magnitude >> 4
    } else {
        let exponent = (31 - (magnitude as u32).leading_zeros()) as i32 - 7;
        (exponent << 4) | ((magnitude >> (exponent + 3)) & 0x0f)
    };
    (encoded as u8) ^ sign
}

/// Decodes one A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TABLE[usize::from(byte)]
}

const fn mulaw_decode_slow(byte: u8) -> i16 {
    let byte = !byte;
    let exponent = ((byte >> 4) & 0x07) as i32;
    let mantissa = (byte & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    if byte & 0x80 != 0 { -magnitude as i16 } else { magnitude as i16 }
}

const fn alaw_decode_slow(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let exponent = ((byte >> 4) & 0x07) as i32;
    let mantissa = (byte & 0x0f) as i32;
    let magnitude = if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    if byte & 0x80 != 0 { magnitude as i16 } else { -magnitude as i16 }
}

/// A decoding table, built at compile time (a `const fn` cannot take the decoder as a function pointer).
macro_rules! decode_table {
    ($decode:ident) => {{
        let mut table = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            table[i] = $decode(i as u8);
            i += 1;
        }
        table
    }};
}

static MULAW_TABLE: [i16; 256] = decode_table!(mulaw_decode_slow);
static ALAW_TABLE: [i16; 256] = decode_table!(alaw_decode_slow);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_extremes_have_their_standard_codes() {
        assert_eq!(mulaw_encode(0), 0xff);
        assert_eq!(mulaw_decode(0xff), 0);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
    }

    #[test]
    fn every_code_decodes_and_encodes_back_to_itself() {
        for byte in 0..=255u8 {
            // µ-law has two zeros (0x7f and 0xff); both decode to 0, which encodes as 0xff.
            if byte != 0x7f {
                assert_eq!(mulaw_encode(mulaw_decode(byte)), byte, "µ-law {byte:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "A-law {byte:#x}");
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_segment() {
        for sample in (-32000i16..32000).step_by(7) {
            let error = |decoded: i16| (i32::from(decoded) - i32::from(sample)).abs();
            let bound = (i32::from(sample).abs() / 16).max(16);
            assert!(error(mulaw_decode(mulaw_encode(sample))) <= bound, "µ-law {sample}");
            assert!(error(alaw_decode(alaw_encode(sample))) <= bound, "A-law {sample}");
        }
    }
}
