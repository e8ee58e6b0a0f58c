//! Rows to records and back: the columns of each table and their mapping.

use rusqlite::Row;

use super::from_json;
use crate::flow::{FlowMode, FlowSettings, StatusMap, UrlAuth, UrlAuthKind};
use crate::sandbox::Branch;
use crate::store::{DecisionRecord, FlowRecord, StoreError, StoreResult, Tenant, VersionRecord};

pub(in crate::store) fn branch_str(b: Branch) -> &'static str {
    b.as_str()
}

pub(in crate::store) fn parse_branch(s: &str) -> Branch {
    if s == "success" {
        Branch::Success
    } else {
        Branch::Failure
    }
}

pub(in crate::store) fn tenant_row(row: &Row<'_>) -> rusqlite::Result<(String, bool, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

pub(in crate::store) fn to_tenant(
    (name, disabled, caps, created_at_ms): (String, bool, String, i64),
) -> StoreResult<Tenant> {
    Ok(Tenant {
        name,
        disabled,
        caps: from_json(&caps)?,
        created_at_ms,
    })
}

pub(in crate::store) const VERSION_COLUMNS: &str =
    "tenant, plugin, version, sha256, size, world, exports, uploaded_at_ms";

pub(in crate::store) fn version_row(row: &Row<'_>) -> rusqlite::Result<(VersionRecord, String)> {
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

pub(in crate::store) fn to_version(
    (mut v, exports): (VersionRecord, String),
) -> StoreResult<VersionRecord> {
    v.exports = from_json(&exports)?;
    Ok(v)
}

pub(in crate::store) const FLOW_COLUMNS: &str = "tenant, name, plugin, version, previous_version, mode, \
    status_success, status_failure, fallback, limits, config, updated_at_ms, retry, auth_kind, \
    auth_digest, auth_set_at_ms, hook, canary";

pub(in crate::store) struct FlowRow {
    pub(in crate::store) record: FlowRecord,
    pub(in crate::store) mode: String,
    pub(in crate::store) limits: String,
    pub(in crate::store) config: String,
    pub(in crate::store) retry: String,
    pub(in crate::store) auth_kind: String,
    pub(in crate::store) auth_digest: Option<String>,
    pub(in crate::store) hook: String,
    pub(in crate::store) canary: Option<String>,
}

/// A flow's hook and its fallback answers besides the branch, and the key-value stores it grants:
/// the `hook` column, as JSON (`{}` for a flow stored before hooks existed: the Passthru hook).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(in crate::store) struct HookColumn {
    pub(in crate::store) hook: crate::flow::Hook,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::store) fallback_case: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::store) fallback_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::store) fallback_connect: Option<crate::answer::ConnectPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::store) fallback_gather: Option<crate::answer::GatherPlan>,
    /// Kept here too (since 0.1.3), so that no migration is needed for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(in crate::store) kv_stores: Vec<String>,
    /// Kept in this JSON column (it holds the flow's other optional settings too), so that no
    /// migration is needed for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(in crate::store) outbound_hosts: Vec<String>,
}

impl HookColumn {
    pub(in crate::store) fn of(settings: &FlowSettings) -> Self {
        Self {
            hook: settings.hook,
            fallback_case: settings.fallback_case.clone(),
            fallback_text: settings.fallback_text.clone(),
            fallback_connect: settings.fallback_connect.clone(),
            fallback_gather: settings.fallback_gather.clone(),
            kv_stores: settings.kv_stores.clone(),
            outbound_hosts: settings.outbound_hosts.clone(),
        }
    }
}

pub(in crate::store) fn flow_row(row: &Row<'_>) -> rusqlite::Result<FlowRow> {
    let fallback: String = row.get(8)?;
    Ok(FlowRow {
        record: FlowRecord {
            tenant: row.get(0)?,
            name: row.get(1)?,
            plugin: row.get(2)?,
            version: row.get(3)?,
            previous_version: row.get(4)?,
            settings: FlowSettings {
                status: StatusMap {
                    success: row.get(6)?,
                    failure: row.get(7)?,
                },
                fallback: parse_branch(&fallback),
                ..FlowSettings::default()
            },
            auth: UrlAuth {
                set_at_ms: row.get(15)?,
                ..UrlAuth::default()
            },
            // Filled from `flow_secrets` by the caller.
            secrets: Vec::new(),
            // Read from `canary` by `to_flow`.
            canary: None,
            updated_at_ms: row.get(11)?,
        },
        mode: row.get(5)?,
        limits: row.get(9)?,
        config: row.get(10)?,
        retry: row.get(12)?,
        auth_kind: row.get(13)?,
        auth_digest: row.get(14)?,
        hook: row.get(16)?,
        canary: row.get(17)?,
    })
}

pub(in crate::store) fn to_flow(row: FlowRow) -> StoreResult<FlowRecord> {
    let mut record = row.record;
    let settings = &mut record.settings;
    settings.mode = match row.mode.as_str() {
        "sync" => FlowMode::Sync,
        "async" => FlowMode::Async,
        other => {
            return Err(StoreError::Unknown {
                what: format!("flow {:?} in mode {other:?}", record.name),
            });
        }
    };
    settings.limits = from_json(&row.limits)?;
    settings.config = from_json(&row.config)?;
    settings.retry = from_json(&row.retry)?;
    let hook: HookColumn = from_json(&row.hook)?;
    settings.hook = hook.hook;
    settings.fallback_case = hook.fallback_case;
    settings.fallback_text = hook.fallback_text;
    settings.fallback_connect = hook.fallback_connect;
    settings.fallback_gather = hook.fallback_gather;
    settings.kv_stores = hook.kv_stores;
    settings.outbound_hosts = hook.outbound_hosts;
    record.canary = row.canary.as_deref().map(from_json).transpose()?;
    record.auth.kind = UrlAuthKind::parse(&row.auth_kind).ok_or_else(|| StoreError::Unknown {
        what: format!("flow {:?} with URL auth {:?}", record.name, row.auth_kind),
    })?;
    record.auth.digest = match (record.auth.kind, row.auth_digest.as_deref()) {
        (UrlAuthKind::None, _) => None,
        (_, Some(hex)) => {
            Some(
                UrlAuth::digest_from_hex(hex).ok_or_else(|| StoreError::Unknown {
                    what: format!("flow {:?} with a malformed URL auth digest", record.name),
                })?,
            )
        }
        // A protected flow without a digest admits nothing, rather than everything.
        (_, None) => None,
    };
    Ok(record)
}

pub(in crate::store) fn collect<T, R>(
    rows: impl Iterator<Item = rusqlite::Result<R>>,
    convert: impl Fn(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.map(|r| convert(r?)).collect()
}

/// A decision's row: the record, its `log` column and its `replay` column, both JSON.
pub(in crate::store) type DecisionRow = (DecisionRecord, String, Option<String>);

pub(in crate::store) fn decision_row(row: &Row<'_>) -> rusqlite::Result<DecisionRow> {
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
            outbound: Vec::new(),
            at_ms: row.get(14)?,
            answer: row.get(15)?,
            query: row.get(16)?,
            // Read from the `replay` column by the caller.
            replay: None,
        },
        row.get(12)?,
        row.get(17)?,
    ))
}
