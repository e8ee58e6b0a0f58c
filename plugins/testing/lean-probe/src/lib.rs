//! `lean-probe`: a test fixture for the world `lean-decider` (package 0.1.4), written against the
//! raw bindings, that checks the host's interface `call` against itself.
//!
//! `decide-lean` reads `call::details()` once, then asks every single-field function of `call`
//! (`call-sid` to `tenant-id`) and `params()`, and compares each answer with the field of the same
//! name in the details; then `param(name)` for every name in `params()`, which must be the last
//! value sent for that name, and `param("no-such-parameter-xyz")`, which must be `none` (unless a
//! query really sends it). It answers:
//!
//! - `success`, reason `all N fields agree`, when every answer agrees. N counts the comparisons:
//!   the 22 typed fields, `params`, one per distinct parameter name, and the absent name; so
//!   `24 + k` for a query of `k` distinct names.
//! - `failure`, reason `FIELD differs: ...`, naming the first function whose answer differs from
//!   the details (`call-from`, `params`, `param(digits)`, ...), with both values.
//!
//! When the flow's config has the key `echo`, it answers `success` at once, its reason the value
//! of `param(<echo's value>)`, or `none` when the query did not send that parameter: a host test
//! reads a parameter back that way.
//!
//! When the config has the key `stack`, it first nests that many calls of a function that keeps
//! 1 KiB on the stack, then answers `success`, reason `nested N KiB`: a host test overflows the
//! plugin's stack that way (the examples are linked with a 64 KiB stack, plugins/.cargo/config.toml).
//!
//! It also exports an eager `decide`, which answers `failure`, reason `the eager decide was
//! called`: a host must call `decide-lean` when a component has both.
//!
//! Not a plugin to deploy: it exists for the host's tests.

use std::fmt::Debug;

wit_bindgen::generate!({
    // The world `lean-decider`, plus an eager `decide` beside `decide-lean`: the host must call
    // `decide-lean` when a component has both, and `decide` answers so that a test would see it.
    inline: r#"
        package passthru-testing:lean;

        world lean-probe {
            use passthru:plugin/types@0.1.4.{call-details, decision};
            import passthru:plugin/host@0.1.4;
            import passthru:plugin/call@0.1.4;

            export decide-lean: func() -> decision;
            export decide: func(call: call-details) -> decision;
        }
    "#,
    path: "../../../wit",
    world: "passthru-testing:lean/lean-probe",
    additional_derives: [PartialEq],
    generate_all,
});

use passthru::plugin::types::Branch;
use passthru::plugin::{call, host};

/// The parameter name no query is expected to send.
const ABSENT: &str = "no-such-parameter-xyz";

/// The longest reason answered: a difference in `params` could print a whole query.
const MAX_REASON: usize = 512;

struct Probe;

impl Guest for Probe {
    /// Never called by a host of 0.1.4 or later, since this component exports `decide-lean` too.
    fn decide(_call: CallDetails) -> Decision {
        answer(Branch::Failure, "the eager decide was called".into())
    }

    fn decide_lean() -> Decision {
        if let Some(depth) = host::config("stack") {
            let depth: u32 = depth.parse().unwrap_or(0);
            let reached = nest(depth);
            return answer(Branch::Success, format!("nested {reached} KiB"));
        }
        if let Some(name) = host::config("echo") {
            let value = call::param(&name).unwrap_or_else(|| "none".into());
            return answer(Branch::Success, value);
        }
        match compare(&call::details()) {
            Ok(count) => answer(Branch::Success, format!("all {count} fields agree")),
            Err(difference) => answer(Branch::Failure, difference),
        }
    }
}

fn answer(branch: Branch, reason: String) -> Decision {
    Decision {
        branch,
        reason: Some(reason),
    }
}

/// Nests `depth` calls, each with 1 KiB on the stack that the optimiser cannot remove; answers how
/// many were nested.
#[inline(never)]
fn nest(depth: u32) -> u32 {
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == 0 {
        return 0;
    }
    let below = nest(depth - 1);
    // Read after the call, so the frame stays on the stack across it (the term is always 0).
    below + 1 + u32::from(std::hint::black_box(&frame)[1023] != depth as u8)
}

/// Compares every function of `call` with `details`: how many comparisons agreed, or the first
/// difference.
fn compare(details: &CallDetails) -> Result<usize, String> {
    let mut checks = Checks::default();
    checks.check("call-sid", &details.call_sid, call::call_sid())?;
    checks.check("call-from", &details.call_from, call::call_from())?;
    checks.check("call-to", &details.call_to, call::call_to())?;
    checks.check("from", &details.from, call::from())?;
    checks.check("to", &details.to, call::to())?;
    checks.check("direction", &details.direction, call::direction())?;
    checks.check("call-type", &details.call_type, call::call_type())?;
    checks.check("created", &details.created, call::created())?;
    checks.check("start-time", &details.start_time, call::start_time())?;
    checks.check("end-time", &details.end_time, call::end_time())?;
    checks.check("current-time", &details.current_time, call::current_time())?;
    checks.check(
        "dial-call-duration",
        &details.dial_call_duration,
        call::dial_call_duration(),
    )?;
    checks.check(
        "dial-call-status",
        &details.dial_call_status,
        call::dial_call_status(),
    )?;
    checks.check(
        "dial-whom-number",
        &details.dial_whom_number,
        call::dial_whom_number(),
    )?;
    checks.check("legs", &details.legs, call::legs())?;
    checks.check("digits", &details.digits, call::digits())?;
    checks.check("custom-field", &details.custom_field, call::custom_field())?;
    checks.check(
        "recording-url",
        &details.recording_url,
        call::recording_url(),
    )?;
    checks.check(
        "recording-available-by",
        &details.recording_available_by,
        call::recording_available_by(),
    )?;
    checks.check(
        "outgoing-phone-number",
        &details.outgoing_phone_number,
        call::outgoing_phone_number(),
    )?;
    checks.check("flow-id", &details.flow_id, call::flow_id())?;
    checks.check("tenant-id", &details.tenant_id, call::tenant_id())?;

    let params = call::params();
    checks.check("params", &details.params, params.clone())?;
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in &params {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    for name in names.into_iter().chain([ABSENT]) {
        let last = last_value(&details.params, name);
        checks.check(&format!("param({name})"), &last, call::param(name))?;
    }
    Ok(checks.count)
}

/// The last value sent for `name`, as `param` must answer it.
fn last_value(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Comparisons made so far.
#[derive(Default)]
struct Checks {
    count: usize,
}

impl Checks {
    /// One comparison: `Err` names `field` and shows both values when they differ.
    fn check<T: PartialEq + Debug>(
        &mut self,
        field: &str,
        in_details: &T,
        answered: T,
    ) -> Result<(), String> {
        self.count += 1;
        if *in_details == answered {
            return Ok(());
        }
        let mut reason =
            format!("{field} differs: details has {in_details:?}, call answers {answered:?}");
        if reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Err(reason)
    }
}

export!(Probe);
