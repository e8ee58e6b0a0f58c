//! `ivr-menu`: the smallest useful passthru plugin.
//!
//! An IVR asks the caller to press 1 for one branch and anything else for the other. This plugin
//! answers `success` when the keys pressed were exactly `1` and `failure` otherwise, with a reason
//! that says what was pressed. It reads nothing but the call's `digits` (the host has already
//! removed the double quotes Exotel puts around them).

use passthru_sdk::{Branch, Call, Decision};

/// The plugin: `plugin!` below exports it as the world's `decide`.
fn decide(call: &Call) -> Decision {
    let (branch, reason) = branch_for(call.digits());
    Decision::new(branch, reason)
}

/// The branch for the keys the caller pressed, and why.
fn branch_for(digits: Option<&str>) -> (Branch, String) {
    match digits {
        Some("1") => (Branch::Success, "caller pressed 1".to_owned()),
        Some(digits) if !digits.is_empty() => (Branch::Failure, format!("caller pressed {digits}")),
        _ => (Branch::Failure, "no digits".to_owned()),
    }
}

passthru_sdk::plugin!(decide);

#[cfg(test)]
mod tests {
    use super::{Branch, branch_for};

    #[test]
    fn only_a_single_1_succeeds() {
        let cases = [
            (Some("1"), Branch::Success, "caller pressed 1"),
            (Some("7"), Branch::Failure, "caller pressed 7"),
            (Some("11"), Branch::Failure, "caller pressed 11"),
            (Some(" 1"), Branch::Failure, "caller pressed  1"),
            (Some(""), Branch::Failure, "no digits"),
            (None, Branch::Failure, "no digits"),
        ];
        for (digits, branch, reason) in cases {
            assert_eq!(
                branch_for(digits),
                (branch, reason.to_owned()),
                "digits {digits:?}"
            );
        }
    }
}
