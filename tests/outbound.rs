//! Outbound HTTP from plugins (`wasi:http`), end to end: the real server, the `crm-push` example
//! and the `outbound-probe` fixture, against real HTTP servers on loopback (which the test
//! servers' operator config allows, `[outbound] allow_ranges = ["127.0.0.0/8"]`, except where a
//! test checks that loopback is refused without it).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::{Api, CRM_PUSH, OUTBOUND_PROBE, TempDir, TestServer, body, flow};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// How long a test waits for background work before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

const LOOPBACK_ALLOWED: &str = "[outbound]\nallow_ranges = [\"127.0.0.0/8\"]\n";

/// What a test CRM saw: each delivery's idempotency key and the status it answered.
#[derive(Default)]
struct Crm {
    /// Requests still to answer 503 before answering 200.
    fail_first: AtomicU32,
    seen: Mutex<Vec<(String, u16, Value)>>,
}

async fn crm_calls(State(crm): State<Arc<Crm>>, headers: HeaderMap, body: String) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let failing = crm
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = match failing {
        true => StatusCode::SERVICE_UNAVAILABLE,
        false => StatusCode::OK,
    };
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    crm.seen.lock().unwrap().push((key, status.as_u16(), json));
    status
}

/// Serves `router` on 127.0.0.1:0; its address.
async fn serve(router: Router) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// A redirect target meaning the server's own `/go` (from the request's `Host`).
const SELF: &str = "self";

/// A server that answers `GET /hello` with `hi`, `GET /go` with a redirect to `to` (or to itself,
/// [`SELF`]), and counts every request it gets.
async fn web(to: String) -> anyhow::Result<(SocketAddr, Arc<AtomicU32>)> {
    let hits = Arc::new(AtomicU32::new(0));
    let counted = hits.clone();
    let router = Router::new()
        .route("/hello", axum::routing::get(async || "hi"))
        .route(
            "/go",
            axum::routing::get(async move |headers: HeaderMap| {
                let location = match to.as_str() {
                    SELF => format!("http://{}/go", headers["host"].to_str().unwrap_or("")),
                    other => other.to_owned(),
                };
                (StatusCode::FOUND, [("location", location)]).into_response()
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            },
        ));
    Ok((serve(router).await?, hits))
}

/// A server that accepts connections and never answers; each connection's end (the client
/// closing it) is sent on the channel.
async fn hanging() -> anyhow::Result<(SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Instant>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (closed, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = closed.send(Instant::now());
            });
        }
    });
    Ok((addr, ends))
}

/// A sync flow of the probe, with its outbound hosts, config and extra settings.
fn probe_flow(name: &str, hosts: &[&str], url: &str, extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    flow(
        "acme",
        name,
        OUTBOUND_PROBE,
        &format!(
            "outbound_hosts = [{}]\n{extra}\n[flow.config]\nurl = {url:?}\n",
            hosts.join(", ")
        ),
    )
}

/// One Passthru request: its status, branch and outcome headers, and the plugin's reason from
/// the decision record.
async fn decide(server: &TestServer, flow: &str) -> anyhow::Result<(String, String)> {
    let response = server
        .get(&format!("/passthru/acme/{flow}?CallSid=CA-{flow}"))
        .await?;
    let branch = response.headers()["x-passthru-branch"].to_str()?.to_owned();
    let outcome = response.headers()["x-passthru-outcome"]
        .to_str()?
        .to_owned();
    Ok((branch, outcome))
}

/// A client of the admin API as tenant `acme`.
async fn acme(server: &TestServer) -> anyhow::Result<Api<'_>> {
    let operator = Api::operator(server);
    let issued = operator
        .request(Method::POST, "/v1/tenants/acme/tokens")
        .send()
        .await?;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await?;
    Ok(Api {
        server,
        token: issued["token"].as_str().unwrap().to_owned(),
    })
}

