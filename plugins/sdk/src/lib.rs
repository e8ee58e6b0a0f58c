//! `passthru-sdk`: write a passthru plugin in Rust as one function.
//!
//! A plugin is a function from the call's details to a [`Decision`], exported with [`plugin!`]:
//!
//! ```ignore
//! use passthru_sdk::{Call, Decision};
//!
//! fn decide(call: &Call) -> Decision {
//!     match call.digits() {
//!         Some("1") => Decision::success("caller pressed 1"),
//!         _ => Decision::failure("caller did not press 1"),
//!     }
//! }
//!
//! passthru_sdk::plugin!(decide);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2`. [`Call`] reads the call as Exotel sent it, through
//! `Option<&str>` accessors and helpers for Exotel's quirks ([`Call::caller`], [`Call::param`]);
//! [`config`], [`config_entries`] and the [`log`] functions are what the host offers. The
//! generated WIT bindings are in [`bindings`], for anything this crate does not wrap.

/// The bindings `wit-bindgen` generates from `wit/passthru.wit` (world `decider`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "decider",
        pub_export_macro: true,
        export_macro_name: "__export_decider",
        default_bindings_module: "passthru_sdk::bindings",
    });
}

use bindings::passthru::plugin::{host, types};

pub use bindings::passthru::plugin::host::Level;
pub use bindings::passthru::plugin::types::{
    CallDetails, CallType, DialCallStatus, Direction, Leg, Timestamp,
};

/// Which way the call flow goes next: by default `Success` is answered `200 OK` and `Failure`
/// `302 Found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Branch {
    Success,
    Failure,
}

/// What a plugin decided: the branch, and why in a few words (kept in the call's record, never
/// sent to Exotel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub branch: Branch,
    pub reason: Option<String>,
}

impl Decision {
    /// `branch`, with a reason.
    pub fn new(branch: Branch, reason: impl Into<String>) -> Self {
        Self {
            branch,
            reason: Some(reason.into()),
        }
    }

    /// The success branch, with a reason.
    pub fn success(reason: impl Into<String>) -> Self {
        Self::new(Branch::Success, reason)
    }

    /// The failure branch, with a reason.
    pub fn failure(reason: impl Into<String>) -> Self {
        Self::new(Branch::Failure, reason)
    }
}

impl From<Branch> for Decision {
    /// The branch without a reason.
    fn from(branch: Branch) -> Self {
        Self {
            branch,
            reason: None,
        }
    }
}

/// One live call, as Exotel's Passthru applet described it.
///
/// Every accessor is an `Option`: Exotel sends different parameters at different stages of a
/// flow, and a parameter that is absent, empty or not in its documented format is `None`.
/// [`Call::details`] has every typed field; [`Call::param`] and [`Call::params`] have every
/// parameter as it arrived, Exotel's undocumented ones and the customer's own included.
#[derive(Debug, Clone)]
pub struct Call {
    details: CallDetails,
}

impl From<CallDetails> for Call {
    fn from(details: CallDetails) -> Self {
        Self::new(details)
    }
}

impl Default for Call {
    /// A call with no parameter at all, for tests.
    fn default() -> Self {
        Self::new(CallDetails {
            call_sid: None,
            call_from: None,
            call_to: None,
            from: None,
            to: None,
            direction: None,
            call_type: None,
            created: None,
            start_time: None,
            end_time: None,
            current_time: None,
            dial_call_duration: None,
            dial_call_status: None,
            dial_whom_number: None,
            legs: Vec::new(),
            digits: None,
            custom_field: None,
            recording_url: None,
            recording_available_by: None,
            outgoing_phone_number: None,
            flow_id: None,
            tenant_id: None,
            params: Vec::new(),
        })
    }
}

impl Call {
    /// Wraps the details the host sent. (`Call::from` is the accessor of Exotel's `From`.)
    pub fn new(details: CallDetails) -> Self {
        Self { details }
    }

    /// Every typed field, as the host parsed it.
    pub fn details(&self) -> &CallDetails {
        &self.details
    }

    /// The typed fields, to change in tests.
    pub fn details_mut(&mut self) -> &mut CallDetails {
        &mut self.details
    }

    /// `CallSid`: Exotel's id of the call, the same for every request of one call.
    pub fn call_sid(&self) -> Option<&str> {
        self.details.call_sid.as_deref()
    }

    /// `CallFrom`. Incoming: the caller. Outgoing: the first leg's number.
    pub fn call_from(&self) -> Option<&str> {
        self.details.call_from.as_deref()
    }

    /// `CallTo`. Incoming: the ExoPhone the call landed on. Outgoing: the number dialled.
    pub fn call_to(&self) -> Option<&str> {
        self.details.call_to.as_deref()
    }

    /// `From`: the older name of `CallFrom`; usually the same, not always present.
    pub fn from(&self) -> Option<&str> {
        self.details.from.as_deref()
    }

    /// `To`: the older name of `CallTo`.
    pub fn to(&self) -> Option<&str> {
        self.details.to.as_deref()
    }

    /// The caller's number: `CallFrom`, or `From` when Exotel did not send `CallFrom`. As sent:
    /// trim it before comparing, and list numbers in the form Exotel sends them.
    pub fn caller(&self) -> Option<&str> {
        self.call_from().or(self.from())
    }

