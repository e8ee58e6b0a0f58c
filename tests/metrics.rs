//! `/metrics` over real HTTP: per-flow decision counts and latency histograms for live flows,
//! admin API requests by route template, and no series from names that are not flows.

mod common;

use std::collections::BTreeSet;

use common::{Api, IVR_MENU, ServeProcess, TempDir, TestServer, VIP_CALLER, flow};

fn two_flows() -> String {
    [
        flow("demo", "ivr", IVR_MENU, ""),
        flow(
            "demo",
            "vip",
            VIP_CALLER,
            "[flow.config]\nvip_numbers = \"09800000001\"",
        ),
    ]
    .concat()
}

/// The series name every tenant and flow: only the operator may read them, not the internet (a
/// flow with URL auth must look like one that does not exist) and not a tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operator_reads_the_metrics() -> anyhow::Result<()> {
    let server = TestServer::start(&flow("acme", "ivr", IVR_MENU, "")).await?;
    let anonymous = server.get("/metrics").await?;
    assert_eq!(anonymous.status(), 401);
    let text = anonymous.text().await?;
    assert!(!text.contains("acme"), "{text}");
    let tenant = Api::operator(&server).tenant("globex", None).await?;
    assert_eq!(tenant.get("/metrics").await?.status(), 401);
    assert!(server.metrics().await?.contains("tenant=\"acme\""));
    server.stop().await
}

async fn scrape(server: &TestServer) -> anyhow::Result<String> {
    let response = server.get_metrics().await?;
    assert_eq!(response.status(), 200);
    Ok(response.text().await?)
}

/// Each sample's series (name and labels), without its value.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_owned())
        .collect()
}

