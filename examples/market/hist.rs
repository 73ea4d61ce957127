//! A latency histogram of fixed size for the market-data subscribers, the
//! same in the Rust, C (`ffi/c/examples/market_sub.c`) and Go
//! (`ffi/go/examples/market-sub`) subscribers, so their figures compare.
//!
//! Values (ns) below 128 have a bucket each; above, each power of two is
//! split into 64 buckets (a bucket is at most 1/64 = 1.6% wide). A
//! percentile is reported as the top of its bucket (never an
//! underestimate); the maximum is exact.
#![allow(dead_code)]

/// Buckets: 128 exact ones, then 64 per power of two from 2^7 to 2^63.
const BUCKETS: usize = 128 + 57 * 64;

/// Counts of latencies in ns.
pub struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
            max: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as usize; // 7..=63
        let m = (v >> (e - 6)) as usize; // 64..=127
        128 + (e - 7) * 64 + (m - 64)
    }

    /// The largest value of bucket `i`.
    fn top(i: usize) -> u64 {
        if i < 128 {
            return i as u64;
        }
        let e = (i - 128) / 64 + 7;
        let m = ((i - 128) % 64 + 64) as u64;
        (((m + 1) as u128) << (e - 6))
            .saturating_sub(1)
            .min(u64::MAX as u128) as u64
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::bucket(v)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the top of the bucket holding the
    /// ceil(q * n)-th smallest value (at most the maximum); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::top(i).min(self.max);
            }
        }
        self.max
    }

    /// The line every market-data subscriber prints at the end.
    pub fn summary(&self) -> String {
        let us = |v: u64| v as f64 / 1000.0;
        format!(
            "latency from scheduled send ({} quotes): p50 {:.2} us  p90 {:.2} us  p99 {:.2} us  p99.9 {:.2} us  max {:.2} us",
            self.n,
            us(self.quantile(0.50)),
            us(self.quantile(0.90)),
            us(self.quantile(0.99)),
            us(self.quantile(0.999)),
            us(self.max),
        )
    }
}
