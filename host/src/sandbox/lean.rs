//! The `call` interface of package 0.1.4: the details of the call `decide-lean` decides, read a
//! field at a time.
//!
//! `decide` takes every detail as its argument, and lowering them into the guest costs a call to
//! the guest's allocator per string: some fifty for a typical Exotel query, about a third of a
//! small plugin's call. Through these imports a plugin pays for the fields it reads. Each answers
//! exactly what the field of the same name in `decide`'s `call-details` holds, and charges the
//! bytes it copies to the call's host budget, as `config` does.

use wasmtime::bail;

use super::bindings::lean_decider::passthru::plugin::call;
use super::bindings::passthru::plugin::types as wit;
use super::state::CallState;
use crate::call::{CallDetails, Timestamp};

/// What each import costs the call's host budget besides the bytes it copies: a few fields'
/// worth of work.
const CALL_IMPORT_BYTES: usize = 16;

impl CallState {
    /// The call `decide-lean` reads, with `bytes(call)` charged to the call.
    ///
    /// # Errors
    /// A trap: the call's host budget is spent, or the export being called takes the call as its
    /// argument (only `decide-lean` reads it here).
    fn read<T>(
        &mut self,
        bytes: impl FnOnce(&CallDetails) -> usize,
        value: impl FnOnce(&CallDetails) -> T,
    ) -> wasmtime::Result<T> {
        let Some(details) = &self.call else {
            bail!(
                "the plugin read the `call` interface outside `decide-lean` (the other exports \
                 take the call as their argument)"
            );
        };
        let cost = CALL_IMPORT_BYTES.saturating_add(bytes(details));
        self.log.lock().budget.charge(cost)?;
        Ok(value(details))
    }

    /// One text field, charged by its length.
    fn text(
        &mut self,
        field: fn(&CallDetails) -> &Option<String>,
    ) -> wasmtime::Result<Option<String>> {
        self.read(|c| text_len(field(c)), |c| field(c).clone())
    }

    /// One time field, charged by its raw text's length.
    fn time(
        &mut self,
        field: fn(&CallDetails) -> &Option<Timestamp>,
    ) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.read(
            |c| field(c).as_ref().map_or(0, |t| t.raw.len()),
            |c| field(c).clone().map(Into::into),
        )
    }
}

fn text_len(text: &Option<String>) -> usize {
    text.as_ref().map_or(0, String::len)
}

/// The bytes of every parameter's name and value.
fn params_len(details: &CallDetails) -> usize {
    details.params.text_len()
}

/// The bytes of every leg's text.
fn legs_len(details: &CallDetails) -> usize {
    details
        .legs
        .iter()
        .map(|leg| {
            [
                &leg.number,
                &leg.leg_type,
                &leg.cause_code,
                &leg.cause,
                &leg.caller_id,
                &leg.disconnected_by,
            ]
            .into_iter()
            .map(text_len)
            .sum::<usize>()
        })
        .sum()
}

/// About the bytes `details` copies: every typed field is a parameter too, so twice the
/// parameters' bytes, plus the legs'.
fn details_len(details: &CallDetails) -> usize {
    params_len(details)
        .saturating_mul(2)
        .saturating_add(legs_len(details))
}

impl call::Host for CallState {
    fn details(&mut self) -> wasmtime::Result<wit::CallDetails> {
        self.read(details_len, |c| c.clone().into())
    }

    fn param(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        self.read(
            |c| name.len() + c.params.last(&name).map_or(0, str::len),
            |c| c.params.last(&name).map(str::to_owned),
        )
    }

    fn params(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.read(params_len, |c| c.params.to_vec())
    }

