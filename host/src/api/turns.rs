//! Reads of decision records take turns: [`TenantTurns`].
//!
//! A flow's stats over a busy hour, or a page of records filtered down to a rare outcome, can
//! read for a good fraction of a second, and the store runs [`READS`] such reads at once. So
//! that one tenant's many reads cannot take all of them and hold up the others' consoles, each
//! tenant has one read running at a time; then the read waits for one of the store's. Both waits
//! are on the async runtime, holding no thread, and end with the request if it gives up (its
//! timeout, its client gone). Once it has both, the read runs on a blocking thread, which keeps
//! them until it is done. At most [`WAITING_PER_TENANT`] of a tenant's reads wait at once: one
//! more is refused at once ([`TooManyWaiting`]), so that a tenant cannot fill the server's
//! connections with reads that queue behind each other.
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

/// The reads of one tenant's decision records that may wait at once, for its turn or the
/// store's, besides the one it is running.
pub const WAITING_PER_TENANT: usize = 8;

/// A read refused because as many of the tenant's are already waiting as may.
#[derive(Debug, thiserror::Error)]
#[error(
    "{WAITING_PER_TENANT} reads of this tenant's records are already waiting on this server, the \
     most it queues; try again once they are answered"
)]
pub struct TooManyWaiting;

/// Each tenant's turn to read decision records, and the store's reads.
#[derive(Debug)]
pub struct TenantTurns {
    /// One per tenant that has read. A tenant is only ever added after its token was checked, so
    /// there are at most as many as the operator made tenants.
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    /// The store's reads.
    reads: Arc<Semaphore>,
    /// Reads waiting, for their tenant's turn or for the store, all tenants together.
    waiting: AtomicUsize,
}

/// One tenant's turn, and its reads waiting.
#[derive(Debug)]
struct Tenant {
    turn: Arc<Semaphore>,
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
    ///
    /// # Errors
    /// [`TooManyWaiting`], at once, when [`WAITING_PER_TENANT`] of the tenant's reads are
    /// already waiting.
    pub async fn wait(&self, tenant: &str) -> Result<Turn, TooManyWaiting> {
        let entry = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            match tenants.get(tenant) {
                Some(entry) => entry.clone(),
                None => tenants
                    .entry(tenant.to_owned())
                    .or_insert_with(|| {
                        Arc::new(Tenant {
                            turn: Arc::new(Semaphore::new(1)),
                            waiting: AtomicUsize::new(0),
                        })
                    })
                    .clone(),
            }
        };
        let counted = entry
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < WAITING_PER_TENANT).then_some(n + 1)
            });
        if counted.is_err() {
            return Err(TooManyWaiting);
        }
        let _tenant_counted = Uncount(&entry.waiting);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = Uncount(&self.waiting);
        let closed = "the semaphores are never closed";
        let tenant = entry.turn.clone().acquire_owned().await.expect(closed);
        let read = self.reads.clone().acquire_owned().await.expect(closed);
        Ok(Turn {
            _tenant: tenant,
            _read: read,
        })
    }

    /// How many reads are waiting, for their tenant's turn or for the store.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Takes one off a count of waiting reads when the wait ends, taken or given up.
struct Uncount<'a>(&'a AtomicUsize);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{READS, TenantTurns, TooManyWaiting, WAITING_PER_TENANT};
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_tenant_reads_one_at_a_time_and_never_waits_for_another() {
        let turns = TenantTurns::default();
        let acme = turns.wait("acme").await.unwrap();
        assert!(
            turns.wait("acme").now_or_never().is_none(),
            "two turns at once"
        );
        assert_eq!(turns.waiting(), 0, "a wait given up is no longer counted");
        let globex = turns.wait("globex").now_or_never();
        assert!(
            matches!(globex, Some(Ok(_))),
            "a tenant waited for another's turn"
        );

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
            reading.push(turns.wait(&format!("t{n}")).await.unwrap());
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

    #[tokio::test]
    async fn a_tenant_has_so_many_reads_waiting_and_one_more_is_refused_at_once() {
        let turns = TenantTurns::default();
        let _running = turns.wait("acme").await.unwrap();
        let mut queued: Vec<_> = (0..WAITING_PER_TENANT)
            .map(|_| Box::pin(turns.wait("acme")))
            .collect();
        for read in &mut queued {
            assert!(read.as_mut().now_or_never().is_none());
        }
        assert_eq!(turns.waiting(), WAITING_PER_TENANT);
        assert!(matches!(
            turns.wait("acme").now_or_never(),
            Some(Err(TooManyWaiting))
        ));
        assert_eq!(turns.waiting(), WAITING_PER_TENANT, "a refusal was counted");
        assert!(
            matches!(turns.wait("globex").now_or_never(), Some(Ok(_))),
            "another tenant's read was refused or kept waiting"
        );
        // A read that gives up gives its place back.
        queued.pop();
        let mut again = Box::pin(turns.wait("acme"));
        assert!(
            again.as_mut().now_or_never().is_none(),
            "a place given up was not given back"
        );
        assert_eq!(turns.waiting(), WAITING_PER_TENANT);
    }
}
