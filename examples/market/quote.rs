//! The record the market-data examples exchange: a fixed 48-byte layout,
//! little-endian, so a subscriber in any language can decode it. 48 bytes
//! is the largest payload whose log slot (16-byte header + payload) fits
//! one 64-byte cache line.
//!
//! ```text
//! 0   u64 ts_ns     CLOCK_MONOTONIC when the quote was due to be sent (its
//!                   scheduled time; same clock in every process)
//! 8   u64 seq       the publisher's own counter
//! 16  [u8; 8]       symbol, ASCII, zero-padded
//! 24  f64 bid
//! 32  f64 ask
//! 40  u32 bid_size
//! 44  u32 ask_size
//! ```
#![allow(dead_code)]

/// Bytes of one encoded quote.
pub const QUOTE_SIZE: usize = 48;

/// One quote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quote {
    pub ts_ns: u64,
    pub seq: u64,
    pub symbol: [u8; 8],
    pub bid: f64,
    pub ask: f64,
    pub bid_size: u32,
    pub ask_size: u32,
}

impl Quote {
    pub fn encode(&self) -> [u8; QUOTE_SIZE] {
        let mut b = [0u8; QUOTE_SIZE];
        b[0..8].copy_from_slice(&self.ts_ns.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.symbol);
        b[24..32].copy_from_slice(&self.bid.to_le_bytes());
        b[32..40].copy_from_slice(&self.ask.to_le_bytes());
        b[40..44].copy_from_slice(&self.bid_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.ask_size.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Quote> {
        if b.len() != QUOTE_SIZE {
            return None;
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        Some(Quote {
            ts_ns: u64_at(0),
            seq: u64_at(8),
            symbol: b[16..24].try_into().unwrap(),
            bid: f64::from_bits(u64_at(24)),
            ask: f64::from_bits(u64_at(32)),
            bid_size: u32_at(40),
            ask_size: u32_at(44),
        })
    }

    pub fn symbol(&self) -> &str {
        let end = self.symbol.iter().position(|&c| c == 0).unwrap_or(8);
        std::str::from_utf8(&self.symbol[..end]).unwrap_or("?")
    }
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes of one machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Percentile `p` (0..=100) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The value after `--name` in the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a valid value")),
        None => default,
    }
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}
