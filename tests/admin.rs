//! The registry and admin API end to end, through real HTTP on 127.0.0.1:0: tenants, tokens,
//! uploads, flows, activation, rollback, hot swap under load, decision records, restarts, and
//! every kind of bad input.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{ASYNC_PROBE, Api, Db, HOSTILE, IVR_MENU, TempDir, TestServer, VIP_CALLER, body};
use reqwest::Method;
use serde_json::{Value, json};

/// The status of a plain GET, for Passthru requests whose answer is all in the status.
async fn status_of(server: &TestServer, path: &str) -> anyhow::Result<u16> {
    Ok(server.get(path).await?.status().as_u16())
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

async fn the_whole_lifecycle_survives_a_restart_without_compiling(db: Db) -> anyhow::Result<()> {
    let dir = TempDir::new("lifecycle");
    let server = TestServer::start_in_on("", &dir.0, &db).await?;
    let op = Api::operator(&server);
    let acme = op.tenant("acme", None).await?;

    // Upload: a new version, then the same bytes again (the same version, not a duplicate).
    let (status, v1) = body(acme.upload("menu", read(IVR_MENU)).await?).await?;
    assert_eq!(status, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["created"], true);
    assert_eq!(v1["world"], "passthru:plugin/lean-decider@0.1.4");
    assert!(
        v1["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("decide-lean"))
    );
    let (status, again) = body(acme.upload("menu", read(IVR_MENU)).await?).await?;
    assert_eq!(
        (status, &again["version"], &again["created"]),
        (200, &json!(1), &json!(false))
    );
    let (status, v2) = body(acme.upload("menu", read(VIP_CALLER)).await?).await?;
    assert_eq!((status, &v2["version"]), (201, &json!(2)));

    // Bind version 1 to a flow: the next Passthru request runs it.
    let (status, flow) = body(
        acme.json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({ "plugin": "menu", "version": 1, "limits": { "deadline_ms": 200 },
                    "config": { "vip_numbers": "09800000001" } }),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 201, "{flow}");
    assert_eq!(flow["version"], 1);
    let call = "/passthru/acme/ivr?CallSid=life1&CallFrom=09800000009&digits=%221%22";
    assert_eq!(server.get(call).await?.status(), 200, "v1: pressed 1");

    // Activate version 2 (vip-caller: 09800000009 is no VIP), then roll back in one call.
    let (status, active) = body(
        acme.json(
            Method::POST,
            "/v1/flows/ivr/activate",
            json!({ "version": 2 }),
        )
        .await?,
    )
    .await?;
    assert_eq!(
        (status, &active["version"], &active["previous_version"]),
        (200, &json!(2), &json!(1))
    );
    assert_eq!(server.get(call).await?.status(), 302, "v2: not a VIP");
    let (status, back) = body(
        acme.request(Method::POST, "/v1/flows/ivr/rollback")
            .send()
            .await?,
    )
    .await?;
    assert_eq!((status, &back["version"]), (200, &json!(1)));
    assert_eq!(server.get(call).await?.status(), 200, "rolled back to v1");

    // Listings.
    let (_, flows) = body(acme.get("/v1/flows").await?).await?;
    assert_eq!(flows["items"].as_array().unwrap().len(), 1);
    let (_, versions) = body(acme.get("/v1/plugins").await?).await?;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let (status, one) = body(acme.get("/v1/plugins/menu/versions/2").await?).await?;
    assert_eq!((status, &one["sha256"]), (200, &v2["sha256"]));

    // Decision records: one per call, success and failure alike, found by flow and by CallSid.
    server
        .state
        .recorder
        .flush(std::time::Duration::from_secs(5));
    let (status, records) = body(acme.get("/v1/decisions?flow=ivr&limit=2").await?).await?;
    assert_eq!(status, 200, "{records}");
    let items = records["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["version"], 1, "newest first");
    assert_eq!(items[1]["version"], 2);
    assert_eq!(items[1]["branch"], "failure");
    assert_eq!(items[1]["outcome"], "decided");
    assert!(items[0]["fuel_used"].as_u64().unwrap() > 0);
    let cursor = records["next_cursor"].as_i64().expect("a next page");
    let (_, older) = body(
        acme.get(&format!("/v1/decisions?flow=ivr&cursor={cursor}"))
            .await?,
    )
    .await?;
    assert_eq!(older["items"].as_array().unwrap().len(), 1);
    assert!(older.get("next_cursor").is_none());
    let (status, by_call) = body(acme.get("/v1/calls/life1").await?).await?;
    assert_eq!(status, 200);
    assert_eq!(by_call["items"].as_array().unwrap().len(), 3);
    let (_, failures) = body(acme.get("/v1/decisions?outcome=decided&flow=nope").await?).await?;
    assert!(failures["items"].as_array().unwrap().is_empty());
    // An outcome is one word: two (which every page holding both would match) is refused.
    for bad in ["decided%20trap", "", "Decided", "trap%00"] {
        let (status, problem) =
            body(acme.get(&format!("/v1/decisions?outcome={bad}")).await?).await?;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("outcome"),
            "{problem}"
        );
    }
    let (status, _) = body(acme.get("/v1/decisions?outcome=out_of_fuel").await?).await?;
    assert_eq!(status, 200);

    let token = acme.token.clone();
    drop((acme, op));
    server.stop().await?;

    // A restart keeps every tenant, version and flow, and loads plugins without compiling.
    let server = TestServer::start_in_on("", &dir.0, &db).await?;
    assert_eq!(
        server.sandbox.compile_count(),
        0,
        "loaded from the artifact cache"
    );
    assert_eq!(
        server.get(call).await?.status(),
        200,
        "first request after restart"
    );
    assert_eq!(server.sandbox.compile_count(), 0);
    let metrics = server.metrics().await?;
    assert!(
        metrics.contains("passthru_plugin_compiles_total 0"),
        "{metrics}"
    );
    let acme = Api {
        server: &server,
        token,
    };
    let (status, flow) = body(acme.get("/v1/flows/ivr").await?).await?;
    assert_eq!(
        (status, &flow["version"], &flow["previous_version"]),
        (200, &json!(1), &json!(2))
    );
    let (_, tenants) = body(Api::operator(&server).get("/v1/tenants").await?).await?;
    assert_eq!(tenants["items"][0]["name"], "acme");

    // Deleting a flow stops it answering.
    let deleted = acme.request(Method::DELETE, "/v1/flows/ivr").send().await?;
    assert_eq!(deleted.status(), 204);
    assert_eq!(server.get(call).await?.status(), 404);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cached_artifact_is_compiled_again_not_trusted() -> anyhow::Result<()> {
    let dir = TempDir::new("corrupt");
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("menu", read(IVR_MENU)).await?.status(), 201);
    let put = acme
        .json(Method::PUT, "/v1/flows/ivr", json!({ "plugin": "menu" }))
        .await?;
    assert_eq!(put.status(), 201);
    server.stop().await?;

    for entry in std::fs::read_dir(dir.0.join("artifacts"))? {
        let path = entry?.path();
        let mut bytes = std::fs::read(&path)?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes)?;
    }
    let server = TestServer::start_in("", &dir.0).await?;
    assert_eq!(
        server.sandbox.compile_count(),
        1,
        "recompiled from the blob"
    );
    let answer = server.get("/passthru/acme/ivr?digits=%221%22").await?;
    assert_eq!(answer.status(), 200);
    server.stop().await?;

    // And the rewritten artifact is good again.
    let server = TestServer::start_in("", &dir.0).await?;
    assert_eq!(server.sandbox.compile_count(), 0);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_under_load_lose_no_request() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("menu", read(IVR_MENU)).await?.status(), 201);
    assert_eq!(acme.upload("menu", read(VIP_CALLER)).await?.status(), 201);
    let put = acme
        .json(
            Method::PUT,
            "/v1/flows/hot",
            // The tenant's longest deadline: this test is about activations, and on a busy
            // two-core machine a call can miss the default deadline while every test runs.
            json!({ "plugin": "menu", "version": 1, "limits": { "deadline_ms": 1000 } }),
        )
        .await?;
    assert_eq!(put.status(), 201);

    let done = Arc::new(AtomicBool::new(false));
    let url = server.url("/passthru/acme/hot?CallSid=hot&CallFrom=09800000009&digits=%221%22");
    let mut hammers = Vec::new();
    for _ in 0..4 {
        let (client, url, done) = (server.client.clone(), url.clone(), done.clone());
        hammers.push(tokio::spawn(async move {
            let mut answers = [0u32; 2];
            let mut bad = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) => {
                        let outcome = r.headers().get("x-passthru-outcome").cloned();
                        match (
                            r.status().as_u16(),
                            outcome.as_ref().map(|v| v.to_str().unwrap_or("")),
                        ) {
                            (200, Some("decided")) => answers[0] += 1,
                            (302, Some("decided")) => answers[1] += 1,
                            other => bad.push(format!("{other:?}")),
                        }
                    }
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (answers, bad)
        }));
    }
    // Many activations and rollbacks, some of them at the same moment.
    for round in 0..30u32 {
        let target = 1 + round % 2;
        let (a, b) = tokio::join!(
            acme.json(
                Method::POST,
                "/v1/flows/hot/activate",
                json!({ "version": target })
            ),
            acme.request(Method::POST, "/v1/flows/hot/rollback").send(),
        );
        assert_eq!(a?.status(), 200, "round {round}");
        let rollback = b?.status().as_u16();
        assert!(
            rollback == 200 || rollback == 409,
            "round {round}: {rollback}"
        );
    }
    done.store(true, Ordering::Relaxed);
    let mut totals = [0u32; 2];
    for hammer in hammers {
        let (answers, bad) = hammer.await?;
        assert!(bad.is_empty(), "failed requests: {bad:?}");
        totals[0] += answers[0];
        totals[1] += answers[1];
    }
    assert!(totals[0] + totals[1] > 0);

    // The live table and the store agree on the final state.
    let (_, flow) = body(acme.get("/v1/flows/hot").await?).await?;
    let expected = if flow["version"] == 1 { 200 } else { 302 };
    assert_eq!(
        server
            .get("/passthru/acme/hot?CallFrom=09800000009&digits=%221%22")
            .await?
            .status(),
        expected
    );

    // Every recorded answer came from version 1 or 2.
    server
        .state
        .recorder
        .flush(std::time::Duration::from_secs(5));
    let (_, records) = body(acme.get("/v1/decisions?flow=hot&limit=1000").await?).await?;
    for record in records["items"].as_array().unwrap() {
        assert!(record["version"] == 1 || record["version"] == 2, "{record}");
        assert_eq!(record["outcome"], "decided");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_a_message_that_says_why() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let op = Api::operator(&server);
    let acme = op
        .tenant("acme", Some(json!({ "max_plugin_bytes": 200000 })))
        .await?;

    let foreign_world = wat::parse_str(
        r#"(component
            (core module $m (func (export "f") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func (export "route") (result u32) (canon lift (core func $i "f"))))"#,
    )?;
    let unknown_import = wat::parse_str(
        r#"(component (import "evil:net/socket@1.0.0" (instance (export "connect" (func)))))"#,
    )?;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not wasm",
            b"#!/bin/sh\nrm -rf /\n".to_vec(),
            422,
            "not a WebAssembly binary",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "core WebAssembly module",
        ),
        ("another world", foreign_world, 422, "decide"),
        ("unknown import", unknown_import, 422, "does not provide"),
        (
            "truncated",
            read(IVR_MENU)[..1000].to_vec(),
            422,
            "does not compile",
        ),
        ("empty", Vec::new(), 400, "empty"),
    ];
    for (name, bytes, status, needle) in cases {
        let (got, problem) = body(acme.upload("p", bytes).await?).await?;
        assert_eq!(got, status, "{name}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{name}: {detail}");
    }

    // Over the cap: refused by the declared length, before the body is read...
    let big = vec![0u8; 300_000];
    let (status, problem) = body(acme.upload("p", big.clone()).await?).await?;
    assert_eq!(status, 413, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("200000"));
    // ...and when no length is declared, by reading no more than the cap.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let streamed = acme
        .request(Method::POST, "/v1/plugins/p/versions")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await?;
    assert_eq!(streamed.status(), 413);

    // Nothing was recorded by any of these.
    let (_, versions) = body(acme.get("/v1/plugins").await?).await?;
    assert!(versions["items"].as_array().unwrap().is_empty());
    server.stop().await
}

