//! Flows' secrets through the real server: sealed at rest, never in any API answer, read by the
//! plugin through `config`, blanked out of its log, errors and records; and a server that cannot
//! open the stored secrets refuses to start.

mod common;

use std::path::Path;

use common::{Api, HOSTILE, TempDir, TestServer, body, eventually};
use passthru::secrets::SecretsKey;
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "tok-9f3c2a-do-not-leak";

/// A config that seals secrets with a new key, kept in `dir`.
fn keyed_config(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, SecretsKey::generate().unwrap()).unwrap();
    format!("secrets_key_file = {:?}\n", path.display().to_string())
}

async fn put_flow(api: &Api<'_>, flow: &str, config: Value) -> anyhow::Result<(u16, Value)> {
    body(
        api.json(
            Method::PUT,
            &format!("/v1/flows/{flow}"),
            json!({ "plugin": "hostile", "version": 1, "config": config }),
        )
        .await?,
    )
    .await
}

async fn put_secret(
    api: &Api<'_>,
    flow: &str,
    key: &str,
    value: &str,
) -> anyhow::Result<(u16, Value)> {
    body(
        api.json(
            Method::PUT,
            &format!("/v1/flows/{flow}/secrets/{key}"),
            json!({ "value": value }),
        )
        .await?,
    )
    .await
}

/// The newest decision record of `flow`, once there is one newer than `after_id`.
async fn newest_record(api: &Api<'_>, flow: &str, after_id: i64) -> anyhow::Result<Value> {
    eventually("a decision record", || async {
        let (status, page) = body(
            api.get(&format!("/v1/decisions?flow={flow}&limit=1"))
                .await?,
        )
        .await?;
        assert_eq!(status, 200, "{page}");
        Ok(page["items"]
            .get(0)
            .filter(|r| r["id"].as_i64() > Some(after_id))
            .cloned())
    })
    .await
}

