//! The admin side of the embedded store: tenants, tokens, versions, flows and reading records.

use rusqlite::{OptionalExtension, params};

use super::rows::{
    FLOW_COLUMNS, HookColumn, VERSION_COLUMNS, branch_str, collect, decision_row, flow_row,
    tenant_row, to_flow, to_tenant, to_version, version_row,
};
use super::{MAX_PAGE, SqliteStore, calls, from_json, json, not_found, parse_log_column, write_tx};
use crate::store::{
    DecisionFilter, DecisionPoint, DecisionRecord, FlowRecord, SealedSecret, SecretInfo, Store,
    StoreError, StoreResult, Tenant, TenantCaps, TokenInfo, VersionRecord, now_ms,
};

impl SqliteStore {
    /// Lists each flow's secrets (keys only) into its record.
    fn attach_secrets(&self, flows: &mut [FlowRecord]) -> StoreResult<()> {
        let conn = self.admin();
        let mut stmt = conn.prepare_cached(
            "SELECT key, set_at_ms FROM flow_secrets WHERE tenant = ?1 AND flow = ?2 ORDER BY key",
        )?;
        for flow in flows {
            flow.secrets = stmt
                .query_map(params![flow.tenant, flow.name], |r| {
                    Ok(SecretInfo {
                        key: r.get(0)?,
                        set_at_ms: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
        }
        Ok(())
    }
}

/// How much earlier than the records written after it a decision record may be timed: its call
/// may have run up to the longest deadline (10 s) and waited in the record writer's queue.
/// Ten minutes is far beyond both.
const LATE_RECORD_MS: i64 = 10 * 60_000;

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
                     WHERE tenant = ?1 AND plugin = ?2 AND version = ?3 \
                     AND deleted_at_ms IS NULL"
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
             WHERE tenant = ?1 AND (?2 IS NULL OR plugin = ?2) AND deleted_at_ms IS NULL \
             ORDER BY plugin, version"
        ))?;
        collect(
            stmt.query_map(params![tenant, plugin], version_row)?,
            to_version,
        )
    }

