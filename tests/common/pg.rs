//! A real PostgreSQL server for the tests that need one.
//!
//! `PASSTHRU_TEST_DATABASE_URL` names a server to use (a role that may create databases).
//! Without it, the first test that asks starts a throwaway server for the whole test binary:
//! `initdb` into a temporary folder, listening on a Unix socket in that folder only (no port to
//! collide on), from Debian's `postgresql` package, which `scripts/install-postgresql.sh`
//! installs when it is missing. A watchdog process stops that server and removes its folder once
//! the test binary has exited. Every test gets a database of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming a server to test against instead of a throwaway one.
pub const DATABASE_URL_ENV: &str = "PASSTHRU_TEST_DATABASE_URL";

/// How the tests reach the server: a connection string without a database name.
struct Server {
    base: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// A fresh, empty database on the test server: its connection string.
pub fn database() -> String {
    let server = SERVER.get_or_init(|| match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.is_empty() => Server { base: url },
        _ => start_throwaway(),
    });
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).expect("randomness");
    let name = format!("passthru_test_{:016x}", u64::from_le_bytes(suffix));
    let mut admin = connect(&with_dbname(&server.base, "postgres"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    with_dbname(&server.base, &name)
}

fn connect(url: &str) -> postgres::Client {
    url.parse::<postgres::Config>()
        .expect("a connection string")
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"))
}

/// `base` (a `key=value` string or a `postgres://` URL) with its database set to `name`.
fn with_dbname(base: &str, name: &str) -> String {
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        let (head, query) = base
            .split_once('?')
            .map_or((base, None), |(h, q)| (h, Some(q)));
        let authority_end = head
            .find("://")
            .map(|i| i + 3)
            .and_then(|start| head[start..].find('/').map(|j| start + j))
            .unwrap_or(head.len());
        let mut url = format!("{}/{name}", &head[..authority_end]);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    } else {
        format!("{base} dbname={name}")
    }
}

/// The folder holding `initdb`, `postgres` and `pg_ctl`: on `PATH`, else Debian's
/// `/usr/lib/postgresql/N/bin` (the newest), installing the package first if there is none.
fn bin_dir() -> PathBuf {
    let find = || {
        if let Ok(path) = which("initdb") {
            return path.parent().map(Path::to_owned);
        }
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    };
    if let Some(dir) = find() {
        return dir;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-postgresql.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "{} failed", script.display());
    find().expect("initdb after installing PostgreSQL")
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

/// `initdb` refuses to run as root: as root, the server runs as the `postgres` user the
/// package created.
fn as_server_user(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions and touches no memory.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_throwaway() -> Server {
    let bin = bin_dir();
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).expect("randomness");
    // Short: a Unix socket's path must fit in about 100 bytes.
    let dir = PathBuf::from(format!("/tmp/ptpg-{:08x}", u32::from_le_bytes(suffix)));
    std::fs::create_dir_all(&dir).expect("a folder for the test database");
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(
            status.success(),
            "cannot give {} to postgres",
            dir.display()
        );
    }
    let data = dir.join("data");
    let output = as_server_user(&bin.join("initdb"))
        .args([
            "-A",
            "trust",
            "-U",
            "passthru",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("initdb runs");
    assert!(
        output.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut server = as_server_user(&bin.join("postgres"));
    server
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=64MB",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("server.log")).expect("a log file"),
        ));
    let mut child = server.spawn().expect("postgres starts");
    // Reaped when it ends (after the test binary, by the watchdog's hand).
    std::thread::spawn(move || child.wait());
    let base = format!("host={} user=passthru", dir.display());
    let started = Instant::now();
    loop {
        let ready = with_dbname(&base, "postgres")
            .parse::<postgres::Config>()
            .expect("a connection string")
            .connect(postgres::NoTls);
        match ready {
            Ok(_) => break,
            Err(e) if started.elapsed() > Duration::from_secs(60) => panic!(
                "the test PostgreSQL server did not start: {e}; see {}",
                dir.join("server.log").display()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // The server's own pid (the one started may be `runuser`'s).
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
        .expect("the server's postmaster.pid");
    watch(pid, &dir);
    Server { base }
}

/// Starts a process that waits for this test binary to exit, then stops the server (fast
/// shutdown) and removes its folder.
fn watch(server_pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -INT {server_pid} 2>/dev/null; \
         for _ in $(seq 100); do kill -0 {server_pid} 2>/dev/null || break; sleep 0.1; done; \
         rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display(),
    );
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the watchdog starts");
    std::thread::spawn(move || watchdog.wait());
}

/// Drops a database made by [`database`], closing every connection to it: the database is gone
/// as if its server had been lost.
pub fn drop_database(url: &str) {
    let config: postgres::Config = url.parse().expect("a connection string");
    let name = config.get_dbname().expect("a database name").to_owned();
    let base = SERVER.get().expect("the test server").base.clone();
    let mut admin = connect(&with_dbname(&base, "postgres"));
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap_or_else(|e| panic!("cannot drop the test database: {e}"));
}
