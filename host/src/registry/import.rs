//! Flows from the config file are imported into the store at start: the file is declarative, so
//! at each start its flows are set to what it says (uploading a plugin only when its content is
//! new). Flows created through the API are left alone.

use std::sync::Arc;

use super::{Registry, RegistryError, blocking, builtin};
use crate::flow::{FlowSpec, MAX_NAME_BYTES, PluginSource, UrlAuth, validate_name};
use crate::store::{FlowRecord, StoreError, TenantCaps};

#[derive(Debug, thiserror::Error)]
#[error("flow {tenant}/{flow} (plugin {plugin})")]
pub struct ImportError {
    pub tenant: String,
    pub flow: String,
    pub plugin: String,
    pub source: Box<RegistryError>,
}

impl Registry {
    /// Sets every flow of the config file in the store and the live table.
    ///
    /// # Errors
    /// The first flow whose plugin cannot be read or is invalid, or whose tenant's caps refuse
    /// its limits.
    pub async fn import(self: &Arc<Self>, specs: &[FlowSpec]) -> Result<usize, ImportError> {
        let fail = |spec: &FlowSpec, source| ImportError {
            tenant: spec.tenant.clone(),
            flow: spec.name.clone(),
            plugin: spec.plugin.to_string(),
            source: Box::new(source),
        };
        // A tenant the file creates gets caps that fit all of its flows in the file, not only
        // the first one imported. The plugins are read one at a time, as each is imported.
        let mut needs = std::collections::HashMap::<&str, Needs>::new();
        for spec in specs {
            let len = plugin_len(spec).map_err(|e| fail(spec, e))?;
            needs
                .entry(spec.tenant.as_str())
                .or_default()
                .add(spec, len);
        }
        let caps: std::collections::HashMap<&str, TenantCaps> =
            needs.iter().map(|(&t, n)| (t, n.caps())).collect();
        let mut changed = 0;
        for spec in specs {
            if self
                .import_one(spec, caps[spec.tenant.as_str()])
                .await
                .map_err(|e| fail(spec, e))?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn import_one(
        self: &Arc<Self>,
        spec: &FlowSpec,
        caps: TenantCaps,
    ) -> Result<bool, RegistryError> {
        let (plugin, bytes) = read_plugin(spec)?;
        let this = self.clone();
        let spec_for_task = spec.clone();
        let (version, unchanged) = blocking(move || {
            let spec = spec_for_task;
            match this.store.get_tenant(&spec.tenant) {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    this.store.create_tenant(&spec.tenant, &caps)?;
                    this.kv.set_caps(&spec.tenant, caps.kv());
                }
                Err(e) => return Err(e.into()),
            }
            let (version, _) = this.upload(&spec.tenant, &plugin, &bytes)?;
            let unchanged = match this.store.get_flow(&spec.tenant, &spec.name) {
                Ok(current) => {
                    current.plugin == version.plugin
                        && current.version == version.version
                        && current.settings == spec.settings
                }
                Err(_) => false,
            };
            Ok((version, unchanged))
        })
        .await?;
        if unchanged {
            return Ok(false);
        }
        self.put_flow(FlowRecord {
            tenant: spec.tenant.clone(),
            name: spec.name.clone(),
            plugin: version.plugin,
            version: version.version,
            previous_version: None,
            settings: spec.settings.clone(),
            // Kept from the stored flow by `Registry::put_flow`: a PUT never changes them.
            auth: UrlAuth::default(),
            secrets: Vec::new(),
            canary: None,
            updated_at_ms: 0,
        })
        .await?;
        Ok(true)
    }
}

/// A built-in plugin's bytes, or why there are none.
fn builtin_bytes(name: &str) -> Result<&'static [u8], RegistryError> {
    builtin(name).ok_or_else(|| {
        RegistryError::BadRequest(format!(
            "no built-in plugin is called {name:?} (there are: {})",
            super::BUILTIN_NAMES.join(", ")
        ))
    })
}

fn read_error(path: &std::path::Path, source: std::io::Error) -> RegistryError {
    RegistryError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    }
}

/// The size of a flow's plugin, without reading it.
fn plugin_len(spec: &FlowSpec) -> Result<u64, RegistryError> {
    match &spec.plugin {
        PluginSource::Builtin(name) => Ok(builtin_bytes(name)?.len() as u64),
        PluginSource::File(path) => std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| read_error(path, e)),
    }
}

/// The name a flow's plugin is uploaded under and its bytes: a built-in's or the file's.
fn read_plugin(spec: &FlowSpec) -> Result<(String, Vec<u8>), RegistryError> {
    match &spec.plugin {
        PluginSource::Builtin(name) => Ok((name.clone(), builtin_bytes(name)?.to_vec())),
        PluginSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
            Ok((plugin_name_for(path), bytes))
        }
    }
}

/// What one tenant's flows in the file need of its caps.
#[derive(Default)]
struct Needs {
    flows: u32,
    fuel: u64,
    deadline_ms: u64,
    memory_mb: u64,
    plugin_bytes: u64,
    stored_bytes: u64,
}

impl Needs {
    fn add(&mut self, spec: &FlowSpec, plugin_bytes: u64) {
        let limits = &spec.settings.limits;
        self.flows += 1;
        self.fuel = self.fuel.max(limits.fuel);
        self.deadline_ms = self.deadline_ms.max(limits.deadline_ms);
        self.memory_mb = self.memory_mb.max(limits.memory_mb);
        self.plugin_bytes = self.plugin_bytes.max(plugin_bytes);
        // Each flow may name a plugin of its own, so a version of its own.
        self.stored_bytes += plugin_bytes;
    }

    /// The defaults, raised where the flows need more: the file is the operator's, so its
    /// tenants get room for all of its flows.
    fn caps(&self) -> TenantCaps {
        let d = TenantCaps::default();
        TenantCaps {
            max_plugin_bytes: d.max_plugin_bytes.max(self.plugin_bytes),
            max_fuel: d.max_fuel.max(self.fuel),
            max_deadline_ms: d.max_deadline_ms.max(self.deadline_ms),
            max_memory_mb: d.max_memory_mb.max(self.memory_mb),
            max_flows: d.max_flows.max(self.flows),
            max_versions: d.max_versions.max(self.flows),
            max_stored_bytes: d.max_stored_bytes.max(self.stored_bytes),
            ..d
        }
    }
}

/// A plugin name from a file name: its stem, with anything a name may not hold turned into `-`.
fn plugin_name_for(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_BYTES)
        .collect();
    if validate_name("plugin", &name).is_err() {
        name = "plugin".to_owned();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::plugin_name_for;
    use std::path::Path;

    #[test]
    fn plugin_names_come_from_file_stems() {
        assert_eq!(plugin_name_for(Path::new("/a/ivr-menu.wasm")), "ivr-menu");
        assert_eq!(
            plugin_name_for(Path::new("my plugin.v2.wasm")),
            "my-plugin-v2"
        );
        assert_eq!(plugin_name_for(Path::new("/")), "plugin");
    }
}
