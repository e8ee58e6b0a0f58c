//! `outbound-probe`: a test fixture for outbound HTTP in sync flows. It exports only `decide`.
//!
//! It sends one request as the flow's config says, and follows redirects itself (absolute
//! `location`s only), each one a new request the host checks again:
//!
//! - `url` (required): where to send it;
//! - `method`: `GET` unless set;
//! - `follow`: how many redirects to follow (0 unless set);
//! - `header_bytes`: sends an `x-big` header of this many bytes (none unless set).
//!
//! It answers `success` with the reason `status <code> body <first 64 bytes>` when a response
//! came, and `failure` with `error <what>` when none did (`error HttpRequestDenied`,
//! `error DestinationIpProhibited`, ...). Not a plugin to deploy: it exists for the host's tests.

use passthru_sdk::http::{self, Request};
use passthru_sdk::{Call, Decision, config};

fn decide(_call: &Call) -> Decision {
    let Some(mut url) = config("url") else {
        return Decision::failure("error no url in config");
    };
    let method = config("method").unwrap_or_else(|| "GET".into());
    let mut follow: u32 = config("follow").and_then(|f| f.parse().ok()).unwrap_or(0);
    let big = config("header_bytes")
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| "a".repeat(n));
    let headers: Vec<(&str, &str)> = big.iter().map(|v| ("x-big", v.as_str())).collect();
    loop {
        let response = match http::send(&Request {
            method: &method,
            url: &url,
            headers: &headers,
            body: &[],
        }) {
            Ok(response) => response,
            Err(e) => return Decision::failure(format!("error {e}")),
        };
        let location = response.header("location").map(str::to_owned);
        match (response.status, location) {
            (300..=399, Some(next)) if follow > 0 && next.contains("://") => {
                follow -= 1;
                url = next;
            }
            (status, _) => {
                let body = String::from_utf8_lossy(&response.body);
                let body: String = body.chars().take(64).collect();
                return Decision::success(format!("status {status} body {body}"));
            }
        }
    }
}

passthru_sdk::plugin!(decide = decide);
