//! Tests of [`parse`](super::parse): edge cases of every rule, and property tests. The samples
//! are tested in `samples.rs`, legs in `legs.rs`. Expected Unix seconds were computed outside this
//! code, with `date -u -d '<time> +0530' +%s`. The helpers here are shared by those tests.

use proptest::prelude::*;

use super::{
    CallDetails, CallType, DialCallStatus, Direction, Leg, Params, Timestamp, call_sid, field,
    name, params, parse,
};

pub(super) fn s(value: &str) -> Option<String> {
    Some(value.to_owned())
}

pub(super) fn ts(raw: &str, unix_seconds: Option<i64>) -> Option<Timestamp> {
    Some(Timestamp {
        raw: raw.to_owned(),
        unix_seconds,
    })
}

pub(super) fn leg(index: u32) -> Leg {
    Leg {
        index,
        ..Leg::default()
    }
}

pub(super) fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

#[test]
fn reads_digits() {
    let cases: &[(&str, Option<&str>)] = &[
        ("digits=%22215250%22", Some("215250")),
        ("digits=\"215250\"", Some("215250")),
        ("digits=215250", Some("215250")),
        ("digits=%228%22", Some("8")),
        ("digits=+%2212%22+", Some("12")),
        ("digits=%22+7+%22", Some("7")),
        ("digits=*12%23", Some("*12#")),
        // Only one pair of quotes goes.
        ("digits=%22%225%22%22", Some("\"5\"")),
        // A lone quote is not a pair.
        ("digits=%225", Some("\"5")),
        ("digits=5%22", Some("5\"")),
        ("digits=%22", Some("\"")),
        // Nothing left.
        ("digits=%22%22", None),
        ("digits=\"\"", None),
        ("digits=%22++%22", None),
        ("digits=+", None),
        ("digits=", None),
        ("digits", None),
        ("", None),
        // Case-sensitive name.
        ("Digits=5", None),
        // The last one wins, even when empty.
        ("digits=1&digits=2", Some("2")),
        ("digits=1&digits=%22%22", None),
    ];
    for (query, want) in cases {
        assert_eq!(parse(query).digits.as_deref(), *want, "digits of {query:?}");
    }
}

#[test]
fn reads_enums_and_spells_them_back() {
    use CallType as C;
    use DialCallStatus as S;
    use Direction as D;
    // (value in the query, what it reads as, how `as_str` spells it)
    let directions: &[(&str, D, &str)] = &[
        ("incoming", D::Incoming, "incoming"),
        ("inbound", D::Incoming, "incoming"),
        ("outbound-dial", D::OutboundDial, "outbound-dial"),
        ("outbound-api", D::OutboundApi, "outbound-api"),
        ("Incoming", D::Other("Incoming".to_owned()), "Incoming"),
        (
            "outbound+dial",
            D::Other("outbound dial".to_owned()),
            "outbound dial",
        ),
        ("%FF", D::Other("\u{FFFD}".to_owned()), "\u{FFFD}"),
    ];
    for (raw, want, wire) in directions {
        let got = parse(&format!("Direction={raw}")).direction;
        assert_eq!(got.as_ref(), Some(want), "Direction={raw}");
        assert_eq!(want.as_str(), *wire);
    }
    let call_types: &[(&str, C, &str)] = &[
        ("call-attempt", C::CallAttempt, "call-attempt"),
        ("completed", C::Completed, "completed"),
        ("client-hangup", C::ClientHangup, "client-hangup"),
        ("incomplete", C::Incomplete, "incomplete"),
        ("voicemail", C::Voicemail, "voicemail"),
        ("call", C::Other("call".to_owned()), "call"),
    ];
    for (raw, want, wire) in call_types {
        let got = parse(&format!("CallType={raw}")).call_type;
        assert_eq!(got.as_ref(), Some(want), "CallType={raw}");
        assert_eq!(want.as_str(), *wire);
    }
    let statuses: &[(&str, S, &str)] = &[
        ("completed", S::Completed, "completed"),
        ("busy", S::Busy, "busy"),
        ("no-answer", S::NoAnswer, "no-answer"),
        ("failed", S::Failed, "failed"),
        ("canceled", S::Canceled, "canceled"),
        ("cancelled", S::Other("cancelled".to_owned()), "cancelled"),
    ];
    for (raw, want, wire) in statuses {
        let got = parse(&format!("DialCallStatus={raw}")).dial_call_status;
        assert_eq!(got.as_ref(), Some(want), "DialCallStatus={raw}");
        assert_eq!(want.as_str(), *wire);
    }
    // Empty means absent.
    let call = parse("Direction=&CallType=&DialCallStatus=");
    assert_eq!(
        (call.direction, call.call_type, call.dial_call_status),
        (None, None, None)
    );
}

