//! Exotel's other URL hooks through the real server: a Switchcase case, a greeting's text and a
//! Connect plan from the example plugins, byte for byte; `HEAD` with the `GET`'s headers; the
//! flow's fallback when the plugin runs out of fuel or answers what Exotel could not read; and
//! the checks when a flow is bound.

mod common;

use common::{AGENT_DIALER, Api, GEO_ROUTER, GREETING, HOOK_PROBE, IVR_MENU, TestServer, body};
use reqwest::{Method, header};
use serde_json::{Value, json};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A flow of `plugin` version 1 with `settings`, which must be accepted.
async fn put_flow(api: &Api<'_>, flow: &str, plugin: &str, settings: Value) -> anyhow::Result<()> {
    let mut body = json!({ "plugin": plugin, "version": 1 });
    body.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let (status, answer) = common::body(
        api.json(Method::PUT, &format!("/v1/flows/{flow}"), body)
            .await?,
    )
    .await?;
    assert!(status == 200 || status == 201, "{status}: {answer}");
    Ok(())
}

/// A response's status, content type, outcome, content length and body.
async fn answer(
    response: reqwest::Response,
) -> anyhow::Result<(u16, String, String, String, String)> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let parts = (
        response.status().as_u16(),
        header(header::CONTENT_TYPE.as_str()),
        header("x-passthru-outcome"),
        header(header::CONTENT_LENGTH.as_str()),
    );
    let text = response.text().await?;
    Ok((parts.0, parts.1, parts.2, parts.3, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_flow_answers_the_case_and_its_fallback_case() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("geo", read(GEO_ROUTER)).await?.status(), 201);
    let routes = json!({ "routes": "+91:india, +9180:south, 033:east" });
    let settings = json!({ "hook": "switch", "config": routes, "fallback": "success",
                           "fallback_case": "main-menu" });
    put_flow(&acme, "geo", "geo", settings.clone()).await?;

    let url = "/passthru/acme/geo?CallSid=c1&CallFrom=%2B918012345678";
    let (status, content_type, outcome, length, text) = answer(server.get(url).await?).await?;
    assert_eq!(
        (
            status,
            content_type.as_str(),
            outcome.as_str(),
            text.as_str()
        ),
        (200, "text/plain", "decided", r#"{"select":"south"}"#)
    );
    // HEAD: the same headers, no body.
    let head = server.client.head(server.url(url)).send().await?;
    let (h_status, h_type, h_outcome, h_length, h_text) = answer(head).await?;
    assert_eq!(
        (h_status, h_type, h_outcome),
        (status, content_type, outcome)
    );
    assert_eq!(h_length, length);
    assert_eq!(length, text.len().to_string());
    assert!(h_text.is_empty());

    // A case that would break the body is a plugin error: the fallback case is answered.
    let mut bad = settings.clone();
    bad["config"] = json!({ "routes": "+91:in\"dia" });
    put_flow(&acme, "geo", "geo", bad).await?;
    let (status, _, outcome, _, text) = answer(server.get(url).await?).await?;
    assert_eq!(
        (status, outcome.as_str(), text.as_str()),
        (200, "plugin_error", r#"{"select":"main-menu"}"#)
    );

    // Out of fuel: the fallback case again, within the deadline.
    let mut starved = settings;
    starved["limits"] = json!({ "fuel": 1 });
    put_flow(&acme, "geo", "geo", starved).await?;
    let (status, _, outcome, _, text) = answer(server.get(url).await?).await?;
    assert_eq!(
        (status, outcome.as_str(), text.as_str()),
        (200, "out_of_fuel", r#"{"select":"main-menu"}"#)
    );

    // Every answer was recorded with its case; HEAD left no record.
    server
        .state
        .recorder
        .flush(std::time::Duration::from_secs(5));
    let (_, records) = body(acme.get("/v1/decisions?flow=geo").await?).await?;
    let items = records["items"].as_array().unwrap();
    let seen: Vec<_> = items
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["answer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("out_of_fuel", "main-menu"),
            ("plugin_error", "main-menu"),
            ("decided", "south")
        ]
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_flow_answers_text_by_the_time_of_day_or_its_fallback_text() -> anyhow::Result<()>
{
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("hello", read(GREETING)).await?.status(), 201);
    let settings = json!({ "hook": "greeting", "fallback_text": "Welcome to Acme.",
                           "config": { "evening": "Good evening from Acme." } });
    put_flow(&acme, "hello", "hello", settings.clone()).await?;

    // 09:00 and 19:00 India time, in Exotel's two time formats.
    let morning = "/passthru/acme/hello?CallSid=c1&CurrentTime=2024-07-31%2009%3A00%3A00";
    let (status, content_type, outcome, _, text) = answer(server.get(morning).await?).await?;
    assert_eq!(
        (
            status,
            content_type.as_str(),
            outcome.as_str(),
            text.as_str()
        ),
        (
            200,
            "text/plain",
            "decided",
            "Good morning, thank you for calling."
        )
    );
    let evening =
        "/passthru/acme/hello?CallSid=c2&CurrentTime=Wed%2C%2031%20Jul%202024%2019%3A00%3A00";
    let (_, _, _, length, text) = answer(server.get(evening).await?).await?;
    assert_eq!(text, "Good evening from Acme.");
    let head = server.client.head(server.url(evening)).send().await?;
    let (h_status, h_type, _, h_length, h_text) = answer(head).await?;
    assert_eq!(
        (h_status, h_type.as_str(), h_length, h_text.as_str()),
        (200, "text/plain", length, "")
    );

    let mut starved = settings;
    starved["limits"] = json!({ "fuel": 1 });
    put_flow(&acme, "hello", "hello", starved).await?;
    let (status, content_type, outcome, _, text) = answer(server.get(morning).await?).await?;
    assert_eq!(
        (
            status,
            content_type.as_str(),
            outcome.as_str(),
            text.as_str()
        ),
        (200, "text/plain", "out_of_fuel", "Welcome to Acme.")
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_flow_answers_its_plan_for_each_exotel_version_or_its_fallback_plan()
-> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("dialer", read(AGENT_DIALER)).await?.status(),
        201
    );
    let config = json!({
        "team": "+919800000001, +919800000002, +919800000003",
        "vip_numbers": "+919811111111",
        "vip_parallel": "2",
        "vip_playback": "A VIP is calling",
        "caller_id": "08030000000",
    });
    let fallback = json!({ "numbers": ["+919800000009"], "record_call": true });
    let settings = json!({ "hook": "connect", "config": config, "fallback_connect": fallback });
    put_flow(&acme, "dial", "dialer", settings.clone()).await?;

    let vip = "/passthru/acme/dial?CallSid=c1&CallFrom=%2B919811111111";
    let response = server
        .client
        .get(server.url(vip))
        .header("Exotel-Version", "1.0")
        .send()
        .await?;
    let (status, content_type, outcome, _, text) = answer(response).await?;
    assert_eq!(
        (status, content_type.as_str(), outcome.as_str()),
        (200, "application/json", "decided")
    );
    assert_eq!(
        text,
        concat!(
            r#"{"destination":{"numbers":["+919800000001","+919800000002","+919800000003"]},"#,
            r#""fetch_after_attempt":false,"outgoing_phone_number":"08030000000","#,
            r#""parallel_ringing":{"activate":true,"max_parallel_attempts":2},"record":false,"#,
            r#""start_call_playback":{"playback_to":"callee","type":"text","value":"A VIP is calling"}}"#
        )
    );
    // The call-centre variant of Connect lists contact URIs.
    let response = server
        .client
        .get(server.url("/passthru/acme/dial?CallSid=c2&CallFrom=0980"))
        .header("Exotel-Version", "1.1")
        .send()
        .await?;
    let (_, _, _, _, text) = answer(response).await?;
    let plan: Value = serde_json::from_str(&text)?;
    assert_eq!(
        plan["destination"][2],
        json!({ "contact_uri": "+919800000003" })
    );
    assert!(plan.get("parallel_ringing").is_none(), "not a VIP: {plan}");

    let mut starved = settings;
    starved["limits"] = json!({ "fuel": 1 });
    put_flow(&acme, "dial", "dialer", starved).await?;
    let (status, _, outcome, _, text) = answer(server.get(vip).await?).await?;
    assert_eq!((status, outcome.as_str()), (200, "out_of_fuel"));
    assert_eq!(
        text,
        r#"{"destination":{"numbers":["+919800000009"]},"fetch_after_attempt":false,"record":true}"#
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_is_bound_only_to_a_version_with_its_hooks_export_and_with_its_fallback()
-> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("menu", read(IVR_MENU)).await?.status(), 201);
    assert_eq!(acme.upload("geo", read(GEO_ROUTER)).await?.status(), 201);
    let refused = [
        (json!({ "plugin": "menu", "hook": "switch" }), "`select`"),
        (
            json!({ "plugin": "geo", "hook": "greeting", "fallback_text": "Hi" }),
            "`greeting`",
        ),
        (json!({ "plugin": "geo" }), "`decide`"),
        (
            json!({ "plugin": "geo", "hook": "sms" }),
            "needs fallback_text",
        ),
        (
            json!({ "plugin": "geo", "hook": "connect",
                 "fallback_connect": { "numbers": [] } }),
            "1 to 32 numbers",
        ),
        (
            json!({ "plugin": "geo", "hook": "switch", "fallback_case": "a\"b" }),
            "fallback_case",
        ),
        (
            json!({ "plugin": "geo", "hook": "switch", "mode": "async" }),
            "sync mode only",
        ),
        (
            json!({ "plugin": "geo", "hook": "switch", "fallback_text": "Hi" }),
            "another hook",
        ),
    ];
    for (flow, why) in refused {
        let (status, problem) =
            body(acme.json(Method::PUT, "/v1/flows/f", flow.clone()).await?).await?;
        assert_eq!(status, 422, "{flow}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{flow}: {detail}");
    }
    // The version reports its world.
    let (_, version) = body(acme.get("/v1/plugins/geo/versions/1").await?).await?;
    assert_eq!(version["world"], "passthru:plugin/switcher@0.1.2");
    assert_eq!(version["exports"], json!(["select"]));
    server.stop().await
}

/// Every hook, for a plugin that traps, one that runs past its deadline and one that runs out of
/// fuel: the flow's fallback, byte for byte, with the failure kind; `HEAD` answers the `GET`'s
/// headers.
/// Exotel sends `HEAD` before the `GET` of a greeting: the `HEAD` runs as a dry run, so what the
/// plugin writes to a store counts once per call, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_before_the_get_leaves_the_plugins_stores_as_they_were() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("probe", read(HOOK_PROBE)).await?.status(), 201);
    let settings = json!({ "hook": "greeting", "fallback_text": "Welcome",
                           "kv_stores": ["counts"], "config": { "mode": "count" } });
    put_flow(&acme, "hello", "probe", settings).await?;
    let count = || async {
        let (status, key) = body(acme.get("/v1/kv/counts/keys/calls").await?).await?;
        anyhow::Ok((status, key["value"].clone()))
    };

    // The flow's calls as `/metrics` counts them: the HEAD is a dry run, counted apart.
    let counted = || {
        server
            .metric("passthru_decisions_total{tenant=\"acme\",flow=\"hello\",outcome=\"decided\"}")
    };
    let dry_runs = || server.metric("passthru_dry_runs_total{tenant=\"acme\",flow=\"hello\"}");

    let url = "/passthru/acme/hello?CallSid=h1&CallFrom=09800000001";
    let head = server.client.head(server.url(url)).send().await?;
    let (status, _, outcome, length, _) = answer(head).await?;
    assert_eq!((status, outcome.as_str()), (200, "decided"));
    assert_eq!(
        count().await?.0,
        404,
        "the HEAD's increment reached the store"
    );
    assert_eq!(
        counted().await?.as_deref(),
        Some("0"),
        "the HEAD was counted as a call"
    );
    assert_eq!(dry_runs().await?.as_deref(), Some("1"));

    let (status, _, outcome, get_length, text) = answer(server.get(url).await?).await?;
    assert_eq!(
        (status, outcome.as_str(), text.as_str()),
        (200, "decided", "probe greeting")
    );
    assert_eq!(get_length, length, "the HEAD's headers are the GET's");
    assert_eq!(count().await?, (200, json!("1")));
    assert_eq!(counted().await?.as_deref(), Some("1"));
    assert_eq!(
        dry_runs().await?.as_deref(),
        Some("1"),
        "the GET was a dry run"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hook_answers_its_fallback_after_a_trap_a_timeout_and_out_of_fuel()
-> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("probe", read(HOOK_PROBE)).await?.status(), 201);
    let connect = json!({ "numbers": ["+919800000009"] });
    let gather = json!({ "prompt": { "text": "Press 1" }, "max_input_digits": 1 });
    // hook, its fallback setting, the plugin's answer, the fallback's answer, the content type.
    let hooks = [
        (
            "switch",
            json!({ "fallback_case": "main" }),
            r#"{"select":"probe"}"#,
            r#"{"select":"main"}"#,
            "text/plain",
        ),
        (
            "greeting",
            json!({ "fallback_text": "Welcome" }),
            "probe greeting",
            "Welcome",
            "text/plain",
        ),
        (
            "sms",
            json!({ "fallback_text": "Thanks" }),
            "probe sms",
            "Thanks",
            "text/plain",
        ),
        (
            "connect",
            json!({ "fallback_connect": connect }),
            r#"{"destination":{"numbers":["+910000000000"]},"fetch_after_attempt":false,"record":false}"#,
            r#"{"destination":{"numbers":["+919800000009"]},"fetch_after_attempt":false,"record":false}"#,
            "application/json",
        ),
        (
            "gather",
            json!({ "fallback_gather": gather }),
            r#"{"gather_prompt":{"text":"probe"}}"#,
            r#"{"gather_prompt":{"text":"Press 1"},"max_input_digits":1}"#,
            "application/json",
        ),
    ];
    let failures = [
        ("answer", json!({}), "decided"),
        ("trap", json!({}), "trap"),
        // The tenant's cap on fuel, a billion, lasts the probe's loop 50 ms or more: the deadline
        // comes well before.
        (
            "loop",
            json!({ "fuel": 1_000_000_000u64, "deadline_ms": 10 }),
            "deadline",
        ),
        ("loop", json!({ "fuel": 1_000_000 }), "out_of_fuel"),
    ];
    for (hook, fallback, answered, fallback_answer, content_type) in hooks {
        for (mode, limits, outcome) in &failures {
            let mut settings = json!({ "hook": hook, "fallback": "success",
                                       "config": { "mode": mode }, "limits": limits });
            settings
                .as_object_mut()
                .unwrap()
                .extend(fallback.as_object().unwrap().clone());
            put_flow(&acme, "probe", "probe", settings).await?;
            let url = "/passthru/acme/probe?CallSid=c1&CallFrom=0980";
            let got = answer(server.get(url).await?).await?;
            let want = if *outcome == "decided" {
                answered
            } else {
                fallback_answer
            };
            assert_eq!(
                (got.0, got.1.as_str(), got.2.as_str(), got.4.as_str()),
                (200, content_type, *outcome, want),
                "{hook} {mode}"
            );
            if *outcome == "decided" || *outcome == "trap" {
                // The flow's count of this outcome, which a HEAD (a dry run) leaves as it was,
                // whether the plugin decided or failed.
                let series = format!(
                    "passthru_decisions_total{{tenant=\"acme\",flow=\"probe\",outcome=\"{outcome}\"}}"
                );
                let counted = || server.metric(&series);
                let before = counted().await?;
                assert!(before.is_some(), "no series {series}");
                let head = answer(server.client.head(server.url(url)).send().await?).await?;
                assert_eq!(
                    (head.0, head.1, head.2, head.3, head.4.as_str()),
                    (got.0, got.1, got.2, got.3, ""),
                    "{hook} {mode}: HEAD"
                );
                assert_eq!(
                    counted().await?,
                    before,
                    "{hook} {mode}: the HEAD was counted"
                );
            }
        }
    }
    server.stop().await
}
