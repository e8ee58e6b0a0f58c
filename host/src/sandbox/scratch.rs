//! A dry run's key-value writes: kept in the call, over what the stores hold, and dropped with
//! it. The plugin reads its own writes as it would live (an `increment` after a `set` sees the
//! set), every write is checked against the tenant's caps as a live one is, and nothing reaches
//! the stores, the disk or another call.

use std::collections::HashMap;

use crate::kv::{Bucket, Entry, KvError};

/// The most bytes of keys and values one dry run may keep (its writes are bounded in number by
/// `MAX_KV_WRITES_PER_CALL` too).
pub const MAX_SCRATCH_BYTES: usize = 1 << 20;

/// One call's writes, by store and key: `None` for a deleted key.
#[derive(Debug, Default)]
pub struct KvScratch {
    entries: HashMap<(String, String), Option<Entry>>,
    bytes: usize,
}

fn live(entry: &Entry, now_ms: i64) -> bool {
    entry.expires_at_ms.is_none_or(|at| at > now_ms)
}

impl KvScratch {
    /// The key as the call sees it: its own write if it made one, else the store's.
    fn current(&self, bucket: &Bucket, key: &str, now_ms: i64) -> Option<Entry> {
        match self
            .entries
            .get(&(bucket.name().to_owned(), key.to_owned()))
        {
            Some(written) => written.clone().filter(|e| live(e, now_ms)),
            None => bucket.get(key, now_ms),
        }
    }

    fn keep(&mut self, bucket: &Bucket, key: &str, entry: Option<Entry>) -> Result<(), KvError> {
        let size = key.len() + entry.as_ref().map_or(0, |e| e.value.len());
        if self.bytes + size > MAX_SCRATCH_BYTES {
            return Err(KvError::OverCap(format!(
                "a dry run keeps at most {MAX_SCRATCH_BYTES} bytes of key-value writes"
            )));
        }
        self.bytes += size;
        self.entries
            .insert((bucket.name().to_owned(), key.to_owned()), entry);
        Ok(())
    }

    pub fn get(&self, bucket: &Bucket, key: &str, now_ms: i64) -> Option<String> {
        self.current(bucket, key, now_ms).map(|e| e.value)
    }

    /// # Errors
    /// A bad key or value, or over a cap.
    pub fn put(
        &mut self,
        bucket: &Bucket,
        key: &str,
        value: String,
        expires_at_ms: Option<i64>,
    ) -> Result<(), KvError> {
        bucket.check(key, Some(&value))?;
        let entry = Entry {
            value,
            expires_at_ms,
        };
        self.keep(bucket, key, Some(entry))
    }

    /// # Errors
    /// A bad key, or over a cap.
    pub fn delete(&mut self, bucket: &Bucket, key: &str, now_ms: i64) -> Result<bool, KvError> {
        bucket.check(key, None)?;
        let was = self.current(bucket, key, now_ms).is_some();
        self.keep(bucket, key, None)?;
        Ok(was)
    }

    /// Adds `delta` as [`Bucket::increment`] does, to the call's view of the key.
    ///
    /// # Errors
    /// A bad key, a value that is not a whole number, an overflow, or over a cap.
    pub fn increment(
        &mut self,
        bucket: &Bucket,
        key: &str,
        delta: i64,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<i64, KvError> {
        bucket.check(key, None)?;
        let (current, kept_expiry) = match self.current(bucket, key, now_ms) {
            None => (0, None),
            Some(entry) => (
                entry.value.trim().parse::<i64>().map_err(|_| {
                    KvError::Invalid(format!(
                        "the value of {key:?} is not a whole number, so it cannot be incremented"
                    ))
                })?,
                entry.expires_at_ms,
            ),
        };
        let sum = current.checked_add(delta).ok_or_else(|| {
            KvError::Invalid(format!("{current} + {delta} overflows a 64-bit integer"))
        })?;
        let entry = Entry {
            value: sum.to_string(),
            expires_at_ms: expires_at_ms.or(kept_expiry),
        };
        self.keep(bucket, key, Some(entry))?;
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvSpace;

    #[test]
    fn a_dry_run_reads_its_own_writes_and_the_store_keeps_none() {
        let space = KvSpace::in_memory().unwrap();
        let bucket = space.bucket("acme", "agents");
        bucket.put("calls", "41".into(), None).unwrap();
        let mut scratch = KvScratch::default();
        assert_eq!(scratch.increment(&bucket, "calls", 1, None, 0), Ok(42));
        assert_eq!(scratch.get(&bucket, "calls", 0).as_deref(), Some("42"));
        scratch.put(&bucket, "new", "x".into(), None).unwrap();
        assert_eq!(scratch.delete(&bucket, "calls", 0), Ok(true));
        assert_eq!(scratch.get(&bucket, "calls", 0), None);
        // The store is as it was.
        assert_eq!(bucket.get("calls", 0).unwrap().value, "41");
        assert!(bucket.get("new", 0).is_none());
    }
}
