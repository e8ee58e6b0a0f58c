//! `passthru-sdk`: write a passthru plugin in Rust as one function or two.
//!
//! A plugin exports `decide`, `record`, or both, and [`plugin!`] turns plain Rust functions into
//! those exports:
//!
//! - **`decide`** answers a sync flow: a `fn(&Call) -> Decision` that picks the branch the live
//!   call takes next. Exported alone, it is the world `lean-decider`'s `decide-lean` (below).
//! - **`record`** handles an async flow: a `fn(&Event, &Call) -> Result<(), E>`, where `E` is
//!   any `Display` (usually `String`), that runs in the background after the host has already
//!   answered Exotel. `Ok(())` means the request is handled; an `Err` (its message is kept for
//!   the tenant), a panic or a limit hit is a failed attempt, which the host retries with backoff
//!   and, after the flow's last attempt, keeps as a dead letter. Delivery is at least once: see
//!   [`Event`].
//!
//! ```no_run
//! use passthru_sdk::{Call, Decision, Event, log};
//!
//! fn decide(call: &Call) -> Decision {
//!     match call.digits() {
//!         Some("1") => Decision::success("caller pressed 1"),
//!         _ => Decision::failure("caller did not press 1"),
//!     }
//! }
//!
//! fn record(event: &Event, call: &Call) -> Result<(), String> {
//!     let sid = call.call_sid().ok_or("no CallSid")?;
//!     log::info(&format!("call {sid}: event {} attempt {}", event.id, event.attempt));
//!     Ok(())
//! }
//!
//! // Either one of these, once, at the top level of the crate:
//! passthru_sdk::plugin!(decide = decide, record = record); // world `plugin`: both
//! // passthru_sdk::plugin!(decide = decide);               // world `lean-decider`
//! // passthru_sdk::plugin!(decide);                        // the same, the original form
//! // passthru_sdk::plugin!(record = record);               // world `recorder`
//! # fn main() {}
//! ```
//!
//! The component exports what the macro was given: a plugin that only decides is a
//! `lean-decider` component (it exports `decide-lean`), one that only records is a `recorder`,
//! and one with both is a `plugin` that can serve a flow in either mode.
//!
//! **A plugin that only decides needs a host that speaks package 0.1.4**, which added
//! `lean-decider`. Its `decide-lean` takes no argument: the [`Call`] it hands `decide` asks the
//! host for each field the first time the plugin reads it (the interface `call`), so only the
//! fields read are copied into the plugin's memory. `decide(call-details)` gets all of them,
//! some fifty strings for a typical Exotel query, each copied in separately, and that copying
//! is about a third of a small plugin's call. The function is the same `fn(&Call) -> Decision`
//! either way, and every accessor answers the same. For a host older than 0.1.4, export the world
//! `decider` by hand: implement [`bindings::Guest`], wrapping its argument with [`Call::new`],
//! and pass the type to `passthru_sdk::bindings::__export_decider!`.
//!
//! Build it as a `cdylib`: for `wasm32-unknown-unknown`, linked by `wasm-component-ld`, when it
//! needs nothing of WASI (its component imports only passthru's interfaces, and each call costs
//! less: see [`bare`]), or for `wasm32-wasip2` when it sends HTTP requests (`passthru_sdk::http`,
//! feature `http`) or reads WASI's clocks, randomness or stdio.
//!
//! [`Call`] reads the call as Exotel sent it, through `Option<&str>` accessors and helpers for
//! Exotel's quirks ([`Call::caller`], [`Call::param`]); [`config`], [`config_entries`] and the
//! [`log`] functions are what the host offers. The generated WIT bindings are in [`bindings`], for
//! anything this crate does not wrap.

