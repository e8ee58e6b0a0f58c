//! Tests of [`parse`](super::parse) against every real-shaped Exotel query in
//! `tests/fixtures/exotel` (the project's own fixtures). Expected Unix seconds were computed
//! outside this code, with `date -u -d '<time> +0530' +%s`.

use super::tests::{leg, pair, s, ts};
use super::{CallDetails, CallType, DialCallStatus, Direction, Leg, Params, parse};

/// The folder of real-shaped Exotel queries, in the repository.
const SAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/exotel");

/// The sample files, each with every typed field it should give (`params` is checked apart).
fn samples() -> Vec<(&'static str, CallDetails)> {
    let end_time = ts("1970-01-01 05:30:00", Some(0));
    vec![
        (
            "connect-busy.query",
            CallDetails {
                call_sid: s("0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"),
                call_from: s("09800000005"),
                call_to: s("08000000001"),
                from: s("09800000005"),
                to: s("08000000001"),
                direction: Some(Direction::Incoming),
                call_type: Some(CallType::Incomplete),
                created: ts("Tue, 29 Sep 2026 10:01:12", Some(1_790_656_272)),
                start_time: ts("2026-09-29 10:01:12", Some(1_790_656_272)),
                end_time: end_time.clone(),
                current_time: ts("2026-09-29 10:01:25", Some(1_790_656_285)),
                dial_call_duration: Some(9),
                dial_call_status: Some(DialCallStatus::Busy),
                dial_whom_number: s("09800000006"),
                legs: vec![Leg {
                    number: s("09800000006"),
                    leg_type: s("single"),
                    on_call_duration: Some(0),
                    cause_code: s("USER_BUSY"),
                    cause: s("17"),
                    ..leg(0)
                }],
                ..CallDetails::default()
            },
        ),
        (
            "connect-completed.query",
            CallDetails {
                call_sid: s("22222222222222222222222222222222"),
                call_from: s("09800000003"),
                call_to: s("08000000001"),
                from: s("09800000003"),
                to: s("08000000001"),
                direction: Some(Direction::Incoming),
                call_type: Some(CallType::Completed),
                created: ts("Sat, 05 Sep 2026 23:10:37", Some(1_788_630_037)),
                start_time: ts("2026-09-05 23:10:37", Some(1_788_630_037)),
                end_time: end_time.clone(),
                current_time: ts("2026-09-05 23:11:40", Some(1_788_630_100)),
                dial_call_duration: Some(51),
                dial_call_status: Some(DialCallStatus::Completed),
                dial_whom_number: s("sip:agentsipid001"),
                outgoing_phone_number: s("08000000001"),
                recording_url: s(concat!(
                    "https://recordings.example.com/exotelrecordings/accountsid/",
                    "22222222222222222222222222222222.mp3",
                )),
                legs: vec![
                    Leg {
                        number: s("sip:agentsipid001"),
                        on_call_duration: Some(50),
                        caller_id: s("08000000001"),
                        ..leg(0)
                    },
                    Leg {
                        number: s("09800000004"),
                        on_call_duration: Some(0),
                        ..leg(1)
                    },
                ],
                ..CallDetails::default()
            },
        ),
        (
            "gather-digits.query",
            CallDetails {
                call_sid: s("a1b2c3d4e5f60718293a4b5c6d7e8f9v"),
                call_from: s("09800000001"),
                call_to: s("08000000002"),
                from: s("09800000001"),
                to: s("08000000002"),
                direction: Some(Direction::Incoming),
                call_type: Some(CallType::CallAttempt),
                created: ts("Wed, 31 Jul 2024 16:42:56", Some(1_722_424_376)),
                start_time: ts("2024-07-31 16:42:56", Some(1_722_424_376)),
                end_time: end_time.clone(),
                current_time: ts("2024-07-31 16:43:02", Some(1_722_424_382)),
                dial_call_duration: Some(0),
                flow_id: s("11754"),
                tenant_id: s("1409"),
                digits: s("215250"),
                ..CallDetails::default()
            },
        ),
        (
            "gather-single-key.query",
            CallDetails {
                call_sid: s("f0e1d2c3b4a5968778695a4b3c2d1e0f"),
                call_from: s("09800000001"),
                call_to: s("08000000002"),
                from: s("09800000001"),
                to: s("08000000002"),
                direction: Some(Direction::Incoming),
                call_type: Some(CallType::CallAttempt),
                created: ts("Tue, 03 Sep 2024 11:44:54", Some(1_725_344_094)),
                start_time: ts("2024-09-03 11:44:54", Some(1_725_344_094)),
                end_time: end_time.clone(),
                current_time: ts("2024-09-03 11:44:59", Some(1_725_344_099)),
                dial_call_duration: Some(0),
                flow_id: s("11754"),
                tenant_id: s("1409"),
                digits: s("8"),
                ..CallDetails::default()
            },
        ),
        (
            "outbound-api-customfield.query",
            CallDetails {
                call_sid: s("5979a54734e3bf7505cb8e41b96e1917"),
                call_from: s("09800000007"),
                call_to: s("08000000008"),
                from: s("09800000007"),
                // `To` differs from `CallTo` here, as it sometimes does in real requests.
                to: s("08000000009"),
                direction: Some(Direction::OutboundDial),
                call_type: Some(CallType::CallAttempt),
                created: ts("Tue, 07 Jan 2025 15:51:06", Some(1_736_245_266)),
                start_time: ts("2025-01-07 15:51:06", Some(1_736_245_266)),
                end_time: end_time.clone(),
                current_time: ts("2025-01-07 15:51:06", Some(1_736_245_266)),
                dial_call_duration: Some(0),
                custom_field: s("7e9095cd-b91d-4df0-945b-6b851-ss69-ex1"),
                ..CallDetails::default()
            },
        ),
        (
            "post-connect-minimal.query",
            CallDetails {
                call_sid: s("9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"),
                from: s("09800000011"),
                to: s("08000000001"),
                direction: Some(Direction::Incoming),
                call_type: Some(CallType::Completed),
                start_time: ts("2026-10-02 09:15:00", Some(1_790_912_700)),
                current_time: ts("2026-10-02 09:17:31", Some(1_790_912_851)),
                dial_whom_number: s("09800000010"),
                ..CallDetails::default()
            },
        ),
    ]
}