/// The newest decision record of `flow`.
async fn last_record(server: &TestServer, api: &Api<'_>, flow: &str) -> anyhow::Result<Value> {
    server.state.recorder.flush(Duration::from_secs(5));
    let (status, page) = body(
        api.get(&format!("/v1/decisions?flow={flow}&limit=1"))
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{page}");
    Ok(page["items"][0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_host_is_reached_and_the_request_is_in_the_decision_record() -> anyhow::Result<()>
{
    let (web, hits) = web("http://example.com/".into()).await?;
    let listed = format!("http://127.0.0.1:{}", web.port());
    let config = format!(
        "{LOOPBACK_ALLOWED}{}",
        probe_flow(
            "ok",
            &[listed.as_str()],
            &format!("{listed}/hello?secret=1"),
            ""
        )
    );
    let server = TestServer::start(&config).await?;
    let (branch, outcome) = decide(&server, "ok").await?;
    assert_eq!((branch.as_str(), outcome.as_str()), ("success", "decided"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let api = acme(&server).await?;
    let record = last_record(&server, &api, "ok").await?;
    assert_eq!(record["reason"], "status 200 body hi", "{record}");
    let outbound = &record["outbound"];
    assert_eq!(outbound.as_array().map(Vec::len), Some(1), "{record}");
    assert_eq!(outbound[0]["method"], "GET");
    assert_eq!(outbound[0]["host"], json!(listed), "no path or query kept");
    assert_eq!(outbound[0]["status"], 200);
    assert_eq!(outbound[0]["bytes_in"], 2);
    assert_eq!(outbound[0]["bytes_out"], 0);
    assert!(outbound[0]["ms"].as_u64().unwrap() < 5_000);
    assert!(!record.to_string().contains("secret"), "{record}");
    server.stop().await
}

/// A set of headers is bounded, as wasi:http counts it (16 KiB, about 8 KiB on the wire): a plugin
/// cannot park megabytes of host memory in header sets, where wasi:http's own default allows
/// 128 KiB each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_set_past_its_bound_traps_the_call() -> anyhow::Result<()> {
    let (web, hits) = web("http://example.com/".into()).await?;
    let listed = format!("http://127.0.0.1:{}", web.port());
    let url = format!("{listed}/hello");
    let config = format!(
        "{LOOPBACK_ALLOWED}{}{}",
        probe_flow("small", &[listed.as_str()], &url, "").replace(
            "[flow.config]\n",
            "[flow.config]\nheader_bytes = \"4000\"\n"
        ),
        probe_flow("big", &[listed.as_str()], &url, "").replace(
            "[flow.config]\n",
            "[flow.config]\nheader_bytes = \"20000\"\n"
        ),
    );
    let server = TestServer::start(&config).await?;
    let api = acme(&server).await?;
    assert_eq!(decide(&server, "small").await?.0, "success");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // wasi:http traps the call past the bound, naming it: the flow's fallback answers.
    let (branch, outcome) = decide(&server, "big").await?;
    assert_eq!((branch.as_str(), outcome.as_str()), ("failure", "trap"));
    let record = last_record(&server, &api, "big").await?;
    let error = record["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{record}"));
    assert!(error.contains("fields exceeds limit"), "{error}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the big header was sent");
    server.stop().await
}

/// The plugin chooses a request's host: however long, its record keeps a bounded part of it, and a
/// secret of the flow in it is blanked out, as in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_record_keeps_a_bounded_host_without_the_flows_secrets() -> anyhow::Result<()> {
    let keys = TempDir::new("keys");
    let key = keys.0.join("secrets.key");
    std::fs::write(&key, passthru::secrets::SecretsKey::generate()?)?;
    let config = format!(
        "secrets_key_file = {:?}\n{}",
        key.display().to_string(),
        flow(
            "acme",
            "long",
            OUTBOUND_PROBE,
            "outbound_hosts = [\"https://crm.example.com\"]\n",
        )
    );
    let server = TestServer::start(&config).await?;
    let api = acme(&server).await?;
    // The plugin reads its URL from `url`; `token` is another of the flow's secrets, which the
    // plugin puts in the host.
    let secret = "hunter2hunter2";
    let url = format!("http://{secret}{}.example/", "a".repeat(8_000));
    for (key, value) in [("token", secret), ("url", url.as_str())] {
        let put = api
            .json(
                Method::PUT,
                &format!("/v1/flows/long/secrets/{key}"),
                json!({ "value": value }),
            )
            .await?;
        assert_eq!(put.status(), 200, "{}", put.text().await?);
    }
    let (branch, outcome) = decide(&server, "long").await?;
    assert_eq!((branch.as_str(), outcome.as_str()), ("failure", "decided"));

    let record = last_record(&server, &api, "long").await?;
    let request = &record["outbound"][0];
    let host = request["host"].as_str().unwrap();
    let error = request["error"].as_str().unwrap();
    assert!(host.starts_with("http://"), "{host}");
    assert!(host.len() <= 300, "the host kept {} bytes", host.len());
    assert!(error.starts_with("refused"), "{error}");
    assert!(error.len() <= 600, "the error kept {} bytes", error.len());
    assert!(
        record.to_string().len() < 8_000,
        "the record is {} bytes",
        record.to_string().len()
    );
    assert!(!record.to_string().contains(secret), "{record}");

    // A secret where the host is cut: blanked out before the cut, so no start of it is kept.
    // "http://" and 288 bytes put it at bytes 295 to 308 of the 300 kept.
    let url = format!("http://{}{secret}.example/", "b".repeat(288));
    let put = api
        .json(
            Method::PUT,
            "/v1/flows/long/secrets/url",
            json!({ "value": url }),
        )
        .await?;
    assert_eq!(put.status(), 200, "{}", put.text().await?);
    decide(&server, "long").await?;
    let record = last_record(&server, &api, "long").await?;
    let host = record["outbound"][0]["host"].as_str().unwrap();
    assert!(host.starts_with("http://bbb"), "{host}");
    assert!(host.len() <= 300, "the host kept {} bytes", host.len());
    assert!(!record.to_string().contains(&secret[..5]), "{record}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_hosts_unlisted_ip_literals_and_redirects_to_them_are_refused()
-> anyhow::Result<()> {
    // A second server that nothing may reach: the redirect points at it.
    let (other, other_hits) = web("http://example.com/".into()).await?;
    let elsewhere = format!("http://127.0.0.1:{}/hello", other.port());
    let (web, hits) = web(elsewhere.clone()).await?;
    let listed = format!("http://127.0.0.1:{}", web.port());
    let by_name = format!("http://localhost:{}", web.port());
    let config = format!(
        "{LOOPBACK_ALLOWED}{}{}{}{}",
        // A name the list does not hold.
        probe_flow(
            "unlisted",
            &[listed.as_str()],
            "http://crm.example.com/hello",
            ""
        ),
        // An IP literal, when only a name is listed (the same server, by address).
        probe_flow(
            "literal",
            &[by_name.as_str()],
            &format!("{listed}/hello"),
            ""
        ),
        // A redirect from a listed host to an unlisted one, followed by the plugin.
        probe_flow("redirect", &[listed.as_str()], &format!("{listed}/go"), "")
            .replace("[flow.config]\n", "[flow.config]\nfollow = \"1\"\n"),
        // No outbound_hosts at all.
        flow(
            "acme",
            "none",
            OUTBOUND_PROBE,
            &format!("[flow.config]\nurl = \"{listed}/hello\"\n")
        ),
    );
    let server = TestServer::start(&config).await?;
    let api = acme(&server).await?;
    for name in ["unlisted", "literal", "redirect", "none"] {
        let (branch, outcome) = decide(&server, name).await?;
        assert_eq!(
            (branch.as_str(), outcome.as_str()),
            ("failure", "decided"),
            "{name}"
        );
        let record = last_record(&server, &api, name).await?;
        assert_eq!(
            record["reason"], "error HttpRequestDenied",
            "{name}: {record}"
        );
        let refused = record["outbound"]
            .as_array()
            .and_then(|r| r.last())
            .cloned()
            .unwrap_or_default();
        assert!(
            refused["error"]
                .as_str()
                .unwrap_or("")
                .starts_with("refused: "),
            "{name}: {record}"
        );
        let log = record["log"].to_string();
        assert!(
            log.contains("refused"),
            "{name}: the plugin's log says why: {log}"
        );
    }
    // The redirect's first hop reached the listed server; nothing reached the other one.
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the redirect's first hop"
    );
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    let record = last_record(&server, &api, "redirect").await?;
    assert_eq!(record["outbound"][0]["status"], 302, "{record}");
    assert_eq!(
        record["outbound"][1]["host"],
        json!(format!("http://127.0.0.1:{}", other.port()))
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_name_that_resolves_to_loopback_is_refused_unless_the_operator_allows_it()
-> anyhow::Result<()> {
    let (web, hits) = web("http://example.com/".into()).await?;
    let by_name = format!("http://localhost:{}", web.port());
    // No allow_ranges: loopback is refused, though the flow lists the name.
    let config = probe_flow(
        "local",
        &[by_name.as_str()],
        &format!("{by_name}/hello"),
        "",
    );
    let server = TestServer::start(&config).await?;
    let (branch, _) = decide(&server, "local").await?;
    assert_eq!(branch, "failure");
    let api = acme(&server).await?;
    let record = last_record(&server, &api, "local").await?;
    assert_eq!(
        record["reason"], "error DestinationIpProhibited",
        "{record}"
    );
    let error = record["outbound"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("loopback"), "{record}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no connection was made");
    server.stop().await?;

    // The operator's range lets the same flow through.
    let server = TestServer::start(&format!("{LOOPBACK_ALLOWED}{config}")).await?;
    let (branch, _) = decide(&server, "local").await?;
    assert_eq!(branch, "success");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_gets_the_fallback_within_the_deadline_and_its_connection_is_dropped()
-> anyhow::Result<()> {
    const DEADLINE_MS: u64 = 100;
    let (upstream, mut ends) = hanging().await?;
    let listed = format!("http://127.0.0.1:{}", upstream.port());
    let config = format!(
        "{LOOPBACK_ALLOWED}{}",
        probe_flow(
            "slow",
            &[listed.as_str()],
            &format!("{listed}/never"),
            &format!("[flow.limits]\ndeadline_ms = {DEADLINE_MS}\n")
        )
    );
    let server = TestServer::start(&config).await?;
    // Once to warm up (the first call of a plugin compiles nothing, but its pages are cold).
    decide(&server, "slow").await?;
    tokio::time::timeout(PATIENCE, ends.recv())
        .await?
        .expect("the first call's connection ends");
    for _ in 0..3 {
        let started = Instant::now();
        let (branch, _) = decide(&server, "slow").await?;
        let answered = started.elapsed();
        assert_eq!(branch, "failure", "the fallback branch");
        assert!(
            answered < Duration::from_millis(DEADLINE_MS + 50),
            "answered after {answered:?}"
        );
        let closed = tokio::time::timeout(PATIENCE, ends.recv())
            .await?
            .expect("the upstream connection is closed");
        assert!(
            closed.duration_since(started) < Duration::from_millis(DEADLINE_MS + 50),
            "the connection was dropped {:?} after the request",
            closed.duration_since(started)
        );
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_push_delivers_every_event_once_a_flaky_crm_recovers() -> anyhow::Result<()> {
    delivers_through_a_flaky_crm(CRM_PUSH, "").await
}

/// The JavaScript crm-push, which POSTs with `fetch` (componentize-js's `http` feature over the
/// host's `wasi:http`), delivers like the Rust one. A debug build of a JavaScript component needs
/// a wider deadline than the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_delivers_with_fetch_like_the_rust_one() -> anyhow::Result<()> {
    let plugin = tokio::task::spawn_blocking(|| build_plugin("crm-push-js.wasm")).await?;
    delivers_through_a_flaky_crm(
        plugin.to_str().unwrap(),
        "[flow.limits]\ndeadline_ms = 5000\n",
    )
    .await
}

/// Builds one component of `plugins/dist` from source with `make` (the toolchains are those
/// `.ci/run` installs; see plugins/README.md).
fn build_plugin(name: &str) -> std::path::PathBuf {
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let output = std::process::Command::new("make")
        .arg("-C")
        .arg(&plugins)
        .arg(format!("dist/{name}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run make: {e}"));
    assert!(
        output.status.success(),
        "`make -C plugins dist/{name}` failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    plugins.join("dist").join(name)
}

/// `plugin` (a crm-push) as an async flow against a CRM that answers `503` three times: every
/// event is delivered (answered 200) exactly once, counted on the CRM's side.
async fn delivers_through_a_flaky_crm(plugin: &str, limits: &str) -> anyhow::Result<()> {
    let crm = Arc::new(Crm::default());
    crm.fail_first.store(3, Ordering::SeqCst);
    let addr = serve(
        Router::new()
            .route("/calls", axum::routing::post(crm_calls))
            .with_state(crm.clone()),
    )
    .await?;
    let listed = format!("http://127.0.0.1:{}", addr.port());
    let config = format!(
        "{LOOPBACK_ALLOWED}{}",
        flow(
            "acme",
            "crm",
            plugin,
            &format!(
                "mode = \"async\"\noutbound_hosts = [{listed:?}]\n{limits}\
                 [flow.retry]\nmax_attempts = 10\nbackoff_ms = 20\nmax_backoff_ms = 100\n\
                 [flow.config]\ncrm_url = \"{listed}/calls\"\n"
            )
        )
    );
    let server = TestServer::start(&config).await?;
    let mut ids = Vec::new();
    for sid in ["CA1", "CA2", "CA3", "CA4"] {
        let response = server
            .get(&format!("/passthru/acme/crm?CallSid={sid}&CallFrom=0980"))
            .await?;
        assert_eq!(response.status(), 200);
        ids.push(response.headers()["x-passthru-event"].to_str()?.to_owned());
    }
    // Each event delivered (answered 200) exactly once, whatever failed before.
    let started = Instant::now();
    let delivered = loop {
        let delivered: BTreeMap<String, u32> = crm
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, status, _)| *status == 200)
            .fold(BTreeMap::new(), |mut m, (key, _, _)| {
                *m.entry(key.clone()).or_default() += 1;
                m
            });
        if delivered.len() == ids.len() || started.elapsed() > PATIENCE {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expected: BTreeMap<String, u32> = ids.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(delivered, expected);
    let seen = crm.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|(_, s, _)| *s == 503).count(), 3);
    let (_, _, first) = seen
        .iter()
        .find(|(k, s, _)| k == &ids[0] && *s == 200)
        .unwrap();
    assert_eq!(first["call_sid"], "CA1", "{first}");
    assert_eq!(first["event_id"].to_string(), ids[0]);
    // The records of the failed attempts name the CRM's answer.
    let api = acme(&server).await?;
    server.state.recorder.flush(Duration::from_secs(5));
    let (_, failed) = body(
        api.get("/v1/decisions?flow=crm&outcome=plugin_error")
            .await?,
    )
    .await?;
    let failed = failed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|r| r["outbound"][0]["status"] == 503));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_caps_bound_requests_per_call_and_response_bytes() -> anyhow::Result<()> {
    // `/go` redirects to itself: a plugin that follows it without end.
    let (web, hits) = web(SELF.into()).await?;
    let listed = format!("http://127.0.0.1:{}", web.port());
    let config = format!(
        "[outbound]\nallow_ranges = [\"127.0.0.0/8\"]\nmax_requests = 3\nmax_response_bytes = 1\n{}{}",
        probe_flow("loop", &[listed.as_str()], &format!("{listed}/go"), "")
            .replace("[flow.config]\n", "[flow.config]\nfollow = \"20\"\n"),
        probe_flow("big", &[listed.as_str()], &format!("{listed}/hello"), ""),
    );
    let server = TestServer::start(&config).await?;
    let api = acme(&server).await?;

    let (branch, _) = decide(&server, "big").await?;
    assert_eq!(branch, "failure");
    let record = last_record(&server, &api, "big").await?;
    let error = record["outbound"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("over 1 bytes"), "{record}");
    assert_eq!(record["outbound"][0]["status"], 200, "{record}");
    hits.store(0, Ordering::SeqCst);

    let (branch, _) = decide(&server, "loop").await?;
    assert_eq!(branch, "failure");
    let record = last_record(&server, &api, "loop").await?;
    assert_eq!(record["reason"], "error HttpRequestDenied", "{record}");
    let outbound = record["outbound"].as_array().cloned().unwrap_or_default();
    assert_eq!(outbound.len(), 4, "{record}");
    assert!(
        outbound[3]["error"]
            .as_str()
            .unwrap()
            .contains("3 requests"),
        "{record}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "the fourth request never left"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_outbound_host_entry_is_a_422_naming_it() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let api = Api::operator(&server).tenant("beta", None).await?;
    let uploaded = api.upload("probe", std::fs::read(OUTBOUND_PROBE)?).await?;
    assert_eq!(uploaded.status(), 201);
    for bad in [
        "crm.example.com",
        "https://crm.example.com/path",
        "https://*.com",
    ] {
        let (status, problem) = body(
            api.json(
                Method::PUT,
                "/v1/flows/f",
                json!({ "plugin": "probe", "outbound_hosts": ["https://ok.example.com", bad] }),
            )
            .await?,
        )
        .await?;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert!(problem.to_string().contains(bad), "{problem}");
    }
    let (status, stored) = body(
        api.json(
            Method::PUT,
            "/v1/flows/f",
            json!({ "plugin": "probe", "outbound_hosts": ["https://*.example.net:8443"] }),
        )
        .await?,
    )
    .await?;
    assert!(status == 200 || status == 201, "{status} {stored}");
    let (_, back) = body(api.get("/v1/flows/f").await?).await?;
    assert_eq!(
        back.to_string()
            .matches("https://*.example.net:8443")
            .count(),
        1,
        "{back}"
    );
    server.stop().await
}
