//! The server's configuration file: where to listen, and the flows with their plugins.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! public_url = "https://passthru.example.com"  # optional: answered URLs start with it
//!
//! [[flow]]
//! tenant = "demo"
//! name = "ivr"
//! plugin = "plugins/dist/ivr-menu.wasm"   # relative to this file; or "builtin:ivr-menu"
//! fallback = "failure"                    # the branch answered when the plugin fails
//! [flow.status]                           # optional: the HTTP status of each branch
//! success = 200
//! failure = 302
//! [flow.limits]                           # optional
//! fuel = 100000000
//! deadline_ms = 50
//! memory_mb = 64
//! [flow.config]                           # what the plugin reads through `config`
//! vip_numbers = "09800000001"
//! ```
//!
//! Unknown keys are errors that name the key, so a typo never turns into a silent default.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::flow::{FlowSpec, PluginSource};
use crate::queue::{Bounds, QueueOptions};
use crate::registry::CompileLimits;
use crate::sandbox::outbound::OutboundOptions;
use crate::sandbox::{SandboxOptions, default_memory_budget_mb};

/// The address `passthru serve` listens on when neither the file nor the command line says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Longest query string a Passthru request may carry; longer ones get `414`.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 16 * 1024;
/// Calls that may run at the same moment (the size of the instance pool).
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 256;
/// Where the embedded store keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./passthru-data";
/// The largest plugin upload the server reads, whatever a tenant's cap says.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 128 << 20;
/// How long decision records are kept.
pub const DEFAULT_RECORD_RETENTION_HOURS: u64 = 7 * 24;
/// The least `max_compile_memory_mb` accepted: below it, the compile worker (whose binary and
/// engine alone map some tens of MiB) could not compile even the smallest plugin.
pub const MIN_COMPILE_MEMORY_MB: u64 = 64;
/// The most `max_compile_memory_mb` accepted (1 TiB): a bound, not a suggestion.
pub const MAX_COMPILE_MEMORY_MB: u64 = 1 << 20;

/// The configuration `passthru serve` starts with when given no `--config`: a demo tenant with
/// the example plugins built into the binary.
pub const EMBEDDED_DEFAULT: &str = r#"# passthru's embedded default: a demo tenant with three flows.
[[flow]]
tenant = "demo"
name = "ivr"
plugin = "builtin:ivr-menu"
fallback = "failure"

[[flow]]
tenant = "demo"
name = "vip"
plugin = "builtin:vip-caller"
fallback = "failure"
[flow.config]
vip_numbers = "09800000001, 09800000003"

