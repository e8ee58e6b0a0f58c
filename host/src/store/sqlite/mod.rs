//! The embedded store: one SQLite file in the data directory, created and migrated on open.
//!
//! Connections of their own for each kind of work, so that none waits behind another's (WAL mode
//! lets them overlap): one for the admin API, one for the decision-record writer (a batch of
//! records never waits behind an upload), one for the key-value writer, and [`READERS`] for reading
//! decision records back. A flow's stats over a busy hour read a good part of a second; on the
//! admin connection they would hold up every token check, and so every admin request, until done.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

mod admin;
mod calls;
mod kv;
mod page_format;
mod pages;
pub(in crate::store) mod rows;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::slots::{Slot, Slots};
use super::{DecisionRecord, RecordSink, StoreError, StoreResult};

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
    // Decision records as compressed pages, a row per flow per transaction (see `pages.rs`). The
    // rows of `decisions` are turned into pages, and the table dropped, by `pages::convert_rows`.
    pages::SCHEMA,
];

/// The most records one query returns.
pub const MAX_PAGE: u32 = 1000;

/// The connections that read decision records back (queries, a call's records, a flow's
/// stats): at most this many such reads run at once, the rest wait for the first to finish.
pub const READERS: usize = 2;

pub struct SqliteStore {
    /// Read-only, for the decision records' reads, which may take long. First, so that they
    /// close before the connections that may write: the last to close checkpoints the log and
    /// removes it, which a read-only connection cannot.
    readers: Slots<Connection>,
    admin: Mutex<Connection>,
    records: Mutex<RecordWriter>,
    /// The key-value writer's own, so its commits never wait behind the admin API's.
    kv: Mutex<Connection>,
}

/// A transaction of the record writer: its statements prepared once, where `Transaction` parses
/// `BEGIN` and `COMMIT` each time (8% of the writer's samples in a profile at 10,000 records a
/// second). Rolled back if dropped uncommitted, after an error or in a panic, so that the
/// connection never keeps the database's write lock.
struct RecordTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> RecordTx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Self {
            conn,
            committed: false,
        })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for RecordTx<'_> {
    fn drop(&mut self) {
        if self.committed || self.conn.is_autocommit() {
            return;
        }
        let rolled_back = self
            .conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut stmt| stmt.execute([]));
        if let Err(error) = rolled_back {
            tracing::error!(%error, "could not roll back a transaction of decision records");
        }
    }
}

/// The record writer's connection, and what encodes its pages.
struct RecordWriter {
    conn: Connection,
    encoder: pages::Encoder,
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
        let (converted, left_out) = pages::convert_rows(&admin)?;
        if converted + left_out > 0 {
            tracing::info!(
                records = converted,
                left_out,
                "decision records turned into pages"
            );
            give_back_free_pages(&admin);
        }
        let records = connect(&path, "NORMAL")?;
        let kv = connect(&path, "NORMAL")?;
        let readers = (0..READERS)
            .map(|_| connect_reader(&path))
            .collect::<StoreResult<_>>()?;
        Ok(Self {
            readers: Slots::new(readers),
            admin: Mutex::new(admin),
            records: Mutex::new(RecordWriter {
                conn: records,
                encoder: pages::Encoder::new()?,
            }),
            kv: Mutex::new(kv),
        })
    }

    fn admin(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-statement leaves SQLite consistent (the transaction rolls back), so a
        // poisoned lock is taken as it is.
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free reader, or the first to finish its read if none is free.
    fn reader(&self) -> Slot<'_, Connection> {
        self.readers.take()
    }
}

/// The size SQLite's log (`passthru.db-wal`) is cut back to when it starts over. It grows past
/// that while a checkpoint cannot catch up (a burst of writes, or reads that keep old snapshots
/// open), and SQLite would otherwise keep the file at the largest it ever was.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Opens a SQLite file in WAL mode with the given `synchronous` level (`NORMAL`, `FULL`).
pub(crate) fn connect(path: &Path, synchronous: &str) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

/// Rewrites the database without its free pages (`VACUUM`), once, after the records' rows were
/// turned into pages: pages take a fraction of the rows' room, and SQLite would otherwise keep
/// the difference in the file for ever, reusing it but never giving it back. Run before any
/// other connection opens. A failure (SQLite builds the copy in its temporary directory,
/// `SQLITE_TMPDIR` or `TMPDIR`, and needs room for it there and in the log) is logged and leaves
/// the file as it was, whole and usable.
fn give_back_free_pages(conn: &Connection) {
    let size = |conn: &Connection| -> rusqlite::Result<i64> {
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok(pages * page_size)
    };
    let before = size(conn);
    // The log then holds a copy of the whole database: truncated, it gives that room back too.
    match conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);") {
        Ok(()) => tracing::info!(
            bytes_before = before.unwrap_or(-1),
            bytes_after = size(conn).unwrap_or(-1),
            "the database gave back the room the records' rows took"
        ),
        Err(error) => tracing::warn!(
            %error,
            "cannot compact the database after turning records into pages; it keeps its size \
             (with the server stopped, `sqlite3 passthru.db VACUUM` compacts it)"
        ),
    }
}

