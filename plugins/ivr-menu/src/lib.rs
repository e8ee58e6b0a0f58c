//! `ivr-menu`: the smallest useful passthru plugin.
//!
//! An IVR asks the caller to press 1 for one branch and anything else for the other. This plugin
//! answers `success` when the keys pressed were exactly `1` and `failure` otherwise, with a reason
//! that says what was pressed. It reads nothing but the call's `digits` (the host has already
//! removed the double quotes Exotel puts around them).

wit_bindgen::generate!({
    path: "../../wit",
    world: "decider",
});

use passthru::plugin::types::Branch;

/// The component: `export!` below makes its `Guest` impl the world's `decide` export.
struct IvrMenu;

impl Guest for IvrMenu {
    fn decide(call: CallDetails) -> Decision {
        let (branch, reason) = branch_for(call.digits.as_deref());
        Decision {
            branch,
            reason: Some(reason),
        }
    }
}

/// The branch for the keys the caller pressed, and why.
fn branch_for(digits: Option<&str>) -> (Branch, String) {
    match digits {
        Some("1") => (Branch::Success, "caller pressed 1".to_owned()),
        Some(digits) if !digits.is_empty() => (Branch::Failure, format!("caller pressed {digits}")),
        _ => (Branch::Failure, "no digits".to_owned()),
    }
}

export!(IvrMenu);

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
