//! Reads of decision records take turns per tenant: [`TenantTurns`].
//!
//! A flow's stats over a busy hour, or a page of records filtered down to a rare outcome, can
//! read for a good fraction of a second, and the store runs only a few such reads at once (two
//! on either store). So that one tenant's many reads cannot take all of them and hold up the
//! others' consoles, each tenant has one read running at a time; its next reads wait their turn
//! on the async runtime, holding no thread, and give up with the request when it times out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Each tenant's turn to read decision records.
#[derive(Debug, Default)]
pub struct TenantTurns {
    /// One permit per tenant that has read. A tenant is only ever added after its token was
    /// checked, so there are at most as many as the operator made tenants.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Reads waiting for their tenant's turn, all tenants together.
    waiting: AtomicUsize,
}

/// A tenant's turn, until dropped. Move it into the blocking task that reads, so that the turn
/// ends when the read does, even if the request that asked gave up before.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

impl TenantTurns {
    /// Waits for `tenant`'s turn.
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
        Turn(
            semaphore
                .acquire_owned()
                .await
                .expect("a tenant's semaphore is never closed"),
        )
    }

    /// How many reads are waiting for their tenant's turn.
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
    use super::TenantTurns;
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
}
