//! The calls of Exotel's other URL hooks (package 0.1.2): `select` for a Passthru applet
//! followed by a Switchcase, `greeting` and `sms` for text, `connect` and `gather` for plans. Each
//! runs on the one path every call takes ([`Sandbox::decide`]'s), and its answer is checked here:
//! one that Exotel could not read, or would read differently, is a plugin error, never sent.

use std::sync::Arc;

use super::admission::TenantShare;
use super::bindings::passthru::plugin::types as wit;
use super::calls::{Branch, Export, MAX_REASON_BYTES, Report};
use super::engine::{Plugin, Sandbox};
use super::error::SandboxError;
use super::limits::Limits;
use super::output;
use super::seed::CallSeed;
use super::state::Grants;
use crate::answer::{
    CallPlayback, ConnectPlan, GatherPlan, Media, MusicOnHold, PlaybackTo, RecordingChannels,
    check_case, check_text,
};
use crate::call::CallDetails;

/// Which hook's export to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookExport {
    Select,
    Greeting,
    Sms,
    Connect,
    Gather,
}

impl HookExport {
    /// The export's name in the WIT.
    pub fn name(self) -> &'static str {
        match self {
            HookExport::Select => "select",
            HookExport::Greeting => "greeting",
            HookExport::Sms => "sms",
            HookExport::Connect => "connect",
            HookExport::Gather => "gather",
        }
    }
}

/// What a hook's export answered, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAnswer {
    /// A branch, and perhaps the Switchcase case to take.
    Select {
        branch: Branch,
        case: Option<String>,
    },
    /// The `text/plain` body of a greeting or an SMS.
    Text(String),
    Connect(ConnectPlan),
    Gather(GatherPlan),
}

/// A hook's answer and the plugin's reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub answer: HookAnswer,
    pub reason: Option<String>,
}

impl super::calls::Reasoned for Answered {
    fn reason_mut(&mut self) -> Option<&mut String> {
        self.reason.as_mut()
    }
}

/// What one hook call produced.
pub type HookReport = Report<Answered>;

impl Sandbox {
    /// Runs one call of a hook's export: a fresh instance of `plugin`, the export called with
    /// `call`, under `limits`, its answer checked.
    ///
    /// Never panics and never returns early: every failure is in the report's `outcome`.
    pub async fn answer(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        hook: HookExport,
        call: CallDetails,
        limits: &Limits,
        grants: Arc<Grants>,
    ) -> HookReport {
        let seed = CallSeed::fresh();
        self.answer_seeded(plugin, share, hook, call, limits, grants, seed)
            .await
    }

    /// [`answer`](Self::answer) with the call's clocks and randomness drawn from `seed`.
    #[allow(clippy::too_many_arguments)]
    pub async fn answer_seeded(
        &self,
        plugin: &Plugin,
        share: &TenantShare,
        hook: HookExport,
        call: CallDetails,
        limits: &Limits,
        grants: Arc<Grants>,
        seed: CallSeed,
    ) -> HookReport {
        let call = wit::CallDetails::from(call);
        // Each hook's export has its own world, so its own prepared instance and call method:
        // the same steps, written once.
        macro_rules! run {
            ($pre:ident, $method:ident, $check:ident) => {{
                let export = Export {
                    name: hook.name(),
                    pre: plugin.$pre.as_ref(),
                };
                self.call(
                    plugin,
                    share,
                    export,
                    limits,
                    grants,
                    &seed,
                    async move |pre, store| {
                        let instance = pre.instantiate_async(&mut *store).await?;
                        store.data_mut().limiter.instantiated();
                        Ok($check(instance.$method(&mut *store, &call).await?))
                    },
                )
                .await
            }};
        }
        match hook {
            HookExport::Select => run!(switcher, call_select, selection),
            HookExport::Greeting => run!(greeter, call_greeting, text),
            HookExport::Sms => run!(texter, call_sms, text),
            HookExport::Connect => run!(connector, call_connect, connect),
            HookExport::Gather => run!(gatherer, call_gather, gather),
        }
    }
}

/// A plugin's answer that breaks a rule of the hook's: the flow's fallback is answered instead.
fn refused(what: &str, why: String) -> SandboxError {
    SandboxError::PluginError {
        message: format!("the plugin's {what} cannot be sent: {why}"),
    }
}

fn reason(reason: Option<String>) -> Option<String> {
    reason.map(|mut r| {
        let keep = output::truncate(&r, MAX_REASON_BYTES).len();
        r.truncate(keep);
        r
    })
}

fn selection(said: wit::Selection) -> Result<Answered, SandboxError> {
    if let Some(case) = &said.case {
        check_case(case).map_err(|why| refused("case", why))?;
    }
    let branch = match said.branch {
        wit::Branch::Success => Branch::Success,
        wit::Branch::Failure => Branch::Failure,
    };
    Ok(Answered {
        answer: HookAnswer::Select {
            branch,
            case: said.case,
        },
        reason: reason(said.reason),
    })
}

fn text(said: wit::TextReply) -> Result<Answered, SandboxError> {
    check_text(&said.text).map_err(|why| refused("text", why))?;
    Ok(Answered {
        answer: HookAnswer::Text(said.text),
        reason: reason(said.reason),
    })
}

fn connect(said: wit::ConnectPlan) -> Result<Answered, SandboxError> {
    let plan = ConnectPlan {
        numbers: said.numbers,
        outgoing_phone_number: said.outgoing_phone_number,
        record_call: said.record_call,
        recording_channels: said.recording_channels.map(|c| match c {
            wit::RecordingChannels::Single => RecordingChannels::Single,
            wit::RecordingChannels::Dual => RecordingChannels::Dual,
        }),
        max_ringing_duration: said.max_ringing_duration,
        max_conversation_duration: said.max_conversation_duration,
        music_on_hold: said.music_on_hold.map(|m| MusicOnHold {
            kind: m.kind,
            value: m.value,
        }),
        parallel_attempts: said.parallel_attempts,
        start_call_playback: said.start_call_playback.map(|p| CallPlayback {
            to: match p.to {
                wit::PlaybackTo::Both => PlaybackTo::Both,
                wit::PlaybackTo::Callee => PlaybackTo::Callee,
            },
            media: media(p.media),
        }),
        fetch_after_attempt: said.fetch_after_attempt,
    };
    plan.check().map_err(|why| refused("Connect plan", why))?;
    Ok(Answered {
        answer: HookAnswer::Connect(plan),
        reason: reason(said.reason),
    })
}

fn gather(said: wit::GatherPlan) -> Result<Answered, SandboxError> {
    let plan = GatherPlan {
        prompt: media(said.prompt),
        max_input_digits: said.max_input_digits,
        finish_on_key: said.finish_on_key,
        input_timeout: said.input_timeout,
        repeat_menu: said.repeat_menu,
        repeat_gather_prompt: said.repeat_gather_prompt,
    };
    plan.check().map_err(|why| refused("Gather plan", why))?;
    Ok(Answered {
        answer: HookAnswer::Gather(plan),
        reason: reason(said.reason),
    })
}

fn media(m: wit::Media) -> Media {
    match m {
        wit::Media::AudioUrl(url) => Media::AudioUrl(url),
        wit::Media::Text(text) => Media::Text(text),
    }
}
