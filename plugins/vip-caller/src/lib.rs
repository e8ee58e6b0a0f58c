//! `vip-caller`: success when the caller is on the flow's VIP list.
//!
//! The list is the flow's config value `vip_numbers`, numbers separated by commas
//! (`vip_numbers = "+919800000001, 09800000002"`). Spaces around an entry are ignored, and so are
//! empty entries. A number matches only as written: list each number in the form Exotel sends it.
//!
//! The caller is Exotel's `CallFrom`, or the older `From` when `CallFrom` is absent. Every decision
//! is logged at `info` with its reason; a flow without `vip_numbers` logs a warning and answers
//! `failure`, so a missing setting shows up in the call's log instead of silently routing everyone
//! to the ordinary branch.

use passthru_sdk::{Branch, Call, Decision, config, log};

/// The config key that holds the comma-separated VIP numbers.
const VIP_NUMBERS_KEY: &str = "vip_numbers";

/// The plugin: `plugin!` below exports it as the world's `decide`.
fn decide(call: &Call) -> Decision {
    let Some(list) = config(VIP_NUMBERS_KEY) else {
        let reason = format!("{VIP_NUMBERS_KEY} is not configured");
        log::warn(&format!("{reason}: every caller takes the failure branch"));
        return Decision::failure(reason);
    };

    let Some(caller) = call.caller() else {
        let reason = "no caller number (neither CallFrom nor From)";
        log::info(reason);
        return Decision::failure(reason);
    };
    let caller = caller.trim();

    let vips = vip_numbers(&list);
    let (branch, reason) = if vips.contains(&caller) {
        (Branch::Success, format!("caller {caller} is a VIP"))
    } else {
        (
            Branch::Failure,
            format!(
                "caller {caller} is not among the {} VIP numbers",
                vips.len()
            ),
        )
    };
    log::info(&reason);
    Decision::new(branch, reason)
}

/// The entries of a comma-separated list, trimmed, without empty ones.
fn vip_numbers(list: &str) -> Vec<&str> {
    passthru_sdk::list(list).collect()
}

passthru_sdk::plugin!(decide);

#[cfg(test)]
mod tests {
    use super::vip_numbers;

    #[test]
    fn parses_vip_numbers() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            (" , ,", &[]),
            ("+919800000001", &["+919800000001"]),
            (" 0980 , +91 98 ,", &["0980", "+91 98"]),
            ("a,,b", &["a", "b"]),
        ];
        for (list, want) in cases {
            assert_eq!(vip_numbers(list), *want, "list {list:?}");
        }
    }
}
