//! The per-call cost of the hot path, piece by piece: parsing an Exotel query, and one sandbox
//! call (fresh Store, instantiate from the pool, `decide`, drop) of the `ivr-menu` example.
//!
//! `cargo bench -p passthru --bench sandbox`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use passthru::call;
use passthru::sandbox::{FlowConfig, Limits, Sandbox, SandboxOptions, TenantShare};

const SAMPLE: &str = include_str!("../../tests/fixtures/exotel/connect-completed.query");
const GATHER: &str = include_str!("../../tests/fixtures/exotel/gather-digits.query");

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Sandbox::new(SandboxOptions::default()).expect("sandbox");
    let ivr_menu = sandbox
        .compile(include_bytes!(env!("PASSTHRU_PLUGIN_IVR_MENU")))
        .expect("ivr-menu compiles");
    let vip_caller = sandbox
        .compile(include_bytes!(env!("PASSTHRU_PLUGIN_VIP_CALLER")))
        .expect("vip-caller compiles");
    let limits = Limits::default();
    // One tenant's share, as the server keeps one per tenant across its calls.
    let share = TenantShare::new(64);
    let no_config = Arc::new(FlowConfig::new());
    let vip_config: Arc<FlowConfig> = Arc::new(
        [(
            "vip_numbers".to_owned(),
            "09800000001, 09800000003".to_owned(),
        )]
        .into(),
    );

    c.bench_function("parse/connect-completed", |b| {
        b.iter(|| call::parse(std::hint::black_box(SAMPLE)))
    });

    let gather = call::parse(GATHER.trim());
    let mut group = c.benchmark_group("sandbox-call");
    group.bench_function("ivr-menu", |b| {
        b.iter(|| {
            let report = runtime.block_on(sandbox.decide(
                &ivr_menu,
                &share,
                gather.clone(),
                &limits,
                no_config.clone(),
            ));
            assert!(report.outcome.is_ok());
            report
        })
    });
    group.bench_function("vip-caller (config + log)", |b| {
        b.iter(|| {
            let report = runtime.block_on(sandbox.decide(
                &vip_caller,
                &share,
                gather.clone(),
                &limits,
                vip_config.clone(),
            ));
            assert!(report.outcome.is_ok());
            report
        })
    });
    group.bench_function("ivr-menu incl. parse", |b| {
        b.iter(|| {
            let call = call::parse(std::hint::black_box(GATHER));
            runtime.block_on(sandbox.decide(&ivr_menu, &share, call, &limits, no_config.clone()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
