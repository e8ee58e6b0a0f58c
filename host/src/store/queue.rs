//! The durable side of the queue: the [`QueueStore`] trait and its SQLite implementation, a file
//! of its own (`queue.db`) beside the main store, so that the queue's commits (one fsync each,
//! shared by every request in the batch) never wait behind an upload or a batch of decision
//! records, and theirs never behind the queue's.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::sqlite::{connect, migrate, write_tx};
use super::{StoreError, StoreResult};
use crate::sandbox::LogLine;

/// A request accepted for an async flow, not yet committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub tenant: String,
    pub flow: String,
    pub call_sid: Option<String>,
    /// The Passthru query string as Exotel sent it: parsed again for each attempt.
    pub query: String,
    pub accepted_at_ms: i64,
}

/// An event the queue holds: committed, not yet handled, not dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: u64,
    pub event: NewEvent,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix ms).
    pub next_at_ms: i64,
}

/// What the last failed attempt of an event said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    /// A failure kind: `plugin_error`, `trap`, `deadline`, ..., or `flow_unavailable`.
    #[schema(examples(
        "plugin_error",
        "trap",
        "deadline",
        "out_of_fuel",
        "memory_limit",
        "invalid_component",
        "overloaded",
        "flow_unavailable"
    ))]
    pub kind: String,
    /// What went wrong.
    pub error: String,
    /// What the plugin logged in that attempt.
    pub log: Vec<LogLine>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// How an attempt ended, for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Handled: the event leaves the queue.
    Done { id: u64 },
    /// Failed, with another attempt due at `next_at_ms`.
    Retry {
        id: u64,
        attempts: u32,
        next_at_ms: i64,
        failure: Failure,
    },
    /// Failed for the last time: kept as a dead letter.
    Dead {
        id: u64,
        attempts: u32,
        failure: Failure,
    },
}

impl Completion {
    /// The event this is the outcome of.
    pub fn id(&self) -> u64 {
        match self {
            Completion::Done { id }
            | Completion::Retry { id, .. }
            | Completion::Dead { id, .. } => *id,
        }
    }
}

/// A dead letter, as the tenant inspects it: an async event whose last allowed attempt failed.
/// It stays until replayed or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The event's id (`x-passthru-event`), what `record` saw on every attempt.
    #[schema(minimum = 1)]
    pub id: u64,
    pub flow: String,
    /// Exotel's `CallSid`, when the request had one.
    pub call_sid: Option<String>,
    /// The Passthru query string as Exotel sent it.
    pub query: String,
    /// Milliseconds since the Unix epoch.
    pub accepted_at_ms: i64,
    /// Attempts made.
    #[schema(minimum = 1)]
    pub attempts: u32,
    pub last_failure: Failure,
}

/// The queue's persistence. Blocking: the writer thread and `spawn_blocking` call it.
pub trait QueueStore: Send + Sync + 'static {
    /// Inserts `accepts` and applies `completions` in one durable transaction; returns the new
    /// events' ids, in order.
    fn commit(&self, accepts: &[NewEvent], completions: &[Completion]) -> StoreResult<Vec<u64>>;
    /// Every event that is neither handled nor dead: what a start resumes.
    fn pending(&self) -> StoreResult<Vec<StoredEvent>>;
    /// A flow's dead letters, newest first, with ids below `before_id` if given.
    fn dead_letters(
        &self,
        tenant: &str,
        flow: &str,
        before_id: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>>;
    fn dead_letter(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<DeadLetter>;
    fn dead_count(&self, tenant: &str, flow: &str) -> StoreResult<u64>;
    /// Puts a dead letter back in the queue with its attempts reset, due at `now_ms`.
    fn revive(&self, tenant: &str, flow: &str, id: u64, now_ms: i64) -> StoreResult<StoredEvent>;
    fn delete_dead(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<()>;
    /// The flows that have dead letters.
    fn dead_flows(&self) -> StoreResult<Vec<(String, String)>>;
    /// Deletes a flow's dead letters whose last attempt was before `before_ms`; how many.
    fn prune_dead(&self, tenant: &str, flow: &str, before_ms: i64) -> StoreResult<u64>;
    /// Deletes a flow's oldest dead letters (by id) beyond the newest `keep`; how many.
    fn trim_dead(&self, tenant: &str, flow: &str, keep: u64) -> StoreResult<u64>;

    /// How long this node's hold on its events lasts unless renewed: `Some` when several nodes
    /// share the queue (and each must renew, and claim the events of nodes that stopped).
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }
    /// Renews this node's hold on its events; `true` when its lease had run out (or nearly)
    /// before this renewal, so that other nodes may have claimed some of them (see
    /// [`Self::still_held`]).
    fn renew(&self) -> StoreResult<bool> {
        Ok(false)
    }
    /// Of the events `ids`, those this node still holds: not claimed by another node, not
    /// handled, not dead.
    fn still_held(&self, ids: &[u64]) -> StoreResult<Vec<u64>> {
        Ok(ids.to_vec())
    }
    /// Claims for this node at most `limit` pending events of nodes whose lease ran out, oldest
    /// first.
    fn claim_orphans(&self, _limit: u32) -> StoreResult<Vec<StoredEvent>> {
        Ok(Vec::new())
    }
    /// Gives up this node's hold at shutdown, so the others claim what it leaves at once.
    fn release(&self) -> StoreResult<()> {
        Ok(())
    }
}

const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        call_sid TEXT,
        query TEXT NOT NULL,
        accepted_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at_ms INTEGER NOT NULL,
        dead INTEGER NOT NULL DEFAULT 0,
        last_failure TEXT
    );
    CREATE INDEX dead_letters ON events (tenant, flow, id) WHERE dead = 1;
