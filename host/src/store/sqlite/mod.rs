//! The embedded store: one SQLite file in the data directory, created and migrated on open.
//!
//! Two connections: one for the admin API, one for the decision-record writer, so a batch of
//! records never waits behind an upload (WAL mode lets them overlap).

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

mod admin;
mod calls;
mod kv;
pub(in crate::store) mod rows;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{DecisionRecord, RecordSink, StoreError, StoreResult};
use rows::branch_str;

/// Each entry moves the schema one version up; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        disabled INTEGER NOT NULL DEFAULT 0,
        caps TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        hash TEXT NOT NULL UNIQUE,
        created_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER
    );
    CREATE TABLE versions (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        plugin TEXT NOT NULL,
        version INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        world TEXT NOT NULL,
        exports TEXT NOT NULL,
        uploaded_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, plugin, version)
    );
    CREATE TABLE flows (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        name TEXT NOT NULL,
        plugin TEXT NOT NULL,
        version INTEGER NOT NULL,
        previous_version INTEGER,
        mode TEXT NOT NULL,
        status_success INTEGER NOT NULL,
        status_failure INTEGER NOT NULL,
        fallback TEXT NOT NULL,
        limits TEXT NOT NULL,
        config TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        plugin TEXT NOT NULL,
        version INTEGER NOT NULL,
        call_sid TEXT,
        branch TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        error TEXT,
        fuel_used INTEGER NOT NULL,
        elapsed_us INTEGER NOT NULL,
        log TEXT NOT NULL,
        log_dropped INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX decisions_by_flow ON decisions (tenant, flow, id);
    CREATE INDEX decisions_by_call ON decisions (tenant, call_sid);
    CREATE TABLE artifacts (
        key TEXT PRIMARY KEY,
        checksum TEXT NOT NULL
    );
"#,
    r#"
    ALTER TABLE flows ADD COLUMN retry TEXT NOT NULL DEFAULT '{}';
"#,
    // Passthru URL authentication: the kind, the secret's SHA-256 (hex), when it was set.
    r#"
    ALTER TABLE flows ADD COLUMN auth_kind TEXT NOT NULL DEFAULT 'none';
    ALTER TABLE flows ADD COLUMN auth_digest TEXT;
    ALTER TABLE flows ADD COLUMN auth_set_at_ms INTEGER;
"#,
    // Deleted versions stay as tombstones, so that their numbers are never given again.
    r#"
    ALTER TABLE versions ADD COLUMN deleted_at_ms INTEGER;
"#,
    // The Exotel hook a flow serves and its fallback answers besides the branch (JSON).
    r#"
    ALTER TABLE flows ADD COLUMN hook TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE decisions ADD COLUMN answer TEXT;
"#,
    // Tenants' key-value data (its expiry in Unix ms, null for never), and flows' secrets
    // (sealed: nonce and ciphertext, see `crate::secrets`).
    r#"
    CREATE TABLE kv (
        tenant TEXT NOT NULL,
        store TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at_ms INTEGER,
        PRIMARY KEY (tenant, store, key)
    ) WITHOUT ROWID;
    CREATE INDEX kv_by_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
    CREATE TABLE flow_secrets (
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        sealed BLOB NOT NULL,
        set_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, flow, key)
    );
"#,
    // Rollouts: a flow's canary (JSON `{"version":N,"percent":P}`, or null), and what replays a
    // decision: the query string as received and the call's seed and clock (JSON, see `Replay`).
    r#"
    ALTER TABLE flows ADD COLUMN canary TEXT;
    ALTER TABLE decisions ADD COLUMN query TEXT;
    ALTER TABLE decisions ADD COLUMN replay TEXT;
"#,
    // A call's records are found by `call_key` (see `calls.rs`): its run of ids and a hash of the
    // tenant and CallSid, an index that grows at its end rather than at random places. Records
    // written before keep their (tenant, call_sid) entries, and only they do.
    r#"
    ALTER TABLE decisions ADD COLUMN call_key INTEGER;
    DROP INDEX decisions_by_call;
    CREATE INDEX decisions_by_call_key ON decisions (call_key) WHERE call_key IS NOT NULL;
    CREATE INDEX decisions_by_call_before ON decisions (tenant, call_sid)
        WHERE call_sid IS NOT NULL AND call_key IS NULL;
"#,
];

/// The most records one query returns.
pub const MAX_PAGE: u32 = 1000;

