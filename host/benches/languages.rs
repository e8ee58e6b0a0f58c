//! The example plugins in every language, side by side: component size, compile time (as at an
//! upload: Cranelift, and serialising the artifact), the load time of that artifact (as at the
//! next start: checksum and deserialise, no Cranelift), the decision latency (a fresh instance
//! from the pool + `decide`, until the answer, as on the request path), median and p99, and what
//! a call costs in all back to back on one core, the reset of its instance after the answer
//! included.
//!
//! `cargo bench -p passthru --bench languages` (it runs `make -C plugins polyglot` first). Prints
//! one Markdown table; `BENCHMARKS.md` has the figures. Set `PASSTHRU_BENCH_CALLS` to change the
//! number of timed calls per plugin (default 5000), and `PASSTHRU_BENCH_LANGUAGES` to a
//! comma-separated list (say `Python,Rust`) to measure only those languages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use passthru::call;
use passthru::sandbox::{
    FlowConfig, Grants, Limits, Sandbox, SandboxOptions, TenantShare, hex_sha256,
};

const GATHER: &str = include_str!("../../tests/fixtures/exotel/gather-digits.query");
const WARM_UP_CALLS: usize = 200;
const DEFAULT_CALLS: usize = 5000;

/// (language, file name under plugins/dist, or the build script's Rust component)
fn plugins() -> Vec<(&'static str, &'static str, PathBuf)> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let mut out = vec![
        (
            "Rust",
            "ivr-menu",
            PathBuf::from(env!("PASSTHRU_PLUGIN_IVR_MENU")),
        ),
        (
            "Rust",
            "vip-caller",
            PathBuf::from(env!("PASSTHRU_PLUGIN_VIP_CALLER")),
        ),
    ];
    for (language, suffix) in [("C", "c"), ("Python", "py"), ("JavaScript", "js")] {
        for example in ["ivr-menu", "vip-caller"] {
            out.push((
                language,
                example,
                dist.join(format!("{example}-{suffix}.wasm")),
            ));
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` passes nothing and wants a
    // quick run, not a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let status = Command::new("make")
        .arg("-C")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins"))
        .arg("polyglot")
        .status()
        .expect("run make");
    assert!(status.success(), "make -C plugins polyglot failed");

    let calls = std::env::var("PASSTHRU_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CALLS);
    // The server's kind of runtime, so that a call's instance is reset after its answer, as
    // there; with one worker, every call and every reset share one core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Arc::new(Sandbox::new(SandboxOptions::default()).expect("sandbox"));
    let limits = Limits::default();
    let config: Arc<Grants> = grants(
        [(
            "vip_numbers".to_owned(),
            "09800000001, 09800000003".to_owned(),
        )]
        .into(),
    );
    let gather = call::parse(GATHER.trim());
    let languages = std::env::var("PASSTHRU_BENCH_LANGUAGES").ok();
    let wanted = |language: &str| {
        languages.as_deref().is_none_or(|list| {
            list.split(',')
                .any(|l| l.trim().eq_ignore_ascii_case(language))
        })
    };

    println!(
        "| language | plugin | size | compile | cached load | decision median | decision p99 | \
         per call, reset included | fuel |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (language, example, path) in plugins().into_iter().filter(|(l, _, _)| wanted(l)) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

        // Compiled as an upload is: Cranelift, then the artifact the registry caches on disk.
        let started = Instant::now();
        let compiled = sandbox.compile_with_artifact(&bytes).expect("compiles");
        let compile = started.elapsed();
        let plugin = compiled.plugin;

        // Loaded as at the next start: from the cached artifact, without Cranelift.
        let checksum = hex_sha256(&compiled.artifact);
        let started = Instant::now();
        let loaded = sandbox
            .load_artifact(&compiled.artifact, &checksum)
            .expect("loads");
        let load = started.elapsed();
        drop(loaded);

        let plugin = Arc::new(plugin);
        let run = {
            let (sandbox, gather, limits, config) =
                (sandbox.clone(), gather.clone(), limits, config.clone());
            async move {
                let mut fuel = 0;
                for _ in 0..WARM_UP_CALLS {
                    let report = sandbox
                        .decide(
                            &plugin,
                            &TenantShare::unlimited(),
                            gather.clone(),
                            &limits,
                            config.clone(),
                        )
                        .await;
                    assert!(report.outcome.is_ok(), "{report:?}");
                    fuel = report.fuel_used;
                    tokio::task::yield_now().await;
                }
                let mut answers = Vec::with_capacity(calls);
                let all = Instant::now();
                for _ in 0..calls {
                    let call = gather.clone();
                    let started = Instant::now();
                    let report = sandbox
                        .decide(
                            &plugin,
                            &TenantShare::unlimited(),
                            call,
                            &limits,
                            config.clone(),
                        )
                        .await;
                    answers.push(started.elapsed());
                    assert!(report.outcome.is_ok());
                    // As a connection's task does once it has answered: the previous call's
                    // instance is reset now, before the next call starts.
                    tokio::task::yield_now().await;
                }
                (answers, all.elapsed() / calls as u32, fuel)
            }
        };
        let (mut answers, per_call, fuel) = runtime
            .block_on(runtime.spawn(run))
            .unwrap_or_else(|e| panic!("{language} {example}: {e}"));
        answers.sort();
        println!(
            "| {language} | {example} | {:.1} KB | {} | {} | {} | {} | {} | {fuel} |",
            bytes.len() as f64 / 1000.0,
            micros(compile),
            micros(load),
            micros(percentile(&answers, 0.5)),
            micros(percentile(&answers, 0.99)),
            micros(per_call),
        );
    }
}

/// A flow that grants its plugin `config` and nothing else.
fn grants(config: FlowConfig) -> Arc<Grants> {
    Arc::new(Grants::config(config))
}
