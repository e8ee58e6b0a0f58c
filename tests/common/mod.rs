//! Shared by the integration tests: a real server on 127.0.0.1:0 and the example plugins, built
//! from `plugins/` by the host's build script.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use passthru::api::{self, AppState};
use passthru::config::ServerConfig;
use passthru::registry::FlowTable;
use passthru::sandbox::{Sandbox, SandboxOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const IVR_MENU: &str = env!("PASSTHRU_PLUGIN_IVR_MENU");
pub const VIP_CALLER: &str = env!("PASSTHRU_PLUGIN_VIP_CALLER");
pub const HOSTILE: &str = env!("PASSTHRU_PLUGIN_HOSTILE");

/// The shared samples of real-shaped Exotel queries, beside the checkout.
pub fn samples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples/exotel");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let query = std::fs::read_to_string(&path).unwrap().trim().to_owned();
            (name, query)
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 6,
        "expected the shared samples in {}",
        dir.display()
    );
    out
}

/// A running server; dropping it does not stop it, call [`TestServer::stop`].
pub struct TestServer {
    pub addr: SocketAddr,
    pub sandbox: Arc<Sandbox>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts a server for the flows in `toml` (plugin paths are absolute).
    pub async fn start(toml: &str) -> anyhow::Result<Self> {
        let config = ServerConfig::parse(toml, "test config", Path::new("/"))?;
        let sandbox = Arc::new(Sandbox::new(SandboxOptions {
            max_concurrent_calls: config.max_concurrent_calls,
        })?);
        let flows = {
            let sandbox = sandbox.clone();
            tokio::task::spawn_blocking(move || FlowTable::load(&sandbox, &config.flows)).await??
        };
        let state = AppState {
            sandbox: sandbox.clone(),
            flows: Arc::new(flows),
            max_query_bytes: config.max_query_bytes,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            sandbox,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            stop: Some(stop),
            task,
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.client.get(self.url(path_and_query)).send().await?)
    }

    /// Asks the server to shut down and waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await??;
        Ok(())
    }
}

/// A `[[flow]]` table for a test config.
pub fn flow(tenant: &str, name: &str, plugin: &str, extra: &str) -> String {
    format!("[[flow]]\ntenant = \"{tenant}\"\nname = \"{name}\"\nplugin = \"{plugin}\"\n{extra}\n")
}
