//! Persistence behind one trait: tenants and their tokens, plugin versions, flows and decision
//! records.
//!
//! The embedded default is SQLite in the data directory ([`SqliteStore`]); a server database for
//! several nodes can implement the same trait. Every method is blocking: callers on the async
//! runtime use `spawn_blocking`, and the request path never calls the store at all (decision
//! records leave it through a channel, see `crate::records`).

pub mod postgres;
pub mod queue;
mod slots;
pub(crate) mod sqlite;

use serde::{Deserialize, Serialize};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::flow::{FlowSettings, Name, UrlAuth};
use crate::kv::{KvCaps, KvSink};
use crate::sandbox::{Branch, Limits, LogLine};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    /// The object is still used by another (a version by a flow).
    #[error("{what}")]
    InUse { what: String },
    /// The database refused or failed a statement.
    #[error("the database failed")]
    Database(#[from] rusqlite::Error),
    /// The PostgreSQL server refused or failed a statement, or the connection broke.
    #[error("the database failed")]
    Postgres(#[from] ::postgres::Error),
    /// No connection to the PostgreSQL server could be had in time.
    #[error("cannot reach the database")]
    Pool(#[from] r2d2::Error),
    /// A value the store wrote earlier does not read back (a column holding JSON).
    #[error("a stored JSON value is invalid")]
    Corrupt(#[from] serde_json::Error),
    /// A page of decision records could not be compressed, or one written earlier does not
    /// decompress.
    #[error("a page of decision records could not be written or read back")]
    Page(#[source] std::io::Error),
    /// The store's files or folders.
    #[error("cannot use {path}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A value in the database that this version of passthru does not know.
    #[error("the database holds {what}, which this version does not know")]
    Unknown { what: String },
    /// The database was migrated by a newer passthru.
    #[error(
        "the {what} is at schema version {found}, newer than this binary knows ({known}): \
         upgrade passthru"
    )]
    NewerSchema {
        what: &'static str,
        found: usize,
        known: usize,
    },
    /// A background thread of the store could not start.
    #[error("cannot start the {what} thread")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What an operator allows a tenant. An omitted cap takes its default. The server answers 422
/// unless `max_plugin_bytes`, `max_fuel`, `max_flows`, `max_versions` and `max_stored_bytes` are
/// at least 1, `max_deadline_ms` is 1 to 10000 and `max_memory_mb` is 1 to 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TenantCaps {
    /// The largest upload, in bytes (the server's `max_upload_bytes` applies too).
    #[schema(minimum = 1)]
    pub max_plugin_bytes: u64,
    /// The most fuel a flow may give a call.
    #[schema(minimum = 1)]
    pub max_fuel: u64,
    /// The longest deadline a flow may set.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_deadline_ms: u64,
    /// The most memory a flow may give a call.
    #[schema(minimum = 1, maximum = 1024)]
    pub max_memory_mb: u64,
    /// How many flows the tenant may have.
    #[schema(minimum = 1)]
    pub max_flows: u32,
    /// How many plugin versions the tenant may keep, all plugins together.
    #[schema(minimum = 1)]
    pub max_versions: u32,
    /// How many bytes of plugin versions the tenant may keep, all together.
    #[schema(minimum = 1)]
    pub max_stored_bytes: u64,
    /// How many of the tenant's plugin calls may run at the same moment, all its flows together;
    /// past it, its calls answer their fallback (`overloaded`) while other tenants' calls run.
    /// 0, the default: the server's `max_calls_per_tenant`.
    pub max_concurrent_calls: u32,
    /// The longest key of the tenant's key-value data, in bytes.
    #[schema(minimum = 1, maximum = 2048)]
    pub max_kv_key_bytes: u32,
    /// The largest value of the tenant's key-value data, in bytes.
    #[schema(minimum = 1, maximum = 196608)]
    pub max_kv_value_bytes: u32,
    /// How many keys the tenant may keep, all its stores together.
    #[schema(minimum = 1)]
    pub max_kv_keys: u64,
    /// How many bytes of keys and values the tenant may keep, all its stores together. Every
    /// node holds them in memory.
    #[schema(minimum = 1)]
    pub max_kv_bytes: u64,
}

impl Default for TenantCaps {
    fn default() -> Self {
        let kv = KvCaps::default();
        Self {
            max_plugin_bytes: 64 << 20,
            max_fuel: 1_000_000_000,
            max_deadline_ms: 1_000,
            max_memory_mb: 256,
            max_flows: 100,
            max_versions: 1000,
            max_stored_bytes: 1 << 30,
            max_concurrent_calls: 0,
            max_kv_key_bytes: kv.max_key_bytes as u32,
            max_kv_value_bytes: kv.max_value_bytes as u32,
            max_kv_keys: kv.max_keys,
            max_kv_bytes: kv.max_bytes,
        }
    }
}

impl TenantCaps {
    /// The caps of the tenant's key-value data. A key cap stored before [`crate::kv::MAX_KEY_BYTES`]
    /// existed counts as that much.
    pub fn kv(&self) -> KvCaps {
        KvCaps {
            max_key_bytes: (self.max_kv_key_bytes as usize).min(crate::kv::MAX_KEY_BYTES),
            max_value_bytes: self.max_kv_value_bytes as usize,
            max_keys: self.max_kv_keys,
            max_bytes: self.max_kv_bytes,
        }
    }
}

impl TenantCaps {
    /// Checks a flow's limits against these caps.
    ///
    /// # Errors
    /// A message naming the first limit above its cap.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        let over = |what: &str, value: u64, cap: u64| {
            Err(format!(
                "{what} {value} is above this tenant's cap of {cap}"
            ))
        };
        if limits.fuel > self.max_fuel {
            return over("fuel", limits.fuel, self.max_fuel);
        }
        if limits.deadline_ms > self.max_deadline_ms {
            return over("deadline_ms", limits.deadline_ms, self.max_deadline_ms);
        }
        if limits.memory_mb > self.max_memory_mb {
            return over("memory_mb", limits.memory_mb, self.max_memory_mb);
        }
        Ok(())
    }
}

