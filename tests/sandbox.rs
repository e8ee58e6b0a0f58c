//! The sandbox on its own: components that must be refused, and the pool's typed capacity error.

mod common;

use std::sync::Arc;

use passthru::call;
use passthru::sandbox::{
    CallReport, Event, FailureKind, FlowConfig, Grants, Limits, Plugin, Sandbox, SandboxError,
    SandboxOptions, TenantShare,
};

fn sandbox(slots: u32) -> Sandbox {
    Sandbox::new(SandboxOptions {
        max_concurrent_calls: slots,
        ..SandboxOptions::default()
    })
    .expect("sandbox")
}

/// The hostile plugin, compiled for `sb`.
fn hostile(sb: &Sandbox) -> Plugin {
    sb.compile(&std::fs::read(common::HOSTILE).unwrap())
        .unwrap()
}

/// One `decide` of `query`, with no share of its tenant's to respect.
async fn decide(
    sb: &Sandbox,
    plugin: &Plugin,
    query: &str,
    limits: &Limits,
    grants: Arc<Grants>,
) -> CallReport {
    sb.decide(
        plugin,
        &TenantShare::unlimited(),
        call::parse(query),
        limits,
        grants,
    )
    .await
}

fn invalid_message(result: Result<Plugin, SandboxError>) -> String {
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
    let plugin = Arc::new(hostile(&sb));
    let config: Arc<Grants> = grants([("mode".to_owned(), "loop".to_owned())].into());
    let slow = Limits {
        fuel: u64::MAX / 2,
        deadline_ms: 2_000,
        ..Limits::default()
    };
    let busy = {
        let (sb, plugin, config) = (sb.clone(), plugin.clone(), config.clone());
        tokio::spawn(async move { decide(&sb, &plugin, "CallSid=busy", &slow, config).await })
    };
    while sb.calls_in_flight() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // The one slot is taken (instantiation happens right after the counter goes up, so wait
    // for the second call to fail rather than assume).
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let report = decide(
            &sb,
            &plugin,
            "CallSid=second",
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

/// A guest that computes ends at its deadline without the runtime's timer: the runtime's clock is
/// paused here, so its timer around the call never fires while the guest keeps the worker busy,
/// and only the epoch deadline (the ticker thread's clock) can end the call before its fuel runs
/// out (a second or more of work), as out of fuel. `loop` spins; `fill` runs bulk memory
/// operations, 8 MiB each: long for one operator, and charged to fuel by the byte.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_computing_guest_ends_at_its_deadline_without_the_runtimes_timer() {
    let sb = sandbox(1);
    let plugin = hostile(&sb);
    for mode in ["loop", "fill"] {
        ends_at_its_deadline(&sb, &plugin, mode).await;
    }
}

/// The epoch ticker parks once no call has begun for 100 ms, and the next call wakes it: a
/// computing guest that begins while it sleeps still ends at its deadline (the runtime's clock is
/// paused, as above, so only the epoch can end it), and the ticker parks again after it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_epoch_ticker_sleeps_while_idle_and_a_call_wakes_it() {
    let sb = sandbox(1);
    let plugin = hostile(&sb);
    for mode in ["loop", "fill"] {
        let waited = std::time::Instant::now();
        while !sb.epoch_ticker_asleep() {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(10),
                "the ticker never parked while no call ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        ends_at_its_deadline(&sb, &plugin, mode).await;
    }
}

/// Runs the hostile plugin's computing `mode` under a 50 ms deadline and more fuel than a second
/// of work, and checks that the deadline ended it, on time.
async fn ends_at_its_deadline(sb: &Sandbox, plugin: &Plugin, mode: &str) {
    let limits = Limits {
        fuel: 20_000_000_000,
        deadline_ms: 50,
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let report = decide(
        sb,
        plugin,
        "CallSid=spin",
        &limits,
        grants([("mode".to_owned(), mode.to_owned())].into()),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        report.outcome.as_ref().err().map(SandboxError::kind),
        Some(FailureKind::Deadline),
        "{mode}: {report:?}"
    );
    // The epoch counts its ticks from the ticker's start (or its waking), not the call's, so a
    // call may end up to a tick early; a late ticker skips ticks, which only makes it later.
    assert!(
        took >= std::time::Duration::from_millis(45),
        "{mode} ended well before its deadline: {took:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(2),
        "{mode} ran {took:?} past a 50 ms deadline"
    );
    assert!(
        report.fuel_used < limits.fuel,
        "{mode}: {} fuel used",
        report.fuel_used
    );
}

/// An instance whose reset is slow (this one dirties 8 MiB) is reset after its call's answer, in a
/// pool slot of its own: one slot for calls still serves call after call, none refused while the
/// previous instance waits for its reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reset_waits_for_after_the_answer_without_taking_a_calls_slot() {
    let sb = sandbox(1);
    let hostile = hostile(&sb);
    let hoard: Arc<Grants> = grants([("mode".to_owned(), "memory".to_owned())].into());
    // The clock is not what this test is about: a busy machine may take longer than the default
    // deadline to touch 8 MiB, and the answer must still be the memory cap's.
    let small = Limits {
        memory_mb: 8,
        deadline_ms: 5_000,
        ..Limits::default()
    };
    for i in 0..30 {
        let report = decide(&sb, &hostile, "CallSid=hoard", &small, hoard.clone()).await;
        let kind = report.outcome.as_ref().err().map(SandboxError::kind);
        assert_eq!(kind, Some(FailureKind::MemoryLimit), "call {i}: {report:?}");
    }
    // The first call's reset showed it slow; the others' resets came after their answers.
    let deferred = sb.resets_deferred();
    assert!(deferred >= 20, "{deferred} of 30 resets deferred");
}

/// Replaces every `from` in `bytes` with `to` (the same length, so the binary stays valid).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    (out, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_built_against_packages_0_1_0_to_0_1_3_still_run() {
    for old_version in [&b"0.1.0"[..], b"0.1.1", b"0.1.2", b"0.1.3"] {
        // The same component as if built against the older package: its interface names say so.
        // (hook-probe's `decide` is the eager kind every package version has; the SDK's
        // decide-alone plugins are lean-deciders since 0.1.4.)
        let current = std::fs::read(common::HOOK_PROBE).unwrap();
        let rename = |bytes: &[u8], interface: &str| {
            let from = format!("passthru:plugin/{interface}@0.1.4");
            let mut to = format!("passthru:plugin/{interface}@").into_bytes();
            to.extend_from_slice(old_version);
            replace_all(bytes, from.as_bytes(), &to)
        };
        let (old, host) = rename(&current, "host");
        let (old, types) = rename(&old, "types");
        assert!(host > 0 && types > 0, "the example names both interfaces");
        let sb = sandbox(1);
        let plugin = sb.compile(&old).expect("an older plugin is accepted");
        let config: Arc<Grants> = grants([("vip_numbers".to_owned(), "0980".to_owned())].into());
        let report = decide(&sb, &plugin, "CallFrom=0980", &Limits::default(), config).await;
        let decision = report.outcome.unwrap();
        assert_eq!(decision.branch, passthru::sandbox::Branch::Success);
        // It reached the host's `config` and `log` through the older names.
        assert_eq!(report.log[0].message, "caller 0980 is a VIP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_export_is_found_once_and_a_missing_one_is_a_typed_failure() {
    let sb = sandbox(2);
    let probe = sb
        .compile(&std::fs::read(common::ASYNC_PROBE).unwrap())
        .unwrap();
    let menu = sb
        .compile(&std::fs::read(common::IVR_MENU).unwrap())
        .unwrap();
    assert!(probe.can_record() && !probe.can_decide());
    assert!(menu.can_decide() && !menu.can_record());
    let event = Event {
        id: 42,
        attempt: 3,
        accepted_at_ms: 1,
    };
    let limits = Limits::default();

    let report = sb
        .record(
            &probe,
            &TenantShare::unlimited(),
            event,
            call::parse("CallSid=abc"),
            &limits,
            Arc::default(),
        )
        .await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    assert_eq!(
        report.log[0].message,
        "recorded call_sid=abc event=42 attempt=3"
    );

    let failing: Arc<Grants> = grants([("fail_attempts".to_owned(), "5".to_owned())].into());
    let report = sb
        .record(
            &probe,
            &TenantShare::unlimited(),
            event,
            call::parse("CallSid=abc"),
            &limits,
            failing,
        )
        .await;
    match report.outcome {
        Err(SandboxError::PluginError { message }) => {
            assert_eq!(message, "failing on purpose: attempt 3 of 5");
        }
        other => panic!("expected plugin_error, got {other:?}"),
    }

    let report = decide(&sb, &probe, "", &limits, Arc::default()).await;
    let message = invalid_message(report.outcome.map(|_| unreachable!()));
    assert!(message.contains("does not export `decide`"), "{message}");
    let report = sb
        .record(
            &menu,
            &TenantShare::unlimited(),
            event,
            call::parse(""),
            &limits,
            Arc::default(),
        )
        .await;
    let message = invalid_message(report.outcome.map(|()| unreachable!()));
    assert!(message.contains("does not export `record`"), "{message}");
}

#[test]
fn a_component_with_neither_export_is_refused() {
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func (export "handle") (canon lift (core func $i "f")))
    )"#;
    let message = invalid_message(sandbox(1).compile(&wat::parse_str(wat).unwrap()));
    assert!(message.contains("exports none of"), "{message}");
    assert!(message.contains("handle"), "{message}");
}

