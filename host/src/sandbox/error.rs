//! Why a call failed: the failure kinds and the errors, and their classification from wasmtime's
//! `Trap` codes, its error types and the limiter's own record, never from messages.

use serde::Serialize;
use wasmtime::{OutOfMemory, PoolConcurrencyLimitError, Trap};

use super::limits::Limits;
use super::meter::HostLimit;
use super::state::{CallState, LimitHit};

/// The kind of a failed call, as reported in logs, records and `passthru run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    OutOfFuel,
    Deadline,
    MemoryLimit,
    Trap,
    InvalidComponent,
    /// `record` returned an error of its own.
    PluginError,
    /// No instance slot was free in the pool: the host is at capacity, not the plugin's fault.
    Overloaded,
    /// The host or its engine failed to set up or run the call (an engine, linker or store
    /// that could not be built, the host out of memory): the operator's problem, not the
    /// plugin's, and logged at error level.
    Host,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::Deadline => "deadline",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Trap => "trap",
            FailureKind::InvalidComponent => "invalid_component",
            FailureKind::PluginError => "plugin_error",
            FailureKind::Overloaded => "overloaded",
            FailureKind::Host => "host",
        }
    }
}

/// Why a plugin could not be loaded or could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("the plugin ran out of fuel (budget {fuel})")]
    OutOfFuel { fuel: u64 },
    #[error("the plugin passed its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
    #[error("the plugin went over its memory cap of {limit_mb} MiB (asked for {requested})")]
    MemoryLimit { limit_mb: u64, requested: String },
    #[error("the plugin trapped: {message}")]
    Trap { message: String },
    #[error("invalid component: {message}")]
    InvalidComponent { message: String },
    #[error("the plugin reported a failure: {message}")]
    PluginError { message: String },
    #[error("the sandbox is at capacity: {message}")]
    Overloaded { message: String },
    #[error("the host failed: {message}")]
    Host { message: String },
}

impl SandboxError {
    pub fn kind(&self) -> FailureKind {
        match self {
            SandboxError::OutOfFuel { .. } => FailureKind::OutOfFuel,
            SandboxError::Deadline { .. } => FailureKind::Deadline,
            SandboxError::MemoryLimit { .. } => FailureKind::MemoryLimit,
            SandboxError::Trap { .. } => FailureKind::Trap,
            SandboxError::InvalidComponent { .. } => FailureKind::InvalidComponent,
            SandboxError::PluginError { .. } => FailureKind::PluginError,
            SandboxError::Overloaded { .. } => FailureKind::Overloaded,
            SandboxError::Host { .. } => FailureKind::Host,
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        SandboxError::InvalidComponent {
            message: message.into(),
        }
    }
}

/// The outcome of a call that ran: its value, or the failure named.
///
/// The epoch deadline stops a guest that computes; the timeout around the call (`done` is its
/// result) also stops one that waits in a host call (a WASI sleep, say), which epochs cannot
/// interrupt.
pub(super) fn settle<T>(
    done: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    state: &CallState,
    limits: &Limits,
) -> Result<T, SandboxError> {
    match done {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(&error, state, limits)),
        Err(_elapsed) => Err(SandboxError::Deadline {
            deadline_ms: limits.deadline_ms,
        }),
    }
}

pub(super) fn missing_export(name: &str) -> SandboxError {
    SandboxError::invalid(format!("this plugin version does not export `{name}`"))
}

/// A failure of the host's own: `what` it was doing, and wasmtime's error. Logged here, at error
/// level, since it is for the operator to fix (the caller's log says which call it was).
pub(super) fn host_failure(what: &str, error: &wasmtime::Error) -> SandboxError {
    let message = format!("{what}: {error:#}");
    tracing::error!(%message, "the sandbox failed");
    SandboxError::Host { message }
}

/// An engine, linker or store the host could not set up.
pub(super) fn host_setup(error: wasmtime::Error) -> SandboxError {
    host_failure("the sandbox could not be set up", &error)
}

/// Names the cause of a failed call: the limiter's record first (a refused growth surfaces as an
/// error of ours), then wasmtime's trap code, then the pool (no slot free: `overloaded`), then the
/// host's own allocation failing (`host`). Anything else is the guest's doing (a host import it
/// misused, a value it could not lift), reported as a trap.
pub(super) fn classify(
    error: &wasmtime::Error,
    state: &CallState,
    limits: &Limits,
) -> SandboxError {
    if let Some(hit) = state.limiter.hit {
        let requested = match hit {
            LimitHit::Memory { requested_bytes } => {
                format!("{} MiB", requested_bytes.div_ceil(1 << 20))
            }
            LimitHit::Table { requested_elements } => {
                format!("{requested_elements} table elements")
            }
        };
        return SandboxError::MemoryLimit {
            limit_mb: limits.memory_mb,
            requested,
        };
    }
    if let Some(limit) = error.downcast_ref::<HostLimit>() {
        return match limit {
            HostLimit::Fuel => SandboxError::OutOfFuel { fuel: limits.fuel },
            HostLimit::Deadline => SandboxError::Deadline {
                deadline_ms: limits.deadline_ms,
            },
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => SandboxError::OutOfFuel { fuel: limits.fuel },
            Trap::Interrupt => SandboxError::Deadline {
                deadline_ms: limits.deadline_ms,
            },
            other => SandboxError::Trap {
                message: other.to_string(),
            },
        };
    }
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return SandboxError::Overloaded {
            message: error.to_string(),
        };
    }
    if error.downcast_ref::<OutOfMemory>().is_some() {
        return host_failure("the host ran out of memory for the call", error);
    }
    // Its cause, without the wasm backtrace wasmtime adds as context: a stripped plugin's frames
    // are bare numbers, and the backtrace would push the cause past the message's cap.
    SandboxError::Trap {
        message: error.root_cause().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn state() -> CallState {
        CallState::new(64 << 20, Arc::default(), 1, std::time::Instant::now())
    }

    /// wasmtime's sign that the host's own allocation failed, as it reaches a call (with context
    /// added on the way up), is the host's failure, not the pool's capacity nor a trap.
    #[test]
    fn the_host_out_of_memory_is_a_host_failure_not_overloaded() {
        let error = wasmtime::Error::new(OutOfMemory::new(1 << 30)).context("instantiating");
        let failure = classify(&error, &state(), &Limits::default());
        assert_eq!(failure.kind(), FailureKind::Host, "{failure:?}");
        assert_eq!(failure.kind().as_str(), "host");
        assert!(failure.to_string().contains("out of memory"), "{failure}");
    }

    /// A guest's own error from a host import stays a trap: `host` is only for what the host did.
    #[test]
    fn an_error_of_the_guests_doing_is_still_a_trap() {
        let error = wasmtime::Error::msg("invalid utf-8 string lifted from the guest");
        let failure = classify(&error, &state(), &Limits::default());
        assert_eq!(failure.kind(), FailureKind::Trap, "{failure:?}");
    }
}
