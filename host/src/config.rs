//! The server's configuration file: where to listen, and the flows with their plugins.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
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
//! fuel = 10000000
//! deadline_ms = 50
//! memory_mb = 64
//! [flow.config]                           # what the plugin reads through `config`
//! vip_numbers = "09800000001"
//! ```
//!
//! Unknown keys are errors that name the key, so a typo never turns into a silent default.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::queue::{Bounds, QueueOptions, RetryPolicy};
use crate::sandbox::{Branch, Limits};
use crate::store::FlowMode;

/// The address `passthru serve` listens on when neither the file nor the command line says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Longest query string a Passthru request may carry; longer ones get `414`.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 16 * 1024;
/// Calls that may run at the same moment (the size of the instance pool).
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 256;
/// The longest tenant or flow name.
pub const MAX_NAME_BYTES: usize = 64;
/// Where the embedded store keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./passthru-data";
/// The largest plugin upload the server reads, whatever a tenant's cap says.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 128 << 20;
/// How long decision records are kept.
pub const DEFAULT_RECORD_RETENTION_HOURS: u64 = 7 * 24;

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
    /// `--data-dir` wins over this.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The operator's bearer token. `PASSTHRU_OPERATOR_TOKEN` wins over this; with neither, one
    /// is generated into `DATA_DIR/operator-token` at the first start.
    #[serde(default)]
    pub operator_token: Option<String>,
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
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
    #[serde(default, rename = "flow")]
    pub flows: Vec<FlowSpec>,
}

fn default_max_query_bytes() -> usize {
    DEFAULT_MAX_QUERY_BYTES
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

/// One `[[flow]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub tenant: String,
    pub name: String,
    /// A path to a `.wasm` component (relative paths are resolved against the config file's
    /// folder), or `builtin:NAME` for an example compiled into the binary.
    pub plugin: PluginSource,
    /// `sync` (the default: `decide` picks the branch) or `async` (`record` runs in the
    /// background).
    #[serde(default)]
    pub mode: FlowMode,
    /// How an async flow retries failed events.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The branch answered when the plugin fails (fuel, deadline, memory, trap).
    #[serde(default = "default_fallback")]
    pub fallback: Branch,
    #[serde(default)]
    pub status: StatusMap,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_fallback() -> Branch {
    Branch::Failure
}

/// The `[async]` table: the queue of async flows.
///
/// ```toml
/// [async]
/// workers = 4                     # attempts that run at once
/// max_depth = 100000              # events held in all; past it requests get 503
/// max_depth_per_tenant = 20000    # events one tenant may hold
/// max_in_flight_per_tenant = 2    # workers one tenant may hold at once
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncSettings {
    pub workers: usize,
    pub max_depth: usize,
    pub max_depth_per_tenant: usize,
    /// Default: half the workers, rounded up, so a tenant never holds them all.
    pub max_in_flight_per_tenant: Option<usize>,
}

impl Default for AsyncSettings {
    fn default() -> Self {
        Self {
            workers: 4,
            max_depth: 100_000,
            max_depth_per_tenant: 20_000,
            max_in_flight_per_tenant: None,
        }
    }
}

impl AsyncSettings {
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
        Ok(())
    }
}

/// Where a plugin's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginSource {
    File(PathBuf),
    Builtin(String),
}

impl<'de> Deserialize<'de> for PluginSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.strip_prefix("builtin:") {
            Some(name) => PluginSource::Builtin(name.to_owned()),
            None => PluginSource::File(PathBuf::from(s)),
        })
    }
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::File(path) => write!(f, "{}", path.display()),
            PluginSource::Builtin(name) => write!(f, "builtin:{name}"),
        }
    }
}

/// The HTTP status answered for each branch. Exotel's Passthru reads `200` as one branch and
/// `302` as the other; the `302` carries no `Location` and is not a redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusMap {
    pub success: u16,
    pub failure: u16,
}

impl Default for StatusMap {
    fn default() -> Self {
        Self {
            success: 200,
            failure: 302,
        }
    }
}

impl StatusMap {
    /// Both statuses must be real HTTP statuses from 200 to 599, and differ.
    ///
    /// # Errors
    /// A message naming the bad status.
    pub fn validate(&self) -> Result<(), String> {
        for (branch, code) in [("success", self.success), ("failure", self.failure)] {
            if !(200..=599).contains(&code) {
                return Err(format!(
                    "status.{branch} must be an HTTP status from 200 to 599, not {code}"
                ));
            }
        }
        if self.success == self.failure {
            return Err(
                "status.success and status.failure must differ, or the call flow cannot \
                 tell the branches apart"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn for_branch(&self, branch: Branch) -> u16 {
        match branch {
            Branch::Success => self.success,
            Branch::Failure => self.failure,
        }
    }
}

impl ServerConfig {
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
        config
            .async_queue
            .validate()
            .map_err(|message| ConfigError::Parse {
                origin: origin.to_owned(),
                message,
            })?;
        if let Some(dir) = &mut config.data_dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        let mut seen = HashSet::new();
        for flow in &mut config.flows {
            let fail = |message: String| ConfigError::Flow {
                origin: origin.to_owned(),
                tenant: flow.tenant.clone(),
                flow: flow.name.clone(),
                message,
            };
            validate_name("tenant", &flow.tenant).map_err(fail)?;
            validate_name("flow name", &flow.name).map_err(fail)?;
            if !seen.insert((flow.tenant.clone(), flow.name.clone())) {
                return Err(fail("defined twice".into()));
            }
            flow.limits.validate().map_err(fail)?;
            flow.status.validate().map_err(fail)?;
            flow.retry.validate().map_err(fail)?;
            if let PluginSource::File(path) = &mut flow.plugin
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }
}

/// Tenant and flow names appear in URLs and logs: ASCII letters, digits, `-` and `_`, at most
/// [`MAX_NAME_BYTES`] bytes.
///
/// # Errors
/// A message that says what is wrong with the name.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("{what} is longer than {MAX_NAME_BYTES} bytes"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what} {name:?} may hold only ASCII letters, digits, '-' and '_', not {bad:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, String> {
        ServerConfig::parse(text, "test.toml", Path::new("/etc/passthru"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_embedded_default_parses() {
        let c = ServerConfig::embedded_default();
        assert_eq!(c.flows.len(), 3);
        assert_eq!(c.flows[0].plugin, PluginSource::Builtin("ivr-menu".into()));
        assert_eq!(c.flows[2].mode, FlowMode::Async);
        assert_eq!(c.flows[0].status, StatusMap::default());
        assert_eq!(c.flows[0].limits, Limits::default());
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
        assert_eq!(f.fallback, Branch::Success);
        assert_eq!(
            f.status,
            StatusMap {
                success: 204,
                failure: 302
            }
        );
        assert_eq!(f.limits.fuel, 5000);
        assert_eq!(f.limits.deadline_ms, 20);
        assert_eq!(f.limits.memory_mb, Limits::default().memory_mb);
        assert_eq!(f.config["vip_numbers"], "1,2");
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
            ("not toml at all".to_owned(), "test.toml"),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("tenant", "demo-1_A").is_ok());
        for bad in [
            "",
            "a/b",
            "..",
            "a b",
            "tab\t",
            "é",
            &"x".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(validate_name("tenant", bad).is_err(), "{bad:?}");
        }
    }
}
