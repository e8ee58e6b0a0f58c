//! What compiling in a child process costs an upload: the same components compiled in this
//! process (`Sandbox::compile_with_artifact`, as uploads were before issue 11's memory bound) and
//! in the compile worker (`Compiles::compile`: spawn `passthru compile-worker`, pipe the
//! component in and the artifact back, load and link it), runs interleaved so that both see the
//! same machine. Run it in the idle class, as compiles run in the server:
//!
//! ```sh
//! cargo bench -p passthru --bench compiles --no-run
//! chrt --idle 0 target/release/deps/compiles-HASH   # PASSTHRU_BENCH_LARGE=/abs/py.wasm
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use passthru::registry::{CompileLimits, CompileWorker, Compiles};
use passthru::sandbox::{Sandbox, SandboxOptions};

fn main() {
    let sandbox = Arc::new(
        Sandbox::new(SandboxOptions {
            max_concurrent_calls: 8,
            ..SandboxOptions::default()
        })
        .expect("sandbox"),
    );
    let compiles = Compiles::start(
        sandbox.clone(),
        CompileLimits {
            budget: Duration::from_secs(600),
            ..CompileLimits::default()
        },
        CompileWorker::at(env!("CARGO_BIN_EXE_passthru")),
    );
    let runs = std::env::var("PASSTHRU_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut plugins = vec![(
        "ivr-menu (Rust)".to_owned(),
        std::fs::read(env!("PASSTHRU_PLUGIN_IVR_MENU")).expect("built plugin"),
    )];
    if let Ok(path) = std::env::var("PASSTHRU_BENCH_LARGE") {
        let bytes = std::fs::read(&path).expect("PASSTHRU_BENCH_LARGE is readable");
        plugins.push((path, bytes));
    }
    println!("compile (ms): in this process | in the compile worker");
    for (name, bytes) in plugins {
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let (mut here, mut child) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            here.push(time(|| {
                sandbox.compile_with_artifact(&bytes).expect("compiles");
            }));
            child.push(time(|| {
                compiles.compile(bytes.clone()).expect("compiles");
            }));
        }
        println!(
            "  {name} ({} B): {} | {}",
            bytes.len(),
            summary(&mut here),
            summary(&mut child)
        );
    }
}

fn time(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64() * 1000.0
}

/// Median, and the range.
fn summary(ms: &mut [f64]) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "median {:.0} ({:.0} - {:.0})",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1]
    )
}