[[flow]]
tenant = "demo"
name = "log"
plugin = "builtin:call-logger"
mode = "async"
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: flow {tenant}/{flow}: {message}")]
    Flow {
        origin: String,
        tenant: String,
        flow: String,
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `--listen` wins over this.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    #[serde(default = "default_max_query_bytes")]
    pub max_query_bytes: usize,
    #[serde(default = "default_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
    /// The most calls one tenant may run at once, unless its caps say otherwise; by default a
    /// quarter of `max_concurrent_calls`.
    #[serde(default)]
    pub max_calls_per_tenant: Option<u32>,
    /// The most memory, in MiB, that the calls in flight may use together (the sum of their
    /// flows' `memory_mb`); by default half the machine's memory.
    #[serde(default)]
    pub max_memory_in_flight_mb: Option<u64>,
    /// Connections open at once; one more is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long an admin API request may take, its body included.
    #[serde(default = "default_admin_timeout_ms")]
    pub admin_timeout_ms: u64,
    /// Components compiled at once (on idle-priority threads).
    #[serde(default = "default_max_concurrent_compiles")]
    pub max_concurrent_compiles: usize,
    /// Uploads that may wait for a compile; past it an upload answers 503.
    #[serde(default = "default_max_waiting_compiles")]
    pub max_waiting_compiles: usize,
    /// The longest a compile may take (waiting included); past it the upload answers 422.
    #[serde(default = "default_compile_budget_ms")]
    pub compile_budget_ms: u64,
    /// The most memory (address space) one compile may use, in MiB; past it the upload answers
    /// 422. Each compile runs in a child process with this limit.
    #[serde(default = "default_max_compile_memory_mb")]
    pub max_compile_memory_mb: u64,
    /// How long a plugin upload may take, its body and compile included.
    #[serde(default = "default_upload_timeout_ms")]
    pub upload_timeout_ms: u64,
    /// `--data-dir` wins over this.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL connection string (`postgres://user:password@host/db`) for a store shared by
    /// several nodes; `--database` and `PASSTHRU_DATABASE_URL` win over this. Without one, the
    /// embedded store in the data directory.
    #[serde(default)]
    pub database: Option<String>,
    /// The operator's bearer token. `PASSTHRU_OPERATOR_TOKEN` wins over this; with neither, one
    /// is generated into `DATA_DIR/operator-token` at the first start.
    #[serde(default)]
    pub operator_token: Option<String>,
    /// A file holding the key that seals flows' secrets (base64 of 32 bytes; `passthru
    /// secrets-key` makes one). `PASSTHRU_SECRETS_KEY` wins over this. Without either, no secret
    /// may be set, and the server refuses to start while secrets are stored.
    #[serde(default)]
    pub secrets_key_file: Option<PathBuf>,
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// Where Exotel reaches this server (`https://passthru.example.com`, or with a path prefix
    /// a proxy adds), so that `POST /v1/flows/{flow}/auth` can answer the whole URL to paste
    /// into the Passthru applet. Without it, the answer gives the path only.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Keep a record of every decision (on by default).
    #[serde(default = "default_true")]
    pub records: bool,
    #[serde(default = "default_record_retention_hours")]
    pub record_retention_hours: u64,
    /// Write records only on CPU time requests leave idle (on by default); when both cores are
    /// busy with requests, records are dropped and counted instead of slowing calls.
    #[serde(default = "default_true")]
    pub records_background: bool,
    /// The queue of async flows.
    #[serde(default, rename = "async")]
    pub async_queue: AsyncSettings,
    /// Plugins' outbound HTTP requests (for flows that list `outbound_hosts`).
    #[serde(default)]
    pub outbound: OutboundSettings,
    #[serde(default, rename = "flow")]
    pub flows: Vec<FlowSpec>,
}

fn default_max_query_bytes() -> usize {
    DEFAULT_MAX_QUERY_BYTES
}

fn default_max_concurrent_compiles() -> usize {
    CompileLimits::default().threads
}

fn default_max_waiting_compiles() -> usize {
    CompileLimits::default().queue
}

fn default_compile_budget_ms() -> u64 {
    u64::try_from(CompileLimits::default().budget.as_millis()).unwrap_or(u64::MAX)
}

fn default_max_compile_memory_mb() -> u64 {
    CompileLimits::default().memory_mb
}

fn default_max_connections() -> usize {
    4096
}

fn default_header_timeout_ms() -> u64 {
    10_000
}

fn default_admin_timeout_ms() -> u64 {
    30_000
}

fn default_upload_timeout_ms() -> u64 {
    120_000
}

fn default_max_concurrent_calls() -> u32 {
    DEFAULT_MAX_CONCURRENT_CALLS
}

fn default_max_upload_bytes() -> u64 {
    DEFAULT_MAX_UPLOAD_BYTES
}

fn default_true() -> bool {
    true
}

fn default_record_retention_hours() -> u64 {
    DEFAULT_RECORD_RETENTION_HOURS
}

/// The `[async]` table: the queue of async flows.
///
/// ```toml
/// [async]
/// workers = 4                     # attempts that run at once
/// max_depth = 100000              # events held in all; past it requests get 503
/// max_depth_per_tenant = 20000    # events one tenant may hold
/// max_in_flight_per_tenant = 2    # workers one tenant may hold at once
/// max_dead_letters_per_flow = 10000  # dead letters a flow keeps; past it the oldest go
/// lease_ms = 10000                # with a shared database: how long a node that stopped
///                                 # keeps its events before other nodes take them over
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncSettings {
    pub workers: usize,
    pub max_depth: usize,
    pub max_depth_per_tenant: usize,
    /// Default: half the workers, rounded up, so a tenant never holds them all.
    pub max_in_flight_per_tenant: Option<usize>,
    /// The dead letters one flow keeps (they leave the queue's depth): past it, its oldest are
    /// deleted as new ones come.
    pub max_dead_letters_per_flow: usize,
    /// With a shared database (`database`): each node holds the events it accepted under a
    /// lease it renews every quarter of this; the events of a node that stops renewing are
    /// taken over by the others this long after its last renewal. 200 to 600000.
    pub lease_ms: u64,
}

