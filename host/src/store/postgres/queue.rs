//! The async queue in the shared database, with leases.
//!
//! Each node registers itself in `nodes` with a lease (`alive_until_ms`, on the database's
//! clock, so the nodes' clocks do not matter) and renews it every quarter of the lease. The
//! events a node accepts are committed with the node as their `owner` before the request is
//! answered, and only that node runs them. A node whose lease ran out (killed, partitioned,
//! stopped) leaves its events to the others: every node claims such events (`FOR UPDATE SKIP
//! LOCKED`, so two nodes never claim the same one) and runs them. Delivery stays at least once:
//! an attempt that ran on a node just before it died runs again on the node that claims it.

use std::time::Duration;

use postgres::Row;

use super::{PgStore, big, in_tx, pg_text, small};
use crate::store::queue::{Completion, DeadLetter, Failure, NewEvent, QueueStore, StoredEvent};
use crate::store::{StoreError, StoreResult};

/// The database's clock, in Unix milliseconds.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

const EVENT_COLUMNS: &str =
    "id, tenant, flow, call_sid, query, accepted_at_ms, attempts, next_at_ms";
const DEAD_COLUMNS: &str = "id, flow, call_sid, query, accepted_at_ms, attempts, last_failure";

/// The queue of every node, in the shared database.
pub struct PgQueue {
    store: PgStore,
    node: String,
    lease: Duration,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PgQueue {
    /// Registers this node (under its store's random id) with a lease of `lease`.
    ///
    /// # Errors
    /// The database fails.
    pub fn open(store: &PgStore, lease: Duration) -> StoreResult<Self> {
        let queue = Self {
            store: store.clone(),
            node: store.origin().to_owned(),
            lease,
        };
        queue.store.conn()?.execute(
            &format!(
                "INSERT INTO nodes (id, started_at_ms, alive_until_ms) VALUES ($1, {NOW_MS}, {NOW_MS} + $2)"
            ),
            &[&queue.node, &queue.lease_ms()],
        )?;
        Ok(queue)
    }

    /// This node's id in `nodes` and in the `owner` of its events.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

fn event(row: &Row) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        id: small(row, 0)?,
        event: NewEvent {
            tenant: row.try_get(1)?,
            flow: row.try_get(2)?,
            call_sid: row.try_get(3)?,
            query: row.try_get(4)?,
            accepted_at_ms: row.try_get(5)?,
        },
        attempts: small(row, 6)?,
        next_at_ms: row.try_get(7)?,
    })
}

fn dead(row: &Row) -> StoreResult<DeadLetter> {
    let failure: Option<String> = row.try_get(6)?;
    Ok(DeadLetter {
        id: small(row, 0)?,
        flow: row.try_get(1)?,
        call_sid: row.try_get(2)?,
        query: row.try_get(3)?,
        accepted_at_ms: row.try_get(4)?,
        attempts: small(row, 5)?,
        last_failure: match failure {
            Some(text) => serde_json::from_str(&text)?,
            None => Failure {
                kind: String::new(),
                error: String::new(),
                log: Vec::new(),
                at_ms: 0,
            },
        },
    })
}

fn not_found(id: u64) -> StoreError {
    StoreError::NotFound {
        what: format!("dead letter {id}"),
    }
}

