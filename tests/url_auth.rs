//! Passthru URL authentication end to end, through real HTTP on 127.0.0.1:0: `key` and `basic`
//! flows answer with their secret and, without it, exactly like an unknown flow; rotation,
//! restarts, the flow as read back, the refusal counter, async flows, and the log. And the server
//! answers its Passthru routes without the router (`api::serve`): every answer there is the one
//! the router gives.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{ASYNC_PROBE, Api, IVR_MENU, TempDir, TestServer, body};
use reqwest::Method;
use serde_json::{Value, json};

/// What the tests set as the server's `public_url`.
const PUBLIC: &str = "https://passthru.example.com";
const CONFIG: &str = "public_url = \"https://passthru.example.com/\"\n";
/// A sync call that ivr-menu answers 200 (the caller pressed 1).
const QUERY: &str = "?CallSid=ua1&CallFrom=09800000009&digits=%221%22";

/// Everything a client sees of an answer, but the `Date` header (the clock moves between two
/// requests). Every request sends the same `x-request-id`, which the server echoes.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

async fn see(
    server: &TestServer,
    method: Method,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<Seen> {
    see_at(server, server.addr, method, path, credentials).await
}

/// The same as [`see`], from a server at `addr` (another server on the same state).
async fn see_at(
    server: &TestServer,
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<Seen> {
    let mut request = server
        .client
        .request(method, format!("http://{addr}{path}"))
        .header("x-request-id", "probe-1");
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    let body = response.bytes().await?.to_vec();
    Ok(Seen {
        status,
        headers,
        body,
    })
}

async fn get(server: &TestServer, path: &str) -> anyhow::Result<Seen> {
    see(server, Method::GET, path, None).await
}

/// A tenant with plugin `menu` (ivr-menu) and a sync flow on it per name.
async fn tenant_with_flows<'a>(
    server: &'a TestServer,
    tenant: &str,
    flows: &[&str],
) -> anyhow::Result<Api<'a>> {
    let api = Api::operator(server).tenant(tenant, None).await?;
    let uploaded = api.upload("menu", std::fs::read(IVR_MENU)?).await?;
    assert_eq!(uploaded.status(), 201, "{}", uploaded.text().await?);
    for flow in flows {
        put_flow(&api, flow, json!({ "plugin": "menu" })).await?;
    }
    Ok(api)
}

async fn put_flow(api: &Api<'_>, flow: &str, spec: Value) -> anyhow::Result<()> {
    let (status, stored) = body(
        api.json(Method::PUT, &format!("/v1/flows/{flow}"), spec)
            .await?,
    )
    .await?;
    assert!(status == 200 || status == 201, "{status} {stored}");
    Ok(())
}

/// Sets a flow's URL auth; returns the whole answer.
async fn set_auth(api: &Api<'_>, flow: &str, kind: &str) -> anyhow::Result<Value> {
    let response = api
        .json(
            Method::POST,
            &format!("/v1/flows/{flow}/auth"),
            json!({ "kind": kind }),
        )
        .await?;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, issued) = body(response).await?;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["kind"], kind);
    Ok(issued)
}

fn secret(issued: &Value) -> String {
    issued["secret"].as_str().expect("a secret").to_owned()
}

