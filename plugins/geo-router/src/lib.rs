//! `geo-router`: sends each call to a Switchcase case chosen by the caller's number prefix.
//!
//! The flow's config maps prefixes to cases, `routes = "+9180:south, +9111:north, 033:east"`: the
//! longest prefix of the caller's number wins, and a caller no prefix matches goes to the case
//! named by `default_case` (or, without it, takes the failure branch with no case). The answer is
//! `200` with the body `{"select":"CASE"}`, which the Switchcase applet after the Passthru applet
//! reads.

use passthru_sdk::{Branch, Call, Decision, Selection, config, log};

/// The config key that maps prefixes to cases.
const ROUTES_KEY: &str = "routes";
/// The config key of the case for callers no prefix matches.
const DEFAULT_KEY: &str = "default_case";

fn select(call: &Call) -> Selection {
    let Some(caller) = call.caller().map(str::trim) else {
        return fallback("no caller number (neither CallFrom nor From)");
    };
    let routes = config(ROUTES_KEY).unwrap_or_default();
    match route(&routes, caller) {
        Some((prefix, case)) => {
            let reason = format!("caller {caller} matches {prefix}");
            log::info(&reason);
            Selection::case(case, reason)
        }
        None => fallback(&format!("caller {caller} matches no prefix")),
    }
}

/// The case for callers no prefix matches, or the failure branch without a case.
fn fallback(why: &str) -> Selection {
    match config(DEFAULT_KEY) {
        Some(case) => Selection::case(case, format!("{why}: {DEFAULT_KEY}")),
        None => Decision::new(Branch::Failure, why).into(),
    }
}

/// The longest prefix in `routes` (`prefix:case` entries, comma-separated) that starts `caller`,
/// and its case.
fn route<'a>(routes: &'a str, caller: &str) -> Option<(&'a str, &'a str)> {
    passthru_sdk::list(routes)
        .filter_map(|entry| entry.split_once(':'))
        .map(|(prefix, case)| (prefix.trim(), case.trim()))
        .filter(|(prefix, case)| {
            !prefix.is_empty() && !case.is_empty() && caller.starts_with(prefix)
        })
        .max_by_key(|(prefix, _)| prefix.len())
}

passthru_sdk::plugin!(select = select);

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn the_longest_matching_prefix_wins() {
        let routes = "+91:india, +9180:bangalore, 033:kolkata, bad-entry, :empty";
        assert_eq!(route(routes, "+918012345678"), Some(("+9180", "bangalore")));
        assert_eq!(route(routes, "+911112345678"), Some(("+91", "india")));
        assert_eq!(route(routes, "03312345678"), Some(("033", "kolkata")));
        assert_eq!(route(routes, "04412345678"), None);
        assert_eq!(route("", "04412345678"), None);
    }
}