    fn delete_version(
        &self,
        tenant: &str,
        plugin: &str,
        version: u32,
    ) -> StoreResult<VersionRecord> {
        let conn = self.admin();
        let tx = write_tx(&conn)?;
        let row = tx
            .query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = ?1 AND plugin = ?2 AND version = ?3 \
                     AND deleted_at_ms IS NULL"
                ),
                params![tenant, plugin, version],
                version_row,
            )
            .optional()?;
        let record = to_version(
            row.ok_or_else(|| not_found(format!("version {version} of plugin {plugin:?}")))?,
        )?;
        let user: Option<String> = tx
            .query_row(
                "SELECT name FROM flows WHERE tenant = ?1 AND plugin = ?2 \
                 AND (version = ?3 OR previous_version = ?3 \
                 OR json_extract(canary, '$.version') = ?3) ORDER BY name LIMIT 1",
                params![tenant, plugin, version],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(flow) = user {
            return Err(StoreError::InUse {
                what: format!(
                    "version {version} of plugin {plugin:?} is used by flow {flow:?} (as its \
                     version, its canary, or the one it would roll back to)"
                ),
            });
        }
        tx.execute(
            "UPDATE versions SET deleted_at_ms = ?4 \
             WHERE tenant = ?1 AND plugin = ?2 AND version = ?3",
            params![tenant, plugin, version, now_ms()],
        )?;
        tx.commit()?;
        Ok(record)
    }

    fn version_usage(&self, tenant: &str) -> StoreResult<(u32, u64)> {
        let (count, bytes): (u32, i64) = self.admin().query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM versions \
             WHERE tenant = ?1 AND deleted_at_ms IS NULL",
            params![tenant],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((count, u64::try_from(bytes).unwrap_or(0)))
    }

    fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        Ok(self.admin().query_row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE sha256 = ?1 AND deleted_at_ms IS NULL)",
            params![sha256],
            |r| r.get(0),
        )?)
    }

    fn delete_artifact_checksum(&self, key: &str) -> StoreResult<()> {
        self.admin()
            .execute("DELETE FROM artifacts WHERE key = ?1", params![key])?;
        Ok(())
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
                     WHERE tenant = ?1 AND plugin = ?2 AND sha256 = ?3 \
                     AND deleted_at_ms IS NULL ORDER BY version LIMIT 1"
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
                 ?18)"
            ),
            params![
                flow.tenant,
                flow.name,
                flow.plugin,
                flow.version,
                flow.previous_version,
                flow.settings.mode.as_str(),
                flow.settings.status.success,
                flow.settings.status.failure,
                branch_str(flow.settings.fallback),
                json(&flow.settings.limits)?,
                json(&flow.settings.config)?,
                flow.updated_at_ms,
                json(&flow.settings.retry)?,
                flow.auth.kind.as_str(),
                flow.auth.digest_hex(),
                flow.auth.set_at_ms,
                json(&HookColumn::of(&flow.settings))?,
                flow.canary.as_ref().map(json).transpose()?
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
        let mut flow = to_flow(row.ok_or_else(|| not_found(format!("flow {name:?}")))?)?;
        self.attach_secrets(std::slice::from_mut(&mut flow))?;
        Ok(flow)
    }

    fn list_flows(&self, tenant: &str) -> StoreResult<Vec<FlowRecord>> {
        let mut flows = {
            let conn = self.admin();
            let mut stmt = conn.prepare(&format!(
                "SELECT {FLOW_COLUMNS} FROM flows WHERE tenant = ?1 ORDER BY name"
            ))?;
            collect(stmt.query_map([tenant], flow_row)?, to_flow)?
        };
        self.attach_secrets(&mut flows)?;
        Ok(flows)
    }

    fn list_live_flows(&self) -> StoreResult<Vec<FlowRecord>> {
        let columns = FLOW_COLUMNS
            .split(", ")
            .map(|c| format!("f.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut flows = {
            let conn = self.admin();
            let mut stmt = conn.prepare(&format!(
                "SELECT {columns} FROM flows f JOIN tenants t ON t.name = f.tenant \
                 WHERE t.disabled = 0 ORDER BY f.tenant, f.name"
            ))?;
            collect(stmt.query_map([], flow_row)?, to_flow)?
        };
        self.attach_secrets(&mut flows)?;
        Ok(flows)
    }

    fn delete_flow(&self, tenant: &str, name: &str) -> StoreResult<()> {
        let conn = self.admin();
        let tx = write_tx(&conn)?;
        let changed = tx.execute(
            "DELETE FROM flows WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )?;
        if changed == 0 {
            return Err(not_found(format!("flow {name:?}")));
        }
        tx.execute(
            "DELETE FROM flow_secrets WHERE tenant = ?1 AND flow = ?2",
            params![tenant, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn put_flow_secret(
        &self,
        tenant: &str,
        flow: &str,
        key: &str,
        sealed: &[u8],
        at_ms: i64,
    ) -> StoreResult<SecretInfo> {
        let conn = self.admin();
        let tx = write_tx(&conn)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM flows WHERE tenant = ?1 AND name = ?2)",
            params![tenant, flow],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(not_found(format!("flow {flow:?}")));
        }
        tx.execute(
            "INSERT OR REPLACE INTO flow_secrets (tenant, flow, key, sealed, set_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant, flow, key, sealed, at_ms],
        )?;
        tx.commit()?;
        Ok(SecretInfo {
            key: key.to_owned(),
            set_at_ms: at_ms,
        })
    }

    fn delete_flow_secret(&self, tenant: &str, flow: &str, key: &str) -> StoreResult<()> {
        let changed = self.admin().execute(
            "DELETE FROM flow_secrets WHERE tenant = ?1 AND flow = ?2 AND key = ?3",
            params![tenant, flow, key],
        )?;
        if changed == 0 {
            return Err(not_found(format!("secret {key:?} of flow {flow:?}")));
        }
        Ok(())
    }

    fn sealed_secrets(&self, flow: Option<(&str, &str)>) -> StoreResult<Vec<SealedSecret>> {
        let conn = self.admin();
        let mut stmt = conn.prepare_cached(
            "SELECT tenant, flow, key, sealed FROM flow_secrets \
             WHERE (?1 IS NULL OR (tenant = ?1 AND flow = ?2)) ORDER BY tenant, flow, key",
        )?;
        let (tenant, name) = flow.unzip();
        let rows = stmt.query_map(params![tenant, name], |r| {
            Ok(SealedSecret {
                tenant: r.get(0)?,
                flow: r.get(1)?,
                key: r.get(2)?,
                sealed: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn query_decisions(
        &self,
        tenant: &str,
        filter: &DecisionFilter,
    ) -> StoreResult<Vec<DecisionRecord>> {
        let conn = self.admin();
        let mut stmt = conn.prepare_cached(&decisions_query(filter))?;
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![
            &tenant,
            &filter.flow,
            &filter.call_sid,
            &filter.outcome,
            &filter.since_ms,
            &filter.until_ms,
            &filter.before_id,
            &limit,
        ];
        // A call's records: the hash to look up in each run of ids (see `calls.rs`).
        let hash;
        if let Some(call_sid) = &filter.call_sid {
            hash = calls::call_hash(tenant, call_sid);
            values.push(&hash);
        }
        let rows = stmt.query_map(&*values, decision_row)?;
        collect(rows, |(mut record, log, replay)| {
            (record.log, record.outbound) = parse_log_column(&log)?;
            record.replay = replay.as_deref().map(from_json).transpose()?;
            Ok(record)
        })
    }

    fn decision_points(
        &self,
        tenant: &str,
        flow: &str,
        since_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DecisionPoint>> {
        let conn = self.admin();
        // Newest first through the (tenant, flow, id) index, so that the limit keeps the newest
        // points (turned oldest first below). `at_ms` has no index: rather than filter every
        // record the flow keeps, the scan stops at the first record older than the window by
        // more than `LATE_RECORD_MS` (ids follow the order records were written in, a few
        // milliseconds after their call).
        let mut stmt = conn.prepare_cached(
            "SELECT at_ms, version, outcome, elapsed_us FROM decisions \
             WHERE tenant = ?1 AND flow = ?2 ORDER BY id DESC",
        )?;
        let mut rows = stmt.query(params![tenant, flow])?;
        let mut points = Vec::new();
        while points.len() < limit as usize {
            let Some(row) = rows.next()? else { break };
            let point: DecisionPoint = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            if point.0 >= since_ms {
                points.push(point);
            } else if point.0 < since_ms - LATE_RECORD_MS {
                break;
            }
        }
        points.reverse();
        Ok(points)
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

/// The statement of `query_decisions` for `filter`: only the conditions it sets, each with its
/// fixed parameter number. Written out, rather than as `(?N IS NULL OR column = ?N)`, so that
/// SQLite sees `tenant = ? AND flow = ?` and walks the `decisions_by_flow` index in id order
/// (no sort of every record of the tenant for each page: a backtest reads ten pages of one flow).
pub(super) fn decisions_query(filter: &DecisionFilter) -> String {
    let mut sql = String::new();
    if filter.call_sid.is_some() {
        sql.push_str(&call_runs());
    }
    sql.push_str(
        "SELECT id, tenant, flow, plugin, version, call_sid, branch, outcome, reason, error, \
         fuel_used, elapsed_us, log, log_dropped, at_ms, answer, query, replay FROM decisions",
    );
    if filter.call_sid.is_some() {
        // The call's few records by id (below), never a walk of the tenant's or flow's index.
        sql.push_str(" NOT INDEXED");
    }
    sql.push_str(" WHERE tenant = ?1");
    for (set, condition) in [
        (filter.flow.is_some(), " AND flow = ?2"),
        (filter.call_sid.is_some(), " AND call_sid = ?3"),
        (filter.outcome.is_some(), " AND outcome = ?4"),
        (filter.since_ms.is_some(), " AND at_ms >= ?5"),
        (filter.until_ms.is_some(), " AND at_ms < ?6"),
        (filter.before_id.is_some(), " AND id < ?7"),
    ] {
        if set {
            sql.push_str(condition);
        }
    }
    if filter.call_sid.is_some() {
        // Only the ids of the call's records, found through its key in each run (its hash ?9)
        // or, for records written before keys, through their CallSid.
        sql.push_str(CALL_IDS);
    }
    // ?1 and ?8 are always there, so the statement always has the 8 parameters bound (9 with a
    // CallSid).
    sql.push_str(" ORDER BY id DESC LIMIT ?8");
    sql
}

/// Every run of ids the table holds records of, from the oldest record's to the newest's (see
/// `calls.rs`), read in the statement itself so that it sees the records it searches.
fn call_runs() -> String {
    let bits = calls::RUN_BITS;
    format!(
        "WITH RECURSIVE runs(r) AS (SELECT (SELECT min(id) FROM decisions) >> {bits} \
         UNION ALL SELECT r + 1 FROM runs WHERE r < (SELECT max(id) FROM decisions) >> {bits}) "
    )
}

/// The ids of the records with the CallSid ?3 (and hash ?9): the key of each run, looked up in
/// `decisions_by_call_key`, and the records from before keys, in `decisions_by_call_before`.
const CALL_IDS: &str = " AND id IN (\
    SELECT id FROM decisions INDEXED BY decisions_by_call_key \
    WHERE call_key IN (SELECT (r << 32) | ?9 FROM runs) \
    UNION ALL \
    SELECT id FROM decisions INDEXED BY decisions_by_call_before \
    WHERE tenant = ?1 AND call_sid = ?3 AND call_key IS NULL)";
