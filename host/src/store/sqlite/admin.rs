//! The admin side of the embedded store: tenants, tokens, versions, flows and reading records.

use rusqlite::{OptionalExtension, params};

use super::rows::{
    FLOW_COLUMNS, HookColumn, VERSION_COLUMNS, branch_str, collect, flow_row, tenant_row, to_flow,
    to_tenant, to_version, version_row,
};
use super::{MAX_PAGE, SqliteStore, json, not_found, pages, write_tx};
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
        let limit = filter.limit.clamp(1, MAX_PAGE) as usize;
        pages::query(&self.reader(), tenant, filter, limit)
    }

    fn decision_points(
        &self,
        tenant: &str,
        flow: &str,
        since_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DecisionPoint>> {
        pages::points(
            &self.reader(),
            tenant,
            flow,
            since_ms,
            limit as usize,
            LATE_RECORD_MS,
        )
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
