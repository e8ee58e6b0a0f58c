//! What a flow answers Exotel besides a branch: a Switchcase case, a text (Greeting, SMS), or a
//! plan (Connect, Gather); how each is checked, and how it is written the way Exotel reads it.
//!
//! The plugin's answer (from the WIT records) and the flow's fallback (from its settings) are the
//! same types here, checked by the same rules, so a fallback the API accepted always renders.
//!
//! Exotel documents the Switchcase body and the text hooks' `text/plain` in its help articles; the
//! JSON field names of the Connect and Gather answers come from public integrations rather than
//! from text we could read. They are all in [`FIELDS`], so that a correction is one line, and
//! `docs/hooks.md` lists which are which.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The longest Switchcase case name.
pub const MAX_CASE_BYTES: usize = 128;
/// The longest text answer (a greeting, its audio URLs, or an SMS).
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// The most numbers one Connect plan may dial.
pub const MAX_NUMBERS: usize = 32;
/// The longest number, ExoPhone, key, tone or URL in a plan.
pub const MAX_PLAN_STRING_BYTES: usize = 2048;
/// The most destinations rung at once (one public source caps Exotel's at 5).
pub const MAX_PARALLEL_ATTEMPTS: u32 = 5;

/// Exotel's JSON names for the plan fields: (our name, Exotel's name, how sure we are). Every
/// name written into a Connect or Gather answer is looked up here.
pub const FIELDS: &[(&str, &str, Source)] = &[
    (
        "fetch_after_attempt",
        "fetch_after_attempt",
        Source::PublicCode,
    ),
    ("destination", "destination", Source::PublicCode),
    ("numbers", "numbers", Source::PublicCode),
    ("contact_uri", "contact_uri", Source::Official),
    (
        "outgoing_phone_number",
        "outgoing_phone_number",
        Source::PublicCode,
    ),
    ("record", "record", Source::PublicCode),
    (
        "recording_channels",
        "recording_channels",
        Source::PublicCode,
    ),
    (
        "max_ringing_duration",
        "max_ringing_duration",
        Source::PublicCode,
    ),
    (
        "max_conversation_duration",
        "max_conversation_duration",
        Source::PublicCode,
    ),
    ("music_on_hold", "music_on_hold", Source::PublicCode),
    ("parallel_ringing", "parallel_ringing", Source::PublicCode),
    ("activate", "activate", Source::PublicCode),
    (
        "max_parallel_attempts",
        "max_parallel_attempts",
        Source::PublicCode,
    ),
    (
        "start_call_playback",
        "start_call_playback",
        Source::Official,
    ),
    ("playback_to", "playback_to", Source::Official),
    ("type", "type", Source::Official),
    ("value", "value", Source::Official),
    ("gather_prompt", "gather_prompt", Source::PublicCode),
    ("text", "text", Source::PublicCode),
    ("audio_url", "audio_url", Source::PublicCode),
    ("max_input_digits", "max_input_digits", Source::PublicCode),
    ("finish_on_key", "finish_on_key", Source::PublicCode),
    ("input_timeout", "input_timeout", Source::PublicCode),
    ("repeat_menu", "repeat_menu", Source::PublicCode),
    (
        "repeat_gather_prompt",
        "repeat_gather_prompt",
        Source::PublicCode,
    ),
];

/// How sure we are of a field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Said in Exotel's own help articles.
    Official,
    /// Seen in several independent public integrations, not in text of Exotel's we could read.
    PublicCode,
}