#[test]
fn reads_timestamps() {
    let cases: &[(&str, Option<Timestamp>)] = &[
        (
            "EndTime=1970-01-01+05%3A30%3A00",
            ts("1970-01-01 05:30:00", Some(0)),
        ),
        (
            "EndTime=1970-01-01%2005:30:00",
            ts("1970-01-01 05:30:00", Some(0)),
        ),
        (
            "EndTime=0000-00-00+00%3A00%3A00",
            ts("0000-00-00 00:00:00", None),
        ),
        (
            "EndTime=Wed%2C+31+Jul+2024+16%3A42%3A56",
            ts("Wed, 31 Jul 2024 16:42:56", Some(1_722_424_376)),
        ),
        (
            "EndTime=2024-02-29+12:00:00",
            ts("2024-02-29 12:00:00", Some(1_709_188_200)),
        ),
        (
            "EndTime=Thu,+29+Feb+2024+00:00:00",
            ts("Thu, 29 Feb 2024 00:00:00", Some(1_709_145_000)),
        ),
        (
            "EndTime=2023-02-29+00:00:00",
            ts("2023-02-29 00:00:00", None),
        ),
        (
            "EndTime=2024-02-30+00:00:00",
            ts("2024-02-30 00:00:00", None),
        ),
        (
            "EndTime=Fri,+30+Feb+2024+00:00:00",
            ts("Fri, 30 Feb 2024 00:00:00", None),
        ),
        ("EndTime=yesterday", ts("yesterday", None)),
        ("EndTime=+", ts(" ", None)),
        ("EndTime=", None),
        ("EndTime", None),
        // The last one wins.
        (
            "EndTime=1970-01-01+05:30:00&EndTime=1970-01-01+05:30:01",
            ts("1970-01-01 05:30:01", Some(1)),
        ),
    ];
    for (query, want) in cases {
        assert_eq!(parse(query).end_time, *want, "EndTime of {query:?}");
    }
    // Every timestamp parameter is read the same way.
    let call = parse(
        "Created=1970-01-01+05:30:01&StartTime=1970-01-01+05:30:02&CurrentTime=1970-01-01+05:30:03\
         &RecordingAvailableBy=1970-01-01+05:30:04",
    );
    let seconds = [
        &call.created,
        &call.start_time,
        &call.current_time,
        &call.recording_available_by,
    ]
    .map(|t| t.as_ref().and_then(|t| t.unix_seconds));
    assert_eq!(seconds, [Some(1), Some(2), Some(3), Some(4)]);
}

#[test]
fn reads_dial_call_duration() {
    let cases: &[(&str, Option<u32>)] = &[
        ("0", Some(0)),
        ("51", Some(51)),
        ("007", Some(7)),
        ("+51+", Some(51)),
        ("%0951%0A", Some(51)),
        ("4294967295", Some(u32::MAX)),
        ("4294967296", None),
        ("%2B5", None),
        ("-5", None),
        ("5.0", None),
        ("5s", None),
        ("5+5", None),
        ("", None),
        ("+", None),
    ];
    for (raw, want) in cases {
        let got = parse(&format!("DialCallDuration={raw}")).dial_call_duration;
        assert_eq!(got, *want, "DialCallDuration={raw}");
    }
}

#[test]
fn decodes_keys_and_values_into_params() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("CustomField=a+b%20c%2Bd", &[("CustomField", "a b c+d")]),
        ("my+key=1&my%20key=2", &[("my key", "1"), ("my key", "2")]),
        ("a=&b&=c&&", &[("a", ""), ("b", ""), ("", "c")]),
        ("x%zz=%4&y=100%", &[("x%zz", "%4"), ("y", "100%")]),
        ("%FFk=%FF", &[("\u{FFFD}k", "\u{FFFD}")]),
        ("a=1=2&a=3", &[("a", "1=2"), ("a", "3")]),
    ];
    for (query, want) in cases {
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| pair(k, v)).collect();
        assert_eq!(parse(query).params.to_vec(), want, "params of {query:?}");
    }
}

