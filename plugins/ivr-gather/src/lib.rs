//! `ivr-gather`: what a Gather applet asks, from the flow's config.
//!
//! The prompt is the audio at `prompt_url`, else the text `prompt`, else a default text (an
//! empty value counts as unset). `max_digits` (default 1), `timeout` in seconds (default 5) and
//! `repeat` (how many times the menu is repeated; left to Exotel when unset) are whole numbers
//! as Rust reads a `u32`, trimmed; a value that is not one is the default. `finish_key` is the key
//! that ends the input (default `#`); set empty, no key does.
//!
//! The same plugin exists in Python, JavaScript and C (`python/ivr-gather`, `js/ivr-gather`,
//! `c/ivr-gather`), plan for plan and reason for reason.

use passthru_sdk::{Call, GatherPlan, Media, config};

/// The prompt when the flow configures none.
const DEFAULT_PROMPT: &str = "Please enter your choice, then press the hash key.";
const DEFAULT_MAX_DIGITS: u32 = 1;
const DEFAULT_FINISH_KEY: &str = "#";
const DEFAULT_TIMEOUT: u32 = 5;

/// What the flow's config says, read once per call.
#[derive(Debug, Default)]
struct Settings {
    prompt_url: Option<String>,
    prompt: Option<String>,
    max_digits: Option<String>,
    finish_key: Option<String>,
    timeout: Option<String>,
    repeat: Option<String>,
}

impl Settings {
    fn from_config() -> Self {
        Self {
            prompt_url: config("prompt_url"),
            prompt: config("prompt"),
            max_digits: config("max_digits"),
            finish_key: config("finish_key"),
            timeout: config("timeout"),
            repeat: config("repeat"),
        }
    }
}

fn gather(_call: &Call) -> GatherPlan {
    plan(&Settings::from_config())
}

/// A config value as a `u32`, trimmed; `None` when unset or not one.
fn number(value: Option<&str>) -> Option<u32> {
    value.and_then(|v| v.trim().parse().ok())
}

fn plan(settings: &Settings) -> GatherPlan {
    let set = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    let (prompt, kind) = match (set(&settings.prompt_url), set(&settings.prompt)) {
        (Some(url), _) => (Media::AudioUrl(url), "audio"),
        (None, Some(text)) => (Media::Text(text), "text"),
        (None, None) => (Media::Text(DEFAULT_PROMPT.into()), "default"),
    };
    let max_digits = number(settings.max_digits.as_deref()).unwrap_or(DEFAULT_MAX_DIGITS);
    let mut plan = GatherPlan::ask(prompt);
    plan.max_input_digits = Some(max_digits);
    plan.finish_on_key = match settings.finish_key.as_deref() {
        None => Some(DEFAULT_FINISH_KEY.into()),
        Some("") => None,
        Some(key) => Some(key.into()),
    };
    plan.input_timeout = Some(number(settings.timeout.as_deref()).unwrap_or(DEFAULT_TIMEOUT));
    plan.repeat_menu = number(settings.repeat.as_deref());
    plan.because(format!("{kind} prompt, max_digits {max_digits}"))
}

passthru_sdk::plugin!(gather = gather);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_flow_asks_the_default_for_one_key() {
        let plan = plan(&Settings::default());
        assert!(matches!(plan.prompt, Media::Text(ref t) if t == DEFAULT_PROMPT));
        assert_eq!(plan.max_input_digits, Some(1));
        assert_eq!(plan.finish_on_key.as_deref(), Some("#"));
        assert_eq!(plan.input_timeout, Some(5));
        assert_eq!(plan.repeat_menu, None);
        assert_eq!(plan.repeat_gather_prompt, None);
        assert_eq!(plan.reason.as_deref(), Some("default prompt, max_digits 1"));
    }

    #[test]
    fn audio_wins_over_text_and_numbers_are_read_as_u32() {
        let settings = Settings {
            prompt_url: Some("https://example.com/menu.wav".into()),
            prompt: Some("Press 1".into()),
            max_digits: Some(" +4 ".into()),
            finish_key: Some("*".into()),
            timeout: Some("-3".into()),
            repeat: Some("2".into()),
        };
        let plan = plan(&settings);
        assert!(matches!(plan.prompt, Media::AudioUrl(ref u) if u.ends_with("menu.wav")));
        assert_eq!(plan.max_input_digits, Some(4));
        assert_eq!(plan.finish_on_key.as_deref(), Some("*"));
        assert_eq!(plan.input_timeout, Some(5));
        assert_eq!(plan.repeat_menu, Some(2));
        assert_eq!(plan.reason.as_deref(), Some("audio prompt, max_digits 4"));
    }

    #[test]
    fn an_empty_finish_key_means_none_and_an_empty_url_is_unset() {
        let settings = Settings {
            prompt_url: Some(String::new()),
            prompt: Some("Press 1".into()),
            finish_key: Some(String::new()),
            ..Settings::default()
        };
        let plan = plan(&settings);
        assert!(matches!(plan.prompt, Media::Text(ref t) if t == "Press 1"));
        assert_eq!(plan.finish_on_key, None);
        assert_eq!(plan.reason.as_deref(), Some("text prompt, max_digits 1"));
    }
}
