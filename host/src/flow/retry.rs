//! How an async flow retries: its [`RetryPolicy`] and the backoff it implies.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most attempts a flow may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// The longest delay between two attempts a flow may ask for: one day.
pub const MAX_BACKOFF_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest a flow may keep its dead letters: a year.
pub const MAX_DEAD_LETTER_RETENTION_HOURS: u64 = 365 * 24;
/// How long dead letters are kept unless the flow says otherwise: a week.
pub const DEFAULT_DEAD_LETTER_RETENTION_HOURS: u64 = 7 * 24;

/// How often, and how far apart, a failed event of an async flow is tried again.
///
/// Attempt `n + 1` waits `backoff_ms * 2^(n - 1)`, capped at `max_backoff_ms`, then "equal
/// jitter": a random point in the upper half of that delay, so a burst of failures spreads out
/// instead of coming back in step. After `max_attempts` failed attempts the event becomes a dead
/// letter, kept for `dead_letter_retention_hours` after its last attempt, then deleted.
///
/// An omitted setting takes its default. The server answers 422 unless `max_attempts` is 1 to
/// 100, `backoff_ms` is 1 to 86400000 (a day), `max_backoff_ms` is from `backoff_ms` to
/// 86400000 and `dead_letter_retention_hours` is 1 to 8760 (a year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 means never retried).
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// The delay before the first retry, before jitter.
    #[schema(minimum = 1, maximum = 86400000)]
    pub backoff_ms: u64,
    /// No delay is longer than this, before jitter; at least `backoff_ms`.
    #[schema(minimum = 1, maximum = 86400000)]
    pub max_backoff_ms: u64,
    /// How long a dead letter is kept after its last attempt (the callers' numbers in it with
    /// it), before it is deleted.
    #[schema(minimum = 1, maximum = 8760)]
    pub dead_letter_retention_hours: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_ms: 1_000,
            max_backoff_ms: 5 * 60 * 1000,
            dead_letter_retention_hours: DEFAULT_DEAD_LETTER_RETENTION_HOURS,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy against what the host allows.
    ///
    /// # Errors
    /// A message naming the setting that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(format!(
                "retry.max_attempts must be between 1 and {MAX_ATTEMPTS}, not {}",
                self.max_attempts
            ));
        }
        if !(1..=MAX_BACKOFF_MS).contains(&self.backoff_ms) {
            return Err(format!(
                "retry.backoff_ms must be between 1 and {MAX_BACKOFF_MS}, not {}",
                self.backoff_ms
            ));
        }
        if !(self.backoff_ms..=MAX_BACKOFF_MS).contains(&self.max_backoff_ms) {
            return Err(format!(
                "retry.max_backoff_ms must be between backoff_ms ({}) and {MAX_BACKOFF_MS}, not {}",
                self.backoff_ms, self.max_backoff_ms
            ));
        }
        if !(1..=MAX_DEAD_LETTER_RETENTION_HOURS).contains(&self.dead_letter_retention_hours) {
            return Err(format!(
                "retry.dead_letter_retention_hours must be between 1 and \
                 {MAX_DEAD_LETTER_RETENTION_HOURS}, not {}",
                self.dead_letter_retention_hours
            ));
        }
        Ok(())
    }

    /// How long a dead letter is kept.
    pub fn dead_letter_retention(&self) -> Duration {
        Duration::from_secs(self.dead_letter_retention_hours.saturating_mul(3600))
    }

    /// The delay after failed attempt `attempt` (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let ms = self
            .backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms);
        Duration::from_millis(ms)
    }

    /// The delay after failed attempt `attempt`, with equal jitter: `unit` (in `[0, 1)`, random)
    /// picks a point between half the base delay and all of it.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt);
        let half = base / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether an event that has failed `attempts` times gets another attempt.
    pub fn retries_after(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }
}

/// A uniformly random number in `[0, 1)`, from the operating system's generator.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    // Without randomness the jitter is merely absent, never wrong: fall back to the middle.
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, backoff_ms: u64, max_backoff_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff_ms,
            max_backoff_ms,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn delays_double_from_the_first_backoff_up_to_the_cap() {
        let p = policy(10, 100, 1_000);
        let ms: Vec<u128> = (1..=6).map(|a| p.base_delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1_000, 1_000]);
        // No overflow however late the attempt.
        assert_eq!(p.base_delay(u32::MAX).as_millis(), 1_000);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_delay() {
        let p = policy(10, 100, 10_000);
        assert_eq!(p.delay(3, 0.0).as_millis(), 200);
        assert_eq!(p.delay(3, 0.999_999).as_millis(), 399);
        for _ in 0..1_000 {
            let d = p.delay(2, random_unit()).as_millis();
            assert!((100..200).contains(&d), "{d} ms");
        }
    }

    #[test]
    fn random_units_spread_over_the_interval() {
        let draws: Vec<f64> = (0..2_000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        // Each tenth of the interval gets some draws (the chance one gets none is ~1e-91).
        for tenth in 0..10 {
            let lo = f64::from(tenth) / 10.0;
            assert!(draws.iter().any(|u| (lo..lo + 0.1).contains(u)), "{lo}");
        }
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        let p = policy(3, 10, 10);
        assert!(p.retries_after(1));
        assert!(p.retries_after(2));
        assert!(!p.retries_after(3));
        assert!(!policy(1, 10, 10).retries_after(1));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        assert!(RetryPolicy::default().validate().is_ok());
        let cases = [
            (policy(0, 10, 10), "retry.max_attempts"),
            (policy(MAX_ATTEMPTS + 1, 10, 10), "retry.max_attempts"),
            (policy(3, 0, 10), "retry.backoff_ms"),
            (policy(3, 100, 10), "retry.max_backoff_ms"),
            (policy(3, 10, MAX_BACKOFF_MS + 1), "retry.max_backoff_ms"),
        ];
        for (p, name) in cases {
            let message = p.validate().unwrap_err();
            assert!(message.starts_with(name), "{message}");
        }
    }
}