/// Every byte of the data directory's files.
fn data_dir_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_plugin_and_nothing_else() -> anyhow::Result<()> {
    let dir = TempDir::new("secrets");
    let data = dir.0.join("data");
    let server = TestServer::start_in(&keyed_config(&dir.0, "key"), &data).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("hostile", std::fs::read(HOSTILE)?)
            .await?
            .status(),
        201
    );
    let mut answers = Vec::new();
    let (status, flow) = put_flow(&acme, "leaky", json!({ "mode": "leak" })).await?;
    assert_eq!(status, 201, "{flow}");

    let (status, set) = put_secret(&acme, "leaky", "token", SECRET).await?;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["key"], "token");
    answers.push(set);
    let (_, flow) = body(acme.get("/v1/flows/leaky").await?).await?;
    assert_eq!(flow["secrets"][0]["key"], "token", "{flow}");
    answers.push(flow);
    answers.push(body(acme.get("/v1/flows").await?).await?.1);

    // The plugin reads it through config and writes it everywhere it can: the host blanks it out.
    let response = server.get("/passthru/acme/leaky?CallSid=s1").await?;
    assert_eq!(response.status(), 200);
    let record = newest_record(&acme, "leaky", 0).await?;
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("token=[secret]"),
        "the plugin read the secret: {reason:?}"
    );
    let log = record["log"].to_string();
    assert!(log.contains("token=[secret]"), "{log}");
    answers.push(record.clone());

    // A trap's message, with what the plugin said on stderr, is blanked out too.
    put_flow(&acme, "trap", json!({ "mode": "leak-trap" })).await?;
    put_secret(&acme, "trap", "token", SECRET).await?;
    assert_eq!(
        server.get("/passthru/acme/trap?CallSid=s2").await?.status(),
        302
    );
    let trapped = newest_record(&acme, "trap", 0).await?;
    assert!(
        trapped["error"]
            .as_str()
            .unwrap_or_default()
            .contains("token=[secret]"),
        "{trapped}"
    );
    answers.push(trapped);
    answers.push(body(acme.get("/v1/calls/s1").await?).await?.1);

    for answer in &answers {
        assert!(
            !answer.to_string().contains(SECRET),
            "the secret leaked: {answer}"
        );
    }

    // A key is either config or a secret; replacing the flow keeps its secrets.
    let (status, refused) =
        put_flow(&acme, "leaky", json!({ "mode": "leak", "token": "x" })).await?;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(put_secret(&acme, "leaky", "mode", "abcd").await?.0, 422);
    assert_eq!(put_secret(&acme, "leaky", "short", "abc").await?.0, 422);
    assert_eq!(put_secret(&acme, "nowhere", "token", SECRET).await?.0, 404);
    assert_eq!(
        put_flow(&acme, "leaky", json!({ "mode": "leak" })).await?.0,
        200
    );
    let (_, flow) = body(acme.get("/v1/flows/leaky").await?).await?;
    assert_eq!(flow["secrets"][0]["key"], "token", "{flow}");

    // Another tenant's token reaches none of it.
    let rival = Api::operator(&server).tenant("rival", None).await?;
    assert_eq!(put_secret(&rival, "leaky", "token", "abcdef").await?.0, 404);
    assert_eq!(
        rival
            .request(Method::DELETE, "/v1/flows/leaky/secrets/token")
            .send()
            .await?
            .status(),
        404
    );

    // Deleted: the next call no longer sees it.
    let before = record["id"].as_i64().unwrap();
    let deleted = acme
        .request(Method::DELETE, "/v1/flows/leaky/secrets/token")
        .send()
        .await?;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        server
            .get("/passthru/acme/leaky?CallSid=s3")
            .await?
            .status(),
        200
    );
    let after = newest_record(&acme, "leaky", before).await?;
    assert!(
        !after["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("token="),
        "{after}"
    );

    server.stop().await?;
    // Sealed at rest: the plaintext is nowhere in the data directory.
    assert!(!contains(&data_dir_bytes(&data), SECRET));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_secrets_need_their_key_to_start() -> anyhow::Result<()> {
    let dir = TempDir::new("secrets-start");
    let data = dir.0.join("data");
    let config = keyed_config(&dir.0, "key");
    let server = TestServer::start_in(&config, &data).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("hostile", std::fs::read(HOSTILE)?)
            .await?
            .status(),
        201
    );
    put_flow(&acme, "leaky", json!({ "mode": "leak" })).await?;
    assert_eq!(put_secret(&acme, "leaky", "token", SECRET).await?.0, 200);
    let token = acme.token.clone();
    drop(acme);
    server.stop().await?;

    let refusal = |result: anyhow::Result<TestServer>| match result {
        Ok(_) => panic!("the server started"),
        Err(error) => format!("{error:#}"),
    };
    let without = refusal(TestServer::start_in("", &data).await);
    assert!(without.contains("PASSTHRU_SECRETS_KEY"), "{without}");
    let wrong = refusal(TestServer::start_in(&keyed_config(&dir.0, "other"), &data).await);
    assert!(wrong.contains("does not open"), "{wrong}");

    let server = TestServer::start_in(&config, &data).await?;
    assert_eq!(
        server
            .get("/passthru/acme/leaky?CallSid=s1")
            .await?
            .status(),
        200
    );
    let acme = Api {
        server: &server,
        token,
    };
    let record = newest_record(&acme, "leaky", 0).await?;
    assert!(
        record["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("token=[secret]"),
        "{record}"
    );
    drop(acme);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_key_keeps_no_secrets() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    assert_eq!(
        acme.upload("hostile", std::fs::read(HOSTILE)?)
            .await?
            .status(),
        201
    );
    put_flow(&acme, "leaky", json!({ "mode": "leak" })).await?;
    let (status, refused) = put_secret(&acme, "leaky", "token", SECRET).await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("PASSTHRU_SECRETS_KEY"),
        "{refused}"
    );
    drop(acme);
    server.stop().await
}
