//! `async-probe`: a test fixture for async flows, so the host's queue, retries, dead letters and
//! fairness can be tested against a real Rust guest. It exports only `record` (world `recorder`).
//!
//! On every attempt it first logs, at `info`, exactly one line:
//!
//! ```text
//! recorded call_sid=<CallSid> event=<event id> attempt=<attempt>
//! ```
//!
//! with `-` in place of a missing `CallSid` (for example
//! `recorded call_sid=CA1 event=42 attempt=3`, or `recorded call_sid=- event=7 attempt=1`). Tests
//! look for this line in the server's log, so it must not change.
//!
//! Then the flow's config picks what happens, checked in this order:
//!
//! - `spin = "true"`: loops forever, burning fuel until the host's fuel budget or deadline stops
//!   it (a failed attempt). For fairness tests: one tenant's spinning plugin must not starve the
//!   others.
//! - `trap = "true"`: panics with `async-probe: deliberate trap on attempt <n>`. The SDK's panic
//!   hook logs the message at `error` (built for `wasm32-unknown-unknown`, the plugin has no
//!   stderr), so it is in the run's log and the trap's message, and the guest aborts: a trap, a
//!   failed attempt.
//! - `fail_attempts = "N"`: returns `Err("failing on purpose: attempt <n> of <N>")` while the
//!   attempt is at most `N`, then `Ok`. `N = 2` fails twice and succeeds on attempt 3; a huge `N`
//!   (past `u64::MAX` included) always fails; `0` never does. A value that is not a whole number
//!   fails every attempt with a message saying so.
//! - nothing of the above (or any other value for `spin` and `trap`): `Ok`.
//!
//! Not a plugin to deploy: it exists for the host's tests.

use std::hint::black_box;
use std::num::IntErrorKind;

use passthru_sdk::{Call, Event, config, log};

/// What the flow's config asks of this run.
#[derive(Debug, PartialEq, Eq)]
enum Behaviour {
    Spin,
    Trap,
    /// Fail while the attempt is at most this many (`u64::MAX` for a value too big to hold).
    FailAttempts(u64),
    /// `fail_attempts` is set but is not a whole number: the value as configured.
    BadFailAttempts(String),
    Succeed,
}

impl Behaviour {
    /// Reads the flow's config through `config` (the host's, in the plugin).
    fn from_config(config: impl Fn(&str) -> Option<String>) -> Self {
        let enabled = |key: &str| config(key).as_deref() == Some("true");
        if enabled("spin") {
            return Self::Spin;
        }
        if enabled("trap") {
            return Self::Trap;
        }
        match config("fail_attempts") {
            None => Self::Succeed,
            Some(value) => match value.trim().parse::<u64>() {
                Ok(n) => Self::FailAttempts(n),
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => Self::FailAttempts(u64::MAX),
                Err(_) => Self::BadFailAttempts(value),
            },
        }
    }
}

/// The plugin: `plugin!` below exports it as the world's `record`.
fn record(event: &Event, call: &Call) -> Result<(), String> {
    log::info(&log_line(call.call_sid(), event));
    match Behaviour::from_config(config) {
        Behaviour::Spin => spin(),
        Behaviour::Trap => panic!("async-probe: deliberate trap on attempt {}", event.attempt),
        Behaviour::FailAttempts(n) => fail_while(event.attempt, n),
        Behaviour::BadFailAttempts(value) => Err(format!(
            "fail_attempts must be a whole number, not {value:?}"
        )),
        Behaviour::Succeed => Ok(()),
    }
}

/// The line logged on every attempt; see the crate docs.
fn log_line(call_sid: Option<&str>, event: &Event) -> String {
    format!(
        "recorded call_sid={} event={} attempt={}",
        call_sid.unwrap_or("-"),
        event.id,
        event.attempt
    )
}

/// `Err` while `attempt` is at most `fail_attempts`.
fn fail_while(attempt: u32, fail_attempts: u64) -> Result<(), String> {
    if u64::from(attempt) <= fail_attempts {
        Err(format!(
            "failing on purpose: attempt {attempt} of {fail_attempts}"
        ))
    } else {
        Ok(())
    }
}

/// Never returns: a loop whose counter goes through `black_box`, so it is not optimised away.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

passthru_sdk::plugin!(record = record);

#[cfg(test)]
mod tests {
    use super::{Behaviour, Event, fail_while, log_line};

    #[test]
    fn the_log_line_is_exact() {
        let event = Event {
            id: 42,
            attempt: 3,
            accepted_at_ms: 1_700_000_000_000,
        };
        assert_eq!(
            log_line(Some("CA1"), &event),
            "recorded call_sid=CA1 event=42 attempt=3"
        );
        assert_eq!(
            log_line(None, &event),
            "recorded call_sid=- event=42 attempt=3"
        );
    }

    #[test]
    fn config_picks_the_behaviour() {
        let cases: &[(&[(&str, &str)], Behaviour)] = &[
            (&[], Behaviour::Succeed),
            (&[("spin", "true")], Behaviour::Spin),
            (&[("spin", "false")], Behaviour::Succeed),
            (&[("spin", "yes")], Behaviour::Succeed),
            (&[("trap", "true")], Behaviour::Trap),
            (&[("spin", "true"), ("trap", "true")], Behaviour::Spin),
            (&[("trap", "true"), ("fail_attempts", "2")], Behaviour::Trap),
            (&[("fail_attempts", "2")], Behaviour::FailAttempts(2)),
            (&[("fail_attempts", " 0 ")], Behaviour::FailAttempts(0)),
            (
                &[("fail_attempts", "99999999999999999999999")],
                Behaviour::FailAttempts(u64::MAX),
            ),
            (
                &[("fail_attempts", "two")],
                Behaviour::BadFailAttempts("two".to_owned()),
            ),
            (
                &[("fail_attempts", "-1")],
                Behaviour::BadFailAttempts("-1".to_owned()),
            ),
        ];
        for (entries, want) in cases {
            let config = |key: &str| {
                entries
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            };
            assert_eq!(Behaviour::from_config(config), *want, "config {entries:?}");
        }
    }

    #[test]
    fn fails_while_the_attempt_is_at_most_n() {
        let cases = [
            (1, 0, Ok(())),
            (1, 2, Err("failing on purpose: attempt 1 of 2")),
            (2, 2, Err("failing on purpose: attempt 2 of 2")),
            (3, 2, Ok(())),
            (
                u32::MAX,
                u64::MAX,
                Err("failing on purpose: attempt 4294967295 of 18446744073709551615"),
            ),
        ];
        for (attempt, n, want) in cases {
            assert_eq!(
                fail_while(attempt, n),
                want.map_err(str::to_owned),
                "attempt {attempt} of {n}"
            );
        }
    }
}
