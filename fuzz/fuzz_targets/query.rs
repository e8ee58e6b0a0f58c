//! The Passthru query parser: whatever Exotel (or anyone) sends after `?` must parse without a
//! panic, agree with the fast `call_sid` reader, and serialize to JSON (the form plugins and the
//! decision records see).
#![no_main]

use libfuzzer_sys::fuzz_target;
use passthru::call::{call_sid, parse};

fuzz_target!(|data: &[u8]| {
    // A request target reaches the handler as text; bytes that are not UTF-8 arrive
    // percent-encoded, which the lossy conversion approximates.
    let query = String::from_utf8_lossy(data);
    let call = parse(&query);
    assert_eq!(call.call_sid, call_sid(&query), "call_sid disagrees with parse");
    serde_json::to_vec(&call).expect("call details serialize");
});
