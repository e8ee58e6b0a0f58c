//! `passthru run`'s cache of compiled plugins, so that the edit-and-run loop compiles a plugin
//! once per content, not at every run (a Python or JavaScript component takes seconds).
//!
//! One file per component and engine, `SHA256-ENGINE.cwasm`, beside its own checksum
//! (`.sha256`); the folder is the user's (`PASSTHRU_CACHE_DIR`, else `$XDG_CACHE_HOME/passthru/run`,
//! else `~/.cache/passthru/run`), created private. An entry that is missing, does not match its
//! checksum, or that wasmtime refuses is compiled again and rewritten, never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::sandbox::{Plugin, Sandbox, SandboxError, hex_sha256};

/// The environment variable that moves the cache.
pub const CACHE_DIR_ENV: &str = "PASSTHRU_CACHE_DIR";

/// The cache folder this user's runs share, if a home can be found.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("passthru").join("run"))
}

/// How the plugin was made ready.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Loaded from the cache: no compile.
    Cached,
    /// Compiled now (and written to the cache, when there is one).
    Compiled,
}

/// Loads the compiled plugin for `bytes` from `dir`, or compiles it (saying so on stderr, since
/// it can take seconds) and stores it there. Returns how, and the compile time in milliseconds.
///
/// # Errors
/// The component is not valid. A cache that cannot be read or written only costs a compile.
pub fn load_or_compile(
    sandbox: &Sandbox,
    bytes: &[u8],
    dir: Option<&Path>,
    name: &str,
) -> Result<(Plugin, Source, u64), SandboxError> {
    let entry = dir.map(|dir| {
        let key = format!("{}-{}", hex_sha256(bytes), sandbox.compatibility_key());
        (
            dir.join(format!("{key}.cwasm")),
            dir.join(format!("{key}.sha256")),
        )
    });
    if let Some((artifact, checksum)) = &entry
        && let (Ok(code), Ok(sum)) = (std::fs::read(artifact), std::fs::read_to_string(checksum))
        && let Ok(plugin) = sandbox.load_artifact(&code, sum.trim())
    {
        return Ok((plugin, Source::Cached, 0));
    }
    match &entry {
        Some((artifact, _)) => eprintln!(
            "passthru: compiling {name} (new content for this passthru; cached in {} for the \
             next run)",
            artifact
                .parent()
                .map_or_else(String::new, |d| d.display().to_string())
        ),
        None => eprintln!("passthru: compiling {name} (no cache)"),
    }
    let started = Instant::now();
    let compiled = sandbox.compile_with_artifact(bytes)?;
    let compile_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some((artifact, checksum)) = &entry
        && let Err(error) = store(artifact, checksum, &compiled.artifact)
    {
        eprintln!(
            "passthru: cannot cache the compiled plugin in {}: {error}",
            artifact.display()
        );
    }
    Ok((compiled.plugin, Source::Compiled, compile_ms))
}

/// Writes the artifact, then its checksum, each through a temporary file and a rename, so a
/// reader never sees half of either.
fn store(artifact: &Path, checksum: &Path, code: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = artifact.parent() {
        create_private_dir(dir)?;
    }
    write_replacing(artifact, code)?;
    write_replacing(checksum, hex_sha256(code).as_bytes())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
