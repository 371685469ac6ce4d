//! `retry_on_failure`: exponential backoff with jitter, honouring the
//! server's retry hints (`Retry-After`, gRPC `RetryInfo`).

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::factory::FieldError;

fn default_true() -> bool {
    true
}
fn default_initial_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_randomization_factor() -> f64 {
    0.5
}
fn default_multiplier() -> f64 {
    1.5
}
fn default_max_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_elapsed_time() -> Duration {
    Duration::from_secs(300)
}

/// `retry_on_failure`, with the OpenTelemetry Collector's keys and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retry retryable failures (default true). When false a failed send is
    /// dropped and counted at once.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Wait before the first retry (default 5s).
    #[serde(default = "default_initial_interval", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Each wait is multiplied by a random factor in `1 ± randomization_factor`
    /// (default 0.5), so that many senders do not retry in step.
    #[serde(default = "default_randomization_factor")]
    pub randomization_factor: f64,
    /// Growth of the wait after each retry (default 1.5).
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Upper bound of one wait (default 30s).
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a batch after this long (default 300s); `0s` retries for
    /// ever, which suits a persistent queue.
    #[serde(default = "default_max_elapsed_time", with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: default_initial_interval(),
            randomization_factor: default_randomization_factor(),
            multiplier: default_multiplier(),
            max_interval: default_max_interval(),
            max_elapsed_time: default_max_elapsed_time(),
        }
    }
}

impl RetrySettings {
    /// Checks for use under `prefix` (e.g. `retry_on_failure`).
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.enabled {
            return errors;
        }
        if self.initial_interval.is_zero() {
            errors.push(FieldError::new(
                format!("{prefix}::initial_interval"),
                "must be greater than 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errors.push(FieldError::new(
                format!("{prefix}::randomization_factor"),
                "must be between 0 and 1",
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            errors.push(FieldError::new(
                format!("{prefix}::multiplier"),
                "must be at least 1",
            ));
        }
        if self.max_interval < self.initial_interval {
            errors.push(FieldError::new(
                format!("{prefix}::max_interval"),
                "must not be shorter than initial_interval",
            ));
        }
        errors
    }

    /// A backoff for one batch, started now.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            settings: self.clone(),
            next: self.initial_interval,
            started: Instant::now(),
        }
    }
}

/// The waits between the attempts to send one batch.
#[derive(Debug)]
pub struct Backoff {
    settings: RetrySettings,
    next: Duration,
    started: Instant,
}

impl Backoff {
    /// How long to wait before the next attempt, or `None` to give up.
    /// A server hint longer than the computed wait wins.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Option<Duration> {
        if !self.settings.enabled {
            return None;
        }
        let base = self.next;
        self.next = base
            .mul_f64(self.settings.multiplier)
            .min(self.settings.max_interval);
        let f = self.settings.randomization_factor;
        let jitter = 1.0 + f * (2.0 * fastrand::f64() - 1.0);
        let mut delay = base.mul_f64(jitter.max(0.0));
        if let Some(h) = hint {
            delay = delay.max(h);
        }
        let max = self.settings.max_elapsed_time;
        if !max.is_zero() && self.started.elapsed() + delay > max {
            return None;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rand: f64, max_elapsed: u64) -> RetrySettings {
        RetrySettings {
            enabled: true,
            initial_interval: Duration::from_millis(100),
            randomization_factor: rand,
            multiplier: 2.0,
            max_interval: Duration::from_millis(1000),
            max_elapsed_time: Duration::from_millis(max_elapsed),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn grows_exponentially_up_to_the_max_interval() {
        let mut b = settings(0.0, 0).backoff();
        let delays: Vec<u128> = (0..6)
            .map(|_| b.next_delay(None).unwrap().as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_the_randomization_factor() {
        for _ in 0..200 {
            let mut b = settings(0.5, 0).backoff();
            let d = b.next_delay(None).unwrap().as_millis();
            assert!((50..=150).contains(&d), "{d}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_server_hint_wins() {
        let mut b = settings(0.0, 0).backoff();
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_millis(1))),
            Some(Duration::from_millis(200))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_elapsed_time_but_not_when_zero() {
        let mut b = settings(0.0, 1000).backoff();
        let mut waited = Duration::ZERO;
        while let Some(d) = b.next_delay(None) {
            tokio::time::advance(d).await;
            waited += d;
        }
        assert_eq!(
            waited,
            Duration::from_millis(700),
            "100+200+400, then 800 would pass 1s"
        );

        let mut forever = settings(0.0, 0).backoff();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(forever.next_delay(None).is_some());

        let mut off = RetrySettings {
            enabled: false,
            ..settings(0.0, 0)
        }
        .backoff();
        assert_eq!(off.next_delay(None), None);
    }

    #[test]
    fn validation_names_each_bad_field() {
        let bad = RetrySettings {
            initial_interval: Duration::ZERO,
            randomization_factor: 2.0,
            multiplier: 0.5,
            ..RetrySettings::default()
        };
        let paths: Vec<String> = bad
            .validate("retry_on_failure")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert!(paths.contains(&"retry_on_failure::initial_interval".to_string()));
        assert!(paths.contains(&"retry_on_failure::randomization_factor".to_string()));
        assert!(paths.contains(&"retry_on_failure::multiplier".to_string()));
    }
}
