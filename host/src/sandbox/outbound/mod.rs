//! Outbound HTTP for plugins: `wasi:http/outgoing-handler`, with the host sending every request
//! itself, after checks a hostile plugin cannot get around.
//!
//! - Off unless the flow lists hosts (`outbound_hosts`, [`OutboundHosts`]): a plugin of a flow
//!   without any gets `HTTP-request-denied` for every request, before any connection.
//! - A request goes out only to a listed `scheme://host:port`; an IP literal only when that
//!   address is listed. Then the name is resolved here, every address checked (`address`), and
//!   the connection made to an address that passed: loopback, private, link-local, CGNAT,
//!   multicast and metadata addresses are refused unless the operator allows their range.
//! - `Host` is one of wasmtime-wasi-http's forbidden headers, so the plugin cannot set it; the
//!   host writes it from the URL that passed the check. Redirects are never followed here: the
//!   plugin gets the 3xx, and its next request is checked like the first.
//! - Per call: at most [`OutboundOptions::max_requests`] requests, request and response bodies
//!   capped, and everything (connect, headers, body) ends at the call's deadline.
//! - Each request is noted in the call's log as an [`OutboundRecord`] (no headers, no bodies),
//!   which the decision record keeps.

mod address;
mod allow;
mod send;

use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use allow::{MAX_OUTBOUND_HOSTS, OutboundHosts, Scheme};
pub use send::OutboundCall;

/// Requests one call may send, unless the operator says otherwise.
pub const DEFAULT_MAX_REQUESTS: u32 = 8;
/// Bytes of one request's body, and of one response's body, unless the operator says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;

/// The operator's bounds on outbound requests, the same for every flow (server config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundOptions {
    /// Requests one call may send; past it each is refused (`HTTP-request-denied`).
    pub max_requests: u32,
    /// Bytes of one request's body; past it the request fails (`HTTP-request-body-size`).
    pub max_request_bytes: u64,
    /// Bytes of one response's body; past it reading fails (`HTTP-response-body-size`).
    pub max_response_bytes: u64,
    /// Address ranges allowed although private or special (tests: `127.0.0.0/8`).
    pub allow_ranges: Vec<IpNet>,
}

impl Default for OutboundOptions {
    fn default() -> Self {
        Self {
            max_requests: DEFAULT_MAX_REQUESTS,
            max_request_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_BODY_BYTES,
            allow_ranges: Vec::new(),
        }
    }
}

/// One outbound request, as the decision record keeps it: never its headers or bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutboundRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `scheme://host:port` as the plugin asked for it (without path or query, which may hold
    /// secrets).
    pub host: String,
    /// The response's status, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why there was no response (refused, or what failed), or why its body was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes of the request's body sent.
    pub bytes_out: u64,
    /// Bytes of the response's body the plugin read.
    pub bytes_in: u64,
    /// Milliseconds from the request to its response's headers (or its failure).
    pub ms: u64,
}

/// What a call may do outbound: its flow's list and the operator's bounds, both shared.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    pub hosts: Arc<OutboundHosts>,
    pub options: Arc<OutboundOptions>,
    /// The tenant's name lookups (see `send::resolve`); none: only the server's bound.
    pub lookups: Option<Arc<tokio::sync::Semaphore>>,
}

impl OutboundPolicy {
    /// The call's state for `wasi:http`: counts its requests, ends them at `deadline`.
    pub(crate) fn for_call(
        &self,
        deadline: Instant,
        log: super::output::SharedLog,
        grants: Arc<super::state::Grants>,
    ) -> OutboundCall {
        OutboundCall::new(self.clone(), deadline, log, grants)
    }
}
