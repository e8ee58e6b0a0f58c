//! The `passthru` command: parse the command line, set up logging, call into the library.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use passthru::api;
use passthru::config::{DEFAULT_LISTEN, ServerConfig};
use passthru::registry::worker::{self, WorkerArgs};
use passthru::runner;
use passthru::sandbox::{
    DEFAULT_DEADLINE_MS, DEFAULT_FUEL, DEFAULT_MEMORY_MB, FlowConfig, HookExport, Limits,
};
use passthru::secrets::{SECRETS_KEY_ENV, SecretsKey};
use passthru::server::{self, StartOptions};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "passthru",
    version,
    about = "Runs WebAssembly plugins that answer Exotel Passthru requests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve Passthru requests at /passthru/{tenant}/{flow}.
    Serve {
        /// The flows to serve (TOML). Without it: the embedded demo (tenant `demo`, flows `ivr`
        /// and `vip`, and `log` in async mode).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides the file's `listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Where the embedded store keeps tenants, plugins, flows and records; overrides the
        /// file's `data_dir` (default ./passthru-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL database shared with other nodes (`postgres://user:pass@host/db`), instead
        /// of the embedded store; overrides the file's `database` and `PASSTHRU_DATABASE_URL`.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Run a plugin once on a Passthru query and print what it decided, as JSON. A plugin that
    /// exports only `record` (async flows) is given the query as event 1.
    Run {
        /// The plugin: a WebAssembly component exporting `decide`, `record` or both.
        plugin: PathBuf,
        /// The Passthru query string, as Exotel sends it (without the leading `?`).
        #[arg(long, default_value = "", conflicts_with = "query_file")]
        query: String,
        /// Read the query string from this file instead (`-` for stdin); a leading `?` and
        /// surrounding whitespace are ignored. tests/fixtures/exotel/ holds real-shaped ones.
        #[arg(long, value_name = "FILE")]
        query_file: Option<PathBuf>,
        /// Call the plugin N times, each on a fresh instance, and report the first (cold) call and
        /// the median of the others (warm, as in a running server).
        #[arg(long, value_name = "N", default_value_t = 10,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(runner::MAX_REPEAT)))]
        repeat: u32,
        /// Compile the plugin even if a compiled copy is cached (and do not cache it). The cache
        /// is PASSTHRU_CACHE_DIR, else $XDG_CACHE_HOME/passthru/run, else ~/.cache/passthru/run.
        #[arg(long)]
        no_cache: bool,
        /// A flow configuration value the plugin can read; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        #[arg(long, default_value_t = DEFAULT_FUEL)]
        fuel: u64,
        #[arg(long, default_value_t = DEFAULT_DEADLINE_MS)]
        deadline_ms: u64,
        #[arg(long, default_value_t = DEFAULT_MEMORY_MB)]
        memory_mb: u64,
        /// Call `record` instead of `decide`, as attempt N (1 for the first).
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1",
              value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "hook")]
        record: Option<u32>,
        /// Call a hook's export (`select`, `greeting`, `sms`, `connect`, `gather`) and print the
        /// status, content type and body the server would answer. Without it, a plugin that
        /// exports neither `decide` nor `record` is called through the hook it exports.
        #[arg(long, value_name = "EXPORT", value_parser = parse_hook)]
        hook: Option<HookExport>,
        /// The `Exotel-Version` header of the hook's request (`1.1`: the call-centre Connect).
        #[arg(long, value_name = "V")]
        exotel_version: Option<String>,
        /// Grant the plugin a key-value store, kept in memory, empty or filled from FILE (JSON
        /// Lines, or CSV when FILE ends in .csv, as the import API reads them); repeatable. What
        /// one call writes, the next of `--repeat` sees.
        #[arg(long = "kv-store", value_name = "NAME[=FILE]", value_parser = parse_kv_store)]
        kv_stores: Vec<(String, Option<PathBuf>)>,
        /// Let the plugin send HTTP requests to this `scheme://host[:port]` (`*.name` for any
        /// subdomain), as a flow's `outbound_hosts` does; repeatable. Without it every request is
        /// refused.
        #[arg(long = "outbound-host", value_name = "URL")]
        outbound_hosts: Vec<String>,
        /// An address range the plugin's requests may reach although private or special, as the
        /// server's `[outbound] allow_ranges` (`127.0.0.0/8` for a server on this machine);
        /// repeatable.
        #[arg(long = "outbound-allow-range", value_name = "CIDR")]
        outbound_allow_ranges: Vec<ipnet::IpNet>,
        /// Replay a recorded call: FILE holds a decision record as GET /v1/decisions answers it
        /// (the record, or a page of records: its first). The plugin runs on the record's query
        /// with its seed, clock and fuel; the output says whether it answered the same and used
        /// the same fuel (exit 0), or not (exit 3). Give the flow's config with --config.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["query", "query_file", "record", "hook", "backtest"])]
        replay: Option<PathBuf>,
        /// Backtest the plugin: FILE has one call a line, a decision record as JSON (compared
        /// with the recorded answer) or a Passthru query string (compared with --against's
        /// answer, on the same seed and clock); at most 10000. Prints the server's backtest
        /// report; exit 0 when every call agrees, 3 when some differ.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["query", "query_file", "record", "hook"])]
        backtest: Option<PathBuf>,
        /// With --backtest: the plugin (another version) to compare with, instead of the
        /// records' answers.
        #[arg(long, value_name = "PLUGIN", requires = "backtest")]
        against: Option<PathBuf>,
    },
    /// Print a new random key for flows' secrets (base64 of 32 bytes), to set as
    /// PASSTHRU_SECRETS_KEY or keep in the file the config's `secrets_key_file` names.
    #[command(name = "secrets-key")]
    SecretsKey,
    /// The server's compile worker: compiles the component on stdin, within a memory limit, and
    /// writes the machine code to stdout. The server runs it as a child process per upload.
    #[command(name = "compile-worker", hide = true)]
    CompileWorker {
        /// The address space the compile may use, in MiB.
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
        memory_mb: u64,
        /// Threads Cranelift compiles functions on.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..))]
        threads: u16,
    },
}

