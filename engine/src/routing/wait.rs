//! Expected wait: how long a conversation at a given place in its team's queue can expect to
//! wait for an offer, from how fast the team's slots have been freeing lately.
//!
//! The model: while every slot of the team's online agents is taken, a slot frees when one of
//! their conversations ends; with `c` slots each held on average `h`, slots free at a rate of
//! `c / h`. The conversation `k` places behind the slots still free waits for `k` of those,
//! a sum of `k` waits: an Erlang (gamma) distribution, whose median and 90th percentile are
//! given by the Wilson–Hilferty approximation (within a few percent, exact enough for a wait
//! told in minutes). Nothing is said (`None`) while the team has ended too few conversations
//! lately to know `h`, or has nobody online.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A queue position's expected wait, in milliseconds (`expected_wait_ms` of the team stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WaitEstimate {
    pub p50: i64,
    pub p90: i64,
}

impl WaitEstimate {
    pub const NONE: WaitEstimate = WaitEstimate { p50: 0, p90: 0 };

    /// The median as a duration (what `{{expected_wait}}` tells).
    pub fn median(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.p50).unwrap_or(0))
    }
}

/// How long a team's slots were held lately: one entry per conversation that ended (resolved
/// or handed on) after an agent held it, kept for `window` and at most [`MAX_HOLDS`].
#[derive(Clone, Debug, Default)]
pub struct Holds {
    ended: VecDeque<(Instant, Duration)>,
}

/// The most holds kept per team (the latest).
const MAX_HOLDS: usize = 500;

impl Holds {
    pub fn record(&mut self, at: Instant, held: Duration) {
        self.ended.push_back((at, held));
        if self.ended.len() > MAX_HOLDS {
            self.ended.pop_front();
        }
    }

    /// The mean hold of those that ended within `window` before `now`, once there are at
    /// least `min_samples` of them.
    pub fn mean(&self, now: Instant, window: Duration, min_samples: usize) -> Option<Duration> {
        let recent: Vec<Duration> = self
            .ended
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= window)
            .map(|(_, held)| *held)
            .collect();
        if recent.len() < min_samples.max(1) {
            return None;
        }
        Some(recent.iter().sum::<Duration>() / recent.len() as u32)
    }
}

/// The standard normal's 90th percentile.
const Z90: f64 = 1.281_551_565_545;

/// The `z` quantile (in seconds) of the time until `k` slots free, each freeing at
/// `rate` per second: an Erlang(k, rate), by Wilson–Hilferty on its chi-square form.
fn erlang_quantile(k: u32, rate: f64, z: f64) -> f64 {
    let dof = 2.0 * f64::from(k);
    let a = 2.0 / (9.0 * dof);
    let chi_square = dof * (1.0 - a + z * a.sqrt()).max(0.0).powi(3);
    chi_square / (2.0 * rate)
}

/// The wait of the conversation at `position` (1 for the next to be offered) in a team with
/// `free_slots` free now, `online_slots` slots in all (its online agents' capacity), each held
/// `mean_hold` on average. `None` without anyone online or a hold to go on.
pub fn estimate(
    position: usize,
    free_slots: u32,
    online_slots: u32,
    mean_hold: Option<Duration>,
) -> Option<WaitEstimate> {
    if online_slots == 0 {
        return None;
    }
    let behind = u32::try_from(position)
        .unwrap_or(u32::MAX)
        .saturating_sub(free_slots);
    if behind == 0 {
        return Some(WaitEstimate::NONE);
    }
    let hold = mean_hold?.as_secs_f64();
    if hold <= 0.0 {
        return Some(WaitEstimate::NONE);
    }
    let rate = f64::from(online_slots) / hold;
    let ms = |secs: f64| (secs * 1000.0).round() as i64;
    Some(WaitEstimate {
        p50: ms(erlang_quantile(behind, rate, 0.0)),
        p90: ms(erlang_quantile(behind, rate, Z90)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(got: i64, want: f64, share: f64) -> bool {
        (got as f64 - want).abs() <= want * share
    }

    #[test]
    fn one_slot_to_wait_for_is_an_exponential_wait() {
        // 4 slots held 120 s each: a slot frees every 30 s on average.
        let wait = estimate(1, 0, 4, Some(Duration::from_secs(120))).unwrap();
        // Exponential: median ln 2 × 30 s = 20.8 s, 90th percentile ln 10 × 30 s = 69.1 s.
        assert!(near(wait.p50, 20_794.0, 0.02), "{wait:?}");
        assert!(near(wait.p90, 69_078.0, 0.03), "{wait:?}");
    }

    #[test]
    fn further_back_waits_longer_and_narrower() {
        let hold = Some(Duration::from_secs(300));
        // Tenth in line, 5 slots held 300 s: a slot every 60 s. Erlang(10, 1/60 s): median
        // 580.1 s and 90th percentile 852.4 s (exact values, from the chi-square with 20
        // degrees of freedom: 19.337 and 28.412, times 30 s).
        let tenth = estimate(10, 0, 5, hold).unwrap();
        assert!(near(tenth.p50, 580_100.0, 0.01), "{tenth:?}");
        assert!(near(tenth.p90, 852_400.0, 0.01), "{tenth:?}");
        let second = estimate(2, 0, 5, hold).unwrap();
        assert!(second.p50 < tenth.p50);
        // The spread relative to the median narrows with more slots to wait for.
        let spread = |w: WaitEstimate| w.p90 as f64 / w.p50 as f64;
        assert!(spread(tenth) < spread(second));
    }

    #[test]
    fn free_slots_mean_no_wait_and_nothing_known_means_nothing_said() {
        assert_eq!(estimate(2, 3, 5, None), Some(WaitEstimate::NONE));
        // Third in line with two free: one slot to wait for.
        assert_eq!(
            estimate(3, 2, 5, Some(Duration::from_secs(100))),
            estimate(1, 0, 5, Some(Duration::from_secs(100)))
        );
        assert_eq!(estimate(1, 0, 5, None), None, "no history");
        assert_eq!(
            estimate(1, 0, 0, Some(Duration::from_secs(100))),
            None,
            "nobody online"
        );
    }

    #[test]
    fn holds_count_within_their_window_once_there_are_enough() {
        let start = Instant::now();
        let mut holds = Holds::default();
        let window = Duration::from_secs(60);
        for i in 0..4 {
            holds.record(
                start + Duration::from_secs(i),
                Duration::from_secs(10 * (i + 1)),
            );
        }
        assert_eq!(holds.mean(start + Duration::from_secs(5), window, 5), None);
        assert_eq!(
            holds.mean(start + Duration::from_secs(5), window, 4),
            Some(Duration::from_secs(25))
        );
        // A minute later the first two have left the window.
        assert_eq!(
            holds.mean(start + Duration::from_secs(62), window, 2),
            Some(Duration::from_secs(35))
        );
    }
}
