//! Exotel's Passthru query string, read into typed call details.
//!
//! Exotel's Passthru applet calls a customer URL with the details of a live call as query
//! parameters (see `docs/exotel/passthru.md`). [`parse`] turns that query string into a
//! [`CallDetails`]: the parameters whose format Exotel documents get typed fields, and every
//! parameter, known or not, is also kept decoded in [`CallDetails::params`].
//!
//! The request path stops halfway: [`params`] decodes the parameters into one buffer, and the
//! typed fields are read from them only when a plugin asks ([`field`], for `decide-lean`'s `call`
//! imports) or takes the call whole ([`CallDetails::from_params`]). Both read a field the same
//! way, so a plugin sees the same values either way.
//!
//! The module is pure: no I/O, no clock, no global state. Parsing never fails and
//! never panics, because a Passthru request must be answered whatever Exotel sends; a parameter
//! that is absent, empty or malformed is simply `None` in its typed field. These rules are part of
//! the plugin contract (the `types` interface in `wit/passthru.wit`), which the sandbox fills in
//! field by field from these types.

mod decode;
mod legs;
mod params;
mod time;

use serde::{Serialize, Serializer};

pub use legs::Leg;
pub use params::Params;

/// The most parameters `params` (and so `parse`) makes room for before it reads any (a real
/// Exotel query has 16 to about 40).
const PARAMS_RESERVED: usize = 64;

/// Reads an Exotel Passthru query string (the part after `?`, without the `?`).
///
/// The query is `k=v` segments joined by `&`; keys and values are form-urlencoded (`+` is a space,
/// `%XX` a byte). An invalid percent sequence is kept literally and bytes that are not UTF-8 become
/// U+FFFD. A segment without `=` is a key with an empty value; empty segments are skipped.
///
/// Typed fields follow the rules of [`CallDetails`]: absent, empty or malformed means `None`, and a
/// repeated key's last value wins. [`CallDetails::params`] holds every pair in arrival order.
///
/// ```
/// use passthru::call::{CallType, parse};
///
/// let call = parse(
///     "CallSid=abc123&CallType=call-attempt&digits=%22215250%22\
///      &StartTime=1970-01-01+05%3A30%3A00&Legs%5B1%5D%5BNumber%5D=0980&x=1",
/// );
/// assert_eq!(call.call_sid.as_deref(), Some("abc123"));
/// assert_eq!(call.call_type, Some(CallType::CallAttempt));
/// assert_eq!(call.digits.as_deref(), Some("215250"));
/// assert_eq!(call.start_time.and_then(|t| t.unix_seconds), Some(0));
/// assert_eq!((call.legs[0].index, call.legs[0].number.as_deref()), (1, Some("0980")));
/// // Every parameter, decoded, known or not.
/// assert_eq!(call.params.len(), 6);
/// assert_eq!(call.params.get(2), Some(("digits", "\"215250\"")));
/// assert_eq!(call.params.get(5), Some(("x", "1")));
/// ```
#[must_use]
pub fn parse(query: &str) -> CallDetails {
    CallDetails::from_params(params(query))
}

/// Decodes a query string into its parameters and nothing more: the first half of [`parse`],
/// which the request path stops at. A plugin that reads the call field by field (`decide-lean`)
/// gets each typed field read from them on demand ([`field`]), so a call whose plugin reads one
/// field never builds the others.
///
/// ```
/// let params = passthru::call::params("CallSid=abc&digits=%221%22&x=1&x=2");
/// assert_eq!(params.len(), 4);
/// assert_eq!(params.last("x"), Some("2"));
/// assert_eq!(passthru::call::parse("CallSid=abc&digits=%221%22&x=1&x=2").params, params);
/// ```
#[must_use]
pub fn params(query: &str) -> Params {
    // Room at once for the text (decoded text is never longer than the query) and for as many
    // parameters as there may be (one more than there are `&`), up to what a real Exotel query
    // has. Past that the list grows as pairs arrive: reserving one per `&` whatever their number
    // would let a query of `&&&…` reserve 16 bytes for each of its bytes.
    let segments = query.bytes().filter(|&b| b == b'&').count() + 1;
    let mut params = Params::with_capacity(segments.min(PARAMS_RESERVED), query.len());
    // Each name and value decoded straight into the parameters' text.
    let mut scratch = Vec::new();
    for (key, value) in decode::raw_pairs(query) {
        params.push_with(key, value, |text, raw| {
            decode::decode_into(text, raw, &mut scratch)
        });
    }
    params
}