pub struct SqliteStore {
    admin: Mutex<Connection>,
    records: Mutex<Connection>,
    /// The key-value writer's own, so its commits never wait behind the admin API's.
    kv: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `passthru.db` in `dir`.
    ///
    /// # Errors
    /// The folder cannot be created, or the database cannot be opened or migrated.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("passthru.db");
        let admin = connect(&path, "NORMAL")?;
        migrate(&admin, MIGRATIONS, "database")?;
        let records = connect(&path, "NORMAL")?;
        let kv = connect(&path, "NORMAL")?;
        Ok(Self {
            admin: Mutex::new(admin),
            records: Mutex::new(records),
            kv: Mutex::new(kv),
        })
    }

    fn admin(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-statement leaves SQLite consistent (the transaction rolls back), so a
        // poisoned lock is taken as it is.
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens a SQLite file in WAL mode with the given `synchronous` level (`NORMAL`, `FULL`).
pub(crate) fn connect(path: &Path, synchronous: &str) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Runs the `migrations` not yet applied (`PRAGMA user_version` counts them), each in its own
/// transaction; `what` names the file in errors.
pub(crate) fn migrate(
    conn: &Connection,
    migrations: &[&str],
    what: &'static str,
) -> StoreResult<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if done > migrations.len() {
        return Err(StoreError::NewerSchema {
            what,
            found: done,
            known: migrations.len(),
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(done) {
        let tx = write_tx(conn)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A write transaction that takes the write lock at once. A deferred one that reads first and
/// then writes fails at once (`SQLITE_BUSY_SNAPSHOT`, no retry) if the other connection wrote in
/// between; taking the lock up front lets the busy timeout do its job instead.
pub(crate) fn write_tx(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

pub(in crate::store) fn json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    Ok(serde_json::to_string(value)?)
}

pub(in crate::store) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    Ok(serde_json::from_str(text)?)
}

/// The `log` column: the log lines as a JSON array, or, when the call sent outbound requests,
/// `{"lines": [...], "outbound": [...]}` (so no migration was needed for them).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum LogColumn<L, O> {
    Lines(L),
    WithOutbound { lines: L, outbound: O },
}

pub(in crate::store) fn log_column(r: &DecisionRecord) -> StoreResult<Cow<'static, str>> {
    Ok(match (r.log.is_empty(), r.outbound.is_empty()) {
        // Most calls log nothing: their column is always the same, without serialising it.
        (true, true) => Cow::Borrowed("[]"),
        (false, true) => json(&LogColumn::<_, ()>::Lines(&r.log))?.into(),
        (_, false) => json(&LogColumn::WithOutbound {
            lines: &r.log,
            outbound: &r.outbound,
        })?
        .into(),
    })
}

/// The log lines and outbound requests of a `log` column, in either form.
pub(in crate::store) type LogParts = (
    Vec<crate::sandbox::LogLine>,
    Vec<crate::sandbox::outbound::OutboundRecord>,
);

pub(in crate::store) fn parse_log_column(text: &str) -> StoreResult<LogParts> {
    Ok(match from_json(text)? {
        LogColumn::Lines(lines) => (lines, Vec::new()),
        LogColumn::WithOutbound { lines, outbound } => (lines, outbound),
    })
}

pub(in crate::store) fn not_found(what: String) -> StoreError {
    StoreError::NotFound { what }
}

impl RecordSink for SqliteStore {
    fn insert_decisions(&self, records: &[DecisionRecord]) -> StoreResult<()> {
        let conn = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let tx = write_tx(&conn)?;
        {
            // Each record's id is given here, for its `call_key` holds its run of ids. This
            // connection is the only one that writes records, and under the write lock taken
            // above: the ids are those AUTOINCREMENT would have given.
            let mut id: i64 = tx.query_row(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0), \
                 coalesce((SELECT max(id) FROM decisions), 0))",
                [],
                |r| r.get(0),
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decisions (id, tenant, flow, plugin, version, call_sid, branch, \
                 outcome, reason, error, fuel_used, elapsed_us, log, log_dropped, at_ms, answer, \
                 query, replay, call_key) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19)",
            )?;
            for r in records {
                id += 1;
                stmt.execute(params![
                    id,
                    r.tenant,
                    r.flow,
                    r.plugin,
                    r.version,
                    r.call_sid,
                    branch_str(r.branch),
                    r.outcome,
                    r.reason,
                    r.error,
                    r.fuel_used,
                    r.elapsed_us,
                    log_column(r)?,
                    r.log_dropped,
                    r.at_ms,
                    r.answer,
                    r.query,
                    r.replay.as_ref().map(json).transpose()?,
                    calls::call_key(id, &r.tenant, r.call_sid.as_deref()),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn prune_decisions(&self, before_ms: i64) -> StoreResult<u64> {
        let conn = self.records.lock().unwrap_or_else(|p| p.into_inner());
        // Ids grow in the order records are written, so the old records are the low ids: find
        // the first one young enough (a scan that stops there) and delete below it. No index on
        // the time is needed, which keeps every insert cheaper.
        let keep_from: Option<i64> = conn
            .query_row(
                "SELECT id FROM decisions WHERE at_ms >= ?1 ORDER BY id LIMIT 1",
                [before_ms],
                |r| r.get(0),
            )
            .optional()?;
        let deleted = match keep_from {
            Some(id) => conn.execute("DELETE FROM decisions WHERE id < ?1", [id])?,
            None => conn.execute("DELETE FROM decisions", [])?,
        };
        Ok(deleted as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowSettings, RetryPolicy};
    use crate::sandbox::{Branch, Limits};
    use crate::store::*;

    fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "passthru-store-{}-{}",
            std::process::id(),
            now_ms() ^ rand_suffix()
        ));
        (SqliteStore::open(&dir).unwrap(), dir)
    }

    fn rand_suffix() -> i64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        i64::from_le_bytes(b) & 0xffff_ffff
    }

    #[test]
    fn flows_stored_before_url_auth_existed_read_back_without_it() {
        let (s, dir) = store();
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        // A database as the previous schema left it, with a flow in it.
        let conn = connect(&dir.join("passthru.db"), "NORMAL").unwrap();
        migrate(&conn, &MIGRATIONS[..2], "database").unwrap();
        conn.execute(
            "INSERT INTO tenants (name, disabled, caps, created_at_ms) VALUES ('acme', 0, ?1, 1)",
            [json(&TenantCaps::default()).unwrap()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO flows (tenant, name, plugin, version, previous_version, mode, \
             status_success, status_failure, fallback, limits, config, updated_at_ms, retry) \
             VALUES ('acme', 'ivr', 'menu', 1, NULL, 'sync', 200, 302, 'failure', ?1, '{}', 3, ?2)",
            [
                json(&Limits::default()).unwrap(),
                json(&RetryPolicy::default()).unwrap(),
            ],
        )
        .unwrap();
        drop(conn);

        let s = SqliteStore::open(&dir).unwrap();
        let flow = s.get_flow("acme", "ivr").unwrap();
        assert_eq!(flow.auth, crate::flow::UrlAuth::default());
        assert_eq!(flow.settings, FlowSettings::default());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn call_record(call_sid: Option<&str>, at_ms: i64) -> DecisionRecord {
        DecisionRecord {
            id: 0,
            tenant: "acme".into(),
            flow: "ivr".into(),
            plugin: "p".into(),
            version: 1,
            call_sid: call_sid.map(str::to_owned),
            branch: Branch::Success,
            outcome: "decided".into(),
            reason: None,
            error: None,
            answer: None,
            fuel_used: 1,
            elapsed_us: 1,
            log: vec![],
            log_dropped: 0,
            outbound: Vec::new(),
            at_ms,
            query: None,
            replay: None,
        }
    }

    #[test]
    fn an_empty_log_is_written_as_serde_would_write_it() {
        let record = call_record(None, 1);
        let serialised = json(&LogColumn::<_, ()>::Lines(&record.log)).unwrap();
        assert_eq!(log_column(&record).unwrap(), serialised);
        assert_eq!(parse_log_column("[]").unwrap(), (vec![], vec![]));
    }

    #[test]
    fn a_calls_records_are_found_across_runs_and_from_before_call_keys() {
        let (s, dir) = store();
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        // A database as the schema before call keys left it, with two calls' records in it.
        let conn = connect(&dir.join("passthru.db"), "NORMAL").unwrap();
        migrate(&conn, &MIGRATIONS[..7], "database").unwrap();
        for (sid, at_ms) in [("CA1", 1), ("CA2", 2), ("CA1", 3)] {
            conn.execute(
                "INSERT INTO decisions (tenant, flow, plugin, version, call_sid, branch, outcome, \
                 fuel_used, elapsed_us, log, log_dropped, at_ms) \
                 VALUES ('acme', 'ivr', 'p', 1, ?1, 'success', 'decided', 1, 1, '[]', 0, ?2)",
                params![sid, at_ms],
            )
            .unwrap();
        }
        drop(conn);

        let s = SqliteStore::open(&dir).unwrap();
        s.insert_decisions(&[call_record(Some("CA1"), 4), call_record(Some("CA2"), 5)])
            .unwrap();
        // The next records' ids two runs on, as after 32,768 other records.
        s.records
            .lock()
            .unwrap()
            .execute(
                "UPDATE sqlite_sequence SET seq = seq + ?1 WHERE name = 'decisions'",
                [2i64 << calls::RUN_BITS],
            )
            .unwrap();
        s.insert_decisions(&[call_record(Some("CA1"), 6), call_record(None, 7)])
            .unwrap();
        let calls_of = |sid: &str| {
            let filter = DecisionFilter {
                call_sid: Some(sid.into()),
                limit: 100,
                ..DecisionFilter::default()
            };
            let found = s.query_decisions("acme", &filter).unwrap();
            found.iter().map(|r| (r.id, r.at_ms)).collect::<Vec<_>>()
        };
        let later = (2i64 << calls::RUN_BITS) + 6;
        assert_eq!(calls_of("CA1"), [(later, 6), (4, 4), (3, 3), (1, 1)]);
        assert_eq!(calls_of("CA2"), [(5, 5), (2, 2)]);
        assert_eq!(calls_of("CA3"), []);
        // Found by id, never by walking an index of the tenant's or a flow's records.
        for flow in [None, Some("ivr".to_owned())] {
            let filter = DecisionFilter {
                call_sid: Some("CA1".into()),
                flow,
                ..DecisionFilter::default()
            };
            let sql = format!("EXPLAIN QUERY PLAN {}", admin::decisions_query(&filter));
            let conn = s.admin();
            let mut stmt = conn.prepare(&sql).unwrap();
            let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan[0].contains("INTEGER PRIMARY KEY") && !plan.join("\n").contains("by_flow"),
                "{plan:#?}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn decision_points_are_one_flows_since_a_time_oldest_first_keeping_the_newest() {
        let (s, dir) = store();
        let record = |i: i64, tenant: &str, flow: &str| DecisionRecord {
            id: 0,
            tenant: tenant.into(),
            flow: flow.into(),
            plugin: "p".into(),
            version: 1 + (i % 2) as u32,
            call_sid: None,
            branch: Branch::Success,
            outcome: if i == 4 { "trap" } else { "decided" }.into(),
            reason: None,
            error: None,
            answer: None,
            fuel_used: 1,
            elapsed_us: 100 + i as u64,
            log: vec![],
            log_dropped: 0,
            outbound: Vec::new(),
            at_ms: 1000 + i,
            query: None,
            replay: None,
        };
        let mut batch: Vec<_> = (0..6).map(|i| record(i, "acme", "ivr")).collect();
        batch.push(record(5, "acme", "other"));
        batch.push(record(5, "globex", "ivr"));
        s.insert_decisions(&batch).unwrap();
        let points = s.decision_points("acme", "ivr", 1002, 100).unwrap();
        assert_eq!(
            points,
            [
                (1002, 1, "decided".to_owned(), 102),
                (1003, 2, "decided".to_owned(), 103),
                (1004, 1, "trap".to_owned(), 104),
                (1005, 2, "decided".to_owned(), 105),
            ]
        );
        let newest = s.decision_points("acme", "ivr", 0, 2).unwrap();
        assert_eq!(newest.iter().map(|p| p.0).collect::<Vec<_>>(), [1004, 1005]);
        // The trait's default, for stores without a query of their own: the same points.
        assert_eq!(
            decision_points_by_pages(&s, "acme", "ivr", 1002, 100).unwrap(),
            points
        );
        assert_eq!(
            decision_points_by_pages(&s, "acme", "ivr", 0, 2).unwrap(),
            newest
        );
        // Records older than the window by far end the scan, even with newer ones past them:
        // they were written first, so a later one is no older than the scan's own bound.
        let ancient = record(9, "acme", "ivr");
        s.insert_decisions(&[DecisionRecord {
            at_ms: 1002 - 11 * 60_000,
            ..ancient
        }])
        .unwrap();
        s.insert_decisions(&[record(6, "acme", "ivr")]).unwrap();
        assert_eq!(
            s.decision_points("acme", "ivr", 1002, 100).unwrap().len(),
            1,
            "the scan stops at the ancient record: only the one written after it"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