/// The value of exactly this series.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_flow_series_count_calls_and_unknown_names_add_none() -> anyhow::Result<()> {
    let server = TestServer::start(&two_flows()).await?;
    for digits in ["1", "2", "9"] {
        let r = server
            .get(&format!(
                "/passthru/demo/ivr?CallSid=m{digits}&digits=%22{digits}%22"
            ))
            .await?;
        assert!(r.status().is_success() || r.status().is_redirection());
    }
    for from in ["09800000001", "09800000002"] {
        let r = server
            .get(&format!(
                "/passthru/demo/vip?CallSid=v{from}&CallFrom={from}"
            ))
            .await?;
        assert!(r.status().is_success() || r.status().is_redirection());
    }
    let operator = Api::operator(&server);
    assert_eq!(operator.get("/v1/tenants").await?.status(), 200);
    assert_eq!(operator.get("/v1/tenants/demo").await?.status(), 200);

    let text = scrape(&server).await?;
    for (flow, calls) in [("ivr", 3.0), ("vip", 2.0)] {
        let labels = format!("tenant=\"demo\",flow=\"{flow}\"");
        assert_eq!(
            value(
                &text,
                &format!("passthru_decisions_total{{{labels},outcome=\"decided\"}}")
            ),
            Some(calls),
            "decisions of {flow}:\n{text}"
        );
        // Every failure kind has its series from the start, at zero.
        assert_eq!(
            value(
                &text,
                &format!("passthru_decisions_total{{{labels},outcome=\"trap\"}}")
            ),
            Some(0.0),
            "{text}"
        );
        let bucket = |le: &str| {
            value(
                &text,
                &format!("passthru_decide_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("+Inf"), Some(calls), "latency of {flow}:\n{text}");
        assert!(bucket("1").is_some(), "the 1 s bucket of {flow}:\n{text}");
        assert_eq!(
            value(
                &text,
                &format!("passthru_decide_duration_seconds_count{{{labels}}}")
            ),
            Some(calls)
        );
        assert!(
            value(
                &text,
                &format!("passthru_decide_duration_seconds_sum{{{labels}}}")
            )
            .is_some_and(|s| s > 0.0)
        );
        assert_eq!(
            value(&text, &format!("passthru_decide_fuel_count{{{labels}}}")),
            Some(calls),
            "fuel of {flow}:\n{text}"
        );
    }
    // Admin requests by route template and status.
    assert_eq!(
        value(
            &text,
            "passthru_http_requests_total{method=\"GET\",route=\"/v1/tenants/{tenant}\",status=\"200\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // What `/metrics` showed before, under the same names.
    for name in [
        "passthru_records_written_total",
        "passthru_kv_writes_committed_total",
        "passthru_kv_writes_pending",
        "passthru_plugin_compiles_total",
        "passthru_calls_in_flight",
        "passthru_async_accepted_total",
        "passthru_async_queue_depth",
        "passthru_live_flows",
        "passthru_async_start_delay_seconds_count",
    ] {
        assert!(value(&text, name).is_some(), "{name} missing:\n{text}");
    }
    assert_eq!(value(&text, "passthru_live_flows"), Some(2.0));
    // The allocator this process runs on (the library sets it, so the test's server too: mimalloc
    // unless PASSTHRU_ALLOCATOR=system); the compile worker runs on malloc.
    let allocator = passthru::allocator::ALLOCATOR.name();
    assert_eq!(
        value(
            &text,
            &format!("passthru_allocator_info{{allocator=\"{allocator}\"}}")
        ),
        Some(1.0),
        "{text}"
    );

    // Unknown tenants and flows: answered 404, and not a single new series.
    let before = series(&text);
    for path in [
        "/passthru/nobody/ivr?CallSid=x",
        "/passthru/demo/nothing?CallSid=x",
        "/passthru/demo/ivr%0A?CallSid=x",
    ] {
        assert_eq!(server.get(path).await?.status(), 404, "{path}");
    }
    let after_passthru = series(&scrape(&server).await?);
    assert_eq!(
        after_passthru
            .symmetric_difference(&before)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "unknown flows changed the series"
    );
    // An unknown tenant on the admin API counts under its route's template, not its name.
    assert_eq!(operator.get("/v1/tenants/nobody").await?.status(), 404);
    let text = scrape(&server).await?;
    assert!(
        !text.contains("nobody") && !text.contains("nothing"),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "passthru_http_requests_total{method=\"GET\",route=\"/v1/tenants/{tenant}\",status=\"404\"}"
        ),
        Some(1.0),
        "{text}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id() -> anyhow::Result<()> {
    let server = TestServer::start(&two_flows()).await?;
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let a = id(&server.get("/passthru/demo/ivr?digits=%221%22").await?);
    let b = id(&server.get("/healthz").await?);
    let c = id(&server.get("/no/such/route").await?);
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a != b && b != c && a != c, "{a} {b} {c}");
    let mine = server
        .client
        .get(server.url("/passthru/demo/ivr?digits=%221%22"))
        .header("x-request-id", "exotel-42")
        .send()
        .await?;
    assert_eq!(id(&mine).as_deref(), Some("exotel-42"));
    server.stop().await
}

/// `PASSTHRU_ALLOCATOR=system` runs the program on the C library's `malloc` (the compile worker
/// always does), and `/metrics` says so; without it, on mimalloc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocator_is_chosen_by_the_environment_and_shown() -> anyhow::Result<()> {
    let dir = TempDir::new("allocator");
    let config = dir.0.join("passthru.toml");
    std::fs::write(&config, flow("demo", "ivr", "builtin:ivr-menu", ""))?;
    for (env, allocator) in [(Some("system"), "system"), (None, "mimalloc")] {
        let vars: Vec<(&str, &str)> = env.map(|v| ("PASSTHRU_ALLOCATOR", v)).into_iter().collect();
        let process = ServeProcess::start_with_env(&config, &dir.0.join("data"), "info", &vars)?;
        let text = reqwest::Client::new()
            .get(format!("http://{}/metrics", process.addr))
            .bearer_auth(common::OPERATOR)
            .send()
            .await?
            .text()
            .await?;
        let decided = reqwest::get(format!(
            "http://{}/passthru/demo/ivr?CallSid=a&digits=%221%22",
            process.addr
        ))
        .await?
        .status();
        process.kill()?;
        assert_eq!(
            value(
                &text,
                &format!("passthru_allocator_info{{allocator=\"{allocator}\"}}")
            ),
            Some(1.0),
            "{env:?}:\n{text}"
        );
        assert_eq!(decided, 200, "{env:?}");
    }
    Ok(())
}