/// The call's `CallSid`, read as [`parse`] reads it (the last one wins; empty is `None`),
/// without decoding the other parameters.
///
/// ```
/// assert_eq!(passthru::call::call_sid("a=1&CallSid=x%2Dy&b=2").as_deref(), Some("x-y"));
/// assert_eq!(passthru::call::call_sid("CallSid=a&CallSid="), None);
/// ```
#[must_use]
pub fn call_sid(query: &str) -> Option<String> {
    let mut sid = None;
    for (key, value) in decode::pairs(query) {
        if key == name::CALL_SID {
            sid = text(&value);
        }
    }
    sid
}

/// A call as the sandbox takes it: typed, or only decoded into its parameters.
///
/// The request path hands over [`Params`]: a `decide-lean` plugin then reads each field from
/// them when it asks ([`field`]), and the typed [`CallDetails`] is built only for a plugin that
/// takes the whole call as its argument. Both give a plugin the same values, for details made by
/// [`parse`] or [`CallDetails::from_params`]: a `decide-lean` plugin reads a typed call's fields
/// from its [`params`](CallDetails::params), so typed fields set by hand to disagree with them
/// are not what it sees.
#[derive(Debug, Clone)]
pub enum CallInput {
    /// Boxed: the other variant is a tenth of its size, and calls wait in futures.
    Details(Box<CallDetails>),
    Params(Params),
}

impl CallInput {
    /// The parameters (a typed call keeps them).
    #[must_use]
    pub fn into_params(self) -> Params {
        match self {
            Self::Details(details) => details.params,
            Self::Params(params) => params,
        }
    }

    /// The typed call, built from the parameters if it was not yet.
    #[must_use]
    pub fn into_details(self) -> CallDetails {
        match self {
            Self::Details(details) => *details,
            Self::Params(params) => CallDetails::from_params(params),
        }
    }
}

impl From<CallDetails> for CallInput {
    fn from(details: CallDetails) -> Self {
        Self::Details(Box::new(details))
    }
}

impl From<Params> for CallInput {
    fn from(params: Params) -> Self {
        Self::Params(params)
    }
}

/// What Exotel told us about one call, typed where Exotel's format is known.
///
/// No field is guaranteed: Exotel sends different subsets of its parameters at different stages of
/// a flow. A parameter that is absent, empty, or not in its documented format is `None` (or, for
/// [`legs`](Self::legs), not listed); when a parameter repeats, the typed field takes its last
/// value. String fields hold the decoded value exactly as sent. Everything is also in
/// [`params`](Self::params).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CallDetails {
    /// `CallSid`: Exotel's unique id of the call.
    pub call_sid: Option<String>,
    /// `CallFrom`. Incoming: the caller. Outgoing: the first leg's number.
    pub call_from: Option<String>,
    /// `CallTo`. Incoming: the ExoPhone the call landed on. Outgoing: the number dialled.
    pub call_to: Option<String>,
    /// `From`, the older name; usually equal to [`call_from`](Self::call_from), but not always.
    pub from: Option<String>,
    /// `To`, the older name; usually equal to [`call_to`](Self::call_to), but not always.
    pub to: Option<String>,
    /// `Direction`.
    pub direction: Option<Direction>,
    /// `CallType`: how far the call has got.
    pub call_type: Option<CallType>,
    /// `Created`: when the call was created.
    pub created: Option<Timestamp>,
    /// `StartTime`: when the call started.
    pub start_time: Option<Timestamp>,
    /// `EndTime`: usually the constant placeholder `1970-01-01 05:30:00` (Unix second 0).
    pub end_time: Option<Timestamp>,
    /// `CurrentTime`: Exotel's clock when it sent this request.
    pub current_time: Option<Timestamp>,
    /// `DialCallDuration`: seconds from dialling the second leg to its end, ring time included.
    pub dial_call_duration: Option<u32>,
    /// `DialCallStatus`, present after a Connect applet.
    pub dial_call_status: Option<DialCallStatus>,
    /// `DialWhomNumber`: the agent dialled last; may be `sip:<id>`. `None` when sent empty.
    pub dial_whom_number: Option<String>,
    /// `Legs[i][...]`: the attempted destinations of a Connect applet, in index order.
    pub legs: Vec<Leg>,
    /// `digits`: the keys the caller pressed, with Exotel's surrounding double quotes and any
    /// surrounding whitespace removed; `None` if nothing is left.
    pub digits: Option<String>,
    /// `CustomField`: free text given when the call was started through the API.
    pub custom_field: Option<String>,
    /// `RecordingUrl`: where the call's recording will be.
    pub recording_url: Option<String>,
    /// `RecordingAvailableBy`: when the recording will be there.
    pub recording_available_by: Option<Timestamp>,
    /// `OutgoingPhoneNumber`: the ExoPhone a Connect applet dialled out from.
    pub outgoing_phone_number: Option<String>,
    /// `flow_id`: Exotel's numeric id of the flow, as sent.
    pub flow_id: Option<String>,
    /// `tenant_id`: Exotel's numeric id of the account, as sent.
    pub tenant_id: Option<String>,
    /// Every query parameter, decoded, in arrival order, repeats and empty values included.
    pub params: Params,
}

