//! Sending one outbound request for a call: the checks, then resolve, check each address,
//! connect to one that passed, TLS for `https`, HTTP/1.1, bodies counted and capped, and all of
//! it bounded by the call's deadline.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::allow::{Scheme, normalise_host};
use super::{OutboundPolicy, OutboundRecord, address};
use crate::logsafe::cut;
use crate::sandbox::output::{LogLevel, SharedLog};
use crate::sandbox::state::Grants;
use crate::secrets::redact;

/// Records kept per call beyond its request cap (refused requests are recorded too, up to this).
const EXTRA_RECORDS: usize = 8;

/// What a request's record keeps of its method, its `scheme://host:port` and its error: the
/// plugin chooses the first two (a method is any token, a host up to the size of one host
/// call), and a record must stay small however many requests the call makes.
const MAX_METHOD_BYTES: usize = 32;
const MAX_HOST_BYTES: usize = 300;
const MAX_ERROR_BYTES: usize = 600;

/// What `send_request` answers: the response, and the task that drives the connection on.
type Sent = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

/// One call's `wasi:http` state: made on the plugin's first use of `wasi:http`, never for a
/// plugin that does not use it.
pub struct OutboundCall {
    policy: Option<OutboundPolicy>,
    deadline: Instant,
    log: SharedLog,
    /// What the flow grants the call, for its secrets: blanked out of what the record keeps of
    /// each request before it is cut to its bound (blanking after the cut would miss a secret the
    /// cut went through, and leave its start).
    grants: Arc<Grants>,
    /// Requests asked for so far, refused ones included.
    asked: u32,
}

impl OutboundCall {
    pub(crate) fn new(
        policy: OutboundPolicy,
        deadline: Instant,
        log: SharedLog,
        grants: Arc<Grants>,
    ) -> Self {
        let policy = (!policy.hosts.is_empty()).then_some(policy);
        Self::with(policy, deadline, log, grants)
    }

    /// For a flow without `outbound_hosts`: every request is refused.
    pub(crate) fn closed(deadline: Instant, log: SharedLog, grants: Arc<Grants>) -> Self {
        Self::with(None, deadline, log, grants)
    }

    fn with(
        policy: Option<OutboundPolicy>,
        deadline: Instant,
        log: SharedLog,
        grants: Arc<Grants>,
    ) -> Self {
        Self {
            policy,
            deadline,
            log,
            grants,
            asked: 0,
        }
    }

    /// The request's target when this call may send it; else why not.
    fn admit(&mut self, target: Option<&Target>) -> Result<Arc<super::OutboundOptions>, String> {
        self.asked = self.asked.saturating_add(1);
        let Some(policy) = &self.policy else {
            return Err("this flow lists no outbound_hosts".into());
        };
        if self.asked > policy.options.max_requests {
            return Err(format!(
                "this call has sent the {} requests one call may send",
                policy.options.max_requests
            ));
        }
        let Some(target) = target else {
            return Err("the URL is not http(s)://host[:port]/...".into());
        };
        if !policy
            .hosts
            .allows(target.scheme, &target.host, target.port)
        {
            return Err(format!(
                "{} is not in this flow's outbound_hosts",
                target.label()
            ));
        }
        Ok(policy.options.clone())
    }

    /// Notes a new request in the call's log; the note to update as it goes.
    fn note(&self, method: &str, host: String) -> Note {
        let mut log = self.log.lock();
        let cap = self
            .policy
            .as_ref()
            .map_or(0, |p| p.options.max_requests as usize)
            + EXTRA_RECORDS;
        let slot = (log.outbound.len() < cap).then(|| {
            log.outbound.push(OutboundRecord {
                method: kept(method, MAX_METHOD_BYTES, &self.grants),
                host: kept(&host, MAX_HOST_BYTES, &self.grants),
                status: None,
                error: None,
                bytes_out: 0,
                bytes_in: 0,
                ms: 0,
            });
            log.outbound.len() - 1
        });
        Note {
            log: self.log.clone(),
            slot,
            started: Instant::now(),
            grants: self.grants.clone(),
        }
    }
}