/// The bindings `wit-bindgen` generates from `wit/passthru.wit`, for anything this crate does not
/// wrap.
///
/// The root holds the world `decider` (its `Guest` trait exports `decide`) and the interfaces
/// every world shares, `passthru::plugin::types`, `passthru::plugin::host` and
/// `passthru::plugin::kv`. The worlds `lean-decider` (exports `decide-lean`, imports `call`),
/// `recorder` (exports `record`), `plugin` (exports `decide` and `record`) and the hooks' worlds
/// are in submodules named after them, and reuse those interfaces rather than generating copies,
/// so a `CallDetails` is one type whichever world a plugin targets.
///
/// Each world's export macro carries the world's full type information into the plugin that uses
/// it; this crate itself carries only the imports. A plugin that exports `decide` alone is
/// therefore a `lean-decider` component, one that exports `record` alone a `recorder`:
/// [`plugin!`] picks the world from the functions it is given.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "decider",
        pub_export_macro: true,
        export_macro_name: "__export_decider",
        default_bindings_module: "passthru_sdk::bindings",
        // `event` is not used by `decider`; the other worlds take it from here.
        generate_unused_types: true,
    });

    /// World `recorder`: a plugin for async flows, exporting `record`.
    pub mod recorder {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "recorder",
            pub_export_macro: true,
            export_macro_name: "__export_recorder",
            default_bindings_module: "passthru_sdk::bindings::recorder",
            with: {
                "passthru:plugin/types@0.1.4": crate::bindings::passthru::plugin::types,
                "passthru:plugin/host@0.1.4": crate::bindings::passthru::plugin::host,
                "passthru:plugin/kv@0.1.4": crate::bindings::passthru::plugin::kv,
            },
        });
    }

    /// World `plugin`: a plugin for flows of either mode, exporting `decide` and `record`.
    pub mod plugin {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "plugin",
            pub_export_macro: true,
            export_macro_name: "__export_plugin",
            default_bindings_module: "passthru_sdk::bindings::plugin",
            with: {
                "passthru:plugin/types@0.1.4": crate::bindings::passthru::plugin::types,
                "passthru:plugin/host@0.1.4": crate::bindings::passthru::plugin::host,
                "passthru:plugin/kv@0.1.4": crate::bindings::passthru::plugin::kv,
            },
        });
    }

    /// World `lean-decider` (since 0.1.4): a plugin for sync flows, exporting `decide-lean`,
    /// which takes no argument; the plugin reads the call through the interface `call`, which
    /// only this world imports and so is generated here, at
    /// `lean_decider::passthru::plugin::call`.
    pub mod lean_decider {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "lean-decider",
            pub_export_macro: true,
            export_macro_name: "__export_lean_decider",
            default_bindings_module: "passthru_sdk::bindings::lean_decider",
            with: {
                "passthru:plugin/types@0.1.4": crate::bindings::passthru::plugin::types,
                "passthru:plugin/host@0.1.4": crate::bindings::passthru::plugin::host,
                "passthru:plugin/kv@0.1.4": crate::bindings::passthru::plugin::kv,
                "passthru:plugin/call@0.1.4": generate,
            },
        });
    }

    /// One world of a hook (package 0.1.2), over the shared interfaces.
    macro_rules! hook_world {
        ($module:ident, $world:literal, $macro:literal, $path:literal) => {
            #[doc = concat!("World `", $world, "`.")]
            pub mod $module {
                wit_bindgen::generate!({
                    path: "../../wit",
                    world: $world,
                    pub_export_macro: true,
                    export_macro_name: $macro,
                    default_bindings_module: $path,
                    with: {
                        "passthru:plugin/types@0.1.4": crate::bindings::passthru::plugin::types,
                        "passthru:plugin/host@0.1.4": crate::bindings::passthru::plugin::host,
                        "passthru:plugin/kv@0.1.4": crate::bindings::passthru::plugin::kv,
                    },
                });
            }
        };
    }
    hook_world!(
        switcher,
        "switcher",
        "__export_switcher",
        "passthru_sdk::bindings::switcher"
    );
    hook_world!(
        greeter,
        "greeter",
        "__export_greeter",
        "passthru_sdk::bindings::greeter"
    );
    hook_world!(
        texter,
        "texter",
        "__export_texter",
        "passthru_sdk::bindings::texter"
    );
    hook_world!(
        connector,
        "connector",
        "__export_connector",
        "passthru_sdk::bindings::connector"
    );
    hook_world!(
        gatherer,
        "gatherer",
        "__export_gatherer",
        "passthru_sdk::bindings::gatherer"
    );
}

use std::fmt;
use std::sync::OnceLock;

use bindings::passthru::plugin::{host, types};

pub use bindings::passthru::plugin::host::Level;
pub use bindings::passthru::plugin::types::{
    CallDetails, CallPlayback, CallType, ConnectPlan, DialCallStatus, Direction, GatherPlan, Leg,
    Media, MusicOnHold, PlaybackTo, RecordingChannels, Timestamp,
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

/// A Passthru answer for a call flow that goes on to a Switchcase applet (`select`, since 0.1.2):
/// a branch and, usually, the name of the case to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub branch: Branch,
    /// Answered as the body `{"select":"CASE"}`. At most 128 bytes, without `"`, `\\` or
    /// control characters, or the host answers the flow's fallback instead.
    pub case: Option<String>,
    pub reason: Option<String>,
}

impl Selection {
    /// The success branch, taking the Switchcase case `case`, with a reason.
    pub fn case(case: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            branch: Branch::Success,
            case: Some(case.into()),
            reason: Some(reason.into()),
        }
    }
}

impl From<Decision> for Selection {
    /// A branch without a case: answered as `decide`'s would be.
    fn from(decision: Decision) -> Self {
        Self {
            branch: decision.branch,
            case: None,
            reason: decision.reason,
        }
    }
}

/// The text a Greeting applet reads out (or its audio URLs, one per line), or an SMS applet's
/// reply (`greeting` and `sms`, since 0.1.2). At most 8 KiB, no control characters but tab and
/// line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub reason: Option<String>,
}

impl Reply {
    /// `text`, with a reason.
    pub fn new(text: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            reason: Some(reason.into()),
        }
    }
}

impl ConnectPlan {
    /// Dial `numbers` one after another, with every other setting left to Exotel.
    pub fn dial<S: Into<String>>(numbers: impl IntoIterator<Item = S>) -> Self {
        Self {
            numbers: numbers.into_iter().map(Into::into).collect(),
            outgoing_phone_number: None,
            record_call: false,
            recording_channels: None,
            max_ringing_duration: None,
            max_conversation_duration: None,
            music_on_hold: None,
            parallel_attempts: None,
            start_call_playback: None,
            fetch_after_attempt: false,
            reason: None,
        }
    }

    /// The same plan, with a reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

impl GatherPlan {
    /// Ask with `prompt`, with every other setting left to Exotel.
    pub fn ask(prompt: Media) -> Self {
        Self {
            prompt,
            max_input_digits: None,
            finish_on_key: None,
            input_timeout: None,
            repeat_menu: None,
            repeat_gather_prompt: None,
            reason: None,
        }
    }