impl CallDetails {
    /// The typed fields read from `params` (which the details keep): the second half of
    /// [`parse`].
    #[must_use]
    pub fn from_params(params: Params) -> Self {
        let mut call = CallDetails::default();
        let mut legs = legs::Legs::default();
        for (key, value) in &params {
            call.set(key, value, &mut legs);
        }
        call.legs = legs.into_vec();
        call.params = params;
        call
    }

    /// Applies one decoded parameter to the typed fields (not to `params`). Each typed field
    /// reads one parameter, named in [`name`], through the reader [`field`] has for it.
    fn set(&mut self, key: &str, value: &str, legs: &mut legs::Legs) {
        use name::*;
        match key {
            CALL_SID => self.call_sid = text(value),
            CALL_FROM => self.call_from = text(value),
            CALL_TO => self.call_to = text(value),
            FROM => self.from = text(value),
            TO => self.to = text(value),
            DIRECTION => self.direction = direction(value),
            CALL_TYPE => self.call_type = call_type(value),
            CREATED => self.created = Timestamp::from_wire(value),
            START_TIME => self.start_time = Timestamp::from_wire(value),
            END_TIME => self.end_time = Timestamp::from_wire(value),
            CURRENT_TIME => self.current_time = Timestamp::from_wire(value),
            DIAL_CALL_DURATION => self.dial_call_duration = number(value),
            DIAL_CALL_STATUS => self.dial_call_status = dial_call_status(value),
            DIAL_WHOM_NUMBER => self.dial_whom_number = text(value),
            DIGITS => self.digits = digits(value),
            CUSTOM_FIELD => self.custom_field = text(value),
            RECORDING_URL => self.recording_url = text(value),
            RECORDING_AVAILABLE_BY => self.recording_available_by = Timestamp::from_wire(value),
            OUTGOING_PHONE_NUMBER => self.outgoing_phone_number = text(value),
            FLOW_ID => self.flow_id = text(value),
            TENANT_ID => self.tenant_id = text(value),
            _ => legs.set(key, value),
        }
    }
}

/// The parameter each typed field of [`CallDetails`] is read from.
pub mod name {
    pub const CALL_SID: &str = "CallSid";
    pub const CALL_FROM: &str = "CallFrom";
    pub const CALL_TO: &str = "CallTo";
    pub const FROM: &str = "From";
    pub const TO: &str = "To";
    pub const DIRECTION: &str = "Direction";
    pub const CALL_TYPE: &str = "CallType";
    pub const CREATED: &str = "Created";
    pub const START_TIME: &str = "StartTime";
    pub const END_TIME: &str = "EndTime";
    pub const CURRENT_TIME: &str = "CurrentTime";
    pub const DIAL_CALL_DURATION: &str = "DialCallDuration";
    pub const DIAL_CALL_STATUS: &str = "DialCallStatus";
    pub const DIAL_WHOM_NUMBER: &str = "DialWhomNumber";
    pub const DIGITS: &str = "digits";
    pub const CUSTOM_FIELD: &str = "CustomField";
    pub const RECORDING_URL: &str = "RecordingUrl";
    pub const RECORDING_AVAILABLE_BY: &str = "RecordingAvailableBy";
    pub const OUTGOING_PHONE_NUMBER: &str = "OutgoingPhoneNumber";
    pub const FLOW_ID: &str = "flow_id";
    pub const TENANT_ID: &str = "tenant_id";
}