impl WasiHttpHooks for OutboundCall {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        crate::sandbox::meter::MAX_BODY_CHUNK_BYTES
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let target = Target::of(request.uri());
        let label = target
            .as_ref()
            .map_or_else(|| "(not an http(s) URL)".to_owned(), Target::label);
        let note = self.note(request.method().as_str(), label);
        let options = match self.admit(target.as_ref()) {
            Ok(options) => options,
            Err(why) => {
                note.refused(&why);
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
        };
        let Some(target) = target else {
            return Box::new(async { Err(Error::HttpRequestUriInvalid) });
        };
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let lookups = self.policy.as_ref().and_then(|p| p.lookups.clone());
        Box::new(async move {
            // The request line carries the path only; `Host` is the checked authority, whatever
            // the request held (a guest cannot set it: it is a forbidden header).
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *request.uri_mut() = Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
            let host_header = http::HeaderValue::try_from(target.authority())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            request
                .headers_mut()
                .insert(http::header::HOST, host_header);
            let request = request.map(|body| {
                Counted::new(
                    body,
                    options.max_request_bytes,
                    Direction::Out,
                    note.clone(),
                )
                .boxed_unsync()
            });
            let sent = tokio::time::timeout_at(
                deadline,
                exchange(&target, request, &options.allow_ranges, deadline, lookups),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Failure::plain(
                    Error::ConnectionTimeout,
                    "the call's deadline",
                ))
            });
            match sent {
                Ok((response, io)) => {
                    note.status(response.status().as_u16());
                    let cap = options.max_response_bytes;
                    let response = response.map(|incoming| {
                        let body = incoming.map_err(Error::from).boxed_unsync();
                        Counted::new(body, cap, Direction::In, note).boxed_unsync()
                    });
                    Ok((response, io))
                }
                Err(failure) => {
                    match failure.refused {
                        true => note.refused(&failure.message),
                        false => note.failed(&failure.message),
                    }
                    Err(failure.error)
                }
            }
        })
    }
}

/// A request's `scheme://host:port`, when its URL has them right.
struct Target {
    scheme: Scheme,
    /// Lowercase, without brackets.
    host: String,
    port: u16,
}

impl Target {
    fn of(uri: &Uri) -> Option<Self> {
        let scheme = match uri.scheme_str()? {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Self {
            scheme,
            host: normalise_host(authority.host()),
            port: authority.port_u16().unwrap_or(scheme.default_port()),
        })
    }

    /// `host:port` as the `Host` header says it (an IPv6 address in brackets).
    fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    fn label(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }
}

/// Why a request got no response: the error the plugin sees, and the text the record keeps.
struct Failure {
    error: Error,
    message: String,
    /// Refused by a check (noted as such in the plugin's log), rather than failed.
    refused: bool,
}

impl Failure {
    fn plain(error: Error, what: &str) -> Self {
        Self {
            message: format!("{error} ({what})"),
            error,
            refused: false,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            message: error.to_string(),
            error,
            refused: false,
        }
    }
}

type Io = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

/// The name lookups all outbound requests may run at once: each holds one of tokio's blocking
/// threads (a pool the server shares with its other blocking work) until the resolver answers or
/// gives up, even once its call has stopped waiting.
const MAX_LOOKUPS: usize = 32;
static LOOKUPS: Semaphore = Semaphore::const_new(MAX_LOOKUPS);

/// `host`'s addresses: an IP literal as it is, a name looked up on a blocking thread once a
/// place is free among the tenant's `lookups` and the server's `all`. Both places are held until
/// the lookup ends, even if the caller stops waiting (its deadline), since the thread runs on:
/// so a tenant whose names never resolve holds its own places, not the server's blocking pool.
async fn resolve(
    host: &str,
    port: u16,
    lookups: Option<Arc<Semaphore>>,
    all: &'static Semaphore,
) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = host.to_owned();
    limited(lookups, all, move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map(Iterator::collect)
    })
    .await
}

/// Runs `work` on a blocking thread once it has a place among `own` (when given) and `all`,
/// holding both until `work` returns.
async fn limited<T: Send + 'static>(
    own: Option<Arc<Semaphore>>,
    all: &'static Semaphore,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let closed = || std::io::Error::other("the lookups' bound is closed");
    let own = match own {
        Some(own) => Some(own.acquire_owned().await.map_err(|_| closed())?),
        None => None,
    };
    let place = all.acquire().await.map_err(|_| closed())?;
    tokio::task::spawn_blocking(move || {
        let _held = (own, place);
        work()
    })
    .await
    .map_err(|_| std::io::Error::other("the lookup's thread failed"))?
}

