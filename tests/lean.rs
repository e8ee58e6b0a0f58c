//! `decide-lean` and the `call` interface (package 0.1.4) against real guests: `lean-probe`
//! reads every field through `call` and compares it with `call::details()`; the SDK's
//! decide-alone plugins (`ivr-menu`) are lean, and decide as the eager `decide` of other
//! languages does (tests/conformance.rs).

mod common;

use std::sync::Arc;

use passthru::call;
use passthru::sandbox::{
    Branch, CallReport, Compiled, FailureKind, FlowConfig, Grants, Limits, Plugin, Sandbox,
    SandboxOptions, TenantShare,
};
use proptest::prelude::*;

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxOptions {
        max_concurrent_calls: 2,
        ..SandboxOptions::default()
    })
    .expect("sandbox")
}

/// The component at `path`, compiled, with its export names.
fn compiled(sandbox: &Sandbox, path: &str) -> Compiled {
    sandbox
        .compile_with_artifact(&std::fs::read(path).expect("plugin built"))
        .expect("compiles")
}

fn compile(sandbox: &Sandbox, path: &str) -> Plugin {
    compiled(sandbox, path).plugin
}

async fn decide(sandbox: &Sandbox, plugin: &Plugin, query: &str, config: FlowConfig) -> CallReport {
    sandbox
        .decide(
            plugin,
            &TenantShare::unlimited(),
            call::parse(query),
            &Limits::default(),
            Arc::new(Grants::config(config)),
        )
        .await
}

/// The probe's verdict: every field agreed (`Ok(reason)`) or the first that did not (`Err`).
fn verdict(report: CallReport) -> Result<String, String> {
    let decision = report
        .outcome
        .map_err(|e| format!("the call failed: {e}"))?;
    let reason = decision.reason.unwrap_or_default();
    match decision.branch {
        Branch::Success => Ok(reason),
        Branch::Failure => Err(reason),
    }
}

/// Odd queries the samples do not have: repeats, empty values, unknown enum spellings, legs with
/// gaps, placeholders, bytes that decode to nothing valid.
const ODD: &[&str] = &[
    "",
    "CallSid=a&CallSid=b&CallFrom=&CallTo=%20&digits=%22%22",
    "Direction=sideways&CallType=odd&DialCallStatus=weird&DialCallDuration=-3",
    "Legs%5B2%5D%5BNumber%5D=0980&Legs%5B0%5D%5BCause%5D=16&Legs%5B0%5D%5BOnCallDuration%5D=x",
    "Created=0000-00-00+00%3A00%3A00&StartTime=Wed%2C+31+Jul+2024+16%3A42%3A56&EndTime=nope",
    "x=1&x=2&x=&%FF=%FE&a+b=c+d&=empty-name&no-equals",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_read_through_call_is_what_decide_would_get() {
    let sb = sandbox();
    let probe = compile(&sb, common::LEAN_PROBE);
    assert!(probe.can_decide(), "decide-lean serves a sync flow");
    let samples = common::samples().into_iter().map(|(_, query)| query);
    for query in samples.chain(ODD.iter().map(|q| (*q).to_owned())) {
        let said = verdict(decide(&sb, &probe, &query, FlowConfig::new()).await);
        let reason = said.unwrap_or_else(|e| panic!("{query:?}: {e}"));
        assert!(reason.starts_with("all "), "{query:?}: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_is_read_back_by_its_name_the_last_one_when_repeated() {
    let sb = sandbox();
    let probe = compile(&sb, common::LEAN_PROBE);
    let echo = |name: &str| FlowConfig::from([("echo".to_owned(), name.to_owned())]);
    let query = "CustomField=first&CustomField=vip%20%26%20more&empty=";
    let cases = [
        ("CustomField", "vip & more"),
        ("empty", ""),
        ("absent", "none"),
    ];
    for (name, expected) in cases {
        let said = verdict(decide(&sb, &probe, query, echo(name)).await).expect("echoed");
        assert_eq!(said, expected, "param({name:?})");
    }
}

/// The examples are linked with a 64 KiB stack (plugins/.cargo/config.toml), which sits below
/// their data: a plugin that nests 16 KiB of frames decides, and one that nests 200 KiB traps,
/// with nothing of its memory overwritten on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_overflows_its_small_stack_traps() {
    let sb = sandbox();
    let probe = compile(&sb, common::LEAN_PROBE);
    let stack = |kib: u32| FlowConfig::from([("stack".to_owned(), kib.to_string())]);
    let said = verdict(decide(&sb, &probe, "CallSid=x", stack(16)).await);
    assert_eq!(said.as_deref(), Ok("nested 16 KiB"));
    let report = decide(&sb, &probe, "CallSid=x", stack(200)).await;
    let error = report
        .outcome
        .expect_err("200 KiB of frames on a 64 KiB stack");
    assert_eq!(error.kind(), FailureKind::Trap, "{error}");
    assert!(error.to_string().contains("out of bounds"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_decide_alone_plugins_are_lean_and_decide_as_before() {
    let sb = sandbox();
    let compiled = compiled(&sb, common::IVR_MENU);
    assert_eq!(
        compiled.exports,
        ["decide-lean"],
        "ivr-menu is a lean-decider"
    );
    let menu = compiled.plugin;
    let cases = [
        ("digits=%221%22", Branch::Success, "caller pressed 1"),
        ("digits=%2217%22", Branch::Failure, "caller pressed 17"),
        ("CallSid=x", Branch::Failure, "no digits"),
    ];
    for (query, branch, reason) in cases {
        let decision = decide(&sb, &menu, query, FlowConfig::new())
            .await
            .outcome
            .expect("decided");
        assert_eq!(decision.branch, branch, "{query}");
        assert_eq!(decision.reason.as_deref(), Some(reason), "{query}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any query, however odd, reads the same through `call` as `decide` gets it.
    #[test]
    fn any_query_reads_the_same_field_by_field(
        pairs in proptest::collection::vec(
            (
                prop::sample::select(vec![
                    "CallSid", "CallFrom", "From", "To", "Direction", "CallType", "Created",
                    "DialCallStatus", "DialCallDuration", "digits", "CustomField",
                    "Legs[0][Number]", "Legs[1][Cause]", "flow_id", "x",
                ]),
                "[ -~]{0,12}",
            ),
            0..12,
        )
    ) {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sb = SANDBOX.with(|sb| sb.clone());
        let said = runtime.block_on(async {
            let probe = compile(&sb, common::LEAN_PROBE);
            verdict(decide(&sb, &probe, &query, FlowConfig::new()).await)
        });
        prop_assert!(said.is_ok(), "{query:?}: {said:?}");
    }
}

thread_local! {
    static SANDBOX: Arc<Sandbox> = Arc::new(sandbox());
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_both_decide_and_decide_lean_is_called_through_decide_lean() {
    let sb = sandbox();
    let compiled = compiled(&sb, common::LEAN_PROBE);
    assert!(
        compiled.exports.iter().any(|e| e == "decide"),
        "{:?}",
        compiled.exports
    );
    assert!(
        compiled.exports.iter().any(|e| e == "decide-lean"),
        "{:?}",
        compiled.exports
    );
    let said = verdict(decide(&sb, &compiled.plugin, "digits=1", FlowConfig::new()).await);
    assert!(
        said.as_ref().is_ok_and(|r| r.starts_with("all ")),
        "{said:?}"
    );
}