impl QueueStore for PgQueue {
    fn commit(&self, accepts: &[NewEvent], completions: &[Completion]) -> StoreResult<Vec<u64>> {
        in_tx(&mut *self.store.conn()?, |tx| {
            let mut ids = Vec::with_capacity(accepts.len());
            if !accepts.is_empty() {
                let tenants: Vec<&str> = accepts.iter().map(|e| e.tenant.as_str()).collect();
                let flows: Vec<&str> = accepts.iter().map(|e| e.flow.as_str()).collect();
                let sids: Vec<_> = accepts
                    .iter()
                    .map(|e| e.call_sid.as_deref().map(pg_text))
                    .collect();
                let queries: Vec<_> = accepts.iter().map(|e| pg_text(&e.query)).collect();
                let at: Vec<i64> = accepts.iter().map(|e| e.accepted_at_ms).collect();
                // One statement for the batch; the ids come back in the order given.
                let rows = tx.query(
                    "INSERT INTO events (tenant, flow, call_sid, query, accepted_at_ms, \
                     next_at_ms, owner) \
                     SELECT t, f, s, q, a, a, $6 FROM unnest($1::text[], $2::text[], \
                     $3::text[], $4::text[], $5::int8[]) WITH ORDINALITY AS x(t, f, s, q, a, n) \
                     ORDER BY n RETURNING id",
                    &[&tenants, &flows, &sids, &queries, &at, &self.node],
                )?;
                for row in &rows {
                    ids.push(small(row, 0)?);
                }
                // RETURNING follows the insertion order, which follows ORDER BY n; the ids of
                // one sequence grow with it.
                ids.sort_unstable();
            }
            // Only while this node holds the event: one whose lease ran out may still finish a
            // run of an event another node claimed since, and that node's writes stand.
            let update = tx.prepare(
                "UPDATE events SET attempts = $2, next_at_ms = $3, dead = $4, last_failure = $5 \
                 WHERE id = $1 AND owner = $6",
            )?;
            let mut done = Vec::new();
            for c in completions {
                match c {
                    Completion::Done { id } => done.push(big(*id)),
                    Completion::Retry {
                        id,
                        attempts,
                        next_at_ms,
                        failure,
                    } => {
                        tx.execute(
                            &update,
                            &[
                                &big(*id),
                                &big(*attempts),
                                next_at_ms,
                                &false,
                                &serde_json::to_string(failure)?,
                                &self.node,
                            ],
                        )?;
                    }
                    Completion::Dead {
                        id,
                        attempts,
                        failure,
                    } => {
                        tx.execute(
                            &update,
                            &[
                                &big(*id),
                                &big(*attempts),
                                &failure.at_ms,
                                &true,
                                &serde_json::to_string(failure)?,
                                &self.node,
                            ],
                        )?;
                    }
                }
            }
            if !done.is_empty() {
                tx.execute(
                    "DELETE FROM events WHERE id = ANY($1) AND owner = $2",
                    &[&done, &self.node],
                )?;
            }
            Ok(ids)
        })
    }

    /// At start: the events of nodes whose lease ran out, claimed for this one.
    fn pending(&self) -> StoreResult<Vec<StoredEvent>> {
        self.claim_orphans(u32::MAX)
    }

    fn dead_letters(
        &self,
        tenant: &str,
        flow: &str,
        before_id: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let before = before_id.map_or(i64::MAX, big);
        self.store
            .conn()?
            .query(
                &format!(
                    "SELECT {DEAD_COLUMNS} FROM events WHERE tenant = $1 AND flow = $2 AND dead \
                     AND id < $3 ORDER BY id DESC LIMIT $4"
                ),
                &[&tenant, &flow, &before, &i64::from(limit)],
            )?
            .iter()
            .map(dead)
            .collect()
    }

