//! Who may start a call: the tenant's share of the pool, the pool's calls, and the memory budget
//! across all calls in flight. Each is an atomic counter, taken before the call's store exists
//! and given back when the call ends (a guard, so an abandoned call gives it back too).
//!
//! Calls are counted by weight: a call of a component with many memories or tables takes as many
//! of the pool's slots as it needs (`Plugin::weight`), in the pool and in its tenant's share.
//!
//! A tenant's share bounds what one tenant can hold: a plugin that sleeps to its deadline holds
//! a slot at no CPU cost, so without a share one tenant flooding its flow would take the whole
//! pool and every other tenant's calls would answer `overloaded`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// The name lookups one tenant's outbound requests may run at once. A lookup runs on one of
/// tokio's blocking threads until the resolver gives up (seconds, for a name server that does
/// not answer), whether or not the call still waits for it, so each one holds its place until
/// then; past these, the tenant's next lookups wait, within their calls' deadlines.
pub const LOOKUPS_PER_TENANT: usize = 4;

/// One tenant's share of the sandbox: how many of the pool's slots its calls may hold at the same
/// moment (one per call of most components). Shared by
/// all of the tenant's flows; the operator may change the cap while calls run.
#[derive(Debug)]
pub struct TenantShare {
    in_flight: AtomicUsize,
    max: AtomicUsize,
    /// The tenant's outbound requests' name lookups running at once (see `outbound::send`).
    lookups: Arc<Semaphore>,
}

impl TenantShare {
    /// A share of at most `max_calls` calls at once (at least 1).
    pub fn new(max_calls: u32) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            max: AtomicUsize::new(to_usize(max_calls.max(1))),
            lookups: Arc::new(Semaphore::new(LOOKUPS_PER_TENANT)),
        }
    }

    /// A share bounded only by the pool: for a caller that runs one tenant (`passthru run`,
    /// tests).
    pub fn unlimited() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            max: AtomicUsize::new(usize::MAX),
            lookups: Arc::new(Semaphore::new(LOOKUPS_PER_TENANT)),
        }
    }

    /// The tenant's name lookups for outbound requests: `LOOKUPS_PER_TENANT` at once, for all
    /// its flows.
    pub fn lookups(&self) -> Arc<Semaphore> {
        self.lookups.clone()
    }

    /// Changes the cap; calls beyond a lowered cap finish, and new ones wait for the count to
    /// fall under it.
    pub fn set_max(&self, max_calls: u32) {
        self.max
            .store(to_usize(max_calls.max(1)), Ordering::Relaxed);
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// The slots the tenant's calls hold right now (its calls, for components of weight 1).
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(super) fn enter(&self, weight: u32) -> Option<Slot<'_>> {
        Slot::enter(&self.in_flight, self.max(), weight)
    }
}

/// Counts one call in, at its weight, until dropped.
pub(super) struct Slot<'a> {
    counter: &'a AtomicUsize,
    weight: usize,
}

impl<'a> Slot<'a> {
    /// Counts a call of `weight` slots in, unless that would take the count over `max`. A call
    /// heavier than `max` is let in alone (the pool is sized for one call of the largest
    /// component), so it is slow to get in, never refused for ever.
    pub(super) fn enter(counter: &'a AtomicUsize, max: usize, weight: u32) -> Option<Self> {
        let weight = to_usize(weight.max(1));
        // Sequentially consistent, for the epoch ticker reads the sandbox's count to decide
        // whether it may park (see `ticker`); on x86 this is the same instruction as relaxed.
        let before = counter.fetch_add(weight, Ordering::SeqCst);
        if before != 0 && before.saturating_add(weight) > max {
            counter.fetch_sub(weight, Ordering::SeqCst);
            return None;
        }
        Some(Self { counter, weight })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.weight, Ordering::SeqCst);
    }
}

/// The memory caps of the calls in flight, added up, against a budget: each call may grow to its
/// cap, so the sum is what the host may have to back at once.
#[derive(Debug)]
pub(super) struct MemoryBudget {
    reserved_mb: AtomicU64,
    budget_mb: u64,
}

impl MemoryBudget {
    pub(super) fn new(budget_mb: u64) -> Self {
        Self {
            reserved_mb: AtomicU64::new(0),
            budget_mb,
        }
    }

    pub(super) fn budget_mb(&self) -> u64 {
        self.budget_mb
    }

    pub(super) fn reserved_mb(&self) -> u64 {
        self.reserved_mb.load(Ordering::Relaxed)
    }

    /// Reserves `mb` for one call, unless that would take the sum over the budget.
    pub(super) fn reserve(&self, mb: u64) -> Option<Reservation<'_>> {
        let before = self.reserved_mb.fetch_add(mb, Ordering::Relaxed);
        if before.saturating_add(mb) > self.budget_mb {
            self.reserved_mb.fetch_sub(mb, Ordering::Relaxed);
            return None;
        }
        Some(Reservation { budget: self, mb })
    }
}

/// One call's memory reservation, given back when dropped.
pub(super) struct Reservation<'a> {
    budget: &'a MemoryBudget,
    mb: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget
            .reserved_mb
            .fetch_sub(self.mb, Ordering::Relaxed);
    }
}

/// Half the machine's physical memory, in MiB: the default budget for calls in flight (the rest
/// is the host's, the page cache's and the other processes'). 4 GiB when it cannot be read.
pub fn default_memory_budget_mb() -> u64 {
    // SAFETY: sysconf only reads system configuration values.
    #[allow(unsafe_code)]
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGE_SIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page_size)) {
        (Ok(pages), Ok(size)) if pages > 0 && size > 0 => (pages.saturating_mul(size) >> 20) / 2,
        _ => 4096,
    }
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_admits_up_to_its_cap_and_frees_on_drop() {
        let share = TenantShare::new(2);
        let a = share.enter(1).expect("first");
        let b = share.enter(1).expect("second");
        assert!(share.enter(1).is_none(), "a third is over the cap");
        assert_eq!(share.calls_in_flight(), 2);
        drop(a);
        let c = share.enter(1).expect("a slot came back");
        share.set_max(1);
        drop((b, c));
        let _d = share.enter(1).expect("under the lowered cap");
        assert!(share.enter(1).is_none());
    }

    #[test]
    fn calls_count_at_their_weight_and_a_heavy_one_gets_in_alone() {
        let share = TenantShare::new(4);
        let heavy = share.enter(3).expect("3 of 4");
        assert!(share.enter(2).is_none(), "5 is over 4");
        let light = share.enter(1).expect("exactly 4");
        assert_eq!(share.calls_in_flight(), 4);
        drop((heavy, light));
        assert_eq!(share.calls_in_flight(), 0);
        // Heavier than the whole share: only when nothing else runs.
        let giant = share.enter(9).expect("alone");
        assert!(share.enter(1).is_none(), "nothing beside it");
        drop(giant);
        let light = share.enter(1).expect("light first");
        assert!(
            share.enter(9).is_none(),
            "the giant waits for an empty share"
        );
        drop(light);
    }

    #[test]
    fn the_memory_budget_counts_every_call_in_flight() {
        let budget = MemoryBudget::new(100);
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(41).is_none(), "101 MiB is over 100");
        let b = budget.reserve(40).expect("exactly the budget");
        assert_eq!(budget.reserved_mb(), 100);
        drop(a);
        assert_eq!(budget.reserved_mb(), 40);
        drop(b);
        assert_eq!(budget.reserved_mb(), 0);
    }

    #[test]
    fn the_default_budget_is_some_of_this_machines_memory() {
        let mb = default_memory_budget_mb();
        assert!(mb >= 1, "{mb}");
    }
}