impl Default for AsyncSettings {
    fn default() -> Self {
        Self {
            workers: 4,
            max_depth: 100_000,
            max_depth_per_tenant: 20_000,
            max_in_flight_per_tenant: None,
            max_dead_letters_per_flow: 10_000,
            lease_ms: DEFAULT_LEASE_MS,
        }
    }
}

/// The default `[async] lease_ms`.
pub const DEFAULT_LEASE_MS: u64 = 10_000;

impl AsyncSettings {
    /// How long a node holds its events without renewing (with a shared database).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms)
    }

    /// The queue's options, with the defaults filled in.
    pub fn options(&self) -> QueueOptions {
        QueueOptions {
            workers: self.workers,
            bounds: Bounds {
                max_depth: self.max_depth,
                max_depth_per_tenant: self.max_depth_per_tenant,
                max_in_flight_per_tenant: self
                    .max_in_flight_per_tenant
                    .unwrap_or(self.workers.div_ceil(2)),
            },
            max_dead_letters_per_flow: self.max_dead_letters_per_flow as u64,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let at_least_one = [
            ("async.workers", self.workers),
            ("async.max_depth", self.max_depth),
            ("async.max_depth_per_tenant", self.max_depth_per_tenant),
            (
                "async.max_in_flight_per_tenant",
                self.max_in_flight_per_tenant.unwrap_or(1),
            ),
            (
                "async.max_dead_letters_per_flow",
                self.max_dead_letters_per_flow,
            ),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.workers > 1024 {
            return Err(format!(
                "async.workers must be at most 1024, not {}",
                self.workers
            ));
        }
        if !(200..=600_000).contains(&self.lease_ms) {
            return Err(format!(
                "async.lease_ms must be 200 to 600000, not {}",
                self.lease_ms
            ));
        }
        Ok(())
    }
}

/// The `[outbound]` table: the bounds on plugins' outbound HTTP requests, for every flow. A flow
/// sends requests only to the hosts it lists (`outbound_hosts`); these bound what it may do there.
///
/// ```toml
/// [outbound]
/// max_requests = 8                    # requests one call may send (refused past it)
/// max_request_bytes = 1048576         # one request's body
/// max_response_bytes = 1048576        # one response's body
/// allow_ranges = ["127.0.0.0/8"]      # addresses allowed although private or special
/// ```
///
/// Every request also ends at its call's deadline (`limits.deadline_ms`). Loopback, private
/// (RFC 1918, fc00::/7), link-local, CGNAT, unspecified, multicast, reserved and cloud metadata
/// addresses are refused whatever name leads to them, unless a range in `allow_ranges` holds them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    pub max_requests: u32,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub allow_ranges: Vec<String>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        let defaults = OutboundOptions::default();
        Self {
            max_requests: defaults.max_requests,
            max_request_bytes: defaults.max_request_bytes,
            max_response_bytes: defaults.max_response_bytes,
            allow_ranges: Vec::new(),
        }
    }
}

