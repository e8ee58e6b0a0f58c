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
//!
//! This module holds what the request path and the registry touch; what `/metrics` gathers
//! from the rest of the server at each scrape is `crate::api::metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as MetricRegistry;

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
const FAILURE_KINDS: [FailureKind; 8] = [
    FailureKind::OutOfFuel,
    FailureKind::Deadline,
    FailureKind::MemoryLimit,
    FailureKind::Trap,
    FailureKind::InvalidComponent,
    FailureKind::PluginError,
    FailureKind::Overloaded,
    FailureKind::Host,
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

/// A tenant's series, for counts that must not grow a series per flow name a prober tries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
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
    auth_refused: Family<TenantLabels, Counter>,
    records_dropped: Family<FlowLabels, Counter>,
    dry_runs: Family<FlowLabels, Counter>,
}

impl Default for FlowFamilies {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            records_dropped: Family::default(),
            dry_runs: Family::default(),
            auth_refused: Family::default(),
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
        let auth_refused = self.auth_refused.get_or_create_owned(&TenantLabels {
            tenant: tenant.to_owned(),
        });
        let records_dropped = self.records_dropped.get_or_create_owned(&labels);
        if async_mode {
            return FlowMetrics {
                queued: decision("queued"),
                auth_refused,
                records_dropped,
                ..FlowMetrics::detached(self.clone(), labels)
            };
        }
        FlowMetrics {
            auth_refused,
            records_dropped,
            dry_runs: self.dry_runs.get_or_create_owned(&labels),
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
    pub fn register(&self, registry: &mut MetricRegistry) {
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
        registry.register(
            "passthru_auth_refused",
            "Passthru requests to an existing flow refused for a missing or wrong URL secret \
             (answered like an unknown flow), per tenant",
            self.auth_refused.clone(),
        );
        registry.register(
            "passthru_dry_runs",
            "HEAD requests to a sync flow, per flow: each runs the plugin as a dry run, and is \
             not counted in passthru_decisions or the flow's time and fuel",
            self.dry_runs.clone(),
        );
        registry.register(
            "passthru_flow_records_dropped",
            "Decision records not written because the writer was behind, per flow (a failure's \
             record is dropped only once a success's would be)",
            self.records_dropped.clone(),
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
    /// This flow's tenant's count of refused URL secrets.
    auth_refused: Counter,
    /// This flow's decision records dropped under the writer's pressure.
    pub records_dropped: Counter,
    /// `HEAD`s run as dry runs (sync flows).
    dry_runs: Counter,
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
            auth_refused: Counter::default(),
            records_dropped: Counter::default(),
            dry_runs: Counter::default(),
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

    /// A `HEAD` answered by a dry run of the plugin: counted apart from the calls, so that what
    /// a flow's `HEAD`s cost is seen without being taken for decisions.
    pub fn dry_run(&self) {
        self.dry_runs.inc();
    }

    /// A request refused for a missing or wrong URL secret.
    pub fn auth_refused(&self) {
        self.auth_refused.inc();
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
