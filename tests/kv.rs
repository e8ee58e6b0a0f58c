//! Tenants' key-value data through the real server: a plugin reads and writes only the stores its
//! flow grants, of its own tenant; the admin API reaches only the token's tenant's keys; the caps
//! refuse with errors that name them; a bulk import is all or nothing; and writes survive a
//! restart.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Db, STICKY_AGENT, TempDir, TestServer, body};
use passthru::kv::MAX_TENANT_STORES;
use reqwest::Method;
use serde_json::{Value, json};

const CALLER: &str = "09800000001";
const AGENT: &str = "09811111111";

/// A sticky-agent flow named `flow` granting `stores`, with `config`.
async fn sticky_flow(
    api: &Api<'_>,
    flow: &str,
    stores: &[&str],
    config: Value,
) -> anyhow::Result<()> {
    let (status, answer) = body(
        api.json(
            Method::PUT,
            &format!("/v1/flows/{flow}"),
            json!({ "plugin": "sticky", "version": 1, "kv_stores": stores, "config": config }),
        )
        .await?,
    )
    .await?;
    assert!(status == 200 || status == 201, "{status}: {answer}");
    Ok(())
}

/// The status a Passthru request of `tenant/flow` answers, with `query`.
async fn passthru(
    server: &TestServer,
    tenant: &str,
    flow: &str,
    query: &str,
) -> anyhow::Result<u16> {
    let response = server
        .get(&format!("/passthru/{tenant}/{flow}?{query}"))
        .await?;
    assert_eq!(response.headers()["x-passthru-outcome"], "decided");
    Ok(response.status().as_u16())
}

fn first_call(caller: &str) -> String {
    format!("CallSid=s1&CallFrom={caller}")
}

fn after_connect(caller: &str, agent: &str, status: &str) -> String {
    format!("CallSid=s2&CallFrom={caller}&DialWhomNumber={agent}&DialCallStatus={status}")
}

async fn put_key(
    api: &Api<'_>,
    store: &str,
    key: &str,
    value: Value,
) -> anyhow::Result<(u16, Value)> {
    body(
        api.json(Method::PUT, &format!("/v1/kv/{store}/keys/{key}"), value)
            .await?,
    )
    .await
}

async fn get_key(api: &Api<'_>, store: &str, key: &str) -> anyhow::Result<(u16, Value)> {
    body(api.get(&format!("/v1/kv/{store}/keys/{key}")).await?).await
}

async fn import(
    api: &Api<'_>,
    store: &str,
    content_type: &str,
    data: String,
) -> anyhow::Result<(u16, Value)> {
    body(
        api.request(Method::POST, &format!("/v1/kv/{store}/import"))
            .header("content-type", content_type)
            .body(data)
            .send()
            .await?,
    )
    .await
}

/// An import holds its body in memory until it is applied, so the server takes a few at once:
/// two whose bodies never finish take both places, and a third is refused before its body is
/// read; a place comes back when one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_take_their_place_before_their_bodies_are_read() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    let ndjson = "application/x-ndjson";
    // Each is in once the server starts reading its body, that is once it has its place.
    let mut held = Vec::new();
    for _ in 0..passthru::kv::IMPORTS_AT_ONCE {
        let path = "/v1/kv/big/import";
        held.push(
            server
                .start_body(path, &acme.token, ndjson, b"{\"key\":")
                .await?,
        );
    }
    let line = r#"{"key": "k", "value": "v"}"#.to_owned();
    let (status, problem) = import(&acme, "small", ndjson, line.clone()).await?;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:passthru:problem:busy", "{problem}");
    assert_eq!(get_key(&acme, "small", "k").await?.0, 404);
    drop(held);
    common::eventually("a place back", || async {
        let (status, _) = import(&acme, "small", ndjson, line.clone()).await?;
        Ok((status == 200).then_some(()))
    })
    .await?;
    assert_eq!(get_key(&acme, "small", "k").await?.0, 200);
    server.stop().await
}