/// One typed field of a call, read from its parameters alone, exactly as
/// [`CallDetails::from_params`] reads it (the last value sent counts): what a `decide-lean`
/// plugin's `call` imports answer without the whole typed call being built. `name` says which
/// parameter holds which field; [`legs`](CallDetails::legs) need the whole call.
pub mod field {
    use super::{CallType, DialCallStatus, Direction, Params, Timestamp};

    /// A free-text field (`call-sid`, `call-from`, ...): the parameter named `name`, one of
    /// [`name`](super::name)'s free-text fields (`digits` and the enums and times have readers
    /// of their own, which this one would skip).
    #[must_use]
    pub fn text(params: &Params, name: &str) -> Option<String> {
        params.last(name).and_then(super::text)
    }

    /// `digits`, with Exotel's quotes removed.
    #[must_use]
    pub fn digits(params: &Params) -> Option<String> {
        params.last(super::name::DIGITS).and_then(super::digits)
    }

    #[must_use]
    pub fn direction(params: &Params) -> Option<Direction> {
        params
            .last(super::name::DIRECTION)
            .and_then(super::direction)
    }

    #[must_use]
    pub fn call_type(params: &Params) -> Option<CallType> {
        params
            .last(super::name::CALL_TYPE)
            .and_then(super::call_type)
    }

    #[must_use]
    pub fn dial_call_status(params: &Params) -> Option<DialCallStatus> {
        params
            .last(super::name::DIAL_CALL_STATUS)
            .and_then(super::dial_call_status)
    }

    #[must_use]
    pub fn dial_call_duration(params: &Params) -> Option<u32> {
        params
            .last(super::name::DIAL_CALL_DURATION)
            .and_then(super::number)
    }

    /// A time field (`created`, `start-time`, ...): the parameter named `name`, one of
    /// [`name`](super::name)'s time fields.
    #[must_use]
    pub fn time(params: &Params, name: &str) -> Option<Timestamp> {
        params.last(name).and_then(Timestamp::from_wire)
    }
}

fn direction(value: &str) -> Option<Direction> {
    text(value).map(Direction::from_wire)
}

fn call_type(value: &str) -> Option<CallType> {
    text(value).map(CallType::from_wire)
}

fn dial_call_status(value: &str) -> Option<DialCallStatus> {
    text(value).map(DialCallStatus::from_wire)
}

/// A time as Exotel sent it, and as Unix seconds.
///
/// Exotel's times are India time (UTC+05:30) in two shapes, `2024-07-31 16:42:56` and
/// `Wed, 31 Jul 2024 16:42:56`. A parameter sent empty gives no `Timestamp` at all; any other value
/// is kept in [`raw`](Self::raw), and [`unix_seconds`](Self::unix_seconds) is `None` when it is not
/// one of those shapes or not a real time (such as the placeholder `0000-00-00 00:00:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timestamp {
    /// The decoded value, exactly as sent.
    pub raw: String,
    /// The UTC Unix time, in seconds: `1970-01-01 05:30:00` is `Some(0)`.
    pub unix_seconds: Option<i64>,
}

impl Timestamp {
    /// `None` for an empty value; otherwise the raw value and, if it reads as a time, Unix seconds.
    fn from_wire(value: &str) -> Option<Self> {
        (!value.is_empty()).then(|| Self {
            raw: value.to_owned(),
            unix_seconds: time::india_time_to_unix(value),
        })
    }
}

