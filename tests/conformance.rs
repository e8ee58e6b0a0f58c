//! Conformance: the example plugins decide the same in every language.
//!
//! The Rust builds of `ivr-menu` and `vip-caller` (from `host/build.rs`) are the reference. For
//! every shared Exotel sample and every case in the tables below, each other language's build of
//! the same example must give, through the real sandbox, the same branch, the same reason and the
//! same log lines. The extra cases also pin the branch the reference must give, so the languages
//! cannot agree on a wrong answer.
//!
//! The other languages' components are built from source by `make -C plugins polyglot`, once per
//! run of this test binary (make rebuilds only what changed; the first run installs the pinned
//! toolchains, see `plugins/Makefile`). Each component is compiled once and called for every case.
//!
//! Adding a language is adding a row to [`LANGUAGES`] (and its folder and rule in `plugins/`).
//!
//! Exotel's other URL hooks are checked the same way, through `Sandbox::answer`: every language's
//! `geo-router` (`select`, world `switcher`), `greeting` (world `greeter`), `sms-reply` (`sms`,
//! world `texter`), `agent-dialer` (`connect`, world `connector`) and `ivr-gather` (`gather`,
//! world `gatherer`) must answer Exotel the Rust one's status, content type, body and
//! `x-passthru-outcome`, for the same reason, with the same log.
//!
//! `sticky-agent` is checked the same way against a fresh in-memory key-value store per case,
//! comparing also what each call left in the store.
//!
//! The last tests are about what a plugin author meets in one language: Python's time zones
//! (`python/business-hours`), and what the error says when a Python or JavaScript plugin throws
//! (`testing/hostile-py`, `testing/hostile-js`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use passthru::answer::{
    CallPlayback, ConnectPlan, GatherPlan, Media, PlaybackTo, RecordingChannels,
};
use passthru::call;
use passthru::flow::StatusMap;
use passthru::flow::http::hook_http;
use passthru::kv::{Entry, KvGrants, KvSpace};
use passthru::sandbox::{
    Answered, Branch, CALLED_EXPORTS, FlowConfig, Grants, HookAnswer, HookExport, Limits, LogLevel,
    LogLine, Plugin, Sandbox, SandboxError, SandboxOptions, TenantShare,
};

/// A language the examples are written in: its builds are `plugins/dist/NAME-SUFFIX.wasm`.
struct Language {
    name: &'static str,
    suffix: &'static str,
    /// Whether the toolchain adds exports of its own beside the ones the host calls
    /// (componentize-py exports its `init` interface). The host must load the component anyway
    /// and never call them.
    extra_exports: bool,
    /// `(example, case)` pairs where the language's toolchain, not the plugin, makes the answer
    /// differ. Each must still differ: when a toolchain fixes it, the test says so.
    known_differences: &'static [(&'static str, &'static str)],
}

const LANGUAGES: &[Language] = &[
    Language {
        name: "Python",
        suffix: "py",
        extra_exports: true,
        known_differences: &[],
    },
    Language {
        name: "JavaScript",
        suffix: "js",
        extra_exports: false,
        // componentize-js 0.23 decodes every string it receives with a `TextDecoder` that drops
        // a leading U+FEFF as a byte-order mark, so the plugin never sees it.
        known_differences: &[("vip-caller", "U+FEFF is not whitespace")],
    },
    Language {
        name: "C",
        suffix: "c",
        extra_exports: false,
        known_differences: &[],
    },
];

/// The VIP list of the `vip-caller` cases, as an operator might write it.
const VIPS: &str = "09800000001, 09800000003,09800000011";

/// A flow's config, as key-value pairs.
type Config = &'static [(&'static str, &'static str)];

/// One call: a query as Exotel sends it, the flow's config, and the branch the reference must
/// give (`None` for the shared samples, whose branch `tests/server.rs` already checks).
struct Case {
    name: String,
    query: String,
    config: Vec<(&'static str, &'static str)>,
    branch: Option<Branch>,
}

fn case(name: &str, query: &str, config: &[(&'static str, &'static str)], branch: Branch) -> Case {
    Case {
        name: name.to_owned(),
        query: query.to_owned(),
        config: config.to_vec(),
        branch: Some(branch),
    }
}

/// `ivr-menu`: success iff the caller pressed exactly `1`.
fn ivr_menu_cases() -> Vec<Case> {
    use Branch::{Failure, Success};
    let mut cases = Vec::new();
    for (name, query) in common::samples() {
        cases.push(Case {
            name: format!("sample {name}"),
            query,
            config: Vec::new(),
            branch: None,
        });
    }
    let table = [
        (
            "1, quoted as Exotel sends it",
            "CallSid=a&digits=%221%22",
            Success,
        ),
        ("1, unquoted", "CallSid=a&digits=1", Success),
        ("2, quoted", "CallSid=a&digits=%222%22", Failure),
        ("2, unquoted", "digits=2", Failure),
        ("11", "digits=%2211%22", Failure),
        (
            "1 inside spaces, which the host trims",
            "digits=%22%201%20%22",
            Success,
        ),
        ("an opening quote only", "digits=%221", Failure),
        ("1 then 2 in one press", "digits=%2212%22", Failure),
        ("a star and a hash", "digits=%22*%23%22", Failure),
        ("an Arabic-Indic one", "digits=%D9%A1", Failure),
        (
            "pressed 2 then 1: the last wins",
            "digits=%222%22&digits=%221%22",
            Success,
        ),
        ("pressed 1 then 2", "digits=%221%22&digits=%222%22", Failure),
        ("empty", "CallSid=a&digits=", Failure),
        ("empty quotes", "CallSid=a&digits=%22%22", Failure),
        (
            "no digits parameter",
            "CallSid=a&CallFrom=09800000001",
            Failure,
        ),
        ("no parameters at all", "", Failure),
    ];
    for (name, query, branch) in table {
        cases.push(case(name, query, &[], branch));
    }
    cases
}

/// `vip-caller`: success iff the caller (`CallFrom`, else `From`), trimmed, is in `vip_numbers`.
fn vip_caller_cases() -> Vec<Case> {
    use Branch::{Failure, Success};
    let vips: Config = &[("vip_numbers", VIPS)];
    let mut cases = Vec::new();
    for (name, query) in common::samples() {
        cases.push(Case {
            name: format!("sample {name}"),
            query,
            config: vips.to_vec(),
            branch: None,
        });
    }
    #[rustfmt::skip]
    let table: &[(&str, &str, Config, Branch)] = &[
        ("a VIP in CallFrom", "CallFrom=09800000001", vips, Success),
        ("the last VIP of the list", "CallFrom=09800000011&From=x", vips, Success),
        ("not a VIP", "CallFrom=09800000002", vips, Failure),
        ("a VIP in From only", "From=09800000003", vips, Success),
        ("CallFrom wins over a VIP From", "CallFrom=09800000002&From=09800000001", vips, Failure),
        ("empty CallFrom falls back to From", "CallFrom=&From=09800000001", vips, Success),
        ("no caller at all", "CallSid=a&digits=1", vips, Failure),
        ("no parameters at all", "", vips, Failure),
        ("vip_numbers not set", "CallFrom=09800000001", &[], Failure),
        ("vip_numbers not set, no caller", "CallSid=a", &[], Failure),
        ("vip_numbers empty", "CallFrom=09800000001", &[("vip_numbers", "")], Failure),
        ("vip_numbers only commas", "CallFrom=09800000001", &[("vip_numbers", " , ,")], Failure),
        ("a repeated entry counts twice", "CallFrom=1", &[("vip_numbers", "2,2")], Failure),
        ("other config keys only", "CallFrom=09800000001", &[("vip", VIPS)], Failure),
        ("a caller of spaces only", "CallFrom=%20%20&From=09800000001", vips, Failure),
        ("spaces around the caller", "CallFrom=%2009800000001%20", vips, Success),
        ("a tab and a newline around the caller", "CallFrom=%0909800000001%0A", vips, Success),
        ("no-break spaces around the caller", "CallFrom=%C2%A009800000001%E3%80%80", vips, Success),
        ("U+0085 and U+2028 around the caller", "CallFrom=%C2%8509800000001%E2%80%A8", vips, Success),
        ("U+FEFF is not whitespace", "CallFrom=%EF%BB%BF09800000001", vips, Failure),
        ("U+001F is not whitespace", "CallFrom=%1F09800000001", vips, Failure),
        ("U+200B is not whitespace", "CallFrom=09800000001%E2%80%8B", vips, Failure),
        ("a space inside the number", "CallFrom=%2B91%2098", &[("vip_numbers", "+91 98, x")], Success),
        ("a + sent unencoded is a space", "CallFrom=+919800000001", &[("vip_numbers", "+919800000001")], Failure),
        ("an encoded +", "CallFrom=%2B919800000001", &[("vip_numbers", "+919800000001")], Success),
        ("unicode spaces in the list", "CallFrom=7", &[("vip_numbers", "\u{3000}7\u{85},\u{a0}8")], Success),
        ("a list of one", "CallFrom=5", &[("vip_numbers", "5")], Success),
        ("a non-ASCII caller", "CallFrom=%E0%A5%A7%E0%A5%A8", &[("vip_numbers", "१२")], Success),
    ];
    for (name, query, config, branch) in table {
        cases.push(case(name, query, config, *branch));
    }
    cases
}