async fn tokens_names_limits_and_json_are_checked(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start_on("", &db).await?;
    let op = Api::operator(&server);
    let acme = op
        .tenant("acme", Some(json!({ "max_fuel": 1000000, "max_flows": 1 })))
        .await?;
    let other = op.tenant("other", None).await?;
    assert_eq!(acme.upload("menu", read(IVR_MENU)).await?.status(), 201);
    let (status, problem) = body(
        acme.json(Method::PUT, "/v1/flows/ivr", json!({ "plugin": "menu" }))
            .await?,
    )
    .await?;
    assert_eq!(
        status, 422,
        "the default fuel is above this tenant's cap: {problem}"
    );
    let put = acme
        .json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({ "plugin": "menu", "limits": { "fuel": 500000 } }),
        )
        .await?;
    assert_eq!(put.status(), 201);

    // Missing or wrong tokens: 401, with a problem body.
    let anonymous = server.client.get(server.url("/v1/flows")).send().await?;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let wrong = Api {
        server: &server,
        token: "pt_0000".into(),
    };
    assert_eq!(wrong.get("/v1/flows").await?.status(), 401);
    // A tenant token is not the operator's, and the operator's is not a tenant's.
    assert_eq!(acme.get("/v1/tenants").await?.status(), 401);
    assert_eq!(op.get("/v1/flows").await?.status(), 401);

    // Another tenant's objects do not exist for you.
    for path in [
        "/v1/flows/ivr",
        "/v1/plugins/menu/versions",
        "/v1/plugins/menu/versions/1",
    ] {
        assert_eq!(other.get(path).await?.status(), 404, "{path}");
    }
    let steal = other
        .json(
            Method::POST,
            "/v1/flows/ivr/activate",
            json!({ "version": 1 }),
        )
        .await?;
    assert_eq!(steal.status(), 404);
    let bind = other
        .json(
            Method::PUT,
            "/v1/flows/mine",
            json!({ "plugin": "menu", "version": 1 }),
        )
        .await?;
    assert_eq!(bind.status(), 404, "cannot bind another tenant's plugin");

    // Invalid names.
    for name in ["a..b", "a%2Fb", "tab%09", "%01", "%C3%A9", &"x".repeat(65)] {
        let got = acme
            .json(
                Method::PUT,
                &format!("/v1/flows/{name}"),
                json!({ "plugin": "menu" }),
            )
            .await?;
        assert_eq!(got.status(), 400, "flow name {name}");
        let got = acme.upload(name, read(IVR_MENU)).await?;
        assert_eq!(got.status(), 400, "plugin name {name}");
    }
    let bad_tenant = op
        .json(Method::POST, "/v1/tenants", json!({ "name": "../etc" }))
        .await?;
    assert_eq!(bad_tenant.status(), 400);

    // Limits: above the tenant's caps, or outside what the host allows.
    let (status, problem) = body(
        acme.json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({ "plugin": "menu", "limits": { "fuel": 2000000 } }),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 422);
    assert!(
        problem["detail"].as_str().unwrap().contains("cap"),
        "{problem}"
    );
    let zero = acme
        .json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({ "plugin": "menu", "limits": { "deadline_ms": 0 } }),
        )
        .await?;
    assert_eq!(zero.status(), 422);
    let same = acme
        .json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({ "plugin": "menu", "status": { "success": 302 } }),
        )
        .await?;
    assert_eq!(same.status(), 422);
    let (status, problem) = body(
        acme.json(
            Method::PUT,
            "/v1/flows/second",
            json!({ "plugin": "menu", "limits": { "fuel": 1000 } }),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 409, "max_flows is 1: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("has 1 flows and its max_flows is 1"),
        "{problem}"
    );

    // Unknown JSON fields and malformed JSON are refused, naming the field.
    let (status, problem) = body(
        acme.json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({ "plugin": "menu", "fallbak": "success" }),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 400);
    assert!(
        problem["detail"].as_str().unwrap().contains("fallbak"),
        "{problem}"
    );
    let garbled = acme
        .request(Method::PUT, "/v1/flows/ivr")
        .header("content-type", "application/json")
        .body("{\"plugin\": ")
        .send()
        .await?;
    assert_eq!(garbled.status(), 400);
    let (status, _) = body(acme.get("/v1/decisions?colour=red").await?).await?;
    assert_eq!(status, 400);
    let no_version = acme
        .json(
            Method::POST,
            "/v1/flows/ivr/activate",
            json!({ "version": 9 }),
        )
        .await?;
    assert_eq!(no_version.status(), 404);
    let (status, _) = body(
        acme.request(Method::POST, "/v1/flows/ivr/rollback")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 409, "nothing to roll back to");

    // A revoked token stops working; a disabled tenant's token is refused and its flows stop.
    let (_, tokens) = body(op.get("/v1/tenants/other/tokens").await?).await?;
    let id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    let revoked = op
        .request(Method::DELETE, &format!("/v1/tenants/other/tokens/{id}"))
        .send()
        .await?;
    assert_eq!(revoked.status(), 204);
    assert_eq!(other.get("/v1/flows").await?.status(), 401);

    assert_eq!(
        status_of(&server, "/passthru/acme/ivr?digits=%221%22").await?,
        200
    );
    let disable = op
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            json!({ "disabled": true }),
        )
        .await?;
    assert_eq!(disable.status(), 200);
    assert_eq!(acme.get("/v1/flows").await?.status(), 403);
    assert_eq!(
        status_of(&server, "/passthru/acme/ivr?digits=%221%22").await?,
        404
    );
    let enable = op
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            json!({ "disabled": false }),
        )
        .await?;
    assert_eq!(enable.status(), 200);
    assert_eq!(
        status_of(&server, "/passthru/acme/ivr?digits=%221%22").await?,
        200
    );
    let dup = op
        .json(Method::POST, "/v1/tenants", json!({ "name": "acme" }))
        .await?;
    assert_eq!(dup.status(), 409);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_flows_are_imported_and_kept_in_step() -> anyhow::Result<()> {
    let dir = TempDir::new("import");
    let config = common::flow("filed", "ivr", IVR_MENU, "[flow.config]\nmode = \"x\"");
    let server = TestServer::start_in(&config, &dir.0).await?;
    assert_eq!(
        status_of(&server, "/passthru/filed/ivr?digits=%221%22").await?,
        200
    );
    assert_eq!(server.sandbox.compile_count(), 1);
    server.stop().await?;

    // The same file again: nothing to compile, nothing changed.
    let server = TestServer::start_in(&config, &dir.0).await?;
    assert_eq!(server.sandbox.compile_count(), 0);
    server.stop().await?;

    // The file now names another plugin for the flow: the flow follows the file.
    let config = common::flow("filed", "ivr", HOSTILE, "[flow.config]\nmode = \"trap\"");
    let server = TestServer::start_in(&config, &dir.0).await?;
    let answer = server.get("/passthru/filed/ivr?digits=%221%22").await?;
    assert_eq!(answer.headers()["x-passthru-outcome"], "trap");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_the_file_creates_gets_caps_for_all_of_its_flows() -> anyhow::Result<()> {
    // The second flow needs more than the default caps allow, and more than the first: the
    // tenant is created while the first is imported, with caps for both.
    let config = [
        common::flow("filed", "ivr", IVR_MENU, ""),
        common::flow(
            "filed",
            "vip",
            VIP_CALLER,
            "[flow.limits]\ndeadline_ms = 5000\nmemory_mb = 512",
        ),
    ]
    .concat();
    let server = TestServer::start(&config).await?;
    for flow in ["ivr", "vip"] {
        let answer = server
            .get(&format!("/passthru/filed/{flow}?digits=%221%22"))
            .await?;
        assert_eq!(answer.headers()["x-passthru-outcome"], "decided", "{flow}");
    }
    let op = Api::operator(&server);
    let (status, tenant) = body(op.get("/v1/tenants/filed").await?).await?;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["caps"]["max_deadline_ms"], 5000);
    assert_eq!(tenant["caps"]["max_memory_mb"], 512);
    let stored = read(IVR_MENU).len() + read(VIP_CALLER).len();
    assert!(tenant["caps"]["max_stored_bytes"].as_u64().unwrap() >= stored as u64);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_uploaded_at_once_make_one_version() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    let bytes = read(IVR_MENU);
    let uploads = (0..4).map(|_| acme.upload("menu", bytes.clone()));
    let answers = futures_util::future::join_all(uploads).await;
    let mut created = 0;
    for answer in answers {
        let (status, version) = body(answer?).await?;
        assert!(status == 200 || status == 201, "{status}: {version}");
        assert_eq!(version["version"], 1);
        created += usize::from(status == 201);
    }
    assert_eq!(created, 1);
    let (_, versions) = body(acme.get("/v1/plugins/menu/versions").await?).await?;
    assert_eq!(versions["items"].as_array().unwrap().len(), 1);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_change_one_at_a_time_and_odd_requests_get_problems() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let op = Api::operator(&server);
    let acme = op
        .tenant("acme", Some(json!({ "max_flows": 7, "max_fuel": 1234 })))
        .await?;

    let (status, tenant) = body(
        op.json(
            Method::PATCH,
            "/v1/tenants/acme",
            json!({ "caps": { "max_fuel": 99 } }),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["caps"]["max_fuel"], 99);
    assert_eq!(
        tenant["caps"]["max_flows"], 7,
        "a cap not named keeps its value"
    );
    let zero = op
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            json!({ "caps": { "max_flows": 0 } }),
        )
        .await?;
    assert_eq!(zero.status(), 422);

    // A path that is not UTF-8, a JSON body that is too large or not JSON: problems, not text.
    for response in [
        acme.get("/v1/flows/%FF").await?,
        server.get("/passthru/%FF/ivr").await?,
    ] {
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let huge = json!({ "plugin": "menu", "config": { "k": "v".repeat(2 << 20) } });
    let (status, problem) = body(acme.json(Method::PUT, "/v1/flows/ivr", huge).await?).await?;
    assert_eq!(status, 413, "{problem}");
    let untyped = acme
        .request(Method::PUT, "/v1/flows/ivr")
        .body(r#"{"plugin":"menu"}"#)
        .send()
        .await?;
    assert_eq!(untyped.status(), 415);
    assert_eq!(
        untyped.headers()["content-type"],
        "application/problem+json"
    );
    server.stop().await
}

/// Found by schemathesis: serde's derived structs also read a JSON array field by field, so
/// `[null, null]` was a valid tenant change and `["acme", null]` a valid new tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_array_is_not_a_body_even_when_its_items_would_fit() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let op = Api::operator(&server);
    let acme = op.tenant("acme", None).await?;
    for (api, method, path, array) in [
        (&op, Method::POST, "/v1/tenants", json!(["globex", null])),
        (&op, Method::PATCH, "/v1/tenants/acme", json!([true, null])),
        (&acme, Method::PUT, "/v1/flows/ivr", json!(["menu", 1])),
        (&acme, Method::POST, "/v1/flows/ivr/activate", json!([1])),
    ] {
        let (status, problem) = body(api.json(method, path, array).await?).await?;
        assert_eq!(status, 400, "{path}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("invalid type: sequence"), "{detail}");
    }
    assert_eq!(status_of(&server, "/healthz").await?, 200);
    let (status, tenant) = body(op.get("/v1/tenants/acme").await?).await?;
    assert_eq!(status, 200);
    assert_eq!(tenant["disabled"], false, "the array changed nothing");
    assert_eq!(op.get("/v1/tenants/globex").await?.status(), 404);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_whose_plugin_is_lost_does_not_keep_the_others_offline() -> anyhow::Result<()> {
    let dir = TempDir::new("lost");
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("menu", read(IVR_MENU)).await?.status(), 201);
    assert_eq!(acme.upload("vip", read(VIP_CALLER)).await?.status(), 201);
    for (flow, plugin) in [("ivr", "menu"), ("vip", "vip")] {
        let put = acme
            .json(
                Method::PUT,
                &format!("/v1/flows/{flow}"),
                json!({ "plugin": plugin }),
            )
            .await?;
        assert_eq!(put.status(), 201);
    }
    let (_, vip) = body(acme.get("/v1/plugins/vip/versions/1").await?).await?;
    let sha = vip["sha256"].as_str().unwrap().to_owned();
    drop(acme);
    server.stop().await?;

    // The vip plugin's blob and artifact are gone: it can be neither loaded nor recompiled.
    std::fs::remove_file(dir.0.join("blobs").join(format!("{sha}.wasm")))?;
    for entry in std::fs::read_dir(dir.0.join("artifacts"))? {
        let path = entry?.path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&sha)
        {
            std::fs::remove_file(path)?;
        }
    }
    let server = TestServer::start_in("", &dir.0).await?;
    assert_eq!(
        status_of(&server, "/passthru/acme/ivr?digits=%221%22").await?,
        200
    );
    assert_eq!(
        status_of(&server, "/passthru/acme/vip?CallFrom=1").await?,
        404
    );
    server.stop().await
}

/// A CallSid of `%00` is U+0000, which PostgreSQL's `text` cannot hold: it must not fail the
/// batch of records, nor the async accept, that other tenants' calls share with it.
async fn a_nul_in_one_call_loses_no_one_elses_records_or_events(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start_on("", &db).await?;
    let op = Api::operator(&server);
    let victim = op.tenant("victim", None).await?;
    let prober = op.tenant("prober", None).await?;
    for api in [&victim, &prober] {
        assert_eq!(api.upload("menu", read(IVR_MENU)).await?.status(), 201);
        let put = api
            .json(
                Method::PUT,
                "/v1/flows/ivr",
                json!({ "plugin": "menu", "version": 1 }),
            )
            .await?;
        assert_eq!(put.status(), 201);
    }
    assert_eq!(
        prober.upload("probe", read(ASYNC_PROBE)).await?.status(),
        201
    );
    let put = prober
        .json(
            Method::PUT,
            "/v1/flows/log",
            json!({ "plugin": "probe", "version": 1, "mode": "async" }),
        )
        .await?;
    assert_eq!(put.status(), 201);

    let call = |tenant: &str, flow: &str, sid: &str| {
        format!("/passthru/{tenant}/{flow}?CallSid={sid}&digits=%221%22")
    };
    assert_eq!(
        status_of(&server, &call("victim", "ivr", "v-a")).await?,
        200
    );
    assert_eq!(
        status_of(&server, &call("prober", "ivr", "%00")).await?,
        200
    );
    assert_eq!(
        status_of(&server, &call("victim", "ivr", "v-b")).await?,
        200
    );
    // The async accept commits before it answers: a failed commit would answer 503.
    assert_eq!(
        status_of(&server, &call("prober", "log", "%00")).await?,
        200
    );
    assert_eq!(
        status_of(&server, &call("prober", "log", "p-ok")).await?,
        200
    );
    server
        .state
        .recorder
        .flush(std::time::Duration::from_secs(5));
    for sid in ["v-a", "v-b"] {
        let (status, found) = body(victim.get(&format!("/v1/calls/{sid}")).await?).await?;
        assert_eq!(status, 200, "{sid}: {found}");
    }
    // The odd call is kept too, and found by the CallSid it came with.
    let (status, found) = body(prober.get("/v1/calls/%00").await?).await?;
    assert_eq!(status, 200, "{found}");
    let flows: Vec<&Value> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["flow"])
        .collect();
    assert!(flows.contains(&&json!("ivr")), "{found}");
    let (status, found) = body(prober.get("/v1/decisions?flow=ivr").await?).await?;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    let records = server
        .state
        .recorder
        .stats()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(records, 0, "no batch of records failed");
    server.stop().await
}

