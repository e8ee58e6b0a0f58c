//! How a call's records are found: the `call_key` column and its index.
//!
//! An index on `(tenant, call_sid)` takes each new record's entry at a random place, since
//! CallSids are random: every record dirties another index page, which the commit writes to the
//! WAL and the checkpoint writes again (about three quarters of the cost of a record). So records
//! are keyed instead by the run of ids they belong to and a 32-bit hash of their tenant and
//! CallSid: `call_key = (id >> RUN_BITS) << 32 | hash`. A run's entries are scattered only within
//! its own small range of the index, which the inserts of one run keep in the page cache, and the
//! runs follow each other at the index's end, in the order records are written.
//!
//! One call's records are found by looking the hash up in each run the table holds (one index
//! seek per run of 16,384 records kept), then keeping those with the exact tenant and CallSid.
//! Records written before the key existed keep theirs in an index of their own, which pruning
//! empties as they age out.

/// A run holds 2^RUN_BITS consecutive ids (16,384): the part of the index the inserts scatter
/// over, and the number of records per seek of a lookup.
pub(super) const RUN_BITS: u32 = 14;

/// The 32-bit hash of a record's tenant and CallSid (FNV-1a, folded): part of the file format,
/// so it must never change.
pub(super) fn call_hash(tenant: &str, call_sid: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    // 0xff appears in no UTF-8 text: the tenant's end is unambiguous.
    for &b in tenant
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(call_sid.as_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    i64::from((h ^ (h >> 32)) as u32)
}

/// The run the record with this id belongs to.
pub(super) fn run_of(id: i64) -> i64 {
    id >> RUN_BITS
}

/// The `call_key` of the record with this id, null when it has no CallSid.
pub(super) fn call_key(id: i64, tenant: &str, call_sid: Option<&str>) -> Option<i64> {
    call_sid.map(|sid| (run_of(id) << 32) | call_hash(tenant, sid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_hash_never_changes() {
        // Stored in every record's key: a new hash would lose the calls already written.
        assert_eq!(call_hash("acme", "call1"), call_hash("acme", "call1"));
        assert_eq!(
            call_hash("acme", "f0e1d2c3b4a5968778695a4b3c2d1e0f"),
            2_902_957_803
        );
        assert_ne!(call_hash("acme", "call1"), call_hash("acmec", "all1"));
    }

    #[test]
    fn a_key_holds_its_run_above_its_hash() {
        let key = call_key((3 << RUN_BITS) + 5, "acme", Some("call1")).unwrap();
        assert_eq!(key >> 32, 3);
        assert_eq!(key & 0xffff_ffff, call_hash("acme", "call1"));
        assert_eq!(call_key(1, "acme", None), None);
    }
}
