//! Shared by the integration tests: a real server on 127.0.0.1:0 and the example plugins, built
//! from `plugins/` by the host's build script.

#![allow(dead_code)]

pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use passthru::api::{self, AppState};
use passthru::config::ServerConfig;
use passthru::sandbox::Sandbox;
use passthru::server::{self, StartOptions};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The server's own binary: test servers compile uploads in its `compile-worker` subcommand.
pub const PASSTHRU: &str = env!("CARGO_BIN_EXE_passthru");
pub const IVR_MENU: &str = env!("PASSTHRU_PLUGIN_IVR_MENU");
pub const VIP_CALLER: &str = env!("PASSTHRU_PLUGIN_VIP_CALLER");
pub const HOSTILE: &str = env!("PASSTHRU_PLUGIN_HOSTILE");
pub const ASYNC_PROBE: &str = env!("PASSTHRU_PLUGIN_ASYNC_PROBE");
pub const GEO_ROUTER: &str = env!("PASSTHRU_PLUGIN_GEO_ROUTER");
pub const AGENT_DIALER: &str = env!("PASSTHRU_PLUGIN_AGENT_DIALER");
pub const GREETING: &str = env!("PASSTHRU_PLUGIN_GREETING");
pub const HOOK_PROBE: &str = env!("PASSTHRU_PLUGIN_HOOK_PROBE");
pub const STICKY_AGENT: &str = env!("PASSTHRU_PLUGIN_STICKY_AGENT");
pub const CRM_PUSH: &str = env!("PASSTHRU_PLUGIN_CRM_PUSH");
pub const OUTBOUND_PROBE: &str = env!("PASSTHRU_PLUGIN_OUTBOUND_PROBE");
pub const SMS_REPLY: &str = env!("PASSTHRU_PLUGIN_SMS_REPLY");
pub const IVR_GATHER: &str = env!("PASSTHRU_PLUGIN_IVR_GATHER");
pub const COIN_FLIP: &str = env!("PASSTHRU_PLUGIN_COIN_FLIP");
pub const LEAN_PROBE: &str = env!("PASSTHRU_PLUGIN_LEAN_PROBE");

/// The real-shaped Exotel queries kept as the project's test fixtures.
pub fn samples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/exotel");
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
        "expected the Exotel fixtures in {}",
        dir.display()
    );
    out
}

/// The operator token every test server uses.
pub const OPERATOR: &str = "test-operator-token";

/// A fresh data directory under the system's temp folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).expect("randomness");
        let dir = std::env::temp_dir().join(format!(
            "passthru-{tag}-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(suffix)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which store a test server keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    /// The embedded SQLite store in the data directory.
    Sqlite,
    /// A PostgreSQL database (its connection string), shared by every server given it.
    Postgres(String),
}

impl Db {
    /// A fresh database on the test PostgreSQL server.
    pub fn postgres() -> Self {
        Db::Postgres(pg::database())
    }

    fn url(&self) -> Option<String> {
        match self {
            Db::Sqlite => None,
            Db::Postgres(url) => Some(url.clone()),
        }
    }
}

/// Runs each named `async fn NAME(db: Db) -> anyhow::Result<()>` of the file on both stores, as
/// the tests `on_sqlite::NAME` and `on_postgres::NAME`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::common::Db::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    // The blocking client must not run on the runtime's threads.
                    let db = tokio::task::spawn_blocking($crate::common::Db::postgres).await?;
                    super::$name(db).await
                }
            )*
        }
    };
}

/// A running server; call [`TestServer::stop`] to shut it down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub sandbox: Arc<Sandbox>,
    pub state: AppState,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: Option<TempDir>,
}

impl TestServer {
    /// Starts a server for the flows in `toml` (plugin paths are absolute), on a fresh data
    /// directory of its own.
    pub async fn start(toml: &str) -> anyhow::Result<Self> {
        Self::start_on(toml, &Db::Sqlite).await
    }

    /// Starts a server for the flows in `toml` on the store `db`, with a fresh data directory
    /// of its own.
    pub async fn start_on(toml: &str, db: &Db) -> anyhow::Result<Self> {
        let dir = TempDir::new("server");
        let mut server = Self::start_in_on(toml, &dir.0, db).await?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// Starts a server on an existing data directory (to test restarts).
    pub async fn start_in(toml: &str, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_in_on(toml, data_dir, &Db::Sqlite).await
    }

    /// Starts a server on an existing data directory and the store `db` (to test restarts).
    pub async fn start_in_on(toml: &str, data_dir: &Path, db: &Db) -> anyhow::Result<Self> {
        let config = ServerConfig::parse(toml, "test config", Path::new("/"))?;
        let started = server::start(
            &config,
            StartOptions {
                data_dir: Some(data_dir.to_owned()),
                operator_token: Some(OPERATOR.to_owned()),
                compile_worker: Some(PASSTHRU.into()),
                secrets_key: None,
                database: db.url(),
            },
        )
        .await?;
        let state = started.state;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(api::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            sandbox: state.registry.sandbox().clone(),
            state,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            stop: Some(stop),
            task,
            _dir: None,
        })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.client.get(self.url(path_and_query)).send().await?)
    }

    /// Starts a `POST` to `path` with `token`, a body of `content_type` announced much larger
    /// than `first` (its first bytes, which are all it gets), and `expect: 100-continue`; returns
    /// once the server has said `100 Continue`, that is once the handler has started reading the
    /// body. The request stays open, its body unfinished, until the stream is dropped.
    pub async fn start_body(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        first: &[u8],
    ) -> anyhow::Result<tokio::net::TcpStream> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: {content_type}\r\ncontent-length: 1000000\r\n\
             expect: 100-continue\r\n\r\n"
        );
        let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.write_all(head.as_bytes()).await?;
        let mut answer = [0u8; 25];
        stream.read_exact(&mut answer).await?;
        anyhow::ensure!(
            &answer == b"HTTP/1.1 100 Continue\r\n\r\n",
            "{path}: {}",
            String::from_utf8_lossy(&answer)
        );
        stream.write_all(first).await?;
        Ok(stream)
    }

    /// `GET /metrics` with the operator's token.
    pub async fn get_metrics(&self) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(OPERATOR)
            .send()
            .await?)
    }

    /// The text of `/metrics`, which must answer `200`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let response = self.get_metrics().await?;
        anyhow::ensure!(response.status() == 200, "/metrics: {}", response.status());
        Ok(response.text().await?)
    }

    /// The value of exactly the series `series` (its name and labels) in `/metrics`, as written.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<String>> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(s, _)| *s == series)
            .map(|(_, value)| value.to_owned()))
    }

    /// Asks the server to shut down, waits until it has, and flushes its decision records.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        assert!(
            self.state
                .queue
                .shutdown(std::time::Duration::from_secs(15))
                .await,
            "the async queue did not stop"
        );
        let recorder = self.state.recorder.clone();
        tokio::task::spawn_blocking(move || recorder.flush(std::time::Duration::from_secs(5)))
            .await?;
        if let Err(error) = self.state.registry.kv().barrier().wait().await {
            anyhow::bail!("key-value writes were lost: {error}");
        }
        Ok(())
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.task).await??;
        Ok(())
    }
}

