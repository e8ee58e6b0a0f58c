//! A flow's recent figures, per minute, version and outcome: how many calls and their p50 and
//! p99 latency. What the console plots; computed from the decision records, so a canary's
//! version and the live one are told apart.
//!
//! The store hands back raw points ([`crate::store::Store::decision_points`]) and the
//! aggregation is done here, so every store backend gives the same figures.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Path, TenantAuth, check_name};
use super::openapi::{Forbidden, Internal, NotFound, Unauthorized};
use super::operator::with_records;
use super::problem::Problem;
use super::{ApiError, AppState};
use crate::flow::Name;
use crate::store::{DecisionPoint, now_ms};

/// Minutes covered unless `minutes` says otherwise.
const DEFAULT_MINUTES: u32 = 60;
/// The most minutes one request covers: a day.
const MAX_MINUTES: u32 = 1440;
/// The most decision records one request reads. A flow busier than this over the window gets
/// the figures of its newest records, and `truncated` says so.
pub(super) const MAX_POINTS: u32 = 200_000;
const MINUTE_MS: i64 = 60_000;

/// The window of `GET /v1/flows/{flow}/stats`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// How many minutes back, the current one included: 1 to 1440, 60 when absent.
    #[param(minimum = 1, maximum = 1440)]
    minutes: Option<u32>,
}

/// A flow's figures per minute.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FlowStats {
    /// One row per minute, version and outcome that had calls, oldest minute first.
    minutes: Vec<MinuteStats>,
    /// Whether the window held more than the server reads for one request (200,000 records):
    /// then the figures are those of the newest records only.
    truncated: bool,
}

/// The calls of one minute answered by one version with one outcome.
#[derive(Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(super) struct MinuteStats {
    /// The minute's start, in milliseconds since the Unix epoch.
    at_ms: i64,
    /// The plugin version that answered (a canary's calls carry the canary's version).
    version: u32,
    /// `decided`, `recorded`, or a failure kind, as in decision records.
    outcome: String,
    count: u64,
    /// The median time a call took, in microseconds.
    p50_us: u64,
    /// The 99th percentile, in microseconds.
    p99_us: u64,
}

/// Read a flow's figures per minute
///
/// Calls per minute by version and outcome, with their p50 and p99 latency, over the last
/// `minutes` minutes (the current one included), from the flow's decision records: records are
/// written shortly after each call, so the current minute fills in as they are. Minutes without
/// calls have no row.
#[utoipa::path(
    get,
    path = "/v1/flows/{flow}/stats",
    operation_id = "getFlowStats",
    tag = "tenant",
    security(("tenantToken" = [])),
    params(("flow" = Name, Path, description = "The tenant's flow."), StatsQuery),
    responses(
        (status = 200, description = "The flow's figures.", body = FlowStats),
        (status = 400, description = "An invalid flow name, an unknown query key, or `minutes` \
                                      outside 1 to 1440.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, description = "As many of the tenant's reads of decision records are \
                                      waiting on this server as may (8): urn:passthru:problem:busy.",
            headers(("Retry-After" = u32, description = "Seconds.")),
            body = Problem, content_type = "application/problem+json"),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn get_stats(
    TenantAuth(tenant): TenantAuth,
    State(state): State<AppState>,
    Path(flow): Path<String>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    check_name("flow", &flow)?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let minutes = q.minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::BadRequest(format!(
            "minutes must be 1 to {MAX_MINUTES}, not {minutes}"
        )));
    }
    let since_ms = window_start(now_ms(), minutes);
    let points = with_records(&state, tenant, move |s, tenant| {
        // An unknown flow is a 404, not an empty chart.
        s.get_flow(tenant, &flow)?;
        Ok(s.decision_points(tenant, &flow, since_ms, MAX_POINTS)?)
    })
    .await?;
    let truncated = points.len() >= MAX_POINTS as usize;
    Ok(axum::Json(FlowStats {
        minutes: per_minute(points),
        truncated,
    }))
}

/// The start of the first of the `minutes` minutes that end with the current one.
fn window_start(now_ms: i64, minutes: u32) -> i64 {
    now_ms.div_euclid(MINUTE_MS) * MINUTE_MS - (i64::from(minutes) - 1) * MINUTE_MS
}

/// Groups points by minute, version and outcome, each group with its count and percentiles.
fn per_minute(points: Vec<DecisionPoint>) -> Vec<MinuteStats> {
    let mut groups: BTreeMap<(i64, u32, String), Vec<u64>> = BTreeMap::new();
    for (at_ms, version, outcome, elapsed_us) in points {
        let minute = at_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        groups
            .entry((minute, version, outcome))
            .or_default()
            .push(elapsed_us);
    }
    groups
        .into_iter()
        .map(|((at_ms, version, outcome), mut elapsed)| {
            elapsed.sort_unstable();
            MinuteStats {
                at_ms,
                version,
                outcome,
                count: elapsed.len() as u64,
                p50_us: percentile(&elapsed, 50),
                p99_us: percentile(&elapsed, 99),
            }
        })
        .collect()
}

/// The nearest-rank percentile of sorted, non-empty values: the smallest value with at least
/// `p` percent of the values at or below it.
fn percentile(sorted: &[u64], p: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    sorted[(rank - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_a_minute_boundary_and_counts_the_current_minute() {
        assert_eq!(window_start(10 * MINUTE_MS + 5, 1), 10 * MINUTE_MS);
        assert_eq!(window_start(10 * MINUTE_MS + 5, 3), 8 * MINUTE_MS);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[1, 2], 50), 1);
        assert_eq!(percentile(&[1, 2], 99), 2);
    }

    #[test]
    fn points_are_grouped_by_minute_version_and_outcome() {
        let point = |at_ms: i64, version: u32, outcome: &str, us: u64| {
            (at_ms, version, outcome.to_owned(), us)
        };
        let rows = per_minute(vec![
            point(MINUTE_MS + 1, 1, "decided", 30),
            point(MINUTE_MS + 2, 1, "decided", 10),
            point(MINUTE_MS + 3, 2, "decided", 500),
            point(MINUTE_MS + 4, 1, "trap", 40),
            point(2 * MINUTE_MS, 1, "decided", 20),
        ]);
        let row = |at_ms, version, outcome: &str, count, p50_us, p99_us| MinuteStats {
            at_ms,
            version,
            outcome: outcome.to_owned(),
            count,
            p50_us,
            p99_us,
        };
        assert_eq!(
            rows,
            [
                row(MINUTE_MS, 1, "decided", 2, 10, 30),
                row(MINUTE_MS, 1, "trap", 1, 40, 40),
                row(MINUTE_MS, 2, "decided", 1, 500, 500),
                row(2 * MINUTE_MS, 1, "decided", 1, 20, 20),
            ]
        );
    }
}
