//! What the server logs for a Passthru call, read from a real `passthru serve`'s stderr.
//!
//! The request's span is made only when something is logged in it (see
//! `RequestSpan` in host/src/api/passthru.rs): at the default level a decided call logs nothing,
//! and a failed one logs its warning inside the request's span, with its tenant, flow and
//! `CallSid`; with debug events on, the decision and the plugin's own lines are in that span too.

mod common;

use common::{HOSTILE, ServeProcess, TempDir, flow};

/// A `passthru serve` child process whose stderr is collected, on a config of its own.
struct Server {
    process: ServeProcess,
    /// Holds the config and the data directory until the server is stopped.
    _dir: TempDir,
}

impl Server {
    fn start(tag: &str, rust_log: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("logs-{tag}"));
        let config = dir.0.join("passthru.toml");
        let mut toml = flow("demo", "ivr", "builtin:ivr-menu", "");
        toml.push_str(&flow("demo", "vip", "builtin:vip-caller", ""));
        toml.push_str(&flow(
            "evil",
            "boom",
            HOSTILE,
            "fallback = \"success\"\n[flow.config]\nmode = \"trap\"",
        ));
        std::fs::write(&config, toml)?;
        let process = ServeProcess::start(&config, &dir.0.join("data"), rust_log)?;
        Ok(Self { process, _dir: dir })
    }

    async fn get(&self, path_and_query: &str) -> anyhow::Result<u16> {
        let url = format!("http://{}{path_and_query}", self.process.addr);
        Ok(reqwest::get(url).await?.status().as_u16())
    }

    /// Stops the server (SIGKILL: the log lines of answered calls are written before their
    /// answers) and returns every line it wrote.
    fn stop(self) -> anyhow::Result<Vec<String>> {
        self.process.kill()
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
