//! `GET /metrics`: counters in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

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
        "passthru_live_flows",
        "gauge",
        "Flows the server answers.",
        state.registry.live_flows() as u64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