    /// The number called: `CallTo`, or `To` when Exotel did not send `CallTo`.
    pub fn called(&self) -> Option<&str> {
        self.call_to().or(self.to())
    }

    /// `digits`: the keys the caller pressed, without Exotel's surrounding double quotes.
    pub fn digits(&self) -> Option<&str> {
        self.details.digits.as_deref()
    }

    /// `Direction`.
    pub fn direction(&self) -> Option<&Direction> {
        self.details.direction.as_ref()
    }

    /// `CallType`: how far the call has got.
    pub fn call_type(&self) -> Option<&CallType> {
        self.details.call_type.as_ref()
    }

    /// `DialCallStatus`, present after a Connect applet.
    pub fn dial_call_status(&self) -> Option<&DialCallStatus> {
        self.details.dial_call_status.as_ref()
    }

    /// `DialCallDuration`, in seconds.
    pub fn dial_call_duration(&self) -> Option<u32> {
        self.details.dial_call_duration
    }

    /// `DialWhomNumber`: the agent dialled last (may be `sip:<id>`).
    pub fn dial_whom_number(&self) -> Option<&str> {
        self.details.dial_whom_number.as_deref()
    }

    /// `CustomField`, as the flow's creator set it.
    pub fn custom_field(&self) -> Option<&str> {
        self.details.custom_field.as_deref()
    }

    /// `RecordingUrl`.
    pub fn recording_url(&self) -> Option<&str> {
        self.details.recording_url.as_deref()
    }

    /// `OutgoingPhoneNumber`.
    pub fn outgoing_phone_number(&self) -> Option<&str> {
        self.details.outgoing_phone_number.as_deref()
    }

    /// `flow_id`: Exotel's id of the flow.
    pub fn flow_id(&self) -> Option<&str> {
        self.details.flow_id.as_deref()
    }

    /// `tenant_id`: Exotel's id of the account.
    pub fn tenant_id(&self) -> Option<&str> {
        self.details.tenant_id.as_deref()
    }

    /// The legs of a Connect applet (`Legs[i][...]`), in index order.
    pub fn legs(&self) -> &[Leg] {
        &self.details.legs
    }

    /// The last value of the query parameter `key`, decoded, exactly as sent (an empty value is
    /// `Some("")`). Repeated parameters are common: Exotel appends, so the last one is the newest.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every query parameter, decoded, in arrival order, repeats included.
    pub fn params(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        self.details
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A value the operator configured for this flow, or `None` if `key` is not set.
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// Every configured key and value of this flow, sorted by key.
pub fn config_entries() -> Vec<(String, String)> {
    host::config_entries()
}

/// The entries of a comma-separated config value such as `"+919800000001, 09800000002"`:
/// trimmed, without empty ones.
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// Lines in this call's log, at each level. The log is capped; lines past the cap are counted and
/// dropped, never an error. `println!` and `eprintln!` also land in the log.
pub mod log {
    use super::{Level, host};

    /// A line at `level`.
    pub fn log(level: Level, message: &str) {
        host::log(level, message);
    }

    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Exports `decide`, a `fn(&Call) -> Decision`, as the plugin's `decide`. Use it once, at the
/// top level of a `cdylib` crate.
#[macro_export]
macro_rules! plugin {
    ($decide:path) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::Guest for __PassthruPlugin {
            fn decide(
                call: $crate::bindings::CallDetails,
            ) -> $crate::bindings::Decision {
                $crate::__private::decide($decide, call)
            }
        }

        $crate::bindings::__export_decider!(__PassthruPlugin with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    use super::{Branch, Call, CallDetails, Decision, types};

    /// What [`plugin!`] calls: the user's function over the wrapped call, and back to WIT types.
    #[inline(always)]
    pub fn decide(decide: impl FnOnce(&Call) -> Decision, details: CallDetails) -> types::Decision {
        let decision = decide(&Call::new(details));
        types::Decision {
            branch: match decision.branch {
                Branch::Success => types::Branch::Success,
                Branch::Failure => types::Branch::Failure,
            },
            reason: decision.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_call_from_else_from() {
        let mut call = Call::default();
        assert_eq!(call.caller(), None);
        call.details_mut().from = Some("2".into());
        assert_eq!(call.caller(), Some("2"));
        call.details_mut().call_from = Some("1".into());
        assert_eq!(call.caller(), Some("1"));
    }

    #[test]
    fn param_is_the_last_value() {
        let mut call = Call::default();
        call.details_mut().params = vec![
            ("digits".into(), "\"2\"".into()),
            ("x".into(), String::new()),
            ("digits".into(), "\"1\"".into()),
        ];
        assert_eq!(call.param("digits"), Some("\"1\""));
        assert_eq!(call.param("x"), Some(""));
        assert_eq!(call.param("y"), None);
        assert_eq!(call.params().count(), 3);
    }

    #[test]
    fn lists_are_trimmed_and_skip_empty_entries() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            (" , ,", &[]),
            ("+919800000001", &["+919800000001"]),
            (" 0980 , +91 98 ,", &["0980", "+91 98"]),
            ("a,,b", &["a", "b"]),
        ];
        for (value, want) in cases {
            assert_eq!(list(value).collect::<Vec<_>>(), *want, "list {value:?}");
        }
    }
}