    /// The same plan, with a reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// One request of an async flow, as the host's queue hands it to `record`.
///
/// Delivery is **at least once**: after a failed attempt the same request comes again with the
/// same `id` and the next `attempt`, and after a crash of the host between a run and its
/// bookkeeping it may come again even though `record` returned `Ok`. Make what `record` does
/// idempotent: key what it writes elsewhere by `id` (one per request) or by the call's
/// `CallSid` (one per call, shared by every request of that call), so a second delivery changes
/// nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Event {
    /// The queue's id of this request: the same on every attempt, never reused.
    pub id: u64,
    /// 1 on the first attempt, 2 on the first retry, and so on.
    pub attempt: u32,
    /// When the host accepted the request (and answered Exotel), in Unix milliseconds.
    pub accepted_at_ms: i64,
}

impl Event {
    /// Whether an earlier attempt at this request failed (or may have run: see the type's docs).
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }
}

impl From<types::Event> for Event {
    fn from(event: types::Event) -> Self {
        Self {
            id: event.id,
            attempt: event.attempt,
            accepted_at_ms: event.accepted_at_ms,
        }
    }
}

/// One call, as Exotel's Passthru applet described it: live for `decide`, already answered for
/// `record`.
///
/// Every accessor is an `Option`: Exotel sends different parameters at different stages of a
/// flow, and a parameter that is absent, empty or not in its documented format is `None`.
/// [`Call::details`] has every typed field; [`Call::param`] and [`Call::params`] have every
/// parameter as it arrived, Exotel's undocumented ones and the customer's own included.
///
/// The call that [`plugin!`] hands a `decide` exported alone (world `lean-decider`) is *lazy*: it
/// starts empty and asks the host for a field the first time it is read, then keeps it, so the
/// plugin pays only for the fields it reads. [`Call::details`] fetches every field at once and
/// [`Call::params`] every parameter; [`Call::param`] asks for one parameter by name (for the first
/// few names a call asks about, then it fetches them all). The values are the same either way. A
/// call built from [`CallDetails`] (`Call::new`, `From`, `Default`), and the one every other export
/// gets, holds every field from the start.
#[derive(Clone)]
pub struct Call {
    inner: Inner,
}

/// Where a [`Call`]'s fields come from.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one Call per plugin call: boxing the details would add an allocation to every eager one"
)]
enum Inner {
    /// All of them, handed over at once: `decide(call)`, `record`, the hooks, and tests.
    Eager(CallDetails),
    /// The host's interface `call`, field by field on first use: `decide-lean`. Boxed, so that
    /// an eager call does not carry the empty cells.
    Lazy(Box<Lazy>),
}

/// How many parameters a lazy call asks the host for by name before it fetches them all: a
/// plugin usually reads one or two, and past a handful one copy of the list is cheaper.
const NAMED_PARAMS: usize = 8;

/// The fields of a lazy call read so far. `OnceLock` rather than `OnceCell`, so that `Call` stays
/// `Send` and `Sync` as it always was; on wasm32-wasip2, which has no threads, it costs the same.
#[derive(Debug, Clone, Default)]
struct Lazy {
    /// Every field, once [`Call::details`] asked for them: from then on the accessors read here.
    details: OnceLock<CallDetails>,
    params: OnceLock<Vec<(String, String)>>,
    /// Parameters asked for by name before `params` was fetched, as (name, last value), filled
    /// in order.
    named: [OnceLock<(String, Option<String>)>; NAMED_PARAMS],
    call_sid: OnceLock<Option<String>>,
    call_from: OnceLock<Option<String>>,
    call_to: OnceLock<Option<String>>,
    from: OnceLock<Option<String>>,
    to: OnceLock<Option<String>>,
    direction: OnceLock<Option<Direction>>,
    call_type: OnceLock<Option<CallType>>,
    dial_call_duration: OnceLock<Option<u32>>,
    dial_call_status: OnceLock<Option<DialCallStatus>>,
    dial_whom_number: OnceLock<Option<String>>,
    legs: OnceLock<Vec<Leg>>,
    digits: OnceLock<Option<String>>,
    custom_field: OnceLock<Option<String>>,
    recording_url: OnceLock<Option<String>>,
    outgoing_phone_number: OnceLock<Option<String>>,
    flow_id: OnceLock<Option<String>>,
    tenant_id: OnceLock<Option<String>>,
}

impl Lazy {
    /// The last value of the parameter `key`, asked for by name while a slot is free.
    fn param(&self, key: &str) -> Option<&str> {
        for slot in &self.named {
            let (name, value) = slot.get_or_init(|| (key.to_owned(), source::param(key)));
            if name == key {
                return value.as_deref();
            }
        }
        last_value(self.params.get_or_init(source::params), key)
    }
}

/// The last value of `key` among `params`.
fn last_value<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl fmt::Debug for Call {
    /// An eager call prints its details; a lazy one what it has fetched so far.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Eager(details) => f.debug_struct("Call").field("details", details).finish(),
            Inner::Lazy(lazy) => f.debug_struct("Call").field("lazy", lazy).finish(),
        }
    }
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

/// The field `$name` of a call: from its details when it holds them, else from the host's
/// function of the same name, asked once.
macro_rules! field {
    ($call:expr, $name:ident) => {
        match &$call.inner {
            Inner::Eager(details) => &details.$name,
            Inner::Lazy(lazy) => match lazy.details.get() {
                Some(details) => &details.$name,
                None => lazy.$name.get_or_init(source::$name),
            },
        }
    };
}