/// What one call gave: the branch, the reason and the log (or why it failed).
type Outcome = Result<(Branch, Option<String>, Vec<LogLine>), String>;

async fn run(sandbox: &Sandbox, plugin: &Plugin, case: &Case, limits: &Limits) -> Outcome {
    let config: FlowConfig = case
        .config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let report = sandbox
        .decide(
            plugin,
            &TenantShare::unlimited(),
            call::parse(&case.query),
            limits,
            Arc::new(Grants::config(config)),
        )
        .await;
    let log: Vec<LogLine> = report.log;
    match report.outcome {
        Ok(decision) => Ok((decision.branch, decision.reason, log)),
        Err(error) => Err(format!("{} ({error}); log: {log:?}", error.kind().as_str())),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds every language's components from source with `make -C plugins polyglot`, once for
/// all the tests of this binary (two `make`s at once would write the same files).
fn build_polyglot_plugins() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(run_make_polyglot);
}

fn run_make_polyglot() {
    let plugins = repo_root().join("plugins");
    let output = Command::new("make")
        .arg("-C")
        .arg(&plugins)
        .arg("polyglot")
        .output()
        .unwrap_or_else(|e| panic!("cannot run make: {e}"));
    assert!(
        output.status.success(),
        "`make -C plugins polyglot` failed ({}); the toolchains it needs are listed in \
         plugins/README.md (and .ci/run installs them):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compiles a component as an upload does; returns it with its export names.
fn compile(sandbox: &Sandbox, path: &Path) -> (Plugin, Vec<String>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let compiled = sandbox
        .compile_with_artifact(&bytes)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    (compiled.plugin, compiled.exports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_decides_like_rust() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let dist = repo_root().join("plugins").join("dist");
    // One call after another: each instance is reset before its call returns, as `passthru run`
    // does. Deferred resets of Python instances (14 core instances each) can lag behind the
    // calls on a busy machine and fill the pool (`overloaded`), which is not what is tested here.
    let sandbox = Sandbox::new(SandboxOptions {
        max_concurrent_calls: 4,
        ..SandboxOptions::default()
    })?
    .without_deferred_resets();
    // The defaults: what a flow gets unless it asks for more. Every language must fit in them.
    let limits = Limits::default();
    let examples: [(&str, &str, Vec<Case>); 2] = [
        ("ivr-menu", common::IVR_MENU, ivr_menu_cases()),
        ("vip-caller", common::VIP_CALLER, vip_caller_cases()),
    ];

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (example, rust_path, cases) in &examples {
        let (rust, _) = compile(&sandbox, Path::new(rust_path));
        let mut reference = Vec::new();
        for case in cases {
            let outcome = run(&sandbox, &rust, case, &limits).await;
            let (branch, _, _) = outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("Rust {example}, {}: {e}", case.name));
            if let Some(expected) = case.branch {
                assert_eq!(
                    *branch, expected,
                    "the Rust {example} itself, case {}: {outcome:?}",
                    case.name
                );
            }
            reference.push(outcome);
        }
        // The log is part of the behaviour only where a plugin logs on purpose.
        assert!(
            reference
                .iter()
                .flatten()
                .flat_map(|(_, _, log)| log)
                .all(|line| !matches!(line.level, LogLevel::Stdout | LogLevel::Stderr)),
            "the Rust {example} wrote to stdout or stderr"
        );

        for language in LANGUAGES {
            let path = dist.join(format!("{example}-{}.wasm", language.suffix));
            let (plugin, exports) = compile(&sandbox, &path);
            // Both examples are lean-deciders in every language (package 0.1.4).
            assert!(
                exports.iter().any(|e| e == "decide-lean"),
                "{} {example} exports {exports:?}",
                language.name
            );
            let extra: Vec<&String> = exports
                .iter()
                .filter(|e| !CALLED_EXPORTS.contains(&e.as_str()))
                .collect();
            assert_eq!(
                !extra.is_empty(),
                language.extra_exports,
                "{} {example} exports {exports:?}",
                language.name
            );
            for (case, expected) in cases.iter().zip(&reference) {
                let got = run(&sandbox, &plugin, case, &limits).await;
                compared += 1;
                let known = language
                    .known_differences
                    .contains(&(*example, case.name.as_str()));
                if known && &got == expected {
                    mismatches.push(format!(
                        "{} {example}, case {}: now the same as Rust; remove it from the \
                         language's known differences",
                        language.name, case.name
                    ));
                } else if !known && &got != expected {
                    mismatches.push(format!(
                        "{} {example}, case {} (query {:?}):\n    Rust: {expected:?}\n    {}: {got:?}",
                        language.name, case.name, case.query, language.name
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} calls differ from Rust:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    Ok(())
}

// --- Exotel's other URL hooks ---------------------------------------------------------------

/// The routes of the `geo-router` cases, as an operator might write them: nested prefixes, a
/// landline code, a country code that no Indian number starts with.
const ROUTES: &str = "+91:india, +9180:south, 033:east, 080:bangalore, 0980:mobile, +1:us";

/// The text a `greeting` flow answers when its plugin fails.
const FALLBACK_TEXT: &str = "Welcome.";

/// The plan a `connect` flow answers when its plugin fails: the reception desk.
fn fallback_plan() -> ConnectPlan {
    dial(&["+918040000000"])
}

/// A Connect plan that dials `numbers` in order, every other setting left to Exotel.
fn dial(numbers: &[&str]) -> ConnectPlan {
    ConnectPlan {
        numbers: numbers.iter().map(|n| (*n).to_owned()).collect(),
        outgoing_phone_number: None,
        record_call: false,
        recording_channels: None,
        max_ringing_duration: None,
        max_conversation_duration: None,
        music_on_hold: None,
        parallel_attempts: None,
        start_call_playback: None,
        fetch_after_attempt: false,
    }
}

/// The plan a `gather` flow answers when its plugin fails.
fn fallback_gather() -> GatherPlan {
    GatherPlan {
        prompt: Media::Text("Please try again later.".into()),
        max_input_digits: None,
        finish_on_key: None,
        input_timeout: None,
        repeat_menu: None,
        repeat_gather_prompt: None,
    }
}

/// What a hook's flow answers Exotel: status, body and `x-passthru-outcome`. A failed call
/// answers the flow's fallback: the flows here have the default statuses, and fall back to the
/// failure branch without a case (`switch`), to [`FALLBACK_TEXT`] (`greeting`, `sms`), to
/// [`fallback_plan`] (`connect`) or to [`fallback_gather`] (`gather`).
type Wire = (u16, String, String);

/// What a hook call answered Exotel (and with which `Content-Type`), and the reason and log (or
/// the error) behind it.
type HookOutcome = (
    Wire,
    Option<&'static str>,
    Result<Option<String>, String>,
    Vec<LogLine>,
);

/// A status, body and outcome that a case pins.
type Pinned = (u16, &'static str, &'static str);

/// One row of a hook's table: name, query, config, the answer Rust must give.
type HookRow<Q> = (&'static str, Q, Config, Pinned);

/// One call of a hook: as [`Case`], with the answer the reference must give.
struct HookCase {
    name: String,
    query: String,
    config: Vec<(&'static str, &'static str)>,
    /// The status, body and outcome Rust must answer (`None` for the shared samples).
    wire: Option<Pinned>,
}

/// The fallback a flow of `hook` answers when its plugin fails.
fn fallback(hook: HookExport) -> HookAnswer {
    match hook {
        HookExport::Select => HookAnswer::Select {
            branch: Branch::Failure,
            case: None,
        },
        HookExport::Greeting | HookExport::Sms => HookAnswer::Text(FALLBACK_TEXT.to_owned()),
        HookExport::Connect => HookAnswer::Connect(fallback_plan()),
        HookExport::Gather => HookAnswer::Gather(fallback_gather()),
    }
}

/// The response a flow with default statuses gives for `outcome` of `hook`, rendered by the
/// server's own `hook_http`, and its content type.
fn wire(
    hook: HookExport,
    outcome: &Result<Answered, SandboxError>,
) -> (Wire, Option<&'static str>) {
    let (answer, kind) = match outcome {
        Ok(answered) => (answered.answer.clone(), "decided"),
        Err(error) => (fallback(hook), error.kind().as_str()),
    };
    let http = hook_http(&answer, &StatusMap::default(), None);
    (
        (http.status, http.body.unwrap_or_default(), kind.to_owned()),
        http.content_type,
    )
}

/// The default fuel and memory, as a flow gets them; the default deadline too in a release build.
/// A debug build of the host is far slower to hand a Python or JavaScript plugin its call, and
/// on a busy machine passes 50 ms now and then: there the deadline is wider, since what is
/// compared here is the answer, not the time (`BENCHMARKS.md` has the release timings).
fn hook_limits() -> Limits {
    Limits {
        deadline_ms: if cfg!(debug_assertions) {
            5_000
        } else {
            Limits::default().deadline_ms
        },
        ..Limits::default()
    }
}

async fn run_hook(
    sandbox: &Sandbox,
    plugin: &Plugin,
    hook: HookExport,
    case: &HookCase,
) -> HookOutcome {
    let config: FlowConfig = case
        .config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let report = sandbox
        .answer(
            plugin,
            &TenantShare::unlimited(),
            hook,
            call::parse(&case.query),
            &hook_limits(),
            Arc::new(Grants::config(config)),
        )
        .await;
    let said = match &report.outcome {
        Ok(answered) => Ok(answered.reason.clone()),
        Err(error) => Err(error.to_string()),
    };
    let (wire, content_type) = wire(hook, &report.outcome);
    (wire, content_type, said, report.log)
}

fn hook_case(name: &str, query: &str, config: Config, wire: Pinned) -> HookCase {
    HookCase {
        name: name.to_owned(),
        query: query.to_owned(),
        config: config.to_vec(),
        wire: Some(wire),
    }
}

/// Every shared sample query under each of `configs`, with no pinned answer: each language must
/// answer them as the Rust plugin does.
fn sample_hook_cases(configs: &[Config]) -> Vec<HookCase> {
    let mut cases = Vec::new();
    for (name, query) in common::samples() {
        for config in configs {
            cases.push(HookCase {
                name: format!("sample {name}, {} config keys", config.len()),
                query: query.clone(),
                config: config.to_vec(),
                wire: None,
            });
        }
    }
    cases
}

/// Every language's `example` answers `export` as the Rust one (`rust`) does on each of `cases`;
/// the test fails listing every call that differs.
async fn answers_like_rust(
    example: &str,
    rust: &str,
    export: HookExport,
    cases: &[HookCase],
) -> anyhow::Result<()> {
    let languages: Vec<&Language> = LANGUAGES.iter().collect();
    let (compared, mismatches) = compare_hook(example, rust, export, cases, &languages).await?;
    assert!(
        mismatches.is_empty(),
        "{} of {compared} calls differ from Rust:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    Ok(())
}

/// Calls the Rust build of `example` (at `rust_path`) for every case, checking the answers the
/// cases pin, then each of `languages`' builds, through the same hook; answers how many calls
/// were compared and what differed.
async fn compare_hook(
    example: &str,
    rust_path: &str,
    hook: HookExport,
    cases: &[HookCase],
    languages: &[&Language],
) -> anyhow::Result<(usize, Vec<String>)> {
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let dist = repo_root().join("plugins").join("dist");
    // One call after another: each instance is reset before its call returns, as `passthru run`
    // does. Deferred resets of Python instances (14 core instances each) can lag behind the
    // calls on a busy machine and fill the pool (`overloaded`), which is not what is tested here.
    let sandbox = Sandbox::new(SandboxOptions {
        max_concurrent_calls: 4,
        ..SandboxOptions::default()
    })?
    .without_deferred_resets();
    let (rust, _) = compile(&sandbox, Path::new(rust_path));
    let mut reference = Vec::new();
    for case in cases {
        let outcome = run_hook(&sandbox, &rust, hook, case).await;
        if let Some((status, body, kind)) = case.wire {
            let ((got_status, got_body, got_kind), _, _, _) = &outcome;
            assert_eq!(
                (*got_status, got_body.as_str(), got_kind.as_str()),
                (status, body, kind),
                "the Rust {example} itself, case {}: {outcome:?}",
                case.name
            );
        }
        reference.push(outcome);
    }

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for language in languages {
        let path = dist.join(format!("{example}-{}.wasm", language.suffix));
        let (plugin, exports) = compile(&sandbox, &path);
        let extra: Vec<&String> = exports.iter().filter(|e| *e != hook.name()).collect();
        assert_eq!(
            !extra.is_empty(),
            language.extra_exports,
            "{} {example} exports {exports:?}",
            language.name
        );
        for (case, expected) in cases.iter().zip(&reference) {
            let got = run_hook(&sandbox, &plugin, hook, case).await;
            compared += 1;
            if &got != expected {
                mismatches.push(format!(
                    "{} {example}, case {} (query {:?}, config {:?}):\n    Rust: {expected:?}\n    {}: {got:?}",
                    language.name, case.name, case.query, case.config, language.name
                ));
            }
        }
    }
    Ok((compared, mismatches))
}

/// `geo-router`: the longest prefix of the caller (`CallFrom`, else `From`, trimmed) in `routes`
/// names the case; else `default_case`; else the failure branch without a case.
fn geo_router_cases() -> Vec<HookCase> {
    let routes: Config = &[("routes", ROUTES)];
    let with_default: Config = &[("routes", ROUTES), ("default_case", "main-menu")];
    let mut cases = sample_hook_cases(&[routes, with_default]);
    let south = (200, r#"{"select":"south"}"#, "decided");
    let india = (200, r#"{"select":"india"}"#, "decided");
    let east = (200, r#"{"select":"east"}"#, "decided");
    let main_menu = (200, r#"{"select":"main-menu"}"#, "decided");
    let failure = (302, "", "decided");
    let plugin_error = (302, "", "plugin_error");
    #[rustfmt::skip]
    let table: &[HookRow<&str>] = &[
        ("+9180: the longest prefix wins", "CallSid=a&CallFrom=%2B918012345678", routes, south),
        ("+91 but not +9180", "CallSid=a&CallFrom=%2B919812345678", routes, india),
        ("a Kolkata landline", "CallFrom=03312345678&CallTo=08040000000", routes, east),
        ("a US caller in From only", "From=%2B14155550100", routes, (200, r#"{"select":"us"}"#, "decided")),
        ("CallFrom wins over From", "CallFrom=03312345678&From=%2B918012345678", routes, east),
        ("empty CallFrom falls back to From", "CallFrom=&From=%2B918012345678", routes, south),
        ("spaces around the caller", "CallFrom=%20%2B918012345678%09", routes, south),
        ("unicode spaces around the caller", "CallFrom=%C2%A0%2B918012345678%E3%80%80", routes, south),
        ("a + sent unencoded is a space", "CallFrom=+918012345678", routes, failure),
        ("no match, no default_case", "CallFrom=04412345678", routes, failure),
        ("no match, default_case", "CallFrom=04412345678", with_default, main_menu),
        ("no caller at all, no default_case", "CallSid=a&CallTo=08040000000", routes, failure),
        ("no caller at all, default_case", "CallSid=a&CallTo=08040000000", with_default, main_menu),
        ("no parameters at all", "", routes, failure),
        ("routes not set", "CallFrom=%2B918012345678", &[], failure),
        ("routes not set, default_case", "CallFrom=%2B918012345678", &[("default_case", "main-menu")], main_menu),
        ("routes empty", "CallFrom=%2B918012345678", &[("routes", "")], failure),
        ("equal prefixes: the last wins", "CallFrom=%2B918012345678", &[("routes", "+91:first, +91:india")], india),
        ("malformed entries are skipped", "CallFrom=%2B918012345678", &[("routes", "bad-entry, :empty, +9180:, ,+91 : india ")], india),
        ("unicode spaces in the routes", "CallFrom=%2B918012345678", &[("routes", "\u{3000}+9180\u{85}:\u{a0}south")], south),
        ("a case after the first colon keeps its colons", "CallFrom=%2B918012345678", &[("routes", "+91:a:b")], (200, r#"{"select":"a:b"}"#, "decided")),
        ("a non-ASCII prefix", "CallFrom=%E0%A5%A7%E0%A5%A8%E0%A5%A9", &[("routes", "१:deva, १२:deva-long")], (200, r#"{"select":"deva-long"}"#, "decided")),
        ("a case Exotel could not read", "CallFrom=%2B918012345678", &[("routes", "+91:in\"dia")], plugin_error),
        ("an empty default_case", "CallFrom=04412345678", &[("routes", ROUTES), ("default_case", "")], plugin_error),
    ];
    for (name, query, config, wire) in table {
        cases.push(hook_case(name, query, config, *wire));
    }
    cases
}

/// Each language's `geo-router` (world `switcher`, export `select`) answers Exotel what the Rust
/// one does: the same status, body and outcome, for the same reason, with the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_selects_the_switchcase_case_like_rust() -> anyhow::Result<()> {
    answers_like_rust(
        "geo-router",
        common::GEO_ROUTER,
        HookExport::Select,
        &geo_router_cases(),
    )
    .await
}

/// A greeting call at `current_time` (Exotel's India time) as Exotel's Greeting applet sends it,
/// with `rest` appended.
fn greeted_at(current_time: &str, rest: &str) -> String {
    format!(
        "CallSid=c7&CallFrom=09800000001&CallTo=08040000000&Direction=incoming\
         &CurrentTime={}{rest}",
        current_time.replace(' ', "%20").replace(',', "%2C")
    )
}

/// `greeting`: the text for the part of the day in India (`CurrentTime`, else `StartTime`), or
/// the flow's own text for that part.
fn greeting_cases() -> Vec<HookCase> {
    let acme: Config = &[
        ("morning", "Good morning from Acme."),
        ("unknown", "Welcome to Acme."),
    ];
    let mut cases = sample_hook_cases(&[&[][..], acme]);
    let morning = (200, "Good morning, thank you for calling.", "decided");
    let afternoon = (200, "Good afternoon, thank you for calling.", "decided");
    let evening = (200, "Good evening, thank you for calling.", "decided");
    let unknown = (200, "Hello, thank you for calling.", "decided");
    #[rustfmt::skip]
    let table: Vec<HookRow<String>> = vec![
        ("05:00 is morning", greeted_at("2024-07-31 05:00:00", ""), &[], morning),
        ("11:59:59 is morning", greeted_at("2024-07-31 11:59:59", ""), &[], morning),
        ("12:00 is afternoon", greeted_at("2024-07-31 12:00:00", ""), &[], afternoon),
        ("16:59:59 is afternoon", greeted_at("2024-07-31 16:59:59", ""), &[], afternoon),
        ("17:00 is evening", greeted_at("2024-07-31 17:00:00", ""), &[], evening),
        ("midnight is evening", greeted_at("2024-08-01 00:00:00", ""), &[], evening),
        ("04:59:59 is evening", greeted_at("2024-08-01 04:59:59", ""), &[], evening),
        ("Exotel's other time shape", greeted_at("Wed, 31 Jul 2024 09:15:00", ""), &[], morning),
        ("the flow's morning text", greeted_at("2024-07-31 09:00:00", ""), acme, (200, "Good morning from Acme.", "decided")),
        ("no evening text configured", greeted_at("2024-07-31 20:00:00", ""), acme, evening),
        ("StartTime when CurrentTime is absent", "CallSid=c7&StartTime=2024-07-31%2013:00:00".into(), &[], afternoon),
        ("CurrentTime wins over StartTime", greeted_at("2024-07-31 18:00:00", "&StartTime=2024-07-31%2009:00:00"), &[], evening),
        ("a placeholder CurrentTime is not replaced by StartTime", greeted_at("0000-00-00 00:00:00", "&StartTime=2024-07-31%2009:00:00"), &[], unknown),
        ("no time at all", "CallSid=c7&CallFrom=09800000001".into(), &[], unknown),
        ("no time at all, the flow's text", "CallSid=c7".into(), acme, (200, "Welcome to Acme.", "decided")),
        ("no parameters at all", String::new(), &[], unknown),
        ("a text Exotel could not read", greeted_at("2024-07-31 09:00:00", ""), &[("morning", "bell\u{7}")], (200, FALLBACK_TEXT, "plugin_error")),
    ];
    for (name, query, config, wire) in table {
        cases.push(hook_case(name, &query, config, wire));
    }
    cases
}

/// Each language's `greeting` (world `greeter`, export `greeting`) answers Exotel what the Rust
/// one does: the same text by India time, for the same reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_greets_like_rust() -> anyhow::Result<()> {
    answers_like_rust(
        "greeting",
        common::GREETING,
        HookExport::Greeting,
        &greeting_cases(),
    )
    .await
}

/// The support team of the `agent-dialer` cases, as an operator might write it.
const TEAM: &str = "+919800000001, +919800000002, +919800000003";
const TEAM_NUMBERS: [&str; 3] = ["+919800000001", "+919800000002", "+919800000003"];

/// An `agent-dialer` flow with every setting: two VIPs, two at once, recorded, 25 s of ringing.
const DIALER: Config = &[
    ("team", TEAM),
    ("vip_numbers", "+919811111111, 09811111112"),
    ("vip_parallel", "2"),
    ("vip_playback", "A VIP is calling"),
    ("caller_id", "08030000000"),
    ("record", "true"),
    ("ring_seconds", "25"),
];

/// An `agent-dialer` flow with the team and one VIP only.
const DIALER_PLAIN: Config = &[("team", TEAM), ("vip_numbers", "+919811111111")];

/// What the host answers Exotel (version 1.0) for `plan`.
fn dialled(plan: ConnectPlan) -> Pinned {
    (200, plan.render(None).to_string().leak(), "decided")
}

/// The plan of [`DIALER`] for an ordinary caller; with `parallel`, for a VIP.
fn dialer_plan(parallel: Option<u32>) -> ConnectPlan {
    let mut plan = dial(&TEAM_NUMBERS);
    plan.outgoing_phone_number = Some("08030000000".into());
    plan.record_call = true;
    plan.recording_channels = Some(RecordingChannels::Dual);
    plan.max_ringing_duration = Some(25);
    if parallel.is_some() {
        plan.parallel_attempts = parallel;
        plan.start_call_playback = Some(CallPlayback {
            to: PlaybackTo::Callee,
            media: Media::Text("A VIP is calling".into()),
        });
    }
    plan
}

/// The plan of [`DIALER_PLAIN`]; with `parallel`, for its VIP.
fn plain_plan(parallel: Option<u32>) -> ConnectPlan {
    let mut plan = dial(&TEAM_NUMBERS);
    plan.parallel_attempts = parallel;
    plan
}

/// `agent-dialer`: the team (`team`) in order, or `vip_parallel` of them at once (default 3,
/// clamped to 1 to 5) with the `vip_playback` text for a caller (`CallFrom`, else `From`,
/// trimmed) listed in `vip_numbers`; `caller_id`, `record` and `ring_seconds` as configured. A
/// flow without a team makes a plan that dials nobody: a plugin error, answered with the
/// fallback plan.
fn agent_dialer_cases() -> Vec<HookCase> {
    let mut cases = sample_hook_cases(&[DIALER, DIALER_PLAIN]);
    let ordinary = dialled(dialer_plan(None));
    let vip = dialled(dialer_plan(Some(2)));
    let plain = dialled(plain_plan(None));
    let plain_vip = |n| dialled(plain_plan(Some(n)));
    let fallback =
        |kind| -> Pinned { (200, fallback_plan().render(None).to_string().leak(), kind) };
    let vip_query = "CallSid=d1&CallFrom=%2B919811111111";
    let with = |extra: &[(&'static str, &'static str)]| -> Config {
        let mut config = DIALER_PLAIN.to_vec();
        config.extend_from_slice(extra);
        config.leak()
    };
    let mut record = dial(&TEAM_NUMBERS);
    record.record_call = true;
    record.recording_channels = Some(RecordingChannels::Dual);
    let mut longest_ring = dial(&TEAM_NUMBERS);
    longest_ring.max_ringing_duration = Some(u32::MAX);
    let mut silent_vip = dialer_plan(Some(2));
    silent_vip.start_call_playback = None;
    let thirty_three: &'static str = (1..=33)
        .map(|i| format!("+9198000000{i:02}"))
        .collect::<Vec<_>>()
        .join(",")
        .leak();
    #[rustfmt::skip]
    let table: Vec<HookRow<&str>> = vec![
        ("an ordinary caller rings the team in order", "CallSid=d1&CallFrom=%2B919822222222", DIALER, ordinary),
        ("a VIP rings two at once and the agent hears who calls", vip_query, DIALER, vip),
        ("the second VIP of the list, in From only", "CallSid=d1&From=09811111112", DIALER, vip),
        ("CallFrom wins over a VIP From", "CallFrom=%2B919822222222&From=%2B919811111111", DIALER, ordinary),
        ("empty CallFrom falls back to From", "CallFrom=&From=%2B919811111111", DIALER, vip),
        ("spaces around the VIP", "CallFrom=%20%2B919811111111%09", DIALER, vip),
        ("unicode spaces around the VIP", "CallFrom=%C2%A0%2B919811111111%E3%80%80", DIALER, vip),
        ("a + sent unencoded is a space", "CallFrom=+919811111111", DIALER, ordinary),
        ("a caller of spaces only", "CallFrom=%20%20&From=%2B919811111111", DIALER, ordinary),
        ("no caller at all", "CallSid=d1&CallTo=08040000000", DIALER, ordinary),
        ("no parameters at all", "", DIALER, ordinary),
        ("a non-ASCII VIP", "CallFrom=%E0%A5%A7%E0%A5%A8", with(&[("vip_numbers", "x, १२")]), plain_vip(3)),
        ("only the team: an ordinary caller", "CallFrom=%2B919822222222", DIALER_PLAIN, plain),
        ("vip_parallel not set: three at once", vip_query, DIALER_PLAIN, plain_vip(3)),
        ("vip_parallel 9: five at once", vip_query, with(&[("vip_parallel", "9")]), plain_vip(5)),
        ("vip_parallel 0: one at a time", vip_query, with(&[("vip_parallel", "0")]), plain_vip(1)),
        ("vip_parallel with a + and spaces", vip_query, with(&[("vip_parallel", " +4\u{3000}")]), plain_vip(4)),
        ("vip_parallel with leading zeros", vip_query, with(&[("vip_parallel", "0004")]), plain_vip(4)),
        ("vip_parallel negative: the default", vip_query, with(&[("vip_parallel", "-1")]), plain_vip(3)),
        ("vip_parallel a fraction: the default", vip_query, with(&[("vip_parallel", "2.5")]), plain_vip(3)),
        ("vip_parallel past u32: the default", vip_query, with(&[("vip_parallel", "4294967296")]), plain_vip(3)),
        ("vip_parallel in other digits: the default", vip_query, with(&[("vip_parallel", "\u{663}")]), plain_vip(3)),
        ("vip_parallel with an underscore: the default", vip_query, with(&[("vip_parallel", "1_0")]), plain_vip(3)),
        ("vip_parallel a lone +: the default", vip_query, with(&[("vip_parallel", "+")]), plain_vip(3)),
        ("vip_parallel empty: the default", vip_query, with(&[("vip_parallel", "")]), plain_vip(3)),
        ("a VIP without vip_playback", vip_query, &[("team", TEAM), ("vip_numbers", "+919811111111"), ("vip_parallel", "2"), ("caller_id", "08030000000"), ("record", "true"), ("ring_seconds", "25")], dialled(silent_vip)),
        ("record with spaces is true", "CallFrom=1", with(&[("record", " true\n")]), dialled(record)),
        ("record TRUE is not true", "CallFrom=1", with(&[("record", "TRUE")]), plain),
        ("record yes is not true", "CallFrom=1", with(&[("record", "yes")]), plain),
        ("ring_seconds at u32's end", "CallFrom=1", with(&[("ring_seconds", "4294967295")]), dialled(longest_ring)),
        ("ring_seconds past u32: not set", "CallFrom=1", with(&[("ring_seconds", "4294967296")]), plain),
        ("ring_seconds a word: not set", "CallFrom=1", with(&[("ring_seconds", "thirty")]), plain),
        ("empty and spaced entries in the team", "CallFrom=1", &[("team", "\u{3000}+919800000001\u{85},, ,+919800000002 ,+919800000003")], plain),
        ("a VIP list of spaces and commas", vip_query, &[("team", TEAM), ("vip_numbers", " , ,")], plain),
        ("the VIP list not set", vip_query, &[("team", TEAM)], plain),
        ("no team: a plan that dials nobody", "CallFrom=1", &[("vip_numbers", "1")], fallback("plugin_error")),
        ("a team of commas only", "CallFrom=1", &[("team", " , ,")], fallback("plugin_error")),
        ("33 numbers: too many", "CallFrom=1", vec![("team", thirty_three)].leak(), fallback("plugin_error")),
        ("an empty caller_id", "CallFrom=1", with(&[("caller_id", "")]), fallback("plugin_error")),
        ("an empty vip_playback", vip_query, with(&[("vip_playback", "")]), fallback("plugin_error")),
    ];
    for (name, query, config, wire) in table {
        cases.push(hook_case(name, query, config, wire));
    }
    cases
}

/// Each language's `agent-dialer` (world `connector`, export `connect`) answers Exotel what the
/// Rust one does: the same Connect JSON, byte for byte, for the same reason, with the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_plans_the_connect_call_like_rust() -> anyhow::Result<()> {
    answers_like_rust(
        "agent-dialer",
        common::AGENT_DIALER,
        HookExport::Connect,
        &agent_dialer_cases(),
    )
    .await
}

/// The `sms-reply` template of the cases: both placeholders.
const SMS_TEMPLATE: Config = &[("reply", "Hi {caller}, you pressed {digits}.")];

/// The text `sms-reply` answers when the flow configures none.
const SMS_DEFAULT: &str = "Thank you for your message. We will get back to you soon.";

/// `sms-reply`: the flow's `reply` with `{caller}` (`CallFrom`, else `From`, as sent) and
/// `{digits}` filled in one pass, or a default text when `reply` is unset or empty. A text Exotel
/// could not read (a control character from the request) is a plugin error: the fallback text.
fn sms_reply_cases() -> Vec<HookCase> {
    let mut cases = sample_hook_cases(&[&[][..], SMS_TEMPLATE]);
    let text = |body: &'static str| -> Pinned { (200, body, "decided") };
    let default = text(SMS_DEFAULT);
    #[rustfmt::skip]
    let table: &[HookRow<&str>] = &[
        ("no reply configured: the default", "CallSid=s1&CallFrom=09800000001", &[], default),
        ("an empty reply: the default", "CallFrom=09800000001", &[("reply", "")], default),
        ("no parameters, no config", "", &[], default),
        ("both placeholders", "CallSid=s1&CallFrom=09800000001&digits=%222%22", SMS_TEMPLATE, text("Hi 09800000001, you pressed 2.")),
        ("From when CallFrom is absent", "From=09800000003&digits=1", SMS_TEMPLATE, text("Hi 09800000003, you pressed 1.")),
        ("CallFrom wins over From", "CallFrom=09800000001&From=09800000003", SMS_TEMPLATE, text("Hi 09800000001, you pressed .")),
        ("no parameters at all: empty placeholders", "", SMS_TEMPLATE, text("Hi , you pressed .")),
        ("a reply without placeholders", "CallFrom=1", &[("reply", "Thanks!")], text("Thanks!")),
        ("a caller that reads {digits} is kept as sent", "CallFrom=%7Bdigits%7D&digits=7", SMS_TEMPLATE, text("Hi {digits}, you pressed 7.")),
        ("half and repeated placeholders", "digits=7", &[("reply", "{caller {{digits}}{digits}")], text("{caller {7}7")),
        ("a non-ASCII reply and caller", "CallFrom=%E0%A5%A7%E0%A5%A8", &[("reply", "नमस्ते {caller}")], text("नमस्ते १२")),
        ("a caller with a control character", "CallFrom=%07", SMS_TEMPLATE, (200, FALLBACK_TEXT, "plugin_error")),
    ];
    for (name, query, config, wire) in table {
        cases.push(hook_case(name, query, config, *wire));
    }
    cases
}

/// Each language's `sms-reply` (world `texter`, export `sms`) answers Exotel what the Rust one
/// does: the same `text/plain` body, for the same reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_texts_like_rust() -> anyhow::Result<()> {
    answers_like_rust(
        "sms-reply",
        common::SMS_REPLY,
        HookExport::Sms,
        &sms_reply_cases(),
    )
    .await
}

/// An `ivr-gather` flow with every setting.
const GATHER_FULL: Config = &[
    ("prompt", "Press 1 for sales, 2 for support."),
    ("max_digits", "2"),
    ("finish_key", "*"),
    ("timeout", "10"),
    ("repeat", "3"),
];

/// The prompt `ivr-gather` asks when the flow configures none.
const GATHER_DEFAULT_PROMPT: &str = "Please enter your choice, then press the hash key.";

/// A Gather plan with `prompt`, its digits, finish key, timeout and menu repeats.
fn asked(
    prompt: Media,
    digits: u32,
    finish: Option<&str>,
    timeout: u32,
    repeat: Option<u32>,
) -> GatherPlan {
    GatherPlan {
        prompt,
        max_input_digits: Some(digits),
        finish_on_key: finish.map(str::to_owned),
        input_timeout: Some(timeout),
        repeat_menu: repeat,
        repeat_gather_prompt: None,
    }
}

/// What the host answers Exotel for `plan`.
fn gathered(plan: GatherPlan) -> Pinned {
    (200, plan.render().to_string().leak(), "decided")
}

/// `ivr-gather`'s defaults, with `digits` in place of the default 1.
fn default_gather(digits: u32) -> Pinned {
    gathered(asked(
        Media::Text(GATHER_DEFAULT_PROMPT.into()),
        digits,
        Some("#"),
        5,
        None,
    ))
}

/// `ivr-gather`: the audio at `prompt_url`, else the text `prompt`, else a default; `max_digits`
/// (1), `timeout` (5) and `repeat` (unset) read as Rust reads a trimmed `u32`, the default
/// otherwise; `finish_key` (`#`), none when set empty. A prompt or key Exotel could not read is
/// a plugin error: the fallback plan.
fn ivr_gather_cases() -> Vec<HookCase> {
    let mut cases = sample_hook_cases(&[&[][..], GATHER_FULL]);
    let full = gathered(asked(
        Media::Text("Press 1 for sales, 2 for support.".into()),
        2,
        Some("*"),
        10,
        Some(3),
    ));
    let audio = gathered(asked(
        Media::AudioUrl("https://example.com/menu.wav".into()),
        1,
        Some("#"),
        5,
        None,
    ));
    let press_one = |finish: Option<&str>, timeout| {
        gathered(asked(
            Media::Text("Press 1".into()),
            1,
            finish,
            timeout,
            None,
        ))
    };
    let fallback = (
        200,
        fallback_gather().render().to_string().leak() as &str,
        "plugin_error",
    );
    let digits = |value: &'static str| -> Config { vec![("max_digits", value)].leak() };
    #[rustfmt::skip]
    let table: Vec<HookRow<&str>> = vec![
        ("nothing configured: the defaults", "CallSid=g1&CallFrom=09800000001", &[], default_gather(1)),
        ("no parameters, no config", "", &[], default_gather(1)),
        ("every setting", "CallSid=g1", GATHER_FULL, full),
        ("prompt_url wins over prompt", "CallSid=g1", &[("prompt_url", "https://example.com/menu.wav"), ("prompt", "Press 1")], audio),
        ("an empty prompt_url: the text", "CallSid=g1", &[("prompt_url", ""), ("prompt", "Press 1")], press_one(Some("#"), 5)),
        ("an empty prompt: the default", "CallSid=g1", &[("prompt", "")], default_gather(1)),
        ("an empty finish_key: no finish key", "CallSid=g1", &[("prompt", "Press 1"), ("finish_key", "")], press_one(None, 5)),
        ("timeout 0", "CallSid=g1", &[("prompt", "Press 1"), ("timeout", "0")], press_one(Some("#"), 0)),
        ("max_digits with a + and unicode spaces", "", digits(" +4\u{3000}"), default_gather(4)),
        ("max_digits with leading zeros", "", digits("0012"), default_gather(12)),
        ("max_digits a word: the default", "", digits("four"), default_gather(1)),
        ("max_digits negative: the default", "", digits("-1"), default_gather(1)),
        ("max_digits past u32: the default", "", digits("4294967296"), default_gather(1)),
        ("max_digits in other digits: the default", "", digits("\u{663}"), default_gather(1)),
        ("a prompt Exotel could not read", "", &[("prompt", "bell\u{7}")], fallback),
        ("a finish_key with a newline", "", &[("finish_key", "#\n")], fallback),
    ];
    for (name, query, config, wire) in table {
        cases.push(hook_case(name, query, config, wire));
    }
    cases
}

/// Each language's `ivr-gather` (world `gatherer`, export `gather`) answers Exotel what the Rust
/// one does: the same Gather JSON, byte for byte, for the same reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_plans_the_gather_like_rust() -> anyhow::Result<()> {
    answers_like_rust(
        "ivr-gather",
        common::IVR_GATHER,
        HookExport::Gather,
        &ivr_gather_cases(),
    )
    .await
}

// --- Key-value data -------------------------------------------------------------------------

/// The caller and agents of the `sticky-agent` cases.
const CALLER: &str = "09800000001";
const AGENT: &str = "09811111111";
const EARLIER_AGENT: &str = "09822222222";
/// The tenant whose stores the `sticky-agent` cases use.
const TENANT: &str = "acme";
/// How long `sticky-agent` remembers an agent.
const DAY_MS: i64 = 24 * 3600 * 1000;
/// When a seeded key expires: an hour after the case starts, so any write shows.
const SEED_TTL_MS: i64 = 3600 * 1000;

/// What the caller's key holds after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kept {
    /// Not set.
    Nothing,
    /// The value the case seeded, with its expiry: the call wrote nothing.
    Seeded(String),
    /// A value the call wrote, expiring 24 hours after the call.
    ForADay(String),
    /// Anything else: the value and its expiry (Unix milliseconds).
    Other(String, Option<i64>),
}

/// One `sticky-agent` call, with a fresh store.
struct KvCase {
    name: &'static str,
    query: &'static str,
    config: Config,
    /// The agent the store holds for [`CALLER`] before the call.
    seeded: Option<&'static str>,
    /// Whether the flow grants the store `agents`.
    granted: bool,
    /// What the reference must answer and leave in the store.
    branch: Branch,
    kept: Kept,
}

fn sticky_agent_cases() -> Vec<KvCase> {
    use Branch::{Failure, Success};
    const FIRST: &str = "CallSid=a&CallFrom=09800000001";
    const COMPLETED: &str =
        "CallSid=a&CallFrom=09800000001&DialWhomNumber=09811111111&DialCallStatus=completed";
    const NO_ANSWER: &str =
        "CallSid=a&CallFrom=09800000001&DialWhomNumber=09811111111&DialCallStatus=no-answer";
    let case = |name, query, seeded, branch, kept| KvCase {
        name,
        query,
        config: &[],
        seeded,
        granted: true,
        branch,
        kept,
    };
    let seeded = |agent: &str| Kept::Seeded(agent.to_owned());
    let for_a_day = Kept::ForADay(AGENT.to_owned());
    vec![
        case("an unknown caller", FIRST, None, Failure, Kept::Nothing),
        case("a known caller", FIRST, Some(AGENT), Success, seeded(AGENT)),
        case(
            "a known caller in From only",
            "From=09800000001",
            Some(AGENT),
            Success,
            seeded(AGENT),
        ),
        case(
            "a known caller inside spaces",
            "CallFrom=%2009800000001%0A",
            Some(AGENT),
            Success,
            seeded(AGENT),
        ),
        case(
            "a completed connect",
            COMPLETED,
            None,
            Success,
            for_a_day.clone(),
        ),
        case(
            "a completed connect to another agent",
            COMPLETED,
            Some(EARLIER_AGENT),
            Success,
            for_a_day.clone(),
        ),
        case(
            "a completed connect, agent inside spaces",
            "CallFrom=09800000001&DialWhomNumber=%2009811111111%20&DialCallStatus=completed",
            None,
            Success,
            for_a_day,
        ),
        case(
            "an unanswered connect",
            NO_ANSWER,
            None,
            Failure,
            Kept::Nothing,
        ),
        case(
            "an unanswered connect of a known caller",
            NO_ANSWER,
            Some(EARLIER_AGENT),
            Success,
            seeded(EARLIER_AGENT),
        ),
        case(
            "a status Exotel does not send (Completed)",
            "CallFrom=09800000001&DialWhomNumber=09811111111&DialCallStatus=Completed",
            None,
            Failure,
            Kept::Nothing,
        ),
        case(
            "completed without an agent",
            "CallFrom=09800000001&DialWhomNumber=&DialCallStatus=completed",
            None,
            Failure,
            Kept::Nothing,
        ),
        case(
            "no caller",
            "CallSid=a&DialCallStatus=completed",
            None,
            Failure,
            Kept::Nothing,
        ),
        case(
            "a caller of spaces only",
            "CallFrom=%20%20",
            None,
            Failure,
            Kept::Nothing,
        ),
        KvCase {
            config: &[("store", "billing")],
            ..case(
                "a read from a store the flow does not grant",
                FIRST,
                Some(AGENT),
                Failure,
                seeded(AGENT),
            )
        },
        KvCase {
            granted: false,
            ..case(
                "a write to a store the flow does not grant",
                COMPLETED,
                None,
                Failure,
                Kept::Nothing,
            )
        },
        KvCase {
            config: &[("store", "")],
            ..case(
                "an empty store name",
                FIRST,
                Some(AGENT),
                Failure,
                seeded(AGENT),
            )
        },
    ]
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("a clock before the year 292 million")
}

/// Runs one case against a fresh store: the answer, and what the caller's key holds after.
async fn run_kv(sandbox: &Sandbox, plugin: &Plugin, case: &KvCase) -> (Outcome, Kept) {
    let space = KvSpace::in_memory().expect("an in-memory key-value space");
    let bucket = space.bucket(TENANT, "agents");
    let start = now_ms();
    let seed_expiry = Some(start + SEED_TTL_MS);
    if let Some(agent) = case.seeded {
        let entry = Entry {
            value: agent.to_owned(),
            expires_at_ms: seed_expiry,
        };
        bucket
            .import(vec![(CALLER.to_owned(), entry)])
            .expect("the seed fits the caps")
            .wait()
            .await
            .expect("the seed is written");
    }
    let grants = Grants {
        config: case
            .config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        kv: KvGrants::new(case.granted.then(|| bucket.clone())),
        ..Grants::default()
    };
    let report = sandbox
        .decide(
            plugin,
            &TenantShare::unlimited(),
            call::parse(case.query),
            &hook_limits(),
            Arc::new(grants),
        )
        .await;
    let end = now_ms();
    let outcome = match report.outcome {
        Ok(decision) => Ok((decision.branch, decision.reason, report.log)),
        Err(error) => Err(format!(
            "{} ({error}); log: {:?}",
            error.kind().as_str(),
            report.log
        )),
    };
    let kept = match bucket.get(CALLER, end) {
        None => Kept::Nothing,
        Some(Entry {
            value,
            expires_at_ms,
        }) => match expires_at_ms {
            at if at == seed_expiry && case.seeded == Some(value.as_str()) => Kept::Seeded(value),
            Some(at) if (start + DAY_MS..=end + DAY_MS).contains(&at) => Kept::ForADay(value),
            at => Kept::Other(value, at),
        },
    };
    (outcome, kept)
}

/// `sticky-agent` reads and writes the tenant's key-value data: each language's build must give
/// the Rust one's branch, reason and log, and leave the store as it does (the agent, expiring a
/// day after the call, or nothing written), including when the flow does not grant the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_remembers_the_agent_like_rust() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let dist = repo_root().join("plugins").join("dist");
    let sandbox = Sandbox::new(SandboxOptions {
        max_concurrent_calls: 4,
        ..SandboxOptions::default()
    })?
    .without_deferred_resets();
    let cases = sticky_agent_cases();

    let (rust, _) = compile(&sandbox, Path::new(common::STICKY_AGENT));
    let mut reference = Vec::new();
    for case in &cases {
        let (outcome, kept) = run_kv(&sandbox, &rust, case).await;
        let (branch, _, _) = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("Rust sticky-agent, {}: {e}", case.name));
        assert_eq!(
            (*branch, &kept),
            (case.branch, &case.kept),
            "the Rust sticky-agent itself, case {}: {outcome:?}",
            case.name
        );
        reference.push((outcome, kept));
    }
    // A store error is logged, so the log is compared too; a store error must have happened.
    assert!(
        reference.iter().any(|(outcome, _)| matches!(
            outcome,
            Ok((_, Some(reason), log)) if reason.contains("does not grant") && log.len() == 1
        )),
        "no case met a store the flow does not grant: {reference:?}"
    );

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for language in LANGUAGES {
        let path = dist.join(format!("sticky-agent-{}.wasm", language.suffix));
        let (plugin, _) = compile(&sandbox, &path);
        for (case, expected) in cases.iter().zip(&reference) {
            let got = run_kv(&sandbox, &plugin, case).await;
            compared += 1;
            if &got != expected {
                mismatches.push(format!(
                    "{} sticky-agent, case {} (query {:?}):\n    Rust: {expected:?}\n    {}: {got:?}",
                    language.name, case.name, case.query, language.name
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} calls differ from Rust:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    Ok(())
}

/// The largest query a server accepts by default (16 KiB), made of real-shaped parameters: the
/// `gather-single-key` sample followed by 92 call legs of five parameters each (476 parameters,
/// 16,240 bytes). A `decide` gets every parameter, and JavaScript's cost grows with their number
/// (the call details become JavaScript objects), so an eager `decide` in JavaScript is the call
/// that needs the most fuel: `sticky-agent` is one in every language. `ivr-menu` and `vip-caller`
/// are lean-deciders (package 0.1.4), whose cost does not grow with the query.
const LARGE_QUERY: &str = include_str!("fixtures/large/legs-16k.query");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_decides_the_largest_query_within_the_default_limits() -> anyhow::Result<()>
{
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let query = LARGE_QUERY.trim();
    assert!(
        (16_000..=passthru::config::DEFAULT_MAX_QUERY_BYTES).contains(&query.len()),
        "the large query is {} bytes",
        query.len()
    );
    let dist = repo_root().join("plugins").join("dist");
    let sandbox = Sandbox::new(SandboxOptions {
        max_concurrent_calls: 2,
        ..SandboxOptions::default()
    })?;
    // The default fuel and memory, as a flow gets them. The default deadline too in a release
    // build; a debug build of the host spends far longer handing the call details over (the
    // plugin's code is compiled the same), so there the deadline is the wider one a debug build
    // needs, and the release timings are in BENCHMARKS.md.
    let limits = Limits {
        deadline_ms: if cfg!(debug_assertions) {
            5_000
        } else {
            Limits::default().deadline_ms
        },
        ..Limits::default()
    };
    let vips: Config = &[("vip_numbers", VIPS)];
    let examples = [
        ("ivr-menu", common::IVR_MENU, &[][..], Branch::Failure),
        ("vip-caller", common::VIP_CALLER, vips, Branch::Success),
        // No store granted: it reads the whole call, then fails to reach its store.
        (
            "sticky-agent",
            common::STICKY_AGENT,
            &[][..],
            Branch::Failure,
        ),
    ];
    let mut failures = Vec::new();
    for (example, rust_path, config, expected) in examples {
        let case = case("16 KiB of legs", query, config, expected);
        let mut builds = vec![("Rust".to_owned(), PathBuf::from(rust_path))];
        for language in LANGUAGES {
            let path = dist.join(format!("{example}-{}.wasm", language.suffix));
            builds.push((language.name.to_owned(), path));
        }
        for (language, path) in builds {
            let (plugin, _) = compile(&sandbox, &path);
            let config: FlowConfig = config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let report = sandbox
                .decide(
                    &plugin,
                    &TenantShare::unlimited(),
                    call::parse(&case.query),
                    &limits,
                    Arc::new(Grants::config(config)),
                )
                .await;
            match report.outcome {
                Ok(decision) if decision.branch == expected => println!(
                    "{language} {example}: {} fuel of {}, {} us",
                    report.fuel_used,
                    limits.fuel,
                    report.elapsed.as_micros()
                ),
                other => failures.push(format!(
                    "{language} {example}: {other:?} after {} fuel",
                    report.fuel_used
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the largest query does not decide within the default limits:\n{}",
        failures.join("\n")
    );
    Ok(())
}

// --- What a plugin author meets in one language ------------------------------------------------

/// A call at `current_time` (Exotel's India time, `YYYY-MM-DD HH:MM:SS`), as Exotel's Passthru
/// applet sends it.
fn at(current_time: &str) -> String {
    format!(
        "CallSid=b6a1c9d2e3f4&CallFrom=09800000001&CallTo=08040000000&Direction=incoming\
         &CurrentTime={}",
        current_time.replace(' ', "%20")
    )
}

/// `python/business-hours`: the hours are kept in the flow's own time zone, loaded with
/// `zoneinfo` when the component was built (the sandbox has no time zone files at run time).
/// Every case crosses a boundary: of a day in India, of the shift's own day, of summer time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_keeps_business_hours_in_its_time_zone_across_day_boundaries()
-> anyhow::Result<()> {
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let sandbox = Sandbox::new(SandboxOptions {
        max_concurrent_calls: 2,
        ..SandboxOptions::default()
    })?;
    let (plugin, _) = compile(
        &sandbox,
        &repo_root().join("plugins/dist/business-hours-py.wasm"),
    );
    let night: Config = &[("open", "22:00"), ("close", "06:00"), ("days", "fri")];
    let london: Config = &[("timezone", "Europe/London"), ("close", "17:00")];
    let new_york: Config = &[("timezone", "America/New_York"), ("close", "17:00")];
    use Branch::{Failure, Success};
    // (India time of the call, the flow's config, the branch, the reason)
    let cases: [(&str, Config, Branch, &str); 14] = [
        // 09:00 to 18:00, Monday to Friday, India time: the defaults.
        ("2024-08-02 17:59:59", &[], Success, "open at Fri 17:59 IST"),
        (
            "2024-08-02 18:00:00",
            &[],
            Failure,
            "closed at Fri 18:00 IST",
        ),
        (
            "2024-08-03 10:00:00",
            &[],
            Failure,
            "closed at Sat 10:00 IST",
        ),
        ("2024-08-05 09:00:00", &[], Success, "open at Mon 09:00 IST"),
        // A Friday night shift, 22:00 to 06:00: its early hours are Saturday's.
        (
            "2024-08-02 23:30:00",
            night,
            Success,
            "open at Fri 23:30 IST",
        ),
        (
            "2024-08-03 05:59:00",
            night,
            Success,
            "open at Sat 05:59 IST",
        ),
        (
            "2024-08-03 06:00:00",
            night,
            Failure,
            "closed at Sat 06:00 IST",
        ),
        (
            "2024-08-03 23:00:00",
            night,
            Failure,
            "closed at Sat 23:00 IST",
        ),
        (
            "2024-08-02 05:00:00",
            night,
            Failure,
            "closed at Fri 05:00 IST",
        ),
        // London keeps summer time: 13:45 in India is 09:15 there in July, 08:15 in January.
        (
            "2024-07-31 13:45:00",
            london,
            Success,
            "open at Wed 09:15 BST",
        ),
        (
            "2024-01-31 13:45:00",
            london,
            Failure,
            "closed at Wed 08:15 GMT",
        ),
        (
            "2024-01-31 14:45:00",
            london,
            Success,
            "open at Wed 09:15 GMT",
        ),
        // Saturday 02:00 in India is still Friday afternoon in New York.
        (
            "2024-08-03 02:00:00",
            new_york,
            Success,
            "open at Fri 16:30 EDT",
        ),
        (
            "2024-08-03 03:00:00",
            new_york,
            Failure,
            "closed at Fri 17:30 EDT",
        ),
    ];
    let mut wrong = Vec::new();
    for (time, config, branch, reason) in cases {
        let case = Case {
            name: time.to_owned(),
            query: at(time),
            config: config.to_vec(),
            branch: Some(branch),
        };
        // About time zones, not time: a deadline no busy machine misses.
        let limits = Limits {
            deadline_ms: 1000,
            ..Limits::default()
        };
        let got = run(&sandbox, &plugin, &case, &limits).await;
        match &got {
            Ok((b, Some(r), _)) if *b == branch && r == reason => {}
            _ => wrong.push(format!(
                "{time} {config:?}: want {branch:?} {reason:?}, got {got:?}"
            )),
        }
    }
    assert!(wrong.is_empty(), "business hours:\n{}", wrong.join("\n"));

    // A zone the component did not load is the flow's mistake, said as such.
    let unknown = Case {
        name: "unknown zone".into(),
        query: at("2024-08-02 12:00:00"),
        config: vec![("timezone", "Mars/Olympus_Mons")],
        branch: Some(Failure),
    };
    let slack = Limits {
        deadline_ms: 1000,
        ..Limits::default()
    };
    let (branch, reason, _) = run(&sandbox, &plugin, &unknown, &slack)
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(branch, Failure);
    assert!(
        reason
            .as_deref()
            .unwrap_or("")
            .contains("Mars/Olympus_Mons"),
        "{reason:?}"
    );
    Ok(())
}

/// Calls a test fixture in `mode`, with no digits pressed, and answers its failure's kind and
/// message. With [`hook_limits`]: what is checked is the message, and a debug build on a busy
/// machine can pass the release deadline before a Python exception is raised.
async fn failure_of(sandbox: &Sandbox, plugin: &Plugin, mode: &'static str) -> (String, String) {
    let report = sandbox
        .decide(
            plugin,
            &TenantShare::unlimited(),
            call::parse("CallSid=abc"),
            &hook_limits(),
            Arc::new(Grants::config(
                [("mode".to_owned(), mode.to_owned())].into(),
            )),
        )
        .await;
    match report.outcome {
        Ok(decision) => panic!("mode {mode} decided {decision:?}"),
        Err(error) => (error.kind().as_str().to_owned(), error.to_string()),
    }
}

/// A Python or JavaScript plugin that throws traps; the error names what the plugin said (its
/// exception, and for Python where it was raised), not advice for native programs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_python_or_javascript_plugin_names_its_exception() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let sandbox = Sandbox::new(SandboxOptions {
        max_concurrent_calls: 2,
        ..SandboxOptions::default()
    })?;
    let dist = repo_root().join("plugins/dist");
    let (python, _) = compile(&sandbox, &dist.join("hostile-py.wasm"));
    let (javascript, _) = compile(&sandbox, &dist.join("hostile-js.wasm"));
    let cases: [(&str, &Plugin, &str, &[&str]); 4] = [
        (
            "Python",
            &python,
            "raise",
            &["KeyError: '9'", "app.py", "in decide"],
        ),
        (
            "Python",
            &python,
            "late-import",
            &["ModuleNotFoundError: No module named 'json'", "app.py"],
        ),
        (
            "JavaScript",
            &javascript,
            "throw",
            &["can't access property \"toUpperCase\"", "(at decide@"],
        ),
        (
            "JavaScript",
            &javascript,
            "reject",
            &["no menu entry for \"\""],
        ),
    ];
    let mut wrong = Vec::new();
    for (language, plugin, mode, said) in cases {
        let (kind, message) = failure_of(&sandbox, plugin, mode).await;
        println!("{language} {mode}: {kind}: {message}");
        let missing: Vec<&&str> = said.iter().filter(|s| !message.contains(**s)).collect();
        if kind != "trap" || !missing.is_empty() || message.contains("RUST_BACKTRACE") {
            wrong.push(format!(
                "{language} {mode}: {kind}: {message:?} (missing {missing:?})"
            ));
        }
        assert!(
            message.len() <= 1200,
            "{language} {mode}: {} bytes",
            message.len()
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// `passthru run --repeat` calls a Python plugin one call after another, each on a fresh
/// instance. A Python component holds 14 of the 64 core instances a one-call pool has: were
/// instances reset after the answer, as a server does, a few resets still pending (on a busy
/// machine) would leave the next call no room (`overloaded`). So `run`'s sandbox resets each
/// instance before the call returns; a server's defers the slow ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthru_run_repeats_a_python_plugin_without_filling_the_pool() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(build_polyglot_plugins).await?;
    let plugin = repo_root().join("plugins/dist/ivr-menu-py.wasm");

    let one_call = || {
        Sandbox::new(SandboxOptions {
            max_concurrent_calls: 1,
            ..SandboxOptions::default()
        })
    };
    for (sandbox, defers) in [
        (one_call()?, true),
        (one_call()?.without_deferred_resets(), false),
    ] {
        let (python, _) = compile(&sandbox, &plugin);
        let limits = Limits {
            deadline_ms: 5_000,
            ..Limits::default()
        };
        // Three calls: even with every reset still pending, three Python instances fit the pool.
        for call in 1..=3 {
            let report = sandbox
                .decide(
                    &python,
                    &TenantShare::unlimited(),
                    call::parse("digits=1"),
                    &limits,
                    Arc::default(),
                )
                .await;
            if let Err(error) = report.outcome {
                panic!("defers: {defers}, call {call}: {error}");
            }
        }
        // A Python instance's reset is slow (tens of microseconds at least), so a sandbox that
        // may defer it does.
        assert_eq!(sandbox.resets_deferred() > 0, defers, "defers: {defers}");
    }

    // And end to end: forty calls in a row.
    // The compiled plugin is cached in the build folder: a debug build takes minutes to compile
    // a Python component, and the cache (keyed by content) is what `run` uses anyway.
    let cache = repo_root().join("target").join("run-cache");
    let output = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .arg("run")
        .arg(&plugin)
        .args(["--query", "CallSid=abc&digits=%221%22", "--repeat", "40"])
        // A debug build of the host is slow to hand a Python plugin its call; the point here is
        // the pool, not the time.
        .args(["--deadline-ms", "5000"])
        .env("PASSTHRU_CACHE_DIR", &cache)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(answer["decision"], "success", "{answer}");
    assert_eq!(answer["timing"]["calls"], 40, "{answer}");
    Ok(())
}
