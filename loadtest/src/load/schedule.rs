//! Open-loop arrival schedules: when each request is meant to be sent,
//! as an offset from the start of the run.
//!
//! The total rate is split over the threads. Uniform arrivals interleave:
//! thread `k` of `n` sends at `(k + i*n) / rate`, so the merged stream is
//! evenly spaced. Poisson arrivals draw exponential gaps; a Poisson process
//! split at random is again Poisson, so each thread draws its own.

use std::time::Duration;

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly spaced, `1/rate` apart (wrk2's constant throughput).
    Uniform,
    /// Independent arrivals: exponential gaps with mean `1/rate`.
    Poisson,
}

/// One thread's share of an open-loop schedule.
#[derive(Debug)]
pub struct Schedule {
    arrivals: Arrivals,
    /// Seconds between this thread's arrivals (on average for Poisson).
    period: f64,
    /// Offset of this thread's first arrival (uniform).
    phase: f64,
    next_index: u64,
    /// The last Poisson arrival time, in seconds.
    t: f64,
    rng: fastrand::Rng,
}

impl Schedule {
    /// Thread `thread` of `threads` sharing `rate` requests/s overall.
    pub fn new(arrivals: Arrivals, rate: f64, thread: usize, threads: usize, seed: u64) -> Self {
        let threads = threads.max(1);
        let rate = rate.max(f64::MIN_POSITIVE);
        Schedule {
            arrivals,
            period: threads as f64 / rate,
            phase: thread as f64 / rate,
            next_index: 0,
            t: 0.0,
            rng: fastrand::Rng::with_seed(
                seed ^ (thread as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
        }
    }

    /// The intended send time of the next request.
    pub fn next_offset(&mut self) -> Duration {
        let secs = match self.arrivals {
            Arrivals::Uniform => {
                let t = self.phase + self.next_index as f64 * self.period;
                self.next_index += 1;
                t
            }
            Arrivals::Poisson => {
                // Inverse CDF of the exponential; 1 - u is in (0, 1].
                let u = 1.0 - self.rng.f64();
                self.t += -u.ln() * self.period;
                self.t
            }
        };
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets_within(s: &mut Schedule, window: Duration) -> Vec<Duration> {
        let mut v = Vec::new();
        loop {
            let t = s.next_offset();
            if t >= window {
                return v;
            }
            v.push(t);
        }
    }

    #[test]
    fn uniform_threads_interleave_evenly() {
        let window = Duration::from_secs(2);
        let mut all: Vec<Duration> = (0..3)
            .flat_map(|k| {
                offsets_within(
                    &mut Schedule::new(Arrivals::Uniform, 300.0, k, 3, 1),
                    window,
                )
            })
            .collect();
        all.sort();
        assert_eq!(all.len(), 600);
        assert_eq!(all[0], Duration::ZERO);
        for w in all.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            assert!((gap - 1.0 / 300.0).abs() < 1e-9, "{gap}");
        }
    }

    #[test]
    fn poisson_has_the_rate_and_exponential_gaps() {
        let window = Duration::from_secs(100);
        let mut s = Schedule::new(Arrivals::Poisson, 200.0, 0, 1, 42);
        let v = offsets_within(&mut s, window);
        // 20,000 expected; the standard deviation is ~141.
        assert!((19_400..20_600).contains(&v.len()), "{}", v.len());
        let gaps: Vec<f64> = v.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.005).abs() < 0.0002, "{mean}");
        // Exponential: about e^-1 of the gaps exceed the mean.
        let over = gaps.iter().filter(|g| **g > 0.005).count() as f64 / gaps.len() as f64;
        assert!((over - (-1f64).exp()).abs() < 0.02, "{over}");
        // Increasing, and the same seed gives the same schedule.
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        let again = offsets_within(
            &mut Schedule::new(Arrivals::Poisson, 200.0, 0, 1, 42),
            window,
        );
        assert_eq!(v, again);
    }

    #[test]
    fn poisson_split_over_threads_keeps_the_total_rate() {
        let window = Duration::from_secs(50);
        let n: usize = (0..4)
            .map(|k| {
                offsets_within(
                    &mut Schedule::new(Arrivals::Poisson, 400.0, k, 4, 7),
                    window,
                )
                .len()
            })
            .sum();
        assert!((19_400..20_600).contains(&n), "{n}");
    }
}