impl OutboundSettings {
    /// The sandbox's options; or a message naming the range that is not `address/length`.
    pub fn options(&self) -> Result<OutboundOptions, String> {
        let allow_ranges = self
            .allow_ranges
            .iter()
            .map(|range| {
                range.parse::<ipnet::IpNet>().map_err(|_| {
                    format!("outbound.allow_ranges: {range:?} is not a range such as 127.0.0.0/8")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OutboundOptions {
            max_requests: self.max_requests,
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            allow_ranges,
        })
    }
}

impl ServerConfig {
    /// How compiles are bounded.
    pub fn compile_limits(&self) -> CompileLimits {
        CompileLimits {
            threads: self.max_concurrent_compiles,
            queue: self.max_waiting_compiles,
            budget: std::time::Duration::from_millis(self.compile_budget_ms),
            memory_mb: self.max_compile_memory_mb,
        }
    }

    /// The sandbox's sizes: the pool, each tenant's share of it, and the memory budget.
    pub fn sandbox_options(&self) -> SandboxOptions {
        SandboxOptions {
            max_concurrent_calls: self.max_concurrent_calls,
            max_calls_per_tenant: self
                .max_calls_per_tenant
                .unwrap_or(self.max_concurrent_calls.div_ceil(4)),
            memory_budget_mb: self
                .max_memory_in_flight_mb
                .unwrap_or_else(default_memory_budget_mb),
        }
    }

    /// Reads and checks a config file. Relative plugin paths become relative to its folder.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML, has unknown keys, or a flow is invalid.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Self {
        // The embedded text is fixed and covered by a test, so it always parses.
        Self::parse(EMBEDDED_DEFAULT, "embedded default", Path::new("."))
            .expect("the embedded default configuration is valid")
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// Invalid TOML, unknown keys, or an invalid flow.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: ServerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if config.max_query_bytes == 0 {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: "max_query_bytes must be at least 1".into(),
            });
        }
        if config.max_concurrent_calls == 0 {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: "max_concurrent_calls must be at least 1".into(),
            });
        }
        if let Some(per_tenant) = config.max_calls_per_tenant
            && !(1..=config.max_concurrent_calls).contains(&per_tenant)
        {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: format!(
                    "max_calls_per_tenant must be between 1 and max_concurrent_calls ({}), not \
                     {per_tenant}",
                    config.max_concurrent_calls
                ),
            });
        }
        let timeouts = [
            config.header_timeout_ms,
            config.admin_timeout_ms,
            config.upload_timeout_ms,
        ];
        if config.max_concurrent_compiles == 0 || config.compile_budget_ms == 0 {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: "max_concurrent_compiles and compile_budget_ms must be at least 1".into(),
            });
        }
        if !(MIN_COMPILE_MEMORY_MB..=MAX_COMPILE_MEMORY_MB).contains(&config.max_compile_memory_mb)
        {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: format!(
                    "max_compile_memory_mb must be between {MIN_COMPILE_MEMORY_MB} and \
                     {MAX_COMPILE_MEMORY_MB}, not {}",
                    config.max_compile_memory_mb
                ),
            });
        }
        if config.max_connections == 0 || timeouts.contains(&0) {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: "max_connections, header_timeout_ms, admin_timeout_ms and \
                          upload_timeout_ms must be at least 1"
                    .into(),
            });
        }
        if config.max_memory_in_flight_mb == Some(0) {
            return Err(ConfigError::Parse {
                origin: origin.to_owned(),
                message: "max_memory_in_flight_mb must be at least 1".into(),
            });
        }
        config
            .async_queue
            .validate()
            .map_err(|message| ConfigError::Parse {
                origin: origin.to_owned(),
                message,
            })?;
        config
            .outbound
            .options()
            .map_err(|message| ConfigError::Parse {
                origin: origin.to_owned(),
                message,
            })?;
        if let Some(url) = &mut config.public_url {
            *url = check_public_url(url).map_err(|message| ConfigError::Parse {
                origin: origin.to_owned(),
                message,
            })?;
        }
        for path in [&mut config.data_dir, &mut config.secrets_key_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        let mut seen = HashSet::new();
        for flow in &mut config.flows {
            let fail = |message: String| ConfigError::Flow {
                origin: origin.to_owned(),
                tenant: flow.tenant.clone(),
                flow: flow.name.clone(),
                message,
            };
            flow.validate().map_err(fail)?;
            if !seen.insert((flow.tenant.clone(), flow.name.clone())) {
                return Err(fail("defined twice".into()));
            }
            if let PluginSource::File(path) = &mut flow.plugin
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }
}