    fn call_sid(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.call_sid)
    }

    fn call_from(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.call_from)
    }

    fn call_to(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.call_to)
    }

    fn from(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.from)
    }

    fn to(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.to)
    }

    fn direction(&mut self) -> wasmtime::Result<Option<wit::Direction>> {
        self.read(
            |c| match &c.direction {
                Some(crate::call::Direction::Other(s)) => s.len(),
                _ => 0,
            },
            |c| c.direction.clone().map(Into::into),
        )
    }

    fn call_type(&mut self) -> wasmtime::Result<Option<wit::CallType>> {
        self.read(
            |c| match &c.call_type {
                Some(crate::call::CallType::Other(s)) => s.len(),
                _ => 0,
            },
            |c| c.call_type.clone().map(Into::into),
        )
    }

    fn created(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(|c| &c.created)
    }

    fn start_time(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(|c| &c.start_time)
    }

    fn end_time(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(|c| &c.end_time)
    }

    fn current_time(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(|c| &c.current_time)
    }

    fn dial_call_duration(&mut self) -> wasmtime::Result<Option<u32>> {
        self.read(|_| 0, |c| c.dial_call_duration)
    }

    fn dial_call_status(&mut self) -> wasmtime::Result<Option<wit::DialCallStatus>> {
        self.read(
            |c| match &c.dial_call_status {
                Some(crate::call::DialCallStatus::Other(s)) => s.len(),
                _ => 0,
            },
            |c| c.dial_call_status.clone().map(Into::into),
        )
    }

    fn dial_whom_number(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.dial_whom_number)
    }

    fn legs(&mut self) -> wasmtime::Result<Vec<wit::Leg>> {
        self.read(legs_len, |c| {
            c.legs.iter().cloned().map(Into::into).collect()
        })
    }

    fn digits(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.digits)
    }

    fn custom_field(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.custom_field)
    }

    fn recording_url(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.recording_url)
    }

    fn recording_available_by(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(|c| &c.recording_available_by)
    }

    fn outgoing_phone_number(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.outgoing_phone_number)
    }

    fn flow_id(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.flow_id)
    }

    fn tenant_id(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(|c| &c.tenant_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::call::Host;
    use super::*;
    use crate::sandbox::state::Grants;

    fn state(fuel: u64, query: Option<&str>) -> CallState {
        let later = Instant::now() + Duration::from_secs(60);
        let mut state = CallState::new(1 << 20, Arc::new(Grants::default()), fuel, later);
        state.call = query.map(crate::call::parse);
        state
    }

    #[test]
    fn each_field_answers_what_decide_would_get() {
        let query = "CallSid=s1&CallFrom=0980&digits=%2212%22&Direction=sideways&x=1&x=2&e=";
        let mut state = state(1_000_000, Some(query));
        let whole = crate::call::parse(query);
        assert_eq!(state.call_sid().unwrap().as_deref(), Some("s1"));
        assert_eq!(state.call_from().unwrap().as_deref(), Some("0980"));
        assert_eq!(state.digits().unwrap().as_deref(), Some("12"));
        assert_eq!(state.call_to().unwrap(), None);
        assert!(matches!(
            state.direction().unwrap(),
            Some(wit::Direction::Other(s)) if s == "sideways"
        ));
        assert_eq!(state.param("x".into()).unwrap().as_deref(), Some("2"));
        assert_eq!(state.param("e".into()).unwrap().as_deref(), Some(""));
        assert_eq!(state.param("X".into()).unwrap(), None);
        assert_eq!(state.params().unwrap(), whole.params.to_vec());
        // The generated type has no `PartialEq`; its `Debug` shows every field.
        let details = format!("{:?}", state.details().unwrap());
        assert_eq!(details, format!("{:?}", wit::CallDetails::from(whole)));
    }

    #[test]
    fn every_read_is_charged_and_refused_past_the_fuel() {
        let query = format!("CallSid=s1&big={}", "v".repeat(4096));
        let mut state = state(1_000, Some(&query));
        assert!(state.call_sid().is_ok(), "a small read fits");
        let used = state.log.lock().budget.fuel_used();
        assert!(used >= 2 + CALL_IMPORT_BYTES as u64, "charged {used}");
        let error = state.params().expect_err("4 KiB is past the fuel left");
        assert!(error.to_string().contains("fuel"), "{error}");
    }

    #[test]
    fn the_call_cannot_be_read_outside_decide_lean() {
        let mut state = state(1_000_000, None);
        let error = state.digits().expect_err("no call in the store");
        assert!(error.to_string().contains("decide-lean"), "{error}");
    }
}