/// Resolves, checks every address, connects to the first that passed, then sends.
async fn exchange(
    target: &Target,
    request: http::Request<WasiBody>,
    allow: &[ipnet::IpNet],
    deadline: tokio::time::Instant,
    lookups: Option<Arc<Semaphore>>,
) -> Result<(http::Response<hyper::body::Incoming>, Io), Failure> {
    let addresses = resolve(&target.host, target.port, lookups, &LOOKUPS)
        .await
        .map_err(|e| Failure {
            message: format!("{} does not resolve: {e}", target.host),
            error: Error::DnsError {
                rcode: Some("no address".into()),
                info_code: None,
            },
            refused: false,
        })?;
    let mut refused = None;
    let mut connect_error = None;
    for address in addresses {
        if let Some(why) = address::refusal(address.ip(), allow) {
            refused.get_or_insert((address.ip(), why));
            continue;
        }
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return match target.scheme {
                    Scheme::Http => handshake(stream, request, deadline).await,
                    Scheme::Https => {
                        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                            .map_err(|_| Failure::plain(Error::TlsProtocolError, "server name"))?;
                        let tls = tokio_rustls::TlsConnector::from(tls_config())
                            .connect(name, stream)
                            .await
                            .map_err(|e| Failure {
                                message: format!("TLS: {e}"),
                                error: Error::TlsProtocolError,
                                refused: false,
                            })?;
                        handshake(tls, request, deadline).await
                    }
                };
            }
            Err(e) => connect_error = Some(e),
        }
    }
    Err(match (connect_error, refused) {
        (Some(e), _) => Failure {
            message: format!("cannot connect to {}: {e}", target.label()),
            error: Error::ConnectionRefused,
            refused: false,
        },
        (None, Some((ip, why))) => Failure {
            message: format!(
                "{} resolves to {ip}, a {why} address, which this server does not connect to",
                target.host
            ),
            error: Error::DestinationIpProhibited,
            refused: true,
        },
        (None, None) => Failure::plain(Error::DestinationNotFound, "no address"),
    })
}

/// HTTP/1.1 over `stream`: the response's headers, and the connection's task, which ends at the
/// call's deadline at the latest and is aborted when the plugin drops the response.
async fn handshake<S>(
    stream: S,
    request: http::Request<WasiBody>,
    deadline: tokio::time::Instant,
) -> Result<(http::Response<hyper::body::Incoming>, Io), Failure>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::from)?;
    let task = tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline, conn).await;
    });
    let guard = AbortOnDrop(task.abort_handle());
    let response = sender.send_request(request).await.map_err(Error::from)?;
    let io: Io = Box::new(async move {
        let _guard = guard;
        let _ = task.await;
        Ok(())
    });
    Ok((response, io))
}

/// Aborts a task when dropped: the store that owns the request is gone, so is its connection.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The TLS client set-up, made once: the Mozilla roots, HTTP/1.1.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            // ring, as wasmtime-wasi-http's own client uses: deprecated in rustls 0.23.48 only
            // for lacking post-quantum key exchange; aws-lc-rs, which has it, builds a large C
            // library. TLS 1.2 and 1.3 with the usual suites are what a CRM speaks.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// The record of one request, updated as it goes.
#[derive(Clone)]
struct Note {
    log: SharedLog,
    /// `None` past the records a call keeps.
    slot: Option<usize>,
    started: Instant,
    grants: Arc<Grants>,
}

/// `text` with the flow's secrets blanked out, then cut to `max` bytes.
fn kept(text: &str, max: usize, grants: &Grants) -> String {
    let clean = redact(text, &grants.secrets);
    cut(clean.as_deref().unwrap_or(text), max).to_owned()
}