/// A tenant: its name, whether it is disabled, and its caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    #[schema(value_type = Name)]
    pub name: String,
    /// A disabled tenant's flows answer 404 and its tokens 403.
    pub disabled: bool,
    pub caps: TenantCaps,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// A tenant's token as listed: its id, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// What the token is listed and revoked under.
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// A revoked token no longer works.
    pub revoked: bool,
}

/// An uploaded, validated, immutable plugin version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VersionRecord {
    pub tenant: String,
    pub plugin: String,
    /// Numbered 1, 2, ... per plugin.
    #[schema(minimum = 1)]
    pub version: u32,
    /// SHA-256 of the component, hex: the key of its blob and its compiled artifact.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// The component's size in bytes.
    pub size: u64,
    /// The world the component targets, from its exports: `decider` (`decide`), `recorder`
    /// (`record`) or `plugin` (both).
    #[schema(examples(
        "passthru:plugin/decider@0.1.1",
        "passthru:plugin/recorder@0.1.1",
        "passthru:plugin/plugin@0.1.1"
    ))]
    pub world: String,
    /// The component's export names: `decide`, `record`, and any other (componentize-py adds
    /// `init`), which the host ignores.
    #[schema(examples(json!(["decide"]), json!(["record"])))]
    pub exports: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub uploaded_at_ms: i64,
}

/// A flow: a plugin version bound to a name of the tenant, with how it is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FlowRecord {
    pub tenant: String,
    pub name: String,
    pub plugin: String,
    /// The active version.
    pub version: u32,
    /// The version active before it, what a rollback returns to; null when there is nothing to
    /// roll back to.
    pub previous_version: Option<u32>,
    #[serde(flatten)]
    pub settings: FlowSettings,
    /// How its Passthru URL is authenticated (set by `POST /v1/flows/{flow}/auth`; the secret is
    /// never shown again).
    pub auth: UrlAuth,
    /// The keys of its secrets (set by `PUT /v1/flows/{flow}/secrets/{key}`): their values are
    /// never shown, only that they are set. The plugin reads them through `config`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretInfo>,
    /// The version answering a share of the flow's calls besides the active one (set by `PUT
    /// /v1/flows/{flow}/canary`); null when there is none.
    pub canary: Option<Canary>,
    /// Milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// A canary: another version of the flow's plugin answering `percent` of its calls, chosen by a
