//! Plugins and flows: upload and validate, compile once and cache on disk, bind versions to
//! flows, activate and roll back, and the live table the request path reads.
//!
//! The request path calls only [`Registry::get`]: one atomic load of the current table and two
//! hash lookups by `&str`; no lock, no store call. Every change builds a new table and swaps it
//! in atomically: a call in flight keeps the `Arc<Flow>` it started with, and a plugin's compiled
//! code is freed when the last flow and the last call holding it let go.

mod artifacts;
mod builtin;
mod compiles;
mod import;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::ArcSwap;

pub use builtin::{BUILTIN_NAMES, builtin};
pub use compiles::{CompileError, CompileLimits, CompileWorker, Compiles};
pub use import::ImportError;

use crate::answer::{ConnectPlan, GatherPlan};
use crate::error::Chain;
use crate::flow::canary;
use crate::flow::url_auth::{NoRandomness, Secret};
use crate::flow::{FlowMode, Hook, RetryPolicy, StatusMap, UrlAuth, UrlAuthKind};
use crate::kv::{KvGrants, KvSpace};
use crate::metrics::{FlowFamilies, FlowMetrics};
use crate::records::Subject;
use crate::sandbox::outbound::OutboundHosts;
use crate::sandbox::{
    Branch, Grants, Limits, Plugin, Sandbox, SandboxError, TenantShare, hex_sha256, serves,
};
use crate::secrets::{MIN_SECRET_BYTES, SECRETS_KEY_ENV, SecretsKey};
use crate::store::{
    Canary, FlowRecord, SecretInfo, Store, StoreError, TenantCaps, VersionRecord, now_ms,
};

/// The world a component with these exports targets, named at the package version that last
/// changed it: `decider` (`decide`), `recorder` (`record`) or `plugin` (both), from 0.1.1; one of
/// the hooks' worlds (`switcher`, `greeter`, `texter`, `connector`, `gatherer`), from 0.1.2;
/// `lean-decider` (`decide-lean`), from 0.1.4.
pub fn world_of(exports: &[String]) -> &'static str {
    let has = |name: &str| exports.iter().any(|e| e == name);
    let hooks = [
        ("select", "passthru:plugin/switcher@0.1.2"),
        ("greeting", "passthru:plugin/greeter@0.1.2"),
        ("sms", "passthru:plugin/texter@0.1.2"),
        ("connect", "passthru:plugin/connector@0.1.2"),
        ("gather", "passthru:plugin/gatherer@0.1.2"),
    ];
    if has("decide-lean") {
        return "passthru:plugin/lean-decider@0.1.4";
    }
    match (has("decide"), has("record")) {
        (true, true) => "passthru:plugin/plugin@0.1.1",
        (false, true) => "passthru:plugin/recorder@0.1.1",
        (true, false) => "passthru:plugin/decider@0.1.1",
        (false, false) => hooks
            .iter()
            .find(|(export, _)| has(export))
            .map_or("passthru:plugin/decider@0.1.1", |(_, world)| world),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(#[from] SandboxError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the plugin is {size} bytes; this tenant may upload at most {max}")]
    TooLarge { size: u64, max: u64 },
    /// The store failed (not a missing or conflicting object: those are the variants above).
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// A plugin's blob or compiled artifact on disk.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored blob whose content no longer matches its hash.
    #[error("{path} is corrupt: its content does not match its name")]
    Corrupt { path: PathBuf },
    /// The operating system's random source failed (a URL secret could not be generated).
    #[error("cannot generate a secret")]
    NoRandomness(#[from] NoRandomness),
    /// A blocking task of the registry panicked or was cancelled.
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The component was not compiled: invalid, over its time budget, or too many waiting.
    #[error("{0}")]
    Compile(#[from] CompileError),
    /// The key-value data could not be loaded, or its writer started.
    #[error("cannot load the key-value data")]
    KeyValue(#[source] crate::kv::writer::SinkError),
    /// Secrets are stored and the server has no key for them, or the wrong one.
    #[error("{0}")]
    Secrets(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => RegistryError::NotFound { what },
            StoreError::InUse { what } => RegistryError::Conflict(what),
            StoreError::Conflict { what } => {
                RegistryError::Conflict(format!("{what} already exists"))
            }
            other => RegistryError::Store(other),
        }
    }
}

/// One flow, ready to answer.
#[derive(Debug)]
pub struct Flow {
    pub tenant: String,
    pub name: String,
    pub plugin_name: String,
    pub version: u32,
    pub plugin: Arc<Plugin>,
    pub mode: FlowMode,
    pub hook: Hook,
    pub fallback: Branch,
    /// What the hooks other than `passthru` answer when the plugin fails.
    pub fallbacks: Arc<Fallbacks>,
    pub status: StatusMap,
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// What the plugin may reach: config, secrets, key-value stores.
    pub grants: Arc<Grants>,
    /// The tenant's share of the sandbox, which all its flows' calls count against.
    pub share: Arc<TenantShare>,
    /// How its Passthru URL is authenticated: the secret's digest, checked in memory.
    pub auth: UrlAuth,
    /// This flow's counters and histograms, resolved when it was made live.
    pub metrics: FlowMetrics,
    /// The stored flow it was made from: what a node compares with the store to see whether
    /// another node changed it.
    pub record: FlowRecord,
    /// Another version answering a share of the calls, compiled when it was set.
    pub canary: Option<LiveCanary>,
}

/// A flow's canary as the request path uses it: loaded, with its share as a hash threshold.
#[derive(Debug)]
pub struct LiveCanary {
    pub version: u32,
    pub percent: f64,
    /// Calls whose `CallSid` hashes below this (of [`canary::BUCKETS`]) get the canary.
    pub threshold: u32,
    pub plugin: Arc<Plugin>,
}

impl Flow {
    /// What this flow's decision records are about.
    pub fn subject(&self) -> Subject<'_> {
        self.subject_of(self.version)
    }

    /// What a record of a call answered by `version` (the live one, or the canary) is about.
    pub fn subject_of(&self, version: u32) -> Subject<'_> {
        Subject {
            tenant: &self.tenant,
            flow: &self.name,
            plugin: &self.plugin_name,
            version,
            secrets: &self.grants.secrets,
        }
    }

    /// The version and plugin that answer a call: the canary's when the flow has one and the
    /// call's `CallSid` hashes into its share, else the live one's. A hash and a compare: no
    /// lock, no allocation. A call without a `CallSid` gets the live version.
    pub fn pick(&self, call_sid: Option<&str>) -> (u32, &Arc<Plugin>) {
        match (&self.canary, call_sid) {
            (Some(canary), Some(sid)) if canary::bucket(sid) < canary.threshold => {
                (canary.version, &canary.plugin)
            }
            _ => (self.version, &self.plugin),
        }
    }
}

/// A flow's `outbound_hosts`, parsed (already checked when the flow was stored).
fn outbound_hosts(entries: &[String]) -> Result<Option<Arc<OutboundHosts>>, RegistryError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let hosts = OutboundHosts::parse(entries).map_err(RegistryError::BadRequest)?;
    Ok(Some(Arc::new(hosts)))
}

