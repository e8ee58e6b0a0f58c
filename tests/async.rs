//! Async flows end to end, through real HTTP on 127.0.0.1:0 and the `async-probe` test plugin:
//! answered at once and run in the background, retried with backoff, kept as dead letters and
//! replayed, bounded with a `503`, fair between tenants, and resumed after a restart.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{ASYNC_PROBE, Api, Db, IVR_MENU, TempDir, TestServer, body, eventually};
use reqwest::Method;
use serde_json::{Value, json};

/// Creates `tenant` with a token, uploads the probe as plugin `probe`, and binds `flows` (name,
/// extra flow fields) in async mode.
async fn tenant_with_flows<'a>(
    server: &'a TestServer,
    tenant: &str,
    flows: &[(&str, Value)],
) -> anyhow::Result<Api<'a>> {
    let api = Api::operator(server).tenant(tenant, None).await?;
    let uploaded = api.upload("probe", std::fs::read(ASYNC_PROBE)?).await?;
    assert_eq!(uploaded.status(), 201, "{}", uploaded.text().await?);
    for (name, extra) in flows {
        put_flow(&api, name, extra.clone()).await?;
    }
    Ok(api)
}

async fn put_flow(api: &Api<'_>, name: &str, extra: Value) -> anyhow::Result<()> {
    let mut flow = json!({ "plugin": "probe", "mode": "async" });
    for (k, v) in extra.as_object().into_iter().flatten() {
        flow[k] = v.clone();
    }
    let (status, stored) = body(
        api.json(Method::PUT, &format!("/v1/flows/{name}"), flow)
            .await?,
    )
    .await?;
    assert!(status == 200 || status == 201, "{status} {stored}");
    Ok(())
}

/// Sends one Passthru request; returns its status and, when queued, the event id.
async fn send(
    server: &TestServer,
    tenant: &str,
    flow: &str,
    sid: &str,
) -> anyhow::Result<(u16, Option<u64>)> {
    let response = server
        .get(&format!(
            "/passthru/{tenant}/{flow}?CallSid={sid}&CallFrom=0980&digits=%221%22"
        ))
        .await?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-passthru-event")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if status == 200 {
        assert_eq!(response.headers()["x-passthru-outcome"], "queued");
    }
    Ok((status, id))
}

/// Every decision record of a call, oldest first.
async fn attempts_of(api: &Api<'_>, sid: &str) -> anyhow::Result<Vec<Value>> {
    let (status, found) = body(api.get(&format!("/v1/calls/{sid}")).await?).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    assert_eq!(status, 200, "{found}");
    let mut items = found["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|r| (r["at_ms"].as_i64(), r["id"].as_i64()));
    Ok(items)
}

fn log_text(record: &Value) -> String {
    record["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn queue_of(api: &Api<'_>, flow: &str) -> anyhow::Result<Value> {
    let (status, queue) = body(api.get(&format!("/v1/flows/{flow}/queue")).await?).await?;
    assert_eq!(status, 200, "{queue}");
    Ok(queue)
}

fn pending(queue: &Value) -> u64 {
    ["ready", "retrying", "in_flight"]
        .iter()
        .map(|k| queue[k].as_u64().unwrap_or(0))
        .sum()
}

async fn requests_are_answered_at_once_and_each_reaches_the_plugin_with_its_event_id(
    db: Db,
) -> anyhow::Result<()> {
    let server = TestServer::start_on("", &db).await?;
    let api = tenant_with_flows(&server, "acme", &[("log", json!({}))]).await?;

    let mut ids = BTreeMap::new();
    for i in 0..20 {
        let sid = format!("sid-{i}");
        let (status, id) = send(&server, "acme", "log", &sid).await?;
        assert_eq!(status, 200);
        ids.insert(sid, id.expect("an event id header"));
    }
    let distinct: std::collections::BTreeSet<_> = ids.values().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "event ids must be unique: {ids:?}"
    );

    for (sid, id) in &ids {
        let records = eventually(&format!("the record of {sid}"), || async {
            let records = attempts_of(&api, sid).await?;
            Ok((!records.is_empty()).then_some(records))
        })
        .await?;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["outcome"], "recorded");
        assert_eq!(records[0]["reason"], format!("event {id} attempt 1"));
        // The plugin itself saw this CallSid, this event id and attempt 1.
        assert!(
            log_text(&records[0])
                .contains(&format!("recorded call_sid={sid} event={id} attempt=1")),
            "{}",
            records[0]
        );
    }
    let queue = queue_of(&api, "log").await?;
    assert_eq!(
        pending(&queue) + queue["dead"].as_u64().unwrap(),
        0,
        "{queue}"
    );
    // A flow that does not exist has no queue; another tenant's is not found either.
    assert_eq!(api.get("/v1/flows/nope/queue").await?.status(), 404);
    let other = Api::operator(&server).tenant("other", None).await?;
    assert_eq!(other.get("/v1/flows/log/queue").await?.status(), 404);
    server.stop().await
}

