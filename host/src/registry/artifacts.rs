//! The data directory's files: uploaded components (`blobs/SHA256.wasm`) and their compiled
//! artifacts (`artifacts/SHA256-ENGINE.cwasm`), each written atomically (temporary file, fsync,
//! rename). An artifact's SHA-256 is recorded in the store; one that does not match, or that
//! wasmtime refuses, is compiled again from its blob, never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::RegistryError;
use crate::sandbox::{Plugin, Sandbox, hex_sha256};
use crate::store::Store;

pub(super) struct ArtifactCache {
    blobs: PathBuf,
    artifacts: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub(super) fn open(data_dir: &Path, engine_key: String) -> Result<Self, RegistryError> {
        let blobs = data_dir.join("blobs");
        let artifacts = data_dir.join("artifacts");
        for dir in [&blobs, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self {
            blobs,
            artifacts,
            engine_key,
        })
    }

    /// Removes a component's blob, its compiled artifact and the artifact's checksum: for
    /// content no version uses any more.
    pub(super) fn remove(&self, store: &dyn Store, sha256: &str) -> Result<(), RegistryError> {
        let key = self.artifact_key(sha256);
        store.delete_artifact_checksum(&key)?;
        store.delete_blob(sha256)?;
        for path in [
            self.artifacts.join(format!("{key}.cwasm")),
            self.blob_path(sha256),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RegistryError::Io {
                        action: "remove",
                        path,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs.join(format!("{sha256}.wasm"))
    }

    fn artifact_key(&self, sha256: &str) -> String {
        format!("{sha256}-{}", self.engine_key)
    }

    /// Keeps a component's bytes: in the shared store when it keeps them (so every node can
    /// compile them), and on this node's disk.
    pub(super) fn put_blob(
        &self,
        store: &dyn Store,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        store.put_blob(sha256, bytes)?;
        let path = self.blob_path(sha256);
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    /// A component's bytes: from this node's disk, else from the shared store (and then kept on
    /// disk), checked against their hash either way.
    pub(super) fn blob(&self, store: &dyn Store, sha256: &str) -> Result<Vec<u8>, RegistryError> {
        let path = self.blob_path(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                match store.blob(sha256)? {
                    Some(bytes) if hex_sha256(&bytes) == sha256 => {
                        write_atomically(&path, &bytes)?;
                        return Ok(bytes);
                    }
                    Some(_) => {
                        return Err(RegistryError::Corrupt {
                            path: PathBuf::from(format!("the database's blob {sha256}")),
                        });
                    }
                    None => {
                        return Err(RegistryError::Io {
                            action: "read",
                            path,
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                return Err(RegistryError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        if hex_sha256(&bytes) != sha256 {
            return Err(RegistryError::Corrupt { path });
        }
        Ok(bytes)
    }

    pub(super) fn put_artifact(
        &self,
        store: &dyn Store,
        sha256: &str,
        artifact: &[u8],
    ) -> Result<(), RegistryError> {
        let key = self.artifact_key(sha256);
        write_atomically(&self.artifacts.join(format!("{key}.cwasm")), artifact)?;
        store.put_artifact_checksum(&key, &hex_sha256(artifact))?;
        Ok(())
    }

    /// Loads a plugin from its artifact, or says why it cannot.
    pub(super) fn load(
        &self,
        store: &dyn Store,
        sandbox: &Sandbox,
        sha256: &str,
    ) -> Result<Plugin, RegistryError> {
        let key = self.artifact_key(sha256);
        let checksum = store
            .artifact_checksum(&key)?
            .ok_or_else(|| RegistryError::NotFound {
                what: format!("a compiled artifact for this engine ({key})"),
            })?;
        let path = self.artifacts.join(format!("{key}.cwasm"));
        let bytes = std::fs::read(&path).map_err(|source| RegistryError::Io {
            action: "read",
            path,
            source,
        })?;
        Ok(sandbox.load_artifact(&bytes, &checksum)?)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let io = |source: std::io::Error| RegistryError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    // Unique among this process's writes (the counter) and other processes' (the pid).
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}