"#];

/// SQLite in `DATA_DIR/queue.db`: WAL, and `synchronous = FULL`, so a commit is on disk (the WAL
/// fsynced) before the requests it holds are answered.
pub struct SqliteQueue {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl SqliteQueue {
    /// Opens (creating and migrating if needed) `queue.db` in `dir`.
    ///
    /// # Errors
    /// The database cannot be opened or migrated.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let path = dir.join("queue.db");
        let writer = connect(&path, "FULL")?;
        migrate(&writer, MIGRATIONS, "queue")?;
        let reader = connect(&path, "FULL")?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn failure_json(failure: &Failure) -> StoreResult<String> {
    Ok(serde_json::to_string(failure)?)
}

fn id_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

const DEAD_COLUMNS: &str = "id, flow, call_sid, query, accepted_at_ms, attempts, last_failure";

fn dead_row(row: &Row<'_>) -> rusqlite::Result<(DeadLetter, Option<String>)> {
    Ok((
        DeadLetter {
            id: row.get::<_, i64>(0)? as u64,
            flow: row.get(1)?,
            call_sid: row.get(2)?,
            query: row.get(3)?,
            accepted_at_ms: row.get(4)?,
            attempts: row.get(5)?,
            last_failure: Failure {
                kind: String::new(),
                error: String::new(),
                log: Vec::new(),
                at_ms: 0,
            },
        },
        row.get(6)?,
    ))
}

fn to_dead((mut dead, failure): (DeadLetter, Option<String>)) -> StoreResult<DeadLetter> {
    if let Some(text) = failure {
        dead.last_failure = serde_json::from_str(&text)?;
    }
    Ok(dead)
}

fn not_found(id: u64) -> StoreError {
    StoreError::NotFound {
        what: format!("dead letter {id}"),
    }
}

impl QueueStore for SqliteQueue {
    fn commit(&self, accepts: &[NewEvent], completions: &[Completion]) -> StoreResult<Vec<u64>> {
        let conn = self.writer();
        let tx = write_tx(&conn)?;
        let mut ids = Vec::with_capacity(accepts.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (tenant, flow, call_sid, query, accepted_at_ms, next_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?;
            for e in accepts {
                insert.execute(params![
                    e.tenant,
                    e.flow,
                    e.call_sid,
                    e.query,
                    e.accepted_at_ms
                ])?;
                ids.push(tx.last_insert_rowid() as u64);
            }
            let mut delete = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
            let mut update = tx.prepare_cached(
                "UPDATE events SET attempts = ?2, next_at_ms = ?3, dead = ?4, last_failure = ?5 \
                 WHERE id = ?1",
            )?;
            for c in completions {
                match c {
                    Completion::Done { id } => {
                        delete.execute([id_param(*id)])?;
                    }
                    Completion::Retry {
                        id,
                        attempts,
                        next_at_ms,
                        failure,
                    } => {
                        update.execute(params![
                            id_param(*id),
                            attempts,
                            next_at_ms,
                            false,
                            failure_json(failure)?
                        ])?;
                    }
                    Completion::Dead {
                        id,
                        attempts,
                        failure,
                    } => {
                        update.execute(params![
                            id_param(*id),
                            attempts,
                            failure.at_ms,
                            true,
                            failure_json(failure)?
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    fn pending(&self) -> StoreResult<Vec<StoredEvent>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT id, tenant, flow, call_sid, query, accepted_at_ms, attempts, next_at_ms \
             FROM events WHERE dead = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredEvent {
                id: row.get::<_, i64>(0)? as u64,
                event: NewEvent {
                    tenant: row.get(1)?,
                    flow: row.get(2)?,
                    call_sid: row.get(3)?,
                    query: row.get(4)?,
                    accepted_at_ms: row.get(5)?,
                },
                attempts: row.get(6)?,
                next_at_ms: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn dead_letters(
        &self,
        tenant: &str,
        flow: &str,
        before_id: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEAD_COLUMNS} FROM events \
             WHERE tenant = ?1 AND flow = ?2 AND dead = 1 AND id < ?3 \
             ORDER BY id DESC LIMIT ?4"
        ))?;
        let before = before_id.map_or(i64::MAX, id_param);
        let rows = stmt.query_map(params![tenant, flow, before, limit], dead_row)?;
        rows.map(|r| to_dead(r?)).collect()
    }

    fn dead_letter(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<DeadLetter> {
        let row = self
            .reader()
            .query_row(
                &format!(
                    "SELECT {DEAD_COLUMNS} FROM events \
                     WHERE tenant = ?1 AND flow = ?2 AND dead = 1 AND id = ?3"
                ),
                params![tenant, flow, id_param(id)],
                dead_row,
            )
            .optional()?;
        to_dead(row.ok_or_else(|| not_found(id))?)
    }

    fn dead_count(&self, tenant: &str, flow: &str) -> StoreResult<u64> {
        let n: i64 = self.reader().query_row(
            "SELECT COUNT(*) FROM events WHERE tenant = ?1 AND flow = ?2 AND dead = 1",
            params![tenant, flow],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn revive(&self, tenant: &str, flow: &str, id: u64, now_ms: i64) -> StoreResult<StoredEvent> {
        let conn = self.writer();
        let tx = write_tx(&conn)?;
        let event = tx
            .query_row(
                "UPDATE events SET dead = 0, attempts = 0, next_at_ms = ?4 \
                 WHERE tenant = ?1 AND flow = ?2 AND dead = 1 AND id = ?3 \
                 RETURNING call_sid, query, accepted_at_ms",
                params![tenant, flow, id_param(id), now_ms],
                |row| {
                    Ok(StoredEvent {
                        id,
                        event: NewEvent {
                            tenant: tenant.to_owned(),
                            flow: flow.to_owned(),
                            call_sid: row.get(0)?,
                            query: row.get(1)?,
                            accepted_at_ms: row.get(2)?,
                        },
                        attempts: 0,
                        next_at_ms: now_ms,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| not_found(id))?;
        tx.commit()?;
        Ok(event)
    }

    fn dead_flows(&self) -> StoreResult<Vec<(String, String)>> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT DISTINCT tenant, flow FROM events WHERE dead = 1 ORDER BY 1, 2")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn prune_dead(&self, tenant: &str, flow: &str, before_ms: i64) -> StoreResult<u64> {
        // A dead letter's next_at_ms is the time of its last attempt.
        let deleted = self.writer().execute(
            "DELETE FROM events WHERE tenant = ?1 AND flow = ?2 AND dead = 1 AND next_at_ms < ?3",
            params![tenant, flow, before_ms],
        )?;
        Ok(deleted as u64)
    }

    fn trim_dead(&self, tenant: &str, flow: &str, keep: u64) -> StoreResult<u64> {
        // The newest dead letter past `keep` and every older one; none when there are fewer.
        let deleted = self.writer().execute(
            "DELETE FROM events WHERE tenant = ?1 AND flow = ?2 AND dead = 1 AND id <= \
             (SELECT id FROM events WHERE tenant = ?1 AND flow = ?2 AND dead = 1 \
             ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            params![tenant, flow, i64::try_from(keep).unwrap_or(i64::MAX)],
        )?;
        Ok(deleted as u64)
    }

    fn delete_dead(&self, tenant: &str, flow: &str, id: u64) -> StoreResult<()> {
        let conn = self.writer();
        let deleted = conn.execute(
            "DELETE FROM events WHERE tenant = ?1 AND flow = ?2 AND dead = 1 AND id = ?3",
            params![tenant, flow, id_param(id)],
        )?;
        if deleted == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{LogLevel, LogLine};

    fn temp_dir() -> std::path::PathBuf {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "passthru-queue-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(b)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn event(tenant: &str, flow: &str, sid: &str) -> NewEvent {
        NewEvent {
            tenant: tenant.into(),
            flow: flow.into(),
            call_sid: Some(sid.into()),
            query: format!("CallSid={sid}&digits=%221%22"),
            accepted_at_ms: 1_000,
        }
    }

    fn failure(at_ms: i64) -> Failure {
        Failure {
            kind: "plugin_error".into(),
            error: "no CRM today".into(),
            log: vec![LogLine {
                level: LogLevel::Info,
                message: "tried".into(),
            }],
            at_ms,
        }
    }

    #[test]
    fn events_survive_reopening_until_done_and_dead_letters_can_be_revived() {
        let dir = temp_dir();
        let queue = SqliteQueue::open(&dir).unwrap();
        let ids = queue
            .commit(
                &[
                    event("acme", "log", "a"),
                    event("acme", "log", "b"),
                    event("zeta", "log", "c"),
                ],
                &[],
            )
            .unwrap();
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        queue
            .commit(
                &[],
                &[
                    Completion::Done { id: ids[0] },
                    Completion::Retry {
                        id: ids[1],
                        attempts: 1,
                        next_at_ms: 5_000,
                        failure: failure(2_000),
                    },
                    Completion::Dead {
                        id: ids[2],
                        attempts: 3,
                        failure: failure(3_000),
                    },
                ],
            )
            .unwrap();
        drop(queue);

        let queue = SqliteQueue::open(&dir).unwrap();
        let pending = queue.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, ids[1]);
        assert_eq!((pending[0].attempts, pending[0].next_at_ms), (1, 5_000));
        assert_eq!(pending[0].event, event("acme", "log", "b"));

        // Dead letters are the tenant's own: another tenant or flow does not see them.
        assert!(
            queue
                .dead_letters("acme", "log", None, 10)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            queue.dead_letter("acme", "log", ids[2]),
            Err(StoreError::NotFound { .. })
        ));
        let dead = queue.dead_letter("zeta", "log", ids[2]).unwrap();
        assert_eq!(dead.attempts, 3);
        assert_eq!(dead.last_failure, failure(3_000));
        assert_eq!(queue.dead_count("zeta", "log").unwrap(), 1);

        let revived = queue.revive("zeta", "log", ids[2], 9_000).unwrap();
        assert_eq!((revived.attempts, revived.next_at_ms), (0, 9_000));
        assert_eq!(revived.event, event("zeta", "log", "c"));
        assert_eq!(queue.pending().unwrap().len(), 2);
        assert!(matches!(
            queue.revive("zeta", "log", ids[2], 9_000),
            Err(StoreError::NotFound { .. })
        ));

        // New ids never reuse a handled event's id, even the newest one's.
        queue
            .commit(&[], &[Completion::Done { id: ids[2] }])
            .unwrap();
        let next = queue.commit(&[event("acme", "log", "d")], &[]).unwrap();
        assert!(next[0] > ids[2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dead_letters_page_newest_first_and_delete() {
        let dir = temp_dir();
        let queue = SqliteQueue::open(&dir).unwrap();
        let ids = queue
            .commit(
                &(0..5)
                    .map(|i| event("acme", "log", &i.to_string()))
                    .collect::<Vec<_>>(),
                &[],
            )
            .unwrap();
        let deaths: Vec<Completion> = ids
            .iter()
            .map(|&id| Completion::Dead {
                id,
                attempts: 1,
                failure: failure(id as i64),
            })
            .collect();
        queue.commit(&[], &deaths).unwrap();
        let page = queue.dead_letters("acme", "log", None, 2).unwrap();
        assert_eq!(
            page.iter().map(|d| d.id).collect::<Vec<_>>(),
            [ids[4], ids[3]]
        );
        let next = queue.dead_letters("acme", "log", Some(ids[3]), 10).unwrap();
        assert_eq!(next.len(), 3);
        queue.delete_dead("acme", "log", ids[0]).unwrap();
        assert!(matches!(
            queue.delete_dead("acme", "log", ids[0]),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(queue.dead_count("acme", "log").unwrap(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
