//! One tenant cannot take the sandbox from another: each tenant's calls count against its own
//! share of the pool, so a tenant flooding a flow whose plugin sleeps to its deadline (holding a
//! slot at no CPU cost) gets `overloaded` past its share while another tenant's calls still run.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{ASYNC_PROBE, Api, HOSTILE, IVR_MENU, TestServer, eventually, flow};
use reqwest::Method;
use serde_json::json;

/// How long the sleeping plugin holds its slot: long enough for the quiet tenant's calls to run
/// while the flood is in flight.
const SLEEP_DEADLINE_MS: u64 = 4_000;

fn config(pool: u32, per_tenant: u32) -> String {
    format!(
        "max_concurrent_calls = {pool}\nmax_calls_per_tenant = {per_tenant}\n{}{}",
        flow(
            "noisy",
            "sleep",
            HOSTILE,
            &format!(
                "fallback = \"failure\"\n[flow.limits]\ndeadline_ms = {SLEEP_DEADLINE_MS}\n\
                 [flow.config]\nmode = \"sleep\""
            ),
        ),
        flow("quiet", "ivr", IVR_MENU, ""),
    )
}

fn outcome(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-passthru-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Sends `n` requests to the noisy flow at once; returns their outcomes once all have answered.
fn flood(server: &TestServer, n: usize) -> tokio::task::JoinHandle<Vec<String>> {
    let client = reqwest::Client::new();
    let url = server.url("/passthru/noisy/sleep?CallSid=flood");
    tokio::spawn(async move {
        let requests = (0..n).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client.get(url).send().await.expect("flood request");
                outcome(&response)
            }
        });
        futures_util::future::join_all(requests).await
    })
}

/// Waits until `n` calls are in flight (the flood has taken its share), or fails after 20 s.
async fn until_in_flight(server: &TestServer, n: usize) {
    let started = Instant::now();
    while server.sandbox.calls_in_flight() < n {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} calls in flight, waited for {n}",
            server.sandbox.calls_in_flight()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn count(outcomes: &[String], which: &str) -> usize {
    outcomes.iter().filter(|o| *o == which).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_sleepers_gets_its_share_and_the_other_tenant_is_served()
-> anyhow::Result<()> {
    let server = TestServer::start(&config(16, 4)).await?;
    let flood = flood(&server, 40);
    until_in_flight(&server, 4).await;

    // The quiet tenant, while the noisy one holds its whole share: every call decided.
    for i in 0..30 {
        let got = server
            .get(&format!(
                "/passthru/quiet/ivr?CallSid=quiet{i}&digits=%221%22"
            ))
            .await?;
        assert_eq!(got.status(), 200, "quiet call {i}");
        assert_eq!(outcome(&got), "decided", "quiet call {i}");
    }
    assert_eq!(
        server.sandbox.calls_in_flight(),
        4,
        "the noisy tenant still holds exactly its share"
    );

    let outcomes = flood.await?;
    assert_eq!(count(&outcomes, "deadline"), 4, "{outcomes:?}");
    assert_eq!(count(&outcomes, "overloaded"), 36, "{outcomes:?}");
    server.stop().await
}

/// The operator raises one tenant's share through its caps; it applies to the next calls at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_own_cap_changes_its_share_at_once() -> anyhow::Result<()> {
    let server = TestServer::start(&config(16, 2)).await?;
    let api = Api::operator(&server);
    let changed = api
        .json(
            Method::PATCH,
            "/v1/tenants/noisy",
            json!({"caps": {"max_concurrent_calls": 6}}),
        )
        .await?;
    assert_eq!(changed.status(), 200);
    let tenant: serde_json::Value = changed.json().await?;
    assert_eq!(tenant["caps"]["max_concurrent_calls"], 6);

    let outcomes = flood(&server, 20).await?;
    assert_eq!(count(&outcomes, "deadline"), 6, "{outcomes:?}");
    assert_eq!(count(&outcomes, "overloaded"), 14, "{outcomes:?}");
    server.stop().await
}

/// The sum of the memory caps of the calls in flight stays within the server's budget: past
/// it, a call answers `overloaded` rather than risk the host's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_memory_budget_answer_overloaded() -> anyhow::Result<()> {
    // Each sleeping call may use 64 MiB; the budget holds three of them.
    let config = format!("max_memory_in_flight_mb = 200\n{}", config(16, 16));
    let server = TestServer::start(&config).await?;
    let outcomes = flood(&server, 10).await?;
    assert_eq!(count(&outcomes, "deadline"), 3, "{outcomes:?}");
    assert_eq!(count(&outcomes, "overloaded"), 7, "{outcomes:?}");
    server.stop().await
}

/// An async attempt the sandbox has no room for (its tenant's share is held by other calls) is
/// put off, not counted: an event allowed a single attempt is handled once room comes back,
/// rather than kept as a dead letter, and leaves one record, not one per refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_attempt_with_no_room_waits_and_is_not_counted() -> anyhow::Result<()> {
    let later = flow(
        "noisy",
        "later",
        ASYNC_PROBE,
        "mode = \"async\"\n[flow.retry]\nmax_attempts = 1\n",
    );
    let server = TestServer::start(&format!("{}{later}", config(16, 2))).await?;
    let flood = flood(&server, 2);
    until_in_flight(&server, 2).await;

    let accepted = server.get("/passthru/noisy/later?CallSid=put-off").await?;
    assert_eq!(accepted.status(), 200);
    let stats = server.state.queue.stats();
    eventually("the attempt put off twice", || async {
        Ok((stats.deferred.load(Ordering::Relaxed) >= 2).then_some(()))
    })
    .await?;
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);

    // The sleepers reach their deadline; the event then runs, once, as its first attempt.
    let outcomes = flood.await?;
    assert_eq!(count(&outcomes, "deadline"), 2, "{outcomes:?}");
    eventually("the event handled once room came back", || async {
        Ok((stats.handled.load(Ordering::Relaxed) >= 1).then_some(()))
    })
    .await?;
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(stats.failed_attempts.load(Ordering::Relaxed), 0);
    server.state.recorder.flush(Duration::from_secs(5));
    let records = server.state.registry.store().query_decisions(
        "noisy",
        &passthru::store::DecisionFilter {
            flow: Some("later".into()),
            limit: 100,
            ..Default::default()
        },
    )?;
    let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["recorded"]);
    server.stop().await
}