async fn failures_are_retried_with_backoff_then_kept_as_dead_letters_and_replayed(
    db: Db,
) -> anyhow::Result<()> {
    let server = TestServer::start_on("", &db).await?;
    let retry = |max_attempts: u32, backoff_ms: u64| json!({ "max_attempts": max_attempts, "backoff_ms": backoff_ms, "max_backoff_ms": 10_000 });
    let api = tenant_with_flows(
        &server,
        "acme",
        &[
            (
                "flaky",
                json!({ "retry": retry(5, 100), "config": { "fail_attempts": "2" } }),
            ),
            (
                "doomed",
                json!({ "retry": retry(3, 50), "config": { "fail_attempts": "1000" } }),
            ),
            (
                "trapping",
                json!({ "retry": retry(1, 50), "config": { "trap": "true" } }),
            ),
        ],
    )
    .await?;

    // Two failures, then success on the third attempt, each retry after its backoff.
    let (status, flaky_id) = send(&server, "acme", "flaky", "flaky-1").await?;
    assert_eq!(status, 200);
    let records = eventually("flaky-1 to succeed", || async {
        let records = attempts_of(&api, "flaky-1").await?;
        Ok((records.len() == 3).then_some(records))
    })
    .await?;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["plugin_error", "plugin_error", "recorded"]);
    assert!(
        records[0]["error"]
            .as_str()
            .unwrap()
            .contains("failing on purpose: attempt 1 of 2")
    );
    let at: Vec<i64> = records
        .iter()
        .map(|r| r["at_ms"].as_i64().unwrap())
        .collect();
    // Equal jitter keeps each delay in the upper half of 100 ms, then of 200 ms.
    assert!(
        at[1] - at[0] >= 50,
        "first retry after {} ms",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= 100,
        "second retry after {} ms",
        at[2] - at[1]
    );
    assert!(log_text(&records[2]).contains(&format!("event={} attempt=3", flaky_id.unwrap())));

    // Always failing: three attempts, then a dead letter with the last error and log.
    let (_, doomed_id) = send(&server, "acme", "doomed", "doomed-1").await?;
    let doomed_id = doomed_id.unwrap();
    let dead = eventually("doomed-1 to die", || async {
        let (_, list) = body(api.get("/v1/flows/doomed/dead-letters").await?).await?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok((!items.is_empty()).then_some(items))
    })
    .await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0];
    assert_eq!(letter["id"], doomed_id);
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["call_sid"], "doomed-1");
    assert!(
        letter["query"]
            .as_str()
            .unwrap()
            .contains("CallSid=doomed-1")
    );
    let failure = &letter["last_failure"];
    assert_eq!(failure["kind"], "plugin_error");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("attempt 3 of 1000"),
        "{failure}"
    );
    assert!(
        failure["log"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "recorded call_sid=doomed-1 event={doomed_id} attempt=3"
            ))
    );
    let lived = failure["at_ms"].as_i64().unwrap() - letter["accepted_at_ms"].as_i64().unwrap();
    assert!(
        lived >= 25 + 50,
        "two backoffs of at least 25 and 50 ms, not {lived} ms"
    );
    let (status, one) = body(
        api.get(&format!("/v1/flows/doomed/dead-letters/{doomed_id}"))
            .await?,
    )
    .await?;
    assert_eq!((status, &one), (200, letter));
    assert_eq!(queue_of(&api, "doomed").await?["dead"], 1);

    // Fixed flow, replay: the event runs again as attempt 1 and succeeds.
    put_flow(&api, "doomed", json!({ "retry": retry(3, 50) })).await?;
    let replay = format!("/v1/flows/doomed/dead-letters/{doomed_id}/replay");
    assert_eq!(
        api.request(Method::POST, &replay).send().await?.status(),
        202
    );
    let last = eventually("the replayed event to succeed", || async {
        let records = attempts_of(&api, "doomed-1").await?;
        Ok(records
            .last()
            .filter(|r| r["outcome"] == "recorded")
            .cloned())
    })
    .await?;
    assert!(
        log_text(&last).contains(&format!("event={doomed_id} attempt=1")),
        "{last}"
    );
    assert_eq!(
        api.get(&format!("/v1/flows/doomed/dead-letters/{doomed_id}"))
            .await?
            .status(),
        404
    );
    assert_eq!(
        api.request(Method::POST, &replay).send().await?.status(),
        404
    );

    // A trap with one attempt allowed: dead at once; deleted, it is gone.
    let (_, trap_id) = send(&server, "acme", "trapping", "trap-1").await?;
    let path = format!("/v1/flows/trapping/dead-letters/{}", trap_id.unwrap());
    let letter = eventually("trap-1 to die", || async {
        let (status, letter) = body(api.get(&path).await?).await?;
        Ok((status == 200).then_some(letter))
    })
    .await?;
    assert_eq!(letter["last_failure"]["kind"], "trap");
    assert!(
        letter["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("deliberate trap")
    );
    // Another tenant cannot see, replay or delete it.
    let other = Api::operator(&server).tenant("other", None).await?;
    assert_eq!(other.get(&path).await?.status(), 404);
    assert_eq!(
        other.request(Method::DELETE, &path).send().await?.status(),
        404
    );
    assert_eq!(
        api.request(Method::DELETE, &path).send().await?.status(),
        204
    );
    assert_eq!(api.get(&path).await?.status(), 404);
    assert_eq!(
        api.request(Method::DELETE, &path).send().await?.status(),
        404
    );
    assert_eq!(
        api.get("/v1/flows/trapping/dead-letters/x").await?.status(),
        400
    );
    server.stop().await
}

