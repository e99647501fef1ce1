//! When each request is due: a schedule fixed before the run starts, so the generator never
//! waits on the server (open loop).
//!
//! - `constant`: exactly `rate` a second, evenly spaced.
//! - `poisson`: exponential gaps between arrivals with mean `1 / rate`, drawn from an RNG
//!   seeded with `--seed`, so a run is repeatable and two runs with one seed send at the same
//!   instants (the baseline comparison relies on it).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Evenly spaced, exactly `rate` a second.
    #[default]
    Constant,
    /// A Poisson process: exponential inter-arrival gaps of mean 1/rate (seeded).
    Poisson,
}

impl Arrivals {
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "poisson",
        }
    }
}

/// Draws arrival offsets (from the run's start) one after another.
pub struct Schedule {
    kind: Arrivals,
    rate: f64,
    rng: StdRng,
    index: u64,
    at: f64,
}

impl Schedule {
    /// `rate` arrivals a second (at least a tiny positive rate, never zero).
    pub fn new(kind: Arrivals, rate: f64, seed: u64) -> Schedule {
        Schedule {
            kind,
            rate: rate.max(1e-9),
            rng: StdRng::seed_from_u64(seed),
            index: 0,
            at: 0.0,
        }
    }

    /// The next arrival's offset in seconds.
    pub fn next_offset(&mut self) -> f64 {
        let offset = match self.kind {
            Arrivals::Constant => self.index as f64 / self.rate,
            Arrivals::Poisson => {
                // Inverse transform: -ln(1 - U) / rate with U in [0, 1), so never ln(0).
                let uniform: f64 = self.rng.random();
                self.at += -(1.0 - uniform).ln() / self.rate;
                self.at
            }
        };
        self.index += 1;
        offset
    }

    /// Every arrival strictly before `duration`.
    pub fn within(mut self, duration: Duration) -> Vec<Duration> {
        let end = duration.as_secs_f64();
        let mut offsets = Vec::with_capacity((self.rate * end).ceil().min(50_000_000.0) as usize);
        loop {
            let offset = self.next_offset();
            if offset >= end {
                return offsets;
            }
            offsets.push(Duration::from_secs_f64(offset));
        }
    }

    /// The first `count` arrivals.
    pub fn first(mut self, count: u64) -> Vec<Duration> {
        (0..count)
            .map(|_| Duration::from_secs_f64(self.next_offset()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_evenly_spaced_and_exact() {
        let offsets = Schedule::new(Arrivals::Constant, 100.0, 1).within(Duration::from_secs(2));
        assert_eq!(offsets.len(), 200);
        assert_eq!(offsets[1], Duration::from_millis(10));
        assert_eq!(offsets[199], Duration::from_millis(1990));
    }

    #[test]
    fn poisson_has_the_rate_on_average_and_is_repeatable() {
        let offsets = Schedule::new(Arrivals::Poisson, 1000.0, 7).within(Duration::from_secs(20));
        // 20,000 expected; the standard deviation of a Poisson count is sqrt(20,000) ≈ 141.
        assert!(
            (19_400..=20_600).contains(&offsets.len()),
            "{}",
            offsets.len()
        );
        assert!(offsets.windows(2).all(|pair| pair[0] <= pair[1]));
        let gaps: Vec<f64> = offsets
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential: the standard deviation equals the mean (a constant schedule's is 0).
        assert!((mean - 0.001).abs() < 0.000_05, "mean gap {mean}");
        assert!(
            (variance.sqrt() / mean - 1.0).abs() < 0.05,
            "cv {}",
            variance.sqrt() / mean
        );
        let again = Schedule::new(Arrivals::Poisson, 1000.0, 7).within(Duration::from_secs(20));
        assert_eq!(offsets, again, "one seed, one schedule");
        let other = Schedule::new(Arrivals::Poisson, 1000.0, 8).first(10);
        assert_ne!(offsets[..10], other[..]);
    }
}
