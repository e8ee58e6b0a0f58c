//! `hook-probe`: a test fixture that exports every hook of package 0.1.2 at once (`select`,
//! `greeting`, `sms`, `connect`, `gather`), and a plain `decide` that takes the call's details as
//! its argument, so the host's handling of each hook's failures can be tested against one real
//! guest. (Since 0.1.4 the SDK's decide-alone plugins export `decide-lean` instead: this is the
//! Rust guest with an eager `decide`.)
//!
//! The flow's config key `mode` picks the behaviour of whichever export is called:
//!
//! - `trap`: panics (a trap).
//! - `loop`: spins forever: out of fuel, or the deadline when fuel is plentiful.
//! - `count`: adds 1 to key `calls` of the key-value store `counts`, then answers as below.
//! - anything else, or no `mode`: a valid answer, `probe` in it somewhere; except that `decide`
//!   answers `success` with the reason `vip` when the flow's `vip_numbers` (comma-separated)
//!   lists `CallFrom`, and logs `caller <number> is a VIP` at `info`.
//!
//! Not a plugin to deploy: it exists for the host's tests. Its world is its own, with the exports
//! of the hook worlds of `wit/` (no SDK world exports them all, since a real plugin serves one hook).

wit_bindgen::generate!({
    inline: r#"
        package passthru-testing:probe;

        world probe {
            use passthru:plugin/types@0.1.4.{
                call-details, decision, selection, text-reply, connect-plan, gather-plan,
            };
            import passthru:plugin/host@0.1.4;
            import passthru:plugin/kv@0.1.4;

            export decide: func(call: call-details) -> decision;
            export select: func(call: call-details) -> selection;
            export greeting: func(call: call-details) -> text-reply;
            export sms: func(call: call-details) -> text-reply;
            export connect: func(call: call-details) -> connect-plan;
            export gather: func(call: call-details) -> gather-plan;
        }
    "#,
    path: "../../../wit",
    world: "passthru-testing:probe/probe",
    generate_all,
});

use passthru::plugin::host::{self, Level};
use passthru::plugin::types::{Branch, Media};

/// Does what the flow's `mode` says before answering.
fn misbehave() {
    match host::config("mode").as_deref() {
        Some("trap") => panic!("hook-probe: deliberate trap"),
        Some("loop") => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some("count") => {
            if let Err(error) = passthru::plugin::kv::increment("counts", "calls", 1, None) {
                host::log(Level::Error, &format!("count: {error:?}"));
            }
        }
        _ => {}
    }
}

struct Probe;

/// Whether `caller` is among the comma-separated `list`, entries trimmed.
fn is_listed(list: &str, caller: &str) -> bool {
    list.split(',').any(|entry| entry.trim() == caller)
}

impl Guest for Probe {
    fn decide(call: CallDetails) -> Decision {
        misbehave();
        let vips = host::config("vip_numbers").unwrap_or_default();
        match call.call_from {
            Some(caller) if !caller.trim().is_empty() && is_listed(&vips, caller.trim()) => {
                host::log(Level::Info, &format!("caller {} is a VIP", caller.trim()));
                Decision {
                    branch: Branch::Success,
                    reason: Some("vip".into()),
                }
            }
            _ => Decision {
                branch: Branch::Failure,
                reason: Some("probe".into()),
            },
        }
    }

    fn select(_call: CallDetails) -> Selection {
        misbehave();
        Selection {
            branch: Branch::Success,
            case: Some("probe".into()),
            reason: None,
        }
    }

    fn greeting(_call: CallDetails) -> TextReply {
        misbehave();
        TextReply {
            text: "probe greeting".into(),
            reason: None,
        }
    }

    fn sms(_call: CallDetails) -> TextReply {
        misbehave();
        TextReply {
            text: "probe sms".into(),
            reason: None,
        }
    }

    fn connect(_call: CallDetails) -> ConnectPlan {
        misbehave();
        ConnectPlan {
            numbers: vec!["+910000000000".into()],
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

    fn gather(_call: CallDetails) -> GatherPlan {
        misbehave();
        GatherPlan {
            prompt: Media::Text("probe".into()),
            max_input_digits: None,
            finish_on_key: None,
            input_timeout: None,
            repeat_menu: None,
            repeat_gather_prompt: None,
            reason: None,
        }
    }
}

export!(Probe);
