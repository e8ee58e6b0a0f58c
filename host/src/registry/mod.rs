//! The flows the server answers, each bound to a compiled plugin.
//!
//! Plugins are compiled once, when the table is built (at start-up), and shared by every flow that
//! names the same source. The request path only looks a flow up: two hash lookups by `&str`, no
//! lock, no allocation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{FlowSpec, PluginSource, StatusMap};
use crate::sandbox::{Branch, FlowConfig, Limits, Plugin, Sandbox, SandboxError};

/// The example plugins built into the binary (by `build.rs`, from `plugins/`).
const BUILTINS: &[(&str, &[u8])] = &[
    ("ivr-menu", include_bytes!(env!("PASSTHRU_PLUGIN_IVR_MENU"))),
    (
        "vip-caller",
        include_bytes!(env!("PASSTHRU_PLUGIN_VIP_CALLER")),
    ),
];

/// The bytes of a built-in example plugin, by name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("flow {tenant}/{flow}: no built-in plugin is called {name:?} (there are: {known})")]
    UnknownBuiltin {
        tenant: String,
        flow: String,
        name: String,
        known: String,
    },
    #[error("flow {tenant}/{flow}: cannot read plugin {path}: {source}")]
    Read {
        tenant: String,
        flow: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("flow {tenant}/{flow}: plugin {plugin}: {source}")]
    Compile {
        tenant: String,
        flow: String,
        plugin: String,
        source: SandboxError,
    },
}

/// One flow, ready to answer.
#[derive(Debug)]
pub struct Flow {
    pub tenant: String,
    pub name: String,
    pub plugin: Arc<Plugin>,
    /// Where the plugin came from, for logs.
    pub source: String,
    pub fallback: Branch,
    pub status: StatusMap,
    pub limits: Limits,
    pub config: Arc<FlowConfig>,
}

/// Every flow of every tenant, immutable once built.
#[derive(Debug, Default)]
pub struct FlowTable {
    tenants: HashMap<String, HashMap<String, Arc<Flow>>>,
}

impl FlowTable {
    /// Reads and compiles the plugin of every flow (each distinct source once).
    ///
    /// CPU-heavy: run it off the async runtime.
    ///
    /// # Errors
    /// The first flow whose plugin cannot be read or is not a valid plugin.
    pub fn load(sandbox: &Sandbox, specs: &[FlowSpec]) -> Result<Self, RegistryError> {
        let mut compiled: HashMap<&PluginSource, Arc<Plugin>> = HashMap::new();
        let mut table = FlowTable::default();
        for spec in specs {
            let plugin = match compiled.get(&spec.plugin) {
                Some(plugin) => plugin.clone(),
                None => {
                    let plugin = Arc::new(compile_source(sandbox, spec)?);
                    compiled.insert(&spec.plugin, plugin.clone());
                    plugin
                }
            };
            let flow = Flow {
                tenant: spec.tenant.clone(),
                name: spec.name.clone(),
                plugin,
                source: spec.plugin.to_string(),
                fallback: spec.fallback,
                status: spec.status,
                limits: spec.limits,
                config: Arc::new(spec.config.clone()),
            };
            table
                .tenants
                .entry(spec.tenant.clone())
                .or_default()
                .insert(spec.name.clone(), Arc::new(flow));
        }
        Ok(table)
    }

    /// The flow `tenant/flow`, if there is one.
    pub fn get(&self, tenant: &str, flow: &str) -> Option<&Arc<Flow>> {
        self.tenants.get(tenant)?.get(flow)
    }

    /// How many flows the table holds.
    pub fn len(&self) -> usize {
        self.tenants.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn compile_source(sandbox: &Sandbox, spec: &FlowSpec) -> Result<Plugin, RegistryError> {
    let bytes: std::borrow::Cow<'static, [u8]> = match &spec.plugin {
        PluginSource::Builtin(name) => builtin(name)
            .ok_or_else(|| RegistryError::UnknownBuiltin {
                tenant: spec.tenant.clone(),
                flow: spec.name.clone(),
                name: name.clone(),
                known: BUILTINS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .into(),
        PluginSource::File(path) => std::fs::read(path)
            .map_err(|source| RegistryError::Read {
                tenant: spec.tenant.clone(),
                flow: spec.name.clone(),
                path: path.clone(),
                source,
            })?
            .into(),
    };
    sandbox
        .compile(&bytes)
        .map_err(|source| RegistryError::Compile {
            tenant: spec.tenant.clone(),
            flow: spec.name.clone(),
            plugin: spec.plugin.to_string(),
            source,
        })
}
