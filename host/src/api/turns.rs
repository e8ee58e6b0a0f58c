//! Reads of decision records take turns: [`TenantTurns`].
//!
//! A flow's stats over a busy hour, or a page of records filtered down to a rare outcome, can
//! read for a good fraction of a second, and the store runs [`READS`] such reads at once. So
//! that one tenant's many reads cannot take all of them and hold up the others' consoles, each
//! tenant has one read running at a time; then the read waits for one of the store's. Both waits
//! are on the async runtime, holding no thread, and end with the request if it gives up (its
//! timeout, its client gone). Once it has both, the read runs on a blocking thread, which keeps
//! them until it is done.
//!
//! Per node: a tenant whose requests reach several nodes reads on each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The reads of decision records the store runs at once: as many as it has for them (the
/// embedded store's read-only connections, PostgreSQL's share of its pool).
pub const READS: usize = crate::store::sqlite::READERS;
const _: () = assert!(READS == crate::store::postgres::RECORD_READS);

/// Each tenant's turn to read decision records, and the store's reads.
#[derive(Debug)]
pub struct TenantTurns {
    /// One permit per tenant that has read. A tenant is only ever added after its token was
    /// checked, so there are at most as many as the operator made tenants.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The store's reads.
    reads: Arc<Semaphore>,
    /// Reads waiting, for their tenant's turn or for the store, all tenants together.
    waiting: AtomicUsize,
}

impl Default for TenantTurns {
    fn default() -> Self {
        Self {
            tenants: Mutex::default(),
            reads: Arc::new(Semaphore::new(READS)),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// A tenant's turn and one of the store's reads, until dropped. Move it to the thread that
/// reads, so that both end when the read does, even if the request that asked gave up before.
#[derive(Debug)]
pub struct Turn {
    _tenant: OwnedSemaphorePermit,
    _read: OwnedSemaphorePermit,
}

impl TenantTurns {
    /// Waits for `tenant`'s turn, then for one of the store's reads.
    pub async fn wait(&self, tenant: &str) -> Turn {
        let semaphore = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            match tenants.get(tenant) {
                Some(semaphore) => semaphore.clone(),
                None => tenants
                    .entry(tenant.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(1)))
                    .clone(),
            }
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = Uncount(&self.waiting);
        let closed = "the semaphores are never closed";
        let tenant = semaphore.acquire_owned().await.expect(closed);
        let read = self.reads.clone().acquire_owned().await.expect(closed);
        Turn {
            _tenant: tenant,
            _read: read,
        }
    }

    /// How many reads are waiting, for their tenant's turn or for the store.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Takes one off the count of waiting reads when the wait ends, taken or given up.
struct Uncount<'a>(&'a AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{READS, TenantTurns};
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_tenant_reads_one_at_a_time_and_never_waits_for_another() {
        let turns = TenantTurns::default();
        let acme = turns.wait("acme").await;
        assert!(
            turns.wait("acme").now_or_never().is_none(),
            "two turns at once"
        );
        assert_eq!(turns.waiting(), 0, "a wait given up is no longer counted");
        let globex = turns.wait("globex").now_or_never();
        assert!(globex.is_some(), "a tenant waited for another's turn");

        let mut next = Box::pin(turns.wait("acme"));
        assert!((&mut next).now_or_never().is_none());
        assert_eq!(turns.waiting(), 1);
        drop(acme);
        assert!(next.now_or_never().is_some(), "the turn did not pass on");
        assert_eq!(turns.waiting(), 0);
    }

    #[tokio::test]
    async fn no_more_tenants_read_at_once_than_the_store_has_reads() {
        let turns = TenantTurns::default();
        let mut reading = Vec::new();
        for n in 0..READS {
            reading.push(turns.wait(&format!("t{n}")).await);
        }
        let mut last = Box::pin(turns.wait("late"));
        assert!(
            (&mut last).now_or_never().is_none(),
            "a read past the store's"
        );
        assert_eq!(turns.waiting(), 1);
        reading.pop();
        assert!(
            last.now_or_never().is_some(),
            "the store's read did not pass on"
        );
    }
}
