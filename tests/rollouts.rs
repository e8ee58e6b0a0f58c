//! Rolling versions out, through the real server: a canary answers its share of calls by
//! `CallSid` (stable for a call, across a restart too) and is promoted or aborted; a recorded
//! decision replays to the same answer and fuel (`passthru run --replay`, and a backtest); a
//! backtest lists the calls a candidate answers differently; a dry run leaves no record, no
//! metric and no key-value write behind.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Api, COIN_FLIP, HOSTILE, IVR_MENU, PASSTHRU, STICKY_AGENT, TempDir, TestServer, VIP_CALLER,
    body,
};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A CallSid shaped like Exotel's (32 hex digits), the `i`th of a test's.
fn call_sid(i: u64) -> String {
    format!("{:032x}", (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Sends `queries` to `tenant/flow`, 8 at a time; returns the statuses.
async fn calls(server: &TestServer, flow: &str, queries: Vec<String>) -> anyhow::Result<Vec<u16>> {
    let sent = futures_util::stream::iter(queries.into_iter().map(|query| async move {
        let response = server
            .get(&format!("/passthru/acme/{flow}?{query}"))
            .await?;
        anyhow::Ok(response.status().as_u16())
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    sent.into_iter().collect()
}

/// Every decision record of `flow` (written first), oldest first.
async fn records(server: &TestServer, api: &Api<'_>, flow: &str) -> anyhow::Result<Vec<Value>> {
    let recorder = server.state.recorder.clone();
    assert!(tokio::task::spawn_blocking(move || recorder.flush(Duration::from_secs(10))).await?);
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = body(
            api.get(&format!("/v1/decisions?flow={flow}&limit=1000{cursor}"))
                .await?,
        )
        .await?;
        assert_eq!(status, 200, "{page}");
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    all.reverse();
    Ok(all)
}

async fn put_flow(api: &Api<'_>, flow: &str, spec: Value) -> anyhow::Result<()> {
    let (status, answer) = body(
        api.json(Method::PUT, &format!("/v1/flows/{flow}"), spec)
            .await?,
    )
    .await?;
    assert!(status == 200 || status == 201, "{status}: {answer}");
    Ok(())
}

/// A problem's status and detail, checked to be `application/problem+json`.
async fn problem(response: reqwest::Response) -> anyhow::Result<(u16, String)> {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, problem) = body(response).await?;
    Ok((status, problem["detail"].as_str().unwrap_or("").to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_percent_canary_answers_a_tenth_of_calls_and_a_call_always_gets_one_version()
-> anyhow::Result<()> {
    let dir = TempDir::new("canary");
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    for bytes in [read(IVR_MENU), read(VIP_CALLER)] {
        assert_eq!(acme.upload("menu", bytes).await?.status(), 201);
    }
    put_flow(&acme, "ivr", json!({"plugin": "menu", "version": 1})).await?;

    // Refusals first: each a problem that says what is wrong.
    for (canary, status, says) in [
        (json!({"version": 1, "percent": 10}), 409, "active version"),
        (json!({"version": 2, "percent": 0}), 422, "more than 0"),
        (json!({"version": 2, "percent": 100}), 422, "less than 100"),
        (json!({"version": 9, "percent": 10}), 404, "version 9"),
        (json!({"version": 2}), 400, "percent"),
    ] {
        let (got, detail) = problem(
            acme.json(Method::PUT, "/v1/flows/ivr/canary", canary.clone())
                .await?,
        )
        .await?;
        assert_eq!(got, status, "{canary}: {detail}");
        assert!(detail.contains(says), "{canary}: {detail}");
    }
    let (status, flow) = body(
        acme.json(
            Method::PUT,
            "/v1/flows/ivr/canary",
            json!({"version": 2, "percent": 10}),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 200, "{flow}");
    assert_eq!(flow["canary"], json!({"version": 2, "percent": 10.0}));
    assert_eq!(flow["version"], 1);

    let total = 10_000;
    let queries = (0..total)
        .map(|i| format!("CallSid={}&digits=%221%22", call_sid(i)))
        .collect();
    calls(&server, "ivr", queries).await?;
    let all = records(&server, &acme, "ivr").await?;
    assert_eq!(all.len(), total as usize, "every call left a record");
    let canary = all.iter().filter(|r| r["version"] == 2).count();
    assert!(
        (900..=1100).contains(&canary),
        "{canary} of {total} calls answered by the 10% canary"
    );

    // A call's requests all get one version: on this server, and after a restart.
    let sids: Vec<String> = (0..40).map(call_sid).collect();
    let version_of: HashMap<String, Value> = all
        .iter()
        .map(|r| {
            (
                r["call_sid"].as_str().unwrap().to_owned(),
                r["version"].clone(),
            )
        })
        .collect();
    let again = sids
        .iter()
        .flat_map(|sid| {
            [
                format!("CallSid={sid}"),
                format!("CallSid={sid}&digits=%222%22"),
            ]
        })
        .collect();
    calls(&server, "ivr", again).await?;
    let token = acme.token.clone();
    drop(acme);
    server.stop().await?;
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api {
        server: &server,
        token,
    };
    calls(
        &server,
        "ivr",
        sids.iter().map(|sid| format!("CallSid={sid}")).collect(),
    )
    .await?;
    let later = records(&server, &acme, "ivr").await?;
    for record in &later[total as usize..] {
        let sid = record["call_sid"].as_str().unwrap();
        assert_eq!(
            record["version"], version_of[sid],
            "call {sid} changed version"
        );
    }
    // Calls without a CallSid get the live version.
    calls(&server, "ivr", vec!["digits=%221%22".to_owned(); 20]).await?;
    let unnamed = records(&server, &acme, "ivr").await?;
    assert!(
        unnamed
            .iter()
            .filter(|r| r["call_sid"].is_null())
            .all(|r| r["version"] == 1)
    );

    // Promote: the canary is the version, the old one the rollback target.
    let (status, flow) = body(
        acme.request(Method::POST, "/v1/flows/ivr/canary/promote")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{flow}");
    assert_eq!(
        (&flow["version"], &flow["previous_version"], &flow["canary"]),
        (&json!(2), &json!(1), &Value::Null)
    );
    let (status, detail) = problem(
        acme.request(Method::POST, "/v1/flows/ivr/canary/promote")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 409, "{detail}");
    // Abort: the canary is gone; aborting none answers the flow as it is.
    acme.json(
        Method::PUT,
        "/v1/flows/ivr/canary",
        json!({"version": 1, "percent": 50}),
    )
    .await?;
    for _ in 0..2 {
        let (status, flow) = body(
            acme.request(Method::DELETE, "/v1/flows/ivr/canary")
                .send()
                .await?,
        )
        .await?;
        assert_eq!(
            (status, &flow["canary"], &flow["version"]),
            (200, &Value::Null, &json!(2))
        );
    }
    server.stop().await
}

/// Runs `passthru run ARGS --no-cache`; returns its exit code and the JSON it printed.
fn run_cli(args: &[&str]) -> anyhow::Result<(i32, Value)> {
    let out = std::process::Command::new(PASSTHRU)
        .arg("run")
        .args(args)
        .arg("--no-cache")
        .output()?;
    let printed: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok((out.status.code().unwrap_or(-1), printed))
}

#[test]
fn passthru_run_backtests_a_file_of_queries_against_another_plugin() -> anyhow::Result<()> {
    let dir = TempDir::new("run-backtest");
    let file = dir.0.join("queries.txt");
    // ivr-menu: success on digit 1. vip-caller: success for the VIP caller.
    std::fs::write(
        &file,
        "CallSid=a&CallFrom=09800000001&digits=%221%22\n\
         ?CallSid=b&CallFrom=09800000002&digits=%221%22\n\
         \n\
         CallSid=c&CallFrom=09800000001&digits=%222%22\n",
    )?;
    let path = file.to_str().unwrap();
    let args = [
        VIP_CALLER,
        "--config",
        "vip_numbers=09800000001",
        "--backtest",
        path,
    ];
    let (code, report) = run_cli(&[&args[..], &["--against", IVR_MENU]].concat())?;
    assert_eq!(code, 3, "{report}");
    assert_eq!(
        (&report["calls"], &report["agree"], &report["differ_total"]),
        (&json!(3), &json!(1), &json!(2)),
        "{report}"
    );
    assert_eq!(report["differ"][0]["call_sid"], "b");
    assert_eq!(report["differ"][0]["decision_id"], 2, "the line number");
    assert_eq!(report["differ"][1]["call_sid"], "c");
    // Without --against, a query line has nothing to compare with.
    let (code, failed) = run_cli(&args)?;
    assert_eq!(code, 2, "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--against")
    );
    Ok(())
}

/// Runs `passthru run COIN_FLIP --replay FILE` on `record`; returns its exit code and output.
fn replay_with_cli(record: &Value, dir: &TempDir) -> anyhow::Result<(i32, Value)> {
    let file = dir.0.join(format!("record-{}.json", record["id"]));
    std::fs::write(&file, serde_json::to_vec(record)?)?;
    let out = std::process::Command::new(PASSTHRU)
        .args(["run", COIN_FLIP, "--no-cache", "--replay"])
        .arg(&file)
        .output()?;
    let printed: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok((out.status.code().unwrap_or(-1), printed))
}

/// A plugin whose calls grow its memory is told so before it is live: a dry run says by how much,
/// and a backtest how many calls grew it and the most one did. One that does not grow says 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_and_backtests_report_the_memory_a_call_grows() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("grower", read(HOSTILE)).await?.status(), 201);
    assert_eq!(acme.upload("menu", read(IVR_MENU)).await?.status(), 201);
    let grows = json!({"mode": "grow", "kib": "192"});
    put_flow(
        &acme,
        "grower",
        json!({"plugin": "grower", "version": 1, "config": grows}),
    )
    .await?;
    put_flow(&acme, "menu", json!({"plugin": "menu", "version": 1})).await?;

    let tried = |flow: &'static str| {
        let acme = &acme;
        async move {
            let path = format!("/v1/flows/{flow}/try");
            let request = json!({"query": "CallSid=g1&digits=%221%22"});
            let (status, tried) = body(acme.json(Method::POST, &path, request).await?).await?;
            assert_eq!(status, 200, "{tried}");
            anyhow::Ok(tried)
        }
    };
    let grower = tried("grower").await?;
    let grown = grower["memory"]["grown_bytes"].as_u64().unwrap();
    assert!(grown >= 192 << 10, "{grower}");
    assert!(
        grower["memory"]["initial_bytes"].as_u64().unwrap() > 0,
        "{grower}"
    );
    let menu = tried("menu").await?;
    assert_eq!(menu["memory"]["grown_bytes"], 0, "{menu}");

    for flow in ["grower", "menu"] {
        let queries = (0..4)
            .map(|i| format!("CallSid={}&digits=1", call_sid(i)))
            .collect();
        assert!(
            calls(&server, flow, queries)
                .await?
                .iter()
                .all(|s| *s == 200)
        );
        assert_eq!(records(&server, &acme, flow).await?.len(), 4);
    }
    let backtest = |flow: &'static str| {
        let acme = &acme;
        async move {
            let path = format!("/v1/flows/{flow}/backtest");
            let request = json!({"version": 1, "last": 4});
            let (status, report) = body(acme.json(Method::POST, &path, request).await?).await?;
            assert_eq!(status, 200, "{report}");
            assert_eq!(report["calls"], 4, "{report}");
            anyhow::Ok(report)
        }
    };
    let report = backtest("grower").await?;
    assert_eq!(report["memory_grown"]["calls"], 4, "{report}");
    let most = report["memory_grown"]["max_bytes"].as_u64().unwrap();
    assert!(most >= 192 << 10, "{report}");
    let report = backtest("menu").await?;
    assert_eq!(
        report["memory_grown"],
        json!({"calls": 0, "max_bytes": 0}),
        "{report}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_decision_replays_to_the_same_branch_and_fuel_through_the_cli_and_a_backtest()
-> anyhow::Result<()> {
    let dir = TempDir::new("replay");
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(acme.upload("coin", read(COIN_FLIP)).await?.status(), 201);
    put_flow(&acme, "coin", json!({"plugin": "coin", "version": 1})).await?;
    calls(
        &server,
        "coin",
        (0..30)
            .map(|i| format!("CallSid={}", call_sid(i)))
            .collect(),
    )
    .await?;
    let recorded = records(&server, &acme, "coin").await?;
    assert_eq!(recorded.len(), 30);
    // The answers and the fuel do depend on the clock and randomness: both branches, many fuels.
    let fuels: std::collections::HashSet<_> =
        recorded.iter().map(|r| r["fuel_used"].clone()).collect();
    assert!(
        fuels.len() > 5,
        "fuel varies with the random bytes: {fuels:?}"
    );
    assert!(recorded.iter().any(|r| r["branch"] == "success"));
    assert!(recorded.iter().any(|r| r["branch"] == "failure"));
    let first = &recorded[0];
    assert_eq!(
        first["query"],
        format!("CallSid={}", first["call_sid"].as_str().unwrap())
    );
    assert_eq!(first["replay"]["export"], "decide");
    assert_eq!(first["replay"]["seed"].as_str().unwrap().len(), 64);

    for record in &recorded[..4] {
        let (code, replayed) = replay_with_cli(record, &dir)?;
        assert_eq!(code, 0, "{replayed}");
        assert_eq!(replayed["same_answer"], true, "{replayed}");
        assert_eq!(replayed["same_fuel"], true, "{replayed}");
        // The reason shows the clock and every random value read: all the same.
        assert_eq!(
            replayed["replayed"]["reason"], record["reason"],
            "{replayed}"
        );
        assert_eq!(replayed["replayed"]["fuel_used"], record["fuel_used"]);
    }
    // A record as the list answers it (a page) replays too.
    let page = json!({"items": [recorded[5].clone()]});
    let (code, replayed) = replay_with_cli(&page, &dir)?;
    assert_eq!(
        (code, &replayed["same_fuel"]),
        (0, &json!(true)),
        "{replayed}"
    );
    // The same records, as JSON lines, backtested by `passthru run --backtest`.
    let lines: Vec<String> = recorded.iter().map(|r| r.to_string()).collect();
    let file = dir.0.join("calls.jsonl");
    std::fs::write(&file, lines.join("\n"))?;
    let (code, report) = run_cli(&[COIN_FLIP, "--backtest", file.to_str().unwrap()])?;
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (&report["calls"], &report["agree"]),
        (&json!(30), &json!(30)),
        "{report}"
    );
    let recorded_fuel: u64 = recorded
        .iter()
        .map(|r| r["fuel_used"].as_u64().unwrap())
        .sum();
    assert_eq!(report["fuel"]["total"], recorded_fuel, "{report}");

    let (status, report) = body(
        acme.json(
            Method::POST,
            "/v1/flows/coin/backtest",
            json!({"version": 1, "last": 30}),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["calls"], &report["agree"], &report["differ_total"]),
        (&json!(30), &json!(30), &json!(0)),
        "{report}"
    );
    assert_eq!(
        report["fuel"]["total"], recorded_fuel,
        "the same fuel, call for call in sum"
    );
    assert_eq!(report["skipped"], 0);
    // The records of the backtest's calls: none (it is a dry run).
    assert_eq!(records(&server, &acme, "coin").await?.len(), 30);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_lists_the_calls_a_candidate_answers_differently_within_its_bounds()
-> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    for bytes in [read(IVR_MENU), read(VIP_CALLER)] {
        assert_eq!(acme.upload("menu", bytes).await?.status(), 201);
    }
    put_flow(
        &acme,
        "ivr",
        json!({"plugin": "menu", "version": 1, "config": {"vip_numbers": "09800000001"}}),
    )
    .await?;
    // ivr-menu: success on digit 1. vip-caller: success for the VIP caller.
    let queries = vec![
        "CallSid=a&CallFrom=09800000001&digits=%221%22".to_owned(), // both success
        "CallSid=b&CallFrom=09800000002&digits=%221%22".to_owned(), // differs
        "CallSid=c&CallFrom=09800000001&digits=%222%22".to_owned(), // differs
        "CallSid=d&CallFrom=09800000002&digits=%222%22".to_owned(), // both failure
    ];
    calls(&server, "ivr", queries).await?;
    records(&server, &acme, "ivr").await?;
    let (status, report) = body(
        acme.json(
            Method::POST,
            "/v1/flows/ivr/backtest",
            json!({"version": 2, "since_ms": 0}),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["calls"], &report["agree"], &report["differ_total"]),
        (&json!(4), &json!(2), &json!(2)),
        "{report}"
    );
    // The calls were sent concurrently: their records' order is the order they finished in.
    let differ = report["differ"].as_array().unwrap();
    let mut sids: Vec<_> = differ.iter().map(|d| d["call_sid"].clone()).collect();
    sids.sort_by_key(Value::to_string);
    assert_eq!(sids, [json!("b"), json!("c")], "{report}");
    let b = differ.iter().find(|d| d["call_sid"] == "b").unwrap();
    assert_eq!(
        (&b["old"]["branch"], &b["new"]["branch"]),
        (&json!("success"), &json!("failure"))
    );
    assert_eq!(
        (&b["old"]["version"], &b["new"]["version"]),
        (&json!(1), &json!(2))
    );
    assert!(b["new"]["reason"].is_string(), "{report}");

    for (request, status, says) in [
        (json!({"version": 2}), 400, "last"),
        (json!({"version": 2, "last": 0}), 400, "1 to 10000"),
        (json!({"version": 2, "last": 10_001}), 400, "1 to 10000"),
        (
            json!({"version": 2, "last": 5, "since_ms": 1}),
            400,
            "not both",
        ),
        (
            json!({"version": 2, "since_ms": 5, "until_ms": 5}),
            400,
            "before",
        ),
        (json!({"version": 7, "last": 5}), 404, "version 7"),
    ] {
        let (got, detail) = problem(
            acme.json(Method::POST, "/v1/flows/ivr/backtest", request.clone())
                .await?,
        )
        .await?;
        assert_eq!(got, status, "{request}: {detail}");
        assert!(detail.contains(says), "{request}: {detail}");
    }

    // Its reading of the recorded calls takes the tenant's turn, as the API's reads of records
    // do: held elsewhere (a long stats query, say), the backtest waits for it.
    let turns = &server.state.record_reads;
    let held = turns.wait("acme").await?;
    let backtest = server
        .client
        .post(server.url("/v1/flows/ivr/backtest"))
        .bearer_auth(&acme.token)
        .json(&json!({"version": 2, "since_ms": 0}))
        .send();
    let backtest = tokio::spawn(backtest);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while turns.waiting() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backtest took no turn"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(!backtest.is_finished());
    // While it waits, the server's one backtest is free for another tenant's.
    let other = server.state.backtests.claim();
    assert!(
        other.is_ok(),
        "a backtest waiting for its turn holds the server's"
    );
    drop(other);
    drop(held);
    assert_eq!(backtest.await??.status(), 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_answers_without_a_record_a_metric_or_a_kept_key_value_write()
-> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("sticky", read(STICKY_AGENT)).await?.status(),
        201
    );
    put_flow(
        &acme,
        "sticky",
        json!({"plugin": "sticky", "version": 1, "kv_stores": ["agents"]}),
    )
    .await?;
    let metrics = || async {
        let text = server.metrics().await?;
        anyhow::Ok(
            text.lines()
                .filter(|l| l.contains("flow=\"sticky\"") && !l.starts_with("passthru_dry_runs"))
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    };
    let before = metrics().await?;

    let remember =
        "CallSid=s1&CallFrom=09800000001&DialWhomNumber=09811111111&DialCallStatus=completed";
    let (status, tried) = body(
        acme.json(
            Method::POST,
            "/v1/flows/sticky/try",
            json!({"query": remember}),
        )
        .await?,
    )
    .await?;
    assert_eq!(status, 200, "{tried}");
    assert_eq!(
        (&tried["version"], &tried["branch"], &tried["outcome"]),
        (&json!(1), &json!("success"), &json!("decided")),
        "{tried}"
    );
    assert_eq!(
        tried["reason"],
        "remembered 09811111111 for caller 09800000001"
    );
    assert_eq!(tried["params"]["DialWhomNumber"], "09811111111");
    assert!(tried["fuel_used"].as_u64().unwrap() > 0);
    // The write was the call's alone: a look-up finds nothing, and the store has no key.
    let (_, looked) = body(
        acme.json(
            Method::POST,
            "/v1/flows/sticky/try",
            json!({"query": "CallSid=s2&CallFrom=09800000001"}),
        )
        .await?,
    )
    .await?;
    assert_eq!(looked["branch"], "failure", "{looked}");
    assert_eq!(
        acme.get("/v1/kv/agents/keys/09800000001").await?.status(),
        404
    );
    // No record, no metric of the live flow.
    assert!(records(&server, &acme, "sticky").await?.is_empty());
    assert_eq!(metrics().await?, before);
    let dry_runs = "passthru_dry_runs_total{tenant=\"acme\",flow=\"sticky\"}";
    assert_eq!(server.metric(dry_runs).await?.as_deref(), Some("0"));
    // A HEAD of the live route leaves nothing behind either: it runs as a dry run, so the
    // agent it remembers is the call's alone (it answers what the GET would, and no record).
    let head = server
        .client
        .head(server.url(&format!("/passthru/acme/sticky?{remember}")))
        .send()
        .await?;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-passthru-outcome"], "decided");
    assert_eq!(head.headers()["x-passthru-branch"], "success");
    assert_eq!(
        acme.get("/v1/kv/agents/keys/09800000001").await?.status(),
        404,
        "a HEAD wrote to the live store"
    );
    assert!(records(&server, &acme, "sticky").await?.is_empty());
    assert_eq!(metrics().await?, before, "a HEAD was counted as a call");
    assert_eq!(server.metric(dry_runs).await?.as_deref(), Some("1"));
    // Live data is read: after a live call remembers the agent, a dry run finds it.
    calls(&server, "sticky", vec![remember.to_owned()]).await?;
    let (_, found) = body(
        acme.json(
            Method::POST,
            "/v1/flows/sticky/try",
            json!({"query": "CallSid=s3&CallFrom=09800000001", "version": 1}),
        )
        .await?,
    )
    .await?;
    assert_eq!(found["branch"], "success", "{found}");

    for (request, status) in [
        (json!({"query": "x".repeat(20_000)}), 414),
        (json!({"query": "CallSid=1", "version": 5}), 404),
        (json!({"query": "CallSid=1", "extra": 1}), 400),
    ] {
        let (got, detail) = problem(
            acme.json(Method::POST, "/v1/flows/sticky/try", request)
                .await?,
        )
        .await?;
        assert_eq!(got, status, "{detail}");
        assert!(!detail.is_empty());
    }
    let (got, _) = problem(
        acme.json(Method::POST, "/v1/flows/none/try", json!({"query": ""}))
            .await?,
    )
    .await?;
    assert_eq!(got, 404);
    server.stop().await
}
