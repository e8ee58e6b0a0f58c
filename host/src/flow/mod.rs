//! A flow's own vocabulary: how it is called, what it answers, what it allows its plugin, how it
//! retries, and what its names may hold.
//!
//! [`FlowSettings`] is declared once, here, and checked by one [`FlowSettings::validate`]. The
//! config file's `[[flow]]` ([`FlowSpec`]), the API's request body and the store's record all embed
//! it (`#[serde(flatten)]`), so the file and the API accept exactly the same settings.
//!
//! This module sits just above the sandbox: it uses the sandbox's [`Limits`] and [`Branch`], and
//! everything that handles flows (store, registry, queue, config, API) uses it.

pub mod canary;
pub mod http;
pub mod retry;
pub mod url_auth;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use retry::RetryPolicy;
pub use url_auth::{UrlAuth, UrlAuthKind};

use crate::answer::{ConnectPlan, GatherPlan, check_case, check_text};
use crate::kv::MAX_FLOW_STORES;
use crate::sandbox::{Branch, HookExport, Limits};

/// The longest tenant, flow or plugin name.
pub const MAX_NAME_BYTES: usize = 64;
/// The most bytes of keys and values a flow's config may hold.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// The OpenAPI schema of a tenant, flow or plugin name: what [`validate_name`] accepts. Used only
/// in the API's description (`#[schema(value_type = Name)]`); names are `String`s.
pub struct Name;

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "A tenant, flow or plugin name: ASCII letters, digits, '-' and '_'.",
            ))
            .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{MAX_NAME_BYTES}}}$")))
            .into()
    }
}

impl utoipa::ToSchema for Name {}

/// Tenant, flow and plugin names appear in URLs, file names and logs: ASCII letters, digits, `-`
/// and `_`, at most [`MAX_NAME_BYTES`] bytes.
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

/// How a flow is called: `sync` answers the call flow with the branch the plugin's `decide`
/// export picks; `async` answers `200` once the request is stored, and runs the plugin's `record`
/// export in the background, with retries. A flow can only be bound to a version that exports
/// what its mode calls (422 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowMode {
    #[default]
    Sync,
    Async,
}

impl FlowMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowMode::Sync => "sync",
            FlowMode::Async => "async",
        }
    }

    /// The plugin export this mode calls.
    pub fn export(self) -> &'static str {
        match self {
            FlowMode::Sync => "decide",
            FlowMode::Async => "record",
        }
    }
}

/// Which of Exotel's URL hooks a flow serves: what its plugin is called for, and what it
/// answers. A flow can only be bound to a version that exports what its hook calls (422
/// otherwise). Every hook but `passthru` runs in sync mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// The Passthru applet: a branch (`decide`), or in async mode the request queued (`record`).
    #[default]
    Passthru,
    /// A Passthru applet followed by a Switchcase: a branch and a case (`select`).
    Switch,
    /// A Greeting (or Menu) applet's text from URL (`greeting`): `text/plain`.
    Greeting,
    /// An SMS applet's dynamic reply (`sms`): `text/plain`.
    Sms,
    /// A Connect applet's dynamic URL (`connect`): a plan as JSON.
    Connect,
    /// A Gather applet's dynamic URL (`gather`): a plan as JSON.
    Gather,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Passthru => "passthru",
            Hook::Switch => "switch",
            Hook::Greeting => "greeting",
            Hook::Sms => "sms",
            Hook::Connect => "connect",
            Hook::Gather => "gather",
        }
    }

    /// The export a hook other than `passthru` calls.
    pub fn export(self) -> Option<HookExport> {
        match self {
            Hook::Passthru => None,
            Hook::Switch => Some(HookExport::Select),
            Hook::Greeting => Some(HookExport::Greeting),
            Hook::Sms => Some(HookExport::Sms),
            Hook::Connect => Some(HookExport::Connect),
            Hook::Gather => Some(HookExport::Gather),
        }
    }
}

/// The HTTP status answered for each branch. Exotel's Passthru reads `200` as one branch and
/// `302` as the other; the `302` carries no `Location` and is not a redirect. An omitted status
/// takes its default; the server answers 422 unless both are from 200 to 599 and they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StatusMap {
    /// The status of the success branch.
    #[schema(minimum = 200, maximum = 599)]
    pub success: u16,
    /// The status of the failure branch.
    #[schema(minimum = 200, maximum = 599)]
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

