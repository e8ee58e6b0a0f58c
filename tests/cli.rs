//! `passthru run`: the plugin author's runner, as a user calls it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    ASYNC_PROBE, GEO_ROUTER, HOOK_PROBE, HOSTILE, IVR_MENU, OUTBOUND_PROBE, STICKY_AGENT,
    VIP_CALLER, samples,
};
use serde_json::Value;

/// A folder of this test process's own, so runs never touch the user's cache.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("passthru-cli-{}-{name}", std::process::id()))
}

fn run(args: &[&str]) -> anyhow::Result<(i32, Value)> {
    let (code, json, _) = run_with_cache(&scratch("cache"), args)?;
    Ok((code, json))
}

/// `passthru run ARGS` with its compile cache in `cache`: exit status, JSON, stderr.
fn run_with_cache(cache: &Path, args: &[&str]) -> anyhow::Result<(i32, Value, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .arg("run")
        .args(args)
        .env("PASSTHRU_CACHE_DIR", cache)
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_str(&stdout)
        .map_err(|e| anyhow::anyhow!("not JSON ({e}): {stdout}\nstderr: {stderr}"))?;
    Ok((out.status.code().unwrap_or(-1), json, stderr))
}

#[test]
fn a_second_run_loads_the_plugin_from_the_cache_and_warm_calls_are_timed() -> anyhow::Result<()> {
    let cache = scratch("cache-reuse");
    let args = [IVR_MENU, "--query", "digits=%221%22", "--repeat", "5"];
    let (code, first, stderr) = run_with_cache(&cache, &args)?;
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["timing"]["plugin"], "compiled");
    assert!(stderr.contains("compiling"), "{stderr}");
    let timing = &first["timing"];
    assert_eq!(timing["calls"], 5);
    assert_eq!(timing["first_us"], first["elapsed_us"]);
    let (min, median, max) = (
        timing["warm_min_us"].as_u64().unwrap(),
        timing["warm_median_us"].as_u64().unwrap(),
        timing["warm_max_us"].as_u64().unwrap(),
    );
    assert!(min <= median && median <= max, "{timing}");

    let (code, second, stderr) = run_with_cache(&cache, &args)?;
    assert_eq!(code, 0, "{second}");
    assert_eq!(second["timing"]["plugin"], "cached");
    assert_eq!(second["timing"]["compile_ms"], 0);
    assert!(!stderr.contains("compiling"), "{stderr}");
    assert_eq!(second["decision"], first["decision"]);
    assert_eq!(second["fuel_used"], first["fuel_used"]);

    // A damaged cache entry is compiled again, never trusted.
    for entry in std::fs::read_dir(&cache)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path)?;
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes)?;
        }
    }
    let (code, third, _) = run_with_cache(&cache, &args)?;
    assert_eq!(code, 0, "{third}");
    assert_eq!(third["timing"]["plugin"], "compiled");

    // --no-cache compiles, whatever the cache holds.
    let (_, fourth, _) = run_with_cache(&cache, &[&args[..], &["--no-cache"]].concat())?;
    assert_eq!(fourth["timing"]["plugin"], "compiled");
    // One call: no warm figures to report.
    let (_, once, _) = run_with_cache(&cache, &[IVR_MENU, "--repeat", "1"])?;
    assert_eq!(once["timing"]["calls"], 1);
    assert!(once["timing"].get("warm_median_us").is_none(), "{once}");
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

/// A plugin that grows its memory in a call is told so: the run here cannot show what that costs
/// a server on more than one core. One that fits in the memory it declares hears nothing.
#[test]
fn a_call_that_grows_memory_is_reported_with_a_word_on_stderr() -> anyhow::Result<()> {
    let cache = scratch("grow");
    let args = [
        HOSTILE,
        "--config",
        "mode=grow",
        "--config",
        "kib=512",
        "--repeat",
        "3",
    ];
    let (code, json, stderr) = run_with_cache(&cache, &args)?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["reason"], "wrote 512 KiB", "{json}");
    let memory = &json["timing"]["memory"];
    let grown = memory["grown_bytes"].as_u64().unwrap();
    // The block itself, and at most one more 64 KiB page for the allocator's own header (the
    // plugin's allocator, wasi-libc's, asks for what it needs and no more).
    assert!(
        (512 << 10..=(512 << 10) + (64 << 10)).contains(&grown),
        "{memory}"
    );
    let initial = memory["initial_bytes"].as_u64().unwrap();
    assert!(initial > 0 && initial % (64 << 10) == 0, "{memory}");
    assert!(stderr.contains("grew its memory by up to"), "{stderr}");

    let (code, json, stderr) = run_with_cache(&cache, &[IVR_MENU, "--query", "digits=1"])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["timing"]["memory"]["grown_bytes"], 0, "{json}");
    assert!(json["timing"]["memory"]["initial_bytes"].as_u64().unwrap() > 0);
    assert!(!stderr.contains("grew"), "{stderr}");

    // Every export's path counts from its own instance: `hook-probe` grows a page in its eager
    // `decide` and in its hooks; `record` (async-probe) grows nothing.
    for args in [
        &[HOOK_PROBE][..],
        &[HOOK_PROBE, "--hook", "greeting"],
        &[ASYNC_PROBE],
    ] {
        let (code, json, _) = run_with_cache(&cache, args)?;
        assert_eq!(code, 0, "{args:?}: {json}");
        let memory = &json["timing"]["memory"];
        assert!(
            memory["initial_bytes"].as_u64().unwrap() > 0,
            "{args:?}: {memory}"
        );
        let grows = args[0] == HOOK_PROBE;
        assert_eq!(
            memory["grown_bytes"].as_u64().unwrap() > 0,
            grows,
            "{args:?}: {memory}"
        );
    }
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

