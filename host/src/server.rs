//! Start-up: open the store in the data directory, load the live flows (from the artifact
//! cache), import the config file's flows, start the decision-record writer, and hand the
//! result to the HTTP layer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::Metrics;
use crate::api::{AppShared, AppState, HttpLimits};
use crate::auth;
use crate::config::{DEFAULT_DATA_DIR, ServerConfig};
use crate::kv::KvSpace;
use crate::queue::{Queue, QueueStore, SqliteQueue};
use crate::records::{self, Recorder, WriterPriority};
use crate::registry::{CompileWorker, ImportError, Registry, RegistryError};
use crate::sandbox::{Sandbox, SandboxError};
use crate::secrets::SecretsKey;
use crate::store::postgres::{self, BadUrl, PgQueue, PgStore};
use crate::store::{SqliteStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot load the stored flows")]
    Registry(#[from] RegistryError),
    #[error("cannot import the config file's flows")]
    Import(#[from] ImportError),
    #[error(transparent)]
    DatabaseUrl(#[from] BadUrl),
    #[error("cannot listen for other nodes' changes")]
    Listen(#[source] std::io::Error),
    #[error("the operator's token: {0}")]
    OperatorToken(String),
    #[error("the secrets key: {0}")]
    SecretsKey(String),
    #[error("a start-up task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot make the data directory {path} private")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the server's state comes from, beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `--data-dir`; else the file's `data_dir`; else `./passthru-data`.
    pub data_dir: Option<PathBuf>,
    /// `PASSTHRU_OPERATOR_TOKEN`; else the file's `operator_token`; else a generated one.
    pub operator_token: Option<String>,
    /// The program uploads are compiled in (as `PROGRAM compile-worker`); else this one. A
    /// server embedded in another program (a test binary) names the `passthru` binary here.
    pub compile_worker: Option<PathBuf>,
    /// `PASSTHRU_SECRETS_KEY`; else the key in the file's `secrets_key_file`; else none (and no
    /// secrets may be stored).
    pub secrets_key: Option<String>,
    /// `--database` or `PASSTHRU_DATABASE_URL`; else the file's `database`; else the embedded
    /// store in the data directory.
    pub database: Option<String>,
}

/// How often a node sharing a database compares its live flows with the store even when no
/// change was announced, so that a missed notification heals.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// What start-up opens off the runtime: the registry over its store, the queue's store, and the
/// shared database when there is one.
type Opened = (Registry, Arc<dyn QueueStore>, Option<PgStore>);

/// A server ready to serve: its state, and what start-up learned.
pub struct Started {
    pub state: AppState,
    pub data_dir: PathBuf,
    /// Where a generated operator token was written, if one was.
    pub operator_token_file: Option<PathBuf>,
    pub imported: usize,
}

/// Builds everything the HTTP layer needs.
///
/// # Errors
/// The sandbox, the store or the data directory cannot be set up, a stored flow cannot be
/// loaded, or a flow of the config file is invalid.
pub async fn start(config: &ServerConfig, options: StartOptions) -> Result<Started, StartError> {
    let data_dir = options
        .data_dir
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    // Checked when the config was parsed.
    let outbound = config.outbound.options().unwrap_or_default();
    let sandbox = Arc::new(Sandbox::new(config.sandbox_options())?.with_outbound(outbound));
    let compiles = config.compile_limits();
    let worker = options
        .compile_worker
        .map_or_else(CompileWorker::this_program, CompileWorker::at);
    let secrets = secrets_key(options.secrets_key, config)?;
    let database = options
        .database
        .or_else(|| config.database.clone())
        .map(|url| postgres::parse_url(&url))
        .transpose()?;
    if database.is_some() && options.operator_token.is_none() && config.operator_token.is_none() {
        return Err(StartError::OperatorToken(
            "with a shared database, set PASSTHRU_OPERATOR_TOKEN (or the config file's \
             operator_token), the same on every node"
                .into(),
        ));
    }
    let lease = config.async_queue.lease();
    let (registry, queue_store, shared) = {
        let (sandbox, dir, database) = (sandbox.clone(), data_dir.clone(), database.clone());
        tokio::task::spawn_blocking(move || -> Result<Opened, StartError> {
            let (store, queue, shared): (Arc<dyn Store>, Arc<dyn QueueStore>, _) = match &database {
                Some(database) => {
                    let store = PgStore::connect(database)?;
                    let queue = PgQueue::open(&store, lease)?;
                    tracing::info!(node = queue.node(), "using the shared database");
                    (Arc::new(store.clone()), Arc::new(queue), Some(store))
                }
                None => (
                    Arc::new(SqliteStore::open(&dir)?),
                    Arc::new(SqliteQueue::open(&dir)?),
                    None,
                ),
            };
            let registry = Registry::open(sandbox, store, &dir, compiles, worker, secrets)?;
            Ok((registry, queue, shared))
        })
        .await??
    };
    let registry = Arc::new(registry);
    let imported = registry.import(&config.flows).await?;

    if let (Some(database), Some(shared)) = (database, shared) {
        let listener =
            postgres::listen(database, shared.origin().to_owned()).map_err(StartError::Listen)?;
        let listener = Arc::new(listener);
        tokio::spawn(follow_other_nodes(
            Arc::downgrade(&registry),
            listener.clone(),
        ));
        tokio::spawn(prepare_other_nodes_uploads(
            Arc::downgrade(&registry),
            listener.clone(),
        ));
        tokio::spawn(follow_other_nodes_kv(
            Arc::downgrade(registry.kv()),
            shared,
            listener,
        ));
    }

    let (operator, operator_token_file) = match options
        .operator_token
        .or_else(|| config.operator_token.clone())
    {
        Some(token) => (token, None),
        None => {
            let (token, path) =
                auth::operator_token_file(&data_dir).map_err(StartError::OperatorToken)?;
            (token, Some(path))
        }
    };
    let recorder = if config.records {
        Recorder::start(
            registry.store().clone(),
            records::DEFAULT_QUEUE,
            Duration::from_secs(config.record_retention_hours.saturating_mul(3600)),
            if config.records_background {
                WriterPriority::Background
            } else {
                WriterPriority::Normal
            },
            records::MAX_WAIT,
        )
    } else {
        Recorder::disabled()
    };
    let queue = {
        Queue::start(
            queue_store,
            registry.clone(),
            recorder.clone(),
            config.async_queue.options(),
        )?
    };
    sweep_expired_keys(registry.kv().clone());
    let metrics = Arc::new(Metrics::new(
        registry.clone(),
        recorder.clone(),
        queue.clone(),
    ));
    // Everything in the data directory is the server's alone: the queue holds callers' numbers,
    // the store token hashes and plugins.
    let private = data_dir.clone();
    tokio::task::spawn_blocking(move || make_private(&private))
        .await?
        .map_err(|source| StartError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    Ok(Started {
        state: AppState::new(AppShared {
            registry,
            recorder,
            queue,
            operator: Arc::new(auth::OperatorToken::new(&operator)),
            max_query_bytes: config.max_query_bytes,
            max_upload_bytes: config.max_upload_bytes,
            metrics,
            http: HttpLimits {
                max_connections: config.max_connections,
                header_timeout: Duration::from_millis(config.header_timeout_ms),
                admin_timeout: Duration::from_millis(config.admin_timeout_ms),
                upload_timeout: Duration::from_millis(config.upload_timeout_ms),
            },
            public_url: config.public_url.as_deref().map(Arc::from),
            backtests: crate::rollout::backtest::Backtests::default(),
            record_reads: crate::api::turns::TenantTurns::default(),
        }),
        data_dir,
        operator_token_file,
        imported,
    })
}

/// The operator's secrets key: `given` (the environment's), else the one in the config file's
/// `secrets_key_file`, else none.
fn secrets_key(
    given: Option<String>,
    config: &ServerConfig,
) -> Result<Option<SecretsKey>, StartError> {
    let text = match (given, &config.secrets_key_file) {
        (Some(text), _) => text,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| StartError::SecretsKey(format!("cannot read {}: {e}", path.display())))?,
        (None, None) => return Ok(None),
    };
    SecretsKey::from_base64(&text)
        .map(Some)
        .map_err(|e| StartError::SecretsKey(e.to_string()))
}

/// Keeps this node's live flows in line with what other nodes sharing the database change: at
/// each announced change, and every [`RECONCILE_EVERY`] in case one was missed.
async fn follow_other_nodes(
    registry: std::sync::Weak<Registry>,
    listener: Arc<postgres::ChangeListener>,
) {
    let mut every = tokio::time::interval(RECONCILE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = listener.changed() => {}
            _ = every.tick() => {}
        }
        let Some(registry) = registry.upgrade() else {
            return;
        };
        match registry.reconcile().await {
            Ok(0) => {}
            Ok(changed) => tracing::info!(changed, "flows changed by other nodes are live here"),
            Err(error) => tracing::warn!(
                error = %crate::error::Chain(&error),
                "cannot compare this node's flows with the database"
            ),
        }
    }
}

/// Compiles each version uploaded through another node, one at a time, so that it goes live
/// here as fast as on the node that took the upload.
async fn prepare_other_nodes_uploads(
    registry: std::sync::Weak<Registry>,
    listener: Arc<postgres::ChangeListener>,
) {
    loop {
        let uploaded = listener.versions_uploaded().await;
        for sha256 in uploaded {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let prepared = tokio::task::spawn_blocking(move || {
                let outcome = registry.prepare(&sha256);
                (sha256, outcome)
            });
            match prepared.await {
                Ok((_, Ok(()))) => {}
                Ok((sha256, Err(error))) => tracing::warn!(
                    sha256,
                    error = %crate::error::Chain(&error),
                    "cannot compile a version another node took; it is compiled when a flow \
                     needs it"
                ),
                Err(error) => tracing::warn!(%error, "the compile of another node's upload failed"),
            }
        }
    }
}

/// Keeps this node's key-value data in line with what other nodes' plugins and API calls wrote
/// to the shared database: each announced key (or store) is read back and set in memory.
async fn follow_other_nodes_kv(
    kv: std::sync::Weak<KvSpace>,
    store: PgStore,
    listener: Arc<postgres::ChangeListener>,
) {
    loop {
        let notices = listener.kv_changed().await;
        let Some(kv) = kv.upgrade() else {
            return;
        };
        let store = store.clone();
        let applied = tokio::task::spawn_blocking(move || apply_kv_notices(&kv, &store, notices));
        match applied.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(
                error = %crate::error::Chain(&error),
                "cannot read back other nodes' key-value writes"
            ),
            Err(error) => tracing::warn!(%error, "the key-value follower failed"),
        }
    }
}

fn apply_kv_notices(
    kv: &KvSpace,
    store: &PgStore,
    notices: Vec<postgres::KvNotice>,
) -> Result<(), StoreError> {
    use postgres::KvNotice;
    let mut keys = Vec::new();
    let mut stores = std::collections::BTreeSet::new();
    let mut all = false;
    for notice in notices {
        match notice {
            KvNotice::Keys(k) => keys.extend(k),
            KvNotice::Stores(s) => stores.extend(s),
            KvNotice::All => all = true,
        }
    }
    if all {
        let mut rows: std::collections::BTreeMap<(String, String), Vec<_>> =
            std::collections::BTreeMap::new();
        let now = crate::store::now_ms();
        for row in crate::kv::KvSink::kv_rows(store, now).map_err(|e| StoreError::Unknown {
            what: format!("the key-value rows ({e})"),
        })? {
            rows.entry((row.tenant.to_string(), row.store.to_string()))
                .or_default()
                .push((
                    row.key,
                    crate::kv::Entry {
                        value: row.value,
                        expires_at_ms: row.expires_at_ms,
                    },
                ));
        }
        for bucket in kv.all_stores() {
            let key = (bucket.tenant().to_owned(), bucket.name().to_owned());
            if !rows.contains_key(&key) {
                bucket.refresh_all(Vec::new());
            }
        }
        for ((tenant, name), entries) in rows {
            kv.bucket(&tenant, &name).refresh_all(entries);
        }
        return Ok(());
    }
    for (tenant, name) in stores {
        let entries = store.kv_store_entries(&tenant, &name)?;
        kv.bucket(&tenant, &name).refresh_all(entries);
    }
    for ((tenant, name, key), entry) in store.kv_entries(&keys)? {
        kv.bucket(&tenant, &name).refresh(key, entry);
    }
    Ok(())
}

/// How often expired keys are dropped (a read never sees one, whether dropped yet or not).
const KV_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Drops expired keys from memory and disk every [`KV_SWEEP_EVERY`], off the async runtime's
/// threads, for as long as the key-value data lives.
fn sweep_expired_keys(kv: Arc<KvSpace>) {
    let kv = Arc::downgrade(&kv);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(KV_SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(kv) = kv.upgrade() else { return };
            let swept = tokio::task::spawn_blocking(move || kv.sweep(crate::store::now_ms())).await;
            if let Ok(swept @ 1..) = swept {
                tracing::debug!(swept, "expired keys dropped");
            }
        }
    });
}

/// Makes `dir` readable by its owner only: the folders in it `0700` and the files `0600`. Files
/// the server creates later are inside, out of other users' reach whatever their mode (and the
/// `passthru` binary starts with a umask of `077`, so they are `0600` too).
pub fn make_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            make_private(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}
