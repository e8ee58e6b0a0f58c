//! Which calls a canary answers: those whose `CallSid` hashes into its share of
//! [`BUCKETS`] buckets.
//!
//! The hash is FNV-1a (64 bits) followed by MurmurHash3's 64-bit finalizer, both published
//! functions of the bytes alone with fixed constants. Nothing in it depends on the process: no
//! random key, unlike Rust's `RandomState` (SipHash keyed afresh in each process), so every node
//! of a cluster and every restart puts a `CallSid` in the same bucket, and a call whose requests
//! reach different nodes, or arrive across a restart, sees one version throughout. The finalizer
//! spreads CallSids that differ in one character (sequential ids) over all buckets.

/// How finely a canary's share is set: 10,000 buckets, so steps of 0.01%.
pub const BUCKETS: u32 = 10_000;

/// The bucket of a `CallSid`, in `0..BUCKETS`.
pub fn bucket(call_sid: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in call_sid.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    // Multiply-shift: the hash's share of 2^64, scaled to the buckets (no modulo bias).
    ((u128::from(hash) * u128::from(BUCKETS)) >> 64) as u32
}

/// The buckets below which a canary of `percent` answers: `percent` in steps of 0.01, at least
/// one bucket and at most all but one.
pub fn threshold(percent: f64) -> u32 {
    let buckets = (percent * f64::from(BUCKETS) / 100.0).round();
    (buckets as u32).clamp(1, BUCKETS - 1)
}

/// A canary's percent is a number more than 0 and less than 100.
///
/// # Errors
/// What is wrong with it.
pub fn check_percent(percent: f64) -> Result<(), String> {
    if percent.is_finite() && percent > 0.0 && percent < 100.0 {
        return Ok(());
    }
    Err(format!(
        "a canary's percent is more than 0 and less than 100, not {percent}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_sid_always_lands_in_the_same_bucket() {
        // Fixed values, computed apart from this code (FNV-1a 64 and MurmurHash3's fmix64 in a
        // few lines of Python): a change to the hash would move live calls between versions.
        assert_eq!(bucket(""), 9_367);
        assert_eq!(bucket("CallSid-1"), 9_533);
        assert_eq!(bucket("a1b2c3d4e5f60718293a4b5c6d7e8f90"), 4_797);
    }

    #[test]
    fn sequential_call_sids_spread_over_the_buckets() {
        let share = (0..10_000)
            .filter(|i| bucket(&format!("call-{i:06}")) < threshold(10.0))
            .count();
        assert!((900..=1100).contains(&share), "{share} of 10,000");
    }

    #[test]
    fn a_percent_becomes_buckets_and_odd_ones_are_refused() {
        assert_eq!(threshold(10.0), 1_000);
        assert_eq!(threshold(0.001), 1);
        assert_eq!(threshold(99.999), BUCKETS - 1);
        for bad in [0.0, 100.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(check_percent(bad).is_err(), "{bad}");
        }
        assert!(check_percent(12.5).is_ok());
    }
}
