//! The sandbox on its own: components that must be refused, and the pool's typed capacity error.

mod common;

use std::sync::Arc;

use passthru::call;
use passthru::sandbox::{FailureKind, FlowConfig, Limits, Sandbox, SandboxError, SandboxOptions};

fn sandbox(slots: u32) -> Sandbox {
    Sandbox::new(SandboxOptions {
        max_concurrent_calls: slots,
    })
    .expect("sandbox")
}

fn invalid_message(result: Result<passthru::sandbox::Plugin, SandboxError>) -> String {
    match result {
        Err(SandboxError::InvalidComponent { message }) => message,
        other => panic!("expected invalid_component, got {other:?}"),
    }
}

#[test]
fn a_component_that_asks_for_more_than_the_host_gives_is_refused() {
    let wat = r#"(component
        (import "evil:net/socket@1.0.0" (instance $net (export "connect" (func (param "host" string)))))
    )"#;
    let bytes = wat::parse_str(wat).expect("valid WAT");
    let message = invalid_message(sandbox(1).compile(&bytes));
    assert!(message.contains("does not provide"), "{message}");
    assert!(message.contains("evil:net/socket"), "{message}");
}

#[test]
fn a_decide_of_the_wrong_type_is_refused() {
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func (export "decide") (canon lift (core func $i "f")))
    )"#;
    let bytes = wat::parse_str(wat).expect("valid WAT");
    let message = invalid_message(sandbox(1).compile(&bytes));
    assert!(message.contains("decide"), "{message}");
}

#[test]
fn truncated_and_corrupt_components_are_refused() {
    let good = std::fs::read(common::IVR_MENU).unwrap();
    let sb = sandbox(1);
    for cut in [9, good.len() / 3, good.len() - 1] {
        let message = invalid_message(sb.compile(&good[..cut]));
        assert!(
            message.contains("does not compile"),
            "cut at {cut}: {message}"
        );
    }
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    for b in &mut flipped[middle..middle + 64] {
        *b = !*b;
    }
    assert!(sb.compile(&flipped).is_err());
    // And the real thing still compiles on the same sandbox.
    assert!(sb.compile(&good).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_is_a_typed_overload_not_a_hang() {
    let sb = Arc::new(sandbox(1));
    let plugin = Arc::new(
        sb.compile(&std::fs::read(common::HOSTILE).unwrap())
            .unwrap(),
    );
    let config: Arc<FlowConfig> = Arc::new([("mode".to_owned(), "loop".to_owned())].into());
    let slow = Limits {
        fuel: u64::MAX / 2,
        deadline_ms: 2_000,
        ..Limits::default()
    };
    let busy = {
        let (sb, plugin, config) = (sb.clone(), plugin.clone(), config.clone());
        tokio::spawn(async move {
            sb.decide(&plugin, call::parse("CallSid=busy"), &slow, config)
                .await
        })
    };
    while sb.calls_in_flight() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // The one slot is taken (instantiation happens right after the counter goes up, so wait
    // for the second call to fail rather than assume).
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let report = sb
            .decide(
                &plugin,
                call::parse("CallSid=second"),
                &Limits::default(),
                config.clone(),
            )
            .await;
        let kind = report.outcome.as_ref().err().map(SandboxError::kind);
        kinds.push(kind);
        if kind == Some(FailureKind::Overloaded) {
            break;
        }
    }
    assert_eq!(
        kinds.last(),
        Some(&Some(FailureKind::Overloaded)),
        "{kinds:?}"
    );
    let first = busy.await.unwrap();
    assert_eq!(
        first.outcome.unwrap_err().kind(),
        FailureKind::Deadline,
        "the busy call ends at its own deadline"
    );
}
