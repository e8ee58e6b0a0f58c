//! The sync decision path end to end: a real server on 127.0.0.1:0, real plugins built from
//! `plugins/`, real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Api, HOSTILE, IVR_MENU, TestServer, VIP_CALLER, body, flow, samples};

/// Callers the `vip` flow treats as VIPs; the samples use some of them.
const VIPS: &str = "09800000001, 09800000003,09800000011";

fn demo_config() -> String {
    [
        flow("demo", "ivr", IVR_MENU, ""),
        flow(
            "demo",
            "vip",
            VIP_CALLER,
            &format!("[flow.config]\nvip_numbers = \"{VIPS}\""),
        ),
    ]
    .concat()
}

/// The value of `key` in a raw query, found without the host's parser.
fn raw_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn branch(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("x-passthru-branch")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn outcome(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("x-passthru-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_pick_the_branch_of_the_ivr_flow() -> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let one = server
        .get("/passthru/demo/ivr?CallSid=0a1b&digits=%221%22")
        .await?;
    assert_eq!(one.status(), 200);
    assert_eq!(branch(&one), "success");
    assert_eq!(outcome(&one), "decided");
    assert!(one.headers().get("location").is_none());

    let two = server
        .get("/passthru/demo/ivr?CallSid=0a1b&digits=%222%22")
        .await?;
    assert_eq!(two.status(), 302, "302 is a branch, not a redirect");
    assert_eq!(branch(&two), "failure");
    assert!(two.headers().get("location").is_none());

    let none = server.get("/passthru/demo/ivr").await?;
    assert_eq!(none.status(), 302);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_sample_gets_the_branch_its_digits_and_caller_imply() -> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let vips: Vec<&str> = VIPS.split(',').map(str::trim).collect();
    for (name, query) in samples() {
        // ivr-menu: success iff the caller pressed exactly 1.
        let expected = if raw_param(&query, "digits") == Some("%221%22") {
            200
        } else {
            302
        };
        let got = server.get(&format!("/passthru/demo/ivr?{query}")).await?;
        assert_eq!(got.status(), expected, "ivr, sample {name}");
        assert_eq!(outcome(&got), "decided", "ivr, sample {name}");

        // The same call after the caller pressed 1, then 2 (Exotel appends; the last wins).
        for (digits, expected) in [("%221%22", 200), ("%222%22", 302), ("1", 200)] {
            let got = server
                .get(&format!("/passthru/demo/ivr?{query}&digits={digits}"))
                .await?;
            assert_eq!(
                got.status(),
                expected,
                "ivr, sample {name}, digits {digits}"
            );
        }

        // vip-caller: success iff the caller (CallFrom, else From) is a VIP.
        let caller = raw_param(&query, "CallFrom").or(raw_param(&query, "From"));
        let expected = if caller.is_some_and(|c| vips.contains(&c)) {
            200
        } else {
            302
        };
        let got = server.get(&format!("/passthru/demo/vip?{query}")).await?;
        assert_eq!(
            got.status(),
            expected,
            "vip, sample {name}, caller {caller:?}"
        );
        assert_eq!(outcome(&got), "decided", "vip, sample {name}");
    }
    server.stop().await
}

/// One hostile behaviour: its flow's deadline and the outcome it must produce.
struct Hostile {
    flow: &'static str,
    mode: &'static str,
    limits: &'static str,
    fallback: &'static str,
    outcome: &'static str,
    deadline_ms: u64,
}

const HOSTILES: &[Hostile] = &[
    Hostile {
        flow: "spin",
        mode: "loop",
        limits: "fuel = 1000000000000\ndeadline_ms = 100",
        fallback: "failure",
        outcome: "deadline",
        deadline_ms: 100,
    },
    Hostile {
        flow: "burn",
        mode: "loop",
        limits: "fuel = 2000000\ndeadline_ms = 200",
        fallback: "success",
        outcome: "out_of_fuel",
        deadline_ms: 200,
    },
    Hostile {
        flow: "bomb",
        mode: "memory",
        limits: "memory_mb = 32\nfuel = 1000000000\ndeadline_ms = 500",
        fallback: "success",
        outcome: "memory_limit",
        deadline_ms: 500,
    },
    Hostile {
        flow: "deep",
        mode: "recurse",
        limits: "deadline_ms = 200",
        fallback: "failure",
        outcome: "trap",
        deadline_ms: 200,
    },
    Hostile {
        flow: "boom",
        mode: "trap",
        limits: "deadline_ms = 200",
        fallback: "success",
        outcome: "trap",
        deadline_ms: 200,
    },
];

/// How late past its deadline a fallback answer may come: a loaded 2-core CI machine, a debug
/// build, and the HTTP round trip.
const MARGIN: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_get_the_fallback_within_the_deadline_and_do_no_harm() -> anyhow::Result<()>
{
    let mut config = demo_config();
    for h in HOSTILES {
        config.push_str(&flow(
            "evil",
            h.flow,
            HOSTILE,
            &format!(
                "fallback = \"{}\"\n[flow.limits]\n{}\n[flow.config]\nmode = \"{}\"",
                h.fallback, h.limits, h.mode
            ),
        ));
    }
    let server = TestServer::start(&config).await?;
    for h in HOSTILES {
        let started = Instant::now();
        let got = server
            .get(&format!(
                "/passthru/evil/{}?CallSid=hostile{}",
                h.flow, h.flow
            ))
            .await?;
        let took = started.elapsed();
        let expected = if h.fallback == "success" { 200 } else { 302 };
        assert_eq!(got.status(), expected, "{}: the fallback branch", h.flow);
        assert_eq!(branch(&got), h.fallback, "{}", h.flow);
        assert_eq!(outcome(&got), h.outcome, "{}: the failure kind", h.flow);
        assert!(
            took <= Duration::from_millis(h.deadline_ms) + MARGIN,
            "{}: answered after {took:?}, deadline {} ms",
            h.flow,
            h.deadline_ms
        );

        // The next good request, to another tenant, is unharmed.
        let good = server
            .get("/passthru/demo/ivr?CallSid=after&digits=%221%22")
            .await?;
        assert_eq!(good.status(), 200, "a good call right after {}", h.flow);
        assert_eq!(outcome(&good), "decided");
        // And so is the same plugin, on a fresh instance, when asked to behave.
        let same = server
            .get(&format!("/passthru/evil/{}?CallSid=again", h.flow))
            .await?;
        assert_eq!(outcome(&same), h.outcome, "{} stays hostile", h.flow);
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_plugin_does_not_poison_later_calls_of_the_same_plugin() -> anyhow::Result<()> {
    // One compiled plugin, two flows: one makes it trap, the other lets it answer.
    let config = [
        flow("t", "bad", HOSTILE, "[flow.config]\nmode = \"trap\""),
        flow("t", "good", HOSTILE, "[flow.config]\nmode = \"ok\""),
    ]
    .concat();
    let server = TestServer::start(&config).await?;
    for round in 0..5 {
        let bad = server.get("/passthru/t/bad").await?;
        assert_eq!(outcome(&bad), "trap", "round {round}");
        let good = server.get("/passthru/t/good").await?;
        assert_eq!(good.status(), 200, "round {round}");
        assert_eq!(outcome(&good), "decided", "round {round}");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_problem_details() -> anyhow::Result<()> {
    let config = format!("max_query_bytes = 64\n{}", demo_config());
    let server = TestServer::start(&config).await?;

    let missing = server.get("/passthru/nobody/ivr?CallSid=x").await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = missing.json().await?;
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "urn:passthru:problem:unknown-flow");
    assert!(body["detail"].as_str().unwrap().contains("nobody"));

    let no_flow = server.get("/passthru/demo/nope").await?;
    assert_eq!(no_flow.status(), 404);

    let elsewhere = server.get("/somewhere/else").await?;
    assert_eq!(elsewhere.status(), 404);
    let body: serde_json::Value = elsewhere.json().await?;
    assert_eq!(body["type"], "urn:passthru:problem:not-found");

    let long = format!("/passthru/demo/ivr?CallSid={}", "a".repeat(100));
    let too_long = server.get(&long).await?;
    assert_eq!(too_long.status(), 414);
    let body: serde_json::Value = too_long.json().await?;
    assert_eq!(body["type"], "urn:passthru:problem:query-too-long");
    assert!(body["detail"].as_str().unwrap().contains("64"));

    // Exactly at the limit is fine, and malformed encodings are answered, not refused.
    let at_limit = format!(
        "/passthru/demo/ivr?digits=%221%22&x={}",
        "b".repeat(64 - 17)
    );
    assert_eq!(server.get(&at_limit).await?.status(), 200);
    let garbage = server
        .get("/passthru/demo/ivr?%zz=%FF%FE&&=&digits=%221")
        .await?;
    assert_eq!(outcome(&garbage), "decided");

    let health = server.get("/healthz").await?;
    assert_eq!(health.status(), 200);

    let post = server
        .client
        .post(server.url("/passthru/demo/ivr"))
        .send()
        .await?;
    assert_eq!(post.status(), 405);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_call_finish() -> anyhow::Result<()> {
    let config = flow(
        "t",
        "slow",
        HOSTILE,
        "[flow.limits]\nfuel = 1000000000000\ndeadline_ms = 400\n[flow.config]\nmode = \"loop\"",
    );
    let mut server = TestServer::start(&config).await?;
    let request = server.client.get(server.url("/passthru/t/slow")).send();
    let in_flight = tokio::spawn(request);
    // Wait until the call is running in the sandbox (polling a counter, not sleeping for luck).
    while server.sandbox.calls_in_flight() == 0 {
        assert!(
            !in_flight.is_finished(),
            "the slow call ended before it was seen running"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.signal_stop();
    let answered = in_flight.await??;
    assert_eq!(answered.status(), 302);
    assert_eq!(outcome(&answered), "deadline");
    server.wait().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_matches_the_routes() -> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let got = server.get("/openapi.json").await?;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/json");
    let text = got.text().await?;
    assert!(
        text == passthru::api::openapi_json(),
        "/openapi.json serves another document than the generated one"
    );
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/passthru/{tenant}/{flow}"));
    // The admin and upload routes' timeouts answer 408; the upload's caps on versions, 409.
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"].get("408").is_some(),
                "{method} {path} does not document its 408"
            );
        }
    }
    let upload = &paths["/v1/plugins/{plugin}/versions"]["post"];
    assert!(upload["responses"].get("409").is_some(), "{upload}");
    for path in paths.keys() {
        let concrete = path
            .replace("{tenant}", "demo")
            .replace("{flow}", "ivr")
            .replace("{file}", "app.js");
        let response = server.get(&concrete).await?;
        let not_routed = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t == "application/problem+json")
            && response.json::<serde_json::Value>().await?["type"]
                == "urn:passthru:problem:not-found";
        assert!(!not_routed, "{path} is documented but not routed");
    }
    server.stop().await
}

/// The checked-in `docs/openapi.json` is the document generated from the handlers and types
/// (`passthru::api::ApiDoc`). After changing them, rewrite it with
/// `PASSTHRU_UPDATE_OPENAPI=1 cargo test -p passthru --test server openapi`, and commit the diff.
#[test]
fn the_checked_in_openapi_document_is_the_generated_one() -> anyhow::Result<()> {
    let generated = passthru::api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var("PASSTHRU_UPDATE_OPENAPI").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, generated)?;
        return Ok(());
    }
    let checked_in = std::fs::read_to_string(&path)?;
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        let show = |text: &str| text.lines().nth(line).unwrap_or("(end of file)").to_owned();
        panic!(
            "docs/openapi.json is not the generated document; first difference at line {}:\n  \
             checked in: {}\n  generated:  {}\nrun `PASSTHRU_UPDATE_OPENAPI=1 cargo test -p \
             passthru --test server openapi` and commit the result",
            line + 1,
            show(&checked_in),
            show(generated),
        );
    }
    Ok(())
}

/// Every route `api::router` registers (host/src/api/mod.rs), with its method. A route added
/// there belongs here too, and in the OpenAPI document (a `#[utoipa::path]` on its handler,
/// listed in host/src/api/openapi.rs).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/passthru/{tenant}/{flow}"),
    ("get", "/passthru/{tenant}/{flow}/{key}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/tenants"),
    ("get", "/v1/tenants"),
    ("get", "/v1/tenants/{tenant}"),
    ("patch", "/v1/tenants/{tenant}"),
    ("post", "/v1/tenants/{tenant}/tokens"),
    ("get", "/v1/tenants/{tenant}/tokens"),
    ("delete", "/v1/tenants/{tenant}/tokens/{id}"),
    ("get", "/v1/plugins"),
    ("post", "/v1/plugins/{plugin}/versions"),
    ("get", "/v1/plugins/{plugin}/versions"),
    ("get", "/v1/plugins/{plugin}/versions/{version}"),
    ("delete", "/v1/plugins/{plugin}/versions/{version}"),
    ("get", "/v1/flows"),
    ("get", "/v1/flows/{flow}"),
    ("put", "/v1/flows/{flow}"),
    ("delete", "/v1/flows/{flow}"),
    ("post", "/v1/flows/{flow}/activate"),
    ("post", "/v1/flows/{flow}/rollback"),
    ("post", "/v1/flows/{flow}/auth"),
    ("post", "/v1/flows/{flow}/try"),
    ("put", "/v1/flows/{flow}/canary"),
    ("delete", "/v1/flows/{flow}/canary"),
    ("post", "/v1/flows/{flow}/canary/promote"),
    ("post", "/v1/flows/{flow}/backtest"),
    ("put", "/v1/flows/{flow}/secrets/{key}"),
    ("delete", "/v1/flows/{flow}/secrets/{key}"),
    ("get", "/v1/kv"),
    ("get", "/v1/kv/{store}/keys"),
    ("get", "/v1/kv/{store}/keys/{key}"),
    ("put", "/v1/kv/{store}/keys/{key}"),
    ("delete", "/v1/kv/{store}/keys/{key}"),
    ("post", "/v1/kv/{store}/import"),
    ("get", "/v1/flows/{flow}/queue"),
    ("get", "/v1/flows/{flow}/dead-letters"),
    ("get", "/v1/flows/{flow}/dead-letters/{id}"),
    ("delete", "/v1/flows/{flow}/dead-letters/{id}"),
    ("post", "/v1/flows/{flow}/dead-letters/{id}/replay"),
    ("get", "/v1/decisions"),
    ("get", "/v1/calls/{call_sid}"),
    ("get", "/v1/flows/{flow}/stats"),
    ("get", "/console"),
    ("get", "/console/{file}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_with_its_method() -> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let doc: serde_json::Value = server.get("/openapi.json").await?.json().await?;
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        let upper = method.to_uppercase();
        assert!(
            paths
                .get(*path)
                .is_some_and(|item| item[*method].is_object()),
            "{upper} {path} is routed but not documented"
        );

        // The list itself stays true: the router answers this method on this path (no token
        // is sent, so admin routes answer 401, never 404 or 405).
        let concrete = path
            .replace("{tenant}", "demo")
            .replace("{flow}", "ivr")
            .replace("{plugin}", "menu")
            .replace("{version}", "1")
            .replace("{id}", "token1")
            .replace("{call_sid}", "call1")
            .replace("{store}", "agents")
            .replace("{file}", "app.js");
        let response = server
            .client
            .request(
                reqwest::Method::from_bytes(upper.as_bytes())?,
                server.url(&concrete),
            )
            .send()
            .await?;
        let status = response.status();
        let is_problem = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t == "application/problem+json");
        let kind = if is_problem {
            response.json::<serde_json::Value>().await?["type"].clone()
        } else {
            serde_json::Value::Null
        };
        assert!(
            status != 405 && kind != "urn:passthru:problem:not-found",
            "{upper} {concrete} is listed but not routed: {status} {kind}"
        );
    }

    // And the document has no operation beyond the routes.
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                documented.push((method, path.as_str()));
            }
        }
    }
    let mut routed = ROUTES.to_vec();
    routed.sort_unstable();
    documented.sort_unstable();
    assert_eq!(
        documented, routed,
        "documented operations and routes differ"
    );
    server.stop().await
}