/// A flow that grants its plugin `config` and nothing else.
fn grants(config: FlowConfig) -> Arc<Grants> {
    Arc::new(Grants::config(config))
}

/// Some of the Rust plugins built for `wasm32-unknown-unknown`.
const WITHOUT_WASI: [(&str, &str); 4] = [
    ("ivr-menu", common::IVR_MENU),
    ("vip-caller", common::VIP_CALLER),
    ("geo-router", common::GEO_ROUTER),
    ("async-probe", common::ASYNC_PROBE),
];

/// The plugins that need nothing of WASI are built for `wasm32-unknown-unknown` (host/build.rs):
/// their components import passthru's interfaces alone, which is what makes their calls cheaper.
/// Those that use WASI import it.
#[test]
fn plugins_built_without_wasi_import_only_passthru() {
    let engine = wasmtime::Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
    let imports = |path: &str| -> Vec<String> {
        let component = wasmtime::component::Component::from_file(&engine, path).unwrap();
        component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    };
    for (name, path) in WITHOUT_WASI {
        let imports = imports(path);
        assert!(
            imports.iter().all(|i| i.starts_with("passthru:plugin/")),
            "{name} imports {imports:?}"
        );
    }
    let hostile = imports(common::HOSTILE);
    assert!(
        hostile.iter().any(|i| i.starts_with("wasi:cli/stderr")),
        "{hostile:?}"
    );
}

