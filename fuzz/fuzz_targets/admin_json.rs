//! The admin API's JSON bodies: the first byte picks the body (new tenant, tenant change, flow,
//! activation, URL auth), the rest is the body as a client sends it. It is read exactly as the
//! handlers read it (axum's `Json`, unknown fields refused) and then checked as they check it;
//! the answer is a value or a 400/422 message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use passthru::api::{AdminBody, check_admin_body};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let kind = AdminBody::ALL[usize::from(which) % AdminBody::ALL.len()];
    let _ = check_admin_body(kind, body);
});