impl Note {
    fn update(&self, f: impl FnOnce(&mut OutboundRecord)) {
        if let Some(slot) = self.slot
            && let Some(record) = self.log.lock().outbound.get_mut(slot)
        {
            f(record);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn status(&self, status: u16) {
        let ms = self.elapsed_ms();
        self.update(|r| {
            r.status = Some(status);
            r.ms = ms;
        });
    }

    fn failed(&self, why: &str) {
        let ms = self.elapsed_ms();
        self.update(|r| {
            r.error = Some(kept(why, MAX_ERROR_BYTES, &self.grants));
            r.ms = ms;
        });
    }

    /// A refusal is also a line in the plugin's log, so its author sees why.
    fn refused(&self, why: &str) {
        self.failed(&format!("refused: {why}"));
        // Blanked before the log cuts the line (see `kept`).
        let clean = redact(why, &self.grants.secrets);
        let why = clean.as_deref().unwrap_or(why);
        let host = self.slot.and_then(|slot| {
            let log = self.log.lock();
            log.outbound
                .get(slot)
                .map(|r| format!("{} {}", r.method, r.host))
        });
        let line = format!(
            "outbound request {} refused: {why}",
            host.as_deref().unwrap_or("")
        );
        self.log.lock().push(LogLevel::Warn, &line);
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Out,
    In,
}

/// A body whose bytes are counted into the record, and cut off past the cap.
struct Counted {
    inner: WasiBody,
    seen: u64,
    cap: u64,
    direction: Direction,
    note: Note,
}

impl Counted {
    fn new(inner: WasiBody, cap: u64, direction: Direction, note: Note) -> Self {
        Self {
            inner,
            seen: 0,
            cap,
            direction,
            note,
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            this.seen = this.seen.saturating_add(n);
            let (direction, seen, cap) = (this.direction, this.seen, this.cap);
            this.note.update(|r| match direction {
                Direction::Out => r.bytes_out = seen,
                Direction::In => r.bytes_in = seen,
            });
            if seen > cap {
                let (error, what) = match direction {
                    Direction::Out => (Error::HttpRequestBodySize(Some(cap)), "request"),
                    Direction::In => (Error::HttpResponseBodySize(Some(cap)), "response"),
                };
                this.note
                    .update(|r| r.error = Some(format!("the {what} body is over {cap} bytes")));
                return Poll::Ready(Some(Err(error)));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use futures_util::FutureExt;

    use super::*;

    /// A lookup that runs until told to end.
    fn stuck() -> (
        mpsc::Sender<()>,
        impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) {
        let (end, ended) = mpsc::channel::<()>();
        (end, move || {
            let _ = ended.recv();
            Ok(())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenants_stuck_lookups_hold_its_places_not_the_others() {
        static ALL: Semaphore = Semaphore::const_new(3);
        let hog = Arc::new(Semaphore::new(2));
        let other = Arc::new(Semaphore::new(2));
        let mut ends = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..2 {
            let (end, work) = stuck();
            ends.push(end);
            calls.push(tokio::spawn(limited(Some(hog.clone()), &ALL, work)));
        }
        while hog.available_permits() > 0 || ALL.available_permits() > 1 {
            tokio::task::yield_now().await;
        }
        // The calls stop waiting (their deadlines): the lookups run on, and keep their places.
        for call in &calls {
            call.abort();
        }
        for call in calls {
            assert!(call.await.unwrap_err().is_cancelled());
        }
        assert_eq!(hog.available_permits(), 0);
        let mut third = Box::pin(limited(Some(hog.clone()), &ALL, || Ok(3)));
        assert!(
            third.as_mut().now_or_never().is_none(),
            "a third lookup of the tenant ran beside two stuck ones"
        );
        // Another tenant's lookup runs all the same.
        assert_eq!(
            limited(Some(other.clone()), &ALL, || Ok(7)).await.unwrap(),
            7
        );

        // The stuck lookups end: their places come back, and the tenant's next lookup runs.
        for end in ends {
            end.send(()).unwrap();
        }
        assert_eq!(third.await.unwrap(), 3);
        // The other stuck lookup gives its place back when its thread ends, which may be after
        // the third one's.
        let started = std::time::Instant::now();
        while hog.available_permits() < 2 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the stuck lookups kept {} of the tenant's places after they ended",
                2 - hog.available_permits()
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(hog.available_permits(), 2);
    }

    #[tokio::test]
    async fn an_ip_literal_is_not_looked_up() {
        static NONE: Semaphore = Semaphore::const_new(0);
        let addresses = resolve("127.0.0.1", 80, None, &NONE).await.unwrap();
        assert_eq!(addresses, ["127.0.0.1:80".parse().unwrap()]);
    }
}