#[test]
fn typed_fields_follow_the_rules() {
    // Empty and valueless parameters are absent from typed fields but kept in params.
    let call = parse("CallSid=&CallFrom&DialWhomNumber=&flow_id=&tenant_id=&CustomField=");
    assert_eq!(
        call,
        CallDetails {
            params: [
                "CallSid",
                "CallFrom",
                "DialWhomNumber",
                "flow_id",
                "tenant_id",
                "CustomField"
            ]
            .iter()
            .map(|k| pair(k, ""))
            .collect(),
            ..CallDetails::default()
        }
    );

    // Repeated keys: the last value wins (even an empty one), params keeps them all.
    let call = parse("CallSid=a&CallSid=b&To=x&To=");
    assert_eq!(call.call_sid.as_deref(), Some("b"));
    assert_eq!(call.to, None);
    assert_eq!(
        call.params.to_vec(),
        vec![
            pair("CallSid", "a"),
            pair("CallSid", "b"),
            pair("To", "x"),
            pair("To", "")
        ]
    );

    // Text is decoded, but otherwise kept as sent (no trimming).
    let call = parse("CallSid=%FF&CustomField=+a+&RecordingUrl=https%3A%2F%2Fx.example%2Fr.mp3");
    assert_eq!(call.call_sid.as_deref(), Some("\u{FFFD}"));
    assert_eq!(call.custom_field.as_deref(), Some(" a "));
    assert_eq!(
        call.recording_url.as_deref(),
        Some("https://x.example/r.mp3")
    );

    // Names are case-sensitive, and unknown keys only land in params.
    let query = "callsid=a&CALLSID=b&CallStatus=free&passthru=%7B%7D&Insights[x]=1&Stream%5Bs%5D=2";
    let call = parse(query);
    assert_eq!(
        CallDetails {
            params: Params::default(),
            ..call.clone()
        },
        CallDetails::default()
    );
    assert_eq!(call.params.len(), 6);
    assert_eq!(call.params.get(3), Some(("passthru", "{}")));
    assert_eq!(call.params.get(5), Some(("Stream[s]", "2")));

    // Each string field reads its own parameter.
    let call = parse(
        "CallSid=1&CallFrom=2&CallTo=3&From=4&To=5&DialWhomNumber=6&CustomField=7&RecordingUrl=8\
         &OutgoingPhoneNumber=9&flow_id=10&tenant_id=11",
    );
    let fields = [
        &call.call_sid,
        &call.call_from,
        &call.call_to,
        &call.from,
        &call.to,
        &call.dial_whom_number,
        &call.custom_field,
        &call.recording_url,
        &call.outgoing_phone_number,
        &call.flow_id,
        &call.tenant_id,
    ]
    .map(|f| f.as_deref().and_then(|v| v.parse::<u32>().ok()));
    assert_eq!(fields, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map(Some));
}

/// Fragments that make queries likely to hit the interesting paths.
fn query_fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "&",
        "=",
        "&&",
        "+",
        "%",
        "%5B",
        "%5D",
        "%5b",
        "%2",
        "%FF",
        "%C3",
        "%A9",
        "%22",
        "\"",
        "[",
        "]",
        "Legs[",
        "0",
        "1",
        "9",
        "4294967296",
        "][",
        "Number",
        "OnCallDuration",
        "Insights",
        "digits",
        "CallSid",
        "Direction",
        "inbound",
        "Created",
        "EndTime",
        "1970-01-01",
        "05:30:00",
        "Wed,",
        "31",
        "Jul",
        "2024",
        "DialCallDuration",
        "x",
    ])
}

/// The number of non-empty `&`-separated segments.
fn segments(query: &str) -> usize {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .count()
}

