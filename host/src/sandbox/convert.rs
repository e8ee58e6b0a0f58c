//! Moves the parser's call details into the generated WIT types (only the parameters, which the
//! parser keeps in one buffer, are copied out into a string apiece).

use super::bindings::passthru::plugin::types as wit;
use crate::call;

impl From<call::CallDetails> for wit::CallDetails {
    fn from(c: call::CallDetails) -> Self {
        Self {
            call_sid: c.call_sid,
            call_from: c.call_from,
            call_to: c.call_to,
            from: c.from,
            to: c.to,
            direction: c.direction.map(Into::into),
            call_type: c.call_type.map(Into::into),
            created: c.created.map(Into::into),
            start_time: c.start_time.map(Into::into),
            end_time: c.end_time.map(Into::into),
            current_time: c.current_time.map(Into::into),
            dial_call_duration: c.dial_call_duration,
            dial_call_status: c.dial_call_status.map(Into::into),
            dial_whom_number: c.dial_whom_number,
            legs: c.legs.into_iter().map(Into::into).collect(),
            digits: c.digits,
            custom_field: c.custom_field,
            recording_url: c.recording_url,
            recording_available_by: c.recording_available_by.map(Into::into),
            outgoing_phone_number: c.outgoing_phone_number,
            flow_id: c.flow_id,
            tenant_id: c.tenant_id,
            params: c.params.to_vec(),
        }
    }
}

impl From<call::Direction> for wit::Direction {
    fn from(d: call::Direction) -> Self {
        match d {
            call::Direction::Incoming => Self::Incoming,
            call::Direction::OutboundDial => Self::OutboundDial,
            call::Direction::OutboundApi => Self::OutboundApi,
            call::Direction::Other(s) => Self::Other(s),
        }
    }
}

impl From<call::CallType> for wit::CallType {
    fn from(t: call::CallType) -> Self {
        match t {
            call::CallType::CallAttempt => Self::CallAttempt,
            call::CallType::Completed => Self::Completed,
            call::CallType::ClientHangup => Self::ClientHangup,
            call::CallType::Incomplete => Self::Incomplete,
            call::CallType::Voicemail => Self::Voicemail,
            call::CallType::Other(s) => Self::Other(s),
        }
    }
}

impl From<call::DialCallStatus> for wit::DialCallStatus {
    fn from(s: call::DialCallStatus) -> Self {
        match s {
            call::DialCallStatus::Completed => Self::Completed,
            call::DialCallStatus::Busy => Self::Busy,
            call::DialCallStatus::NoAnswer => Self::NoAnswer,
            call::DialCallStatus::Failed => Self::Failed,
            call::DialCallStatus::Canceled => Self::Canceled,
            call::DialCallStatus::Other(s) => Self::Other(s),
        }
    }
}

impl From<call::Timestamp> for wit::Timestamp {
    fn from(t: call::Timestamp) -> Self {
        Self {
            raw: t.raw,
            unix_seconds: t.unix_seconds,
        }
    }
}

impl From<call::Leg> for wit::Leg {
    fn from(l: call::Leg) -> Self {
        Self {
            index: l.index,
            number: l.number,
            leg_type: l.leg_type,
            on_call_duration: l.on_call_duration,
            cause_code: l.cause_code,
            cause: l.cause,
            caller_id: l.caller_id,
            disconnected_by: l.disconnected_by,
        }
    }
}
