//! Build script: compiles the guest plugins in `plugins/` into WebAssembly components, so the
//! host's tests and benches run real Rust guests and no binary is ever checked in.
//!
//! It runs the same commands as `make -C plugins`, from the plugins folder and with the same
//! environment, so the two share one cache and neither rebuilds the other's work: `cargo build
//! --release --target <target> --target-dir <repo>/target/plugins -p ...` once per target (here
//! with `--locked`).
//! Plugins that need nothing of WASI are built for `wasm32-unknown-unknown` (linked into
//! components by `wasm-component-ld`, as `plugins/.cargo/config.toml` says): they import only
//! passthru's interfaces, which makes each call cheaper. Those that send HTTP requests or read
//! WASI's clocks, randomness or stdio are built for `wasm32-wasip2`. Each component is then
//! copied into `OUT_DIR` and its path exported to the host crate as `PASSTHRU_PLUGIN_<NAME>`, the
//! package name in upper snake case: `IVR_MENU`, `VIP_CALLER` and `HOSTILE` (they export
//! `decide-lean`), `HOOK_PROBE` (a plain `decide` and every hook), `CALL_LOGGER` and
//! `ASYNC_PROBE` (they export `record`):
//!
//! ```ignore
//! const IVR_MENU: &[u8] = include_bytes!(env!("PASSTHRU_PLUGIN_IVR_MENU"));
//! ```
//!
//! The copy means `make -C plugins clean` cannot leave the host pointing at a deleted file.
//!
//! `PASSTHRU_REPO_ROOT` overrides the repository root (by default the folder above this crate's
//! manifest); it exists to test this script from a scratch crate outside the repository.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target of plugins that need nothing of WASI: their components import only passthru's
/// interfaces. rustc links them with `wasm-component-ld` (`plugins/.cargo/config.toml`).
const BARE: &str = "wasm32-unknown-unknown";
/// The target of plugins that use WASI (outbound HTTP, clocks, randomness, stdio): rustc emits a
/// component for it, no adapter or post-processing needed.
const WASI: &str = "wasm32-wasip2";
/// Both, in the order they are built.
const TARGETS: [&str; 2] = [BARE, WASI];

/// Each plugin's crate folder under `plugins/`, its package name and its target.
const PLUGINS: &[(&str, &str, &str)] = &[
    ("ivr-menu", "ivr-menu", BARE),
    ("vip-caller", "vip-caller", BARE),
    ("call-logger", "call-logger", BARE),
    ("geo-router", "geo-router", BARE),
    ("agent-dialer", "agent-dialer", BARE),
    ("greeting", "greeting", BARE),
    ("sticky-agent", "sticky-agent", BARE),
    ("sms-reply", "sms-reply", BARE),
    ("ivr-gather", "ivr-gather", BARE),
    ("testing/async-probe", "async-probe", BARE),
    ("testing/hook-probe", "hook-probe", BARE),
    ("testing/lean-probe", "lean-probe", BARE),
    // Writes to stdout and stderr, and reads clocks, on purpose.
    ("testing/hostile", "hostile", WASI),
    // Outbound HTTP.
    ("crm-push", "crm-push", WASI),
    ("testing/outbound-probe", "outbound-probe", WASI),
    // WASI's clocks and randomness.
    ("testing/coin-flip", "coin-flip", WASI),
];

/// Library crates of the plugins workspace that the plugins build on (`passthru-sdk`): not
/// components themselves, but a change in them changes every plugin.
const LIBRARIES: &[&str] = &["sdk"];

/// Overrides the repository root; see the module docs.
const REPO_ROOT_ENV: &str = "PASSTHRU_REPO_ROOT";

/// Set by the outer cargo (or the user) and read by the inner one, where they would change the
/// plugins' fingerprints (so a `make -C plugins` and a host build would rebuild each other's
/// work) or break the build (clippy's wrapper, a host `--target`, another target dir).
/// `plugins/Makefile` unexports the same list. The jobserver (`CARGO_MAKEFLAGS`) stays, so the
/// inner cargo shares the outer one's `-j`.
const REMOVED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
];
/// Every variable with one of these prefixes is removed as well: they are cargo's `[build]` and
/// `[profile]` settings (`CARGO_BUILD_TARGET`, `CARGO_PROFILE_RELEASE_LTO`, ...).
const REMOVED_ENV_PREFIXES: &[&str] = &["CARGO_BUILD_", "CARGO_PROFILE_"];

fn main() {
    if let Err(message) = run() {
        panic!("{message}");
    }
}

