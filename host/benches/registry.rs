//! The registry's slow paths, timed end to end on a real server in this process:
//!
//! - upload-to-live: `POST` a component, `PUT` a flow on it, and the first Passthru request that
//!   answers from it; for the Rust example and for the largest component given in
//!   `PASSTHRU_BENCH_LARGE` (a path; e.g. a Python plugin);
//! - boot: a restart over a data directory holding 1,000 flows (on 5 plugins), loaded from the
//!   artifact cache.
//!
//! `cargo bench -p passthru --bench registry`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use passthru::api;
use passthru::config::ServerConfig;
use passthru::server::{self, StartOptions};
use serde_json::json;

const OPERATOR: &str = "bench-operator";
const FLOWS: usize = 1000;

struct Running {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    started: server::Started,
}

async fn start(dir: &Path) -> (Running, Duration) {
    let config = ServerConfig::parse("", "bench", Path::new("/")).expect("config");
    let begun = Instant::now();
    let started = server::start(
        &config,
        StartOptions {
            data_dir: Some(dir.to_owned()),
            operator_token: Some(OPERATOR.to_owned()),
            compile_worker: Some(env!("CARGO_BIN_EXE_passthru").into()),
            secrets_key: None,
            database: None,
        },
    )
    .await
    .expect("server starts");
    let took = begun.elapsed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(api::serve(listener, started.state.clone(), async {
        let _ = stopped.await;
    }));
    (
        Running {
            url,
            stop,
            task,
            started,
        },
        took,
    )
}

async fn stop(running: Running) {
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
    running.started.state.recorder.flush(Duration::from_secs(5));
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("passthru-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn token(client: &reqwest::Client, url: &str, tenant: &str) -> String {
    let created = client
        .post(format!("{url}/v1/tenants"))
        .bearer_auth(OPERATOR)
        .json(
            &json!({ "name": tenant, "caps": { "max_flows": 2000, "max_plugin_bytes": 200000000,
                        "max_memory_mb": 512, "max_deadline_ms": 5000 } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let issued: serde_json::Value = client
        .post(format!("{url}/v1/tenants/{tenant}/tokens"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    issued["token"].as_str().unwrap().to_owned()
}

/// Upload, bind, first answer: milliseconds for each step and in all.
async fn upload_to_live(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    bytes: &[u8],
) -> [f64; 4] {
    let begun = Instant::now();
    let uploaded = client
        .post(format!("{url}/v1/plugins/{name}/versions"))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201, "{}", uploaded.text().await.unwrap());
    let t_upload = begun.elapsed();
    let bound = client
        .put(format!("{url}/v1/flows/{name}"))
        .bearer_auth(token)
        .json(&json!({ "plugin": name, "limits": { "memory_mb": 512, "deadline_ms": 5000, "fuel": 1000000000 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(bound.status(), 201);
    let t_bind = begun.elapsed();
    let answer = client
        .get(format!(
            "{url}/passthru/bench/{name}?CallSid=bench&digits=%221%22"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-passthru-outcome"], "decided");
    let t_live = begun.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    [
        ms(t_upload),
        ms(t_bind - t_upload),
        ms(t_live - t_bind),
        ms(t_live),
    ]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let dir = temp_dir("registry");
        let (running, _) = start(&dir).await;
        let url = running.url.clone();
        let token = token(&client, &url, "bench").await;

        println!("upload-to-live (ms): upload+compile, bind, first answer, total");
        let rust = std::fs::read(env!("PASSTHRU_PLUGIN_IVR_MENU")).unwrap();
        let mut totals = Vec::new();
        for i in 0..5 {
            let t = upload_to_live(&client, &url, &token, &format!("rust{i}"), &rust).await;
            println!(
                "  ivr-menu ({} B) #{i}: {:.1} {:.1} {:.1} = {:.1}",
                rust.len(),
                t[0],
                t[1],
                t[2],
                t[3]
            );
            totals.push(t[3]);
        }
        totals.sort_by(f64::total_cmp);
        println!(
            "  ivr-menu median total: {:.1} ms",
            totals[totals.len() / 2]
        );
        if let Ok(path) = std::env::var("PASSTHRU_BENCH_LARGE") {
            let large = std::fs::read(&path).expect("PASSTHRU_BENCH_LARGE is readable");
            for i in 0..3 {
                let t = upload_to_live(&client, &url, &token, &format!("large{i}"), &large).await;
                println!(
                    "  {path} ({} B) #{i}: {:.1} {:.1} {:.1} = {:.1}",
                    large.len(),
                    t[0],
                    t[1],
                    t[2],
                    t[3]
                );
            }
        }

        // 1,000 flows on one plugin, then a restart over the same data directory.
        for i in 0..FLOWS {
            let bound = client
                .put(format!("{url}/v1/flows/f{i}"))
                .bearer_auth(&token)
                .json(&json!({ "plugin": format!("rust{}", i % 5) }))
                .send()
                .await
                .unwrap();
            assert!(bound.status().is_success());
        }
        stop(running).await;
        for round in 0..3 {
            let (running, took) = start(&dir).await;
            let registry = &running.started.state.registry;
            assert!(registry.live_flows() >= FLOWS);
            println!(
                "boot with {} flows from the cache #{round}: {:.1} ms, {} compiles",
                registry.live_flows(),
                took.as_secs_f64() * 1000.0,
                registry.sandbox().compile_count()
            );
            stop(running).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