async fn usage(api: &Api<'_>) -> anyhow::Result<Value> {
    let (status, stores) = body(api.get("/v1/kv").await?).await?;
    assert_eq!(status, 200, "{stores}");
    Ok(stores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_remembers_and_finds_keys_in_the_stores_its_flow_grants() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("sticky", std::fs::read(STICKY_AGENT)?)
            .await?
            .status(),
        201
    );
    sticky_flow(&acme, "sticky", &["agents"], json!({})).await?;

    // Nobody remembered yet: the ordinary branch.
    assert_eq!(
        passthru(&server, "acme", "sticky", &first_call(CALLER)).await?,
        302
    );
    // An unanswered Connect remembers nothing; a completed one remembers the agent for 24 h.
    assert_eq!(
        passthru(
            &server,
            "acme",
            "sticky",
            &after_connect(CALLER, AGENT, "no-answer")
        )
        .await?,
        302
    );
    assert_eq!(get_key(&acme, "agents", CALLER).await?.0, 404);
    let before = common::now_ms();
    assert_eq!(
        passthru(
            &server,
            "acme",
            "sticky",
            &after_connect(CALLER, AGENT, "completed")
        )
        .await?,
        200
    );
    assert_eq!(
        passthru(&server, "acme", "sticky", &first_call(CALLER)).await?,
        200
    );
    assert_eq!(
        passthru(&server, "acme", "sticky", &first_call("09800000002")).await?,
        302
    );

    // The admin API sees what the plugin wrote, with its time to live.
    let (status, key) = get_key(&acme, "agents", CALLER).await?;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["value"], AGENT);
    let expires = key["expires_at_ms"].as_i64().expect("a time to live");
    let day = 24 * 3600 * 1000;
    assert!(
        (before + day..=common::now_ms() + day).contains(&expires),
        "{expires}"
    );

    // And the plugin sees what the admin API wrote.
    let (status, put) = put_key(&acme, "agents", "09800000003", json!({ "value": AGENT })).await?;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        passthru(&server, "acme", "sticky", &first_call("09800000003")).await?,
        200
    );

    // A flow that names a store it does not grant reads nothing from it: the plugin is told
    // `no-such-store` and answers failure.
    sticky_flow(&acme, "nosy", &["agents"], json!({ "store": "billing" })).await?;
    put_key(&acme, "billing", CALLER, json!({ "value": AGENT })).await?;
    assert_eq!(
        passthru(&server, "acme", "nosy", &first_call(CALLER)).await?,
        302
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_read_write_or_list_another_tenants_keys() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let operator = Api::operator(&server);
    let acme = operator.tenant("acme", None).await?;
    let rival = operator.tenant("rival", None).await?;
    assert_eq!(
        put_key(&acme, "agents", CALLER, json!({ "value": AGENT }))
            .await?
            .0,
        200
    );

    // The same store name under the rival's token is the rival's own, empty store.
    assert_eq!(get_key(&rival, "agents", CALLER).await?.0, 404);
    let (status, page) = body(rival.get("/v1/kv/agents/keys").await?).await?;
    assert_eq!(
        (status, page["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{page}"
    );
    assert_eq!(usage(&rival).await?["items"], json!([]));
    assert_eq!(
        rival
            .request(Method::DELETE, &format!("/v1/kv/agents/keys/{CALLER}"))
            .send()
            .await?
            .status(),
        404
    );
    // Names that try to climb out of the tenant's space are not names.
    for path in [
        "/v1/kv/..%2Facme/keys",
        "/v1/kv/acme%2Fagents/keys",
        "/v1/kv/..%2F..%2Facme%2Fagents/keys/x",
    ] {
        assert_eq!(rival.get(path).await?.status(), 400, "{path}");
    }
    // Reading, listing or deleting in a store that does not exist creates nothing (each store
    // costs memory, and a tenant may create only so many).
    for path in ["/v1/kv/ghost/keys", "/v1/kv/ghost/keys/k"] {
        assert_eq!(
            rival.get(path).await?.status().is_success(),
            path.ends_with("keys"),
            "{path}"
        );
    }
    assert_eq!(
        rival
            .request(Method::DELETE, "/v1/kv/ghost/keys/k")
            .send()
            .await?
            .status(),
        404
    );
    assert!(
        server
            .state
            .registry
            .kv()
            .existing("rival", "ghost")
            .is_none()
    );
    // The operator's token is not a tenant's.
    assert_eq!(operator.get("/v1/kv").await?.status(), 401);

    // The rival's plugin, granted a store of the same name, sees only the rival's keys; its
    // writes land there too.
    assert_eq!(
        rival
            .upload("sticky", std::fs::read(STICKY_AGENT)?)
            .await?
            .status(),
        201
    );
    sticky_flow(&rival, "sticky", &["agents"], json!({})).await?;
    assert_eq!(
        passthru(&server, "rival", "sticky", &first_call(CALLER)).await?,
        302
    );
    assert_eq!(
        passthru(
            &server,
            "rival",
            "sticky",
            &after_connect(CALLER, "07000000000", "completed")
        )
        .await?,
        200
    );
    assert_eq!(get_key(&acme, "agents", CALLER).await?.1["value"], AGENT);
    assert_eq!(
        get_key(&rival, "agents", CALLER).await?.1["value"],
        "07000000000"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_refuse_writes_with_errors_that_name_them() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let caps = json!({ "max_kv_keys": 3, "max_kv_value_bytes": 11, "max_kv_key_bytes": 16 });
    let acme = Api::operator(&server).tenant("acme", Some(caps)).await?;
    // No tenant may be allowed a key longer than PostgreSQL's index takes.
    let longest = passthru::kv::MAX_KEY_BYTES;
    for (caps, status) in [(longest + 1, 422), (longest, 201)] {
        let (code, problem) = body(
            Api::operator(&server)
                .json(
                    Method::POST,
                    "/v1/tenants",
                    json!({ "name": format!("keys{caps}"), "caps": { "max_kv_key_bytes": caps } }),
                )
                .await?,
        )
        .await?;
        assert_eq!(code, status, "{problem}");
        if status == 422 {
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("max_kv_key_bytes must be 1 to 2048"),
                "{detail}"
            );
        }
    }

    let refused = |answer: (u16, Value), cap: &str| {
        assert_eq!(answer.0, 422, "{}", answer.1);
        let detail = answer.1["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(cap), "{detail:?} should name {cap}");
    };
    refused(
        put_key(&acme, "agents", "k", json!({ "value": "123456789012" })).await?,
        "max_kv_value_bytes",
    );
    refused(
        put_key(&acme, "agents", &"k".repeat(17), json!({ "value": "v" })).await?,
        "max_kv_key_bytes",
    );
    for key in ["a", "b"] {
        assert_eq!(
            put_key(&acme, "agents", key, json!({ "value": "v" }))
                .await?
                .0,
            200
        );
    }
    // Two more keys would make four: the whole import is refused, and nothing changes.
    let two = "{\"key\":\"c\",\"value\":\"v\"}\n{\"key\":\"d\",\"value\":\"v\"}\n".to_owned();
    refused(
        import(&acme, "agents", "application/x-ndjson", two).await?,
        "max_kv_keys",
    );
    assert_eq!(usage(&acme).await?["keys"], 2);
    assert_eq!(get_key(&acme, "agents", "c").await?.0, 404);
    // Replacing a key takes no new one; a third key fits, a fourth does not.
    assert_eq!(
        put_key(&acme, "agents", "a", json!({ "value": "w" }))
            .await?
            .0,
        200
    );
    assert_eq!(
        put_key(&acme, "other", "c", json!({ "value": "v" }))
            .await?
            .0,
        200
    );
    refused(
        put_key(&acme, "other", "d", json!({ "value": "v" })).await?,
        "max_kv_keys",
    );

    // A plugin's write past a cap is refused to the plugin: sticky-agent answers failure and the
    // key is not kept.
    assert_eq!(
        acme.upload("sticky", std::fs::read(STICKY_AGENT)?)
            .await?
            .status(),
        201
    );
    sticky_flow(&acme, "sticky", &["agents"], json!({})).await?;
    assert_eq!(
        passthru(
            &server,
            "acme",
            "sticky",
            &after_connect(CALLER, AGENT, "completed")
        )
        .await?,
        302
    );
    assert_eq!(get_key(&acme, "agents", CALLER).await?.0, 404);

    // Raising the cap lets the same write through, at once.
    let raised = Api::operator(&server)
        .json(
            Method::PATCH,
            "/v1/tenants/acme",
            json!({ "caps": { "max_kv_keys": 10 } }),
        )
        .await?;
    assert_eq!(raised.status(), 200);
    assert_eq!(
        passthru(
            &server,
            "acme",
            "sticky",
            &after_connect(CALLER, AGENT, "completed")
        )
        .await?,
        200
    );
    assert_eq!(get_key(&acme, "agents", CALLER).await?.1["value"], AGENT);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_import_of_100000_keys_is_all_or_nothing_and_survives_a_restart()
-> anyhow::Result<()> {
    let dir = TempDir::new("kv-import");
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    let lines = |prefix: &str| -> Vec<String> {
        (0..100_000)
            .map(|i| format!("{{\"key\":\"{prefix}{i:06}\",\"value\":\"agent-{i}\"}}"))
            .collect()
    };
    let (status, done) = import(
        &acme,
        "vips",
        "application/x-ndjson",
        lines("+91").join("\n"),
    )
    .await?;
    assert_eq!(
        (status, &done["imported"]),
        (200, &json!(100_000)),
        "{done}"
    );
    assert_eq!(usage(&acme).await?["keys"], 100_000);

    // One bad line among 100,000 new ones: refused, naming it, and nothing of it is kept.
    let mut bad = lines("+44");
    bad[99_998] = "{\"key\":\"+44099998\"}".to_owned();
    let (status, refused) = import(&acme, "vips", "application/x-ndjson", bad.join("\n")).await?;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("line 99999"),
        "{refused}"
    );
    assert_eq!(usage(&acme).await?["keys"], 100_000);
    assert_eq!(get_key(&acme, "vips", "+44000000").await?.0, 404);

    // CSV, with quoting and a time to live; a key given again takes its new value.
    let csv = "key,value,ttl_ms\n+91000007,\"agent, senior\",\n+1555,x,86400000\n".to_owned();
    assert_eq!(import(&acme, "vips", "text/csv", csv).await?.0, 200);
    assert_eq!(
        get_key(&acme, "vips", "+91000007").await?.1["value"],
        "agent, senior"
    );

    // Listing by prefix pages in key order.
    let (_, page) = body(acme.get("/v1/kv/vips/keys?prefix=%2B91000&limit=3").await?).await?;
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["+91000000", "+91000001", "+91000002"]);
    let next = page["next_after"].as_str().unwrap().to_owned();
    let (_, page) = body(
        acme.get(&format!(
            "/v1/kv/vips/keys?prefix=%2B91000&limit=3&after={}",
            next.replace('+', "%2B")
        ))
        .await?,
    )
    .await?;
    assert_eq!(page["items"][0]["key"], "+91000003");

    // Everything is on disk: a new server on the same data directory has it.
    let token = acme.token.clone();
    drop(acme);
    server.stop().await?;
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api {
        server: &server,
        token,
    };
    assert_eq!(usage(&acme).await?["keys"], 100_001);
    assert_eq!(
        get_key(&acme, "vips", "+91099999").await?.1["value"],
        "agent-99999"
    );
    assert_eq!(get_key(&acme, "vips", "+1555").await?.1["value"], "x");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_time_to_live_is_gone_and_bad_imports_are_named() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        put_key(&acme, "s", "brief", json!({ "value": "v", "ttl_ms": 1 }))
            .await?
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(get_key(&acme, "s", "brief").await?.0, 404);
    assert_eq!(
        put_key(&acme, "s", "k", json!({ "value": "v", "ttl_ms": 0 }))
            .await?
            .0,
        422
    );
    assert_eq!(
        put_key(&acme, "s", "k", json!({ "value": "v", "extra": 1 }))
            .await?
            .0,
        400
    );
    assert_eq!(
        import(&acme, "s", "application/json", "{}".into()).await?.0,
        415
    );
    assert_eq!(
        import(&acme, "s", "text/csv", "name,value\na,b\n".into())
            .await?
            .0,
        400
    );
    // A key with a slash, percent-encoded in the path, is one key.
    assert_eq!(
        put_key(&acme, "s", "a%2Fb", json!({ "value": "v" }))
            .await?
            .0,
        200
    );
    assert_eq!(get_key(&acme, "s", "a%2Fb").await?.1["key"], "a/b");
    assert_eq!(
        acme.request(Method::DELETE, "/v1/kv/s/keys/a%2Fb")
            .send()
            .await?
            .status(),
        204
    );
    assert_eq!(get_key(&acme, "s", "a%2Fb").await?.0, 404);
    server.stop().await
}

/// A write or import that is refused creates no store: a tenant's 1,000 store slots go only to
/// stores that hold keys (or that a flow grants), whatever the refusal, and a store whose keys
/// are all gone gives its slot back.
async fn refused_writes_and_imports_create_no_store(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start_on("", &db).await?;
    let caps = json!({ "max_kv_keys": 2, "max_kv_value_bytes": 8 });
    let acme = Api::operator(&server).tenant("acme", Some(caps)).await?;
    for key in ["k0", "k1"] {
        let (status, put) = put_key(&acme, "agents", key, json!({ "value": "v" })).await?;
        assert_eq!(status, 200, "{put}");
    }
    // As many refused writes as the tenant may have stores, each to a store of its own, each
    // refused for another reason: a bad key, a bad time to live, a value past its cap, a key
    // past max_kv_keys (the tenant holds 2), an import with a bad line, an import past a cap.
    for i in 0..MAX_TENANT_STORES {
        let store = format!("junk{i}");
        let (status, answer) = match i % 6 {
            0 => put_key(&acme, &store, "%01", json!({ "value": "v" })).await?,
            1 => put_key(&acme, &store, "k", json!({ "value": "v", "ttl_ms": 0 })).await?,
            2 => put_key(&acme, &store, "k", json!({ "value": "123456789" })).await?,
            3 => put_key(&acme, &store, "k", json!({ "value": "v" })).await?,
            4 => {
                import(
                    &acme,
                    &store,
                    "application/x-ndjson",
                    "{\"key\":\"k\"}".into(),
                )
                .await?
            }
            _ => import(&acme, &store, "text/csv", "key,value\nk,v\n".into()).await?,
        };
        let expected = if i % 6 == 4 { 400 } else { 422 };
        assert_eq!(status, expected, "{store}: {answer}");
    }
    let kv = server.state.registry.kv();
    for i in 0..MAX_TENANT_STORES {
        assert!(
            kv.existing("acme", &format!("junk{i}")).is_none(),
            "junk{i}"
        );
    }
    // So a write to a new store is not refused for the number of stores.
    let deleted = acme
        .request(Method::DELETE, "/v1/kv/agents/keys/k1")
        .send()
        .await?;
    assert_eq!(deleted.status(), 204);
    let (status, put) = put_key(&acme, "fresh", "k1", json!({ "value": "v" })).await?;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        usage(&acme).await?["items"].as_array().map(Vec::len),
        Some(2)
    );

    // Stores whose every key was deleted do not hold their slots either.
    let deleted = acme
        .request(Method::DELETE, "/v1/kv/fresh/keys/k1")
        .send()
        .await?;
    assert_eq!(deleted.status(), 204);
    for i in 0..MAX_TENANT_STORES - 2 {
        let bucket = kv.create("acme", &format!("emptied{i}"))?;
        bucket.put("k", "v".into(), None)?;
        assert!(bucket.delete("k", common::now_ms())?);
    }
    kv.barrier()
        .wait()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (status, put) = put_key(&acme, "another", "k1", json!({ "value": "v" })).await?;
    assert_eq!(status, 200, "{put}");

    // A tenant that truly holds as many stores as it may is still refused a new one, naming
    // why, and the refusal creates nothing.
    let caps = json!({ "caps": { "max_kv_keys": 10_000 } });
    let raised = Api::operator(&server)
        .json(Method::PATCH, "/v1/tenants/acme", caps)
        .await?;
    assert_eq!(raised.status(), 200);
    for i in 0..MAX_TENANT_STORES - 2 {
        kv.create("acme", &format!("full{i}"))?
            .put("k", "v".into(), None)?;
    }
    let (status, refused) = put_key(&acme, "one-more", "k", json!({ "value": "v" })).await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("key-value stores"),
        "{refused}"
    );
    assert!(kv.existing("acme", "one-more").is_none());
    server.stop().await
}