/// A client of the admin API holding a token of the config's tenant `demo`.
async fn demo_tenant(server: &TestServer) -> anyhow::Result<Api<'_>> {
    let issued = Api::operator(server)
        .request(reqwest::Method::POST, "/v1/tenants/demo/tokens")
        .send()
        .await?;
    let (status, issued) = body(issued).await?;
    assert_eq!(status, 201, "{issued}");
    Ok(Api {
        server,
        token: issued["token"].as_str().unwrap().to_owned(),
    })
}

/// `HEAD` of a sync flow: the plugin runs, so the status and headers are the `GET`'s, but it
/// leaves no decision record (the `GET` that follows is the call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_a_sync_flow_answers_the_gets_status_and_headers_and_leaves_no_record()
-> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let demo = demo_tenant(&server).await?;
    for (digit, status) in [(1, 200), (2, 302)] {
        let get = server
            .get(&format!(
                "/passthru/demo/ivr?CallSid=get-{digit}&digits=%22{digit}%22"
            ))
            .await?;
        let head = server
            .client
            .head(server.url(&format!(
                "/passthru/demo/ivr?CallSid=head-{digit}&digits=%22{digit}%22"
            )))
            .send()
            .await?;
        assert_eq!(get.status(), status);
        assert_eq!(head.status(), get.status(), "digit {digit}");
        for name in ["x-passthru-branch", "x-passthru-outcome", "content-length"] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "digit {digit}: {name}"
            );
        }
        assert_eq!(head.text().await?, "");
    }
    server
        .state
        .recorder
        .flush(std::time::Duration::from_secs(5));
    for digit in [1, 2] {
        let (status, got) = body(demo.get(&format!("/v1/calls/get-{digit}")).await?).await?;
        assert_eq!(status, 200, "the GET is recorded: {got}");
        let (status, got) = body(demo.get(&format!("/v1/calls/head-{digit}")).await?).await?;
        assert_eq!(status, 404, "a HEAD leaves no record: {got}");
    }
    let (_, all) = body(demo.get("/v1/decisions?flow=ivr").await?).await?;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2), "{all}");
    server.stop().await
}