/// stable hash of each call's `CallSid` (see `crate::flow::canary`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// A version of the flow's plugin, not the active one.
    #[schema(minimum = 1)]
    pub version: u32,
    /// The share of calls it answers: more than 0, less than 100 (steps of 0.01).
    #[schema(exclusive_minimum = 0, exclusive_maximum = 100, examples(10))]
    pub percent: f64,
}

// A canary's percent is checked finite before it is stored, so equality is total.
impl Eq for Canary {}

/// What a plugin saw of the clock and of randomness in one call, kept with its decision record so
/// that the call can be run again exactly (`passthru run --replay`, backtests): given the same
/// query, config and these, a version answers the same and uses the same fuel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replay {
    /// The seed of every random source of the call (`wasi:random`'s secure and insecure
    /// generators): 64 hex digits. Whoever reads the record can recompute the call's random
    /// bytes, so a plugin must not use them for secrets it keeps from its tenant.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub seed: String,
    /// Where the call's clocks started, in milliseconds since the Unix epoch: its wall clock
    /// reads this plus 1 µs per earlier clock read of the call, and its monotonic clock the same
    /// in nanoseconds.
    pub clock_ms: i64,
    /// The export called: `decide`, `record`, `select`, `greeting`, `sms`, `connect` or `gather`.
    pub export: String,
    /// The fuel the call was given.
    pub fuel: u64,
}

/// A flow's secret as listed: its key and when it was set, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub set_at_ms: i64,
}

/// A secret as stored: sealed with the operator's key (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub tenant: String,
    pub flow: String,
    pub key: String,
    pub sealed: Vec<u8>,
}

/// What one Passthru call of a sync flow, or one attempt of an async flow's event, did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    /// Assigned by the store; what `cursor` pages by.
    #[serde(default)]
    pub id: i64,
    pub tenant: String,
    pub flow: String,
    pub plugin: String,
    pub version: u32,
    /// Exotel's `CallSid`, when the request had one.
    pub call_sid: Option<String>,
    /// Sync flows: the branch answered, the plugin's or the fallback. Async flows: `success`
    /// when the attempt handled the event, else `failure`.
    pub branch: Branch,
    /// Sync flows: `decided`, or the failure kind when the fallback was answered. Async flows:
    /// `recorded`, or the failure kind of the attempt (`plugin_error` when `record` returned an
    /// error, `flow_unavailable` when the flow was gone).
    #[schema(examples(
        "decided",
        "out_of_fuel",
        "deadline",
        "memory_limit",
        "trap",
        "invalid_component",
        "overloaded",
        "recorded",
        "plugin_error",
        "flow_unavailable"
    ))]
    pub outcome: String,
    /// Sync flows: the plugin's reason, if it gave one. Async flows: `event N attempt M`.
    pub reason: Option<String>,
    /// Flows whose hook is not `passthru`: what was answered besides the branch, the plugin's
    /// or the fallback's: the Switchcase case, the text (its first 256 bytes), or the plan in a
    /// few words (`dial +9198..., +9198... (3 at once)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// What went wrong, when the plugin failed.
    pub error: Option<String>,
    pub fuel_used: u64,
    /// Microseconds the call took.
    pub elapsed_us: u64,
    /// What the plugin logged, and its stdout and stderr.
    pub log: Vec<LogLine>,
    /// Log lines dropped past the per-call caps.
    pub log_dropped: u32,
    /// The outbound HTTP requests the plugin sent or was refused, in order: method, host,
    /// status or error, body bytes each way and milliseconds; never headers or bodies. Left out
    /// when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<crate::sandbox::outbound::OutboundRecord>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The Passthru query string as received (at most the server's `max_query_bytes`); null in
    /// records written before it was kept.
    #[serde(default)]
    pub query: Option<String>,
    /// What the plugin saw of the clock and randomness: with `query`, what replays the call.
    #[serde(default)]
    pub replay: Option<Replay>,
}

