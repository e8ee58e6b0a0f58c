//! The admin side of the shared store: tenants, tokens, versions and their bytes, flows, secrets
//! and reading records. The same contract as the embedded store (`tests/store.rs` runs one suite
//! on both); every change to what a node serves is announced to the others.

use postgres::{GenericClient, Row};

use super::{PgStore, announce, big, decision, in_tx, pg_text, small};
use crate::flow::{FlowSettings, StatusMap, UrlAuth};
use crate::store::sqlite::rows::{FlowRow, HookColumn, parse_branch, to_flow};
use crate::store::sqlite::{MAX_PAGE, from_json, json, not_found};
use crate::store::{
    DecisionFilter, DecisionPoint, DecisionRecord, FlowRecord, SealedSecret, SecretInfo, Store,
    StoreError, StoreResult, Tenant, TenantCaps, TokenInfo, VersionRecord, now_ms,
};

/// How late a record may be written after its call: the bound of [`Store::decision_points`]'s
/// scan, as in the embedded store.
const LATE_RECORD_MS: i64 = 10 * 60_000;

const VERSION_COLUMNS: &str =
    "tenant, plugin, version, sha256, size, world, exports, uploaded_at_ms";

const FLOW_COLUMNS: &str = "tenant, name, plugin, version, previous_version, mode, \
    status_success, status_failure, fallback, limits, config, updated_at_ms, retry, auth_kind, \
    auth_digest, auth_set_at_ms, hook, canary";

fn tenant(row: &Row) -> StoreResult<Tenant> {
    let caps: String = row.try_get(2)?;
    Ok(Tenant {
        name: row.try_get(0)?,
        disabled: row.try_get(1)?,
        caps: from_json(&caps)?,
        created_at_ms: row.try_get(3)?,
    })
}

fn version(row: &Row) -> StoreResult<VersionRecord> {
    let exports: String = row.try_get(6)?;
    Ok(VersionRecord {
        tenant: row.try_get(0)?,
        plugin: row.try_get(1)?,
        version: small(row, 2)?,
        sha256: row.try_get(3)?,
        size: small(row, 4)?,
        world: row.try_get(5)?,
        exports: from_json(&exports)?,
        uploaded_at_ms: row.try_get(7)?,
    })
}

fn flow(row: &Row) -> StoreResult<FlowRecord> {
    let fallback: String = row.try_get(8)?;
    let previous: Option<i64> = row.try_get(4)?;
    let flow = FlowRow {
        record: FlowRecord {
            tenant: row.try_get(0)?,
            name: row.try_get(1)?,
            plugin: row.try_get(2)?,
            version: small(row, 3)?,
            previous_version: previous.and_then(|v| u32::try_from(v).ok()),
            settings: FlowSettings {
                status: StatusMap {
                    success: small(row, 6)?,
                    failure: small(row, 7)?,
                },
                fallback: parse_branch(&fallback),
                ..FlowSettings::default()
            },
            auth: UrlAuth {
                set_at_ms: row.try_get(15)?,
                ..UrlAuth::default()
            },
            secrets: Vec::new(),
            // Read from `canary` by `to_flow`.
            canary: None,
            updated_at_ms: row.try_get(11)?,
        },
        mode: row.try_get(5)?,
        limits: row.try_get(9)?,
        config: row.try_get(10)?,
        retry: row.try_get(12)?,
        auth_kind: row.try_get(13)?,
        auth_digest: row.try_get(14)?,
        hook: row.try_get(16)?,
        canary: row.try_get(17)?,
    };
    to_flow(flow)
}

fn version_not_found(plugin: &str, version: u32) -> StoreError {
    not_found(format!("version {version} of plugin {plugin:?}"))
}