/// Whether the OpenAPI document lists `status` among the answers of `method path`.
fn documented(doc: &serde_json::Value, method: &str, path: &str, status: u16) -> bool {
    doc["paths"][path][method]["responses"]
        .get(status.to_string())
        .is_some()
}

/// A path segment that does not decode is a 400 problem, and the operation documents its 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_segment_that_does_not_decode_is_a_documented_400() -> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let demo = demo_tenant(&server).await?;
    let doc: serde_json::Value = server.get("/openapi.json").await?.json().await?;
    let cases = [
        ("/passthru/demo/%ff", "/passthru/{tenant}/{flow}"),
        ("/passthru/%ff/ivr", "/passthru/{tenant}/{flow}"),
        ("/passthru/demo/ivr/%ff", "/passthru/{tenant}/{flow}/{key}"),
        ("/v1/calls/%ff", "/v1/calls/{call_sid}"),
    ];
    for (concrete, path) in cases {
        let response = demo.get(concrete).await?;
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{concrete}"
        );
        let (status, problem) = body(response).await?;
        assert_eq!(status, 400, "{concrete}: {problem}");
        assert_eq!(problem["type"], "urn:passthru:problem:bad-request");
        assert!(
            documented(&doc, "get", path, status),
            "GET {path} answers {status} ({concrete}) but does not document it"
        );
    }
    server.stop().await
}

