//! Nothing accepted is lost: the real `passthru` binary is killed with SIGKILL in the middle of a
//! stream of async requests, restarted on the same data directory, and every request that was
//! answered `200` must reach the plugin at least once.
//!
//! What the plugin saw is read from the server's own log: the `async-probe` plugin logs
//! `recorded call_sid=... event=... attempt=...` on every attempt, and the server writes plugin
//! log lines to stderr under `RUST_LOG=passthru::plugin=debug`, as each attempt ends and before
//! its outcome is committed. The flow fails every first attempt and retries 300 ms later, so at
//! the kill many events wait in the queue, and only a line with an attempt of 2 or more (where the
//! plugin succeeds) counts as handled: on a loaded machine the host may end an attempt itself (its
//! deadline, a full pool), and the next one counts. A success whose outcome was lost in the crash
//! runs again: a duplicate, reported. The queue, checked at the end, has nothing left or dead.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ASYNC_PROBE, ServeProcess, TempDir};

/// Requests answered `200` before the kill, and in all.
const BEFORE_KILL: usize = 2_500;
const TOTAL: usize = 5_200;
/// Concurrent connections sending requests.
const CONNECTIONS: usize = 8;
/// The server's log: the plugin's lines, which say what it saw.
const SERVER_LOG: &str = "warn,passthru=info,passthru::plugin=debug";

/// Sends requests from [`CONNECTIONS`] connections until `goal` of them got `200` or a request
/// failed (the server died); returns the CallSids that got `200`.
async fn send_until(
    addr: &str,
    prefix: &str,
    goal: usize,
    accepted: Arc<AtomicUsize>,
) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (addr, prefix) = (addr.to_owned(), prefix.to_owned());
            let (accepted, stop) = (accepted.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut ok = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) || accepted.load(Ordering::Relaxed) >= goal {
                        break;
                    }
                    let sid = format!("{prefix}-{c}-{n}");
                    let url =
                        format!("http://{addr}/passthru/crash/log?CallSid={sid}&CallFrom=0980");
                    match client.get(url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.push(sid);
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("unexpected status {} for {sid}", r.status()),
                        Err(_) => {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("sender task"));
    }
    all
}

/// The CallSids the plugin logged, with how many times each.
fn seen_by_plugin(lines: &[String]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in lines {
        if let Some(rest) = line.split("recorded call_sid=").nth(1) {
            let mut words = rest.split_whitespace();
            let sid = words.next().unwrap_or("").to_owned();
            let attempt = words
                .nth(1)
                .and_then(|w| w.strip_prefix("attempt="))
                .and_then(|n| n.parse::<u32>().ok());
            if attempt.is_some_and(|n| n >= 2) {
                *seen.entry(sid).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// How many events a start resumed, from its `resuming the async queue events=N` line.
fn resumed(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.contains("resuming the async queue"))
        .filter_map(|l| {
            l.split("events=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_answered_200_is_handled_after_a_kill_9() -> anyhow::Result<()> {
    let dir = TempDir::new("crash");
    let config = dir.0.join("passthru.toml");
    std::fs::write(
        &config,
        format!(
            "[[flow]]\ntenant = \"crash\"\nname = \"log\"\nplugin = \"{ASYNC_PROBE}\"\n\
             mode = \"async\"\n[flow.retry]\nbackoff_ms = 300\nmax_backoff_ms = 300\n\
             [flow.config]\nfail_attempts = \"1\"\n"
        ),
    )?;
    let data = dir.0.join("data");

    // Kill the server while requests are pouring in.
    let server = ServeProcess::start(&config, &data, SERVER_LOG)?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (addr, accepted) = (server.addr.clone(), accepted.clone());
        tokio::spawn(async move { send_until(&addr, "a", usize::MAX, accepted).await })
    };
    let started = Instant::now();
    while accepted.load(Ordering::Relaxed) < BEFORE_KILL {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "too slow to accept"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_log = server.kill()?;
    let mut answered = sender.await?;
    let at_kill = answered.len();

    // Restart on the same data, and send the rest.
    let server = ServeProcess::start(&config, &data, SERVER_LOG)?;
    let accepted = Arc::new(AtomicUsize::new(at_kill));
    answered.extend(send_until(&server.addr, "b", TOTAL, accepted).await);
    anyhow::ensure!(
        answered.len() >= TOTAL,
        "only {} answered 200",
        answered.len()
    );

    // Wait until the plugin has seen every one, then stop.
    let wanted: BTreeSet<&String> = answered.iter().collect();
    let started = Instant::now();
    loop {
        let lines = server.lines();
        let mut seen = seen_by_plugin(&first_log);
        for (sid, n) in seen_by_plugin(&lines) {
            *seen.entry(sid).or_insert(0) += n;
        }
        let missing: Vec<&&String> = wanted.iter().filter(|s| !seen.contains_key(**s)).collect();
        if missing.is_empty() {
            let duplicates = wanted.iter().filter(|s| seen[**s] > 1).count();
            let resumed = resumed(&lines);
            eprintln!(
                "crash test: {} answered 200 ({at_kill} before the kill), all handled; \
                 the restart resumed {resumed} events; {duplicates} handled more than once",
                answered.len()
            );
            assert!(resumed > 0, "the kill should have left events in the queue");
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = server.kill();
            anyhow::bail!(
                "{} requests answered 200 never reached the plugin, e.g. {:?}",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The queue agrees: nothing left, nothing dead.
    let lines = server.kill()?;
    assert!(
        !lines.iter().any(|l| l.contains("dead letter")),
        "no event should have died"
    );
    Ok(())
}