impl PgStore {
    /// Lists each flow's secrets (keys only) into its record.
    fn attach_secrets(
        &self,
        client: &mut impl GenericClient,
        flows: &mut [FlowRecord],
    ) -> StoreResult<()> {
        let stmt = client.prepare(
            "SELECT key, set_at_ms FROM flow_secrets WHERE tenant = $1 AND flow = $2 ORDER BY key",
        )?;
        for flow in flows {
            flow.secrets = client
                .query(&stmt, &[&flow.tenant, &flow.name])?
                .iter()
                .map(|r| {
                    Ok(SecretInfo {
                        key: r.try_get(0)?,
                        set_at_ms: r.try_get(1)?,
                    })
                })
                .collect::<StoreResult<_>>()?;
        }
        Ok(())
    }

    fn flows_where(
        &self,
        filter: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> StoreResult<Vec<FlowRecord>> {
        let mut conn = self.conn()?;
        let columns = FLOW_COLUMNS
            .split(", ")
            .map(|c| format!("f.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut flows = conn
            .query(
                &format!(
                    "SELECT {columns} FROM flows f JOIN tenants t ON t.name = f.tenant \
                     WHERE {filter} ORDER BY f.tenant, f.name"
                ),
                params,
            )?
            .iter()
            .map(flow)
            .collect::<StoreResult<Vec<_>>>()?;
        self.attach_secrets(&mut *conn, &mut flows)?;
        Ok(flows)
    }
}

impl Store for PgStore {
    fn create_tenant(&self, name: &str, caps: &TenantCaps) -> StoreResult<Tenant> {
        let created_at_ms = now_ms();
        let inserted = in_tx(&mut *self.conn()?, |tx| {
            let n = tx.execute(
                "INSERT INTO tenants (name, disabled, caps, created_at_ms) \
                 VALUES ($1, false, $2, $3) ON CONFLICT DO NOTHING",
                &[&name, &json(caps)?, &created_at_ms],
            )?;
            announce(tx, name)?;
            Ok(n)
        })?;
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
        let row = self.conn()?.query_opt(
            "SELECT name, disabled, caps, created_at_ms FROM tenants WHERE name = $1",
            &[&name],
        )?;
        tenant(&row.ok_or_else(|| not_found(format!("tenant {name:?}")))?)
    }

    fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.conn()?
            .query(
                "SELECT name, disabled, caps, created_at_ms FROM tenants ORDER BY name",
                &[],
            )?
            .iter()
            .map(tenant)
            .collect()
    }

    fn update_tenant(
        &self,
        name: &str,
        disabled: Option<bool>,
        caps: Option<&TenantCaps>,
    ) -> StoreResult<Tenant> {
        let caps = caps.map(json).transpose()?;
        in_tx(&mut *self.conn()?, |tx| {
            tx.execute(
                "UPDATE tenants SET disabled = COALESCE($2, disabled), caps = COALESCE($3, caps) \
                 WHERE name = $1",
                &[&name, &disabled, &caps],
            )?;
            announce(tx, name)
        })?;
        self.get_tenant(name)
    }

    fn add_token(&self, tenant: &str, id: &str, hash: &str) -> StoreResult<TokenInfo> {
        let created_at_ms = now_ms();
        self.conn()?.execute(
            "INSERT INTO tokens (id, tenant, hash, created_at_ms) VALUES ($1, $2, $3, $4)",
            &[&id, &tenant, &hash, &created_at_ms],
        )?;
        Ok(TokenInfo {
            id: id.to_owned(),
            created_at_ms,
            revoked: false,
        })
    }

    fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenInfo>> {
        self.conn()?
            .query(
                "SELECT id, created_at_ms, revoked_at_ms IS NOT NULL FROM tokens \
                 WHERE tenant = $1 ORDER BY created_at_ms, id",
                &[&tenant],
            )?
            .iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get(0)?,
                    created_at_ms: r.try_get(1)?,
                    revoked: r.try_get(2)?,
                })
            })
            .collect()
    }

    fn revoke_token(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let changed = self.conn()?.execute(
            "UPDATE tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $3) \
             WHERE tenant = $1 AND id = $2",
            &[&tenant, &id, &now_ms()],
        )?;
        if changed == 0 {
            return Err(not_found(format!("token {id:?}")));
        }
        Ok(())
    }

    fn tenant_for_token(&self, hash: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn()?
            .query_opt(
                "SELECT tenant FROM tokens WHERE hash = $1 AND revoked_at_ms IS NULL",
                &[&hash],
            )?
            .map(|r| r.get(0)))
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
        let exports_json = json(&exports)?;
        in_tx(&mut *self.conn()?, |tx| {
            // Numbering is per plugin: two nodes uploading at once take turns on the tenant's
            // row, so each gets its own number.
            tx.execute(
                "SELECT 1 FROM tenants WHERE name = $1 FOR UPDATE",
                &[&tenant],
            )?;
            let latest: Option<i64> = tx
                .query_one(
                    "SELECT MAX(version) FROM versions WHERE tenant = $1 AND plugin = $2",
                    &[&tenant, &plugin],
                )?
                .get(0);
            let record = VersionRecord {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
                version: u32::try_from(latest.unwrap_or(0) + 1).unwrap_or(u32::MAX),
                sha256: sha256.to_owned(),
                size,
                world: world.to_owned(),
                exports: exports.to_vec(),
                uploaded_at_ms: now_ms(),
            };
            // The same bytes uploaded through two nodes at once make one version: the second
            // insert finds the first's and answers it.
            let inserted = tx.execute(
                &format!(
                    "INSERT INTO versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant, plugin, sha256) WHERE deleted_at_ms IS NULL DO NOTHING"
                ),
                &[
                    &record.tenant,
                    &record.plugin,
                    &big(record.version),
                    &record.sha256,
                    &big(record.size),
                    &record.world,
                    &exports_json,
                    &record.uploaded_at_ms,
                ],
            )?;
            if inserted == 0 {
                let row = tx.query_one(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM versions WHERE tenant = $1 AND plugin = $2 \
                         AND sha256 = $3 AND deleted_at_ms IS NULL"
                    ),
                    &[&tenant, &plugin, &sha256],
                )?;
                return version(&row);
            }
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&super::VERSIONS_CHANNEL, &sha256],
            )?;
            Ok(record)
        })
    }

    fn get_version(&self, tenant: &str, plugin: &str, v: u32) -> StoreResult<VersionRecord> {
        let row = self.conn()?.query_opt(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM versions \
                 WHERE tenant = $1 AND plugin = $2 AND version = $3 AND deleted_at_ms IS NULL"
            ),
            &[&tenant, &plugin, &big(v)],
        )?;
        version(&row.ok_or_else(|| version_not_found(plugin, v))?)
    }

    fn delete_version(&self, tenant: &str, plugin: &str, v: u32) -> StoreResult<VersionRecord> {
        in_tx(&mut *self.conn()?, |tx| {
            let row = tx.query_opt(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = $1 AND plugin = $2 AND version = $3 \
                     AND deleted_at_ms IS NULL FOR UPDATE"
                ),
                &[&tenant, &plugin, &big(v)],
            )?;
            let record = version(&row.ok_or_else(|| version_not_found(plugin, v))?)?;
            let user: Option<String> = tx
                .query_opt(
                    "SELECT name FROM flows WHERE tenant = $1 AND plugin = $2 \
                     AND (version = $3 OR previous_version = $3 \
                     OR (canary::jsonb ->> 'version')::BIGINT = $3) ORDER BY name LIMIT 1",
                    &[&tenant, &plugin, &big(v)],
                )?
                .map(|r| r.get(0));
            if let Some(flow) = user {
                return Err(StoreError::InUse {
                    what: format!(
                        "version {v} of plugin {plugin:?} is used by flow {flow:?} (as its \
                         version, its canary, or the one it would roll back to)"
                    ),
                });
            }
            tx.execute(
                "UPDATE versions SET deleted_at_ms = $4 \
                 WHERE tenant = $1 AND plugin = $2 AND version = $3",
                &[&tenant, &plugin, &big(v), &now_ms()],
            )?;
            announce(tx, tenant)?;
            Ok(record)
        })
    }

    fn version_usage(&self, tenant: &str) -> StoreResult<(u32, u64)> {
        let row = self.conn()?.query_one(
            "SELECT COUNT(*), COALESCE(SUM(size), 0)::BIGINT FROM versions \
             WHERE tenant = $1 AND deleted_at_ms IS NULL",
            &[&tenant],
        )?;
        Ok((small(&row, 0)?, small(&row, 1)?))
    }

    fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        Ok(self
            .conn()?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM versions WHERE sha256 = $1 AND deleted_at_ms IS NULL)",
                &[&sha256],
            )?
            .get(0))
    }

    fn delete_artifact_checksum(&self, key: &str) -> StoreResult<()> {
        self.conn()?
            .execute("DELETE FROM artifacts WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn list_versions(&self, tenant: &str, plugin: Option<&str>) -> StoreResult<Vec<VersionRecord>> {
        self.conn()?
            .query(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = $1 AND ($2::TEXT IS NULL OR plugin = $2) \
                     AND deleted_at_ms IS NULL ORDER BY plugin, version"
                ),
                &[&tenant, &plugin],
            )?
            .iter()
            .map(version)
            .collect()
    }

    fn find_version(
        &self,
        tenant: &str,
        plugin: &str,
        sha256: &str,
    ) -> StoreResult<Option<VersionRecord>> {
        self.conn()?
            .query_opt(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM versions \
                     WHERE tenant = $1 AND plugin = $2 AND sha256 = $3 \
                     AND deleted_at_ms IS NULL ORDER BY version LIMIT 1"
                ),
                &[&tenant, &plugin, &sha256],
            )?
            .as_ref()
            .map(version)
            .transpose()
    }

    fn put_flow(&self, f: &FlowRecord) -> StoreResult<bool> {
        let s = &f.settings;
        let (limits, config, retry) = (json(&s.limits)?, json(&s.config)?, json(&s.retry)?);
        let hook = json(&HookColumn::of(s))?;
        let canary = f.canary.as_ref().map(json).transpose()?;
        in_tx(&mut *self.conn()?, |tx| {
            let existed: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM flows WHERE tenant = $1 AND name = $2)",
                    &[&f.tenant, &f.name],
                )?
                .get(0);
            tx.execute(
                &format!(
                    "INSERT INTO flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                     ON CONFLICT (tenant, name) DO UPDATE SET plugin = EXCLUDED.plugin, \
                     version = EXCLUDED.version, previous_version = EXCLUDED.previous_version, \
                     mode = EXCLUDED.mode, status_success = EXCLUDED.status_success, \
                     status_failure = EXCLUDED.status_failure, fallback = EXCLUDED.fallback, \
                     limits = EXCLUDED.limits, config = EXCLUDED.config, \
                     updated_at_ms = EXCLUDED.updated_at_ms, retry = EXCLUDED.retry, \
                     auth_kind = EXCLUDED.auth_kind, auth_digest = EXCLUDED.auth_digest, \
                     auth_set_at_ms = EXCLUDED.auth_set_at_ms, hook = EXCLUDED.hook, \
                     canary = EXCLUDED.canary"
                ),
                &[
                    &f.tenant,
                    &f.name,
                    &f.plugin,
                    &big(f.version),
                    &f.previous_version.map(big),
                    &s.mode.as_str(),
                    &i64::from(s.status.success),
                    &i64::from(s.status.failure),
                    &s.fallback.as_str(),
                    &limits,
                    &config,
                    &f.updated_at_ms,
                    &retry,
                    &f.auth.kind.as_str(),
                    &f.auth.digest_hex(),
                    &f.auth.set_at_ms,
                    &hook,
                    &canary,
                ],
            )?;
            announce(tx, &f.tenant)?;
            Ok(!existed)
        })
    }

    fn get_flow(&self, tenant: &str, name: &str) -> StoreResult<FlowRecord> {
        let mut conn = self.conn()?;
        let row = conn.query_opt(
            &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE tenant = $1 AND name = $2"),
            &[&tenant, &name],
        )?;
        let mut record = flow(&row.ok_or_else(|| not_found(format!("flow {name:?}")))?)?;
        self.attach_secrets(&mut *conn, std::slice::from_mut(&mut record))?;
        Ok(record)
    }

    fn list_flows(&self, tenant: &str) -> StoreResult<Vec<FlowRecord>> {
        self.flows_where("f.tenant = $1", &[&tenant])
    }

    fn list_live_flows(&self) -> StoreResult<Vec<FlowRecord>> {
        self.flows_where("NOT t.disabled", &[])
    }

    fn delete_flow(&self, tenant: &str, name: &str) -> StoreResult<()> {
        in_tx(&mut *self.conn()?, |tx| {
            let changed = tx.execute(
                "DELETE FROM flows WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )?;
            if changed == 0 {
                return Err(not_found(format!("flow {name:?}")));
            }
            tx.execute(
                "DELETE FROM flow_secrets WHERE tenant = $1 AND flow = $2",
                &[&tenant, &name],
            )?;
            announce(tx, tenant)
        })
    }

    fn put_flow_secret(
        &self,
        tenant: &str,
        flow: &str,
        key: &str,
        sealed: &[u8],
        at_ms: i64,
    ) -> StoreResult<SecretInfo> {
        in_tx(&mut *self.conn()?, |tx| {
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM flows WHERE tenant = $1 AND name = $2 FOR UPDATE",
                    &[&tenant, &flow],
                )?
                .is_some();
            if !exists {
                return Err(not_found(format!("flow {flow:?}")));
            }
            tx.execute(
                "INSERT INTO flow_secrets (tenant, flow, key, sealed, set_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, flow, key) \
                 DO UPDATE SET sealed = EXCLUDED.sealed, set_at_ms = EXCLUDED.set_at_ms",
                &[&tenant, &flow, &key, &sealed, &at_ms],
            )?;
            announce(tx, tenant)
        })?;
        Ok(SecretInfo {
            key: key.to_owned(),
            set_at_ms: at_ms,
        })
    }

    fn delete_flow_secret(&self, tenant: &str, flow: &str, key: &str) -> StoreResult<()> {
        in_tx(&mut *self.conn()?, |tx| {
            let changed = tx.execute(
                "DELETE FROM flow_secrets WHERE tenant = $1 AND flow = $2 AND key = $3",
                &[&tenant, &flow, &key],
            )?;
            if changed == 0 {
                return Err(not_found(format!("secret {key:?} of flow {flow:?}")));
            }
            announce(tx, tenant)
        })
    }

    fn sealed_secrets(&self, flow: Option<(&str, &str)>) -> StoreResult<Vec<SealedSecret>> {
        let (tenant, name) = flow.unzip();
        self.conn()?
            .query(
                "SELECT tenant, flow, key, sealed FROM flow_secrets \
                 WHERE ($1::TEXT IS NULL OR (tenant = $1 AND flow = $2)) \
                 ORDER BY tenant, flow, key",
                &[&tenant, &name],
            )?
            .iter()
            .map(|r| {
                Ok(SealedSecret {
                    tenant: r.try_get(0)?,
                    flow: r.try_get(1)?,
                    key: r.try_get(2)?,
                    sealed: r.try_get(3)?,
                })
            })
            .collect()
    }

    fn query_decisions(
        &self,
        tenant: &str,
        filter: &DecisionFilter,
    ) -> StoreResult<Vec<DecisionRecord>> {
        let limit = i64::from(filter.limit.clamp(1, MAX_PAGE));
        let _read = self.record_reads.take();
        self.conn()?
            .query(
                "SELECT id, tenant, flow, plugin, version, call_sid, branch, outcome, reason, \
                 error, fuel_used, elapsed_us, log, log_dropped, at_ms, answer, query, replay \
                 FROM decisions \
                 WHERE tenant = $1 AND ($2::TEXT IS NULL OR flow = $2) \
                 AND ($3::TEXT IS NULL OR call_sid = $3) AND ($4::TEXT IS NULL OR outcome = $4) \
                 AND ($5::BIGINT IS NULL OR at_ms >= $5) AND ($6::BIGINT IS NULL OR at_ms < $6) \
                 AND ($7::BIGINT IS NULL OR id < $7) ORDER BY id DESC LIMIT $8",
                &[
                    &tenant,
                    &filter.flow,
                    &filter.call_sid.as_deref().map(pg_text),
                    &filter.outcome.as_deref().map(pg_text),
                    &filter.since_ms,
                    &filter.until_ms,
                    &filter.before_id,
                    &limit,
                ],
            )?
            .iter()
            .map(decision)
            .collect()
    }

    fn decision_points(
        &self,
        tenant: &str,
        flow: &str,
        since_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DecisionPoint>> {
        // Newest first through the (tenant, flow, id) index, so that the limit keeps the newest.
        // `at_ms` has no index: the scan is bounded below by the newest record older than the
        // window by more than ten minutes (ids follow the order records were written in, a few
        // milliseconds after their call, on whichever node), found by a short backward scan.
        let _read = self.record_reads.take();
        let rows = self.conn()?.query(
            "SELECT at_ms, version, outcome, elapsed_us FROM decisions \
             WHERE tenant = $1 AND flow = $2 AND at_ms >= $3 AND id > COALESCE(( \
               SELECT id FROM decisions WHERE tenant = $1 AND flow = $2 AND at_ms < $3 - $5 \
               ORDER BY id DESC LIMIT 1), 0) \
             ORDER BY id DESC LIMIT $4",
            &[
                &tenant,
                &flow,
                &since_ms,
                &i64::from(limit),
                &LATE_RECORD_MS,
            ],
        )?;
        let mut points = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, small(r, 1)?, r.try_get(2)?, small(r, 3)?)))
            .collect::<StoreResult<Vec<DecisionPoint>>>()?;
        points.reverse();
        Ok(points)
    }

    fn artifact_checksum(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn()?
            .query_opt("SELECT checksum FROM artifacts WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn put_artifact_checksum(&self, key: &str, checksum: &str) -> StoreResult<()> {
        self.conn()?.execute(
            "INSERT INTO artifacts (key, checksum) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET checksum = EXCLUDED.checksum",
            &[&key, &checksum],
        )?;
        Ok(())
    }

    fn put_blob(&self, sha256: &str, bytes: &[u8]) -> StoreResult<bool> {
        self.conn()?.execute(
            "INSERT INTO blobs (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&sha256, &bytes],
        )?;
        Ok(true)
    }

    fn blob(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn()?
            .query_opt("SELECT bytes FROM blobs WHERE sha256 = $1", &[&sha256])?
            .map(|r| r.get(0)))
    }

    fn delete_blob(&self, sha256: &str) -> StoreResult<()> {
        self.conn()?.execute(
            // Another node may have uploaded the same bytes again meanwhile.
            "DELETE FROM blobs WHERE sha256 = $1 AND NOT EXISTS \
                 (SELECT 1 FROM versions WHERE sha256 = $1 AND deleted_at_ms IS NULL)",
            &[&sha256],
        )?;
        Ok(())
    }

    fn ping(&self) -> StoreResult<()> {
        self.conn()?.simple_query("SELECT 1")?;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }
}
