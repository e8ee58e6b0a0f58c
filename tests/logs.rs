//! What the server logs for a Passthru call, read from a real `passthru serve`'s stderr.
//!
//! The request's span is made only when something is logged in it (see
//! `RequestSpan` in host/src/api/passthru.rs): at the default level a decided call logs nothing,
//! and a failed one logs its warning inside the request's span, with its tenant, flow and
//! `CallSid`; with debug events on, the decision and the plugin's own lines are in that span too.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{HOSTILE, flow};

/// A `passthru serve` child process whose stderr is collected.
struct Server {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(tag: &str, rust_log: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("passthru-logs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("passthru.toml");
        let mut toml = flow("demo", "ivr", "builtin:ivr-menu", "");
        toml.push_str(&flow("demo", "vip", "builtin:vip-caller", ""));
        toml.push_str(&flow(
            "evil",
            "boom",
            HOSTILE,
            "fallback = \"success\"\n[flow.config]\nmode = \"trap\"",
        ));
        std::fs::write(&config, toml)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_passthru"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(120))
                .map_err(|_| anyhow::anyhow!("the server did not start: {seen:?}"))?;
            if line.contains("listening")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                break addr.trim().to_owned();
            }
            seen.push(line);
        };
        Ok(Self {
            child,
            addr,
            lines,
            dir,
        })
    }

    async fn get(&self, path_and_query: &str) -> anyhow::Result<u16> {
        let url = format!("http://{}{path_and_query}", self.addr);
        Ok(reqwest::get(url).await?.status().as_u16())
    }

    /// Stops the server (SIGKILL: the log lines of answered calls are written before their
    /// answers) and returns every line it wrote.
    fn stop(mut self) -> anyhow::Result<Vec<String>> {
        self.child.kill()?;
        self.child.wait()?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(self.lines.iter().collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_default_level_a_failure_is_logged_in_its_request_and_a_decision_not_at_all()
-> anyhow::Result<()> {
    let server = Server::start("default", "info")?;
    assert_eq!(
        server
            .get("/passthru/demo/ivr?CallSid=quiet-1&digits=%221%22")
            .await?,
        200
    );
    assert_eq!(server.get("/passthru/evil/boom?CallSid=loud-1").await?, 200);
    let lines = server.stop()?;
    let failure = lines
        .iter()
        .find(|l| l.contains("plugin failed"))
        .unwrap_or_else(|| panic!("no warning for the failed call in {lines:#?}"));
    for field in [
        "request{",
        "route=\"/passthru/{tenant}/{flow}\"",
        "tenant=evil",
        "flow=boom",
        "call_sid=loud-1",
        "kind=\"trap\"",
    ] {
        assert!(failure.contains(field), "{field} missing from {failure}");
    }
    assert!(
        lines.iter().all(|l| !l.contains("quiet-1")),
        "a decided call logged something at the default level: {lines:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_debug_on_a_decision_and_the_plugins_lines_are_logged_in_its_request()
-> anyhow::Result<()> {
    let server = Server::start("debug", "info,passthru::plugin=debug,passthru::api=debug")?;
    assert_eq!(
        server
            .get("/passthru/demo/vip?CallSid=chatty-1&CallFrom=09800000009")
            .await?,
        302
    );
    let lines = server.stop()?;
    let mine: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("call_sid=chatty-1"))
        .collect();
    assert!(
        mine.iter()
            .any(|l| l.contains("plugin:") && l.contains("tenant=demo")),
        "no plugin line in the request's span: {lines:#?}"
    );
    assert!(
        mine.iter()
            .any(|l| l.contains("decided") && l.contains("flow=vip")),
        "no decision in the request's span: {lines:#?}"
    );
    Ok(())
}
