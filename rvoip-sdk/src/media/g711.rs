//! G.711 (ITU-T G.711, 11/1988): µ-law (PCMU, RTP payload type 0) and A-law (PCMA, payload
//! type 8), 8000 Hz, one byte per sample, 64 kbit/s. Samples are 16-bit linear PCM; G.711 codes
//! the top 14 (µ-law) or 13 (A-law) bits, so the low bits are lost on a round trip.

/// µ-law bias (G.711: 33 in 14-bit units; 0x84 on the 16-bit scale of the decoder).
const ULAW_BIAS: i32 = 0x84;
/// µ-law clipping level in 14-bit units.
const ULAW_CLIP14: i32 = 8159;

/// The segment (0..=8) whose upper end is the first not below `v`; 8 means "above the table".
fn segment(v: i32, ends: &[i32; 8]) -> i32 {
    ends.iter().position(|&end| v <= end).unwrap_or(8) as i32
}

/// Encodes one 16-bit linear sample to a µ-law byte (G.711 Table 2, bits inverted on the wire).
pub fn ulaw_encode(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut v = i32::from(sample) >> 2; // 14-bit
    let mask = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(ULAW_CLIP14) + (ULAW_BIAS >> 2);
    let seg = segment(v, &ENDS);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    (((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask) as u8
}

/// Decodes one µ-law byte to a 16-bit linear sample (G.711 Table 2).
pub fn ulaw_decode(code: u8) -> i16 {
    let c = !code;
    let exponent = i32::from((c >> 4) & 0x07);
    let mantissa = i32::from(c & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if c & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes one 16-bit linear sample to an A-law byte (G.711 Table 1, even bits inverted).
pub fn alaw_encode(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = i32::from(sample) >> 3; // 13-bit
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &ENDS);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let shift = if seg < 2 { 1 } else { seg };
    (((seg << 4) | ((v >> shift) & 0x0F)) ^ mask) as u8
}

/// Decodes one A-law byte to a 16-bit linear sample (G.711 Table 1).
pub fn alaw_decode(code: u8) -> i16 {
    let c = i32::from(code ^ 0x55);
    let exponent = (c >> 4) & 0x07;
    let mantissa = c & 0x0F;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if c & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// Encodes a frame of samples as µ-law, appending one byte per sample to `out`.
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| ulaw_encode(s)));
}

/// Decodes a µ-law payload, appending one sample per byte to `out`.
pub fn decode_ulaw(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&b| ulaw_decode(b)));
}

/// Encodes a frame of samples as A-law, appending one byte per sample to `out`.
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| alaw_encode(s)));
}

/// Decodes an A-law payload, appending one sample per byte to `out`.
pub fn decode_alaw(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&b| alaw_decode(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        // Silence: µ-law 0xFF, A-law 0xD5 (G.711's idle patterns).
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(alaw_decode(0xD5), 8);
        // Full scale.
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_decode(0x2A), -32_256);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
            let back = ulaw_encode(ulaw_decode(code));
            // µ-law has two codes for zero (0x7F and 0xFF): both decode to 0, which encodes as 0xFF.
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "µ-law {code:#04x}");
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_the_segment_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_decode(ulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            let s = i32::from(s);
            // Quantisation step doubles per segment; the error is at most half a step (plus clipping).
            let step_u = ((s.abs() + ULAW_BIAS) >> 4).max(8);
            assert!(
                (u - s).abs() <= step_u.max(s.abs() - 32_124),
                "µ-law {s} -> {u}"
            );
            let step_a = (s.abs() >> 4).max(16);
            assert!((a - s).abs() <= step_a, "A-law {s} -> {a}");
        }
    }

    #[test]
    fn monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(3) {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "at {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    /// CRC-32 (IEEE), for comparing whole code tables with a reference.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The whole encode table (all 65536 inputs) and decode table (all 256 codes) equal the
    /// reference G.711 implementation (Sun's g711.c, as CPython's `audioop` carries it): the CRCs
    /// were computed with `audioop.lin2ulaw/lin2alaw/ulaw2lin/alaw2lin` over the same inputs.
    #[test]
    fn tables_match_the_reference_implementation() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let u: Vec<u8> = all.iter().map(|&s| ulaw_encode(s)).collect();
        let a: Vec<u8> = all.iter().map(|&s| alaw_encode(s)).collect();
        assert_eq!(crc32(&u), 0x3b7c_3a3e, "µ-law encode table");
        assert_eq!(crc32(&a), 0x9133_796e, "A-law encode table");
        let du: Vec<u8> = (0..=255u8)
            .flat_map(|c| ulaw_decode(c).to_le_bytes())
            .collect();
        let da: Vec<u8> = (0..=255u8)
            .flat_map(|c| alaw_decode(c).to_le_bytes())
            .collect();
        assert_eq!(crc32(&du), 0x0c84_7a9f, "µ-law decode table");
        assert_eq!(crc32(&da), 0x9d76_4657, "A-law decode table");
    }

    #[test]
    fn frame_helpers() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16_000) as i16).collect();
        let (mut u, mut a) = (Vec::new(), Vec::new());
        encode_ulaw(&pcm, &mut u);
        encode_alaw(&pcm, &mut a);
        assert_eq!((u.len(), a.len()), (160, 160));
        let (mut du, mut da) = (Vec::new(), Vec::new());
        decode_ulaw(&u, &mut du);
        decode_alaw(&a, &mut da);
        assert_eq!((du.len(), da.len()), (160, 160));
        assert_eq!(du[80], ulaw_decode(ulaw_encode(pcm[80])));
    }
}
