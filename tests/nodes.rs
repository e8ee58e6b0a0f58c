//! Many nodes on one PostgreSQL database: real `passthru serve` processes on loopback ports,
//! sharing a real server (tests/common/pg.rs). A change made through one node is live on the
//! others within a second; a node killed with SIGKILL loses no event it answered `200` for.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use common::{ASYNC_PROBE, CRM_PUSH, IVR_MENU, OPERATOR, PASSTHRU, TempDir, VIP_CALLER};
use reqwest::Method;
use serde_json::{Value, json};

/// How long a node may take to start (the first compiles plugins).
const START_PATIENCE: Duration = Duration::from_secs(60);
/// The most a change may take to be live on the other nodes (the bound).
const LIVE_WITHIN: Duration = Duration::from_secs(1);

/// One `passthru serve` process.
struct Node {
    addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Node {
    /// Starts a node on `database` with the config `toml` and waits until it is ready.
    async fn start(database: &str, toml: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("node");
        let config = dir.0.join("passthru.toml");
        std::fs::write(&config, toml)?;
        let addr = free_port()?;
        let child = Command::new(PASSTHRU)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir.0.join("data"))
            .arg("--database")
            .arg(database)
            .env("PASSTHRU_OPERATOR_TOKEN", OPERATOR)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.0.join("log"))?))
            .spawn()?;
        let node = Self {
            addr,
            child,
            _dir: dir,
        };
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(node.url("/readyz")).send().await
                && r.status() == 200
            {
                return Ok(node);
            }
            if started.elapsed() > START_PATIENCE {
                anyhow::bail!("node did not start: {}", node.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no lease given up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A client of one node's API with a bearer token.
struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    fn new(token: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            token: token.to_owned(),
        }
    }

    async fn send(
        &self,
        node: &Node,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), node.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {body}");
        Ok(body)
    }

    async fn upload(&self, node: &Node, plugin: &str, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(node.url(&format!("/v1/plugins/{plugin}/versions")))
            .bearer_auth(&self.token)
            .header("content-type", "application/wasm")
            .body(std::fs::read(path)?)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "upload: {}",
            response.status()
        );
        Ok(response.json().await?)
    }
}

/// A tenant `acme` made through `node`: its token.
async fn tenant(node: &Node) -> anyhow::Result<String> {
    let op = Client::new(OPERATOR);
    op.send(
        node,
        Method::POST,
        "/v1/tenants",
        Some(json!({ "name": "acme" })),
    )
    .await?;
    let token = op
        .send(node, Method::POST, "/v1/tenants/acme/tokens", None)
        .await?;
    Ok(token["token"].as_str().expect("a token").to_owned())
}

