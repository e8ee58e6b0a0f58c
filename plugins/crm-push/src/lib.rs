//! `crm-push`: delivers every call event of an async flow to the tenant's CRM.
//!
//! It exports only `record` (world `recorder`). For each event it POSTs the call as JSON to the
//! URL in the flow's config, with the event's id as the `Idempotency-Key` header:
//!
//! ```toml
//! [flow.config]
//! crm_url = "https://crm.example.com/passthru/calls"
//! crm_token = "..."          # optional: sent as `Authorization: Bearer ...`
//! ```
//!
//! and the flow lists the CRM in `outbound_hosts = ["https://crm.example.com"]` (without it the
//! host refuses the request).
//!
//! A `2xx` answer is a delivered event. Anything else fails the attempt, so the queue retries it
//! with backoff: a `5xx` or a timeout (the call's deadline) above all, and a refusal by the host
//! or a `4xx` too (those go on failing until the flow's last attempt makes a dead letter of
//! them, where the tenant sees why).
//!
//! # At least once
//!
//! The queue delivers at least once: a CRM that stored the event but answered too late sees it
//! again. The `Idempotency-Key` (the event's id, the same on every attempt) lets it drop the
//! repeat.

use passthru_sdk::http::{self, Request};
use passthru_sdk::{Call, Event, config, log};

/// The plugin: `plugin!` below exports it as the world's `record`.
fn record(event: &Event, call: &Call) -> Result<(), String> {
    let url = config("crm_url").ok_or("the flow's config has no crm_url")?;
    let body = payload(event, call);
    let key = event.id.to_string();
    let bearer = config("crm_token").map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer.as_str()));
    }
    let response = http::send(&Request {
        method: "POST",
        url: &url,
        headers: &headers,
        body: body.as_bytes(),
    })
    .map_err(|e| format!("CRM not reached: {e}"))?;
    match verdict(response.status) {
        Ok(()) => {
            log::info(&format!(
                "delivered event={} attempt={} status={}",
                event.id, event.attempt, response.status
            ));
            Ok(())
        }
        Err(why) => Err(why),
    }
}

/// Whether a CRM's status means the event is delivered.
fn verdict(status: u16) -> Result<(), String> {
    match status {
        200..=299 => Ok(()),
        500..=599 => Err(format!("CRM answered {status}; will retry")),
        _ => Err(format!("CRM answered {status}")),
    }
}

/// The JSON body: the event, the call's main details, and every parameter Exotel sent.
fn payload(event: &Event, call: &Call) -> String {
    let mut json = format!(
        "{{\"event_id\":{},\"attempt\":{},\"accepted_at_ms\":{}",
        event.id, event.attempt, event.accepted_at_ms
    );
    let fields = [
        ("call_sid", call.call_sid()),
        ("caller", call.caller()),
        ("called", call.called()),
        ("digits", call.digits()),
    ];
    for (key, value) in fields {
        json.push_str(&format!(",\"{key}\":"));
        match value {
            Some(v) => push_string(&mut json, v),
            None => json.push_str("null"),
        }
    }
    json.push_str(",\"params\":[");
    for (i, (key, value)) in call.details().params.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('[');
        push_string(&mut json, key);
        json.push(',');
        push_string(&mut json, value);
        json.push(']');
    }
    json.push_str("]}");
    json
}

/// `value` as a JSON string.
fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

passthru_sdk::plugin!(record = record);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(params: &[(&str, &str)]) -> Call {
        let mut call = Call::default();
        let details = call.details_mut();
        details.call_sid = Some("CA1".into());
        details.call_from = Some("09800000001".into());
        details.params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        call
    }

    #[test]
    fn the_payload_is_json_with_the_event_and_every_parameter() {
        let event = Event {
            id: 42,
            attempt: 2,
            accepted_at_ms: 1000,
        };
        let body = payload(&event, &call(&[("CallSid", "CA1"), ("Note", "a \"b\"\n")]));
        assert_eq!(
            body,
            "{\"event_id\":42,\"attempt\":2,\"accepted_at_ms\":1000,\"call_sid\":\"CA1\",\
             \"caller\":\"09800000001\",\"called\":null,\"digits\":null,\
             \"params\":[[\"CallSid\",\"CA1\"],[\"Note\",\"a \\\"b\\\"\\n\"]]}"
        );
    }

    #[test]
    fn only_a_2xx_delivers_and_a_5xx_asks_for_a_retry() {
        assert!(verdict(200).is_ok());
        assert!(verdict(204).is_ok());
        assert!(verdict(503).unwrap_err().contains("retry"));
        assert!(verdict(404).is_err());
        assert!(verdict(302).is_err());
    }
}
