//! What Passthru URL authentication adds to a request: the check of a flow's secret against the
//! digest in its live snapshot (no store call). `none` is today's path (a match on the kind);
//! `key` hashes the path segment; `basic` decodes the Authorization header and hashes it; each
//! then compares in constant time. A request for a missing flow runs the same check against a
//! stand-in, so that it costs what a refusal costs.
//!
//! `cargo bench -p passthru --bench url_auth`

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use passthru::flow::url_auth::{BASIC_USER, Secret, UrlAuth, UrlAuthKind};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let none = UrlAuth::default();
    let (key_auth, Some(Secret::Key(key))) =
        UrlAuth::generate(UrlAuthKind::Key, 0).expect("randomness")
    else {
        unreachable!("a key flow gets a key");
    };
    let (basic_auth, Some(Secret::Basic(password))) =
        UrlAuth::generate(UrlAuthKind::Basic, 0).expect("randomness")
    else {
        unreachable!("a basic flow gets a password");
    };
    let header = format!(
        "Basic {}",
        STANDARD.encode(format!("{BASIC_USER}:{password}"))
    );
    let wrong_key = "x".repeat(key.len());
    let wrong_header = format!(
        "Basic {}",
        STANDARD.encode(format!("{BASIC_USER}:{wrong_key}"))
    );

    let mut group = c.benchmark_group("url-auth");
    group.bench_function("none", |b| {
        b.iter(|| assert!(black_box(&none).admits(black_box(None), black_box(None))))
    });
    group.bench_function("key", |b| {
        b.iter(|| assert!(black_box(&key_auth).admits(black_box(Some(&key)), None)))
    });
    group.bench_function("key (wrong)", |b| {
        b.iter(|| assert!(!black_box(&key_auth).admits(black_box(Some(&wrong_key)), None)))
    });
    group.bench_function("basic", |b| {
        b.iter(|| assert!(black_box(&basic_auth).admits(None, black_box(Some(header.as_bytes())))))
    });
    group.bench_function("basic (wrong)", |b| {
        b.iter(|| {
            assert!(!black_box(&basic_auth).admits(None, black_box(Some(wrong_header.as_bytes()))))
        })
    });
    // What a request for a flow that does not exist pays, with a key: the same as a refusal.
    group.bench_function("missing flow (key)", |b| {
        b.iter(|| assert!(!UrlAuth::decoy().admits(black_box(Some(&wrong_key)), None)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