/// The environment variable that sets the operator's token.
const OPERATOR_TOKEN_ENV: &str = "PASSTHRU_OPERATOR_TOKEN";
/// The shared database, when `--database` is not given.
const DATABASE_URL_ENV: &str = "PASSTHRU_DATABASE_URL";

fn parse_kv_store(s: &str) -> Result<(String, Option<PathBuf>), String> {
    Ok(match s.split_once('=') {
        Some((name, file)) => (name.to_owned(), Some(PathBuf::from(file))),
        None => (s.to_owned(), None),
    })
}

fn parse_hook(s: &str) -> Result<HookExport, String> {
    [
        HookExport::Select,
        HookExport::Greeting,
        HookExport::Sms,
        HookExport::Connect,
        HookExport::Gather,
    ]
    .into_iter()
    .find(|hook| hook.name() == s)
    .ok_or_else(|| format!("expected select, greeting, sms, connect or gather, got {s:?}"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `PASSTHRU_ALLOCATOR` set to anything but `system` runs on mimalloc, as if unset: likely a typo.
fn warn_of_an_unknown_allocator() {
    use passthru::allocator::{ALLOCATOR, ALLOCATOR_ENV, SYSTEM_VALUE};
    if let Some(value) = std::env::var_os(ALLOCATOR_ENV)
        && value != SYSTEM_VALUE
    {
        tracing::warn!(
            value = %value.to_string_lossy(),
            allocator = ALLOCATOR.name(),
            "{ALLOCATOR_ENV} is not `{SYSTEM_VALUE}`, the only value it takes: running on mimalloc"
        );
    }
}

fn main() -> anyhow::Result<()> {
    // What the server writes (the data directory, the operator token, the queue of callers'
    // numbers) is its own: files 0600, folders 0700.
    // SAFETY: umask only sets the process's file-creation mask; no memory is involved.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o077);
    }
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
            database,
        } => {
            init_tracing("info");
            warn_of_an_unknown_allocator();
            let database = database.or_else(|| {
                std::env::var(DATABASE_URL_ENV)
                    .ok()
                    .filter(|u| !u.is_empty())
            });
            runtime()?.block_on(serve(config, listen, data_dir, database))
        }
        Command::SecretsKey => {
            println!("{}", SecretsKey::generate()?);
            Ok(())
        }
        // A child of the server, limited in memory: no async runtime, no logging, nothing but
        // the compile.
        Command::CompileWorker { memory_mb, threads } => {
            std::process::exit(worker::run(WorkerArgs {
                memory_mb,
                threads: usize::from(threads),
            }))
        }
        Command::Run {
            plugin,
            query,
            query_file,
            repeat,
            no_cache,
            config,
            fuel,
            deadline_ms,
            memory_mb,
            record,
            hook,
            exotel_version,
            kv_stores,
            outbound_hosts,
            outbound_allow_ranges,
            replay,
            backtest,
            against,
        } => {
            init_tracing("warn");
            let export = match (record, hook) {
                (Some(attempt), _) => runner::Export::Record { attempt },
                (None, Some(hook)) => runner::Export::Hook(hook),
                (None, None) => runner::Export::Auto,
            };
            let limits = Limits {
                fuel,
                deadline_ms,
                memory_mb,
            };
            let config: FlowConfig = config.into_iter().collect();
            let query = match query_file {
                Some(path) => read_query(&path)?,
                None => query,
            };
            let options = runner::RunOptions {
                repeat,
                cache_dir: if no_cache {
                    None
                } else {
                    runner::cache::default_dir()
                },
                exotel_version,
                kv_stores,
                outbound_hosts,
                outbound_allow_ranges,
            };
            let out = match (replay, backtest) {
                (Some(file), _) => {
                    let record = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    runtime()?.block_on(runner::rollout::replay(
                        &plugin, &record, config, limits, &options,
                    ))
                }
                (None, Some(file)) => {
                    let calls = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    runtime()?.block_on(runner::rollout::backtest(
                        &plugin,
                        &calls,
                        against.as_deref(),
                        config,
                        limits,
                        &options,
                    ))
                }
                (None, None) => runtime()?.block_on(runner::run(
                    &plugin, &query, config, limits, export, &options,
                )),
            };
            // A closed pipe (`passthru run ... | head`) is the reader's choice, not an error.
            let _ = writeln!(std::io::stdout().lock(), "{}", out.json);
            std::process::exit(out.exit_code);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A query string from a file (or stdin for `-`), without a leading `?` or surrounding
/// whitespace, as copied from a log or a browser.
fn read_query(path: &std::path::Path) -> anyhow::Result<String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the query from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the query from {}", path.display()))?
    };
    let text = text.trim();
    Ok(text.strip_prefix('?').unwrap_or(text).to_owned())
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
) -> anyhow::Result<()> {
    let config = match &config_path {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::embedded_default(),
    };
    let started_at = std::time::Instant::now();
    let options = StartOptions {
        data_dir,
        operator_token: std::env::var(OPERATOR_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty()),
        compile_worker: None,
        secrets_key: std::env::var(SECRETS_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty()),
        database,
    };
    let started = server::start(&config, options).await?;
    tracing::info!(
        flows = started.state.registry.live_flows(),
        imported = started.imported,
        compiled = started.state.registry.sandbox().compile_count(),
        start_ms = started_at.elapsed().as_millis() as u64,
        data_dir = %started.data_dir.display(),
        config = %config_path.as_deref().map_or("embedded default".into(), |p| p.display().to_string()),
        "ready"
    );
    if let Some(path) = &started.operator_token_file {
        tracing::info!(file = %path.display(), "operator token (set {OPERATOR_TOKEN_ENV} to choose one)");
    }
    let addr = match listen.or(config.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse()?,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let recorder = started.state.recorder.clone();
    let queue = started.state.queue.clone();
    let kv = started.state.registry.kv().clone();
    api::serve(listener, started.state, shutdown_signal()).await?;
    if !queue.shutdown(Duration::from_secs(15)).await {
        tracing::warn!(
            "the async queue did not stop in time; unfinished events run at the next start"
        );
    }
    if !tokio::task::spawn_blocking(move || recorder.flush(Duration::from_secs(5))).await? {
        tracing::warn!("some decision records may not have been written");
    }
    if let Err(error) = kv.barrier().wait().await {
        tracing::error!(%error, "the last key-value writes may not have been written");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down; letting in-flight requests finish");
}