#[test]
fn the_query_can_come_from_a_file() -> anyhow::Result<()> {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/exotel/gather-single-key.query"
    );
    let (code, json) = run(&[IVR_MENU, "--query-file", fixture])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["call"]["call_sid"], "f0e1d2c3b4a5968778695a4b3c2d1e0f");

    // As copied from a browser: a leading `?` and a trailing newline.
    let file = scratch("query");
    std::fs::write(&file, "?CallSid=from-file&digits=%221%22\n")?;
    let (code, json) = run(&[IVR_MENU, "--query-file", file.to_str().unwrap()])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["call"]["call_sid"], "from-file");
    assert_eq!(json["decision"], "success");
    std::fs::remove_file(&file)?;

    let out = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(["run", IVR_MENU, "--query-file", "/nonexistent/q"])
        .output()?;
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/q"), "{stderr}");
    Ok(())
}

#[test]
fn a_repeat_out_of_range_is_refused() -> anyhow::Result<()> {
    for repeat in ["0", "10001", "many"] {
        let out = Command::new(env!("CARGO_BIN_EXE_passthru"))
            .args(["run", IVR_MENU, "--repeat", repeat])
            .output()?;
        assert_eq!(out.status.code(), Some(2), "--repeat {repeat}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--repeat"), "{stderr}");
    }
    Ok(())
}

#[test]
fn it_prints_the_decision_what_the_plugin_saw_and_what_it_cost() -> anyhow::Result<()> {
    let (_, query) = samples()
        .into_iter()
        .find(|(name, _)| name == "gather-single-key")
        .expect("sample gather-single-key");
    let query = format!("{query}&digits=%221%22");
    let (code, json) = run(&[IVR_MENU, "--query", &query])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["decision"], "success");
    assert_eq!(json["status"], 200);
    assert!(json["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(json["fuel_used"].as_u64().unwrap() > 0);
    assert!(json["elapsed_us"].as_u64().is_some());
    assert!(json["log"].is_array());
    // The call as the plugin saw it: quotes stripped, the last digits win, nothing lost.
    assert_eq!(json["call"]["digits"], "1");
    assert_eq!(json["call"]["call_sid"], "f0e1d2c3b4a5968778695a4b3c2d1e0f");
    assert_eq!(json["call"]["direction"], "incoming");
    let params = json["call"]["params"].as_array().unwrap();
    assert_eq!(params.len(), query.split('&').count());
    Ok(())
}

#[test]
fn the_failure_branch_exits_zero_with_status_302() -> anyhow::Result<()> {
    let (code, json) = run(&[IVR_MENU, "--query", "digits=%222%22"])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["decision"], "failure");
    assert_eq!(json["status"], 302);
    Ok(())
}

#[test]
fn key_value_stores_are_granted_in_memory_and_filled_from_a_file() -> anyhow::Result<()> {
    let dir = scratch("kv");
    std::fs::create_dir_all(&dir)?;
    let agents = dir.join("agents.csv");
    std::fs::write(&agents, "key,value\n09800000001,09811111111\n")?;
    let store = format!("agents={}", agents.display());
    let query = "CallFrom=09800000001";
    let (code, json) = run(&[STICKY_AGENT, "--query", query, "--kv-store", &store])?;
    assert_eq!(
        (code, &json["decision"]),
        (0, &Value::from("success")),
        "{json}"
    );
    assert!(
        json["reason"].as_str().unwrap().contains("09811111111"),
        "{json}"
    );

    // Without the store, the plugin is told it is not granted.
    let (_, json) = run(&[STICKY_AGENT, "--query", query])?;
    assert_eq!(json["decision"], "failure");
    assert!(
        json["reason"].as_str().unwrap().contains("does not grant"),
        "{json}"
    );

    // A bad file is refused, naming the line.
    std::fs::write(&agents, "key,value\n\"unterminated\n")?;
    let (code, json) = run(&[STICKY_AGENT, "--query", query, "--kv-store", &store])?;
    assert_eq!(
        (code, &json["error"]["kind"]),
        (2, &Value::from("invalid_kv")),
        "{json}"
    );
    Ok(())
}

