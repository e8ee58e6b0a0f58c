//! A call's log: what the plugin wrote through the `log` import, and its stdout and stderr.
//!
//! Everything lands in one ordered, capped list of lines. Past the cap, lines are counted and
//! dropped; a plugin that prints without end never fails because of it (a plain memory pipe would
//! close the stream, and Rust's `println!` would then panic the guest).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::meter::{HostBudget, STREAM_PERMIT_BYTES};

/// The most lines one call keeps.
pub const MAX_LOG_LINES: usize = 100;
/// The most bytes of message text one call keeps, all lines together.
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// A single line longer than this is cut (at a character boundary).
pub const MAX_LINE_BYTES: usize = 2 * 1024;

/// Where a log line came from: the `log` import's levels, or the guest's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

/// One line a plugin logged, or wrote to its stdout or stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The lines kept for one call, and how many were dropped past the caps.
#[derive(Debug, Default)]
pub struct CallLog {
    pub lines: Vec<LogLine>,
    pub dropped: u32,
    bytes: usize,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
    /// The call's outbound requests (`wasi:http`), as the decision record keeps them.
    pub outbound: Vec<super::outbound::OutboundRecord>,
    /// What the call's imports may still do for it (charged here: every import that does work
    /// in proportion to its bytes takes this lock anyway, or can).
    pub(crate) budget: HostBudget,
}

impl CallLog {
    /// Appends a line, or counts it as dropped when the caps are reached.
    pub fn push(&mut self, level: LogLevel, message: &str) {
        let message = truncate(message, MAX_LINE_BYTES);
        if self.lines.len() >= MAX_LOG_LINES || self.bytes + message.len() > MAX_LOG_BYTES {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine {
            level,
            message: message.to_owned(),
        });
    }

    /// Whether no further line can be kept.
    fn is_full(&self) -> bool {
        self.lines.len() >= MAX_LOG_LINES || self.bytes >= MAX_LOG_BYTES
    }

    /// Takes raw bytes from a standard stream; each complete line becomes a log line.
    fn write_stream(&mut self, level: LogLevel, bytes: &[u8]) {
        if self.is_full() {
            // Nothing more is kept: count the lines without building them, so that a plugin
            // writing newlines without end costs the host a scan, not a line each.
            let lines = bytes.iter().filter(|b| **b == b'\n').count();
            let lines = u32::try_from(lines).unwrap_or(u32::MAX);
            self.dropped = self.dropped.saturating_add(lines);
            return;
        }
        let mut partial = std::mem::take(match level {
            LogLevel::Stdout => &mut self.partial_stdout,
            _ => &mut self.partial_stderr,
        });
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if partial.len() < MAX_LINE_BYTES {
                let room = MAX_LINE_BYTES - partial.len();
                partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if chunk.ends_with(b"\n") {
                self.push_stream_line(level, &partial);
                partial.clear();
            }
        }
        match level {
            LogLevel::Stdout => self.partial_stdout = partial,
            _ => self.partial_stderr = partial,
        }
    }

    fn push_stream_line(&mut self, level: LogLevel, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.push(level, &String::from_utf8_lossy(line));
    }

    /// Moves unterminated stream output into the log; called once the call is over.
    pub fn finish(&mut self) {
        for level in [LogLevel::Stdout, LogLevel::Stderr] {
            let partial = std::mem::take(match level {
                LogLevel::Stdout => &mut self.partial_stdout,
                _ => &mut self.partial_stderr,
            });
            if !partial.is_empty() {
                self.push_stream_line(level, &partial);
            }
        }
    }
}

