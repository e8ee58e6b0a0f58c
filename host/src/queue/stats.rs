//! The queue's counters and its start-delay histogram, kept in atomics and read by `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub accepted: AtomicU64,
    pub refused_full: AtomicU64,
    pub refused_unavailable: AtomicU64,
    pub handled: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Dead letters deleted past their flow's retention.
    pub dead_expired: AtomicU64,
    /// Dead letters deleted because their flow held `max_dead_letters_per_flow`.
    pub dead_trimmed: AtomicU64,
    pub replayed: AtomicU64,
    /// Attempts the sandbox had no room for (`overloaded`): put off, not counted as attempts.
    pub deferred: AtomicU64,
    pub commits: AtomicU64,
    /// Commits the store refused (their requests were refused, their outcomes kept and written
    /// again).
    pub failed_commits: AtomicU64,
    /// Outcomes let go after failed commits, past what the writer keeps: their events run again
    /// at the next start.
    pub unwritten_dropped: AtomicU64,
    /// From accepting a request to starting its first attempt.
    pub start_delay: DelayHistogram,
}

/// Upper bounds of the start-delay histogram's buckets, in microseconds.
pub const DELAY_BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    5_000_000, 30_000_000,
];

/// A Prometheus-style histogram of delays: a count per bucket (not cumulative; the last one is
/// everything above the largest bound), the sum and the count.
#[derive(Debug, Default)]
pub struct DelayHistogram {
    pub buckets: [AtomicU64; DELAY_BUCKETS_US.len() + 1],
    pub sum_us: AtomicU64,
    pub count: AtomicU64,
}

impl DelayHistogram {
    pub fn observe(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        let bucket = DELAY_BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}