/// The status `node` answers the call with: 200 for version 1 (ivr-menu: the caller pressed 1),
/// 302 for version 2 (vip-caller: the caller is no VIP).
async fn status_of(http: &reqwest::Client, node: &Node) -> u16 {
    let call = "/passthru/acme/ivr?CallSid=n1&CallFrom=09800000009&digits=%221%22";
    match http.get(node.url(call)).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until every node in `nodes` answers `want`; how long that took.
async fn live_on(nodes: &[&Node], want: u16) -> anyhow::Result<Duration> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let started = Instant::now();
    for node in nodes {
        while status_of(&http, node).await != want {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "node {} never answered {want}",
                node.addr
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(started.elapsed())
}

async fn start_three(database: &str, toml: &str) -> anyhow::Result<[Node; 3]> {
    // The first migrates the schema; the others start together.
    let one = Node::start(database, toml).await?;
    let (two, three) = tokio::try_join!(Node::start(database, toml), Node::start(database, toml))?;
    Ok([one, two, three])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_node_is_live_on_every_node_within_a_second() -> anyhow::Result<()> {
    let database = tokio::task::spawn_blocking(common::pg::database).await?;
    let [one, two, three] = start_three(&database, "").await?;
    let acme = Client::new(&tenant(&one).await?);
    acme.upload(&one, "menu", IVR_MENU).await?;
    let v2 = acme.upload(&one, "menu", VIP_CALLER).await?;
    assert_eq!(v2["version"], 2);

    // Bound through node 1: version 1 answers on nodes 2 and 3.
    acme.send(
        &one,
        Method::PUT,
        "/v1/flows/ivr",
        Some(json!({ "plugin": "menu", "version": 1,
                     "config": { "vip_numbers": "09800000001" } })),
    )
    .await?;
    let bound = live_on(&[&two, &three], 200).await?;

    // Activated through node 1: version 2 on nodes 2 and 3.
    acme.send(
        &one,
        Method::POST,
        "/v1/flows/ivr/activate",
        Some(json!({ "version": 2 })),
    )
    .await?;
    let activated = live_on(&[&two, &three], 302).await?;

    // Rolled back through node 3: version 1 everywhere.
    acme.send(&three, Method::POST, "/v1/flows/ivr/rollback", None)
        .await?;
    let rolled_back = live_on(&[&one, &two], 200).await?;
    eprintln!(
        "live on the other nodes after: bind {bound:?}, activate {activated:?}, rollback \
         {rolled_back:?}"
    );
    for (what, took) in [
        ("bind", bound),
        ("activate", activated),
        ("rollback", rolled_back),
    ] {
        assert!(
            took < LIVE_WITHIN,
            "{what} took {took:?} to be live on the other nodes"
        );
    }

    // The uploaded bytes came from the database: node 3 never had them on its disk, and still
    // answers after node 1 is gone.
    drop(one);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    assert_eq!(status_of(&http, &three).await, 200);
    Ok(())
}

/// What the test CRM received: each delivered event's call, and when.
#[derive(Default)]
struct Crm {
    delivered: Mutex<Vec<(String, Instant)>>,
}

async fn crm_calls(State(crm): State<Arc<Crm>>, body: String) -> StatusCode {
    // Slow enough that a node holds a backlog when it is killed.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Some(sid) = json["call_sid"].as_str() {
        crm.delivered
            .lock()
            .unwrap()
            .push((sid.to_owned(), Instant::now()));
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_no_event_it_answered_200_for() -> anyhow::Result<()> {
    let crm = Arc::new(Crm::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let crm_addr = listener.local_addr()?;
    let router = Router::new()
        .route("/calls", axum::routing::post(crm_calls))
        .with_state(crm.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let crm_url = format!("http://127.0.0.1:{}", crm_addr.port());
    let plugin = Path::new(CRM_PUSH);
    let toml = format!(
        "[async]\nworkers = 2\nlease_ms = 1000\n\
         [outbound]\nallow_ranges = [\"127.0.0.0/8\"]\n\
         [[flow]]\ntenant = \"acme\"\nname = \"crm\"\nplugin = {plugin:?}\nmode = \"async\"\n\
         outbound_hosts = [{crm_url:?}]\n\
         [flow.retry]\nmax_attempts = 20\nbackoff_ms = 20\nmax_backoff_ms = 200\n\
         [flow.config]\ncrm_url = \"{crm_url}/calls\"\n"
    );
    let database = tokio::task::spawn_blocking(common::pg::database).await?;
    let [one, mut two, three] = start_three(&database, &toml).await?;

    // 600 calls, round robin over the three nodes, 6 at a time; node 2 is killed after 200.
    let http = reqwest::Client::new();
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    let mut killed_at = None;
    for batch in 0..100 {
        if batch == 33 {
            two.kill();
            killed_at = Some(Instant::now());
        }
        let sends = (0..6).map(|i| {
            let n = batch * 6 + i;
            let node = [&one, &two, &three][n % 3];
            let sid = format!("CA{n:04}");
            let url = node.url(&format!("/passthru/acme/crm?CallSid={sid}&CallFrom=0980"));
            let http = http.clone();
            async move {
                let ok = matches!(http.get(url).send().await, Ok(r) if r.status() == 200);
                (sid, n % 3, ok)
            }
        });
        for (sid, node, ok) in futures_util::future::join_all(sends).await {
            if ok {
                answered.insert(sid, node);
            }
        }
    }
    let killed_at = killed_at.expect("node 2 was killed");
    let from_two = answered.values().filter(|n| **n == 1).count();
    assert!(
        from_two >= 60,
        "node 2 answered {from_two} before it was killed"
    );

    // Every call answered 200, by any node, reaches the CRM; the dead node's backlog through the
    // survivors, once its lease ran out.
    let started = Instant::now();
    loop {
        let seen: BTreeSet<String> = crm
            .delivered
            .lock()
            .unwrap()
            .iter()
            .map(|(sid, _)| sid.clone())
            .collect();
        let missing: Vec<&String> = answered.keys().filter(|s| !seen.contains(*s)).collect();
        if missing.is_empty() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{} calls answered 200 never reached the CRM, e.g. {:?}; node logs: {} / {}",
            missing.len(),
            &missing[..missing.len().min(5)],
            one.log(),
            three.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = crm.delivered.lock().unwrap();
    let taken_over = delivered
        .iter()
        .filter(|(sid, at)| answered.get(sid) == Some(&1) && *at > killed_at)
        .count();
    eprintln!(
        "{} calls answered 200 ({from_two} by node 2), {} deliveries, {taken_over} of node 2's \
         delivered by the survivors after the kill",
        answered.len(),
        delivered.len()
    );
    assert!(
        taken_over > 0,
        "the survivors delivered none of the killed node's events"
    );
    Ok(())
}

/// A node whose lease ran out (paused longer than its lease, say) while another node claimed its
/// events lets go of them at its next renewal: it runs them no more, and what a run it had under
/// way would write does not overwrite the new holder's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_ran_out_lets_go_of_the_events_others_claimed() -> anyhow::Result<()> {
    let plugin = Path::new(ASYNC_PROBE);
    let toml = format!(
        "[async]\nworkers = 2\nlease_ms = 400\n\
         [[flow]]\ntenant = \"acme\"\nname = \"busy\"\nplugin = {plugin:?}\nmode = \"async\"\n\
         [flow.retry]\nmax_attempts = 100\nbackoff_ms = 500\nmax_backoff_ms = 500\n\
         [flow.config]\nfail_attempts = \"1000\"\n"
    );
    let database = tokio::task::spawn_blocking(common::pg::database).await?;
    let node = Node::start(&database, &toml).await?;
    let op = Client::new(OPERATOR);
    let token = op
        .send(&node, Method::POST, "/v1/tenants/acme/tokens", None)
        .await?;
    let acme = Client::new(token["token"].as_str().expect("a token"));
    let http = reqwest::Client::new();
    for n in 0..3 {
        let url = node.url(&format!("/passthru/acme/busy?CallSid=CA{n}"));
        assert_eq!(http.get(url).send().await?.status(), 200);
    }
    let held = || async {
        let queue = acme
            .send(&node, Method::GET, "/v1/flows/busy/queue", None)
            .await?;
        let count = |k: &str| queue[k].as_u64().unwrap_or(0);
        anyhow::Ok(count("ready") + count("retrying") + count("in_flight"))
    };
    assert_eq!(held().await?, 3);

    // Another node claims all three, as if this one had stopped renewing.
    let db = database.clone();
    let taken: Vec<(i64, i64)> = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&db, postgres::NoTls)?;
        let mut tx = client.transaction()?;
        tx.execute(
            "INSERT INTO nodes (id, started_at_ms, alive_until_ms) \
             VALUES ('elsewhere', 0, 9000000000000000)",
            &[],
        )?;
        tx.execute(
            "UPDATE nodes SET alive_until_ms = 0 WHERE id <> 'elsewhere'",
            &[],
        )?;
        let rows = tx.query(
            "UPDATE events SET owner = 'elsewhere' WHERE NOT dead RETURNING id, attempts",
            &[],
        )?;
        tx.commit()?;
        let mut taken: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        taken.sort_unstable();
        anyhow::Ok(taken)
    })
    .await??;
    assert_eq!(taken.len(), 3);

    // At its next renewal (every 100 ms), the node sees its lease ran out and lets go.
    common::eventually("the node letting go of the events", || async {
        Ok((held().await? == 0).then_some(()))
    })
    .await
    .map_err(|e| e.context(node.log()))?;
    // What the node ran meanwhile was not written over the new holder's state.
    let db = database.clone();
    let now: Vec<(i64, i64)> = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&db, postgres::NoTls)?;
        let rows = client.query(
            "SELECT id, attempts FROM events WHERE owner = 'elsewhere' AND NOT dead ORDER BY id",
            &[],
        )?;
        anyhow::Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })
    .await??;
    assert_eq!(now, taken);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_ready_only_while_it_reaches_its_database() -> anyhow::Result<()> {
    let url = tokio::task::spawn_blocking(common::pg::database).await?;
    let node = Node::start(&url, "").await?;
    let http = reqwest::Client::new();
    let ready = http.get(node.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await?;
    assert_eq!(ready["database"], "postgres");

    tokio::task::spawn_blocking(move || common::pg::drop_database(&url)).await?;
    let gone = http.get(node.url("/readyz")).send().await?;
    assert_eq!(gone.status(), 503);
    let problem: Value = gone.json().await?;
    assert_eq!(problem["type"], "urn:passthru:problem:not-ready");
    // Anyone may ask: what the database said (its name, host, user) is for the log only. (A
    // dropped database is seen as the timeout here; either answer names nothing of it.)
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail == "the database failed (the server's log says why)"
            || detail.starts_with("the database did not answer within"),
        "{detail}"
    );
    // Still alive: liveness is not readiness.
    assert_eq!(http.get(node.url("/healthz")).send().await?.status(), 200);
    Ok(())
}

/// Polls `node` until `GET path` answers `want` (a status) with `check` true of its body; how
/// long that took.
async fn until(
    acme: &Client,
    node: &Node,
    path: &str,
    want: u16,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let response = acme
            .http
            .get(node.url(path))
            .bearer_auth(&acme.token)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == want && check(&body) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "GET {path} on {} still answers {status} {body}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_writes_through_one_node_are_read_on_the_others() -> anyhow::Result<()> {
    let database = tokio::task::spawn_blocking(common::pg::database).await?;
    let one = Node::start(&database, "").await?;
    let two = Node::start(&database, "").await?;
    let acme = Client::new(&tenant(&one).await?);

    acme.send(
        &one,
        Method::PUT,
        "/v1/kv/agents/keys/0980",
        Some(json!({ "value": "agent-7" })),
    )
    .await?;
    let set = until(&acme, &two, "/v1/kv/agents/keys/0980", 200, |b| {
        b["value"] == "agent-7"
    })
    .await?;
    acme.send(
        &two,
        Method::PUT,
        "/v1/kv/agents/keys/0980",
        Some(json!({ "value": "agent-9" })),
    )
    .await?;
    until(&acme, &one, "/v1/kv/agents/keys/0980", 200, |b| {
        b["value"] == "agent-9"
    })
    .await?;
    acme.send(&two, Method::DELETE, "/v1/kv/agents/keys/0980", None)
        .await?;
    let deleted = until(&acme, &one, "/v1/kv/agents/keys/0980", 404, |_| true).await?;

    // A bulk import is announced by store: the other node reloads it whole.
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("{{\"key\":\"k{i:05}\",\"value\":\"v{i}\"}}"))
        .collect();
    let response = acme
        .http
        .post(one.url("/v1/kv/vips/import"))
        .bearer_auth(&acme.token)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let imported = until(&acme, &two, "/v1/kv/vips/keys/k04999", 200, |b| {
        b["value"] == "v4999"
    })
    .await?;
    // The tenant's usage on the other node counts them, and the deleted key no more.
    let usage = until(&acme, &two, "/v1/kv", 200, |b| b["keys"] == 5000).await;
    eprintln!(
        "seen on the other node after: set {set:?}, delete {deleted:?}, import of 5000 keys \
         {imported:?}"
    );
    usage?;
    for took in [set, deleted, imported] {
        assert!(took < LIVE_WITHIN, "took {took:?}");
    }
    Ok(())
}

/// Runs `passthru serve` with `args` and no operator token until it exits; its stderr.
fn serve_fails(args: &[&str]) -> anyhow::Result<String> {
    let dir = TempDir::new("refused");
    let output = Command::new(PASSTHRU)
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir.0)
        .arg("--listen")
        .arg(free_port()?.to_string())
        .args(args)
        .env_remove("PASSTHRU_OPERATOR_TOKEN")
        .env_remove("PASSTHRU_DATABASE_URL")
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(!output.status.success(), "the server started");
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_without_a_shared_token_or_with_a_bad_url() -> anyhow::Result<()> {
    let url = tokio::task::spawn_blocking(common::pg::database).await?;
    let without_token = serve_fails(&["--database", &url])?;
    assert!(
        without_token.contains("PASSTHRU_OPERATOR_TOKEN"),
        "{without_token}"
    );
    // A bad URL is named as such, without repeating it (it may hold a password).
    let bad = serve_fails(&[
        "--database",
        "postgres://u:hunter2secret@db/x?sslmode=bogus",
    ])?;
    assert!(
        bad.contains("not a valid PostgreSQL connection string"),
        "{bad}"
    );
    assert!(!bad.contains("hunter2secret"), "{bad}");
    Ok(())
}
