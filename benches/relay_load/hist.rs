//! Latency histogram.

/// 1 µs buckets up to 4.096 ms, then 1 ms buckets up to ~20 s (the last one takes the rest).
pub struct Hist {
    pub b: Vec<u64>,
    pub n: u64,
    pub max_us: u64,
}

pub const FINE: u64 = 4096;
const COARSE_STEP: u64 = 1000;
pub const COARSE: u64 = 16384;

impl Hist {
    pub fn new() -> Hist {
        let mut b = vec![0u64; (FINE + COARSE) as usize];
        // Touch every page now, so the histogram is part of the RSS baseline (non-zero stores
        // that the optimizer cannot drop, then zeros again).
        b.fill(1);
        std::hint::black_box(&mut b);
        b.fill(0);
        Hist { b, n: 0, max_us: 0 }
    }
    #[inline]
    pub fn add(&mut self, ns: u64) {
        let us = ns / 1000;
        let i = if us < FINE {
            us
        } else {
            FINE + ((us - FINE) / COARSE_STEP).min(COARSE - 1)
        };
        self.b[i as usize] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.b.iter_mut().zip(&o.b) {
            *a += b;
        }
        self.n += o.n;
        self.max_us = self.max_us.max(o.max_us);
    }
    /// The `q` quantile in µs (bucket's lower edge; exact to 1 µs below 4 ms).
    pub fn q(&self, q: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, &c) in self.b.iter().enumerate() {
            acc += c;
            if acc >= rank {
                let i = i as u64;
                return if i < FINE {
                    i as f64
                } else {
                    (FINE + (i - FINE) * COARSE_STEP) as f64
                };
            }
        }
        self.max_us as f64
    }
}