async fn delete_flow(api: &Api<'_>, flow: &str) -> anyhow::Result<()> {
    let response = api
        .request(Method::DELETE, &format!("/v1/flows/{flow}"))
        .send()
        .await?;
    assert_eq!(response.status(), 204);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_flow_answers_with_its_key_and_like_an_unknown_flow_without_it() -> anyhow::Result<()>
{
    let server = TestServer::start(CONFIG).await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr", "vip"]).await?;
    let issued = set_auth(&acme, "ivr", "key").await?;
    let key = secret(&issued);
    assert!(key.len() >= 22, "at least 128 bits: {key}");
    assert_eq!(issued["path"], format!("/passthru/acme/ivr/{key}"));
    assert_eq!(issued["url"], format!("{PUBLIC}/passthru/acme/ivr/{key}"));
    assert_eq!(issued["username"], Value::Null);
    let other = secret(&set_auth(&acme, "vip", "key").await?);

    let with_key = get(&server, &format!("/passthru/acme/ivr/{key}{QUERY}")).await?;
    assert_eq!(with_key.status, 200, "{with_key:?}");
    let head = see(
        &server,
        Method::HEAD,
        &format!("/passthru/acme/ivr/{key}{QUERY}"),
        None,
    )
    .await?;
    assert_eq!(head.status, 200);

    let refused_paths = [
        format!("/passthru/acme/ivr{QUERY}"),
        format!("/passthru/acme/ivr/{}{QUERY}", &key[..key.len() - 1]),
        format!("/passthru/acme/ivr/{key}x{QUERY}"),
        format!("/passthru/acme/ivr/{other}{QUERY}"),
    ];
    let mut refused = Vec::new();
    for path in &refused_paths {
        refused.push(get(&server, path).await?);
        refused.push(see(&server, Method::HEAD, path, None).await?);
    }
    // A Basic header holding the key does not open a key flow either.
    let as_basic = see(
        &server,
        Method::GET,
        &refused_paths[0],
        Some(("exotel", &key)),
    )
    .await?;

    // The same URLs once the flow is gone: byte for byte the same answers.
    delete_flow(&acme, "ivr").await?;
    let mut unknown = Vec::new();
    for path in &refused_paths {
        unknown.push(get(&server, path).await?);
        unknown.push(see(&server, Method::HEAD, path, None).await?);
    }
    for (refused, unknown) in refused.iter().zip(&unknown) {
        assert_eq!(refused.status, 404);
        assert_eq!(refused, unknown);
    }
    let unknown_basic = see(
        &server,
        Method::GET,
        &refused_paths[0],
        Some(("exotel", &key)),
    )
    .await?;
    assert_eq!(as_basic, unknown_basic);
    let problem: Value = serde_json::from_slice(&unknown[0].body)?;
    assert_eq!(problem["type"], "urn:passthru:problem:unknown-flow");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_flow_answers_with_its_credentials_and_like_an_unknown_flow_without_them()
-> anyhow::Result<()> {
    let server = TestServer::start(CONFIG).await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr"]).await?;
    let issued = set_auth(&acme, "ivr", "basic").await?;
    let password = secret(&issued);
    assert_eq!(issued["username"], "exotel");
    assert_eq!(issued["path"], "/passthru/acme/ivr");
    let url = issued["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("https://exotel:{password}@passthru.example.com/passthru/acme/ivr")
    );

    // The URL as Exotel gets it, pointed at this server: the client turns its credentials into
    // an Authorization header.
    let local = url
        .replace("https://", "http://")
        .replace("passthru.example.com", &server.addr.to_string());
    let answered = server.client.get(format!("{local}{QUERY}")).send().await?;
    assert_eq!(answered.status(), 200);
    let path = format!("/passthru/acme/ivr{QUERY}");
    let good = see(&server, Method::GET, &path, Some(("exotel", &password))).await?;
    assert_eq!(good.status, 200);

    let wrong: [(Option<(&str, &str)>, String); 5] = [
        (None, path.clone()),
        (Some(("exotel", "wrong")), path.clone()),
        (Some(("someone", &password)), path.clone()),
        (Some(("exotel", &password[1..])), path.clone()),
        // The password as a key segment is no way in.
        (None, format!("/passthru/acme/ivr/{password}{QUERY}")),
    ];
    let mut refused = Vec::new();
    for (credentials, path) in &wrong {
        refused.push(see(&server, Method::GET, path, *credentials).await?);
        refused.push(see(&server, Method::HEAD, path, *credentials).await?);
    }
    delete_flow(&acme, "ivr").await?;
    for (i, (credentials, path)) in wrong.iter().enumerate() {
        let unknown = see(&server, Method::GET, path, *credentials).await?;
        assert_eq!(refused[2 * i].status, 404);
        assert_eq!(refused[2 * i], unknown, "{credentials:?} {path}");
        let unknown = see(&server, Method::HEAD, path, *credentials).await?;
        assert_eq!(refused[2 * i + 1], unknown, "HEAD {credentials:?} {path}");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_the_kind_again_rotates_the_secret_and_the_old_one_stops_working()
-> anyhow::Result<()> {
    // No public_url: the answer gives the path only.
    let server = TestServer::start("").await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr"]).await?;
    let status = |path: String| {
        let server = &server;
        async move { anyhow::Ok(get(server, &path).await?.status) }
    };
    let plain = format!("/passthru/acme/ivr{QUERY}");
    assert_eq!(status(plain.clone()).await?, 200, "no auth by default");

    let first = set_auth(&acme, "ivr", "key").await?;
    assert_eq!(first["url"], Value::Null);
    let k1 = secret(&first);
    let k2 = secret(&set_auth(&acme, "ivr", "key").await?);
    assert_ne!(k1, k2);
    assert_eq!(
        status(format!("/passthru/acme/ivr/{k1}{QUERY}")).await?,
        404
    );
    assert_eq!(
        status(format!("/passthru/acme/ivr/{k2}{QUERY}")).await?,
        200
    );
    assert_eq!(status(plain.clone()).await?, 404);

    // Replacing the flow (PUT) keeps its secret.
    put_flow(
        &acme,
        "ivr",
        json!({ "plugin": "menu", "limits": { "fuel": 5000000 } }),
    )
    .await?;
    assert_eq!(
        status(format!("/passthru/acme/ivr/{k2}{QUERY}")).await?,
        200
    );

    // Another kind: the key stops working.
    let password = secret(&set_auth(&acme, "ivr", "basic").await?);
    assert_eq!(
        status(format!("/passthru/acme/ivr/{k2}{QUERY}")).await?,
        404
    );
    let basic = see(&server, Method::GET, &plain, Some(("exotel", &password))).await?;
    assert_eq!(basic.status, 200);
    let p2 = secret(&set_auth(&acme, "ivr", "basic").await?);
    let old = see(&server, Method::GET, &plain, Some(("exotel", &password))).await?;
    assert_eq!(old.status, 404);
    let new = see(&server, Method::GET, &plain, Some(("exotel", &p2))).await?;
    assert_eq!(new.status, 200);

    // Back to none: the plain URL again, and no key segment.
    let none = set_auth(&acme, "ivr", "none").await?;
    assert_eq!(none["secret"], Value::Null);
    assert_eq!(none["path"], "/passthru/acme/ivr");
    assert_eq!(status(plain.clone()).await?, 200);
    assert_eq!(
        status(format!("/passthru/acme/ivr/{k2}{QUERY}")).await?,
        404
    );

    // Bad bodies and unknown flows.
    for (flow, body, expected) in [
        ("ivr", json!({ "kind": "password" }), 400),
        ("ivr", json!({ "kind": "key", "secret": "mine" }), 400),
        ("ivr", json!({}), 400),
        ("nothing", json!({ "kind": "key" }), 404),
    ] {
        let response = acme
            .json(Method::POST, &format!("/v1/flows/{flow}/auth"), body)
            .await?;
        assert_eq!(response.status(), expected);
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_survives_a_restart_on_the_same_data_dir() -> anyhow::Result<()> {
    let dir = TempDir::new("url-auth-restart");
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr", "vip"]).await?;
    let token = acme.token.clone();
    let key = secret(&set_auth(&acme, "ivr", "key").await?);
    let password = secret(&set_auth(&acme, "vip", "basic").await?);
    server.stop().await?;

    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api {
        server: &server,
        token,
    };
    assert_eq!(
        get(&server, &format!("/passthru/acme/ivr/{key}{QUERY}"))
            .await?
            .status,
        200
    );
    assert_eq!(
        get(&server, &format!("/passthru/acme/ivr{QUERY}"))
            .await?
            .status,
        404
    );
    let vip = format!("/passthru/acme/vip{QUERY}");
    assert_eq!(
        see(&server, Method::GET, &vip, Some(("exotel", &password)))
            .await?
            .status,
        200
    );
    assert_eq!(get(&server, &vip).await?.status, 404);
    let (_, flow) = body(acme.get("/v1/flows/ivr").await?).await?;
    assert_eq!(flow["auth"]["kind"], "key");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_flow_shows_its_kind_and_time_but_never_the_secret() -> anyhow::Result<()> {
    let server = TestServer::start(CONFIG).await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr", "vip"]).await?;
    let (_, fresh) = body(acme.get("/v1/flows/ivr").await?).await?;
    assert_eq!(fresh["auth"], json!({ "kind": "none", "set_at_ms": null }));

    let issued = set_auth(&acme, "ivr", "key").await?;
    let key = secret(&issued);
    let password = secret(&set_auth(&acme, "vip", "basic").await?);
    let (status, flow) = body(acme.get("/v1/flows/ivr").await?).await?;
    assert_eq!(status, 200);
    assert_eq!(
        flow["auth"],
        json!({ "kind": "key", "set_at_ms": issued["set_at_ms"] })
    );
    for path in ["/v1/flows/ivr", "/v1/flows/vip", "/v1/flows"] {
        let text = acme.get(path).await?.text().await?;
        assert!(!text.contains(&key), "{path} shows the key: {text}");
        assert!(
            !text.contains(&password),
            "{path} shows the password: {text}"
        );
        assert!(!text.contains("digest"), "{path} shows the digest: {text}");
    }
    // The flow's own answers to PUT, activate and rollback do not show it either.
    let put = acme
        .json(Method::PUT, "/v1/flows/ivr", json!({ "plugin": "menu" }))
        .await?
        .text()
        .await?;
    assert!(
        !put.contains(&key) && put.contains("\"auth\":{\"kind\":\"key\""),
        "{put}"
    );
    server.stop().await
}

fn refused_count(metrics: &str, tenant: &str) -> Option<f64> {
    let series = format!("passthru_auth_refused_total{{tenant=\"{tenant}\"}}");
    metrics
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_per_tenant_and_unknown_flows_are_not() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr", "open"]).await?;
    let scrape = || async { anyhow::Ok(server.metrics().await?) };
    assert_eq!(refused_count(&scrape().await?, "acme"), Some(0.0));

    let key = secret(&set_auth(&acme, "ivr", "key").await?);
    for path in [
        format!("/passthru/acme/ivr{QUERY}"),
        format!("/passthru/acme/ivr/nope{QUERY}"),
        // A key segment on a flow without auth is refused too.
        format!("/passthru/acme/open/nope{QUERY}"),
    ] {
        assert_eq!(get(&server, &path).await?.status, 404, "{path}");
    }
    assert_eq!(
        get(&server, &format!("/passthru/acme/ivr/{key}{QUERY}"))
            .await?
            .status,
        200
    );
    // Unknown tenants and flows: 404, not counted, no series.
    for path in [
        "/passthru/acme/nothing/k",
        "/passthru/nobody/ivr/k",
        "/passthru/nobody/ivr",
    ] {
        assert_eq!(get(&server, path).await?.status, 404, "{path}");
    }
    let text = scrape().await?;
    assert_eq!(refused_count(&text, "acme"), Some(3.0), "{text}");
    assert!(
        !text.contains("nobody") && !text.contains("nothing"),
        "{text}"
    );
    assert!(!text.contains(&key));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_flow_with_a_key_queues_only_with_its_key() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    let uploaded = acme.upload("probe", std::fs::read(ASYNC_PROBE)?).await?;
    assert_eq!(uploaded.status(), 201);
    put_flow(&acme, "log", json!({ "plugin": "probe", "mode": "async" })).await?;
    let key = secret(&set_auth(&acme, "log", "key").await?);

    let queued = get(&server, &format!("/passthru/acme/log/{key}?CallSid=as1")).await?;
    assert_eq!(queued.status, 200);
    assert!(
        queued
            .headers
            .iter()
            .any(|(name, value)| name == "x-passthru-outcome" && value == b"queued"),
        "{queued:?}"
    );
    let paths = [
        "/passthru/acme/log?CallSid=as2".to_owned(),
        "/passthru/acme/log/wrong?CallSid=as3".to_owned(),
    ];
    let mut refused = Vec::new();
    for path in &paths {
        refused.push(get(&server, path).await?);
    }
    let (_, queue) = body(acme.get("/v1/flows/log/queue").await?).await?;
    delete_flow(&acme, "log").await?;
    for (path, refused) in paths.iter().zip(&refused) {
        assert_eq!(refused.status, 404);
        assert_eq!(*refused, get(&server, path).await?, "{path}");
    }
    // Only the request with the key reached the queue: at most one event, ever.
    let events: u64 = ["ready", "retrying", "in_flight", "dead"]
        .iter()
        .map(|k| queue[k].as_u64().unwrap_or(0))
        .sum();
    assert!(events <= 1, "{queue}");
    server.stop().await
}

/// Everything the process logs, for the test that looks for secrets in it.
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_and_spans_name_the_route_template() -> anyhow::Result<()> {
    let log = captured_log();
    let server = TestServer::start("").await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr", "vip"]).await?;
    let key = secret(&set_auth(&acme, "ivr", "key").await?);
    let password = secret(&set_auth(&acme, "vip", "basic").await?);
    let wrong = "wrong-key-zzzzzzzzzzzzzzzzzzzzzz";
    for path in [
        format!("/passthru/acme/ivr/{key}{QUERY}"),
        format!("/passthru/acme/ivr/{wrong}{QUERY}"),
        format!("/passthru/acme/nothing/{wrong}{QUERY}"),
        format!("/passthru/acme/ivr/{key}/extra{QUERY}"),
    ] {
        get(&server, &path).await?;
    }
    let vip = format!("/passthru/acme/vip{QUERY}");
    see(&server, Method::GET, &vip, Some(("exotel", &password))).await?;
    see(&server, Method::GET, &vip, Some(("exotel", wrong))).await?;
    server.stop().await?;

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("route=\"/passthru/{tenant}/{flow}/{key}\"")
            || text.contains("route=/passthru/{tenant}/{flow}/{key}"),
        "the keyed request's span names the template:\n{text}"
    );
    for secret in [&key, &password, wrong] {
        assert!(!text.contains(secret), "{secret} is in the log:\n{text}");
    }
    Ok(())
}

/// Basic credentials, or none.
type Credentials<'a> = Option<(&'a str, &'a str)>;

/// `api::serve` answers the Passthru routes itself, without the router: the router still has them,
/// and a second server on the same state serves the router alone. Every request here, the odd
/// ones included (encoded, trailing slash, extra segment, bad UTF-8, other methods, a query over
/// the limit, wrong secrets), gets the same answer from both, byte for byte but the `Date`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passthru_routes_answer_as_the_router_would() -> anyhow::Result<()> {
    let server = TestServer::start(CONFIG).await?;
    let acme = tenant_with_flows(&server, "acme", &["ivr", "keyed", "basic"]).await?;
    let key = secret(&set_auth(&acme, "keyed", "key").await?);
    let password = secret(&set_auth(&acme, "basic", "basic").await?);
    // A hook with a body: a HEAD's answer has the GET's length and no body.
    let uploaded = acme
        .upload("hello", std::fs::read(common::GREETING)?)
        .await?;
    assert_eq!(uploaded.status(), 201);
    let greeting = json!({ "plugin": "hello", "hook": "greeting", "fallback_text": "Hi." });
    put_flow(&acme, "hello", greeting).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let routed = listener.local_addr()?;
    let router = passthru::api::router(server.state.clone());
    let task = tokio::spawn(async move { axum::serve(listener, router).await });

    let long = format!("?CallSid={}", "x".repeat(server.state.max_query_bytes));
    let cases: Vec<(Method, String, Credentials)> = vec![
        (Method::GET, format!("/passthru/acme/ivr{QUERY}"), None),
        (
            Method::GET,
            "/passthru/acme/ivr?digits=%222%22".into(),
            None,
        ),
        (Method::GET, "/passthru/acme/ivr".into(), None),
        (Method::HEAD, format!("/passthru/acme/ivr{QUERY}"), None),
        (Method::GET, format!("/passthru/%61cme/i%76r{QUERY}"), None),
        (Method::GET, format!("/passthru/acme/nope{QUERY}"), None),
        (Method::GET, format!("/passthru/acme/ivr/{QUERY}"), None),
        (Method::GET, format!("/passthru/acme/ivr/x/y{QUERY}"), None),
        (Method::GET, format!("/passthru//ivr{QUERY}"), None),
        (Method::GET, format!("/passthru/ac%FFme/ivr{QUERY}"), None),
        (Method::GET, format!("/passthru/acme/ivr{long}"), None),
        (Method::POST, format!("/passthru/acme/ivr{QUERY}"), None),
        (
            Method::PUT,
            format!("/passthru/acme/keyed/{key}{QUERY}"),
            None,
        ),
        (
            Method::GET,
            format!("/passthru/acme/keyed/{key}{QUERY}"),
            None,
        ),
        (
            Method::HEAD,
            format!("/passthru/acme/keyed/{key}{QUERY}"),
            None,
        ),
        (
            Method::GET,
            format!("/passthru/acme/keyed/wrong{QUERY}"),
            None,
        ),
        (Method::GET, format!("/passthru/acme/keyed{QUERY}"), None),
        (
            Method::GET,
            format!("/passthru/acme/ivr/{key}{QUERY}"),
            None,
        ),
        (
            Method::GET,
            format!("/passthru/acme/basic{QUERY}"),
            Some(("acme", password.as_str())),
        ),
        (
            Method::GET,
            format!("/passthru/acme/basic{QUERY}"),
            Some(("acme", "wrong")),
        ),
        (Method::GET, format!("/passthru/acme/basic{QUERY}"), None),
        (Method::GET, format!("/passthru/acme/hello{QUERY}"), None),
        (Method::HEAD, format!("/passthru/acme/hello{QUERY}"), None),
    ];
    let mut statuses = Vec::new();
    for (method, path, credentials) in cases {
        let direct = see(&server, method.clone(), &path, credentials).await?;
        let router = see_at(&server, routed, method.clone(), &path, credentials).await?;
        assert_eq!(direct, router, "{method} {path}");
        statuses.push(direct.status);
    }
    // The cases reach every kind of answer, so the comparison is not of one kind alone.
    for status in [200, 302, 400, 404, 405, 414] {
        assert!(statuses.contains(&status), "no {status} among {statuses:?}");
    }
    let head = see(
        &server,
        Method::HEAD,
        &format!("/passthru/acme/hello{QUERY}"),
        None,
    )
    .await?;
    let length = head
        .headers
        .iter()
        .find(|(name, _)| name == "content-length");
    assert!(
        head.body.is_empty() && length.is_some_and(|(_, value)| value != b"0"),
        "{head:?}"
    );

    // Without an x-request-id, each server makes one and answers it.
    for addr in [server.addr, routed] {
        let url = format!("http://{addr}/passthru/acme/ivr{QUERY}");
        let response = server.client.get(url).send().await?;
        let id = response.headers().get("x-request-id").expect("an id");
        assert!(!id.is_empty(), "{addr}");
    }
    task.abort();
    server.stop().await
}
