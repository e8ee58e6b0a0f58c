//! The server's metrics, kept with `prometheus-client` and served at `/metrics`.
//!
//! Per-flow series are resolved once, when the registry makes a flow live
//! ([`FlowFamilies::resolve`]): the live flow carries its own counters and histograms
//! ([`FlowMetrics`]), so the request path only increments them (no map look-up, no label
//! string). Label values therefore only ever come from flows that exist: a request for an
//! unknown tenant or flow is answered 404 before it could touch a metric.
//!
//! A flow that is deleted (or whose tenant is disabled) keeps its series until the process
//! restarts: counters that vanish mid-run read as resets to Prometheus, and a flow put back
//! under the same name continues the same series.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as MetricRegistry;

use crate::queue::{DELAY_BUCKETS_US, Queue};
use crate::records::Recorder;
use crate::registry::Registry;
use crate::sandbox::FailureKind;

/// Upper bounds of the decide-latency buckets, in seconds: 10 µs to 1 s.
pub const LATENCY_BUCKETS_S: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds of the fuel buckets: a Rust plugin spends thousands, an interpreted one
/// hundreds of thousands to millions; the default budget is 10 million.
pub const FUEL_BUCKETS: [f64; 12] = [1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 1e9];

/// Every failure kind, so that a live flow holds a counter for each.
const FAILURE_KINDS: [FailureKind; 7] = [
    FailureKind::OutOfFuel,
    FailureKind::Deadline,
    FailureKind::MemoryLimit,
    FailureKind::Trap,
    FailureKind::InvalidComponent,
    FailureKind::PluginError,
    FailureKind::Overloaded,
];

/// A flow's series: its tenant and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FlowLabels {
    pub tenant: String,
    pub flow: String,
}

/// A decision's series: the flow and the outcome (`decided`, a failure kind, `queued`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecisionLabels {
    pub tenant: String,
    pub flow: String,
    pub outcome: &'static str,
}

type HistogramFamily = Family<FlowLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_S)
}

fn fuel_histogram() -> Histogram {
    Histogram::new(FUEL_BUCKETS)
}

/// The per-flow metric families. Cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct FlowFamilies {
    decisions: Family<DecisionLabels, Counter>,
    latency: HistogramFamily,
    fuel: HistogramFamily,
}

impl Default for FlowFamilies {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            fuel: Family::new_with_constructor(fuel_histogram),
        }
    }
}

impl FlowFamilies {
    /// The handles of flow `tenant/flow`, creating its series. A sync flow gets `decided`, one
    /// counter per failure kind and the two histograms; an async flow gets `queued`. Handles a
    /// flow of the other mode would use stay detached (counted nowhere).
    pub fn resolve(&self, tenant: &str, flow: &str, async_mode: bool) -> FlowMetrics {
        let decision = |outcome: &'static str| {
            self.decisions.get_or_create_owned(&DecisionLabels {
                tenant: tenant.to_owned(),
                flow: flow.to_owned(),
                outcome,
            })
        };
        let labels = FlowLabels {
            tenant: tenant.to_owned(),
            flow: flow.to_owned(),
        };
        if async_mode {
            return FlowMetrics {
                queued: decision("queued"),
                ..FlowMetrics::detached(self.clone(), labels)
            };
        }
        FlowMetrics {
            decided: decision("decided"),
            queued: Counter::default(),
            failures: FAILURE_KINDS.map(|kind| (kind, decision(kind.as_str()))),
            latency: self.latency.get_or_create_owned(&labels),
            fuel: self.fuel.get_or_create_owned(&labels),
            families: self.clone(),
            labels,
        }
    }

    /// (`register` ends each help text with a period of its own.)
    fn register(&self, registry: &mut MetricRegistry) {
        registry.register(
            "passthru_decisions",
            "Requests answered per flow, by outcome: decided, a failure kind (the fallback \
             branch was answered), or queued (an async request committed)",
            self.decisions.clone(),
        );
        registry.register(
            "passthru_decide_duration_seconds",
            "Time of a sync flow's plugin call (decide), per flow",
            self.latency.clone(),
        );
        registry.register(
            "passthru_decide_fuel",
            "Fuel a sync flow's plugin call (decide) used, per flow",
            self.fuel.clone(),
        );
    }
}

/// One live flow's counters and histograms, resolved when it was made live.
#[derive(Debug, Clone)]
pub struct FlowMetrics {
    decided: Counter,
    queued: Counter,
    failures: [(FailureKind, Counter); FAILURE_KINDS.len()],
    latency: Histogram,
    fuel: Histogram,
    /// For a failure kind not in [`FAILURE_KINDS`] (one added later): looked up when it happens.
    families: FlowFamilies,
    labels: FlowLabels,
}

impl FlowMetrics {
    fn detached(families: FlowFamilies, labels: FlowLabels) -> Self {
        Self {
            decided: Counter::default(),
            queued: Counter::default(),
            failures: FAILURE_KINDS.map(|kind| (kind, Counter::default())),
            latency: latency_histogram(),
            fuel: fuel_histogram(),
            families,
            labels,
        }
    }

    /// A sync call answered: `failure` is `None` when the plugin decided.
    pub fn answered(&self, failure: Option<FailureKind>, elapsed: Duration, fuel: u64) {
        match failure {
            None => {
                self.decided.inc();
            }
            Some(kind) => match self.failures.iter().find(|(k, _)| *k == kind) {
                Some((_, counter)) => {
                    counter.inc();
                }
                None => {
                    self.families
                        .decisions
                        .get_or_create(&DecisionLabels {
                            tenant: self.labels.tenant.clone(),
                            flow: self.labels.flow.clone(),
                            outcome: kind.as_str(),
                        })
                        .inc();
                }
            },
        }
        self.latency.observe(elapsed.as_secs_f64());
        self.fuel.observe(fuel as f64);
    }

    /// An async request committed to the queue.
    pub fn queued(&self) {
        self.queued.inc();
    }
}

/// Admin API requests' series: the method, the route template (never the raw path) and the
/// status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    registry: MetricRegistry,
    /// Admin API requests, by route and status.
    pub http: Family<HttpLabels, Counter>,
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
        metrics.register_collector(Box::new(ServerStats {
            registry,
            recorder,
            queue,
        }));
        Self {
            registry: metrics,
            http,
        }
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The method as a label: the standard ones, else `other` (extension methods are unbounded).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
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
                "passthru_async_replayed",
                "Dead letters replayed.",
                &queue.replayed,
            ),
            (
                "passthru_async_commits",
                "Transactions (each one fsync) the queue committed.",
                &queue.commits,
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
