//! `sms-reply`: the text an SMS applet sends back, from the flow's config.
//!
//! `reply` is the text, where `{caller}` becomes the caller's number (`CallFrom`, else `From`,
//! as sent) and `{digits}` the keys pressed (`digits`); what the request lacks becomes nothing.
//! Without a `reply` (or with an empty one) the answer is a default text. The placeholders are
//! replaced in one pass over the template, so a caller's number that itself reads `{digits}` is
//! kept as it is.
//!
//! The same plugin exists in Python, JavaScript and C (`python/sms-reply`, `js/sms-reply`,
//! `c/sms-reply`), text for text and reason for reason.

use passthru_sdk::{Call, Reply, config};

/// The answer when the flow configures no reply.
const DEFAULT_REPLY: &str = "Thank you for your message. We will get back to you soon.";

fn sms(call: &Call) -> Reply {
    reply(
        config("reply").as_deref(),
        call.caller().unwrap_or(""),
        call.digits().unwrap_or(""),
    )
}

/// The reply for a configured template (if any), a caller and the digits pressed.
fn reply(template: Option<&str>, caller: &str, digits: &str) -> Reply {
    match template.filter(|t| !t.is_empty()) {
        Some(template) => {
            let (text, filled) = fill(template, caller, digits);
            Reply::new(
                text,
                format!("the flow's reply (placeholders filled: {filled})"),
            )
        }
        None => Reply::new(DEFAULT_REPLY, "no reply configured: the default text"),
    }
}

/// `template` with each `{caller}` and `{digits}` replaced, in one pass; and how many were.
fn fill(template: &str, caller: &str, digits: &str) -> (String, u32) {
    let mut out = String::with_capacity(template.len());
    let mut filled = 0;
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{caller}") {
            out.push_str(caller);
            filled += 1;
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{digits}") {
            out.push_str(digits);
            filled += 1;
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    (out, filled)
}

passthru_sdk::plugin!(sms = sms);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_one_pass() {
        let (text, filled) = fill("Hi {caller}, you chose {digits}.", "{digits}", "2");
        assert_eq!(text, "Hi {digits}, you chose 2.");
        assert_eq!(filled, 2);
        assert_eq!(fill("{caller", "1", "2"), ("{caller".to_owned(), 0));
        assert_eq!(fill("{{caller}}", "1", ""), ("{1}".to_owned(), 1));
        assert_eq!(fill("{digits}{digits}", "", "9"), ("99".to_owned(), 2));
    }

    #[test]
    fn a_missing_or_empty_reply_is_the_default() {
        for template in [None, Some("")] {
            let answer = reply(template, "09800000001", "1");
            assert_eq!(answer.text, DEFAULT_REPLY);
            assert_eq!(
                answer.reason.as_deref(),
                Some("no reply configured: the default text")
            );
        }
    }

    #[test]
    fn the_flows_reply_says_how_many_placeholders_it_filled() {
        let answer = reply(Some("Thanks {caller}!"), "09800000001", "");
        assert_eq!(answer.text, "Thanks 09800000001!");
        assert_eq!(
            answer.reason.as_deref(),
            Some("the flow's reply (placeholders filled: 1)")
        );
    }
}