/// Exotel's name for one of our field names. Every name used is in [`FIELDS`] (a test checks
/// each renders), so the fallback to our own name is never taken in practice.
fn field(ours: &'static str) -> &'static str {
    FIELDS
        .iter()
        .find(|(name, _, _)| *name == ours)
        .map_or(ours, |(_, exotel, _)| exotel)
}

/// A Passthru answer that names a Switchcase case: the body `{"select":"CASE"}`.
///
/// # Errors
/// A message when the case is empty, too long, or holds `"`, `\` or a control character (it would
/// break the JSON Exotel reads, or be read differently than meant).
pub fn check_case(case: &str) -> Result<(), String> {
    if case.is_empty() {
        return Err("a Switchcase case must not be empty".into());
    }
    if case.len() > MAX_CASE_BYTES {
        return Err(format!(
            "a Switchcase case is at most {MAX_CASE_BYTES} bytes, not {}",
            case.len()
        ));
    }
    if let Some(bad) = case
        .chars()
        .find(|c| *c == '"' || *c == '\\' || c.is_control())
    {
        return Err(format!(
            "a Switchcase case may not hold {bad:?}: it would break the body {{\"select\":\"...\"}}"
        ));
    }
    Ok(())
}

/// The `text/plain` body that sends a call to the Switchcase case `case` (already checked).
pub fn select_body(case: &str) -> String {
    format!("{{\"select\":\"{case}\"}}")
}

/// Checks a text answer: at most [`MAX_TEXT_BYTES`], no control characters but tab and line breaks.
///
/// # Errors
/// A message naming what is wrong.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "a text answer is at most {MAX_TEXT_BYTES} bytes, not {}",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(format!(
            "a text answer may not hold the control character {bad:?}"
        ));
    }
    Ok(())
}

/// How a Connect applet records a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordingChannels {
    Single,
    Dual,
}

/// What the caller hears while the destination rings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MusicOnHold {
    /// As Exotel spells it: `operator_tone`, `default_tone`, or another kind the account offers.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Who hears the playback at the start of a connected call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlaybackTo {
    Both,
    Callee,
}

/// Something to play: an audio file, or text read out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Media {
    AudioUrl(String),
    Text(String),
}

impl Media {
    fn value(&self) -> &str {
        match self {
            Media::AudioUrl(s) | Media::Text(s) => s,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Media::AudioUrl(_) => field("audio_url"),
            Media::Text(_) => field("text"),
        }
    }
}

/// What a connected call starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallPlayback {
    pub to: PlaybackTo,
    pub media: Media,
}

/// Whom a Connect applet dials, and how. Every option left out is left out of the answer too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectPlan {
    /// The numbers to dial, in order: 1 to 32.
    pub numbers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_phone_number: Option<String>,
    #[serde(default)]
    pub record_call: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_channels: Option<RecordingChannels>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ringing_duration: Option<u32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conversation_duration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub music_on_hold: Option<MusicOnHold>,
    /// Ring this many at once, 1 to 5; left out: one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 5)]
    pub parallel_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_call_playback: Option<CallPlayback>,
    #[serde(default)]
    pub fetch_after_attempt: bool,
}

/// What a Gather applet asks, and how it reads the keys. Every option left out is left out of the
/// answer too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatherPlan {
    pub prompt: Media,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_digits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_on_key: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_menu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_gather_prompt: Option<u32>,
}

