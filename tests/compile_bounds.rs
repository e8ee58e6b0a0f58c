//! Compiles are bounded: they run on idle-priority threads, a few at a time, with a queue and a
//! time budget. A flood of large uploads neither makes live calls fall back nor waits without
//! end: past the queue an upload answers `503`, past the budget `422`.

mod common;

use std::time::{Duration, Instant};

use common::{Api, IVR_MENU, TestServer, flow};

/// A component whose core module has `functions` functions with a little arithmetic each: valid,
/// slow to compile (Cranelift compiles each function), and exporting neither `decide` nor
/// `record`, so it is refused once compiled. `seed` makes each one's bytes distinct.
fn heavy_component(functions: usize, seed: u32) -> Vec<u8> {
    let mut wat = String::from("(component (core module");
    for i in 0..functions {
        wat.push_str(&format!(
            " (func (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {} i32.mul \
             i32.const {seed} i32.add local.get 0 i32.xor i32.const 7 i32.rotl)",
            i + 1
        ));
    }
    wat.push_str("))");
    wat::parse_str(&wat).expect("valid WAT")
}

fn outcome(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-passthru-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_past_its_budget_answers_422_and_names_the_budget() -> anyhow::Result<()> {
    let config = "compile_budget_ms = 100\n";
    let server = TestServer::start(config).await?;
    let tenant = Api::operator(&server).tenant("acme", None).await?;
    let started = Instant::now();
    let answer = tenant.upload("heavy", heavy_component(20_000, 1)).await?;
    let took = started.elapsed();
    assert_eq!(answer.status(), 422);
    let problem: serde_json::Value = answer.json().await?;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("did not compile within"), "{detail}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    server.stop().await
}

/// Several large uploads at once while calls are served: one compiles, one waits, the rest are
/// refused with `503` at once; every call meanwhile is decided, none falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_uploads_leaves_live_calls_alone() -> anyhow::Result<()> {
    let config = format!(
        "max_concurrent_compiles = 1\nmax_waiting_compiles = 1\n{}",
        flow("demo", "ivr", IVR_MENU, "[flow.limits]\ndeadline_ms = 200")
    );
    let server = TestServer::start(&config).await?;
    let tenant = Api::operator(&server).tenant("acme", None).await?;
    let uploads: Vec<_> = (0..4u32)
        .map(|seed| {
            let request = tenant
                .server
                .client
                .post(server.url("/v1/plugins/heavy/versions"))
                .bearer_auth(&tenant.token)
                .header("content-type", "application/wasm")
                .body(heavy_component(2_000, seed));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();

    let mut calls = 0;
    let mut statuses = Vec::new();
    let mut pending = uploads;
    while !pending.is_empty() {
        let got = server
            .get(&format!(
                "/passthru/demo/ivr?CallSid=c{calls}&digits=%221%22"
            ))
            .await?;
        assert_eq!(outcome(&got), "decided", "call {calls} while compiling");
        calls += 1;
        let mut still = Vec::new();
        for upload in pending {
            if upload.is_finished() {
                statuses.push(upload.await??);
            } else {
                still.push(upload);
            }
        }
        pending = still;
    }
    statuses.sort_unstable();
    // Two were compiled (and refused: they export neither decide nor record); two found the
    // one compile thread and the one waiting place taken.
    assert_eq!(statuses, [422, 422, 503, 503], "after {calls} calls");
    assert!(calls >= 5, "calls kept being served: {calls}");
    println!("{calls} calls decided while two uploads compiled");
    server.stop().await
}