/// The Rust examples are linked with a 64 KiB stack instead of Rust's 1 MiB
/// (plugins/.cargo/config.toml): the stack sets the size of their memory, which the host scans
/// after every call. `hostile`, built for `wasm32-wasip2` with Rust's default, shows the
/// difference.
#[test]
fn the_examples_start_with_a_small_memory() {
    let engine = wasmtime::Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
    let pages = |path: &str| {
        let component = wasmtime::component::Component::from_file(&engine, path).unwrap();
        let needs = component.resources_required().expect("no imported modules");
        needs.max_initial_memory_size.expect("a memory")
    };
    for (name, path) in WITHOUT_WASI {
        let pages = pages(path);
        assert!(pages <= 4, "{name} starts with {pages} pages of 64 KiB");
    }
    let hostile = pages(common::HOSTILE);
    assert!(hostile >= 17, "hostile starts with {hostile} pages");
}

/// A Rust plugin built without WASI has no stderr: the SDK's panic hook logs the message at
/// `error`, and the trap's message carries it as the plugin's last words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_without_stderr_is_heard_through_the_log() {
    let sb = sandbox(1);
    let probe = sb
        .compile(&std::fs::read(common::ASYNC_PROBE).unwrap())
        .unwrap();
    let event = Event {
        id: 7,
        attempt: 2,
        accepted_at_ms: 1,
    };
    let trap: Arc<Grants> = grants([("trap".to_owned(), "true".to_owned())].into());
    let report = sb
        .record(
            &probe,
            &TenantShare::unlimited(),
            event,
            call::parse("CallSid=abc"),
            &Limits::default(),
            trap,
        )
        .await;
    let message = match report.outcome {
        Err(SandboxError::Trap { message }) => message,
        other => panic!("expected a trap, got {other:?}"),
    };
    assert!(
        message.contains("the plugin said: panicked at testing/async-probe/src/lib.rs:")
            && message.ends_with(" / async-probe: deliberate trap on attempt 2"),
        "{message}"
    );
    let logged = report.log.last().expect("the panic's line");
    assert_eq!(logged.level, passthru::sandbox::LogLevel::Error);
}