    fn dead_letter(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<DeadLetter> {
        let row = self.store.conn()?.query_opt(
            &format!(
                "SELECT {DEAD_COLUMNS} FROM events WHERE tenant = $1 AND flow = $2 AND dead \
                 AND id = $3"
            ),
            &[&tenant, &flow, &big(id)],
        )?;
        dead(&row.ok_or_else(|| not_found(id))?)
    }

    fn dead_count(&self, tenant: &str, flow: &str) -> StoreResult<u64> {
        let row = self.store.conn()?.query_one(
            "SELECT COUNT(*) FROM events WHERE tenant = $1 AND flow = $2 AND dead",
            &[&tenant, &flow],
        )?;
        small(&row, 0)
    }

    fn revive(&self, tenant: &str, flow: &str, id: u64, now_ms: i64) -> StoreResult<StoredEvent> {
        let row = self.store.conn()?.query_opt(
            "UPDATE events SET dead = false, attempts = 0, next_at_ms = $4, owner = $5 \
             WHERE tenant = $1 AND flow = $2 AND dead AND id = $3 \
             RETURNING call_sid, query, accepted_at_ms",
            &[&tenant, &flow, &big(id), &now_ms, &self.node],
        )?;
        let row = row.ok_or_else(|| not_found(id))?;
        Ok(StoredEvent {
            id,
            event: NewEvent {
                tenant: tenant.to_owned(),
                flow: flow.to_owned(),
                call_sid: row.try_get(0)?,
                query: row.try_get(1)?,
                accepted_at_ms: row.try_get(2)?,
            },
            attempts: 0,
            next_at_ms: now_ms,
        })
    }

    fn delete_dead(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<()> {
        let deleted = self.store.conn()?.execute(
            "DELETE FROM events WHERE tenant = $1 AND flow = $2 AND dead AND id = $3",
            &[&tenant, &flow, &big(id)],
        )?;
        if deleted == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    fn dead_flows(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(self
            .store
            .conn()?
            .query(
                "SELECT DISTINCT tenant, flow FROM events WHERE dead ORDER BY 1, 2",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn prune_dead(&self, tenant: &str, flow: &str, before_ms: i64) -> StoreResult<u64> {
        // A dead letter's next_at_ms is the time of its last attempt.
        Ok(self.store.conn()?.execute(
            "DELETE FROM events WHERE tenant = $1 AND flow = $2 AND dead AND next_at_ms < $3",
            &[&tenant, &flow, &before_ms],
        )?)
    }

    fn trim_dead(&self, tenant: &str, flow: &str, keep: u64) -> StoreResult<u64> {
        // As in the embedded store: the newest dead letter past `keep` and every older one.
        Ok(self.store.conn()?.execute(
            "DELETE FROM events WHERE tenant = $1 AND flow = $2 AND dead AND id <= \
             (SELECT id FROM events WHERE tenant = $1 AND flow = $2 AND dead \
             ORDER BY id DESC LIMIT 1 OFFSET $3)",
            &[&tenant, &flow, &big(keep)],
        )?)
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    fn renew(&self) -> StoreResult<bool> {
        let mut conn = self.store.conn()?;
        // The lease as it was, to tell whether it ran out before this renewal: or nearly (a
        // quarter of the lease, a renewal's interval), since another node's claim that began
        // before this renewal committed may still have seen it run out.
        let renewed = conn.query_opt(
            &format!(
                "UPDATE nodes n SET alive_until_ms = {NOW_MS} + $2 \
                 FROM (SELECT alive_until_ms AS before FROM nodes WHERE id = $1 FOR UPDATE) o \
                 WHERE n.id = $1 RETURNING o.before < {NOW_MS} + $2::BIGINT / 4"
            ),
            &[&self.node, &self.lease_ms()],
        )?;
        let lapsed = match &renewed {
            Some(row) => row.try_get::<_, bool>(0)?,
            None => true,
        };
        if renewed.is_none() {
            // Forgotten after a long absence: register again. Its events were claimed by others.
            conn.execute(
                &format!(
                    "INSERT INTO nodes (id, started_at_ms, alive_until_ms) \
                     VALUES ($1, {NOW_MS}, {NOW_MS} + $2) ON CONFLICT DO NOTHING"
                ),
                &[&self.node, &self.lease_ms()],
            )?;
        }
        // Nodes gone for a day and holding nothing are forgotten.
        conn.execute(
            &format!(
                "DELETE FROM nodes n WHERE n.alive_until_ms < {NOW_MS} - 86400000 \
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.owner = n.id AND NOT e.dead)"
            ),
            &[],
        )?;
        Ok(lapsed)
    }

    fn still_held(&self, ids: &[u64]) -> StoreResult<Vec<u64>> {
        let ids: Vec<i64> = ids.iter().map(|&id| big(id)).collect();
        let rows = self.store.conn()?.query(
            "SELECT id FROM events WHERE id = ANY($1) AND owner = $2 AND NOT dead",
            &[&ids, &self.node],
        )?;
        rows.iter().map(|row| small(row, 0)).collect()
    }

    fn claim_orphans(&self, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        let rows = self.store.conn()?.query(
            &format!(
                "UPDATE events SET owner = $1 WHERE id IN (\
                   SELECT e.id FROM events e WHERE NOT e.dead \
                   AND e.owner IS DISTINCT FROM $1 \
                   AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = e.owner \
                                   AND n.alive_until_ms >= {NOW_MS}) \
                   ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING {EVENT_COLUMNS}"
            ),
            &[&self.node, &i64::from(limit)],
        )?;
        let mut events = rows.iter().map(event).collect::<StoreResult<Vec<_>>>()?;
        events.sort_unstable_by_key(|e| e.id);
        Ok(events)
    }

    fn release(&self) -> StoreResult<()> {
        self.store.conn()?.execute(
            "UPDATE nodes SET alive_until_ms = 0 WHERE id = $1",
            &[&self.node],
        )?;
        Ok(())
    }
}