fn run() -> Result<(), String> {
    let root = repo_root()?;
    let plugins_dir = root.join("plugins");
    let target_dir = root.join("target").join("plugins");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo did not set OUT_DIR")?);
    if !plugins_dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "no plugins workspace at {}: is {} the repository root? ({REPO_ROOT_ENV} overrides it)",
            plugins_dir.display(),
            root.display()
        ));
    }

    watch_inputs(&root, &plugins_dir);
    for target in TARGETS {
        ensure_wasm_target(&root, target)?;
        build_plugins(&plugins_dir, &target_dir, target)?;
    }

    let copies = out_dir.join("plugins");
    fs::create_dir_all(&copies).map_err(|e| format!("cannot create {}: {e}", copies.display()))?;
    for (_, package, target) in PLUGINS {
        // cargo names a cdylib after its package, with `-` turned into `_`.
        let built = target_dir.join(target).join("release");
        let wasm = built.join(format!("{}.wasm", package.replace('-', "_")));
        let copy = copies.join(format!("{package}.wasm"));
        fs::copy(&wasm, &copy)
            .map_err(|e| format!("cannot copy {} to {}: {e}", wasm.display(), copy.display()))?;
        let var = package.replace('-', "_").to_uppercase();
        println!("cargo::rustc-env=PASSTHRU_PLUGIN_{var}={}", copy.display());
    }
    Ok(())
}

/// The repository root, absolute: `PASSTHRU_REPO_ROOT`, else the parent of this crate's folder.
fn repo_root() -> Result<PathBuf, String> {
    println!("cargo::rerun-if-env-changed={REPO_ROOT_ENV}");
    let root = match env::var_os(REPO_ROOT_ENV) {
        Some(root) => PathBuf::from(root),
        None => {
            let manifest_dir =
                env::var_os("CARGO_MANIFEST_DIR").ok_or("cargo did not set CARGO_MANIFEST_DIR")?;
            Path::new(&manifest_dir).join("..")
        }
    };
    fs::canonicalize(&root).map_err(|e| format!("repository root {}: {e}", root.display()))
}

/// Reruns this script when the contract or a plugin's manifest or source changes. Not the whole
/// `plugins/` folder: `make` writes `plugins/dist`, and that must not trigger a rebuild here.
fn watch_inputs(root: &Path, plugins_dir: &Path) {
    let mut inputs = vec![
        root.join("wit"),
        plugins_dir.join("Cargo.toml"),
        plugins_dir.join("Cargo.lock"),
        plugins_dir.join(".cargo").join("config.toml"),
    ];
    for dir in PLUGINS
        .iter()
        .map(|(dir, _, _)| *dir)
        .chain(LIBRARIES.iter().copied())
    {
        inputs.push(plugins_dir.join(dir).join("Cargo.toml"));
        inputs.push(plugins_dir.join(dir).join("src"));
    }
    for input in inputs {
        println!("cargo::rerun-if-changed={}", input.display());
    }
}

/// Installs `target`'s standard library with rustup when the toolchain lacks it.
fn ensure_wasm_target(root: &Path, target: &str) -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed:\n{}",
            rustc.to_string_lossy(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let target_std = Path::new(&sysroot).join("lib/rustlib").join(target);
    if target_std.is_dir() {
        return Ok(());
    }

    let install = format!("rustup target add {target}");
    println!(
        "cargo::warning=the {target} target is not installed (needed to build the plugins): \
         running `{install}`"
    );
    // From the repository root, so rustup picks the toolchain of `rust-toolchain.toml` (or the
    // one in RUSTUP_TOOLCHAIN, set when this build itself runs through rustup).
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(root)
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`{install}` failed ({status}); the plugins need the {target} target: run \
             `{install}` and build again"
        )),
        Err(e) => Err(format!(
            "the plugins need the {target} target and rustup could not be run ({e}): \
             run `{install}` (or install the target for your toolchain) and build again"
        )),
    }
}

/// `cargo build` of the plugins built for `target`, exactly as `plugins/Makefile` runs it.
fn build_plugins(plugins_dir: &Path, target_dir: &Path, target: &str) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(plugins_dir);
    for (_, package, _) in PLUGINS.iter().filter(|(_, _, t)| *t == target) {
        command.args(["-p", package]);
    }
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if REMOVED_ENV.contains(&key) || REMOVED_ENV_PREFIXES.iter().any(|p| key.starts_with(p)) {
            command.env_remove(key);
        }
    }

    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let hint = if stderr.contains("--locked") {
            "\nplugins/Cargo.lock is out of date: `make -C plugins` updates it"
        } else {
            ""
        };
        return Err(format!(
            "building the plugins failed ({}): {command:?}\n{stderr}{hint}",
            output.status
        ));
    }
    // Shown by `cargo build -vv`.
    eprint!("{stderr}");
    Ok(())
}
