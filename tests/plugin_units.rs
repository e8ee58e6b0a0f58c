//! The unit tests of the Rust SDK and the example plugins (`plugins/` is a cargo workspace of its
//! own, built for wasm32-unknown-unknown and wasm32-wasip2 by the host's build script): run here
//! natively, so that the README's test command runs them too.

use std::path::PathBuf;
use std::process::Command;

/// The crates whose tests run natively (the test fixtures call WASI directly, and do not).
const CRATES: &[&str] = &[
    "passthru-sdk",
    "ivr-menu",
    "vip-caller",
    "call-logger",
    "geo-router",
    "agent-dialer",
    "greeting",
    "sticky-agent",
    "crm-push",
    "sms-reply",
    "ivr-gather",
];

#[test]
fn the_sdk_and_example_plugins_pass_their_own_tests() {
    // This binary is TARGET/debug/deps/NAME: the plugins' native build goes beside the host's.
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .expect("the target folder");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["test", "--locked", "-j", "2", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target.join("plugins-native"));
    for name in CRATES {
        cargo.args(["-p", name]);
    }
    // What the outer cargo set for the host's build would change the plugins' fingerprints.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    let out = cargo.output().expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 20, "only {passed} tests ran:\n{stdout}");
}