/// Which decision records to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    pub flow: Option<String>,
    pub call_sid: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only records with a smaller id: the cursor of the previous page.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// One decision as the stats aggregate it: (at_ms, version, outcome, elapsed_us).
pub type DecisionPoint = (i64, u32, String, u64);

/// Where decision records go: the part of the store the record writer uses.
pub trait RecordSink: Send + Sync + 'static {
    /// Writes records in one transaction.
    fn insert_decisions(&self, records: &[DecisionRecord]) -> StoreResult<()>;
    /// Deletes records older than `before_ms`; returns how many.
    fn prune_decisions(&self, before_ms: i64) -> StoreResult<u64>;
}

/// The persistence the server needs (the key-value writer's part is [`KvSink`]). Blocking; never called on the request path.
pub trait Store: RecordSink + KvSink {
    fn create_tenant(&self, name: &str, caps: &TenantCaps) -> StoreResult<Tenant>;
    fn get_tenant(&self, name: &str) -> StoreResult<Tenant>;
    fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    fn update_tenant(
        &self,
        name: &str,
        disabled: Option<bool>,
        caps: Option<&TenantCaps>,
    ) -> StoreResult<Tenant>;

    /// Stores a token's hash; the token itself is never stored.
    fn add_token(&self, tenant: &str, id: &str, hash: &str) -> StoreResult<TokenInfo>;
    fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenInfo>>;
    fn revoke_token(&self, tenant: &str, id: &str) -> StoreResult<()>;
    /// The tenant a live (not revoked) token hash belongs to.
    fn tenant_for_token(&self, hash: &str) -> StoreResult<Option<String>>;

    /// Records a new version of `plugin`, numbered one past its latest.
    fn add_version(
        &self,
        tenant: &str,
        plugin: &str,
        sha256: &str,
        size: u64,
        world: &str,
        exports: &[String],
    ) -> StoreResult<VersionRecord>;
    fn get_version(&self, tenant: &str, plugin: &str, version: u32) -> StoreResult<VersionRecord>;
    /// Deletes a version that no flow uses, as its version, its canary or the one it would roll
    /// back to ([`StoreError::InUse`] otherwise). Its number is never given to another version.
    fn delete_version(
        &self,
        tenant: &str,
        plugin: &str,
        version: u32,
    ) -> StoreResult<VersionRecord>;
    /// The tenant's versions: how many, and their bytes together.
    fn version_usage(&self, tenant: &str) -> StoreResult<(u32, u64)>;
    /// Whether any version of any tenant has this content.
    fn blob_in_use(&self, sha256: &str) -> StoreResult<bool>;
    /// Forgets a compiled artifact's checksum.
    fn delete_artifact_checksum(&self, key: &str) -> StoreResult<()>;
    /// Every version of a tenant's plugins (of one plugin, if given), oldest first.
    fn list_versions(&self, tenant: &str, plugin: Option<&str>) -> StoreResult<Vec<VersionRecord>>;
    /// The version of `plugin` with this content, if one was uploaded already.
    fn find_version(
        &self,
        tenant: &str,
        plugin: &str,
        sha256: &str,
    ) -> StoreResult<Option<VersionRecord>>;

    /// Creates or replaces a flow. Returns whether it was created.
    fn put_flow(&self, flow: &FlowRecord) -> StoreResult<bool>;
    fn get_flow(&self, tenant: &str, name: &str) -> StoreResult<FlowRecord>;
    fn list_flows(&self, tenant: &str) -> StoreResult<Vec<FlowRecord>>;
    /// Every flow of every enabled tenant: what the server serves at start.
    fn list_live_flows(&self) -> StoreResult<Vec<FlowRecord>>;
    /// Deletes a flow and its secrets.
    fn delete_flow(&self, tenant: &str, name: &str) -> StoreResult<()>;