/// Everything a flow says about how it runs, apart from which plugin version it runs. The same
/// shape in the config file, the API and the store; every setting may be omitted and takes its
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct FlowSettings {
    /// `sync` (the default: `decide` picks the branch) or `async` (`record` runs in the
    /// background).
    pub mode: FlowMode,
    /// The HTTP status of each branch.
    pub status: StatusMap,
    /// Which Exotel URL hook the flow serves (`passthru` by default).
    pub hook: Hook,
    /// The branch answered when the plugin fails (fuel, deadline, memory, trap), within the
    /// deadline (`passthru` and `switch` hooks).
    pub fallback: Branch,
    /// `switch` hook: the Switchcase case answered with the fallback branch when the plugin
    /// fails; none sends the fallback branch without a body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_case: Option<String>,
    /// `greeting` and `sms` hooks (required for them): the text answered when the plugin fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_text: Option<String>,
    /// `connect` hook (required for it): the plan answered when the plugin fails, such as the
    /// support team's numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_connect: Option<ConnectPlan>,
    /// `gather` hook (required for it): the plan answered when the plugin fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_gather: Option<GatherPlan>,
    /// What one call of the plugin may use.
    pub limits: Limits,
    /// How an async flow retries failed events (kept but unused in sync mode).
    pub retry: RetryPolicy,
    /// What the plugin reads through its `config` import: at most 64 KiB of keys and values
    /// together.
    pub config: BTreeMap<String, String>,
    /// The tenant's key-value stores the plugin may open (at most 16 names); none by default.
    /// A store is created by its first key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Name>, max_items = 16)]
    pub kv_stores: Vec<String>,
    /// Where the plugin may send HTTP requests (`wasi:http`): `scheme://host[:port]` entries,
    /// `*.name` for any subdomain of a name, an IP address only when listed as such. Empty (the
    /// default): none at all. A listed name that resolves to a private, loopback or other
    /// special address is refused all the same, unless the operator allows that range.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["https://crm.example.com", "https://*.example.net:8443"]))]
    pub outbound_hosts: Vec<String>,
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self {
            mode: FlowMode::default(),
            status: StatusMap::default(),
            hook: Hook::default(),
            fallback: Branch::Failure,
            fallback_case: None,
            fallback_text: None,
            fallback_connect: None,
            fallback_gather: None,
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            config: BTreeMap::new(),
            kv_stores: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }
}

impl FlowSettings {
    /// The one check of a flow's settings, for the config file, the API and the store alike.
    ///
    /// # Errors
    /// A message naming the first setting out of range.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        self.status.validate()?;
        self.retry.validate()?;
        self.validate_hook()?;
        self.validate_kv_stores()?;
        crate::sandbox::outbound::OutboundHosts::parse(&self.outbound_hosts)?;
        let config_bytes: usize = self.config.iter().map(|(k, v)| k.len() + v.len()).sum();
        if config_bytes > MAX_CONFIG_BYTES {
            return Err(format!(
                "config holds {config_bytes} bytes; a flow may hold at most {MAX_CONFIG_BYTES}"
            ));
        }
        Ok(())
    }
}

