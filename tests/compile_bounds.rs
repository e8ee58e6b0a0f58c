//! Compiles are bounded: each runs in a child process at idle priority, a few at a time, with a
//! queue, a time budget and a memory budget. A flood of large uploads neither makes live calls
//! fall back nor waits without end: past the queue an upload answers `503`, past either budget
//! `422`, and a compile stopped at its budget frees its place at once.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Api, IVR_MENU, PASSTHRU, TestServer, body, flow};
use reqwest::Method;
use serde_json::json;

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

/// A component whose core module has one function of `steps` additions to a local, a few bytes
/// each: small to upload (7 bytes a step) but, as one function, costly for Cranelift to hold in
/// memory (about 5 KiB a step: 100 000 steps need some 530 MiB). Encoded directly, as text it
/// would be ten times larger.
fn memory_hungry_component(steps: u32) -> Vec<u8> {
    let mut body = vec![0]; // no locals besides the parameter
    for i in 0..steps {
        // local.get 0, i32.const (i % 64), i32.add, local.set 0
        body.extend_from_slice(&[0x20, 0, 0x41, (i % 64) as u8, 0x6a, 0x21, 0]);
    }
    body.extend_from_slice(&[0x20, 0, 0x0b]); // local.get 0, end
    let mut code = leb128(1);
    code.extend(leb128(body.len()));
    code.extend(body);

    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(1, &[1, 0x60, 1, 0x7f, 1, 0x7f])); // (func (param i32) (result i32))
    module.extend(section(3, &[1, 0])); // one function of that type
    module.extend(section(7, &[1, 1, b'f', 0, 0])); // exported as "f"
    module.extend(section(10, &code));
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.extend(section(1, &module)); // the core module, embedded
    component
}

fn section(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb128(payload.len()));
    out.extend_from_slice(payload);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
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

/// An upload holds its body in memory until its compile ends, so uploads are counted from
/// before their bodies are read: two whose bodies never finish take the one compile place and
/// the one waiting place, and a third is refused at once, its body unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_take_their_place_before_their_bodies_are_read() -> anyhow::Result<()> {
    let server =
        TestServer::start("max_concurrent_compiles = 1\nmax_waiting_compiles = 1\n").await?;
    let tenant = Api::operator(&server).tenant("acme", None).await?;
    // Each is in once the server starts reading its body, that is once it has its place.
    let mut held = Vec::new();
    for _ in 0..2 {
        let path = "/v1/plugins/slow/versions";
        let wasm = "application/wasm";
        held.push(
            server
                .start_body(path, &tenant.token, wasm, b"\0asm")
                .await?,
        );
    }
    // Both places are taken: a third upload is refused at once.
    let (status, problem) = body(tenant.upload("fast", read_ivr_menu()).await?).await?;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(
        problem["type"], "urn:passthru:problem:compiles-busy",
        "{problem}"
    );
    // A place comes back when an upload ends (here: its client goes away).
    drop(held);
    common::eventually("a place back", || async {
        let status = tenant.upload("fast", read_ivr_menu()).await?.status();
        Ok((status == 201).then_some(()))
    })
    .await?;
    server.stop().await
}

fn read_ivr_menu() -> Vec<u8> {
    std::fs::read(IVR_MENU).expect("the ivr-menu plugin")
}

/// A component Cranelift would need some 530 MiB to compile, on a server whose compiles may use
/// 128: the child stops at its limit, the upload answers `422` naming the memory budget, and a
/// normal plugin uploaded next compiles and decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_that_needs_more_memory_than_its_budget_answers_422_and_names_it()
-> anyhow::Result<()> {
    let server = TestServer::start("max_compile_memory_mb = 128\n").await?;
    let tenant = Api::operator(&server).tenant("acme", None).await?;
    let (status, problem) = body(
        tenant
            .upload("hungry", memory_hungry_component(100_000))
            .await?,
    )
    .await?;
    assert_eq!(status, 422, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("128 MiB of memory"), "{detail}");

    let (status, uploaded) = body(tenant.upload("menu", std::fs::read(IVR_MENU)?).await?).await?;
    assert_eq!(status, 201, "{uploaded}");
    let put = tenant
        .json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({"plugin": "menu", "version": 1}),
        )
        .await?;
    assert_eq!(put.status(), 201);
    let got = server
        .get("/passthru/acme/ivr?CallSid=c1&digits=%221%22")
        .await?;
    assert_eq!(outcome(&got), "decided");
    server.stop().await
}

/// With one compile at a time, a compile past its budget is killed, not left to finish: the next
/// upload compiles at once. The heavy component takes some 40 s to compile on an idle machine;
/// had its compile run on, the next upload would have waited for it and passed its own budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_killed_at_its_budget_frees_its_place_for_the_next_upload_at_once()
-> anyhow::Result<()> {
    let budget = Duration::from_secs(5);
    let config = format!(
        "max_concurrent_compiles = 1\nmax_waiting_compiles = 1\ncompile_budget_ms = {}\n",
        budget.as_millis()
    );
    let server = TestServer::start(&config).await?;
    let tenant = Api::operator(&server).tenant("acme", None).await?;
    let (status, problem) =
        body(tenant.upload("heavy", heavy_component(100_000, 3)).await?).await?;
    assert_eq!(status, 422, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("did not compile within 5000 ms"),
        "{detail}"
    );

    let started = Instant::now();
    let (status, uploaded) = body(tenant.upload("menu", std::fs::read(IVR_MENU)?).await?).await?;
    let took = started.elapsed();
    assert_eq!(status, 201, "after {took:?}: {uploaded}");
    assert!(took < budget, "the next upload waited {took:?}");
    server.stop().await
}

/// The worker run by hand: a core module is the uploader's mistake, told apart from the host's
/// failures by its exit code, with the reason on stderr and nothing on stdout.
#[test]
fn the_compile_worker_refuses_a_core_module_with_the_invalid_exit_code() -> anyhow::Result<()> {
    let mut child = Command::new(PASSTHRU)
        .args(["compile-worker", "--memory-mb", "256"])
        .env(passthru::allocator::ALLOCATOR_ENV, "system")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"\0asm\x01\0\0\0")?;
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");
    Ok(())
}