/// An HTTP server on loopback that answers each connection `200` with the body `pong`.
fn pong_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong",
            );
        }
    });
    addr
}

#[test]
fn outbound_requests_go_only_where_the_flags_allow_and_are_shown() -> anyhow::Result<()> {
    let addr = pong_server();
    let url = format!("--config=url=http://{addr}/ping");
    let host = format!("http://{addr}");
    let (code, json) = run(&[
        OUTBOUND_PROBE,
        &url,
        "--outbound-host",
        &host,
        "--outbound-allow-range",
        "127.0.0.0/8",
        "--repeat",
        "1",
    ])?;
    assert_eq!(
        (code, &json["decision"]),
        (0, &Value::from("success")),
        "{json}"
    );
    assert!(json["reason"].as_str().unwrap().contains("pong"), "{json}");
    assert_eq!(json["outbound"][0]["status"], 200, "{json}");

    // Listed but on loopback without the range: refused, and shown as refused.
    let (_, json) = run(&[
        OUTBOUND_PROBE,
        &url,
        "--outbound-host",
        &host,
        "--repeat",
        "1",
    ])?;
    assert_eq!(json["decision"], "failure", "{json}");
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("DestinationIpProhibited"),
        "{json}"
    );
    // Not listed: refused.
    let (_, json) = run(&[OUTBOUND_PROBE, &url, "--repeat", "1"])?;
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{json}"
    );
    // A bad entry is refused before anything runs.
    let (code, json) = run(&[OUTBOUND_PROBE, &url, "--outbound-host", "ftp://x"])?;
    assert_eq!(
        (code, &json["error"]["kind"]),
        (2, &Value::from("invalid_outbound")),
        "{json}"
    );
    Ok(())
}

#[test]
fn config_values_reach_the_plugin_and_its_log_is_shown() -> anyhow::Result<()> {
    let query = "CallFrom=09800000001&From=09800000001";
    let (code, json) = run(&[
        VIP_CALLER,
        "--query",
        query,
        "--config",
        "vip_numbers=09800000002, 09800000001",
    ])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["decision"], "success");
    let log = json["log"].as_array().unwrap();
    assert!(
        log.iter()
            .any(|l| l["level"] == "info" && l["message"].as_str().unwrap().contains("09800000001")),
        "{log:?}"
    );

    let (code, json) = run(&[VIP_CALLER, "--query", query])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["decision"], "failure");
    assert!(
        json["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["level"] == "warn")
    );
    Ok(())
}

#[test]
fn failures_exit_2_with_their_kind() -> anyhow::Result<()> {
    let cases: &[(&[&str], &str)] = &[
        (&["--config", "mode=trap"], "trap"),
        (
            &["--config", "mode=loop", "--fuel", "100000"],
            "out_of_fuel",
        ),
        (
            &[
                "--config",
                "mode=loop",
                "--fuel",
                "1000000000000",
                "--deadline-ms",
                "30",
            ],
            "deadline",
        ),
        (
            &[
                "--config",
                "mode=memory",
                "--memory-mb",
                "16",
                "--fuel",
                "1000000000",
                // A debug build on a busy machine can take longer than the default 50 ms to
                // touch 16 MiB; the memory cap, not the clock, is what this case checks.
                "--deadline-ms",
                "5000",
            ],
            "memory_limit",
        ),
        (&["--config", "mode=recurse"], "trap"),
    ];
    for (args, kind) in cases {
        let mut all = vec![HOSTILE];
        all.extend_from_slice(args);
        let (code, json) = run(&all)?;
        assert_eq!(code, 2, "{args:?}: {}", json["error"]);
        assert_eq!(json["error"]["kind"], *kind, "{args:?}: {}", json["error"]);
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // A trap carries the guest's own message.
    let (_, json) = run(&[HOSTILE, "--config", "mode=trap"])?;
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("deliberate trap"), "{message}");
    Ok(())
}