/// Dead letters leave the queue's depth, and anyone who can reach an async flow's URL can make
/// its plugin fail: a flow keeps at most `max_dead_letters_per_flow`, its newest.
async fn a_flow_keeps_its_newest_dead_letters_within_the_bound(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start_on("[async]\nmax_dead_letters_per_flow = 3\n", &db).await?;
    let api = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(api.upload("probe", read(ASYNC_PROBE)).await?.status(), 201);
    let flow = json!({
        "plugin": "probe", "version": 1, "mode": "async",
        "retry": { "max_attempts": 1 }, "config": { "fail_attempts": "1000" },
    });
    assert_eq!(
        api.json(Method::PUT, "/v1/flows/doomed", flow)
            .await?
            .status(),
        201
    );
    let mut ids = Vec::new();
    for i in 0..8 {
        let answer = server
            .get(&format!("/passthru/acme/doomed?CallSid=d{i}"))
            .await?;
        assert_eq!(answer.status(), 200);
        ids.push(
            answer.headers()["x-passthru-event"]
                .to_str()?
                .parse::<u64>()?,
        );
        // One at a time: each dead letter is kept, and the bound applied, before the next.
        let id = *ids.last().unwrap();
        let want = (i + 1).min(3);
        common::eventually("the dead letter, within the bound", || async {
            let (_, list) = body(api.get("/v1/flows/doomed/dead-letters").await?).await?;
            let items = list["items"].as_array().unwrap();
            Ok((items.len() == want && items[0]["id"] == id).then_some(()))
        })
        .await?;
    }
    let (_, queue) = body(api.get("/v1/flows/doomed/queue").await?).await?;
    assert_eq!(queue["dead"], 3, "{queue}");
    let (_, list) = body(api.get("/v1/flows/doomed/dead-letters").await?).await?;
    let kept: Vec<u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    ids.reverse();
    assert_eq!(kept, ids[..3], "the newest three, newest first");
    let metrics = server.metrics().await?;
    assert!(
        metrics.contains("passthru_async_dead_letters_trimmed_total 5"),
        "{metrics}"
    );
    server.stop().await
}

