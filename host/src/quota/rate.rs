//! A rate measured over sampled windows, as Kafka's `Rate` over a `SampledStat` measures it
//! (`quota.window.num` samples of `quota.window.size.seconds` each): the total of the samples
//! still inside the horizon, divided by the time they cover — at least all but one whole
//! window, so a first burst is spread over the full horizon rather than over a few
//! milliseconds.

/// The sampling of every rate: `samples` windows of `window_ms` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub samples: u32,
    pub window_ms: u64,
}

impl Default for Sampling {
    /// Kafka's defaults: 11 windows of one second.
    fn default() -> Self {
        Sampling { samples: 11, window_ms: 1000 }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// One measured rate (per second).
#[derive(Clone, Debug)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn new(now_ms: u64) -> Self {
        Rate { samples: vec![Sample { start_ms: now_ms, value: 0.0 }], current: 0 }
    }

    /// Add `value` at `now_ms`.
    pub fn record(&mut self, s: Sampling, value: f64, now_ms: u64) {
        let cur = self.samples[self.current];
        if now_ms >= cur.start_ms + s.window_ms {
            let fresh = Sample { start_ms: now_ms, value: 0.0 };
            if self.samples.len() < s.samples.max(1) as usize {
                self.samples.push(fresh);
                self.current = self.samples.len() - 1;
            } else {
                self.current = (self.current + 1) % self.samples.len();
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// The rate per second at `now_ms` (with `pending` more recorded now), and the time in
    /// milliseconds it is measured over.
    pub fn measure(&self, s: Sampling, now_ms: u64, pending: f64) -> (f64, u64) {
        // Kafka's SampledStat drops a sample once it started a whole horizon ago.
        let horizon = u64::from(s.samples) * s.window_ms;
        let live = self.samples.iter().filter(|x| now_ms.saturating_sub(x.start_ms) < horizon);
        let (mut total, mut oldest) = (pending, now_ms);
        for x in live {
            total += x.value;
            oldest = oldest.min(x.start_ms);
        }
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / s.window_ms;
        let min_full = u64::from(s.samples.saturating_sub(1));
        if full < min_full {
            elapsed += (min_full - full) * s.window_ms;
        }
        let elapsed = elapsed.max(1);
        (total * 1000.0 / elapsed as f64, elapsed)
    }

    /// How long a client measured by this rate must wait to be back within `bound` (Kafka's
    /// `QuotaUtils.throttleTime`): the excess over the bound, as a share of the bound, of the
    /// time the rate is measured over. Zero within the bound. `pending`: as if that much more
    /// were recorded now.
    pub fn throttle_ms(&self, s: Sampling, bound: f64, now_ms: u64, pending: f64) -> u64 {
        let (rate, elapsed) = self.measure(s, now_ms, pending);
        if rate <= bound || bound <= 0.0 {
            return 0;
        }
        let ms = (rate - bound) / bound * elapsed as f64;
        ms.round().min(i32::MAX as f64) as u64
    }

    /// Whether nothing was recorded within the horizon (the rate may be dropped).
    pub fn idle(&self, s: Sampling, now_ms: u64) -> bool {
        let horizon = u64::from(s.samples) * s.window_ms;
        self.samples.iter().all(|x| x.value == 0.0 || now_ms.saturating_sub(x.start_ms) >= horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Sampling = Sampling { samples: 11, window_ms: 1000 };

    #[test]
    fn a_first_burst_is_spread_over_all_but_one_window() {
        let mut r = Rate::new(0);
        r.record(S, 10_000.0, 0);
        let (rate, over) = r.measure(S, 0, 0.0);
        assert_eq!(over, 10_000);
        assert_eq!(rate, 1000.0);
        // 1,000 B/s against a bound of 500: twice the bound, so wait as long again as measured.
        assert_eq!(r.throttle_ms(S, 500.0, 0, 0.0), 10_000);
        assert_eq!(r.throttle_ms(S, 1000.0, 0, 0.0), 0);
        // What a response about to go out would add.
        assert_eq!(r.throttle_ms(S, 1000.0, 0, 10_000.0), 10_000);
    }

    #[test]
    fn a_steady_rate_is_measured_and_old_samples_leave() {
        let mut r = Rate::new(0);
        for t in 0..30 {
            r.record(S, 100.0, t * 1000);
        }
        let (rate, over) = r.measure(S, 29_500, 0.0);
        // The live samples started at 19 s ..= 29 s: 1,100 over 10.5 s.
        assert_eq!(over, 10_500);
        assert!((rate - 1100.0 / 10.5).abs() < 1e-9, "{rate}");
        assert!(!r.idle(S, 29_500));
        assert!(r.idle(S, 60_000));
        assert_eq!(r.measure(S, 60_000, 0.0).0, 0.0);
        assert_eq!(r.throttle_ms(S, 1.0, 60_000, 0.0), 0);
    }
}