/// Each field read from the parameters alone (`field`, what a `decide-lean` plugin's imports
/// answer) is the typed field `parse` gives, and `params` decodes as `parse` does.
pub(super) fn check_fields_read_alone(query: &str) -> Result<(), TestCaseError> {
    let call = parse(query);
    let p = params(query);
    prop_assert_eq!(&p, &call.params);
    let texts = [
        (name::CALL_SID, &call.call_sid),
        (name::CALL_FROM, &call.call_from),
        (name::CALL_TO, &call.call_to),
        (name::FROM, &call.from),
        (name::TO, &call.to),
        (name::DIAL_WHOM_NUMBER, &call.dial_whom_number),
        (name::CUSTOM_FIELD, &call.custom_field),
        (name::RECORDING_URL, &call.recording_url),
        (name::OUTGOING_PHONE_NUMBER, &call.outgoing_phone_number),
        (name::FLOW_ID, &call.flow_id),
        (name::TENANT_ID, &call.tenant_id),
    ];
    for (name, typed) in texts {
        prop_assert_eq!(&field::text(&p, name), typed, "{}", name);
    }
    let times = [
        (name::CREATED, &call.created),
        (name::START_TIME, &call.start_time),
        (name::END_TIME, &call.end_time),
        (name::CURRENT_TIME, &call.current_time),
        (name::RECORDING_AVAILABLE_BY, &call.recording_available_by),
    ];
    for (name, typed) in times {
        prop_assert_eq!(&field::time(&p, name), typed, "{}", name);
    }
    prop_assert_eq!(field::digits(&p), call.digits);
    prop_assert_eq!(field::direction(&p), call.direction);
    prop_assert_eq!(field::call_type(&p), call.call_type);
    prop_assert_eq!(field::dial_call_status(&p), call.dial_call_status);
    prop_assert_eq!(field::dial_call_duration(&p), call.dial_call_duration);
    prop_assert_eq!(CallDetails::from_params(p), parse(query));
    Ok(())
}

/// Fields read alone on the edge cases of each rule: repeats (the last wins, even empty), empty
/// values, quotes and spaces around `digits`, unknown enum spellings, a time that is not one.
#[test]
fn fields_read_alone_agree_with_parse_on_each_rule() {
    for query in [
        "",
        "CallSid=a&CallSid=b",
        "CallSid=a&CallSid=",
        "digits=%22%22",
        "digits=+%22+12+%22+",
        "digits=%2212&digits=3",
        "Direction=inbound&CallType=call&DialCallStatus=no-answer",
        "Direction=&CallType=completed&DialCallStatus=weird",
        "DialCallDuration=+42+&DialCallDuration=-1",
        "Created=0000-00-00+00%3A00%3A00&StartTime=Wed%2C+31+Jul+2024+16%3A42%3A56",
        "EndTime=&CurrentTime=2024-07-31+16%3A43%3A02&RecordingAvailableBy=soon",
        "callsid=lower&CALLSID=upper&flow_id=1&tenant_id=2&flow_id=",
        // Keys arrive decoded: an escaped letter or a `+` in a key is the key it spells.
        "Call%53id=escaped&digit%73=%2212%22",
        "CallSid=a&Call%53id=",
        "Call+Sid=space&+digits=1",
        // A key without `=`, and a good value after a bad one.
        "CallSid&digits",
        "DialCallDuration=x&DialCallDuration=5&Direction=%69ncoming",
    ] {
        check_fields_read_alone(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}

fn check_invariants(query: &str) -> Result<(), TestCaseError> {
    check_fields_read_alone(query)?;
    let call = parse(query);
    prop_assert_eq!(call.params.len(), segments(query));
    prop_assert!(call.legs.len() <= call.params.len());
    prop_assert!(call.legs.windows(2).all(|w| w[0].index < w[1].index));
    // The queue reads the CallSid alone; it must agree with the full parse.
    prop_assert_eq!(call_sid(query), call.call_sid);
    Ok(())
}

proptest! {
    #[test]
    fn never_panics_on_any_string(query in any::<String>()) {
        check_invariants(&query)?;
    }

    #[test]
    fn never_panics_on_query_alphabet(query in r#"[A-Za-z0-9%&=+\[\]"]{0,80}"#) {
        check_invariants(&query)?;
    }

    #[test]
    fn never_panics_on_query_fragments(parts in prop::collection::vec(query_fragment(), 0..40)) {
        check_invariants(&parts.concat())?;
    }
}

/// `parse` makes room at once for a real query's parameters, and a query of nothing but `&`
/// (16 KiB, no parameter at all) cannot make it reserve a list entry per byte.
#[test]
fn room_for_the_parameters_is_bounded_by_what_a_query_may_need() {
    let call = parse(&"&".repeat(16 * 1024));
    assert!(call.params.is_empty());
    assert!(call.params.room() <= 64, "{}", call.params.room());

    let query = "CallSid=a&CallFrom=1&CallTo=2&digits=%223%22";
    let call = parse(query);
    assert_eq!(call.params.len(), 4);
    assert!(call.params.room() >= 4, "{}", call.params.room());
}
