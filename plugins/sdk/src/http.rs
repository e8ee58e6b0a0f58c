//! Outbound HTTP from a plugin (feature `http`): one blocking request through the standard
//! `wasi:http/outgoing-handler`, which the host serves for flows that list the host in their
//! `outbound_hosts`.
//!
//! ```no_run
//! # #[cfg(feature = "http")] {
//! use passthru_sdk::http;
//!
//! let response = http::send(&http::Request {
//!     method: "POST",
//!     url: "https://crm.example.com/calls",
//!     headers: &[("content-type", "application/json")],
//!     body: br#"{"call_sid":"CA1"}"#,
//! });
//! match response {
//!     Ok(r) if r.status < 300 => {}
//!     Ok(r) => { /* the CRM said no: r.status, r.body */ }
//!     Err(e) => { /* refused by the host, or no answer in time: e.to_string() */ }
//! }
//! # }
//! ```
//!
//! Redirects are not followed: a 3xx comes back as it is, with its `location` header; a plugin
//! that follows it sends a new request, which the host checks like the first. The host refuses
//! hosts the flow does not list (`HttpRequestDenied`), addresses it does not connect to
//! (`DestinationIpProhibited`), and more requests or bigger bodies than the operator allows; and
//! everything ends at the call's deadline.

use std::fmt;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// `http(s)://host[:port]/path?query`.
    pub url: &'a str,
    /// Headers to send (`host`, `connection` and a few others are the host's to set).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// A response, its body read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The URL is not `http(s)://host[:port]/...`.
    Url(String),
    /// The host, or the connection, said no: `HttpRequestDenied` (not listed),
    /// `DestinationIpProhibited` (a private or special address), `ConnectionTimeout` (the
    /// call's deadline), ...
    Http(String),
    /// A header the host does not let a plugin set, or not valid.
    Header(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(why) => write!(f, "bad URL: {why}"),
            Error::Http(code) => write!(f, "{code}"),
            Error::Header(why) => write!(f, "bad header: {why}"),
        }
    }
}

impl Error {
    /// Whether the host refused the request (not listed, or an address it does not connect to).
    pub fn is_refused(&self) -> bool {
        matches!(self, Error::Http(code)
            if code.starts_with("HttpRequestDenied") || code.starts_with("DestinationIpProhibited"))
    }
}

/// The error code's name, with its payload if any (`HttpRequestDenied`,
/// `DnsError(DnsErrorPayload { .. })`).
fn code(e: ErrorCode) -> Error {
    let text = format!("{e:?}");
    Error::Http(text.strip_prefix("ErrorCode::").unwrap_or(&text).to_owned())
}

/// A URL's parts: scheme, `host[:port]`, and path with query (`/` when none).
pub fn split_url(url: &str) -> Result<(&str, &str, &str), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Url(format!("{url:?} has no scheme")))?;
    if scheme != "http" && scheme != "https" {
        return Err(Error::Url(format!("{url:?} is not http or https")));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(Error::Url(format!("{url:?} has no host")));
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}

/// Sends `request` and reads its response whole.
///
/// # Errors
/// See [`Error`].
pub fn send(request: &Request<'_>) -> Result<Response, Error> {
    let (scheme, authority, path) = split_url(request.url)?;
    let fields = Fields::new();
    for (name, value) in request.headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| Error::Header(format!("{name}: {e:?}")))?;
    }
    let length = request.body.len().to_string();
    if !request.body.is_empty() {
        fields
            .set("content-length", &[length.into_bytes()])
            .map_err(|e| Error::Header(format!("content-length: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let method = match request.method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let bad = |what: &str| Error::Url(format!("{:?}: bad {what}", request.url));
    outgoing.set_method(&method).map_err(|()| bad("method"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        _ => Scheme::Https,
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| bad("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| bad("host"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| bad("path"))?;
    let body = outgoing.body().map_err(|()| bad("body"))?;
    let future = outgoing_handler::handle(outgoing, None::<RequestOptions>).map_err(code)?;
    {
        let stream = body.write().map_err(|()| bad("body"))?;
        for chunk in request.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                // The host stopped taking it (refused, or over its cap): the response says why.
                break;
            }
        }
    }
    // An error finishing the body shows in the response too.
    let _ = OutgoingBody::finish(body, None);
    future.subscribe().block();
    let response = future
        .get()
        .ok_or_else(|| Error::Http("no response".into()))?
        .map_err(|()| Error::Http("response already taken".into()))?
        .map_err(code)?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| Error::Http("body already taken".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| Error::Http("body already taken".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::Http(e.to_debug_string()));
                }
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_splits_into_scheme_host_and_path() {
        assert_eq!(
            split_url("https://crm.example.com:8443/calls?x=1").unwrap(),
            ("https", "crm.example.com:8443", "/calls?x=1")
        );
        assert_eq!(split_url("http://h").unwrap(), ("http", "h", "/"));
        assert_eq!(split_url("http://h?q").unwrap(), ("http", "h", "?q"));
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("h/x").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