/// A flow's fallback answers besides its branch, checked when the flow was stored.
#[derive(Debug, Default)]
pub struct Fallbacks {
    pub case: Option<String>,
    pub text: Option<String>,
    pub connect: Option<ConnectPlan>,
    pub gather: Option<GatherPlan>,
}

/// Every live flow of every enabled tenant. Immutable: changes build a new table.
#[derive(Debug, Default, Clone)]
pub struct FlowTable {
    tenants: HashMap<String, HashMap<String, Arc<Flow>>>,
}

impl FlowTable {
    pub fn get(&self, tenant: &str, flow: &str) -> Option<&Arc<Flow>> {
        self.tenants.get(tenant)?.get(flow)
    }

    pub fn len(&self) -> usize {
        self.tenants.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&mut self, flow: Arc<Flow>) {
        self.tenants
            .entry(flow.tenant.clone())
            .or_default()
            .insert(flow.name.clone(), flow);
    }

    /// Every flow in the table.
    pub fn flows(&self) -> impl Iterator<Item = &Arc<Flow>> {
        self.tenants.values().flat_map(HashMap::values)
    }

    fn remove(&mut self, tenant: &str, flow: &str) {
        if let Some(flows) = self.tenants.get_mut(tenant) {
            flows.remove(flow);
            if flows.is_empty() {
                self.tenants.remove(tenant);
            }
        }
    }
}