/// A method a path is not routed for is a 405 problem like every other error, with `Allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_the_path_does_not_have_is_a_405_problem_with_allow() -> anyhow::Result<()> {
    let server = TestServer::start(&demo_config()).await?;
    let demo = demo_tenant(&server).await?;
    let cases = [
        (reqwest::Method::POST, "/v1/flows", "GET,HEAD"),
        (reqwest::Method::POST, "/v1/flows/ivr/queue", "GET,HEAD"),
        (
            reqwest::Method::PATCH,
            "/v1/flows/ivr",
            "GET,HEAD,PUT,DELETE",
        ),
        (
            reqwest::Method::POST,
            "/v1/plugins/menu/versions/1",
            "GET,HEAD,DELETE",
        ),
        (reqwest::Method::POST, "/passthru/demo/ivr", "GET,HEAD"),
        (
            reqwest::Method::DELETE,
            "/passthru/demo/ivr/key",
            "GET,HEAD",
        ),
        (reqwest::Method::POST, "/healthz", "GET,HEAD"),
        (reqwest::Method::PUT, "/console", "GET,HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = demo.request(method.clone(), path).send().await?;
        assert_eq!(response.status(), 405, "{method} {path}");
        let allowed: std::collections::BTreeSet<String> = response.headers()["allow"]
            .to_str()?
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        let expected = allow.split(',').map(str::to_owned).collect();
        assert_eq!(allowed, expected, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let (_, problem) = body(response).await?;
        assert_eq!(
            problem["type"], "urn:passthru:problem:method-not-allowed",
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["status"], 405);
    }
    server.stop().await
}
