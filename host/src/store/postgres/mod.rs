//! The shared store for many nodes: PostgreSQL.
//!
//! Several passthru nodes point at one database. Everything a node would otherwise keep in its
//! data directory lives here: tenants, tokens, plugin versions and their bytes, flows and their
//! sealed secrets, decision records, key-value data and the async queue ([`PgQueue`]). A node
//! keeps only its compiled artifacts on its own disk.
//!
//! Every change a node makes to tenants, versions or flows also sends a notification on
//! [`CHANGES_CHANNEL`] in the same transaction, so it is delivered when (and only if) the change
//! commits; the other nodes listen ([`listen()`]) and bring their live table in line. Schema
//! migrations run under a transaction-scoped advisory lock, so nodes starting at once apply each
//! migration once.
//!
//! The client is the `postgres` crate (blocking, like the [`Store`](super::Store) contract), with
//! an `r2d2` pool. Connections are unencrypted: the database is expected on the nodes' private
//! network or behind a TLS tunnel (see docs/deployment.md).

mod admin;
mod kv;
pub mod listen;
mod queue;

use std::time::Duration;

use postgres::{GenericClient, NoTls, Row, Transaction};
use r2d2::{Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;

use super::slots::Slots;
use super::sqlite::{from_json, json, log_column, parse_log_column};
use super::{DecisionRecord, RecordSink, StoreError, StoreResult};
pub use kv::KvNotice;
pub use listen::{ChangeListener, listen};
pub use queue::PgQueue;

/// The channel every change to tenants, versions and flows is announced on; the payload is the
/// tenant's name.
pub const CHANGES_CHANNEL: &str = "passthru_changes";
/// The channel new plugin versions are announced on (the payload is their SHA-256), so that
/// every node compiles them before any flow needs them.
pub const VERSIONS_CHANNEL: &str = "passthru_versions";
/// The channel committed key-value writes are announced on (see `kv.rs`).
pub const KV_CHANNEL: &str = "passthru_kv";

/// Connections one node holds at most: the admin API, the record writer, the key-value writer,
/// the queue's writer and readers.
const POOL_SIZE: u32 = 12;
/// How long a caller waits for a free connection (or a new one) before the store fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock key migrations run under ("passthru" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x7061_7373_7468_7275;

type Manager = PostgresConnectionManager<NoTls>;
pub(super) type Conn = PooledConnection<Manager>;

/// The schema, one migration per entry, each applied once in order; the number applied is kept
/// in `schema_version`. The tables mirror the embedded store's, with the queue's events and the
/// nodes that hold them besides.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        disabled BOOLEAN NOT NULL DEFAULT false,
        caps TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        hash TEXT NOT NULL UNIQUE,
        created_at_ms BIGINT NOT NULL,
        revoked_at_ms BIGINT
    );
    CREATE TABLE versions (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        plugin TEXT NOT NULL,
        version BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        world TEXT NOT NULL,
        exports TEXT NOT NULL,
        uploaded_at_ms BIGINT NOT NULL,
        deleted_at_ms BIGINT,
        PRIMARY KEY (tenant, plugin, version)
    );
    CREATE INDEX versions_by_sha256 ON versions (sha256);
    CREATE UNIQUE INDEX versions_by_content ON versions (tenant, plugin, sha256)
        WHERE deleted_at_ms IS NULL;
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL
    );
    CREATE TABLE flows (
        tenant TEXT NOT NULL REFERENCES tenants(name),
        name TEXT NOT NULL,
        plugin TEXT NOT NULL,
        version BIGINT NOT NULL,
        previous_version BIGINT,
        mode TEXT NOT NULL,
        status_success BIGINT NOT NULL,
        status_failure BIGINT NOT NULL,
        fallback TEXT NOT NULL,
        limits TEXT NOT NULL,
        config TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        retry TEXT NOT NULL,
        auth_kind TEXT NOT NULL,
        auth_digest TEXT,
        auth_set_at_ms BIGINT,
        hook TEXT NOT NULL,
        canary TEXT,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE flow_secrets (
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        sealed BYTEA NOT NULL,
        set_at_ms BIGINT NOT NULL,
        PRIMARY KEY (tenant, flow, key)
    );
    CREATE TABLE decisions (
        id BIGSERIAL PRIMARY KEY,
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        plugin TEXT NOT NULL,
        version BIGINT NOT NULL,
        call_sid TEXT,
        branch TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        error TEXT,
        fuel_used BIGINT NOT NULL,
        elapsed_us BIGINT NOT NULL,
        log TEXT NOT NULL,
        log_dropped BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        answer TEXT,
        query TEXT,
        replay TEXT
    );
    CREATE INDEX decisions_by_flow ON decisions (tenant, flow, id);
    CREATE INDEX decisions_by_call ON decisions (tenant, call_sid);
    CREATE TABLE artifacts (
        key TEXT PRIMARY KEY,
        checksum TEXT NOT NULL
    );
    CREATE TABLE kv (
        tenant TEXT NOT NULL,
        store TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at_ms BIGINT,
        PRIMARY KEY (tenant, store, key)
    );
    CREATE INDEX kv_by_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        started_at_ms BIGINT NOT NULL,
        alive_until_ms BIGINT NOT NULL
    );
    CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        tenant TEXT NOT NULL,
        flow TEXT NOT NULL,
        call_sid TEXT,
        query TEXT NOT NULL,
        accepted_at_ms BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_at_ms BIGINT NOT NULL,
        dead BOOLEAN NOT NULL DEFAULT false,
        last_failure TEXT,
        owner TEXT
    );
    CREATE INDEX dead_letters ON events (tenant, flow, id) WHERE dead;
    CREATE INDEX events_by_owner ON events (owner) WHERE NOT dead;
