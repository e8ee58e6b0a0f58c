//! The HTTP server's edges against slow and greedy clients, on a real socket: headers trickled
//! (slowloris) or never finished, idle keep-alive connections, bodies trickled byte by byte, and
//! more connections than the server allows.

mod common;

use std::time::{Duration, Instant};

use common::{Api, OPERATOR, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The limits these tests set, small so that they run fast.
const HEADER_TIMEOUT_MS: u64 = 300;
const ADMIN_TIMEOUT_MS: u64 = 500;
const UPLOAD_TIMEOUT_MS: u64 = 700;
/// How long past a limit the server may take to act on it: a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1_500);

fn config(max_connections: usize) -> String {
    format!(
        "max_connections = {max_connections}\nheader_timeout_ms = {HEADER_TIMEOUT_MS}\n\
         admin_timeout_ms = {ADMIN_TIMEOUT_MS}\nupload_timeout_ms = {UPLOAD_TIMEOUT_MS}\n"
    )
}

/// Reads until the server closes the connection (or resets it); returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `head`, then one `byte` every 20 ms without end, until the server closes the
/// connection; returns what it answered and how long after the head that took.
async fn trickle_until_closed(
    server: &TestServer,
    head: &str,
    byte: u8,
) -> anyhow::Result<(String, Duration)> {
    let mut stream = TcpStream::connect(server.addr).await?;
    stream.write_all(head.as_bytes()).await?;
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        while write.write_all(&[byte]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    let took = started.elapsed();
    writer.abort();
    Ok((String::from_utf8_lossy(&answer).into_owned(), took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_past_the_header_timeout_are_cut_off() -> anyhow::Result<()> {
    let server = TestServer::start(&config(64)).await?;
    // A request line, then one header byte every 20 ms, without end: a slowloris client.
    let head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let (answer, took) = trickle_until_closed(&server, head, b'a').await?;
    assert!(
        took >= Duration::from_millis(HEADER_TIMEOUT_MS) - Duration::from_millis(50),
        "closed after {took:?}, before the timeout"
    );
    assert!(
        took <= Duration::from_millis(HEADER_TIMEOUT_MS) + SLACK,
        "a trickling client kept its connection for {took:?}"
    );
    assert!(
        !answer.contains("200 OK"),
        "the unfinished request was not answered"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let server = TestServer::start(&config(64)).await?;
    let mut stream = TcpStream::connect(server.addr).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await?;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now idle: the server closes the connection once the header timeout has passed.
    let idle = Instant::now();
    let rest = read_to_close(&mut stream).await;
    let took = idle.elapsed();
    assert!(rest.is_empty(), "nothing more was sent");
    assert!(
        took <= Duration::from_millis(HEADER_TIMEOUT_MS) + SLACK,
        "an idle connection stayed open {took:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_trickled_past_the_admin_timeout_gets_408() -> anyhow::Result<()> {
    let server = TestServer::start(&config(64)).await?;
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let (answer, took) = trickle_until_closed(&server, &head, b' ').await?;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took <= Duration::from_millis(ADMIN_TIMEOUT_MS) + SLACK,
        "took {took:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_trickled_past_the_upload_timeout_gets_408() -> anyhow::Result<()> {
    let server = TestServer::start(&config(64)).await?;
    let tenant = Api::operator(&server).tenant("acme", None).await?;
    let head = format!(
        "POST /v1/plugins/menu/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/wasm\r\nContent-Length: 100000\r\n\r\n",
        tenant.token
    );
    let (answer, took) = trickle_until_closed(&server, &head, 0).await?;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took <= Duration::from_millis(UPLOAD_TIMEOUT_MS) + SLACK,
        "took {took:?}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_connection_is_closed_at_once_and_counted() -> anyhow::Result<()> {
    let mut config = config(2);
    // Long enough that the two held connections stay open through the test.
    config = config.replace(
        &format!("header_timeout_ms = {HEADER_TIMEOUT_MS}"),
        "header_timeout_ms = 30000",
    );
    let server = TestServer::start(&config).await?;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await?;
        stream.write_all(request).await?;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await?;
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }

    // A third: accepted by the kernel, closed by the server without an answer.
    let mut third = TcpStream::connect(server.addr).await?;
    let _ = third.write_all(request).await;
    assert!(
        read_to_close(&mut third).await.is_empty(),
        "no answer past the cap"
    );

    // One of the two goes away; a new connection is served again once the server has seen it.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut stream = TcpStream::connect(server.addr).await?;
        let _ = stream.write_all(request).await;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            started.elapsed() < SLACK,
            "no connection served after one closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The refusals are counted. (This scrape needs a connection too: close the held one first.)
    drop(held);
    let metrics = loop {
        match server.get_metrics().await {
            Ok(response) if response.status() == 200 => break response.text().await?,
            _ if started.elapsed() < SLACK * 2 => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("no metrics: {other:?}"),
        }
    };
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("passthru_http_connections_refused_total "))
        .expect("the counter is exported")
        .trim()
        .parse()?;
    assert!(refused >= 1.0, "{refused}");
    server.stop().await
}

/// The data directory holds callers' numbers (the queue), token hashes and plugins: it and
/// everything in it is readable by the server's user only, even when it existed before, open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_the_servers_alone() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::TempDir::new("private");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755))?;
    let server = TestServer::start_in(&config(64), &dir.0).await?;
    let mode = |path: &std::path::Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    };
    assert_eq!(mode(&dir.0)?, 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir.0)? {
        let path = entry?.path();
        if path.is_file() {
            files += 1;
            assert_eq!(mode(&path)?, 0o600, "{}", path.display());
        }
    }
    assert!(files >= 2, "the store and the queue are there");
    server.stop().await
}