/// Opens a read-only connection to a SQLite file that [`connect`] has put in WAL mode.
fn connect_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
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
        let mut writer = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let RecordWriter { conn, encoder } = &mut *writer;
        let tx = RecordTx::begin(conn)?;
        pages::insert(conn, encoder, records)?;
        tx.commit()?;
        Ok(())
    }

    fn prune_decisions(&self, before_ms: i64) -> StoreResult<u64> {
        let mut writer = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let RecordWriter { conn, encoder } = &mut *writer;
        pages::prune(conn, encoder, before_ms)
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

    /// A log grown past its limit, while a read held an old snapshot, is cut back to the limit
    /// once it starts over: it does not keep the room for ever.
    #[test]
    fn the_log_gives_back_what_it_grew_past_its_limit() {
        let dir = std::env::temp_dir().join(format!(
            "passthru-wal-{}-{}",
            std::process::id(),
            now_ms() ^ rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("grow.db");
        let conn = connect(&path, "NORMAL").unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        let wal = || std::fs::metadata(dir.join("grow.db-wal")).unwrap().len();
        let limit = u64::try_from(WAL_SIZE_LIMIT).unwrap();

        // A read keeps its snapshot open, so no checkpoint can start the log over.
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..(limit >> 20) + 8 {
            conn.execute("INSERT INTO t VALUES (?1)", [&chunk]).unwrap();
            conn.execute("DELETE FROM t", []).unwrap();
        }
        assert!(wal() > limit, "the log did not grow: {} bytes", wal());

        // The read ends; a checkpoint catches up, and the next write starts the log over.
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
            .unwrap();
        conn.execute("INSERT INTO t VALUES (x'00')", []).unwrap();
        assert!(wal() <= limit, "the log kept {} bytes", wal());
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// How many rows `from` (a table, and a condition if any) has.
    fn count(s: &SqliteStore, from: &str) -> i64 {
        s.admin()
            .query_row(&format!("SELECT count(*) FROM {from}"), [], |r| r.get(0))
            .unwrap()
    }

    /// The tenant `acme`'s records, newest first, at most 100.
    fn newest(s: &SqliteStore) -> Vec<DecisionRecord> {
        let filter = DecisionFilter {
            limit: 100,
            ..DecisionFilter::default()
        };
        s.query_decisions("acme", &filter).unwrap()
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

    /// A long read of decision records (a flow's stats over a busy hour) holds up neither the
    /// admin API's statements (its token checks, flows, uploads) nor the reads after it, which
    /// take the other reader however many there are.
    #[test]
    fn a_long_read_of_records_holds_up_neither_the_admin_api_nor_the_reads_after_it() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, mpsc};
        use std::time::Duration;
        const BOUND: Duration = Duration::from_secs(20);
        let (s, dir) = store();
        s.create_tenant("acme", &TenantCaps::default()).unwrap();
        s.add_token("acme", "t1", "hash-1").unwrap();
        s.insert_decisions(&[call_record(Some("CA1"), 1), call_record(Some("CA2"), 2)])
            .unwrap();
        // The first statement on any reader stops midway until the test lets it go.
        let (started, reading) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let held = Arc::new(AtomicBool::new(false));
        s.readers.each_free(|reader| {
            let (started, released, held) = (started.clone(), released.clone(), held.clone());
            reader.progress_handler(
                1,
                Some(move || {
                    if !held.swap(true, Ordering::SeqCst) {
                        started.send(()).unwrap();
                        released.lock().unwrap().recv_timeout(BOUND).unwrap();
                    }
                    false
                }),
            );
        });
        let s = Arc::new(s);
        // Runs `work` on a thread of its own; its answer, unless it is still waiting at `BOUND`.
        fn beside<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
            let (done, answer) = mpsc::channel();
            std::thread::spawn(move || done.send(work()).unwrap());
            answer.recv_timeout(BOUND).ok()
        }
        let long = {
            let s = s.clone();
            std::thread::spawn(move || newest(&s))
        };
        reading
            .recv_timeout(BOUND)
            .expect("the read runs on a reader");

        let admin = s.clone();
        let answered = beside(move || {
            let found = admin.tenant_for_token("hash-1").unwrap();
            (found, admin.get_tenant("acme").is_ok())
        });
        assert_eq!(answered, Some((Some("acme".to_owned()), true)));
        for _ in 0..4 {
            let reads = s.clone();
            let ats = beside(move || newest(&reads).iter().map(|r| r.at_ms).collect::<Vec<_>>());
            assert_eq!(ats, Some(vec![2, 1]), "a read waited behind the long one");
        }

        release.send(()).unwrap();
        let ats: Vec<i64> = long.join().unwrap().iter().map(|r| r.at_ms).collect();
        assert_eq!(ats, [2, 1]);
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_log_is_written_as_serde_would_write_it() {
        let record = call_record(None, 1);
        let serialised = json(&LogColumn::<_, ()>::Lines(&record.log)).unwrap();
        assert_eq!(log_column(&record).unwrap(), serialised);
        assert_eq!(parse_log_column("[]").unwrap(), (vec![], vec![]));
    }

    #[test]
    fn rows_from_before_pages_become_pages_keeping_their_ids_and_calls() {
        let (s, dir) = store();
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        // A database as the schema before call keys left it, with two calls' records of one
        // flow and one record of another flow between them.
        let conn = connect(&dir.join("passthru.db"), "NORMAL").unwrap();
        migrate(&conn, &MIGRATIONS[..7], "database").unwrap();
        for (flow, sid, at_ms) in [
            ("ivr", "CA1", 1),
            ("ivr", "CA2", 2),
            ("other", "CA9", 3),
            ("ivr", "CA1", 4),
        ] {
            conn.execute(
                "INSERT INTO decisions (tenant, flow, plugin, version, call_sid, branch, outcome, \
                 fuel_used, elapsed_us, log, log_dropped, at_ms, query) \
                 VALUES ('acme', ?1, 'p', 1, ?2, 'success', 'decided', 1, 1, \
                 '[{\"level\":\"info\",\"message\":\"hi\"}]', 0, ?3, 'a=b')",
                rusqlite::params![flow, sid, at_ms],
            )
            .unwrap();
        }
        drop(conn);

        let s = SqliteStore::open(&dir).unwrap();
        assert_eq!(
            count(&s, "sqlite_master WHERE name = 'decisions'"),
            0,
            "the old table is gone once converted"
        );
        let free: i64 = s
            .admin()
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .unwrap();
        assert_eq!(free, 0, "the old table's room is kept in the file");
        let mode: String = s
            .admin()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let log = std::fs::metadata(dir.join("passthru.db-wal"))
            .unwrap()
            .len();
        assert_eq!(log, 0, "the log keeps a copy of the compacted database");
        assert_eq!(
            count(&s, "decision_pages"),
            3,
            "a page per run of one flow's consecutive ids"
        );
        let all = newest(&s);
        assert_eq!(
            all.iter().map(|r| (r.id, r.at_ms)).collect::<Vec<_>>(),
            [(4, 4), (3, 3), (2, 2), (1, 1)]
        );
        assert_eq!(all[0].log[0].message, "hi");
        assert_eq!(all[0].query.as_deref(), Some("a=b"));

        // New records take the next ids, never one a converted record holds.
        s.insert_decisions(&[call_record(Some("CA1"), 5), call_record(Some("CA2"), 6)])
            .unwrap();
        // The next records' ids two runs on, as after 32,768 other records.
        s.records
            .lock()
            .unwrap()
            .conn
            .execute(
                "UPDATE decision_ids SET last = last + ?1",
                [2i64 << calls::RUN_BITS],
            )
            .unwrap();
        s.insert_decisions(&[call_record(Some("CA1"), 7), call_record(None, 8)])
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
        let later = (2i64 << calls::RUN_BITS) + 7;
        assert_eq!(calls_of("CA1"), [(later, 7), (5, 5), (4, 4), (1, 1)]);
        assert_eq!(calls_of("CA2"), [(6, 6), (2, 2)]);
        assert_eq!(calls_of("CA9"), [(3, 3)]);
        assert_eq!(calls_of("CA3"), []);

        // Opening again converts nothing more.
        drop(s);
        let s = SqliteStore::open(&dir).unwrap();
        assert_eq!(pages::convert_rows(&s.admin()).unwrap(), (0, 0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pruning_takes_whole_pages_and_the_older_start_of_others_and_the_calls_follow() {
        let (s, dir) = store();
        // Three transactions: (1, 2), (3, 4 and another flow's 3), (5, 6).
        let at = |sid: &str, at_ms: i64| call_record(Some(sid), at_ms);
        s.insert_decisions(&[at("CA1", 1), at("CA2", 2)]).unwrap();
        s.insert_decisions(&[
            at("CA3", 3),
            DecisionRecord {
                flow: "other".into(),
                ..at("CA3", 3)
            },
            at("CA1", 4),
        ])
        .unwrap();
        s.insert_decisions(&[at("CA1", 5), at("CA2", 6)]).unwrap();
        assert_eq!(s.prune_decisions(4).unwrap(), 4, "1, 2 and both 3s");
        let left = |filter: DecisionFilter| {
            s.query_decisions(
                "acme",
                &DecisionFilter {
                    limit: 100,
                    ..filter
                },
            )
            .unwrap()
            .iter()
            .map(|r| r.at_ms)
            .collect::<Vec<_>>()
        };
        assert_eq!(left(DecisionFilter::default()), [6, 5, 4]);
        let call = |sid: &str| DecisionFilter {
            call_sid: Some(sid.into()),
            ..DecisionFilter::default()
        };
        assert_eq!(
            left(call("CA1")),
            [5, 4],
            "the page pruned in part still found"
        );
        assert_eq!(left(call("CA3")), [] as [i64; 0]);
        assert_eq!(s.prune_decisions(4).unwrap(), 0);
        assert_eq!(s.prune_decisions(100).unwrap(), 3);
        assert_eq!(left(DecisionFilter::default()), [] as [i64; 0]);
        assert_eq!(
            count(&s, "decision_calls"),
            0,
            "no page left, no call entry left"
        );
        // Ids are never given again, even with every record gone.
        s.insert_decisions(&[at("CA1", 7)]).unwrap();
        assert_eq!(newest(&s)[0].id, 8);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_page_that_does_not_read_back_is_an_error_and_pruning_deletes_it() {
        let (s, dir) = store();
        s.insert_decisions(&[call_record(Some("CA1"), 1), call_record(Some("CA2"), 5)])
            .unwrap();
        s.insert_decisions(&[call_record(Some("CA3"), 9)]).unwrap();
        s.records
            .lock()
            .unwrap()
            .conn
            .execute(
                "UPDATE decision_pages SET body = zeroblob(40) WHERE id = 1",
                [],
            )
            .unwrap();
        let all = DecisionFilter {
            limit: 10,
            ..DecisionFilter::default()
        };
        assert!(matches!(
            s.query_decisions("acme", &all),
            Err(StoreError::Page(_))
        ));
        // The damaged page straddles the cutoff: it cannot be cut, so it goes whole.
        assert_eq!(s.prune_decisions(3).unwrap(), 2);
        let left = s.query_decisions("acme", &all).unwrap();
        assert_eq!(left.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [9]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_past_a_pages_bytes_go_to_the_next_page_and_a_cursor_seeks_its_page() {
        let (s, dir) = store();
        // 24 records of 512 KiB: 12 MiB, so past the 8 MiB at which a page closes.
        let big = |i: i64| DecisionRecord {
            query: Some(format!("{i}{}", "0".repeat(512 * 1024 - 2))),
            ..call_record(Some("CA1"), i)
        };
        s.insert_decisions(&(0..24).map(big).collect::<Vec<_>>())
            .unwrap();
        let pages: Vec<(i64, i64, i64)> = {
            let conn = s.admin();
            let mut stmt = conn
                .prepare("SELECT id, first_id, records FROM decision_pages ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(pages, [(1, 1, 16), (17, 17, 8)]);
        let page = |before_id| DecisionFilter {
            flow: Some("ivr".into()),
            before_id,
            limit: 5,
            ..DecisionFilter::default()
        };
        let first = s.query_decisions("acme", &page(None)).unwrap();
        assert_eq!(
            first.iter().map(|r| r.id).collect::<Vec<_>>(),
            [24, 23, 22, 21, 20]
        );
        assert_eq!(first[0].query.as_deref().map(str::len), Some(512 * 1024));
        let across = s.query_decisions("acme", &page(Some(19))).unwrap();
        assert_eq!(
            across.iter().map(|r| r.id).collect::<Vec<_>>(),
            [18, 17, 16, 15, 14]
        );
        // The cursor is a range on the page's id in the index, not a filter of every newer page.
        for flow in [Some("ivr".to_owned()), None] {
            let filter = DecisionFilter {
                flow,
                ..page(Some(19))
            };
            let conn = s.admin();
            let mut stmt = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN {}",
                    pages::pages_query(&filter)
                ))
                .unwrap();
            let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(plan[0].contains("rowid<?"), "{plan:#?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_of_records_leaves_no_transaction_open() {
        let (s, dir) = store();
        let rename = |from: &str, to: &str| {
            s.records
                .lock()
                .unwrap()
                .conn
                .execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
                .unwrap();
        };
        rename("decision_ids", "hidden_ids");
        assert!(s.insert_decisions(&[call_record(Some("CA1"), 1)]).is_err());
        assert!(s.records.lock().unwrap().conn.is_autocommit());
        rename("hidden_ids", "decision_ids");
        s.insert_decisions(&[call_record(Some("CA1"), 2)]).unwrap();
        let written = newest(&s);
        assert_eq!(written.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [2]);
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
