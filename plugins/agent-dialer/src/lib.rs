//! `agent-dialer`: tells a Connect applet whom to dial, from the flow's config.
//!
//! `team = "+919800000001, +919800000002, +919800000003"` are the support team's numbers, dialled
//! in order. A caller listed in `vip_numbers` rings up to `vip_parallel` of them at once (default
//! 3, at most 5) and the agent who picks up hears the `vip_playback` text, if set. `caller_id` is
//! the ExoPhone the agent sees, `record = "true"` records the call (both sides on their own
//! channel), and `ring_seconds` bounds how long each number rings.
//!
//! The same plugin exists in Python, JavaScript and C (`python/agent-dialer`, `js/agent-dialer`,
//! `c/agent-dialer`), plan for plan, reason for reason: the reasons are plain text, not Rust's
//! `Debug` quoting, so that every language can write them byte for byte.

use passthru_sdk::{
    Call, CallPlayback, ConnectPlan, Media, PlaybackTo, RecordingChannels, config, list, log,
};

/// What the flow's config says, read once per call.
#[derive(Debug, Default)]
struct Settings {
    team: String,
    vip_numbers: String,
    vip_parallel: Option<u32>,
    vip_playback: Option<String>,
    caller_id: Option<String>,
    record: bool,
    ring_seconds: Option<u32>,
}

impl Settings {
    fn from_config() -> Self {
        let number = |key: &str| config(key).and_then(|v| v.trim().parse().ok());
        Self {
            team: config("team").unwrap_or_default(),
            vip_numbers: config("vip_numbers").unwrap_or_default(),
            vip_parallel: number("vip_parallel"),
            vip_playback: config("vip_playback"),
            caller_id: config("caller_id"),
            record: config("record").is_some_and(|v| v.trim() == "true"),
            ring_seconds: number("ring_seconds"),
        }
    }
}

fn connect(call: &Call) -> ConnectPlan {
    let plan = plan(&Settings::from_config(), call.caller().map(str::trim));
    if let Some(reason) = &plan.reason {
        log::info(reason);
    }
    plan
}

/// The plan for a caller: the team in order, or several at once for a VIP.
fn plan(settings: &Settings, caller: Option<&str>) -> ConnectPlan {
    let mut plan = ConnectPlan::dial(list(&settings.team));
    plan.outgoing_phone_number = settings.caller_id.clone();
    plan.record_call = settings.record;
    if settings.record {
        plan.recording_channels = Some(RecordingChannels::Dual);
    }
    plan.max_ringing_duration = settings.ring_seconds;
    let caller = caller.unwrap_or("");
    let vip = !caller.is_empty() && list(&settings.vip_numbers).any(|n| n == caller);
    if !vip {
        return plan.because(if caller.is_empty() {
            "no caller number: the team in order".to_owned()
        } else {
            format!("caller {caller}: the team in order")
        });
    }
    let parallel = settings.vip_parallel.unwrap_or(3).clamp(1, 5);
    plan.parallel_attempts = Some(parallel);
    plan.start_call_playback = settings.vip_playback.clone().map(|text| CallPlayback {
        to: PlaybackTo::Callee,
        media: Media::Text(text),
    });
    plan.because(format!("caller {caller} is a VIP: {parallel} at once"))
}

passthru_sdk::plugin!(connect = connect);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            team: "+919800000001, +919800000002,".into(),
            vip_numbers: "+919811111111".into(),
            vip_playback: Some("A VIP is calling".into()),
            record: true,
            ..Settings::default()
        }
    }

    #[test]
    fn an_ordinary_caller_rings_the_team_in_order() {
        let plan = plan(&settings(), Some("+919822222222"));
        assert_eq!(plan.numbers, ["+919800000001", "+919800000002"]);
        assert_eq!(plan.parallel_attempts, None);
        assert!(plan.start_call_playback.is_none());
        assert!(plan.record_call);
        assert!(matches!(
            plan.recording_channels,
            Some(RecordingChannels::Dual)
        ));
        assert_eq!(
            plan.reason.as_deref(),
            Some("caller +919822222222: the team in order")
        );
    }

    #[test]
    fn a_vip_rings_several_at_once_and_the_agent_hears_who_calls() {
        let plan = plan(&settings(), Some("+919811111111"));
        assert_eq!(plan.parallel_attempts, Some(3));
        let playback = plan.start_call_playback.expect("a playback");
        assert!(matches!(playback.media, Media::Text(ref t) if t == "A VIP is calling"));
        assert_eq!(
            plan.reason.as_deref(),
            Some("caller +919811111111 is a VIP: 3 at once")
        );
        let many = Settings {
            vip_parallel: Some(9),
            ..settings()
        };
        assert_eq!(
            super::plan(&many, Some("+919811111111")).parallel_attempts,
            Some(5)
        );
    }

    #[test]
    fn no_caller_is_no_vip() {
        let none = Settings {
            vip_numbers: String::new(),
            ..settings()
        };
        assert_eq!(plan(&none, Some("")).parallel_attempts, None);
        let nobody = plan(&settings(), None);
        assert_eq!(nobody.parallel_attempts, None);
        assert_eq!(
            nobody.reason.as_deref(),
            Some("no caller number: the team in order")
        );
    }
}
