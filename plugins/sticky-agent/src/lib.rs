//! `sticky-agent`: sends a repeat caller back to the agent they spoke to last.
//!
//! The flow puts this plugin's Passthru applet in two places:
//!
//! - **Before a Connect applet**: the plugin looks the caller up in the key-value store and
//!   answers `success` when an agent is remembered (the call flow's success branch dials that
//!   agent, for instance through a Connect applet whose plan comes from the caller's agent),
//!   `failure` otherwise (the ordinary queue).
//! - **After a Connect applet**: Exotel's request then carries `DialWhomNumber` (the agent dialled
//!   last) and `DialCallStatus`. When the conversation completed, the plugin remembers
//!   caller → agent for 24 hours and answers `success`.
//!
//! The flow must grant the store (`kv_stores = ["agents"]`); the flow's config value `store`
//! names another one. A store the flow does not grant, or a write past the tenant's caps, is
//! logged and answered `failure`: the caller goes to the ordinary queue rather than nowhere.

use std::time::Duration;

use passthru_sdk::{Call, Decision, DialCallStatus, config, kv, log};

/// The store used when the flow's config does not name one.
const DEFAULT_STORE: &str = "agents";
/// How long an agent is remembered after a completed conversation.
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 3600);

/// What the plugin does for one request, decided from the call alone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'a> {
    /// A conversation with `agent` completed: remember it for `caller`.
    Remember { caller: &'a str, agent: &'a str },
    /// Look `caller` up.
    LookUp { caller: &'a str },
    /// Nothing to go on.
    Skip(&'static str),
}

fn step(call: &Call) -> Step<'_> {
    let Some(caller) = call.caller().map(str::trim).filter(|c| !c.is_empty()) else {
        return Step::Skip("no caller number (neither CallFrom nor From)");
    };
    match (call.dial_whom_number(), call.dial_call_status()) {
        (Some(agent), Some(DialCallStatus::Completed)) if !agent.trim().is_empty() => {
            Step::Remember {
                caller,
                agent: agent.trim(),
            }
        }
        _ => Step::LookUp { caller },
    }
}

/// The answer to a look-up that found `agent` (or nothing).
fn routed(caller: &str, agent: Option<&str>) -> Decision {
    match agent {
        Some(agent) => Decision::success(format!("caller {caller} last spoke to {agent}")),
        None => Decision::failure(format!(
            "caller {caller} spoke to no agent in the last 24 hours"
        )),
    }
}

/// The host's message in `error`. (`Display` of the generated type prints Rust's `Debug` form,
/// variant name and all, which the other languages' builds of this plugin could not reproduce.)
fn message(error: &kv::Error) -> &str {
    match error {
        kv::Error::NoSuchStore(message)
        | kv::Error::Invalid(message)
        | kv::Error::OverCap(message)
        | kv::Error::Unavailable(message) => message,
    }
}

/// The reason of a failed read or write: `what` is `read` or `write to`. The store's name is
/// quoted as is (not escaped), so that every language's build words it the same.
fn cannot(what: &str, store: &str, error: &kv::Error) -> String {
    format!("cannot {what} store \"{store}\": {}", message(error))
}

fn decide(call: &Call) -> Decision {
    let store = kv::Store::open(config("store").unwrap_or_else(|| DEFAULT_STORE.to_owned()));
    let failed = |what: &str, error: kv::Error| {
        let reason = cannot(what, store.name(), &error);
        log::warn(&reason);
        Decision::failure(reason)
    };
    match step(call) {
        Step::Skip(reason) => Decision::failure(reason),
        Step::Remember { caller, agent } => match store.set_for(caller, agent, REMEMBER_FOR) {
            Ok(()) => Decision::success(format!("remembered {agent} for caller {caller}")),
            Err(error) => failed("write to", error),
        },
        Step::LookUp { caller } => match store.get(caller) {
            Ok(agent) => routed(caller, agent.as_deref()),
            Err(error) => failed("read", error),
        },
    }
}

passthru_sdk::plugin!(decide = decide);

#[cfg(test)]
mod tests {
    use passthru_sdk::Branch;

    use super::*;

    fn call(from: &str, whom: Option<&str>, status: Option<DialCallStatus>) -> Call {
        let mut call = Call::default();
        let details = call.details_mut();
        details.call_from = Some(from.into());
        details.dial_whom_number = whom.map(Into::into);
        details.dial_call_status = status;
        call
    }

    #[test]
    fn a_completed_conversation_is_remembered() {
        let c = call(
            " 09800000001 ",
            Some("09811111111"),
            Some(DialCallStatus::Completed),
        );
        assert_eq!(
            step(&c),
            Step::Remember {
                caller: "09800000001",
                agent: "09811111111"
            }
        );
    }

    #[test]
    fn an_unanswered_or_first_request_looks_the_caller_up() {
        for (whom, status) in [
            (None, None),
            (Some("09811111111"), Some(DialCallStatus::NoAnswer)),
            (Some("09811111111"), Some(DialCallStatus::Busy)),
            (Some(" "), Some(DialCallStatus::Completed)),
        ] {
            let c = call("09800000001", whom, status.clone());
            assert_eq!(
                step(&c),
                Step::LookUp {
                    caller: "09800000001"
                },
                "{whom:?} {status:?}"
            );
        }
    }

    #[test]
    fn no_caller_is_skipped() {
        assert!(matches!(step(&Call::default()), Step::Skip(_)));
        assert!(matches!(step(&call("  ", None, None)), Step::Skip(_)));
    }

    #[test]
    fn a_store_error_reads_as_the_hosts_message() {
        let error = kv::Error::NoSuchStore("not granted".into());
        assert_eq!(
            cannot("read", "agents", &error),
            "cannot read store \"agents\": not granted"
        );
        let error = kv::Error::OverCap("max_kv_keys".into());
        assert_eq!(
            cannot("write to", "a\"b", &error),
            "cannot write to store \"a\"b\": max_kv_keys"
        );
    }

    #[test]
    fn a_remembered_agent_is_success_else_failure() {
        assert_eq!(routed("1", Some("2")).branch, Branch::Success);
        assert_eq!(routed("1", None).branch, Branch::Failure);
    }
}