/// Writes a call's log lines to the server's own log, under target `passthru::plugin` at debug
/// level (`RUST_LOG=passthru::plugin=debug`), inside the caller's span.
pub fn trace_lines(lines: &[LogLine]) {
    if tracing::enabled!(target: "passthru::plugin", tracing::Level::DEBUG) {
        for line in lines {
            tracing::debug!(target: "passthru::plugin", level = ?line.level, "plugin: {}",
                crate::logsafe::Escaped(&line.message));
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A call's log, shared between the store's data (for the `log` import) and the guest's streams.
#[derive(Debug, Clone, Default)]
pub struct SharedLog(Arc<Mutex<CallLog>>);

impl SharedLog {
    /// Locks the log. Only the call's own task ever touches it, so the lock is never contended.
    pub fn lock(&self) -> MutexGuard<'_, CallLog> {
        // A panic while holding this lock cannot leave the log half-written in a way that
        // matters (it is a list of lines), so a poisoned lock is used as it is.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A log for a call whose imports may do `budget` of work.
    pub fn new(budget: HostBudget) -> Self {
        Self(Arc::new(Mutex::new(CallLog {
            budget,
            ..CallLog::default()
        })))
    }

    /// A stdout or stderr for the guest that writes into this log.
    pub fn stream(&self, level: LogLevel) -> CapturedStream {
        CapturedStream {
            log: self.clone(),
            level,
        }
    }
}

/// The guest's stdout or stderr. Always ready and never full; a write past the permit
/// `check-write` gave ([`STREAM_PERMIT_BYTES`]) traps.
#[derive(Clone)]
pub struct CapturedStream {
    log: SharedLog,
    level: LogLevel,
}

impl CapturedStream {
    fn take(&self, bytes: &[u8]) -> StreamResult<()> {
        if bytes.len() > STREAM_PERMIT_BYTES {
            return Err(StreamError::trap(&format!(
                "the plugin wrote {} bytes to its {} at once, more than the {STREAM_PERMIT_BYTES} \
                 `check-write` permits",
                bytes.len(),
                match self.level {
                    LogLevel::Stdout => "stdout",
                    _ => "stderr",
                },
            )));
        }
        let mut log = self.log.lock();
        log.budget
            .charge(bytes.len())
            .map_err(|limit| StreamError::Trap(wasmtime::Error::new(limit)))?;
        log.write_stream(self.level, bytes);
        Ok(())
    }
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STREAM_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Only p3 (not linked) writes through here; take what a permit allows, like a pipe.
        let n = buf.len().min(STREAM_PERMIT_BYTES);
        let taken = self.take(&buf[..n]).map(|()| n).map_err(io::Error::other);
        Poll::Ready(taken)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_bytes_become_lines_in_order() {
        let mut log = CallLog::default();
        log.write_stream(LogLevel::Stdout, b"hel");
        log.push(LogLevel::Info, "from the import");
        log.write_stream(LogLevel::Stdout, b"lo\nsecond\r\nthi");
        log.write_stream(LogLevel::Stderr, b"oops\n");
        log.finish();
        let got: Vec<(LogLevel, &str)> = log
            .lines
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (LogLevel::Info, "from the import"),
                (LogLevel::Stdout, "hello"),
                (LogLevel::Stdout, "second"),
                (LogLevel::Stderr, "oops"),
                (LogLevel::Stdout, "thi"),
            ]
        );
    }

    #[test]
    fn caps_count_what_they_drop() {
        let mut log = CallLog::default();
        for i in 0..(MAX_LOG_LINES + 25) {
            log.push(LogLevel::Info, &format!("line {i}"));
        }
        assert_eq!(log.lines.len(), MAX_LOG_LINES);
        assert_eq!(log.dropped, 25);

        let mut log = CallLog::default();
        let long = "é".repeat(MAX_LINE_BYTES);
        log.push(LogLevel::Warn, &long);
        assert!(log.lines[0].message.len() <= MAX_LINE_BYTES);
        assert!(log.lines[0].message.chars().all(|c| c == 'é'));
        for _ in 0..20 {
            log.push(LogLevel::Warn, &long);
        }
        assert!(log.lines.iter().map(|l| l.message.len()).sum::<usize>() <= MAX_LOG_BYTES);
        assert!(log.dropped > 0);
    }

    #[test]
    fn an_endless_stream_line_is_cut_not_grown() {
        let mut log = CallLog::default();
        for _ in 0..1000 {
            log.write_stream(LogLevel::Stdout, &[b'x'; 1024]);
        }
        log.finish();
        assert_eq!(log.lines.len(), 1);
        assert_eq!(log.lines[0].message.len(), MAX_LINE_BYTES);
    }
}