async fn one_tenants_flood_of_slow_events_does_not_starve_another_tenant(
    db: Db,
) -> anyhow::Result<()> {
    let server = TestServer::start_on("[async]\nworkers = 2\n", &db).await?;
    let slow = json!({
        "limits": { "deadline_ms": 20, "fuel": 1_000_000_000u64 },
        "retry": { "max_attempts": 1 },
        "config": { "spin": "true" },
    });
    let flood = tenant_with_flows(&server, "flood", &[("log", slow)]).await?;
    let calm = tenant_with_flows(&server, "calm", &[("log", json!({}))]).await?;

    let sends = (0..150).map(|i| {
        let server = &server;
        async move { send(server, "flood", "log", &format!("flood-{i}")).await }
    });
    for result in futures_util::future::join_all(sends).await {
        assert_eq!(result?.0, 200);
    }
    let started = Instant::now();
    for i in 0..10 {
        assert_eq!(
            send(&server, "calm", "log", &format!("calm-{i}")).await?.0,
            200
        );
    }
    eventually("the calm tenant's events", || async {
        let (_, page) = body(calm.get("/v1/decisions?flow=log&outcome=recorded").await?).await?;
        Ok((page["items"].as_array().map_or(0, Vec::len) == 10).then_some(()))
    })
    .await?;
    let calm_took = started.elapsed();
    // Each flood event holds a worker for its 20 ms deadline, and the flood may hold one of the
    // two workers at a time: 150 of them take 3 s. The calm tenant must not wait for that.
    let backlog = pending(&queue_of(&flood, "log").await?);
    assert!(
        backlog >= 75,
        "the flood was nearly done ({backlog} left) before the calm tenant"
    );
    assert!(
        calm_took < Duration::from_secs(2),
        "calm waited {calm_took:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_bound_the_queue_answers_503_and_keeps_every_request_it_answered_200()
-> anyhow::Result<()> {
    let server = TestServer::start("[async]\nworkers = 1\nmax_depth_per_tenant = 5\n").await?;
    let slow = json!({
        "limits": { "deadline_ms": 50, "fuel": 1_000_000_000u64 },
        "retry": { "max_attempts": 1 },
        "config": { "spin": "true" },
    });
    let api = tenant_with_flows(&server, "acme", &[("log", slow)]).await?;
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..40 {
        let response = server
            .get(&format!("/passthru/acme/log?CallSid=full-{i}"))
            .await?;
        match response.status().as_u16() {
            200 => accepted += 1,
            503 => {
                refused += 1;
                assert_eq!(response.headers()["retry-after"], "1");
                let (_, problem) = body(response).await?;
                assert_eq!(problem["type"], "urn:passthru:problem:queue-full");
                assert!(
                    problem["detail"].as_str().unwrap().contains("not kept"),
                    "{problem}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused > 0 && accepted >= 5,
        "{accepted} accepted, {refused} refused"
    );
    // Every accepted request is run (and, spinning, dies); none is lost, none refused is kept.
    // (Waited for together: an attempt's end and its dead letter's commit are two moments, so
    // the view may briefly show neither. A lost request would never show, and time this out.)
    eventually("every accepted request to be a dead letter", || async {
        let queue = queue_of(&api, "log").await?;
        let dead = queue["dead"].as_u64().unwrap();
        Ok((pending(&queue) == 0 && dead == accepted).then_some(()))
    })
    .await?;
    let queue = queue_of(&api, "log").await?;
    assert_eq!(
        queue["dead"].as_u64(),
        Some(accepted),
        "none refused is kept: {queue}"
    );
    let metrics = server.metrics().await?;
    assert!(
        metrics.contains(&format!("passthru_async_refused_full_total {refused}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("passthru_async_accepted_total {accepted}\n")),
        "{metrics}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_is_bound_only_to_a_version_with_the_export_its_mode_calls() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let api = tenant_with_flows(&server, "acme", &[]).await?;
    let uploaded = api.upload("menu", std::fs::read(IVR_MENU)?).await?;
    let (_, version) = body(uploaded).await?;
    assert_eq!(version["world"], "passthru:plugin/lean-decider@0.1.4");
    let (_, probe) = body(api.get("/v1/plugins/probe/versions/1").await?).await?;
    assert_eq!(probe["world"], "passthru:plugin/recorder@0.1.1");
    assert_eq!(probe["exports"], json!(["record"]));

    let cases = [
        (
            json!({ "plugin": "menu", "mode": "async" }),
            "does not export `record`",
        ),
        (
            json!({ "plugin": "probe", "mode": "sync" }),
            "does not export `decide`",
        ),
        (
            json!({ "plugin": "probe", "mode": "async", "retry": { "max_attempts": 0 } }),
            "retry.max_attempts",
        ),
        (
            json!({ "plugin": "probe", "mode": "async", "retry": { "backoff_ms": 10, "max_backoff_ms": 5 } }),
            "retry.max_backoff_ms",
        ),
    ];
    for (flow, says) in cases {
        let (status, problem) =
            body(api.json(Method::PUT, "/v1/flows/f", flow.clone()).await?).await?;
        assert_eq!(status, 422, "{flow}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{flow}: {problem}"
        );
    }
    assert_eq!(api.get("/v1/flows/f").await?.status(), 404);
    server.stop().await
}

async fn events_left_waiting_at_shutdown_run_after_the_restart_with_their_attempts_kept(
    db: Db,
) -> anyhow::Result<()> {
    let dir = TempDir::new("async-restart");
    let server = TestServer::start_in_on("", &dir.0, &db).await?;
    let flow = json!({
        "retry": { "max_attempts": 5, "backoff_ms": 2_000, "max_backoff_ms": 2_000 },
        "config": { "fail_attempts": "1" },
    });
    let api = tenant_with_flows(&server, "acme", &[("log", flow)]).await?;
    let token = api.token.clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            send(&server, "acme", "log", &format!("wait-{i}"))
                .await?
                .1
                .unwrap(),
        );
    }
    // Every event fails its first attempt and waits 1 to 2 s for the next: stop meanwhile.
    eventually("every first attempt to fail", || async {
        Ok((queue_of(&api, "log").await?["retrying"] == 5).then_some(()))
    })
    .await?;
    server.stop().await?;

    // Restarted: the five run again, as attempt 2 (the count survived), and succeed.
    let server = TestServer::start_in_on("", &dir.0, &db).await?;
    let api = Api {
        server: &server,
        token,
    };
    for (i, id) in ids.iter().enumerate() {
        let sid = format!("wait-{i}");
        let records = eventually(&format!("{sid} to succeed"), || async {
            let records = attempts_of(&api, &sid).await?;
            Ok((records.len() == 2).then_some(records))
        })
        .await?;
        assert_eq!(records[0]["outcome"], "plugin_error");
        assert_eq!(records[1]["outcome"], "recorded");
        assert!(log_text(&records[1]).contains(&format!("event={id} attempt=2")));
    }
    assert_eq!(pending(&queue_of(&api, "log").await?), 0);
    server.stop().await
}

/// Dead letters hold callers' numbers: each flow keeps them for its
/// `retry.dead_letter_retention_hours` after their last attempt, then they are deleted (and
/// counted). A flow's own retention applies; another flow's letters keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_deleted_after_their_flows_retention() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let dies = |hours: u64| {
        json!({ "retry": { "max_attempts": 1, "dead_letter_retention_hours": hours },
                "config": { "fail_attempts": "1000" } })
    };
    let api = tenant_with_flows(&server, "acme", &[("brief", dies(1)), ("long", dies(48))]).await?;
    for flow in ["brief", "long"] {
        let (status, _) = send(&server, "acme", flow, &format!("{flow}-1")).await?;
        assert_eq!(status, 200);
        eventually(&format!("{flow}-1 to die"), || async {
            Ok((queue_of(&api, flow).await?["dead"] == 1).then_some(()))
        })
        .await?;
    }
    let queue = server.state.queue.clone();
    let at = |hours_from_now: i64| passthru::store::now_ms() + hours_from_now * 3600 * 1000;
    let expire = |now: i64| {
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || queue.expire_dead_letters(now))
    };

    // Within both retentions: nothing goes.
    assert_eq!(expire(at(0) + 30 * 60 * 1000).await??, 0);
    // Past brief's hour, within long's two days: brief's letter goes, long's stays.
    assert_eq!(expire(at(2)).await??, 1);
    assert_eq!(queue_of(&api, "brief").await?["dead"], 0);
    assert_eq!(queue_of(&api, "long").await?["dead"], 1);
    let (_, list) = body(api.get("/v1/flows/brief/dead-letters").await?).await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    // Past long's too.
    assert_eq!(expire(at(49)).await??, 1);
    assert_eq!(queue_of(&api, "long").await?["dead"], 0);

    let metrics = server.metrics().await?;
    assert!(
        metrics.contains("passthru_async_dead_letters_expired_total 2"),
        "the expiries are counted"
    );

    // A retention out of range is refused.
    let mut flow = json!({ "plugin": "probe", "mode": "async" });
    flow["retry"] = json!({ "dead_letter_retention_hours": 0 });
    let refused = api.json(Method::PUT, "/v1/flows/bad", flow).await?;
    assert_eq!(refused.status(), 422);
    server.stop().await
}

/// `HEAD` of an async flow answers `200` and queues nothing: no event, so no `record` runs and
/// no id is answered; the `GET` after it is queued as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_an_async_flow_answers_200_and_queues_nothing() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let api = tenant_with_flows(&server, "acme", &[("log", json!({}))]).await?;
    let head = server
        .client
        .head(server.url("/passthru/acme/log?CallSid=head-1&digits=%221%22"))
        .send()
        .await?;
    assert_eq!(head.status(), 200);
    assert!(head.headers().get("x-passthru-event").is_none());
    assert!(head.headers().get("x-passthru-outcome").is_none());
    assert_eq!(head.text().await?, "");
    let metrics = server.metrics().await?;
    assert!(
        metrics.contains("passthru_async_accepted_total 0\n"),
        "a HEAD is not accepted into the queue: {metrics}"
    );

    let (status, id) = send(&server, "acme", "log", "get-1").await?;
    assert_eq!((status, id.is_some()), (200, true));
    eventually("the GET's record", || async {
        Ok((!attempts_of(&api, "get-1").await?.is_empty()).then_some(()))
    })
    .await?;
    assert_eq!(attempts_of(&api, "head-1").await?, Vec::<Value>::new());
    let queue = queue_of(&api, "log").await?;
    assert_eq!(
        pending(&queue) + queue["dead"].as_u64().unwrap(),
        0,
        "{queue}"
    );
    let metrics = server.metrics().await?;
    assert!(
        metrics.contains("passthru_async_accepted_total 1\n"),
        "{metrics}"
    );
    server.stop().await
}

/// The dead letters of a flow the tenant does not have are not found, as its queue is not; a
/// deleted flow's leftovers stay listed until dealt with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_flow_the_tenant_does_not_have_are_not_found() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let dies = json!({ "retry": { "max_attempts": 1 }, "config": { "fail_attempts": "1000" } });
    let api = tenant_with_flows(&server, "acme", &[("log", json!({})), ("dies", dies)]).await?;
    let other = Api::operator(&server).tenant("other", None).await?;

    for (who, flow) in [(&api, "nonexist"), (&other, "log")] {
        let response = who.get(&format!("/v1/flows/{flow}/dead-letters")).await?;
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let (status, problem) = body(response).await?;
        assert_eq!(status, 404, "{flow}: {problem}");
        assert_eq!(problem["type"], "urn:passthru:problem:not-found");
        // The same answer as its queue's.
        assert_eq!(
            who.get(&format!("/v1/flows/{flow}/queue")).await?.status(),
            404
        );
    }
    // A flow of the tenant's without dead letters: an empty page.
    let (status, list) = body(api.get("/v1/flows/log/dead-letters").await?).await?;
    assert_eq!((status, list), (200, json!({ "items": [] })));

    // A deleted flow's dead letter is still listed.
    let (status, _) = send(&server, "acme", "dies", "dies-1").await?;
    assert_eq!(status, 200);
    eventually("dies-1 to die", || async {
        Ok((queue_of(&api, "dies").await?["dead"] == 1).then_some(()))
    })
    .await?;
    assert_eq!(
        api.request(Method::DELETE, "/v1/flows/dies")
            .send()
            .await?
            .status(),
        204
    );
    let (status, list) = body(api.get("/v1/flows/dies/dead-letters").await?).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    server.stop().await
}

/// A commit the store refuses loses nothing: the outcome of an attempt that was not written is
/// kept and written once the store takes commits again, without a restart. Here another
/// connection holds `queue.db`'s write lock while the event's second attempt succeeds, so the
/// commit that would delete the event fails (after SQLite's 5 s wait for the lock); once the lock
/// is let go, the event leaves the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_a_failed_commit_did_not_write_is_written_when_the_store_recovers()
-> anyhow::Result<()> {
    let dir = TempDir::new("async-commit-fails");
    let server = TestServer::start_in("", &dir.0).await?;
    let flow = json!({
        "retry": { "max_attempts": 5, "backoff_ms": 1_000, "max_backoff_ms": 1_000 },
        "config": { "fail_attempts": "1" },
    });
    let api = tenant_with_flows(&server, "acme", &[("flaky", flow)]).await?;
    let (status, id) = send(&server, "acme", "flaky", "locked-1").await?;
    assert_eq!(status, 200);
    let id = id.unwrap();
    eventually("the first attempt to fail", || async {
        Ok((queue_of(&api, "flaky").await?["retrying"] == 1).then_some(()))
    })
    .await?;

    // Held from before the second attempt (0.5 to 1 s away) until its outcome's commit failed.
    let lock = rusqlite::Connection::open(dir.0.join("queue.db"))?;
    lock.execute_batch("BEGIN EXCLUSIVE")?;
    eventually("the second attempt's outcome to fail to commit", || async {
        let handled = server.metric("passthru_async_handled_total").await?;
        let failed = server.metric("passthru_async_failed_commits_total").await?;
        Ok((handled.as_deref() == Some("1") && failed.is_some_and(|n| n != "0")).then_some(()))
    })
    .await?;
    let store = server.state.queue.store().clone();
    let held = tokio::task::spawn_blocking(move || store.pending()).await??;
    assert_eq!(
        held.iter().map(|e| e.id).collect::<Vec<_>>(),
        [id],
        "the event stays in the store while its outcome is not written"
    );
    lock.execute_batch("ROLLBACK")?;
    drop(lock);

    eventually("the kept outcome to be written", || async {
        let store = server.state.queue.store().clone();
        let held = tokio::task::spawn_blocking(move || store.pending()).await??;
        Ok(held.is_empty().then_some(()))
    })
    .await?;
    let records = eventually("both attempts' records", || async {
        let records = attempts_of(&api, "locked-1").await?;
        Ok((records.len() >= 2).then_some(records))
    })
    .await?;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["plugin_error", "recorded"],
        "ran once more, not again"
    );
    assert_eq!(
        server
            .metric("passthru_async_outcomes_dropped_total")
            .await?
            .as_deref(),
        Some("0")
    );
    server.stop().await
}

crate::on_both_stores!(
    requests_are_answered_at_once_and_each_reaches_the_plugin_with_its_event_id,
    failures_are_retried_with_backoff_then_kept_as_dead_letters_and_replayed,
    one_tenants_flood_of_slow_events_does_not_starve_another_tenant,
    events_left_waiting_at_shutdown_run_after_the_restart_with_their_attempts_kept,
);