/// A `public_url` is an `http` or `https` URL with a host, no user, query or fragment; it is
/// kept without its trailing slashes, so that a Passthru path can follow it.
fn check_public_url(url: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("public_url {url:?} {why}"));
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("must start with https:// or http://");
    };
    if !matches!(scheme, "https" | "http") {
        return refuse("must start with https:// or http://");
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return refuse("has no host");
    }
    if host.contains('@') {
        return refuse("must not hold credentials (the server adds a flow's own)");
    }
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("must not hold a query, a fragment or white space");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowMode, StatusMap};
    use crate::sandbox::{Branch, Limits};

    fn parse(text: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(text, "test.toml", Path::new("/etc/passthru"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_embedded_default_parses() {
        let c = ServerConfig::embedded_default();
        assert_eq!(c.flows.len(), 3);
        assert_eq!(c.flows[0].plugin, PluginSource::Builtin("ivr-menu".into()));
        assert_eq!(c.flows[2].settings.mode, FlowMode::Async);
        assert_eq!(c.flows[0].settings.status, StatusMap::default());
        assert_eq!(c.flows[0].settings.limits, Limits::default());
    }

    #[test]
    fn a_full_flow_parses_and_paths_are_relative_to_the_file() {
        let c = parse(
            r#"
            listen = "127.0.0.1:9000"
            max_query_bytes = 4096
            [[flow]]
            tenant = "acme"
            name = "vip_line"
            plugin = "plugins/vip.wasm"
            fallback = "success"
            [flow.status]
            success = 204
            [flow.limits]
            fuel = 5000
            deadline_ms = 20
            [flow.config]
            vip_numbers = "1,2"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.max_query_bytes, 4096);
        let f = &c.flows[0];
        assert_eq!(
            f.plugin,
            PluginSource::File("/etc/passthru/plugins/vip.wasm".into())
        );
        assert_eq!(f.settings.fallback, Branch::Success);
        assert_eq!(
            f.settings.status,
            StatusMap {
                success: 204,
                failure: 302
            }
        );
        assert_eq!(f.settings.limits.fuel, 5000);
        assert_eq!(f.settings.limits.deadline_ms, 20);
        assert_eq!(f.settings.limits.memory_mb, Limits::default().memory_mb);
        assert_eq!(f.settings.config["vip_numbers"], "1,2");
    }

    #[test]
    fn a_compile_gets_two_gibibytes_unless_the_file_says_otherwise() {
        assert_eq!(parse("").unwrap().compile_limits().memory_mb, 2048);
        let c = parse("max_compile_memory_mb = 512").unwrap();
        assert_eq!(c.compile_limits().memory_mb, 512);
    }

    #[test]
    fn a_public_url_is_checked_and_kept_without_its_trailing_slash() {
        let c = parse("public_url = \"https://passthru.example.com/exotel/\"").unwrap();
        assert_eq!(
            c.public_url.as_deref(),
            Some("https://passthru.example.com/exotel")
        );
        assert_eq!(parse("").unwrap().public_url, None);
        for bad in [
            "passthru.example.com",
            "ftp://passthru.example.com",
            "https://",
            "https://u:p@passthru.example.com",
            "https://passthru.example.com/?a=1",
        ] {
            let err = parse(&format!("public_url = {bad:?}")).expect_err(bad);
            assert!(err.contains("public_url"), "{err}");
        }
    }

    #[test]
    fn bad_files_are_refused_with_a_message_that_names_the_problem() {
        let flow = |extra: &str| {
            format!("[[flow]]\ntenant = \"t\"\nname = \"f\"\nplugin = \"p.wasm\"\n{extra}")
        };
        let cases = [
            (flow("colour = \"red\""), "colour"),
            (flow("[flow.limits]\nfuell = 5"), "fuell"),
            (flow("[flow.status]\nsucess = 200"), "sucess"),
            (flow("fallback = \"maybe\""), "maybe"),
            (flow("[flow.limits]\ndeadline_ms = 0"), "deadline_ms"),
            (flow("[flow.limits]\nmemory_mb = 999999"), "memory_mb"),
            (flow("[flow.limits]\nfuel = 0"), "fuel"),
            (flow("[flow.status]\nsuccess = 302"), "must differ"),
            (flow("[flow.status]\nfailure = 99"), "status.failure"),
            (flow("[flow.retry]\nmax_attempts = 0"), "retry.max_attempts"),
            (flow("[flow.retry]\nmax_attemps = 3"), "max_attemps"),
            // The same check as the API's: a config the API would refuse is refused here too.
            (
                flow(&format!("[flow.config]\nk = \"{}\"", "v".repeat(70_000))),
                "config holds",
            ),
            (
                "[[flow]]\ntenant = \"t\"\nname = \"f\"\n".to_owned(),
                "plugin",
            ),
            (flow("").replace("\"t\"", "\"../etc\""), "'-' and '_'"),
            (flow("").replace("\"f\"", "\"\""), "must not be empty"),
            (
                flow("").replace("\"f\"", &format!("\"{}\"", "x".repeat(65))),
                "longer",
            ),
            (format!("{}\n{}", flow(""), flow("")), "defined twice"),
            ("listen = \"nowhere\"".to_owned(), "listen"),
            ("max_query_bytes = 0".to_owned(), "max_query_bytes"),
            (
                "max_compile_memory_mb = 16".to_owned(),
                "max_compile_memory_mb",
            ),
            (
                "max_compile_memory_mb = 99999999".to_owned(),
                "max_compile_memory_mb",
            ),
            ("not toml at all".to_owned(), "test.toml"),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