impl Call {
    /// Wraps the details the host sent. (`Call::from` is the accessor of Exotel's `From`.)
    pub fn new(details: CallDetails) -> Self {
        Self {
            inner: Inner::Eager(details),
        }
    }

    /// A call that asks the host for each field on first use (`decide-lean`).
    pub(crate) fn lazy() -> Self {
        Self {
            inner: Inner::Lazy(Box::default()),
        }
    }

    /// Every typed field, as the host parsed it. On a lazy call, the first use fetches them all.
    pub fn details(&self) -> &CallDetails {
        match &self.inner {
            Inner::Eager(details) => details,
            Inner::Lazy(lazy) => lazy.details.get_or_init(source::details),
        }
    }

    /// The typed fields, to change in tests. A lazy call fetches them all first, and from then
    /// on reads only them.
    pub fn details_mut(&mut self) -> &mut CallDetails {
        if let Inner::Lazy(lazy) = &mut self.inner {
            let details = lazy.details.take().unwrap_or_else(source::details);
            self.inner = Inner::Eager(details);
        }
        match &mut self.inner {
            Inner::Eager(details) => details,
            Inner::Lazy(_) => unreachable!("the call was made eager just above"),
        }
    }

    /// `CallSid`: Exotel's id of the call, the same for every request of one call.
    pub fn call_sid(&self) -> Option<&str> {
        field!(self, call_sid).as_deref()
    }

    /// `CallFrom`. Incoming: the caller. Outgoing: the first leg's number.
    pub fn call_from(&self) -> Option<&str> {
        field!(self, call_from).as_deref()
    }

    /// `CallTo`. Incoming: the ExoPhone the call landed on. Outgoing: the number dialled.
    pub fn call_to(&self) -> Option<&str> {
        field!(self, call_to).as_deref()
    }

    /// `From`: the older name of `CallFrom`; usually the same, not always present.
    pub fn from(&self) -> Option<&str> {
        field!(self, from).as_deref()
    }

    /// `To`: the older name of `CallTo`.
    pub fn to(&self) -> Option<&str> {
        field!(self, to).as_deref()
    }

    /// The caller's number: `CallFrom`, or `From` when Exotel did not send `CallFrom`. As sent:
    /// trim it before comparing, and list numbers in the form Exotel sends them.
    pub fn caller(&self) -> Option<&str> {
        self.call_from().or_else(|| self.from())
    }

    /// The number called: `CallTo`, or `To` when Exotel did not send `CallTo`.
    pub fn called(&self) -> Option<&str> {
        self.call_to().or_else(|| self.to())
    }

    /// `digits`: the keys the caller pressed, without Exotel's surrounding double quotes.
    pub fn digits(&self) -> Option<&str> {
        field!(self, digits).as_deref()
    }

    /// `Direction`.
    pub fn direction(&self) -> Option<&Direction> {
        field!(self, direction).as_ref()
    }

    /// `CallType`: how far the call has got.
    pub fn call_type(&self) -> Option<&CallType> {
        field!(self, call_type).as_ref()
    }

    /// `DialCallStatus`, present after a Connect applet.
    pub fn dial_call_status(&self) -> Option<&DialCallStatus> {
        field!(self, dial_call_status).as_ref()
    }

    /// `DialCallDuration`, in seconds.
    pub fn dial_call_duration(&self) -> Option<u32> {
        *field!(self, dial_call_duration)
    }

    /// `DialWhomNumber`: the agent dialled last (may be `sip:<id>`).
    pub fn dial_whom_number(&self) -> Option<&str> {
        field!(self, dial_whom_number).as_deref()
    }

    /// `CustomField`, as the flow's creator set it.
    pub fn custom_field(&self) -> Option<&str> {
        field!(self, custom_field).as_deref()
    }

    /// `RecordingUrl`.
    pub fn recording_url(&self) -> Option<&str> {
        field!(self, recording_url).as_deref()
    }

    /// `OutgoingPhoneNumber`.
    pub fn outgoing_phone_number(&self) -> Option<&str> {
        field!(self, outgoing_phone_number).as_deref()
    }

    /// `flow_id`: Exotel's id of the flow.
    pub fn flow_id(&self) -> Option<&str> {
        field!(self, flow_id).as_deref()
    }

    /// `tenant_id`: Exotel's id of the account.
    pub fn tenant_id(&self) -> Option<&str> {
        field!(self, tenant_id).as_deref()
    }

    /// The legs of a Connect applet (`Legs[i][...]`), in index order.
    pub fn legs(&self) -> &[Leg] {
        field!(self, legs)
    }

    /// The last value of the query parameter `key`, decoded, exactly as sent (an empty value is
    /// `Some("")`). Repeated parameters are common: Exotel appends, so the last one is the newest.
    pub fn param(&self, key: &str) -> Option<&str> {
        match &self.inner {
            Inner::Lazy(lazy) if lazy.details.get().is_none() && lazy.params.get().is_none() => {
                lazy.param(key)
            }
            _ => last_value(field!(self, params), key),
        }
    }