/// A string of a plan: not empty, at most [`MAX_PLAN_STRING_BYTES`], no control characters.
fn check_plan_string(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.len() > MAX_PLAN_STRING_BYTES {
        return Err(format!(
            "{what} is at most {MAX_PLAN_STRING_BYTES} bytes, not {}",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} may not hold control characters"));
    }
    Ok(())
}

fn check_media(what: &str, media: &Media) -> Result<(), String> {
    match media {
        Media::AudioUrl(url) => check_plan_string(what, url),
        Media::Text(text) => {
            check_plan_string(what, text.lines().next().unwrap_or(""))?;
            check_text(text)
        }
    }
}

impl ConnectPlan {
    /// # Errors
    /// A message naming the first field out of range.
    pub fn check(&self) -> Result<(), String> {
        if self.numbers.is_empty() || self.numbers.len() > MAX_NUMBERS {
            return Err(format!(
                "a Connect plan dials 1 to {MAX_NUMBERS} numbers, not {}",
                self.numbers.len()
            ));
        }
        for number in &self.numbers {
            check_plan_string("a number to dial", number)?;
        }
        if let Some(from) = &self.outgoing_phone_number {
            check_plan_string("outgoing_phone_number", from)?;
        }
        if let Some(music) = &self.music_on_hold {
            check_plan_string("music_on_hold.kind", &music.kind)?;
            if let Some(value) = &music.value {
                check_plan_string("music_on_hold.value", value)?;
            }
        }
        if let Some(n) = self.parallel_attempts
            && !(1..=MAX_PARALLEL_ATTEMPTS).contains(&n)
        {
            return Err(format!(
                "parallel_attempts is 1 to {MAX_PARALLEL_ATTEMPTS}, not {n}"
            ));
        }
        if let Some(playback) = &self.start_call_playback {
            check_media("start_call_playback", &playback.media)?;
        }
        Ok(())
    }

    /// The JSON Exotel reads for this plan, for the request's `Exotel-Version`: `1.1` (the
    /// call-centre variant) lists destinations as `contact_uri` objects, anything else as
    /// `numbers`.
    pub fn render(&self, exotel_version: Option<&str>) -> Value {
        let mut out = Map::new();
        let mut put = |name: &'static str, value: Value| {
            out.insert(field(name).to_owned(), value);
        };
        put("fetch_after_attempt", json!(self.fetch_after_attempt));
        let destination = if exotel_version.is_some_and(|v| v.trim() == "1.1") {
            Value::Array(
                self.numbers
                    .iter()
                    .map(|n| json!({ field("contact_uri"): n }))
                    .collect(),
            )
        } else {
            json!({ field("numbers"): self.numbers })
        };
        put("destination", destination);
        if let Some(from) = &self.outgoing_phone_number {
            put("outgoing_phone_number", json!(from));
        }
        put("record", json!(self.record_call));
        if let Some(channels) = self.recording_channels {
            put("recording_channels", json!(channels));
        }
        if let Some(s) = self.max_ringing_duration {
            put("max_ringing_duration", json!(s));
        }
        if let Some(s) = self.max_conversation_duration {
            put("max_conversation_duration", json!(s));
        }
        if let Some(music) = &self.music_on_hold {
            let mut m = Map::new();
            m.insert(field("type").into(), json!(music.kind));
            if let Some(value) = &music.value {
                m.insert(field("value").into(), json!(value));
            }
            put("music_on_hold", Value::Object(m));
        }
        if let Some(n) = self.parallel_attempts {
            put(
                "parallel_ringing",
                json!({ field("activate"): true, field("max_parallel_attempts"): n }),
            );
        }
        if let Some(playback) = &self.start_call_playback {
            let to = match playback.to {
                PlaybackTo::Both => "both",
                PlaybackTo::Callee => "callee",
            };
            put(
                "start_call_playback",
                json!({
                    field("playback_to"): to,
                    field("type"): playback.media.kind(),
                    field("value"): playback.media.value(),
                }),
            );
        }
        Value::Object(out)
    }

    /// A few words for the decision record: whom it dials.
    pub fn summary(&self) -> String {
        let mut s = format!("dial {}", self.numbers.join(", "));
        if let Some(n) = self.parallel_attempts {
            s.push_str(&format!(" ({n} at once)"));
        }
        s
    }
}

impl GatherPlan {
    /// # Errors
    /// A message naming the first field out of range.
    pub fn check(&self) -> Result<(), String> {
        check_media("prompt", &self.prompt)?;
        if let Some(key) = &self.finish_on_key {
            check_plan_string("finish_on_key", key)?;
        }
        Ok(())
    }

    /// The JSON Exotel reads for this plan.
    pub fn render(&self) -> Value {
        let mut out = Map::new();
        let prompt = json!({ self.prompt.kind(): self.prompt.value() });
        out.insert(field("gather_prompt").into(), prompt);
        let numbers = [
            ("max_input_digits", self.max_input_digits),
            ("input_timeout", self.input_timeout),
            ("repeat_menu", self.repeat_menu),
            ("repeat_gather_prompt", self.repeat_gather_prompt),
        ];
        for (name, value) in numbers {
            if let Some(v) = value {
                out.insert(field(name).into(), json!(v));
            }
        }
        if let Some(key) = &self.finish_on_key {
            out.insert(field("finish_on_key").into(), json!(key));
        }
        Value::Object(out)
    }

