//! `agent-dialer`: tells a Connect applet whom to dial, from the flow's config.
//!
//! `team = "+919800000001, +919800000002, +919800000003"` are the support team's numbers, dialled
//! in order. A caller listed in `vip_numbers` rings up to `vip_parallel` of them at once (default
//! 3) and hears the team's `vip_playback` text, if set, when an agent picks up. `caller_id` is
//! the ExoPhone the agent sees, `record = "true"` records the call, and `ring_seconds` bounds how
//! long each number rings.

use passthru_sdk::{
    Call, CallPlayback, ConnectPlan, Media, PlaybackTo, RecordingChannels, config, list, log,
};

fn connect(call: &Call) -> ConnectPlan {
    let team = config("team").unwrap_or_default();
    let mut plan = ConnectPlan::dial(list(&team));
    plan.outgoing_phone_number = config("caller_id");
    plan.record_call = config("record").is_some_and(|v| v.trim() == "true");
    if plan.record_call {
        plan.recording_channels = Some(RecordingChannels::Dual);
    }
    plan.max_ringing_duration = config("ring_seconds").and_then(|v| v.trim().parse().ok());
    let caller = call.caller().map(str::trim).unwrap_or("");
    let vip = config("vip_numbers").is_some_and(|vips| list(&vips).any(|n| n == caller));
    if !vip {
        return plan.because(format!("caller {caller:?}: the team in order"));
    }
    let parallel = config("vip_parallel")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(3u32);
    plan.parallel_attempts = Some(parallel.clamp(1, 5));
    plan.start_call_playback = config("vip_playback").map(|text| CallPlayback {
        to: PlaybackTo::Callee,
        media: Media::Text(text),
    });
    let reason = format!("caller {caller} is a VIP: {parallel} at once");
    log::info(&reason);
    plan.because(reason)
}

passthru_sdk::plugin!(connect = connect);