/// A `[[flow]]` table for a test config.
pub fn flow(tenant: &str, name: &str, plugin: &str, extra: &str) -> String {
    format!("[[flow]]\ntenant = \"{tenant}\"\nname = \"{name}\"\nplugin = \"{plugin}\"\n{extra}\n")
}

/// A client of the admin API with a bearer token.
pub struct Api<'a> {
    pub server: &'a TestServer,
    pub token: String,
}

impl<'a> Api<'a> {
    pub fn operator(server: &'a TestServer) -> Self {
        Self {
            server,
            token: OPERATOR.to_owned(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn json(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Response> {
        Ok(self.request(method, path).json(&body).send().await?)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        Ok(self.request(Method::GET, path).send().await?)
    }

    pub async fn upload(&self, plugin: &str, bytes: Vec<u8>) -> anyhow::Result<Response> {
        Ok(self
            .request(Method::POST, &format!("/v1/plugins/{plugin}/versions"))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await?)
    }

    /// Creates a tenant (with `caps`, if any) and returns a client holding a token of it.
    pub async fn tenant(&self, name: &str, caps: Option<Value>) -> anyhow::Result<Api<'a>> {
        let mut body = json!({ "name": name });
        if let Some(caps) = caps {
            body["caps"] = caps;
        }
        let created = self.json(Method::POST, "/v1/tenants", body).await?;
        assert_eq!(created.status(), 201, "{}", created.text().await?);
        let issued = self
            .request(Method::POST, &format!("/v1/tenants/{name}/tokens"))
            .send()
            .await?;
        assert_eq!(issued.status(), 201);
        let issued: Value = issued.json().await?;
        Ok(Api {
            server: self.server,
            token: issued["token"].as_str().unwrap().to_owned(),
        })
    }
}

pub async fn body(response: Response) -> anyhow::Result<(u16, Value)> {
    let status = response.status().as_u16();
    let text = response.text().await?;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}: {text}"))?
    };
    Ok((status, value))
}

/// Milliseconds since the Unix epoch, as the server counts them.
pub fn now_ms() -> i64 {
    passthru::store::now_ms()
}

/// How long [`eventually`] waits: long, so that only a real failure (not a busy machine) ends it.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `check` until it gives a value, or fails the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The longest a `passthru serve` child may take to say it listens (a debug build compiles the
/// config's plugins first).
const CHILD_STARTUP: std::time::Duration = std::time::Duration::from_secs(120);

/// A real `passthru serve` child process, for tests that read its own log or kill it: every line
/// it writes to stderr is collected.
pub struct ServeProcess {
    child: std::process::Child,
    /// The address it listens on (`127.0.0.1:PORT`).
    pub addr: String,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `passthru serve --listen 127.0.0.1:0` on `config` and `data_dir`, with
    /// `RUST_LOG=rust_log` and the test operator token, and waits until it listens.
    pub fn start(config: &Path, data_dir: &Path, rust_log: &str) -> anyhow::Result<Self> {
        Self::start_with_env(config, data_dir, rust_log, &[])
    }

    /// The same, with these environment variables set too.
    pub fn start_with_env(
        config: &Path,
        data_dir: &Path,
        rust_log: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let mut child = Command::new(env!("CARGO_BIN_EXE_passthru"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", rust_log)
            .env("PASSTHRU_OPERATOR_TOKEN", OPERATOR)
            .env_remove(passthru::allocator::ALLOCATOR_ENV)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("listening")
                        && let Some(addr) = line.split("addr=").nth(1)
                    {
                        let _ = addr_tx.send(addr.trim().to_owned());
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let Ok(addr) = addr_rx.recv_timeout(CHILD_STARTUP) else {
            let _ = child.kill();
            anyhow::bail!("the server did not start: {:?}", lines.lock().unwrap());
        };
        Ok(Self {
            child,
            addr,
            lines,
            reader: Some(reader),
        })
    }

    /// The lines it has written so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Kills the process with SIGKILL (what `Child::kill` sends on Unix) and returns every line
    /// it wrote.
    pub fn kill(mut self) -> anyhow::Result<Vec<String>> {
        self.child.kill()?;
        self.child.wait()?;
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        Ok(std::mem::take(&mut *self.lines.lock().unwrap()))
    }
}