/// Which way the call goes (`Direction`).
///
/// Exotel's vocabulary drifts between its APIs, so unknown values are kept as
/// [`Other`](Self::Other), spelled as they arrived. Serializes as the wire spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// `incoming`, also spelled `inbound` by other Exotel APIs.
    Incoming,
    /// `outbound-dial`: a call placed by a Connect applet or the dialler.
    OutboundDial,
    /// `outbound-api`: a call started through Exotel's API.
    OutboundApi,
    /// Any other value, as sent.
    Other(String),
}

impl Direction {
    /// The wire spelling: `incoming`, `outbound-dial`, `outbound-api`, or the other value.
    ///
    /// `inbound` reads as [`Incoming`](Self::Incoming) and so is spelled `incoming` here.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Incoming => "incoming",
            Self::OutboundDial => "outbound-dial",
            Self::OutboundApi => "outbound-api",
            Self::Other(other) => other,
        }
    }

    /// Reads a non-empty wire value; matching is case-sensitive.
    fn from_wire(value: String) -> Self {
        match value.as_str() {
            "incoming" | "inbound" => Self::Incoming,
            "outbound-dial" => Self::OutboundDial,
            "outbound-api" => Self::OutboundApi,
            _ => Self::Other(value),
        }
    }
}

/// How far the call has got (`CallType`).
///
/// Unknown values (Exotel sent `call` before 2013) are kept as [`Other`](Self::Other), spelled as
/// they arrived. Serializes as the wire spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallType {
    /// `call-attempt`: IVR only, no Connect applet has run.
    CallAttempt,
    /// `completed`: a conversation happened.
    Completed,
    /// `client-hangup`: the caller hung up during a Connect applet.
    ClientHangup,
    /// `incomplete`: a Connect applet ran and nobody picked up.
    Incomplete,
    /// `voicemail`.
    Voicemail,
    /// Any other value, as sent.
    Other(String),
}

impl CallType {
    /// The wire spelling: `call-attempt`, `completed`, `client-hangup`, `incomplete`,
    /// `voicemail`, or the other value.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::CallAttempt => "call-attempt",
            Self::Completed => "completed",
            Self::ClientHangup => "client-hangup",
            Self::Incomplete => "incomplete",
            Self::Voicemail => "voicemail",
            Self::Other(other) => other,
        }
    }

    /// Reads a non-empty wire value; matching is case-sensitive.
    fn from_wire(value: String) -> Self {
        match value.as_str() {
            "call-attempt" => Self::CallAttempt,
            "completed" => Self::Completed,
            "client-hangup" => Self::ClientHangup,
            "incomplete" => Self::Incomplete,
            "voicemail" => Self::Voicemail,
            _ => Self::Other(value),
        }
    }
}

/// How the last Connect applet ended (`DialCallStatus`).
///
/// Unknown values are kept as [`Other`](Self::Other), spelled as they arrived. Serializes as the
/// wire spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialCallStatus {
    /// `completed`.
    Completed,
    /// `busy`.
    Busy,
    /// `no-answer`.
    NoAnswer,
    /// `failed`.
    Failed,
    /// `canceled`.
    Canceled,
    /// Any other value, as sent.
    Other(String),
}

impl DialCallStatus {
    /// The wire spelling: `completed`, `busy`, `no-answer`, `failed`, `canceled`, or the other
    /// value.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Other(other) => other,
        }
    }

    /// Reads a non-empty wire value; matching is case-sensitive.
    fn from_wire(value: String) -> Self {
        match value.as_str() {
            "completed" => Self::Completed,
            "busy" => Self::Busy,
            "no-answer" => Self::NoAnswer,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => Self::Other(value),
        }
    }
}

/// The three enums serialize as their wire spelling, a plain string.
macro_rules! serialize_as_str {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(Direction, CallType, DialCallStatus);

/// A free-text value: `None` when empty, otherwise kept exactly as sent.
fn text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// A decimal `u32` with optional surrounding whitespace; `None` for anything else (signs,
/// fractions, overflow, empty).
fn number(value: &str) -> Option<u32> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `digits`: trims whitespace, removes one pair of surrounding double quotes if present, trims
/// again; `None` if nothing is left. What remains is not checked further.
fn digits(value: &str) -> Option<String> {
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
        .trim();
    text(value)
}

#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;
