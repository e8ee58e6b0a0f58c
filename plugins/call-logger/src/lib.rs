//! `call-logger`: the smallest useful plugin for an async flow.
//!
//! It exports only `record` (world `recorder`): the host has already answered Exotel, and hands
//! the plugin each accepted request in the background. For each one this plugin logs one line at
//! `info`, in `key=value` form, and returns `Ok`:
//!
//! ```text
//! call event=42 attempt=1 call_sid=CA1 caller=09800000001 call_type=completed dial_call_status=completed dial_call_duration_s=35 digits=1
//! ```
//!
//! `caller` is Exotel's `CallFrom`, else the older `From`. A parameter Exotel did not send is left
//! out of the line; a value that is empty or holds a space, a quote, a backslash, `=` or a control
//! character is written in double quotes with Rust's escapes (`digits="1 2"`).
//!
//! # At least once
//!
//! Async requests are delivered **at least once**. A failed attempt is retried, and a host that
//! crashes between running `record` and noting that it succeeded runs it again after a restart.
//! Either way the plugin sees the same request again: the same `event.id`, and usually a higher
//! `event.attempt`. Logging twice is harmless, so this plugin does nothing about it beyond putting
//! `event` and `attempt` in the line (a reader can drop a repeated `event`). A plugin whose work
//! has an effect elsewhere must make that work idempotent:
//!
//! - key it by `event.id` when each request counts once (the id is the same on every attempt and
//!   never reused), or
//! - by the call's `CallSid` when each call counts once: Exotel sends several requests per call
//!   (one per Passthru applet in the flow), each its own event with its own id, all with the
//!   same `CallSid`.

use std::fmt::Write;

use passthru_sdk::{Call, CallType, DialCallStatus, Event, log};

/// The plugin: `plugin!` below exports it as the world's `record`.
fn record(event: &Event, call: &Call) -> Result<(), String> {
    log::info(&summary(event, call));
    Ok(())
}

/// The line logged for one event; see the crate docs.
fn summary(event: &Event, call: &Call) -> String {
    let mut line = format!("call event={} attempt={}", event.id, event.attempt);
    let duration = call.dial_call_duration().map(|s| s.to_string());
    let fields = [
        ("call_sid", call.call_sid()),
        ("caller", call.caller()),
        ("call_type", call.call_type().map(call_type)),
        (
            "dial_call_status",
            call.dial_call_status().map(dial_call_status),
        ),
        ("dial_call_duration_s", duration.as_deref()),
        ("digits", call.digits()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            // Writing into a `String` cannot fail.
            let _ = write!(line, " {key}={}", Quoted(value));
        }
    }
    line
}

/// `CallType` as Exotel spells it.
fn call_type(value: &CallType) -> &str {
    match value {
        CallType::CallAttempt => "call-attempt",
        CallType::Completed => "completed",
        CallType::ClientHangup => "client-hangup",
        CallType::Incomplete => "incomplete",
        CallType::Voicemail => "voicemail",
        CallType::Other(other) => other,
    }
}

/// `DialCallStatus` as Exotel spells it.
fn dial_call_status(value: &DialCallStatus) -> &str {
    match value {
        DialCallStatus::Completed => "completed",
        DialCallStatus::Busy => "busy",
        DialCallStatus::NoAnswer => "no-answer",
        DialCallStatus::Failed => "failed",
        DialCallStatus::Canceled => "canceled",
        DialCallStatus::Other(other) => other,
    }
}

/// A value as it goes after `key=`: bare when that is unambiguous, else quoted and escaped.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bare = !self.0.is_empty()
            && !self
                .0
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
        if bare {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

passthru_sdk::plugin!(record = record);

#[cfg(test)]
mod tests {
    use super::{Call, CallType, DialCallStatus, Event, Quoted, summary};

    fn event(id: u64, attempt: u32) -> Event {
        Event {
            id,
            attempt,
            accepted_at_ms: 1_722_424_376_000,
        }
    }

    #[test]
    fn summarises_a_completed_call() {
        let mut call = Call::default();
        let details = call.details_mut();
        details.call_sid = Some("CA1".into());
        details.call_from = Some("09800000001".into());
        details.from = Some("09800000009".into());
        details.call_type = Some(CallType::Completed);
        details.dial_call_status = Some(DialCallStatus::NoAnswer);
        details.dial_call_duration = Some(35);
        details.digits = Some("1".into());
        assert_eq!(
            summary(&event(42, 1), &call),
            "call event=42 attempt=1 call_sid=CA1 caller=09800000001 call_type=completed \
             dial_call_status=no-answer dial_call_duration_s=35 digits=1"
        );
    }

    #[test]
    fn leaves_out_what_exotel_did_not_send() {
        let mut call = Call::default();
        assert_eq!(summary(&event(7, 3), &call), "call event=7 attempt=3");

        // The caller falls back to the older `From`; unknown values are kept as spelled.
        let details = call.details_mut();
        details.from = Some("+919800000002".into());
        details.call_type = Some(CallType::Other("transfer".into()));
        details.dial_call_status = Some(DialCallStatus::Other("ringing".into()));
        assert_eq!(
            summary(&event(7, 3), &call),
            "call event=7 attempt=3 caller=+919800000002 call_type=transfer \
             dial_call_status=ringing"
        );
    }

    #[test]
    fn quotes_values_only_when_needed() {
        let cases = [
            ("1", "1"),
            ("+919800000001", "+919800000001"),
            ("sip:agent-7", "sip:agent-7"),
            ("", r#""""#),
            ("1 2", r#""1 2""#),
            ("a=b", r#""a=b""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            ("back\\slash", r#""back\\slash""#),
            ("line\nbreak", r#""line\nbreak""#),
        ];
        for (value, want) in cases {
            assert_eq!(Quoted(value).to_string(), want, "value {value:?}");
        }
    }
}