/// The registry: the live table, the store behind it, and the compiled plugins.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    store: Arc<dyn Store>,
    table: ArcSwap<FlowTable>,
    artifacts: artifacts::ArtifactCache,
    /// Plugins loaded in this process, by content hash, so flows on the same version share one
    /// compiled copy. Weak: the table and in-flight calls own them.
    loaded: Mutex<HashMap<String, Weak<Plugin>>>,
    /// Serialises changes to the live table, so concurrent activations apply one at a time.
    changes: tokio::sync::Mutex<()>,
    /// Serialises the look-up and insertion of new versions (held briefly, never across await).
    numbering: Mutex<()>,
    /// The per-flow metric families each live flow resolves its handles from.
    flow_metrics: FlowFamilies,
    /// The threads that compile components, off the request path's CPU.
    compiles: Compiles,
    /// Each tenant's share of the sandbox, kept across changes to the live table so that calls
    /// in flight and new ones count against the same one.
    shares: Mutex<HashMap<String, Arc<TenantShare>>>,
    /// Every tenant's key-value data, in memory, with the writer that keeps the store up to date.
    kv: Arc<KvSpace>,
    /// The operator's key for flows' secrets; without it, no secret may be set.
    secrets: Option<Arc<SecretsKey>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("flows", &self.table.load().len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry over `store`, keeping blobs and artifacts under `data_dir`, and loads
    /// every live flow (from the artifact cache; compiling only what is missing or invalid). A
    /// flow whose plugin cannot be loaded at all is logged and left out.
    ///
    /// Blocking and CPU-heavy: call it off the async runtime.
    ///
    /// # Errors
    /// The store or the data directory fails.
    pub fn open(
        sandbox: Arc<Sandbox>,
        store: Arc<dyn Store>,
        data_dir: &Path,
        compiles: CompileLimits,
        worker: CompileWorker,
        secrets: Option<SecretsKey>,
    ) -> Result<Self, RegistryError> {
        check_secrets_key(store.as_ref(), secrets.as_ref())?;
        let artifacts = artifacts::ArtifactCache::open(data_dir, sandbox.compatibility_key())?;
        let compiles = Compiles::start(sandbox.clone(), compiles, worker);
        let kv = KvSpace::open(store.clone(), now_ms()).map_err(RegistryError::KeyValue)?;
        for tenant in store.list_tenants()? {
            kv.set_caps(&tenant.name, tenant.caps.kv());
        }
        let registry = Self {
            secrets: secrets.map(Arc::new),
            kv: Arc::new(kv),
            compiles,
            sandbox,
            store,
            table: ArcSwap::from_pointee(FlowTable::default()),
            artifacts,
            loaded: Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
            numbering: Mutex::new(()),
            flow_metrics: FlowFamilies::default(),
            shares: Mutex::new(HashMap::new()),
        };
        let mut table = FlowTable::default();
        for record in registry.store.list_live_flows()? {
            // One flow whose plugin cannot be loaded (its blob lost, say) must not keep every
            // other tenant offline: it is left out, loudly, and answers 404 until fixed.
            match registry
                .live_flow(&record)
                .or_else(|error| registry.without_canary(&record, error))
            {
                Ok(flow) => table.insert(Arc::new(flow)),
                Err(error) => tracing::error!(
                    tenant = %record.tenant,
                    flow = %record.name,
                    error = %Chain(&error),
                    "cannot load this flow's plugin; the flow is not served"
                ),
            }
        }
        registry.table.store(Arc::new(table));
        Ok(registry)
    }

    /// At start, a flow whose canary cannot be loaded is served without it (loudly) rather than
    /// not at all; `error` is returned for a flow without a canary.
    fn without_canary(
        &self,
        record: &FlowRecord,
        error: RegistryError,
    ) -> Result<Flow, RegistryError> {
        if record.canary.is_none() {
            return Err(error);
        }
        let flow = self.live_flow(&FlowRecord {
            canary: None,
            ..record.clone()
        })?;
        tracing::error!(
            tenant = %record.tenant,
            flow = %record.name,
            error = %Chain(&error),
            "cannot load this flow's canary; the flow is served without it"
        );
        Ok(flow)
    }

    /// The live flow `tenant/flow`: the request path's only call.
    pub fn get(&self, tenant: &str, flow: &str) -> Option<Arc<Flow>> {
        self.table.load().get(tenant, flow).cloned()
    }

    /// How many flows are live.
    pub fn live_flows(&self) -> usize {
        self.table.load().len()
    }

    /// Every tenant's key-value data.
    pub fn kv(&self) -> &Arc<KvSpace> {
        &self.kv
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn flow_metrics(&self) -> &FlowFamilies {
        &self.flow_metrics
    }

    /// A place for one upload, held from before its body is read until its compile ends: see
    /// [`Compiles::reserve_upload`].
    ///
    /// # Errors
    /// As many uploads as may compile or wait are already in progress.
    pub fn reserve_upload(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RegistryError> {
        Ok(self.compiles.reserve_upload()?)
    }

    /// Validates, compiles and records a new version of `plugin` for `tenant`. Uploading the
    /// same bytes again returns the existing version (`false`), never a duplicate.
    ///
    /// Blocking and CPU-heavy.
    ///
    /// # Errors
    /// Over the tenant's size cap, not a valid plugin, or the store fails.
    pub fn upload(
        &self,
        tenant: &str,
        plugin: &str,
        bytes: &[u8],
    ) -> Result<(VersionRecord, bool), RegistryError> {
        let caps = self.store.get_tenant(tenant)?.caps;
        if bytes.len() as u64 > caps.max_plugin_bytes {
            return Err(RegistryError::TooLarge {
                size: bytes.len() as u64,
                max: caps.max_plugin_bytes,
            });
        }
        let sha256 = hex_sha256(bytes);
        if let Some(existing) = self.store.find_version(tenant, plugin, &sha256)? {
            return Ok((existing, false));
        }
        self.check_room(tenant, &caps, bytes.len() as u64)?;
        // Compile outside the lock, on a compile thread: it can take seconds.
        let compiled = self.compiles.compile(Arc::from(bytes))?;
        // The same bytes uploaded twice at once must still make one version: look again and
        // insert under one lock, which a deletion also takes (it may remove the blob).
        let _numbering = self.numbering.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.store.find_version(tenant, plugin, &sha256)? {
            return Ok((existing, false));
        }
        self.check_room(tenant, &caps, bytes.len() as u64)?;
        self.artifacts
            .put_blob(self.store.as_ref(), &sha256, bytes)?;
        self.artifacts
            .put_artifact(self.store.as_ref(), &sha256, &compiled.artifact)?;
        self.remember(&sha256, Arc::new(compiled.plugin));
        let version = self.store.add_version(
            tenant,
            plugin,
            &sha256,
            bytes.len() as u64,
            world_of(&compiled.exports),
            &compiled.exports,
        )?;
        Ok((version, true))
    }

    /// Refuses a new version of `size` bytes when the tenant keeps `max_versions` versions, or
    /// would keep more than `max_stored_bytes`.
    fn check_room(&self, tenant: &str, caps: &TenantCaps, size: u64) -> Result<(), RegistryError> {
        let (count, bytes) = self.store.version_usage(tenant)?;
        if count >= caps.max_versions {
            return Err(RegistryError::Conflict(format!(
                "this tenant keeps {count} plugin versions and its max_versions is {}; delete \
                 versions no flow uses (DELETE /v1/plugins/{{plugin}}/versions/{{version}}) to \
                 upload more",
                caps.max_versions
            )));
        }
        if bytes.saturating_add(size) > caps.max_stored_bytes {
            return Err(RegistryError::Conflict(format!(
                "this tenant keeps {bytes} bytes of plugin versions; {size} more would pass its \
                 max_stored_bytes of {}; delete versions no flow uses to upload more",
                caps.max_stored_bytes
            )));
        }
        Ok(())
    }

    /// Deletes a version that no flow uses, as its version or the one it would roll back to;
    /// its blob and compiled artifact go too, unless another version (of any tenant) has the
    /// same content. Its number is never given to another version.
    ///
    /// # Errors
    /// No such version, a flow uses it (`Conflict`), or the store fails.
    pub async fn delete_version(
        self: &Arc<Self>,
        tenant: &str,
        plugin: &str,
        version: u32,
    ) -> Result<(), RegistryError> {
        // Flows change under this lock: none can bind the version while it goes.
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (tenant, plugin) = (tenant.to_owned(), plugin.to_owned());
        blocking(move || {
            let _numbering = this.numbering.lock().unwrap_or_else(|p| p.into_inner());
            let deleted = this.store.delete_version(&tenant, &plugin, version)?;
            if !this.store.blob_in_use(&deleted.sha256)? {
                this.artifacts
                    .remove(this.store.as_ref(), &deleted.sha256)?;
            }
            Ok(())
        })
        .await
    }

    /// Creates or replaces a flow and makes it live. Returns whether it was created.
    ///
    /// # Errors
    /// Unknown version, limits above the tenant's caps, too many flows, or the store fails.
    pub async fn put_flow(self: &Arc<Self>, mut record: FlowRecord) -> Result<bool, RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (created, flow) = blocking(move || {
            let tenant = this.store.get_tenant(&record.tenant)?;
            tenant
                .caps
                .check(&record.settings.limits)
                .map_err(RegistryError::BadRequest)?;
            let existing = match this.store.get_flow(&record.tenant, &record.name) {
                Ok(flow) => Some(flow),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            // The stores the flow grants are created when it goes live: they must fit the
            // tenant's number of stores, as a plugin's or the API's writes must. (A flow already
            // stored loads at start whatever it grants.)
            this.kv
                .grant_room(&record.tenant, &record.settings.kv_stores)
                .map_err(|e| RegistryError::BadRequest(e.to_string()))?;
            if existing.is_none() {
                let count = this.store.list_flows(&record.tenant)?.len();
                if count >= tenant.caps.max_flows as usize {
                    return Err(RegistryError::Conflict(format!(
                        "this tenant has {count} flows and its max_flows is {}; delete one \
                         (DELETE /v1/flows/{{flow}}) to make another",
                        tenant.caps.max_flows
                    )));
                }
            }
            // The URL's secret is set only by `set_auth`, and the flow's secrets only by
            // `set_secret`: replacing a flow keeps them.
            record.auth = existing
                .as_ref()
                .map(|old| old.auth.clone())
                .unwrap_or_default();
            record.secrets = existing
                .as_ref()
                .map(|old| old.secrets.clone())
                .unwrap_or_default();
            if let Some(secret) = record
                .secrets
                .iter()
                .find(|s| record.settings.config.contains_key(&s.key))
            {
                return Err(RegistryError::BadRequest(format!(
                    "config key {:?} is a secret of this flow: a key is either in config or a \
                     secret, not both",
                    secret.key
                )));
            }
            // A canary of the same plugin carries over a PUT (unless it became the version).
            record.canary = existing
                .as_ref()
                .filter(|old| old.plugin == record.plugin)
                .and_then(|old| old.canary)
                .filter(|canary| canary.version != record.version);
            record.previous_version = match &existing {
                Some(old) if old.plugin == record.plugin && old.version != record.version => {
                    Some(old.version)
                }
                Some(old) if old.plugin == record.plugin => old.previous_version,
                _ => None,
            };
            record.updated_at_ms = now_ms();
            let flow = this.live_flow(&record)?;
            let created = this.store.put_flow(&record)?;
            Ok((created, (!tenant.disabled).then_some(flow)))
        })
        .await?;
        if let Some(flow) = flow {
            self.swap(|table| table.insert(Arc::new(flow)));
        }
        Ok(created)
    }

    /// Makes `version` the flow's active version (the current one becomes the rollback target).
    ///
    /// # Errors
    /// No such flow or version, or the store fails.
    pub async fn activate(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        version: u32,
    ) -> Result<FlowRecord, RegistryError> {
        self.change_version(tenant, flow, move |current| {
            Ok(version).map(|v| (v, current.version))
        })
        .await
    }

    /// Returns the flow to the version active before the current one.
    ///
    /// # Errors
    /// No such flow, nothing to roll back to, or the store fails.
    pub async fn rollback(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
    ) -> Result<FlowRecord, RegistryError> {
        self.change_version(tenant, flow, |current| match current.previous_version {
            Some(previous) => Ok((previous, current.version)),
            None => Err(RegistryError::Conflict(format!(
                "flow {:?} has no earlier version to roll back to",
                current.name
            ))),
        })
        .await
    }

    /// Sets the flow's canary: `version` answers `percent` of its calls (by `CallSid`), the live
    /// version the others. The canary's plugin is loaded (compiled if need be) before it goes
    /// live, so the request path never waits for it.
    ///
    /// # Errors
    /// No such flow or version, the active version, a percent outside (0, 100), a version that
    /// does not export what the flow calls, or the store fails.
    pub async fn set_canary(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        set: Canary,
    ) -> Result<FlowRecord, RegistryError> {
        canary::check_percent(set.percent).map_err(RegistryError::BadRequest)?;
        self.edit_flow(tenant, flow, move |record| {
            if set.version == record.version {
                return Err(RegistryError::Conflict(format!(
                    "version {} is flow {:?}'s active version already",
                    set.version, record.name
                )));
            }
            record.canary = Some(set);
            Ok(true)
        })
        .await
    }

    /// Makes the canary the active version: the active one becomes the rollback target.
    ///
    /// # Errors
    /// No such flow, no canary, or the store fails.
    pub async fn promote_canary(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
    ) -> Result<FlowRecord, RegistryError> {
        self.edit_flow(tenant, flow, |record| {
            let Some(canary) = record.canary.take() else {
                return Err(RegistryError::Conflict(format!(
                    "flow {:?} has no canary to promote",
                    record.name
                )));
            };
            record.previous_version = Some(record.version);
            record.version = canary.version;
            Ok(true)
        })
        .await
    }

    /// Ends the canary, if any: every call gets the active version again.
    ///
    /// # Errors
    /// No such flow, or the store fails.
    pub async fn abort_canary(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
    ) -> Result<FlowRecord, RegistryError> {
        self.edit_flow(tenant, flow, |record| {
            record.canary = None;
            Ok(true)
        })
        .await
    }

    /// Changes a stored flow with `edit`, then stores it and makes it live (its plugins loaded
    /// first), one change at a time. An `edit` that answers `false` has nothing to change: the
    /// flow is answered as stored, and neither stored again nor swapped.
    async fn edit_flow(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        edit: impl FnOnce(&mut FlowRecord) -> Result<bool, RegistryError> + Send + 'static,
    ) -> Result<FlowRecord, RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (tenant, flow) = (tenant.to_owned(), flow.to_owned());
        let (record, live) = blocking(move || {
            let mut record = this.store.get_flow(&tenant, &flow)?;
            if !edit(&mut record)? {
                return Ok((record, None));
            }
            record.updated_at_ms = now_ms();
            let live = this.live_flow(&record)?;
            this.store.put_flow(&record)?;
            let enabled = !this.store.get_tenant(&tenant)?.disabled;
            Ok((record, enabled.then_some(live)))
        })
        .await?;
        if let Some(live) = live {
            self.swap(|table| table.insert(Arc::new(live)));
        }
        Ok(record)
    }

    async fn change_version(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        pick: impl FnOnce(&FlowRecord) -> Result<(u32, u32), RegistryError> + Send + 'static,
    ) -> Result<FlowRecord, RegistryError> {
        self.edit_flow(tenant, flow, move |record| {
            let (next, previous) = pick(record)?;
            if next == record.version {
                return Ok(false);
            }
            // An unknown version is refused when the edited flow is made live.
            record.version = next;
            record.previous_version = Some(previous);
            // Activating or rolling back ends a canary: what answers is what was chosen.
            record.canary = None;
            Ok(true)
        })
        .await
    }

    /// Sets how the flow's Passthru URL is authenticated, with a fresh secret (for `key` and
    /// `basic`): the old secret stops working at once. Returns the flow as stored and the new
    /// secret, which is not kept anywhere (only its digest is).
    ///
    /// # Errors
    /// No such flow, no randomness, or the store fails.
    pub async fn set_auth(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        kind: UrlAuthKind,
    ) -> Result<(FlowRecord, Option<Secret>), RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (tenant, flow) = (tenant.to_owned(), flow.to_owned());
        let (record, secret, live) = blocking(move || {
            let mut record = this.store.get_flow(&tenant, &flow)?;
            let now = now_ms();
            let (auth, secret) = UrlAuth::generate(kind, now)?;
            record.auth = auth;
            record.updated_at_ms = now;
            let live = this.live_flow(&record)?;
            this.store.put_flow(&record)?;
            let enabled = !this.store.get_tenant(&tenant)?.disabled;
            Ok((record, secret, enabled.then_some(live)))
        })
        .await?;
        if let Some(live) = live {
            self.swap(|table| table.insert(Arc::new(live)));
        }
        Ok((record, secret))
    }

    /// Sets a secret of the flow: sealed with the server's key, stored, and live for the flow's
    /// next call. Its value is never returned.
    ///
    /// # Errors
    /// No secrets key, a bad key or value, a key of the flow's config, too many secrets, no such
    /// flow, or the store fails.
    pub async fn set_secret(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        key: &str,
        value: &str,
    ) -> Result<SecretInfo, RegistryError> {
        let Some(sealer) = self.secrets.clone() else {
            return Err(RegistryError::BadRequest(format!(
                "this server keeps no secrets: its operator has not set {SECRETS_KEY_ENV}"
            )));
        };
        check_secret(key, value)?;
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (tenant, flow, key, value) = (
            tenant.to_owned(),
            flow.to_owned(),
            key.to_owned(),
            value.to_owned(),
        );
        let (info, live) = blocking(move || {
            let record = this.store.get_flow(&tenant, &flow)?;
            if record.settings.config.contains_key(&key) {
                return Err(RegistryError::BadRequest(format!(
                    "{key:?} is a key of this flow's config: a key is either in config or a \
                     secret, not both"
                )));
            }
            if record.secrets.len() >= MAX_SECRETS && !record.secrets.iter().any(|s| s.key == key) {
                return Err(RegistryError::Conflict(format!(
                    "flow {flow:?} has {MAX_SECRETS} secrets, the most a flow may have"
                )));
            }
            let sealed = sealer
                .seal((&tenant, &flow, &key), &value)
                .map_err(|e| RegistryError::Secrets(e.to_string()))?;
            let info = this
                .store
                .put_flow_secret(&tenant, &flow, &key, &sealed, now_ms())?;
            Ok((info, this.refreshed(&tenant, &flow)?))
        })
        .await?;
        if let Some(live) = live {
            self.swap(|table| table.insert(Arc::new(live)));
        }
        Ok(info)
    }

    /// Deletes a secret of the flow; the flow's next call no longer sees it.
    ///
    /// # Errors
    /// No such flow or secret, or the store fails.
    pub async fn delete_secret(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
        key: &str,
    ) -> Result<(), RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (tenant, flow, key) = (tenant.to_owned(), flow.to_owned(), key.to_owned());
        let live = blocking(move || {
            this.store.get_flow(&tenant, &flow)?;
            this.store.delete_flow_secret(&tenant, &flow, &key)?;
            this.refreshed(&tenant, &flow)
        })
        .await?;
        if let Some(live) = live {
            self.swap(|table| table.insert(Arc::new(live)));
        }
        Ok(())
    }

    /// The live form of a stored flow as it now is, if its tenant is enabled.
    fn refreshed(&self, tenant: &str, flow: &str) -> Result<Option<Flow>, RegistryError> {
        let record = self.store.get_flow(tenant, flow)?;
        let enabled = !self.store.get_tenant(tenant)?.disabled;
        Ok(match enabled {
            true => Some(self.live_flow(&record)?),
            false => None,
        })
    }

    /// Deletes a flow; it stops answering at once (calls in flight finish).
    ///
    /// # Errors
    /// No such flow, or the store fails.
    pub async fn delete_flow(
        self: &Arc<Self>,
        tenant: &str,
        flow: &str,
    ) -> Result<(), RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (t, f) = (tenant.to_owned(), flow.to_owned());
        blocking(move || Ok(this.store.delete_flow(&t, &f)?)).await?;
        self.swap(|table| table.remove(tenant, flow));
        Ok(())
    }

    /// Takes a tenant's flows off the live table (disabled) or puts them back (enabled).
    ///
    /// # Errors
    /// The store fails or a flow's plugin cannot be loaded.
    pub async fn set_tenant_live(
        self: &Arc<Self>,
        tenant: &str,
        live: bool,
    ) -> Result<(), RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let t = tenant.to_owned();
        let flows = blocking(move || {
            if !live {
                return Ok(Vec::new());
            }
            this.store
                .list_flows(&t)?
                .iter()
                .map(|r| this.live_flow(r).map(Arc::new))
                .collect()
        })
        .await?;
        self.swap(|table| {
            table.tenants.remove(tenant);
            for flow in flows {
                table.insert(flow);
            }
        });
        Ok(())
    }

    /// Brings this node's live table in line with the store, for what other nodes sharing it
    /// changed: flows put, activated, rolled back or deleted, secrets set, tenants disabled or
    /// their caps changed. A flow whose stored form differs from its live one is made live again
    /// (its plugin compiled, off the async runtime, if this node has not yet); one that cannot
    /// be loaded keeps its previous live form here, loudly. Returns how many flows changed.
    ///
    /// # Errors
    /// The store fails; the table is left as it was.
    pub async fn reconcile(self: &Arc<Self>) -> Result<usize, RegistryError> {
        let _change = self.changes.lock().await;
        let this = self.clone();
        let (next, changed) = blocking(move || {
            let table = this.table.load_full();
            for tenant in this.store.list_tenants()? {
                this.kv.set_caps(&tenant.name, tenant.caps.kv());
                this.set_share_cap(&tenant.name, tenant.caps.max_concurrent_calls);
            }
            let mut next = FlowTable::default();
            let mut changed = 0;
            for record in this.store.list_live_flows()? {
                let live = table.get(&record.tenant, &record.name);
                if let Some(live) = live.filter(|live| live.record == record) {
                    next.insert(live.clone());
                    continue;
                }
                changed += 1;
                match this.live_flow(&record) {
                    Ok(flow) => next.insert(Arc::new(flow)),
                    Err(error) => {
                        tracing::error!(
                            tenant = %record.tenant,
                            flow = %record.name,
                            error = %Chain(&error),
                            "cannot load this flow as another node changed it; its previous form \
                             stays live on this node"
                        );
                        if let Some(live) = live {
                            next.insert(live.clone());
                        }
                    }
                }
            }
            changed += table
                .flows()
                .filter(|f| next.get(&f.tenant, &f.name).is_none())
                .count();
            Ok((next, changed))
        })
        .await?;
        if changed > 0 {
            self.table.store(Arc::new(next));
        }
        Ok(changed)
    }

    fn swap(&self, change: impl FnOnce(&mut FlowTable)) {
        let mut next = FlowTable::clone(&self.table.load());
        change(&mut next);
        self.table.store(Arc::new(next));
    }

    /// Version `version` of the flow's plugin, loaded, once checked to export what the flow
    /// calls. Blocking: it may read the store and compile.
    ///
    /// # Errors
    /// No such version, it does not export what the flow calls, or it cannot be loaded.
    pub fn flow_plugin(
        &self,
        record: &FlowRecord,
        version: u32,
    ) -> Result<Arc<Plugin>, RegistryError> {
        let stored = self
            .store
            .get_version(&record.tenant, &record.plugin, version)?;
        let settings = &record.settings;
        let export = settings.export();
        if !serves(&stored.exports, export) {
            let what = match settings.hook {
                Hook::Passthru => format!("a flow in {} mode", settings.mode.as_str()),
                hook => format!("a flow whose hook is {}", hook.as_str()),
            };
            return Err(RegistryError::BadRequest(format!(
                "version {version} of plugin {:?} does not export `{export}`, which {what} calls \
                 (it exports {:?})",
                record.plugin, stored.exports
            )));
        }
        self.load(&stored.sha256)
    }

    /// The canary of a stored flow, loaded.
    fn live_canary(&self, record: &FlowRecord) -> Result<Option<LiveCanary>, RegistryError> {
        let Some(set) = record.canary else {
            return Ok(None);
        };
        Ok(Some(LiveCanary {
            version: set.version,
            percent: set.percent,
            threshold: canary::threshold(set.percent),
            plugin: self.flow_plugin(record, set.version)?,
        }))
    }

    /// Builds the live form of a stored flow, loading its plugin (and its canary's).
    fn live_flow(&self, record: &FlowRecord) -> Result<Flow, RegistryError> {
        let settings = &record.settings;
        Ok(Flow {
            tenant: record.tenant.clone(),
            name: record.name.clone(),
            plugin_name: record.plugin.clone(),
            version: record.version,
            plugin: self.flow_plugin(record, record.version)?,
            canary: self.live_canary(record)?,
            mode: settings.mode,
            hook: settings.hook,
            fallback: settings.fallback,
            fallbacks: Arc::new(Fallbacks {
                case: settings.fallback_case.clone(),
                text: settings.fallback_text.clone(),
                connect: settings.fallback_connect.clone(),
                gather: settings.fallback_gather.clone(),
            }),
            status: settings.status,
            limits: settings.limits,
            retry: settings.retry,
            grants: Arc::new(self.grants(record)?),
            share: self.share(&record.tenant)?,
            auth: record.auth.clone(),
            metrics: self.flow_metrics.resolve(
                &record.tenant,
                &record.name,
                settings.mode == FlowMode::Async,
            ),
            record: record.clone(),
        })
    }

    /// What a stored flow lets its plugin reach: its config with its secrets opened, and its
    /// key-value stores.
    fn grants(&self, record: &FlowRecord) -> Result<Grants, RegistryError> {
        let settings = &record.settings;
        let mut config = settings.config.clone();
        let mut secrets = Vec::new();
        if !record.secrets.is_empty() {
            let key = self.secrets.as_ref().ok_or_else(|| {
                RegistryError::Secrets(format!(
                    "flow {:?} has secrets, and this server has no secrets key",
                    record.name
                ))
            })?;
            for sealed in self
                .store
                .sealed_secrets(Some((&record.tenant, &record.name)))?
            {
                let value = key
                    .open((&sealed.tenant, &sealed.flow, &sealed.key), &sealed.sealed)
                    .map_err(|e| RegistryError::Secrets(format!("secret {:?}: {e}", sealed.key)))?;
                config.insert(sealed.key, value.clone());
                secrets.push(value);
            }
        }
        Ok(Grants {
            config,
            kv: KvGrants::new(
                settings
                    .kv_stores
                    .iter()
                    .map(|store| self.kv.bucket(&record.tenant, store)),
            ),
            secrets,
            outbound_hosts: outbound_hosts(&settings.outbound_hosts)?,
            scratch_kv: false,
            lookups: Some(
                self.tenant_share_or(&record.tenant, self.sandbox.calls_per_tenant())
                    .lookups(),
            ),
        })
    }

    /// The tenant's share of the sandbox, its cap brought up to date with the tenant's caps.
    fn share(&self, tenant: &str) -> Result<Arc<TenantShare>, RegistryError> {
        let caps = self.store.get_tenant(tenant)?.caps;
        Ok(self.set_share_cap(tenant, caps.max_concurrent_calls))
    }

    /// The tenant's share as it is, made with a cap of `cap` if it has none yet.
    fn tenant_share_or(&self, tenant: &str, cap: u32) -> Arc<TenantShare> {
        let mut shares = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
        shares
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(TenantShare::new(cap)))
            .clone()
    }

    /// Sets how many calls a tenant may run at once (`max_concurrent_calls` of its caps; 0 for
    /// the server's default), for its calls in flight and every later one.
    pub fn set_share_cap(&self, tenant: &str, cap: u32) -> Arc<TenantShare> {
        let cap = match cap {
            0 => self.sandbox.calls_per_tenant(),
            own => own,
        };
        let share = self.tenant_share_or(tenant, cap);
        share.set_max(cap);
        share
    }

    /// Compiles a version uploaded through another node sharing the database, into this
    /// node's artifact cache, so that binding or activating it later here only loads it.
    /// Blocking and CPU-heavy (the compile runs in a child process at idle priority).
    ///
    /// # Errors
    /// Its bytes cannot be had, or it does not compile.
    pub fn prepare(&self, sha256: &str) -> Result<(), RegistryError> {
        self.load(sha256).map(drop)
    }

    /// The compiled plugin for a stored component: shared if loaded, else from the artifact
    /// cache, else compiled from the blob (and the cache rewritten).
    fn load(&self, sha256: &str) -> Result<Arc<Plugin>, RegistryError> {
        if let Some(plugin) = self.lock_loaded().get(sha256).and_then(Weak::upgrade) {
            return Ok(plugin);
        }
        let plugin = match self
            .artifacts
            .load(self.store.as_ref(), &self.sandbox, sha256)
        {
            Ok(plugin) => plugin,
            Err(reason) => {
                tracing::warn!(
                    sha256,
                    reason = %Chain(&reason),
                    "compiled artifact unusable; compiling again"
                );
                let bytes = self.artifacts.blob(self.store.as_ref(), sha256)?;
                let compiled = self.compiles.compile(Arc::from(bytes))?;
                self.artifacts
                    .put_artifact(self.store.as_ref(), sha256, &compiled.artifact)?;
                compiled.plugin
            }
        };
        let plugin = Arc::new(plugin);
        self.remember(sha256, plugin.clone());
        Ok(plugin)
    }

    fn remember(&self, sha256: &str, plugin: Arc<Plugin>) {
        let mut loaded = self.lock_loaded();
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(sha256.to_owned(), Arc::downgrade(&plugin));
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Plugin>>> {
        // Only admin and start-up paths take this lock, never across an await.
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The most secrets one flow may have.
pub const MAX_SECRETS: usize = 32;
/// The longest secret key and value.
pub const MAX_SECRET_KEY_BYTES: usize = 128;
pub const MAX_SECRET_VALUE_BYTES: usize = 8 * 1024;

/// A secret's key is 1 to 128 bytes without control characters; its value is 4 bytes to 8 KiB
/// (a shorter one could not be blanked out of logs without blanking ordinary text).
fn check_secret(key: &str, value: &str) -> Result<(), RegistryError> {
    let bad = |what: String| Err(RegistryError::BadRequest(what));
    if key.is_empty() || key.len() > MAX_SECRET_KEY_BYTES || key.chars().any(char::is_control) {
        return bad(format!(
            "a secret's key is 1 to {MAX_SECRET_KEY_BYTES} bytes without control characters"
        ));
    }
    if !(MIN_SECRET_BYTES..=MAX_SECRET_VALUE_BYTES).contains(&value.len()) {
        return bad(format!(
            "a secret's value is {MIN_SECRET_BYTES} to {MAX_SECRET_VALUE_BYTES} bytes, not {}",
            value.len()
        ));
    }
    Ok(())
}

/// Refuses to start while secrets are stored that `key` cannot open: none at all without a key,
/// and with a key, each one (a wrong key is found here, not by the first call that needs it).
fn check_secrets_key(store: &dyn Store, key: Option<&SecretsKey>) -> Result<(), RegistryError> {
    let sealed = store.sealed_secrets(None)?;
    let Some(first) = sealed.first() else {
        return Ok(());
    };
    let Some(key) = key else {
        return Err(RegistryError::Secrets(format!(
            "{} flow secrets are stored (the first of tenant {:?}, flow {:?}), and no secrets key \
             is set: set {SECRETS_KEY_ENV} (or secrets_key_file in the config file) to the key \
             they were sealed with",
            sealed.len(),
            first.tenant,
            first.flow
        )));
    };
    for secret in &sealed {
        key.open((&secret.tenant, &secret.flow, &secret.key), &secret.sealed)
            .map_err(|_| {
                RegistryError::Secrets(format!(
                    "the secrets key does not open secret {:?} of tenant {:?}, flow {:?}: it is \
                     not the key the secrets were sealed with",
                    secret.key, secret.tenant, secret.flow
                ))
            })?;
    }
    Ok(())
}

/// Runs store and compile work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(work).await?
}
