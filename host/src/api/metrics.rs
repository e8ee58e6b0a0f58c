//! `GET /metrics`: counters in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::queue::DELAY_BUCKETS_US;

/// Counters, gauges and histograms, Prometheus text format
///
/// Decision records written, dropped (the writer was behind; the call was not slowed) and failed
/// (the store refused them); plugin compiles (Cranelift compiles since start; loads from the
/// artifact cache are not counted); sandbox calls in flight and deferred instance resets; async
/// requests accepted and refused (queue full, queue unavailable), events handled, failed attempts,
/// dead letters, replays and queue commits; the async queue's depth and events in flight; live
/// flows; and the delay from accepting an async request to its first attempt. Each metric's
/// `# HELP` line says what it counts.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "ops",
    responses((
        status = 200,
        description = "The metrics.",
        body = String,
        content_type = "text/plain; version=0.0.4"
    ))
)]
pub(super) async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let records = state.recorder.stats();
    let sandbox = state.registry.sandbox();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "passthru_records_written_total",
        "counter",
        "Decision records written to the store.",
        records.written.load(Ordering::Relaxed),
    );
    metric(
        "passthru_records_dropped_total",
        "counter",
        "Decision records dropped because the writer was behind.",
        records.dropped.load(Ordering::Relaxed),
    );
    metric(
        "passthru_records_failed_total",
        "counter",
        "Decision records the store refused.",
        records.failed.load(Ordering::Relaxed),
    );
    metric(
        "passthru_plugin_compiles_total",
        "counter",
        "Components compiled with Cranelift since start (cache loads excluded).",
        sandbox.compile_count(),
    );
    metric(
        "passthru_calls_in_flight",
        "gauge",
        "Sandbox calls running now.",
        sandbox.calls_in_flight() as u64,
    );
    metric(
        "passthru_instance_resets_deferred_total",
        "counter",
        "Plugin instances reset after their call's answer rather than before it (slow resets).",
        sandbox.resets_deferred(),
    );
    let queue = state.queue.stats();
    let counters = [
        (
            "passthru_async_accepted_total",
            "Async requests committed to the queue (answered 200, unless the client left first).",
            &queue.accepted,
        ),
        (
            "passthru_async_refused_full_total",
            "Async requests refused (503) because the queue was at its bound.",
            &queue.refused_full,
        ),
        (
            "passthru_async_refused_unavailable_total",
            "Async requests refused (503) because the queue could not commit or was shutting down.",
            &queue.refused_unavailable,
        ),
        (
            "passthru_async_handled_total",
            "Async events a plugin handled.",
            &queue.handled,
        ),
        (
            "passthru_async_failed_attempts_total",
            "Failed attempts of async events.",
            &queue.failed_attempts,
        ),
        (
            "passthru_async_dead_letters_total",
            "Async events kept as dead letters after their last attempt.",
            &queue.dead_lettered,
        ),
        (
            "passthru_async_replayed_total",
            "Dead letters replayed.",
            &queue.replayed,
        ),
        (
            "passthru_async_commits_total",
            "Transactions (each one fsync) the queue committed.",
            &queue.commits,
        ),
    ];
    for (name, help, value) in counters {
        metric(name, "counter", help, value.load(Ordering::Relaxed));
    }
    let (depth, in_flight) = state.queue.depth();
    metric(
        "passthru_async_queue_depth",
        "gauge",
        "Async events held (waiting, retrying or running).",
        depth as u64,
    );
    metric(
        "passthru_async_in_flight",
        "gauge",
        "Async events running now.",
        in_flight as u64,
    );
    metric(
        "passthru_live_flows",
        "gauge",
        "Flows the server answers.",
        state.registry.live_flows() as u64,
    );
    let delay = &queue.start_delay;
    let name = "passthru_async_start_delay_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From accepting an async request to starting its first attempt.\n\
         # TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (i, bucket) in delay.buckets.iter().enumerate() {
        cumulative += bucket.load(Ordering::Relaxed);
        let le = DELAY_BUCKETS_US
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let sum = delay.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {}", delay.count.load(Ordering::Relaxed));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