/// A value holding U+0000 (NUL), which PostgreSQL's `text` cannot hold, is refused where it
/// comes in, the same on both stores, and holds up no one else's writes.
async fn a_value_holding_nul_is_refused_where_it_comes_in(db: Db) -> anyhow::Result<()> {
    let server = TestServer::start_on("", &db).await?;
    let operator = Api::operator(&server);
    let acme = operator.tenant("acme", None).await?;
    let rival = operator.tenant("rival", None).await?;
    let names_nul = |answer: &Value| {
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("U+0000"), "{answer}");
    };

    // The admin API: 422 naming it, and another tenant's write at the same moment goes through
    // at once.
    let started = Instant::now();
    let (nul, other) = tokio::join!(
        put_key(&acme, "s", "k", json!({ "value": "a\u{0}b" })),
        put_key(&rival, "s", "k", json!({ "value": "v" })),
    );
    let ((status, refused), (other_status, other)) = (nul?, other?);
    assert_eq!(status, 422, "{refused}");
    names_nul(&refused);
    assert_eq!(other_status, 200, "{other}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get_key(&acme, "s", "k").await?.0, 404);
    assert!(server.state.registry.kv().existing("acme", "s").is_none());

    // A bulk import: refused, naming the line, in either format.
    let jsonl = "{\"key\":\"a\",\"value\":\"1\"}\n\n{\"key\":\"b\",\"value\":\"x\\u0000y\"}\n";
    let (status, refused) = import(&acme, "s", "application/x-ndjson", jsonl.into()).await?;
    assert_eq!(status, 400, "{refused}");
    names_nul(&refused);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("line 3"),
        "{refused}"
    );
    let csv = "key,value\na,1\nb,x\0y\n";
    let (status, refused) = import(&acme, "s", "text/csv", csv.into()).await?;
    assert_eq!(status, 400, "{refused}");
    names_nul(&refused);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("line 3"),
        "{refused}"
    );
    assert_eq!(get_key(&acme, "s", "a").await?.0, 404);

    // A plugin's `set`: refused to the plugin (sticky-agent answers failure), nothing kept.
    assert_eq!(
        acme.upload("sticky", std::fs::read(STICKY_AGENT)?)
            .await?
            .status(),
        201
    );
    sticky_flow(&acme, "sticky", &["agents"], json!({})).await?;
    assert_eq!(
        passthru(
            &server,
            "acme",
            "sticky",
            &after_connect(CALLER, "0981%00", "completed")
        )
        .await?,
        302
    );
    assert_eq!(get_key(&acme, "agents", CALLER).await?.0, 404);
    assert_eq!(
        passthru(
            &server,
            "acme",
            "sticky",
            &after_connect(CALLER, AGENT, "completed")
        )
        .await?,
        200
    );
    let (status, put) = put_key(&rival, "s", "k2", json!({ "value": "v" })).await?;
    assert_eq!(status, 200, "{put}");
    assert_eq!(get_key(&acme, "agents", CALLER).await?.1["value"], AGENT);
    server.stop().await
}

