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
        let mut per_tenant = std::collections::HashMap::<&str, u32>::new();
        for spec in specs {
            *per_tenant.entry(spec.tenant.as_str()).or_default() += 1;
        }
        let mut changed = 0;
        for spec in specs {
            let fail = |source| ImportError {
                tenant: spec.tenant.clone(),
                flow: spec.name.clone(),
                plugin: spec.plugin.to_string(),
                source: Box::new(source),
            };
            if self
                .import_one(spec, per_tenant[spec.tenant.as_str()])
                .await
                .map_err(fail)?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn import_one(
        self: &Arc<Self>,
        spec: &FlowSpec,
        flows_in_file: u32,
    ) -> Result<bool, RegistryError> {
        let (plugin, bytes): (String, Vec<u8>) = match &spec.plugin {
            PluginSource::Builtin(name) => match builtin(name) {
                Some(bytes) => (name.clone(), bytes.to_vec()),
                None => {
                    return Err(RegistryError::BadRequest(format!(
                        "no built-in plugin is called {name:?} (there are: {})",
                        super::BUILTIN_NAMES.join(", ")
                    )));
                }
            },
            PluginSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| RegistryError::Io {
                    action: "read",
                    path: path.clone(),
                    source,
                })?;
                (plugin_name_for(path), bytes)
            }
        };
        let this = self.clone();
        let spec_for_task = spec.clone();
        let (version, unchanged) = blocking(move || {
            let spec = spec_for_task;
            let needed = TenantCaps {
                max_fuel: spec.settings.limits.fuel,
                max_deadline_ms: spec.settings.limits.deadline_ms,
                max_memory_mb: spec.settings.limits.memory_mb,
                max_plugin_bytes: bytes.len() as u64,
                max_flows: flows_in_file,
                max_versions: 1,
                max_stored_bytes: bytes.len() as u64,
                max_concurrent_calls: 0,
                ..TenantCaps::default()
            };
            match this.store.get_tenant(&spec.tenant) {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    // The file is the operator's: its tenants get caps that fit its flows.
                    let d = TenantCaps::default();
                    let caps = TenantCaps {
                        max_plugin_bytes: d.max_plugin_bytes.max(needed.max_plugin_bytes),
                        max_fuel: d.max_fuel.max(needed.max_fuel),
                        max_deadline_ms: d.max_deadline_ms.max(needed.max_deadline_ms),
                        max_memory_mb: d.max_memory_mb.max(needed.max_memory_mb),
                        max_flows: d.max_flows.max(needed.max_flows),
                        max_versions: d.max_versions,
                        max_stored_bytes: d.max_stored_bytes.max(needed.max_stored_bytes),
                        max_concurrent_calls: d.max_concurrent_calls,
                        ..d
                    };
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
