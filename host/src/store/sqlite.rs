//! The embedded store: one SQLite file in the data directory, created and migrated on open.
//!
//! Two connections: one for the admin API, one for the decision-record writer, so a batch of
//! records never waits behind an upload (WAL mode lets them overlap).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{
    DecisionFilter, DecisionRecord, FlowMode, FlowRecord, RecordSink, Store, StoreError,
    StoreResult, Tenant, TenantCaps, TokenInfo, VersionRecord, now_ms,
};
use crate::config::StatusMap;
use crate::queue::RetryPolicy;
use crate::sandbox::{Branch, Limits};

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
];

/// The most records one query returns.
pub const MAX_PAGE: u32 = 1000;

pub struct SqliteStore {
    admin: Mutex<Connection>,
    records: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `passthru.db` in `dir`.
    ///
    /// # Errors
    /// The folder cannot be created, or the database cannot be opened or migrated.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("passthru.db");
        let admin = connect(&path, "NORMAL")?;
        migrate(&admin, MIGRATIONS, "database")?;
        let records = connect(&path, "NORMAL")?;
        Ok(Self {
            admin: Mutex::new(admin),
            records: Mutex::new(records),
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
pub(crate) fn migrate(conn: &Connection, migrations: &[&str], what: &str) -> StoreResult<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if done > migrations.len() {
        return Err(StoreError::Backend(format!(
            "the {what} is at schema version {done}, newer than this binary knows ({}): \
             upgrade passthru",
            migrations.len()
        )));
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

fn json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    Ok(serde_json::to_string(value)?)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    Ok(serde_json::from_str(text)?)
}

fn branch_str(b: Branch) -> &'static str {
    b.as_str()
}

fn parse_branch(s: &str) -> Branch {
    if s == "success" {
        Branch::Success
    } else {
        Branch::Failure
    }
}

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<(String, bool, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn to_tenant(
    (name, disabled, caps, created_at_ms): (String, bool, String, i64),
) -> StoreResult<Tenant> {
    Ok(Tenant {
        name,
        disabled,
        caps: from_json(&caps)?,
        created_at_ms,
    })
}

const VERSION_COLUMNS: &str =
    "tenant, plugin, version, sha256, size, world, exports, uploaded_at_ms";

fn version_row(row: &Row<'_>) -> rusqlite::Result<(VersionRecord, String)> {
    Ok((
        VersionRecord {
            tenant: row.get(0)?,
            plugin: row.get(1)?,
            version: row.get(2)?,
            sha256: row.get(3)?,
            size: row.get(4)?,
            world: row.get(5)?,
            exports: Vec::new(),
            uploaded_at_ms: row.get(7)?,
        },
        row.get(6)?,
    ))
}

fn to_version((mut v, exports): (VersionRecord, String)) -> StoreResult<VersionRecord> {
    v.exports = from_json(&exports)?;
    Ok(v)
}

const FLOW_COLUMNS: &str = "tenant, name, plugin, version, previous_version, mode, \
    status_success, status_failure, fallback, limits, config, updated_at_ms, retry";

struct FlowRow {
    record: FlowRecord,
    mode: String,
    limits: String,
    config: String,
    retry: String,
}

fn flow_row(row: &Row<'_>) -> rusqlite::Result<FlowRow> {
    let fallback: String = row.get(8)?;
    Ok(FlowRow {
        record: FlowRecord {
            tenant: row.get(0)?,
            name: row.get(1)?,
            plugin: row.get(2)?,
            version: row.get(3)?,
            previous_version: row.get(4)?,
            mode: FlowMode::Sync,
            status: StatusMap {
                success: row.get(6)?,
                failure: row.get(7)?,
            },
            fallback: parse_branch(&fallback),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            config: Default::default(),
            updated_at_ms: row.get(11)?,
        },
        mode: row.get(5)?,
        limits: row.get(9)?,
        config: row.get(10)?,
        retry: row.get(12)?,
    })
}

fn to_flow(row: FlowRow) -> StoreResult<FlowRecord> {
    let mut record = row.record;
    record.mode = match row.mode.as_str() {
        "sync" => FlowMode::Sync,
        "async" => FlowMode::Async,
        other => {
            return Err(StoreError::Backend(format!(
                "flow {:?} has an unknown mode {other:?}",
                record.name
            )));
        }
    };
    record.limits = from_json(&row.limits)?;
    record.config = from_json(&row.config)?;
    record.retry = from_json(&row.retry)?;
    Ok(record)
}

fn collect<T, R>(
    rows: impl Iterator<Item = rusqlite::Result<R>>,
    convert: impl Fn(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.map(|r| convert(r?)).collect()
}

fn decision_row(row: &Row<'_>) -> rusqlite::Result<(DecisionRecord, String)> {
    let branch: String = row.get(6)?;
    Ok((
        DecisionRecord {
            id: row.get(0)?,
            tenant: row.get(1)?,
            flow: row.get(2)?,
            plugin: row.get(3)?,
            version: row.get(4)?,
            call_sid: row.get(5)?,
            branch: parse_branch(&branch),
            outcome: row.get(7)?,
            reason: row.get(8)?,
            error: row.get(9)?,
            fuel_used: row.get(10)?,
            elapsed_us: row.get(11)?,
            log: Vec::new(),
            log_dropped: row.get(13)?,
            at_ms: row.get(14)?,
        },
        row.get(12)?,
    ))
}

fn not_found(what: String) -> StoreError {
    StoreError::NotFound { what }
}

impl RecordSink for SqliteStore {
    fn insert_decisions(&self, records: &[DecisionRecord]) -> StoreResult<()> {
        let conn = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let tx = write_tx(&conn)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decisions (tenant, flow, plugin, version, call_sid, branch, outcome, \
                 reason, error, fuel_used, elapsed_us, log, log_dropped, at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for r in records {
                stmt.execute(params![
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
                    json(&r.log)?,
                    r.log_dropped,
                    r.at_ms
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

impl Store for SqliteStore {
    fn create_tenant(&self, name: &str, caps: &TenantCaps) -> StoreResult<Tenant> {
        let created_at_ms = now_ms();
        let inserted = self.admin().execute(
            "INSERT OR IGNORE INTO tenants (name, disabled, caps, created_at_ms) VALUES (?1, 0, ?2, ?3)",
            params![name, json(caps)?, created_at_ms],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict {
                what: format!("tenant {name:?}"),
            });
        }
        Ok(Tenant {
            name: name.to_owned(),
            disabled: false,
            caps: *caps,
            created_at_ms,
        })
    }

    fn get_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let row = self
            .admin()
            .query_row(
                "SELECT name, disabled, caps, created_at_ms FROM tenants WHERE name = ?1",
                [name],
                tenant_row,
            )
            .optional()?;
        to_tenant(row.ok_or_else(|| not_found(format!("tenant {name:?}")))?)
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let conn = self.admin();
        let mut stmt =
            conn.prepare("SELECT name, disabled, caps, created_at_ms FROM tenants ORDER BY name")?;
        collect(stmt.query_map([], tenant_row)?, to_tenant)
    }

    fn update_tenant(
        &self,
        name: &str,
        disabled: Option<bool>,
        caps: Option<&TenantCaps>,
    ) -> StoreResult<Tenant> {
        {
            let conn = self.admin();
            let tx = write_tx(&conn)?;
            if let Some(disabled) = disabled {
                tx.execute(
                    "UPDATE tenants SET disabled = ?2 WHERE name = ?1",
                    params![name, disabled],
                )?;
            }
            if let Some(caps) = caps {
                tx.execute(
                    "UPDATE tenants SET caps = ?2 WHERE name = ?1",
                    params![name, json(caps)?],
                )?;
            }
            tx.commit()?;
        }
        self.get_tenant(name)
    }

    fn add_token(&self, tenant: &str, id: &str, hash: &str) -> StoreResult<TokenInfo> {
        let created_at_ms = now_ms();
        self.admin().execute(
            "INSERT INTO tokens (id, tenant, hash, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![id, tenant, hash, created_at_ms],
        )?;
        Ok(TokenInfo {
            id: id.to_owned(),
            created_at_ms,
            revoked: false,
        })
    }

    fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenInfo>> {
        let conn = self.admin();
        let mut stmt = conn.prepare(
            "SELECT id, created_at_ms, revoked_at_ms IS NOT NULL FROM tokens \
             WHERE tenant = ?1 ORDER BY created_at_ms, id",
        )?;
        let rows = stmt.query_map([tenant], |r| {
            Ok(TokenInfo {
                id: r.get(0)?,
                created_at_ms: r.get(1)?,
                revoked: r.get(2)?,
            })
        })?;
        collect(rows, Ok)
    }

    fn revoke_token(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let changed = self.admin().execute(
            "UPDATE tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ?3) \
             WHERE tenant = ?1 AND id = ?2",
            params![tenant, id, now_ms()],
        )?;
        if changed == 0 {
            return Err(not_found(format!("token {id:?}")));
        }
        Ok(())
    }

    fn tenant_for_token(&self, hash: &str) -> StoreResult<Option<String>> {
        Ok(self
            .admin()
            .query_row(
                "SELECT tenant FROM tokens WHERE hash = ?1 AND revoked_at_ms IS NULL",
                [hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn add_version(
        &self,
        tenant: &str,
        plugin: &str,
        sha256: &str,
        size: u64,
        world: &str,
        exports: &[String],
    ) -> StoreResult<VersionRecord> {
        let conn = self.admin();
        let tx = write_tx(&conn)?;
        let latest: Option<u32> = tx.query_row(
            "SELECT MAX(version) FROM versions WHERE tenant = ?1 AND plugin = ?2",
            params![tenant, plugin],
            |r| r.get(0),
        )?;
        let record = VersionRecord {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            version: latest.unwrap_or(0) + 1,
            sha256: sha256.to_owned(),
            size,
            world: world.to_owned(),
            exports: exports.to_vec(),
            uploaded_at_ms: now_ms(),
        };
        tx.execute(
            &format!(
                "INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                record.tenant,
                record.plugin,
                record.version,
                record.sha256,
                record.size,
                record.world,
                json(&record.exports)?,
                record.uploaded_at_ms
            ],
        )?;
        tx.commit()?;
        Ok(record)
    }

    fn get_version(&self, tenant: &str, plugin: &str, version: u32) -> StoreResult<VersionRecord> {
        let row = self
            .admin()
            .query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = ?1 AND plugin = ?2 AND version = ?3"
                ),
                params![tenant, plugin, version],
                version_row,
            )
            .optional()?;
        to_version(row.ok_or_else(|| not_found(format!("version {version} of plugin {plugin:?}")))?)
    }

    fn list_versions(&self, tenant: &str, plugin: Option<&str>) -> StoreResult<Vec<VersionRecord>> {
        let conn = self.admin();
        let mut stmt = conn.prepare(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions \
             WHERE tenant = ?1 AND (?2 IS NULL OR plugin = ?2) ORDER BY plugin, version"
        ))?;
        collect(
            stmt.query_map(params![tenant, plugin], version_row)?,
            to_version,
        )
    }

    fn find_version(
        &self,
        tenant: &str,
        plugin: &str,
        sha256: &str,
    ) -> StoreResult<Option<VersionRecord>> {
        let row = self
            .admin()
            .query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = ?1 AND plugin = ?2 AND sha256 = ?3 ORDER BY version LIMIT 1"
                ),
                params![tenant, plugin, sha256],
                version_row,
            )
            .optional()?;
        row.map(to_version).transpose()
    }

    fn put_flow(&self, flow: &FlowRecord) -> StoreResult<bool> {
        let conn = self.admin();
        let tx = write_tx(&conn)?;
        let existed: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM flows WHERE tenant = ?1 AND name = ?2)",
            params![flow.tenant, flow.name],
            |r| r.get(0),
        )?;
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO flows ({FLOW_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ),
            params![
                flow.tenant,
                flow.name,
                flow.plugin,
                flow.version,
                flow.previous_version,
                flow.mode.as_str(),
                flow.status.success,
                flow.status.failure,
                branch_str(flow.fallback),
                json(&flow.limits)?,
                json(&flow.config)?,
                flow.updated_at_ms,
                json(&flow.retry)?
            ],
        )?;
        tx.commit()?;
        Ok(!existed)
    }

    fn get_flow(&self, tenant: &str, name: &str) -> StoreResult<FlowRecord> {
        let row = self
            .admin()
            .query_row(
                &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE tenant = ?1 AND name = ?2"),
                params![tenant, name],
                flow_row,
            )
            .optional()?;
        to_flow(row.ok_or_else(|| not_found(format!("flow {name:?}")))?)
    }

    fn list_flows(&self, tenant: &str) -> StoreResult<Vec<FlowRecord>> {
        let conn = self.admin();
        let mut stmt = conn.prepare(&format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE tenant = ?1 ORDER BY name"
        ))?;
        collect(stmt.query_map([tenant], flow_row)?, to_flow)
    }

    fn list_live_flows(&self) -> StoreResult<Vec<FlowRecord>> {
        let conn = self.admin();
        let columns = FLOW_COLUMNS
            .split(", ")
            .map(|c| format!("f.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {columns} FROM flows f JOIN tenants t ON t.name = f.tenant \
             WHERE t.disabled = 0 ORDER BY f.tenant, f.name"
        ))?;
        collect(stmt.query_map([], flow_row)?, to_flow)
    }

    fn delete_flow(&self, tenant: &str, name: &str) -> StoreResult<()> {
        let changed = self.admin().execute(
            "DELETE FROM flows WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )?;
        if changed == 0 {
            return Err(not_found(format!("flow {name:?}")));
        }
        Ok(())
    }

    fn query_decisions(
        &self,
        tenant: &str,
        filter: &DecisionFilter,
    ) -> StoreResult<Vec<DecisionRecord>> {
        let conn = self.admin();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, flow, plugin, version, call_sid, branch, outcome, reason, error, \
             fuel_used, elapsed_us, log, log_dropped, at_ms FROM decisions \
             WHERE tenant = ?1 AND (?2 IS NULL OR flow = ?2) AND (?3 IS NULL OR call_sid = ?3) \
             AND (?4 IS NULL OR outcome = ?4) AND (?5 IS NULL OR at_ms >= ?5) \
             AND (?6 IS NULL OR at_ms < ?6) AND (?7 IS NULL OR id < ?7) \
             ORDER BY id DESC LIMIT ?8",
        )?;
        let rows = stmt.query_map(
            params![
                tenant,
                filter.flow,
                filter.call_sid,
                filter.outcome,
                filter.since_ms,
                filter.until_ms,
                filter.before_id,
                filter.limit.clamp(1, MAX_PAGE)
            ],
            decision_row,
        )?;
        collect(rows, |(mut record, log)| {
            record.log = from_json(&log)?;
            Ok(record)
        })
    }

    fn artifact_checksum(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .admin()
            .query_row(
                "SELECT checksum FROM artifacts WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn put_artifact_checksum(&self, key: &str, checksum: &str) -> StoreResult<()> {
        self.admin().execute(
            "INSERT OR REPLACE INTO artifacts (key, checksum) VALUES (?1, ?2)",
            params![key, checksum],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn flow(version: u32) -> FlowRecord {
        FlowRecord {
            tenant: "acme".into(),
            name: "ivr".into(),
            plugin: "menu".into(),
            version,
            previous_version: None,
            mode: FlowMode::Async,
            status: StatusMap::default(),
            fallback: Branch::Success,
            limits: Limits {
                fuel: 5,
                ..Limits::default()
            },
            retry: RetryPolicy {
                max_attempts: 9,
                backoff_ms: 20,
                max_backoff_ms: 40,
            },
            config: [("k".to_owned(), "v".to_owned())].into(),
            updated_at_ms: 7,
        }
    }

    #[test]
    fn tenants_versions_flows_and_tokens_round_trip_and_survive_reopening() {
        let (s, dir) = store();
        let caps = TenantCaps {
            max_flows: 3,
            ..TenantCaps::default()
        };
        s.create_tenant("acme", &caps).unwrap();
        assert!(matches!(
            s.create_tenant("acme", &caps),
            Err(StoreError::Conflict { .. })
        ));
        let v1 = s
            .add_version("acme", "menu", "aa", 10, "w", &["decide".into()])
            .unwrap();
        let v2 = s.add_version("acme", "menu", "bb", 11, "w", &[]).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(
            s.find_version("acme", "menu", "bb")
                .unwrap()
                .unwrap()
                .version,
            2
        );
        assert!(s.put_flow(&flow(1)).unwrap());
        assert!(!s.put_flow(&flow(2)).unwrap());
        s.add_token("acme", "t1", "hash1").unwrap();
        s.revoke_token("acme", "t1").unwrap();
        s.add_token("acme", "t2", "hash2").unwrap();
        drop(s);

        let s = SqliteStore::open(&dir).unwrap();
        assert_eq!(s.get_tenant("acme").unwrap().caps, caps);
        assert_eq!(s.get_flow("acme", "ivr").unwrap(), flow(2));
        assert_eq!(s.list_versions("acme", Some("menu")).unwrap(), vec![v1, v2]);
        assert_eq!(s.tenant_for_token("hash1").unwrap(), None);
        assert_eq!(
            s.tenant_for_token("hash2").unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(s.list_live_flows().unwrap().len(), 1);
        s.update_tenant("acme", Some(true), None).unwrap();
        assert!(s.list_live_flows().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn decisions_filter_and_page_newest_first() {
        let (s, dir) = store();
        let record = |i: i64, flow: &str, outcome: &str| DecisionRecord {
            id: 0,
            tenant: "acme".into(),
            flow: flow.into(),
            plugin: "p".into(),
            version: 1,
            call_sid: Some(format!("call{i}")),
            branch: Branch::Failure,
            outcome: outcome.into(),
            reason: None,
            error: None,
            fuel_used: 1,
            elapsed_us: 2,
            log: vec![],
            log_dropped: 0,
            at_ms: 1000 + i,
        };
        let batch: Vec<_> = (0..10)
            .map(|i| {
                record(
                    i,
                    if i % 2 == 0 { "a" } else { "b" },
                    if i == 3 { "trap" } else { "decided" },
                )
            })
            .collect();
        s.insert_decisions(&batch).unwrap();
        let page = |filter: DecisionFilter| s.query_decisions("acme", &filter).unwrap();
        let first = page(DecisionFilter {
            flow: Some("a".into()),
            limit: 2,
            ..Default::default()
        });
        assert_eq!(
            first.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            [1008, 1006]
        );
        let next = page(DecisionFilter {
            flow: Some("a".into()),
            limit: 2,
            before_id: Some(first[1].id),
            ..Default::default()
        });
        assert_eq!(
            next.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            [1004, 1002]
        );
        let traps = page(DecisionFilter {
            outcome: Some("trap".into()),
            limit: 50,
            ..Default::default()
        });
        assert_eq!(traps.len(), 1);
        assert_eq!(traps[0].call_sid.as_deref(), Some("call3"));
        let by_call = page(DecisionFilter {
            call_sid: Some("call7".into()),
            limit: 50,
            ..Default::default()
        });
        assert_eq!(by_call.len(), 1);
        let window = page(DecisionFilter {
            since_ms: Some(1002),
            until_ms: Some(1005),
            limit: 50,
            ..Default::default()
        });
        assert_eq!(window.len(), 3);
        assert!(
            s.query_decisions(
                "other",
                &DecisionFilter {
                    limit: 50,
                    ..Default::default()
                }
            )
            .unwrap()
            .is_empty()
        );
        assert_eq!(s.prune_decisions(1005).unwrap(), 5);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