impl FlowSettings {
    /// The export this flow calls: its hook's, or for `passthru` its mode's.
    pub fn export(&self) -> &'static str {
        match self.hook.export() {
            Some(export) => export.name(),
            None => self.mode.export(),
        }
    }

    /// At most [`MAX_FLOW_STORES`] store names, each a valid name, none twice.
    fn validate_kv_stores(&self) -> Result<(), String> {
        if self.kv_stores.len() > MAX_FLOW_STORES {
            return Err(format!(
                "kv_stores names {} stores; a flow may grant at most {MAX_FLOW_STORES}",
                self.kv_stores.len()
            ));
        }
        for (i, store) in self.kv_stores.iter().enumerate() {
            validate_name("kv_stores entry", store)?;
            if self.kv_stores[..i].contains(store) {
                return Err(format!("kv_stores names {store:?} twice"));
            }
        }
        Ok(())
    }

    /// A hook other than `passthru` runs in sync mode and has the fallback its answer needs.
    fn validate_hook(&self) -> Result<(), String> {
        let hook = self.hook.as_str();
        if self.hook != Hook::Passthru && self.mode == FlowMode::Async {
            return Err(format!(
                "a flow whose hook is {hook} runs in sync mode only"
            ));
        }
        let fallbacks = [
            ("fallback_case", self.fallback_case.is_some(), Hook::Switch),
            (
                "fallback_text",
                self.fallback_text.is_some(),
                Hook::Greeting,
            ),
            (
                "fallback_connect",
                self.fallback_connect.is_some(),
                Hook::Connect,
            ),
            (
                "fallback_gather",
                self.fallback_gather.is_some(),
                Hook::Gather,
            ),
        ];
        for (name, set, owner) in fallbacks {
            let owned = owner == self.hook || (owner == Hook::Greeting && self.hook == Hook::Sms);
            if set && !owned {
                return Err(format!("{name} is for another hook than {hook}"));
            }
        }
        if let Some(case) = &self.fallback_case {
            check_case(case).map_err(|e| format!("fallback_case: {e}"))?;
        }
        match self.hook {
            Hook::Greeting | Hook::Sms => {
                let text = self.fallback_text.as_deref().ok_or_else(|| {
                    format!("a flow whose hook is {hook} needs fallback_text, its answer when the plugin fails")
                })?;
                check_text(text).map_err(|e| format!("fallback_text: {e}"))
            }
            Hook::Connect => self
                .fallback_connect
                .as_ref()
                .ok_or_else(|| "a flow whose hook is connect needs fallback_connect, its plan when the plugin fails".to_owned())?
                .check()
                .map_err(|e| format!("fallback_connect: {e}")),
            Hook::Gather => self
                .fallback_gather
                .as_ref()
                .ok_or_else(|| "a flow whose hook is gather needs fallback_gather, its plan when the plugin fails".to_owned())?
                .check()
                .map_err(|e| format!("fallback_gather: {e}")),
            Hook::Passthru | Hook::Switch => Ok(()),
        }
    }
}

/// Where a config file's plugin comes from.
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

/// A flow as the config file declares it: one `[[flow]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub tenant: String,
    pub name: String,
    /// A path to a `.wasm` component (relative paths are resolved against the config file's
    /// folder), or `builtin:NAME` for an example compiled into the binary.
    pub plugin: PluginSource,
    #[serde(flatten)]
    pub settings: FlowSettings,
}

impl FlowSpec {
    /// Checks the names and the settings.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_name("tenant", &self.tenant)?;
        validate_name("flow name", &self.name)?;
        self.settings.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn one_check_covers_every_setting() {
        assert!(FlowSettings::default().validate().is_ok());
        let with = |change: fn(&mut FlowSettings)| {
            let mut settings = FlowSettings::default();
            change(&mut settings);
            settings.validate().unwrap_err()
        };
        assert!(with(|s| s.limits.fuel = 0).contains("fuel"));
        assert!(with(|s| s.status.failure = 200).contains("must differ"));
        assert!(with(|s| s.retry.max_attempts = 0).contains("retry.max_attempts"));
        let big = with(|s| {
            s.config.insert("k".into(), "v".repeat(MAX_CONFIG_BYTES));
        });
        assert!(big.contains("config holds"), "{big}");
    }

    #[test]
    fn the_file_and_the_api_shapes_refuse_unknown_keys_beside_the_embedded_settings() {
        let spec: Result<FlowSpec, _> = serde_json::from_str(
            r#"{"tenant":"t","name":"f","plugin":"p.wasm","mode":"async","colour":"red"}"#,
        );
        assert!(spec.unwrap_err().to_string().contains("colour"));
        let spec: FlowSpec = serde_json::from_str(
            r#"{"tenant":"t","name":"f","plugin":"builtin:x","mode":"async","fallback":"success"}"#,
        )
        .unwrap();
        assert_eq!(spec.plugin, PluginSource::Builtin("x".into()));
        assert_eq!(spec.settings.mode, FlowMode::Async);
        assert_eq!(spec.settings.fallback, Branch::Success);
        assert_eq!(spec.settings.limits, Limits::default());
    }
}