"#];

/// PostgreSQL, shared by every node: see the module's documentation. Cheap to clone (the pool
/// is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: std::sync::Arc<Connections>,
    /// This process's id in the key-value notifications it sends, so it skips its own.
    origin: std::sync::Arc<str>,
    /// The reads of decision records allowed at once ([`RECORD_READS`]): the rest wait, so that
    /// long stats queries never take the connections the record writer, the key-value writer and
    /// the queue's accepts need.
    pub(super) record_reads: std::sync::Arc<Slots<()>>,
}

/// How many reads of decision records (queries, a call's records, a flow's stats) one node runs
/// at once, of the connections in its pool.
pub const RECORD_READS: usize = 2;

/// The pool, closed off the async runtime: the blocking client's connections block on their
/// own runtime as they close, which panics on a thread that runs async tasks (a start-up that
/// fails, a test server dropped in its test).
struct Connections(Option<Pool<Manager>>);

impl Drop for Connections {
    fn drop(&mut self) {
        let Some(pool) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("passthru-pg-close".into())
                .spawn(move || drop(pool));
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A database URL that is not one: said without echoing it (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("the database URL is not a valid PostgreSQL connection string: {0}")]
pub struct BadUrl(String);

/// Parses a `postgres://` URL (or a `key=value` connection string).
///
/// # Errors
/// It is not a connection string; the message does not repeat it.
pub fn parse_url(url: &str) -> Result<postgres::Config, BadUrl> {
    url.parse::<postgres::Config>()
        .map_err(|e| BadUrl(e.to_string()))
}

impl PgStore {
    /// Connects to the database and migrates its schema (safely when several nodes start at
    /// once).
    ///
    /// # Errors
    /// The server cannot be reached in time, or a migration fails, or the schema is newer than
    /// this binary.
    pub fn connect(config: &postgres::Config) -> StoreResult<Self> {
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build(manager)?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| StoreError::Unknown {
            what: format!("no randomness for the node's id ({e})"),
        })?;
        let origin: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let store = Self {
            pool: std::sync::Arc::new(Connections(Some(pool))),
            origin: origin.into(),
            record_reads: std::sync::Arc::new(Slots::new(vec![(); RECORD_READS])),
        };
        store.migrate()?;
        Ok(store)
    }

    /// This process's id: the one its key-value notifications carry.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub(super) fn conn(&self) -> StoreResult<Conn> {
        let pool = self
            .pool
            .0
            .as_ref()
            .expect("the pool is open until dropped");
        Ok(pool.get()?)
    }

    fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (\
                 one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), version BIGINT NOT NULL); \
             INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING",
        )?;
        let done: i64 = tx
            .query_one("SELECT version FROM schema_version", &[])?
            .get(0);
        let done = usize::try_from(done).unwrap_or(usize::MAX);
        if done > MIGRATIONS.len() {
            return Err(StoreError::NewerSchema {
                what: "database",
                found: done,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            tx.batch_execute(sql)?;
            tx.execute("UPDATE schema_version SET version = $1", &[&(i as i64 + 1)])?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Announces a change of `tenant`'s flows, versions or caps to every node, when `tx` commits.
pub(super) fn announce(tx: &mut Transaction<'_>, tenant: &str) -> StoreResult<()> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &tenant])?;
    Ok(())
}

/// A `u32` or `u64` column, stored as `BIGINT`.
pub(super) fn big(n: impl Into<u64>) -> i64 {
    i64::try_from(n.into()).unwrap_or(i64::MAX)
}

/// A `BIGINT` column read back as a count or number that cannot be negative.
pub(super) fn small<T: TryFrom<i64>>(row: &Row, idx: usize) -> StoreResult<T> {
    let n: i64 = row.try_get(idx)?;
    T::try_from(n).map_err(|_| StoreError::Unknown {
        what: format!("a number out of range ({n})"),
    })
}

/// Text as a PostgreSQL `text` value can hold it. Rust strings may hold U+0000 (a CallSid sent
/// as `%00`, a plugin's reason) and PostgreSQL refuses it, failing the whole statement: one such
/// row would take down a batch of other tenants' records or events with it. It is stored as
/// U+FFFD, and text looked up is changed the same way, so such a row is still found. (The
/// embedded store keeps U+0000 as it is.)
pub(super) fn pg_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

/// Runs `f` in a transaction that commits when it returns `Ok`.
pub(super) fn in_tx<T>(
    conn: &mut impl GenericClient,
    f: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut tx = conn.transaction()?;
    let out = f(&mut tx)?;
    tx.commit()?;
    Ok(out)
}

impl RecordSink for PgStore {
    /// One statement for the whole batch: every column as an array, `unnest`ed.
    fn insert_decisions(&self, records: &[DecisionRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tenant = Vec::with_capacity(records.len());
        let mut flow = Vec::with_capacity(records.len());
        let mut plugin = Vec::with_capacity(records.len());
        let mut version = Vec::with_capacity(records.len());
        let mut call_sid = Vec::with_capacity(records.len());
        let mut branch = Vec::with_capacity(records.len());
        let mut outcome = Vec::with_capacity(records.len());
        let mut reason = Vec::with_capacity(records.len());
        let mut error = Vec::with_capacity(records.len());
        let mut fuel = Vec::with_capacity(records.len());
        let mut elapsed = Vec::with_capacity(records.len());
        let mut log = Vec::with_capacity(records.len());
        let mut dropped = Vec::with_capacity(records.len());
        let mut at = Vec::with_capacity(records.len());
        let mut answer = Vec::with_capacity(records.len());
        let mut query = Vec::with_capacity(records.len());
        let mut replay = Vec::with_capacity(records.len());
        for r in records {
            tenant.push(r.tenant.as_str());
            flow.push(r.flow.as_str());
            plugin.push(r.plugin.as_str());
            version.push(big(r.version));
            call_sid.push(r.call_sid.as_deref().map(pg_text));
            branch.push(r.branch.as_str());
            outcome.push(r.outcome.as_str());
            reason.push(r.reason.as_deref().map(pg_text));
            error.push(r.error.as_deref().map(pg_text));
            fuel.push(big(r.fuel_used));
            elapsed.push(big(r.elapsed_us));
            log.push(log_column(r)?.into_owned());
            dropped.push(big(r.log_dropped));
            at.push(r.at_ms);
            answer.push(r.answer.as_deref().map(pg_text));
            query.push(r.query.as_deref().map(pg_text));
            replay.push(r.replay.as_ref().map(json).transpose()?);
        }
        self.conn()?.execute(
            "INSERT INTO decisions (tenant, flow, plugin, version, call_sid, branch, outcome, \
             reason, error, fuel_used, elapsed_us, log, log_dropped, at_ms, answer, query, \
             replay) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[], \
             $12::text[], $13::int8[], $14::int8[], $15::text[], $16::text[], $17::text[])",
            &[
                &tenant, &flow, &plugin, &version, &call_sid, &branch, &outcome, &reason, &error,
                &fuel, &elapsed, &log, &dropped, &at, &answer, &query, &replay,
            ],
        )?;
        Ok(())
    }

    fn prune_decisions(&self, before_ms: i64) -> StoreResult<u64> {
        // As in the embedded store: ids grow roughly with time (several nodes insert, each in
        // time order), so everything below the first young-enough id goes, with no index on
        // the time to slow every insert.
        let mut conn = self.conn()?;
        let keep_from: Option<i64> = conn
            .query_opt(
                "SELECT id FROM decisions WHERE at_ms >= $1 ORDER BY id LIMIT 1",
                &[&before_ms],
            )?
            .map(|r| r.get(0));
        let deleted = match keep_from {
            Some(id) => conn.execute("DELETE FROM decisions WHERE id < $1", &[&id])?,
            None => conn.execute("DELETE FROM decisions", &[])?,
        };
        Ok(deleted)
    }
}

/// A decision record from a row of `SELECT id, tenant, flow, plugin, version, call_sid, branch,
/// outcome, reason, error, fuel_used, elapsed_us, log, log_dropped, at_ms, answer, query,
/// replay`.
pub(super) fn decision(row: &Row) -> StoreResult<DecisionRecord> {
    let branch: String = row.try_get(6)?;
    let log: String = row.try_get(12)?;
    let (log, outbound) = parse_log_column(&log)?;
    Ok(DecisionRecord {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        flow: row.try_get(2)?,
        plugin: row.try_get(3)?,
        version: small(row, 4)?,
        call_sid: row.try_get(5)?,
        branch: super::sqlite::rows::parse_branch(&branch),
        outcome: row.try_get(7)?,
        reason: row.try_get(8)?,
        error: row.try_get(9)?,
        fuel_used: small(row, 10)?,
        elapsed_us: small(row, 11)?,
        log,
        log_dropped: small(row, 13)?,
        outbound,
        at_ms: row.try_get(14)?,
        answer: row.try_get(15)?,
        query: row.try_get(16)?,
        replay: row
            .try_get::<_, Option<String>>(17)?
            .as_deref()
            .map(from_json)
            .transpose()?,
    })
}