    /// Sets (or replaces) a secret of an existing flow.
    fn put_flow_secret(
        &self,
        tenant: &str,
        flow: &str,
        key: &str,
        sealed: &[u8],
        at_ms: i64,
    ) -> StoreResult<SecretInfo>;
    fn delete_flow_secret(&self, tenant: &str, flow: &str, key: &str) -> StoreResult<()>;
    /// The sealed secrets of one flow, or of every flow when `flow` is `None`.
    fn sealed_secrets(&self, flow: Option<(&str, &str)>) -> StoreResult<Vec<SealedSecret>>;

    fn query_decisions(
        &self,
        tenant: &str,
        filter: &DecisionFilter,
    ) -> StoreResult<Vec<DecisionRecord>>;
    /// (at_ms, version, outcome, elapsed_us) of a flow's decisions since `since_ms`, oldest
    /// first, at most `limit`: the newest `limit` when there are more. Raw points, so that
    /// every backend shares the aggregation into per-minute figures (`GET /v1/flows/{flow}/stats`).
    ///
    /// The default reads whole records a page at a time ([`decision_points_by_pages`]); a
    /// backend overrides it with a cheaper read of these four fields (SQLite decodes them from
    /// its pages, PostgreSQL queries the columns), and both stop their scan at the first record
    /// timed more than ten minutes before the window, rather than read every record the flow
    /// keeps.
    fn decision_points(
        &self,
        tenant: &str,
        flow: &str,
        since_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DecisionPoint>> {
        decision_points_by_pages(self, tenant, flow, since_ms, limit)
    }
    /// The checksum recorded for a compiled artifact, if one was stored.
    fn artifact_checksum(&self, key: &str) -> StoreResult<Option<String>>;
    fn put_artifact_checksum(&self, key: &str, checksum: &str) -> StoreResult<()>;

    /// Keeps a component's bytes where every node reads them: `false` when this store leaves
    /// them to the data directory (the embedded store does: one node, one disk).
    fn put_blob(&self, _sha256: &str, _bytes: &[u8]) -> StoreResult<bool> {
        Ok(false)
    }
    /// A component's bytes kept by [`Store::put_blob`], if this store keeps them.
    fn blob(&self, _sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Forgets a component's bytes kept by [`Store::put_blob`].
    fn delete_blob(&self, _sha256: &str) -> StoreResult<()> {
        Ok(())
    }
    /// Whether the database answers now: the readiness check.
    fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Whether several nodes share this store, so that changes made by others must be watched.
    fn shared(&self) -> bool {
        false
    }
}

/// [`Store::decision_points`] from [`Store::query_decisions`], newest page first: correct on any
/// store, though it reads the records' logs too.
pub fn decision_points_by_pages<S: Store + ?Sized>(
    store: &S,
    tenant: &str,
    flow: &str,
    since_ms: i64,
    limit: u32,
) -> StoreResult<Vec<DecisionPoint>> {
    /// The page size every store serves (the SQLite store's `MAX_PAGE`).
    const PAGE: u32 = 1000;
    let mut points = Vec::new();
    let mut before_id = None;
    while points.len() < limit as usize {
        let want = (limit - points.len() as u32).min(PAGE);
        let page = store.query_decisions(
            tenant,
            &DecisionFilter {
                flow: Some(flow.to_owned()),
                since_ms: Some(since_ms),
                before_id,
                limit: want,
                ..DecisionFilter::default()
            },
        )?;
        let full = page.len() == want as usize;
        before_id = page.last().map(|r| r.id);
        points.extend(
            page.into_iter()
                .map(|r| (r.at_ms, r.version, r.outcome, r.elapsed_us)),
        );
        if !full {
            break;
        }
    }
    points.reverse();
    Ok(points)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_cap_stored_above_what_postgresql_indexes_counts_as_that() {
        let stored = TenantCaps {
            max_kv_key_bytes: 16 * 1024,
            ..TenantCaps::default()
        };
        assert_eq!(stored.kv().max_key_bytes, crate::kv::MAX_KEY_BYTES);
        let small = TenantCaps {
            max_kv_key_bytes: 16,
            ..TenantCaps::default()
        };
        assert_eq!(small.kv().max_key_bytes, 16);
    }
}
