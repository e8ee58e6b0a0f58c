//! The `call` interface of package 0.1.4: the details of the call `decide-lean` decides, read a
//! field at a time.
//!
//! `decide` takes every detail as its argument, and lowering them into the guest costs a call to
//! the guest's allocator per string: some fifty for a typical Exotel query, about a third of a
//! small plugin's call. Through these imports a plugin pays for the fields it reads. Each answers
//! exactly what the field of the same name in `decide`'s `call-details` holds, and charges the
//! call's host budget, as `config` does, for the parameters it walks to find its field and for
//! the bytes it copies.

use super::bindings::lean_decider::passthru::plugin::call;
use super::bindings::passthru::plugin::types as wit;
use super::state::CallState;
use crate::call::{CallDetails, Leg, Params, field, name};

/// What each import costs the call's host budget besides the bytes it copies: a few fields'
/// worth of work.
const CALL_IMPORT_BYTES: usize = 16;

/// The trap of a `call` import made outside `decide-lean`.
fn outside_decide_lean() -> wasmtime::Error {
    wasmtime::Error::msg(
        "the plugin read the `call` interface outside `decide-lean` (the other exports take the \
         call as their argument)",
    )
}

impl CallState {
    /// What `value` reads of the call `decide-lean` decides. The call is kept as its parameters;
    /// each field is read from them as [`CallDetails::from_params`] reads it, so it is what
    /// `decide`'s `call-details` would hold.
    ///
    /// Charged to the call's host budget: before the read, the walk over the parameters (one
    /// unit a parameter, besides the import's own [`CALL_IMPORT_BYTES`]); after it, `bytes(value)`,
    /// what is copied into the guest (one parameter's value at most, for a field).
    ///
    /// # Errors
    /// A trap: the call's host budget is spent, or the export being called takes the call as its
    /// argument (only `decide-lean` reads it here).
    fn read<T>(
        &mut self,
        value: impl FnOnce(&Params) -> T,
        bytes: impl FnOnce(&T) -> usize,
    ) -> wasmtime::Result<T> {
        let params = self.call.as_ref().ok_or_else(outside_decide_lean)?;
        let mut log = self.log.lock();
        log.budget
            .charge(CALL_IMPORT_BYTES.saturating_add(params.len()))?;
        let value = value(params);
        log.budget.charge(bytes(&value))?;
        Ok(value)
    }

    /// What `value` reads of the whole typed call, for `details` and `legs`, with `bytes(call)`
    /// (and the import's own [`CALL_IMPORT_BYTES`]) charged before the read. The typed call is
    /// built on the first of them and kept for the rest of the call, its building charged first
    /// (its parameters' bytes and count).
    fn read_typed<T>(
        &mut self,
        value: impl FnOnce(&CallDetails) -> T,
        bytes: impl FnOnce(&CallDetails) -> usize,
    ) -> wasmtime::Result<T> {
        let typed = match &mut self.typed_call {
            Some(typed) => typed,
            slot @ None => {
                let params = self.call.as_ref().ok_or_else(outside_decide_lean)?;
                let cost = CALL_IMPORT_BYTES
                    .saturating_add(params.text_len())
                    .saturating_add(params.len());
                self.log.lock().budget.charge(cost)?;
                slot.insert(Box::new(CallDetails::from_params(params.clone())))
            }
        };
        let cost = CALL_IMPORT_BYTES.saturating_add(bytes(typed));
        self.log.lock().budget.charge(cost)?;
        Ok(value(typed))
    }

    /// A free-text field: the parameter `name`.
    fn text(&mut self, name: &str) -> wasmtime::Result<Option<String>> {
        self.read(|p| field::text(p, name), text_len)
    }

    /// A time field: the parameter `name`.
    fn time(&mut self, name: &str) -> wasmtime::Result<Option<wit::Timestamp>> {
        let time = self.read(
            |p| field::time(p, name),
            |t| t.as_ref().map_or(0, |t| t.raw.len()),
        )?;
        Ok(time.map(Into::into))
    }
}

fn text_len(text: &Option<String>) -> usize {
    text.as_ref().map_or(0, String::len)
}

