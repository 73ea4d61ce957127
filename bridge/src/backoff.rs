//! The bridge's one reconnection delay: 100 ms, doubled after each failed
//! attempt, at most 5 s; back to 100 ms once the link works again.
//!
//! Every retry loop of the bridge (the wire client's connects and
//! reconnects, the JetStream stream and consumer setup, the out reader's
//! re-sends) and async-nats's own reconnections ([`Backoff::nth`]) wait by
//! this policy. What counts as "works again", and so calls
//! [`Backoff::reset`], is each loop's own business.

use std::time::Duration;

/// The first delay.
const FIRST: Duration = Duration::from_millis(100);
/// No delay is longer.
const MAX: Duration = Duration::from_secs(5);

/// The delay of the current attempt of one retry loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// Failed attempts since the last reset; the delay is [`Backoff::nth`]
    /// of it.
    failures: usize,
}

impl Backoff {
    /// A loop that has not failed yet: its delay is 100 ms.
    pub(crate) fn new() -> Backoff {
        Backoff { failures: 0 }
    }

    /// The delay to wait now (unchanged).
    pub(crate) fn current(&self) -> Duration {
        Backoff::nth(self.failures)
    }

    /// The delay to wait now; the next one is twice as long (at most 5 s).
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.current();
        self.grow();
        d
    }

    /// An attempt failed: the delay doubles (at most 5 s).
    pub(crate) fn grow(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The link works again: the delay is back to 100 ms.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay after `n` failed attempts: 100 ms times 2^n, at most 5 s
    /// (the form async-nats's `reconnect_delay_callback` takes).
    pub(crate) fn nth(n: usize) -> Duration {
        let factor = u32::try_from(n)
            .ok()
            .and_then(|n| 2u32.checked_pow(n))
            .unwrap_or(u32::MAX);
        FIRST.saturating_mul(factor).min(MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_from_100_ms_up_to_5_s() {
        let mut b = Backoff::new();
        let got: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        let want = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000].map(ms);
        assert_eq!(got, want);
        assert_eq!(b.current(), ms(5000));
    }

    #[test]
    fn current_does_not_advance_and_grow_does() {
        let mut b = Backoff::new();
        assert_eq!(b.current(), ms(100));
        assert_eq!(b.current(), ms(100));
        b.grow();
        assert_eq!(b.current(), ms(200));
        b.grow();
        assert_eq!(b.next(), ms(400));
        assert_eq!(b.current(), ms(800));
    }

    #[test]
    fn reset_goes_back_to_100_ms() {
        let mut b = Backoff::new();
        for _ in 0..20 {
            b.next();
        }
        assert_eq!(b.current(), ms(5000));
        b.reset();
        assert_eq!(b.next(), ms(100));
        assert_eq!(b.next(), ms(200));
        b.reset();
        assert_eq!(b.current(), ms(100));
    }

    #[test]
    fn nth_is_the_same_sequence_and_never_overflows() {
        let want = [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms);
        for (n, w) in want.iter().enumerate() {
            assert_eq!(Backoff::nth(n), *w, "attempt {n}");
        }
        for n in [31, 32, 33, 64, 1000, usize::MAX] {
            assert_eq!(Backoff::nth(n), ms(5000), "attempt {n}");
        }
    }

    #[test]
    fn nth_matches_the_formula_it_replaced() {
        // main.rs's async-nats callback before this type.
        for n in 0..100usize {
            let old = Duration::from_millis(100u64.saturating_mul(1 << n.min(6))).min(MAX);
            assert_eq!(Backoff::nth(n), old, "attempt {n}");
        }
    }
}