    /// A few words for the decision record: what it asks.
    pub fn summary(&self) -> String {
        let prompt = crate::logsafe::cut(self.prompt.value(), 80);
        match self.max_input_digits {
            Some(n) => format!("ask {prompt:?} for up to {n} digits"),
            None => format!("ask {prompt:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ConnectPlan {
        ConnectPlan {
            numbers: vec!["+919800000001".into(), "+919800000002".into()],
            outgoing_phone_number: Some("08030000000".into()),
            record_call: true,
            recording_channels: Some(RecordingChannels::Dual),
            max_ringing_duration: Some(30),
            max_conversation_duration: Some(600),
            music_on_hold: Some(MusicOnHold {
                kind: "operator_tone".into(),
                value: None,
            }),
            parallel_attempts: Some(2),
            start_call_playback: Some(CallPlayback {
                to: PlaybackTo::Callee,
                media: Media::Text("A VIP is calling".into()),
            }),
            fetch_after_attempt: false,
        }
    }

    #[test]
    fn a_connect_plan_renders_every_field_under_exotels_names() {
        let rendered = plan().render(Some("1.0"));
        assert_eq!(
            rendered,
            json!({
                "fetch_after_attempt": false,
                "destination": {"numbers": ["+919800000001", "+919800000002"]},
                "outgoing_phone_number": "08030000000",
                "record": true,
                "recording_channels": "dual",
                "max_ringing_duration": 30,
                "max_conversation_duration": 600,
                "music_on_hold": {"type": "operator_tone"},
                "parallel_ringing": {"activate": true, "max_parallel_attempts": 2},
                "start_call_playback": {"playback_to": "callee", "type": "text", "value": "A VIP is calling"},
            })
        );
    }

    #[test]
    fn the_call_centre_version_lists_destinations_as_contact_uris() {
        let rendered = plan().render(Some("1.1"));
        assert_eq!(
            rendered["destination"],
            json!([{"contact_uri": "+919800000001"}, {"contact_uri": "+919800000002"}])
        );
    }

    #[test]
    fn every_name_the_renderers_use_is_in_the_table() {
        let mut seen = Vec::new();
        fn walk(v: &Value, seen: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        seen.push(k.clone());
                        walk(v, seen);
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, seen)),
                _ => {}
            }
        }
        walk(&plan().render(None), &mut seen);
        walk(&plan().render(Some("1.1")), &mut seen);
        let gather = GatherPlan {
            prompt: Media::AudioUrl("https://example.com/a.wav".into()),
            max_input_digits: Some(4),
            finish_on_key: Some("#".into()),
            input_timeout: Some(5),
            repeat_menu: Some(1),
            repeat_gather_prompt: Some(2),
        };
        walk(&gather.render(), &mut seen);
        for name in seen {
            assert!(
                FIELDS.iter().any(|(_, exotel, _)| *exotel == name),
                "{name} is not in FIELDS"
            );
        }
    }

    #[test]
    fn cases_that_would_break_the_body_are_refused() {
        assert!(check_case("product1").is_ok());
        assert!(check_case("north east").is_ok());
        for bad in ["", "a\"b", "a\\b", "a\nb", &"x".repeat(MAX_CASE_BYTES + 1)] {
            assert!(check_case(bad).is_err(), "{bad:?}");
        }
        assert_eq!(select_body("product1"), r#"{"select":"product1"}"#);
    }

    #[test]
    fn plans_out_of_range_are_refused() {
        let mut p = plan();
        p.numbers.clear();
        assert!(p.check().unwrap_err().contains("1 to 32"));
        let mut p = plan();
        p.parallel_attempts = Some(6);
        assert!(p.check().unwrap_err().contains("parallel_attempts"));
        let mut p = plan();
        p.numbers[0] = "+91\n98".into();
        assert!(p.check().is_err());
        assert!(check_text("hello\nworld").is_ok());
        assert!(check_text("bell\u{7}").is_err());
        assert!(check_text(&"x".repeat(MAX_TEXT_BYTES + 1)).is_err());
    }
}
