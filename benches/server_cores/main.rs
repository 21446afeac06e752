//! Server cores fed whole datagrams in-process (issue 16 point 7): registrations with digest
//! auth and calls through the proxy ([`scenario`]), at 1 and 2 worker threads, each thread
//! owning a `ServerCore`, steered by Call-ID, with binding replication on. Throughput is in
//! inbound messages; `server_scaling` prints the 2-to-1 ratio directly.
//!
//! `cargo bench -p rvoip-sdk --bench server_cores -- --warm-up-time 1 --measurement-time 5`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod scenario;

fn server_cores(c: &mut Criterion) {
    let load = scenario::Load::new(1000, 4000, 1);
    let mut g = c.benchmark_group("server_cores");
    g.throughput(Throughput::Elements(load.messages));
    g.sample_size(10);
    for workers in [1, 2] {
        g.bench_function(format!("workers={workers}"), |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    let o = scenario::run(&load, workers);
                    assert_eq!(o.failed, 0, "every flow completes");
                    t += o.elapsed;
                }
                t
            })
        });
    }
    g.finish();
}

criterion_group!(benches, server_cores);
criterion_main!(benches);