#[test]
fn parses_every_sample() {
    let params_counts = [
        ("connect-busy.query", 19),
        ("connect-completed.query", 21),
        ("gather-digits.query", 16),
        ("gather-single-key.query", 16),
        ("outbound-api-customfield.query", 14),
        ("post-connect-minimal.query", 8),
    ];
    let table = samples();
    assert_eq!(table.len(), params_counts.len());
    for ((file, want), (count_file, want_count)) in table.into_iter().zip(params_counts) {
        assert_eq!(file, count_file);
        let path = format!("{SAMPLES_DIR}/{file}");
        let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // The files end with a newline; a query string does not.
        let query = raw.trim_end();
        let got = parse(query);
        super::tests::check_fields_read_alone(query)
            .unwrap_or_else(|e| panic!("fields of {file} read alone: {e}"));

        let typed = CallDetails {
            params: Params::default(),
            ..got.clone()
        };
        assert_eq!(typed, want, "typed fields of {file}");
        assert_eq!(got.params.len(), want_count, "params count of {file}");

        // Every raw key arrives in params, in order, with its brackets decoded.
        let raw_keys: Vec<String> = query
            .split('&')
            .map(|segment| segment.split_once('=').map_or(segment, |(k, _)| k))
            .map(|key| key.replace("%5B", "[").replace("%5D", "]"))
            .collect();
        let keys: Vec<&str> = got.params.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, raw_keys, "params keys of {file}");
    }
}

#[test]
fn sample_table_covers_every_sample_file() {
    let listed: Vec<&str> = samples().into_iter().map(|(file, _)| file).collect();
    let entries = std::fs::read_dir(SAMPLES_DIR).unwrap_or_else(|e| panic!("{SAMPLES_DIR}: {e}"));
    for entry in entries {
        let name = entry.expect("a readable directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            listed.contains(&name.as_ref()),
            "{name} has no row in samples()"
        );
    }
}

#[test]
fn sample_params_keep_values_decoded() {
    let raw = std::fs::read_to_string(format!("{SAMPLES_DIR}/gather-digits.query"))
        .expect("the gather-digits sample");
    let call = parse(raw.trim_end());
    let params = call.params.to_vec();
    assert!(params.contains(&pair("digits", "\"215250\"")));
    assert!(params.contains(&pair("DialWhomNumber", "")));
    assert!(params.contains(&pair("Created", "Wed, 31 Jul 2024 16:42:56")));
}
