//! A tenant's stored versions are bounded (`max_versions`, `max_stored_bytes`) and can be
//! deleted when no flow uses them, their files with them.

mod common;

use std::path::Path;

use common::{Api, HOSTILE, IVR_MENU, TempDir, TestServer, VIP_CALLER, body};
use passthru::sandbox::hex_sha256;
use reqwest::Method;
use serde_json::json;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn blob(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    dir.join("blobs")
        .join(format!("{}.wasm", hex_sha256(bytes)))
}

/// The compiled artifacts in the data directory made from `bytes`.
fn artifacts(dir: &Path, bytes: &[u8]) -> usize {
    let prefix = hex_sha256(bytes);
    std::fs::read_dir(dir.join("artifacts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_no_flow_uses_is_deleted_with_its_files_and_its_number_is_not_reused()
-> anyhow::Result<()> {
    let dir = TempDir::new("versions");
    let server = TestServer::start_in("", &dir.0).await?;
    let acme = Api::operator(&server).tenant("acme", None).await?;
    for (bytes, version) in [
        (read(IVR_MENU), 1),
        (read(VIP_CALLER), 2),
        (read(HOSTILE), 3),
    ] {
        let (status, uploaded) = body(acme.upload("menu", bytes).await?).await?;
        assert_eq!((status, &uploaded["version"]), (201, &json!(version)));
    }
    // The flow runs 2 and would roll back to 1.
    let put = acme
        .json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({"plugin": "menu", "version": 1}),
        )
        .await?;
    assert_eq!(put.status(), 201);
    let activated = acme
        .json(
            Method::POST,
            "/v1/flows/ivr/activate",
            json!({"version": 2}),
        )
        .await?;
    assert_eq!(activated.status(), 200);

    for used in [1, 2] {
        let (status, problem) = body(
            acme.request(Method::DELETE, &format!("/v1/plugins/menu/versions/{used}"))
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, 409, "version {used}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("\"ivr\""),
            "names the flow: {problem}"
        );
    }

    let hostile = read(HOSTILE);
    assert!(blob(&dir.0, &hostile).exists());
    assert_eq!(artifacts(&dir.0, &hostile), 1);
    let deleted = acme
        .request(Method::DELETE, "/v1/plugins/menu/versions/3")
        .send()
        .await?;
    assert_eq!(deleted.status(), 204);
    assert_eq!(acme.get("/v1/plugins/menu/versions/3").await?.status(), 404);
    assert!(!blob(&dir.0, &hostile).exists(), "its blob is gone");
    assert_eq!(artifacts(&dir.0, &hostile), 0, "its artifact is gone");
    let again = acme
        .request(Method::DELETE, "/v1/plugins/menu/versions/3")
        .send()
        .await?;
    assert_eq!(again.status(), 404);

    // The same bytes again: a new number, never 3 again.
    let (status, uploaded) = body(acme.upload("menu", hostile.clone()).await?).await?;
    assert_eq!((status, &uploaded["version"]), (201, &json!(4)));
    assert!(blob(&dir.0, &hostile).exists());
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_another_version_still_has_keeps_its_blob() -> anyhow::Result<()> {
    let dir = TempDir::new("versions-shared");
    let server = TestServer::start_in("", &dir.0).await?;
    let op = Api::operator(&server);
    let acme = op.tenant("acme", None).await?;
    let globex = op.tenant("globex", None).await?;
    let menu = read(IVR_MENU);
    assert_eq!(acme.upload("a", menu.clone()).await?.status(), 201);
    assert_eq!(globex.upload("b", menu.clone()).await?.status(), 201);
    let deleted = acme
        .request(Method::DELETE, "/v1/plugins/a/versions/1")
        .send()
        .await?;
    assert_eq!(deleted.status(), 204);
    assert!(
        blob(&dir.0, &menu).exists(),
        "globex's version still has it"
    );
    // And globex's version still binds and answers.
    let put = globex
        .json(
            Method::PUT,
            "/v1/flows/ivr",
            json!({"plugin": "b", "version": 1}),
        )
        .await?;
    assert_eq!(put.status(), 201);
    let got = server
        .get("/passthru/globex/ivr?CallSid=shared&digits=%221%22")
        .await?;
    assert_eq!(got.status(), 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_version_caps_gets_409_until_it_deletes() -> anyhow::Result<()> {
    let server = TestServer::start("").await?;
    let op = Api::operator(&server);
    let menu = read(IVR_MENU);
    let vip = read(VIP_CALLER);

    // max_versions: two, then a third is refused; deleting one makes room.
    let acme = op.tenant("acme", Some(json!({"max_versions": 2}))).await?;
    assert_eq!(acme.upload("p", menu.clone()).await?.status(), 201);
    assert_eq!(acme.upload("p", vip.clone()).await?.status(), 201);
    let (status, problem) = body(acme.upload("p", read(HOSTILE)).await?).await?;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("keeps 2 plugin versions and its max_versions is 2"),
        "{problem}"
    );
    let deleted = acme
        .request(Method::DELETE, "/v1/plugins/p/versions/1")
        .send()
        .await?;
    assert_eq!(deleted.status(), 204);
    assert_eq!(acme.upload("p", read(HOSTILE)).await?.status(), 201);

    // max_stored_bytes: room for the first component only.
    let room = menu.len() as u64 + 10;
    let globex = op
        .tenant("globex", Some(json!({"max_stored_bytes": room})))
        .await?;
    assert_eq!(globex.upload("p", menu.clone()).await?.status(), 201);
    let (status, problem) = body(globex.upload("p", vip).await?).await?;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("max_stored_bytes")
    );
    server.stop().await
}