crate::on_both_stores!(
    the_whole_lifecycle_survives_a_restart_without_compiling,
    tokens_names_limits_and_json_are_checked,
    a_nul_in_one_call_loses_no_one_elses_records_or_events,
    a_flow_keeps_its_newest_dead_letters_within_the_bound,
);

/// A tenant's reads of decision records take turns, one at a time, and never wait for another
/// tenant's: while acme's turn is held (as by a long stats query), its reads of every kind wait,
/// and globex's are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_record_reads_wait_for_its_own_turn_never_anothers() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let operator = Api::operator(&server);
    let acme = operator.tenant("acme", None).await?;
    let globex = operator.tenant("globex", None).await?;
    let turns = &server.state.record_reads;
    let reads = ["/v1/decisions", "/v1/calls/CA1", "/v1/flows/ivr/stats"];

    let held = turns.wait("acme").await?;
    let waiting: Vec<_> = reads
        .iter()
        .map(|path| {
            let request = server.client.get(server.url(path)).bearer_auth(&acme.token);
            tokio::spawn(request.send())
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while turns.waiting() < reads.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "acme's reads did not all wait: {} of {}",
            turns.waiting(),
            reads.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // globex has no record, no call and no flow: each answered at once all the same.
    for (path, status) in reads.iter().zip([200, 404, 404]) {
        assert_eq!(globex.get(path).await?.status(), status, "{path}");
    }
    assert_eq!(turns.waiting(), reads.len());
    assert!(waiting.iter().all(|read| !read.is_finished()));

    drop(held);
    for (read, status) in waiting.into_iter().zip([200, 404, 404]) {
        assert_eq!(read.await??.status(), status);
    }
    assert_eq!(turns.waiting(), 0);
    server.stop().await
}

/// A tenant has at most `WAITING_PER_TENANT` reads of its records waiting: one more is answered
/// `503` at once, with `Retry-After`, and another tenant's reads go on being answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_too_many_reads_waiting_is_told_to_come_back() -> anyhow::Result<()> {
    use passthru::api::turns::WAITING_PER_TENANT;
    let server = TestServer::start("").await?;
    let operator = Api::operator(&server);
    let acme = operator.tenant("acme", None).await?;
    let globex = operator.tenant("globex", None).await?;
    let turns = &server.state.record_reads;

    let held = turns.wait("acme").await?;
    let waiting: Vec<_> = (0..WAITING_PER_TENANT)
        .map(|_| {
            let request = server
                .client
                .get(server.url("/v1/decisions"))
                .bearer_auth(&acme.token);
            tokio::spawn(request.send())
        })
        .collect();
    common::eventually("all of acme's reads waiting", || async {
        Ok((turns.waiting() == WAITING_PER_TENANT).then_some(()))
    })
    .await?;
    for path in ["/v1/decisions", "/v1/calls/CA1", "/v1/flows/ivr/stats"] {
        let refused = acme.get(path).await?;
        assert_eq!(refused.status(), 503, "{path}");
        assert_eq!(refused.headers()["retry-after"], "1", "{path}");
        let problem: Value = refused.json().await?;
        assert_eq!(problem["type"], "urn:passthru:problem:busy", "{path}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("waiting")),
            "{problem}"
        );
    }
    assert_eq!(globex.get("/v1/decisions").await?.status(), 200);
    assert_eq!(turns.waiting(), WAITING_PER_TENANT);

    drop(held);
    for read in waiting {
        assert_eq!(read.await??.status(), 200);
    }
    assert_eq!(turns.waiting(), 0);
    // The places are given back: acme reads again.
    assert_eq!(acme.get("/v1/decisions").await?.status(), 200);
    server.stop().await
}