/// The bytes of every leg's text.
fn legs_len(legs: &[Leg]) -> usize {
    legs.iter()
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

/// A whole call's bytes: its parameters, once raw and once in the typed fields, and its legs.
fn details_len(details: &CallDetails) -> usize {
    details
        .params
        .text_len()
        .saturating_mul(2)
        .saturating_add(legs_len(&details.legs))
}

impl call::Host for CallState {
    fn details(&mut self) -> wasmtime::Result<wit::CallDetails> {
        self.read_typed(|typed| CallDetails::clone(typed).into(), details_len)
    }

    fn param(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        // The name was copied in as well.
        self.read(
            |p| p.last(&name).map(str::to_owned),
            |v| name.len() + text_len(v),
        )
    }

    fn params(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        // Every byte is copied: charged before the copy, the walk by `read`.
        let bytes = self.call.as_ref().map_or(0, Params::text_len);
        self.log.lock().budget.charge(bytes)?;
        self.read(Params::to_vec, |_| 0)
    }

    fn call_sid(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::CALL_SID)
    }

    fn call_from(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::CALL_FROM)
    }

    fn call_to(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::CALL_TO)
    }

    fn from(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::FROM)
    }

    fn to(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::TO)
    }

    fn direction(&mut self) -> wasmtime::Result<Option<wit::Direction>> {
        let direction = self.read(field::direction, |d| match d {
            Some(crate::call::Direction::Other(other)) => other.len(),
            _ => 0,
        })?;
        Ok(direction.map(Into::into))
    }

    fn call_type(&mut self) -> wasmtime::Result<Option<wit::CallType>> {
        let call_type = self.read(field::call_type, |t| match t {
            Some(crate::call::CallType::Other(other)) => other.len(),
            _ => 0,
        })?;
        Ok(call_type.map(Into::into))
    }

    fn created(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(name::CREATED)
    }

    fn start_time(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(name::START_TIME)
    }

    fn end_time(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(name::END_TIME)
    }

    fn current_time(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(name::CURRENT_TIME)
    }

    fn dial_call_duration(&mut self) -> wasmtime::Result<Option<u32>> {
        self.read(field::dial_call_duration, |_| 0)
    }

    fn dial_call_status(&mut self) -> wasmtime::Result<Option<wit::DialCallStatus>> {
        let status = self.read(field::dial_call_status, |s| match s {
            Some(crate::call::DialCallStatus::Other(other)) => other.len(),
            _ => 0,
        })?;
        Ok(status.map(Into::into))
    }

    fn dial_whom_number(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::DIAL_WHOM_NUMBER)
    }

    fn legs(&mut self) -> wasmtime::Result<Vec<wit::Leg>> {
        self.read_typed(
            |typed| typed.legs.iter().cloned().map(Into::into).collect(),
            |typed| legs_len(&typed.legs),
        )
    }

    fn digits(&mut self) -> wasmtime::Result<Option<String>> {
        self.read(field::digits, text_len)
    }

    fn custom_field(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::CUSTOM_FIELD)
    }

    fn recording_url(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::RECORDING_URL)
    }

    fn recording_available_by(&mut self) -> wasmtime::Result<Option<wit::Timestamp>> {
        self.time(name::RECORDING_AVAILABLE_BY)
    }

    fn outgoing_phone_number(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::OUTGOING_PHONE_NUMBER)
    }

    fn flow_id(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::FLOW_ID)
    }

    fn tenant_id(&mut self) -> wasmtime::Result<Option<String>> {
        self.text(name::TENANT_ID)
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
        state.call = query.map(crate::call::params);
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

    /// A field's read walks the parameters: it is charged for each of them, so a query of many
    /// empty parameters cannot buy host work at the price of a short value.
    #[test]
    fn a_read_is_charged_for_the_parameters_it_walks() {
        let few = "CallSid=s1&digits=1";
        let many = format!("{}CallSid=s1&digits=1", "=&".repeat(8_000));
        let used = |query: &str| {
            let mut state = state(1_000_000, Some(query));
            assert_eq!(state.call_sid().unwrap().as_deref(), Some("s1"));
            state.log.lock().budget.fuel_used()
        };
        let (few, many) = (used(few), used(&many));
        assert!(
            many >= few + 8_000,
            "{few} with 2 parameters, {many} with 8,002"
        );
    }

    /// `details` and `legs` share one typed call, built on the first and charged once.
    #[test]
    fn the_whole_call_is_built_once_and_charged_once() {
        let query = "CallSid=s1&Legs%5B0%5D%5BNumber%5D=0980&Legs%5B1%5D%5BNumber%5D=0981";
        let mut state = state(1_000_000, Some(query));
        let fuel = |state: &CallState| state.log.lock().budget.fuel_used();
        assert_eq!(state.legs().unwrap().len(), 2);
        let first = fuel(&state);
        assert_eq!(state.legs().unwrap().len(), 2);
        let second = fuel(&state) - first;
        assert!(
            first > second,
            "the first read built the call: {first} against {second}"
        );
        let whole = crate::call::parse(query);
        let details = format!("{:?}", state.details().unwrap());
        assert_eq!(details, format!("{:?}", wit::CallDetails::from(whole)));
    }

    #[test]
    fn the_call_cannot_be_read_outside_decide_lean() {
        let mut state = state(1_000_000, None);
        let error = state.digits().expect_err("no call in the store");
        assert!(error.to_string().contains("decide-lean"), "{error}");
    }
}
