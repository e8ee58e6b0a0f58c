//! `GET /metrics` (the Prometheus text format), and the middleware that counts admin API
//! requests by route template and status.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry as MetricRegistry;

use super::AppState;
use crate::metrics::{HttpLabels, method_label};
use crate::queue::{DELAY_BUCKETS_US, Queue};
use crate::records::Recorder;
use crate::registry::Registry;

/// Counters, gauges and histograms, Prometheus text format
///
/// Decision records written, dropped (the writer was behind; the call was not slowed) and failed
/// (the store refused them); plugin compiles (Cranelift compiles since start; loads from the
/// artifact cache are not counted); sandbox calls in flight and deferred instance resets; async
/// requests accepted and refused (queue full, queue unavailable), events handled, failed attempts,
/// dead letters, replays and queue commits; the async queue's depth and events in flight; live
/// flows; and the delay from accepting an async request to its first attempt. Each metric's
/// `# HELP` line says what it counts.
///
/// The operator's token is required: the per-flow series name every tenant and flow and their
/// traffic, which a prober must not learn (a flow with URL auth answers a wrong secret like a
/// flow that does not exist).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "ops",
    security(("operatorToken" = [])),
    responses(
        (
            status = 200,
            description = "The metrics.",
            body = String,
            content_type = "text/plain; version=0.0.4"
        ),
        (status = 401, response = super::openapi::Unauthorized),
    )
)]
pub(super) async fn get_metrics(
    _: super::extract::Operator,
    State(state): State<AppState>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

/// Counts an admin API request under its route template (`/v1/flows/{flow}`, never the path
/// as sent), its method and its answer's status.
pub(super) async fn count_admin_request(
    State(state): State<AppState>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let response = next.run(request).await;
    // Routes only: a request no route matched never reaches this layer.
    if let Some(route) = route {
        state
            .metrics
            .http
            .get_or_create(&HttpLabels {
                method,
                route: route.as_str().to_owned(),
                status: response.status().as_u16(),
            })
            .inc();
    }
    response
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    registry: MetricRegistry,
    /// Admin API requests, by route and status.
    pub http: Family<HttpLabels, Counter>,
    /// Connections closed on arrival because `max_connections` were open.
    connections_refused: Counter,
}

impl Metrics {
    /// The server's metrics: the registry's per-flow families, the admin API's requests, and
    /// the counters the recorder, the sandbox and the queue keep (read at each scrape).
    pub fn new(registry: Arc<Registry>, recorder: Recorder, queue: Queue) -> Self {
        let mut metrics = MetricRegistry::default();
        registry.flow_metrics().register(&mut metrics);
        let http = Family::<HttpLabels, Counter>::default();
        metrics.register(
            "passthru_http_requests",
            "Admin API requests answered, by method, route template and status",
            http.clone(),
        );
        let connections_refused = Counter::default();
        metrics.register(
            "passthru_http_connections_refused",
            "Connections closed as soon as they were accepted, because max_connections were open",
            connections_refused.clone(),
        );
        metrics.register(
            "passthru_allocator",
            "The global allocator: mimalloc, or system when PASSTHRU_ALLOCATOR=system",
            Info::new(vec![(
                "allocator".to_owned(),
                crate::allocator::ALLOCATOR.name().to_owned(),
            )]),
        );
        metrics.register_collector(Box::new(ServerStats {
            registry,
            recorder,
            queue,
        }));
        Self {
            registry: metrics,
            http,
            connections_refused,
        }
    }

    /// The counter of connections refused at the cap (a handle: counts into the same metric).
    pub fn connections_refused(&self) -> Counter {
        self.connections_refused.clone()
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The counters other parts of the server keep in atomics, read at each scrape.
struct ServerStats {
    registry: Arc<Registry>,
    recorder: Recorder,
    queue: Queue,
}

impl std::fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStats").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ServerStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        let records = self.recorder.stats();
        let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
        counter(
            e,
            "passthru_records_written",
            "Decision records written to the store.",
            load(&records.written),
        )?;
        counter(
            e,
            "passthru_records_dropped",
            "Decision records dropped because the writer was behind.",
            load(&records.dropped),
        )?;
        counter(
            e,
            "passthru_records_failed",
            "Decision records the store refused.",
            load(&records.failed),
        )?;
        let kv = self.registry.kv().writer().stats();
        counter(
            e,
            "passthru_kv_writes_committed",
            "Key-value writes committed to the store.",
            load(&kv.committed),
        )?;
        counter(
            e,
            "passthru_kv_writes_failed",
            "Key-value writes the store refused (kept in memory only until a restart).",
            load(&kv.failed),
        )?;
        gauge(
            e,
            "passthru_kv_writes_pending",
            "Key-value writes waiting for the disk.",
            kv.pending() as u64,
        )?;
        let sandbox = self.registry.sandbox();
        counter(
            e,
            "passthru_plugin_compiles",
            "Components compiled with Cranelift since start (cache loads excluded).",
            sandbox.compile_count(),
        )?;
        gauge(
            e,
            "passthru_calls_in_flight",
            "Sandbox calls running now.",
            sandbox.calls_in_flight() as u64,
        )?;
        counter(
            e,
            "passthru_instance_resets_deferred",
            "Plugin instances reset after their call's answer rather than before it (slow resets).",
            sandbox.resets_deferred(),
        )?;
        let queue = self.queue.stats();
        let counters = [
            (
                "passthru_async_accepted",
                "Async requests committed to the queue (answered 200, unless the client left first).",
                &queue.accepted,
            ),
            (
                "passthru_async_refused_full",
                "Async requests refused (503) because the queue was at its bound.",
                &queue.refused_full,
            ),
            (
                "passthru_async_refused_unavailable",
                "Async requests refused (503) because the queue could not commit or was shutting down.",
                &queue.refused_unavailable,
            ),
            (
                "passthru_async_handled",
                "Async events a plugin handled.",
                &queue.handled,
            ),
            (
                "passthru_async_failed_attempts",
                "Failed attempts of async events.",
                &queue.failed_attempts,
            ),
            (
                "passthru_async_dead_letters",
                "Async events kept as dead letters after their last attempt.",
                &queue.dead_lettered,
            ),
            (
                "passthru_async_dead_letters_expired",
                "Dead letters deleted past their flow's dead_letter_retention_hours.",
                &queue.dead_expired,
            ),
            (
                "passthru_async_dead_letters_trimmed",
                "Oldest dead letters deleted because their flow held [async] \
                 max_dead_letters_per_flow.",
                &queue.dead_trimmed,
            ),
            (
                "passthru_async_replayed",
                "Dead letters replayed.",
                &queue.replayed,
            ),
            (
                "passthru_async_deferred",
                "Async attempts put off because the sandbox had no room for them (overloaded): \
                 not counted among the event's attempts.",
                &queue.deferred,
            ),
            (
                "passthru_async_commits",
                "Transactions (each one fsync) the queue committed.",
                &queue.commits,
            ),
            (
                "passthru_async_failed_commits",
                "Transactions of the queue the store refused: the requests in them were refused \
                 (503), the outcomes in them kept and written again.",
                &queue.failed_commits,
            ),
            (
                "passthru_async_outcomes_dropped",
                "Outcomes of async events let go after failed commits (past 10,000 or 64 MiB \
                 kept, or refused on their own 5 times): their events run again at the next start.",
                &queue.unwritten_dropped,
            ),
        ];
        for (name, help, value) in counters {
            counter(e, name, help, load(value))?;
        }
        let (depth, in_flight) = self.queue.depth();
        gauge(
            e,
            "passthru_async_queue_depth",
            "Async events held (waiting, retrying or running).",
            depth as u64,
        )?;
        gauge(
            e,
            "passthru_async_in_flight",
            "Async events running now.",
            in_flight as u64,
        )?;
        gauge(
            e,
            "passthru_live_flows",
            "Flows the server answers.",
            self.registry.live_flows() as u64,
        )?;
        let delay = &queue.start_delay;
        let mut cumulative = 0;
        let buckets: Vec<(f64, u64)> = delay
            .buckets
            .iter()
            .enumerate()
            .map(|(i, bucket)| {
                cumulative += load(bucket);
                let upper = DELAY_BUCKETS_US
                    .get(i)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (upper, cumulative)
            })
            .collect();
        let mut metric = e.encode_descriptor(
            "passthru_async_start_delay_seconds",
            "From accepting an async request to starting its first attempt.",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            load(&delay.sum_us) as f64 / 1e6,
            load(&delay.count),
            &buckets,
            None,
        )
    }
}