    /// Every query parameter, decoded, in arrival order, repeats included.
    pub fn params(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        field!(self, params)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Where a lazy [`Call`] gets its fields: the host's interface `call` (since 0.1.4), a function
/// per field. In the SDK's own tests, which run natively without a host, a [`CallDetails`] the
/// test sets answers instead, and every fetch is counted.
mod source {
    #[cfg(not(test))]
    use crate::bindings::lean_decider::passthru::plugin::call;
    use crate::{CallDetails, CallType, DialCallStatus, Direction, Leg};

    /// One function per field, answering what the field of the same name holds.
    macro_rules! fields {
        ($($name:ident: $ty:ty),* $(,)?) => {$(
            #[cfg(not(test))]
            pub(crate) fn $name() -> $ty {
                call::$name()
            }

            #[cfg(test)]
            pub(crate) fn $name() -> $ty {
                fake::fetch(stringify!($name), |details| details.$name.clone())
            }
        )*};
    }

    fields! {
        call_sid: Option<String>,
        call_from: Option<String>,
        call_to: Option<String>,
        from: Option<String>,
        to: Option<String>,
        direction: Option<Direction>,
        call_type: Option<CallType>,
        dial_call_duration: Option<u32>,
        dial_call_status: Option<DialCallStatus>,
        dial_whom_number: Option<String>,
        legs: Vec<Leg>,
        digits: Option<String>,
        custom_field: Option<String>,
        recording_url: Option<String>,
        outgoing_phone_number: Option<String>,
        flow_id: Option<String>,
        tenant_id: Option<String>,
        params: Vec<(String, String)>,
    }

    #[cfg(not(test))]
    pub(crate) fn details() -> CallDetails {
        call::details()
    }

    #[cfg(test)]
    pub(crate) fn details() -> CallDetails {
        fake::fetch("details", CallDetails::clone)
    }

    #[cfg(not(test))]
    pub(crate) fn param(name: &str) -> Option<String> {
        call::param(name)
    }

    #[cfg(test)]
    pub(crate) fn param(name: &str) -> Option<String> {
        let what = format!("param {name}");
        fake::fetch(&what, |details| {
            crate::last_value(&details.params, name).map(str::to_owned)
        })
    }

    /// The host of the SDK's tests: the details a test set, on this thread.
    #[cfg(test)]
    pub(crate) mod fake {
        use std::cell::RefCell;

        use crate::CallDetails;

        thread_local! {
            static CALL: RefCell<Option<CallDetails>> = const { RefCell::new(None) };
            static FETCHES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        }

        /// Answers this thread's lazy calls from `details`, and forgets the fetches so far.
        pub(crate) fn answer_with(details: CallDetails) {
            CALL.with(|call| *call.borrow_mut() = Some(details));
            FETCHES.with(|fetches| fetches.borrow_mut().clear());
        }

        /// What this thread's lazy calls asked for, in order: a field's name, `details`, or
        /// `param NAME`.
        pub(crate) fn fetches() -> Vec<String> {
            FETCHES.with(|fetches| fetches.borrow().clone())
        }

        pub(crate) fn fetch<T>(what: &str, read: impl FnOnce(&CallDetails) -> T) -> T {
            FETCHES.with(|fetches| fetches.borrow_mut().push(what.to_owned()));
            CALL.with(|call| read(call.borrow().as_ref().expect("a test set the call")))
        }
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

/// The tenant's key-value data (since package 0.1.3): the named stores the flow grants its
/// plugin (its `kv_stores` setting), shared by every call of every flow that grants them.
///
/// ```no_run
/// use passthru_sdk::kv;
///
/// let agents = kv::Store::open("agents");
/// if let Ok(Some(agent)) = agents.get("+919800000001") {
///     // ...
/// }
/// agents.set_for("+919800000001", "+919811111111", std::time::Duration::from_secs(86_400))?;
/// let calls = kv::Store::open("counters").increment("calls-today", 1)?;
/// # Ok::<(), kv::Error>(())
/// ```
///
/// A read comes from the host's memory; a write is seen at once by every later call and reaches
/// the disk moments later. A store the flow does not grant is [`Error::NoSuchStore`]; a write past
/// one of the tenant's caps is [`Error::OverCap`], naming it.
pub mod kv {
    use std::time::Duration;

    use crate::bindings::passthru::plugin::kv as host;
    pub use host::KvError as Error;

    /// One of the stores the flow grants, by name.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Store {
        name: String,
    }

    fn millis(ttl: Duration) -> u64 {
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    impl Store {
        /// The store named `name`. Nothing is checked until it is used.
        pub fn open(name: impl Into<String>) -> Self {
            Self { name: name.into() }
        }

        pub fn name(&self) -> &str {
            &self.name
        }

        /// The value of `key`, or `None` when it is not set or has expired.
        pub fn get(&self, key: &str) -> Result<Option<String>, Error> {
            host::get(&self.name, key)
        }

        /// Sets `key` to `value`, for good.
        pub fn set(&self, key: &str, value: &str) -> Result<(), Error> {
            host::set(&self.name, key, value, None)
        }

        /// Sets `key` to `value` until `ttl` from now (rounded down to milliseconds, at least 1).
        pub fn set_for(&self, key: &str, value: &str, ttl: Duration) -> Result<(), Error> {
            host::set(&self.name, key, value, Some(millis(ttl)))
        }

        /// Removes `key`; whether it was set.
        pub fn delete(&self, key: &str) -> Result<bool, Error> {
            host::delete(&self.name, key)
        }

        /// Adds `delta` to the whole number in `key` (0 when missing) and returns the sum; the key
        /// keeps its time to live.
        pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
            host::increment(&self.name, key, delta, None)
        }

        /// As [`Store::increment`], and the key expires `ttl` from now.
        pub fn increment_for(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, Error> {
            host::increment(&self.name, key, delta, Some(millis(ttl)))
        }
    }
}

pub mod bare;
#[cfg(feature = "http")]
pub mod http;

/// Lines in this call's log, at each level. The log is capped; lines past the cap are counted and
/// dropped, never an error. `println!` and `eprintln!` also land in the log, on `wasm32-wasip2`
/// (a plugin built for `wasm32-unknown-unknown` has no stdout or stderr: see [`bare`]).
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

/// Exports the plugin's functions. Use it once, at the top level of a `cdylib` crate.
///
/// | form                                 | exports            | world          |
/// |--------------------------------------|--------------------|----------------|
/// | `plugin!(decide = f)`, `plugin!(f)`  | `decide-lean`      | `lean-decider` |
/// | `plugin!(record = g)`                | `record`           | `recorder`     |
/// | `plugin!(decide = f, record = g)`    | `decide`, `record` | `plugin`       |
/// | `plugin!(select = f)`                | `select`           | `switcher`     |
/// | `plugin!(greeting = f)`              | `greeting`         | `greeter`      |
/// | `plugin!(sms = f)`                   | `sms`              | `texter`       |
/// | `plugin!(connect = f)`               | `connect`          | `connector`    |
/// | `plugin!(gather = f)`                | `gather`           | `gatherer`     |
///
/// The decide-alone form needs a host that speaks package 0.1.4: `decide-lean` takes no argument,
/// and the [`Call`] it hands `f` fetches each field from the host the first time `f` reads it, so
/// only the fields read are copied into the plugin (see [`Call`]). Every other form hands its
/// function a call that holds every field from the start.
///
/// The hooks of 0.1.2 take a `fn(&Call) -> Selection`, `fn(&Call) -> Reply` (`greeting`, `sms`),
/// `fn(&Call) -> ConnectPlan` or `fn(&Call) -> GatherPlan`; a component serves one hook.
///
/// `f` is a `fn(&Call) -> Decision` and `g` a `fn(&Event, &Call) -> Result<(), E>` for any
/// `E: Display` (the message the host keeps when the attempt fails); both are paths, such as
/// `decide` or `handlers::record`. The two may come in either order, with a trailing comma.
#[macro_export]
macro_rules! plugin {
    (decide = $decide:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::lean_decider::Guest for __PassthruPlugin {
            fn decide_lean() -> $crate::bindings::lean_decider::Decision {
                $crate::bare::enter();
                $crate::__private::decide_lean($decide)
            }
        }

        $crate::bindings::lean_decider::__export_lean_decider!(
            __PassthruPlugin with_types_in $crate::bindings::lean_decider
        );
    };
    (record = $record:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::recorder::Guest for __PassthruPlugin {
            fn record(
                event: $crate::bindings::recorder::Event,
                call: $crate::bindings::recorder::CallDetails,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::bare::enter();
                $crate::__private::record($record, event, call)
            }
        }

        $crate::bindings::recorder::__export_recorder!(
            __PassthruPlugin with_types_in $crate::bindings::recorder
        );
    };
    (decide = $decide:path, record = $record:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::plugin::Guest for __PassthruPlugin {
            fn decide(call: $crate::bindings::plugin::CallDetails) -> $crate::bindings::plugin::Decision {
                $crate::bare::enter();
                $crate::__private::decide($decide, call)
            }

            fn record(
                event: $crate::bindings::plugin::Event,
                call: $crate::bindings::plugin::CallDetails,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::bare::enter();
                $crate::__private::record($record, event, call)
            }
        }

        $crate::bindings::plugin::__export_plugin!(
            __PassthruPlugin with_types_in $crate::bindings::plugin
        );
    };
    (select = $select:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::switcher::Guest for __PassthruPlugin {
            fn select(call: $crate::bindings::switcher::CallDetails) -> $crate::bindings::switcher::Selection {
                $crate::bare::enter();
                $crate::__private::select($select, call)
            }
        }

        $crate::bindings::switcher::__export_switcher!(
            __PassthruPlugin with_types_in $crate::bindings::switcher
        );
    };
    (greeting = $greeting:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::greeter::Guest for __PassthruPlugin {
            fn greeting(call: $crate::bindings::greeter::CallDetails) -> $crate::bindings::greeter::TextReply {
                $crate::bare::enter();
                $crate::__private::reply($greeting, call)
            }
        }

        $crate::bindings::greeter::__export_greeter!(
            __PassthruPlugin with_types_in $crate::bindings::greeter
        );
    };
    (sms = $sms:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::texter::Guest for __PassthruPlugin {
            fn sms(call: $crate::bindings::texter::CallDetails) -> $crate::bindings::texter::TextReply {
                $crate::bare::enter();
                $crate::__private::reply($sms, call)
            }
        }

        $crate::bindings::texter::__export_texter!(
            __PassthruPlugin with_types_in $crate::bindings::texter
        );
    };
    (connect = $connect:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::connector::Guest for __PassthruPlugin {
            fn connect(call: $crate::bindings::connector::CallDetails) -> $crate::ConnectPlan {
                $crate::bare::enter();
                $connect(&$crate::Call::new(call))
            }
        }

        $crate::bindings::connector::__export_connector!(
            __PassthruPlugin with_types_in $crate::bindings::connector
        );
    };
    (gather = $gather:path $(,)?) => {
        #[doc(hidden)]
        struct __PassthruPlugin;

        impl $crate::bindings::gatherer::Guest for __PassthruPlugin {
            fn gather(call: $crate::bindings::gatherer::CallDetails) -> $crate::GatherPlan {
                $crate::bare::enter();
                $gather(&$crate::Call::new(call))
            }
        }

        $crate::bindings::gatherer::__export_gatherer!(
            __PassthruPlugin with_types_in $crate::bindings::gatherer
        );
    };
    (record = $record:path, decide = $decide:path $(,)?) => {
        $crate::plugin!(decide = $decide, record = $record);
    };
    // The original form, before `record` existed: the function is `decide`.
    ($decide:path) => {
        $crate::plugin!(decide = $decide);
    };
}

#[doc(hidden)]
pub mod __private {
    use std::fmt::Display;

    use super::{Branch, Call, CallDetails, Decision, Event, Reply, Selection, types};

    /// What [`plugin!`] calls for `decide` (world `plugin`): the user's function over the
    /// wrapped call, and back to WIT types.
    #[inline(always)]
    pub fn decide(decide: impl FnOnce(&Call) -> Decision, details: CallDetails) -> types::Decision {
        wit_decision(decide(&Call::new(details)))
    }

    /// What [`plugin!`] calls for `decide-lean` (world `lean-decider`): the user's function over a
    /// call that fetches each field from the host when it is first read.
    #[inline(always)]
    pub fn decide_lean(decide: impl FnOnce(&Call) -> Decision) -> types::Decision {
        wit_decision(decide(&Call::lazy()))
    }

    fn wit_decision(decision: Decision) -> types::Decision {
        types::Decision {
            branch: match decision.branch {
                Branch::Success => types::Branch::Success,
                Branch::Failure => types::Branch::Failure,
            },
            reason: decision.reason,
        }
    }

    /// What [`plugin!`] calls for `select`.
    #[inline(always)]
    pub fn select(
        select: impl FnOnce(&Call) -> Selection,
        details: CallDetails,
    ) -> types::Selection {
        let selection = select(&Call::new(details));
        types::Selection {
            branch: match selection.branch {
                Branch::Success => types::Branch::Success,
                Branch::Failure => types::Branch::Failure,
            },
            case: selection.case,
            reason: selection.reason,
        }
    }

    /// What [`plugin!`] calls for `greeting` and `sms`.
    #[inline(always)]
    pub fn reply(reply: impl FnOnce(&Call) -> Reply, details: CallDetails) -> types::TextReply {
        let reply = reply(&Call::new(details));
        types::TextReply {
            text: reply.text,
            reason: reply.reason,
        }
    }

    /// What [`plugin!`] calls for `record`: the user's function over the wrapped event and call,
    /// its error as the message the host keeps.
    #[inline(always)]
    pub fn record<E: Display>(
        record: impl FnOnce(&Event, &Call) -> Result<(), E>,
        event: types::Event,
        details: CallDetails,
    ) -> Result<(), String> {
        record(&Event::from(event), &Call::new(details)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_value_error_reads_as_its_message() {
        let error: Box<dyn std::error::Error> = Box::new(kv::Error::OverCap("max_kv_keys".into()));
        assert!(error.to_string().contains("max_kv_keys"), "{error}");
    }

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
    fn events_convert_field_by_field() {
        let event = Event::from(types::Event {
            id: 42,
            attempt: 3,
            accepted_at_ms: -1,
        });
        assert_eq!(
            event,
            Event {
                id: 42,
                attempt: 3,
                accepted_at_ms: -1
            }
        );
        assert!(event.is_retry());
        assert!(
            !Event {
                attempt: 1,
                ..event
            }
            .is_retry()
        );
    }

    #[test]
    fn record_hands_over_the_event_and_the_error_message() {
        let wit_event = types::Event {
            id: 7,
            attempt: 2,
            accepted_at_ms: 1_722_424_376_000,
        };
        let mut details = Call::default().details().clone();
        details.call_sid = Some("CA1".into());

        let ok = __private::record(
            |event: &Event, call: &Call| {
                assert_eq!((event.id, event.attempt), (7, 2));
                assert_eq!(call.call_sid(), Some("CA1"));
                Ok::<(), String>(())
            },
            wit_event,
            details.clone(),
        );
        assert_eq!(ok, Ok(()));

        // Any `Display` error becomes the message the host keeps.
        let err = __private::record(
            |_: &Event, _: &Call| Err(std::fmt::Error),
            wit_event,
            details,
        );
        assert_eq!(err, Err(std::fmt::Error.to_string()));
    }

    /// A call with every field set, and a parameter repeated.
    fn full_details() -> CallDetails {
        let time = |raw: &str, unix| {
            Some(Timestamp {
                raw: raw.into(),
                unix_seconds: unix,
            })
        };
        CallDetails {
            call_sid: Some("CA1".into()),
            call_from: Some("09800000001".into()),
            call_to: Some("08000000000".into()),
            from: Some("+919800000001".into()),
            to: Some("+918000000000".into()),
            direction: Some(Direction::Other("inbound-ish".into())),
            call_type: Some(CallType::Completed),
            created: time("2024-07-31 16:42:56", Some(1_722_424_376)),
            start_time: time("Wed, 31 Jul 2024 16:42:56", Some(1_722_424_376)),
            end_time: time("1970-01-01 05:30:00", Some(0)),
            current_time: time("0000-00-00 00:00:00", None),
            dial_call_duration: Some(42),
            dial_call_status: Some(DialCallStatus::NoAnswer),
            dial_whom_number: Some("sip:7".into()),
            legs: vec![Leg {
                index: 0,
                number: Some("+919811111111".into()),
                leg_type: Some("single".into()),
                on_call_duration: Some(3),
                cause_code: Some("USER_BUSY".into()),
                cause: Some("17".into()),
                caller_id: None,
                disconnected_by: None,
            }],
            digits: Some("12".into()),
            custom_field: Some("custom".into()),
            recording_url: Some("https://example.com/r.mp3".into()),
            recording_available_by: time("2024-07-31 16:50:00", Some(1_722_424_800)),
            outgoing_phone_number: Some("08000000001".into()),
            flow_id: Some("77".into()),
            tenant_id: Some("acme".into()),
            params: vec![
                ("digits".into(), "\"2\"".into()),
                ("empty".into(), String::new()),
                ("digits".into(), "\"12\"".into()),
            ],
        }
    }

    /// What every accessor answers, in one comparable string.
    fn everything(call: &Call) -> String {
        format!(
            "{:?}",
            (
                (
                    call.call_sid(),
                    call.call_from(),
                    call.call_to(),
                    call.from()
                ),
                (call.to(), call.caller(), call.called(), call.digits()),
                (call.direction(), call.call_type(), call.dial_call_status()),
                (
                    call.dial_call_duration(),
                    call.dial_whom_number(),
                    call.custom_field()
                ),
                (call.recording_url(), call.outgoing_phone_number()),
                (call.flow_id(), call.tenant_id(), call.legs()),
                (
                    call.param("digits"),
                    call.param("empty"),
                    call.param("none")
                ),
                call.params().collect::<Vec<_>>(),
                call.details(),
            )
        )
    }

    fn lazy_call_of(details: CallDetails) -> Call {
        source::fake::answer_with(details);
        Call::lazy()
    }

    #[test]
    fn a_lazy_call_answers_every_accessor_as_an_eager_one() {
        for details in [full_details(), Call::default().details().clone()] {
            let eager = everything(&Call::new(details.clone()));
            assert_eq!(everything(&lazy_call_of(details)), eager);
        }
    }

    #[test]
    fn a_lazy_call_asks_the_host_only_for_what_is_read_and_once() {
        let call = lazy_call_of(full_details());
        assert_eq!(source::fake::fetches(), Vec::<String>::new());

        assert_eq!(call.digits(), Some("12"));
        assert_eq!(call.digits(), Some("12"));
        // `CallFrom` is set, so `caller` does not ask for `From`.
        assert_eq!(call.caller(), Some("09800000001"));
        assert_eq!(call.legs().len(), 1);
        assert_eq!(call.legs().len(), 1);
        assert_eq!(source::fake::fetches(), ["digits", "call_from", "legs"]);
    }

    #[test]
    fn once_a_lazy_call_fetched_its_details_it_asks_for_nothing_more() {
        let call = lazy_call_of(full_details());
        assert_eq!(call.call_sid(), Some("CA1"));
        assert_eq!(call.details().flow_id.as_deref(), Some("77"));
        assert_eq!(call.call_sid(), Some("CA1"));
        assert_eq!(call.tenant_id(), Some("acme"));
        assert_eq!(call.param("digits"), Some("\"12\""));
        assert_eq!(call.params().count(), 3);
        assert_eq!(source::fake::fetches(), ["call_sid", "details"]);
    }

    #[test]
    fn a_lazy_call_asks_for_a_few_parameters_by_name_then_for_them_all() {
        let call = lazy_call_of(full_details());
        assert_eq!(call.param("digits"), Some("\"12\""));
        assert_eq!(call.param("empty"), Some(""));
        assert_eq!(call.param("digits"), Some("\"12\""));
        let names: Vec<String> = (0..NAMED_PARAMS).map(|i| format!("p{i}")).collect();
        for name in &names {
            assert_eq!(call.param(name), None);
        }
        // Every slot is taken: the names asked before still answer, a new one fetches the list.
        assert_eq!(call.param("empty"), Some(""));
        assert_eq!(call.param("digits"), Some("\"12\""));
        let mut want = vec!["param digits".to_owned(), "param empty".to_owned()];
        want.extend(
            names[..NAMED_PARAMS - 2]
                .iter()
                .map(|n| format!("param {n}")),
        );
        want.push("params".to_owned());
        assert_eq!(source::fake::fetches(), want);
        assert_eq!(call.params().count(), 3);
        assert_eq!(
            source::fake::fetches().len(),
            want.len(),
            "params fetched once"
        );
    }

    #[test]
    fn details_mut_on_a_lazy_call_fetches_everything_then_edits_it() {
        let mut call = lazy_call_of(full_details());
        assert_eq!(call.digits(), Some("12"));
        call.details_mut().digits = Some("9".into());
        assert_eq!(call.digits(), Some("9"));
        assert_eq!(call.call_sid(), Some("CA1"));
        assert_eq!(source::fake::fetches(), ["digits", "details"]);
    }

    #[test]
    fn decide_lean_hands_the_user_a_lazy_call() {
        source::fake::answer_with(full_details());
        let decision = __private::decide_lean(|call: &Call| match call.digits() {
            Some("12") => Decision::success("pressed 12"),
            _ => Decision::failure("no"),
        });
        assert!(matches!(decision.branch, types::Branch::Success));
        assert_eq!(decision.reason.as_deref(), Some("pressed 12"));
        assert_eq!(source::fake::fetches(), ["digits"]);
    }

    #[test]
    fn a_call_stays_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Call>();
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