#[test]
fn a_flood_of_output_is_capped_not_fatal() -> anyhow::Result<()> {
    for mode in ["stdout-flood", "log-flood"] {
        let mode = format!("mode={mode}");
        let generous = ["--fuel", "10000000000", "--deadline-ms", "10000"];
        let (code, json) = run(&[&[HOSTILE, "--config", &mode], &generous[..]].concat())?;
        assert_eq!(code, 0, "{mode}: {}", json["error"]);
        assert_eq!(json["decision"], "success");
        let kept = json["log"].as_array().unwrap().len() as u64;
        assert!(kept <= passthru::sandbox::MAX_LOG_LINES as u64, "{mode}");
        assert!(json["log_dropped"].as_u64().unwrap() > 0, "{mode}");
    }
    Ok(())
}

#[test]
fn what_is_not_a_plugin_is_refused_clearly() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("passthru-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "garbage.wasm",
            b"this is not wasm at all",
            "not a WebAssembly binary",
        ),
        ("core.wasm", b"\0asm\x01\0\0\0", "core WebAssembly module"),
        ("empty.wasm", b"", "not a WebAssembly binary"),
        // A valid component that exports nothing.
        ("hollow.wasm", b"\0asm\x0d\0\x01\0", "decide"),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        let (code, json) = run(&[path.to_str().unwrap(), "--query", "CallSid=x"])?;
        assert_eq!(code, 2, "{name}: {json}");
        assert_eq!(json["error"]["kind"], "invalid_component", "{name}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: {message}");
    }
    let (code, json) = run(&[dir.join("absent.wasm").to_str().unwrap()])?;
    assert_eq!(code, 2);
    assert_eq!(json["error"]["kind"], "io");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_plugin_gets_no_files_env_args_or_network() -> anyhow::Result<()> {
    let (code, json) = run(&[HOSTILE, "--config", "mode=escape", "--deadline-ms", "2000"])?;
    assert_eq!(code, 0, "{}", json["error"]);
    assert_eq!(json["reason"], "contained", "{json}");
    assert_eq!(json["decision"], "success");
    Ok(())
}

#[test]
fn a_record_only_plugin_is_run_as_event_1_and_its_error_is_a_failure() -> anyhow::Result<()> {
    let (code, json) = run(&[ASYNC_PROBE, "--query", "CallSid=abc"])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["recorded"], true);
    assert_eq!(json["event"]["id"], 1);
    assert_eq!(json["event"]["attempt"], 1);
    assert_eq!(
        json["log"][0]["message"],
        "recorded call_sid=abc event=1 attempt=1"
    );

    let failing = ["--config", "fail_attempts=2", "--query", "CallSid=abc"];
    let (code, json) = run(&[&[ASYNC_PROBE, "--record", "2"], &failing[..]].concat())?;
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["error"]["kind"], "plugin_error");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attempt 2 of 2")
    );
    let (code, json) = run(&[&[ASYNC_PROBE, "--record", "3"], &failing[..]].concat())?;
    assert_eq!(
        (code, &json["event"]["attempt"]),
        (0, &serde_json::json!(3)),
        "{json}"
    );

    // Asked to record, a decide-only plugin says what it lacks.
    let (code, json) = run(&[IVR_MENU, "--record"])?;
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["error"]["kind"], "invalid_component");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`record`")
    );
    Ok(())
}

#[test]
fn a_hook_prints_exactly_what_the_server_would_answer() -> anyhow::Result<()> {
    // A plugin that exports only `select` is run through it.
    let (code, json) = run(&[
        GEO_ROUTER,
        "--repeat",
        "1",
        "--query",
        "CallFrom=%2B918012345678",
        "--config",
        "routes=+91:india,+9180:south",
    ])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["hook"], "select");
    assert_eq!(json["status"], 200);
    assert_eq!(json["branch"], "success");
    assert_eq!(json["content_type"], "text/plain");
    assert_eq!(json["body"], r#"{"select":"south"}"#);

    // `--hook` picks the export; `--exotel-version` shapes a Connect plan as the server does.
    let (code, json) = run(&[
        HOOK_PROBE,
        "--repeat",
        "1",
        "--hook",
        "connect",
        "--exotel-version",
        "1.1",
    ])?;
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        (&json["hook"], &json["status"]),
        (&"connect".into(), &200.into())
    );
    assert_eq!(json["content_type"], "application/json");
    let body: Value = serde_json::from_str(json["body"].as_str().unwrap())?;
    assert_eq!(body["destination"][0]["contact_uri"], "+910000000000");

    // A hook the plugin does not export is a clear failure.
    let (code, json) = run(&[GEO_ROUTER, "--repeat", "1", "--hook", "gather"])?;
    assert_eq!(code, 2, "{json}");
    assert_eq!(json["error"]["kind"], "invalid_component");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not export `gather`"),
        "{json}"
    );
    Ok(())
}