crate::on_both_stores!(
    refused_writes_and_imports_create_no_store,
    a_value_holding_nul_is_refused_where_it_comes_in,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_counts_the_keys_it_sets() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    let body = "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"a\",\"value\":\"2\"}\n\
                {\"key\":\"b\",\"value\":\"3\"}\n";
    let (status, done) = import(&acme, "s", "application/x-ndjson", body.into()).await?;
    assert_eq!((status, &done["imported"]), (200, &json!(2)), "{done}");
    assert_eq!(usage(&acme).await?["keys"], 2);
    assert_eq!(get_key(&acme, "s", "a").await?.1["value"], "2");
    server.stop().await
}

/// A flow's `kv_stores` creates the stores it grants that do not exist yet: they must fit in
/// the tenant's 1,000 stores too, or the flow's `PUT` is refused naming why. Stores that exist
/// may always be granted, and a flow already stored still loads (at start) whatever it grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_cannot_grant_stores_past_the_tenants_number_of_stores() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("sticky", std::fs::read(STICKY_AGENT)?)
            .await?
            .status(),
        201
    );
    let kv = server.state.registry.kv();
    for i in 0..MAX_TENANT_STORES {
        kv.create("acme", &format!("s{i}"))?
            .put("k", "v".into(), None)?;
    }
    sticky_flow(&acme, "existing", &["s0", "s1"], json!({})).await?;
    let (status, refused) = body(
        acme.json(
            Method::PUT,
            "/v1/flows/more",
            json!({ "plugin": "sticky", "version": 1, "kv_stores": ["s0", "agents"] }),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("key-value stores"),
        "{refused}"
    );
    assert!(kv.existing("acme", "agents").is_none());
    server.stop().await
}
