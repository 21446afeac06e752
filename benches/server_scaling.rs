//! The scaling figure of the server cores across worker threads (issue 16 point 7): the
//! in-process load of `server_cores` ([`scenario`]: REGISTER with digest auth and calls
//! through the proxy, fed as whole datagrams, steered by Call-ID, bindings replicated) run at 1
//! and at 2 workers in turns, `--rounds` times each; the best round of each is reported (the
//! machine is shared: the best is the least disturbed). Every run checks that each flow
//! completed and that the counters match the flows.
//!
//! The threads' CPU time is measured too (`CLOCK_THREAD_CPUTIME_ID`): messages per CPU-second at
//! 2 workers over those at 1 worker, times 2, is the ratio two unshared cores would give
//! (`cpu_ratio`); it shows the cost of steering and replication even when other processes
//! take CPU time away from the wall-clock figures.
//!
//! The last line is machine-readable:
//! `workers=1 msgs/s=…  workers=2 msgs/s=…  ratio=…  cpu_ratio=…`
//!
//! `cargo bench -p rvoip-sdk --bench server_scaling -- [--flows 40000] [--users 1000]
//! [--rounds 3] [--calls-per-registration 1]`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "server_cores/scenario.rs"]
mod scenario;

/// Target of issue 16: 2 workers handle at least 1.7× the messages of one.
const TARGET_RATIO: f64 = 1.7;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --all-targets` runs every bench without `--bench` (and unoptimised): one
    // small round then checks that the flows complete, without measuring anything.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let flows = if smoke {
        2_000
    } else {
        arg("--flows", 40_000).min(150_000)
    };
    let users = arg("--users", if smoke { 100 } else { 1000 }).max(2);
    let rounds = if smoke { 1 } else { arg("--rounds", 3).max(1) };
    let per_reg = arg("--calls-per-registration", 1);
    let load = scenario::Load::new(users, flows, per_reg);
    println!(
        "load: {} users, {} registrations (2 messages) + {} calls (6 messages) = {} messages per run; loadavg {}",
        users,
        load.registrations,
        load.calls,
        load.messages,
        scenario::load_average()
    );
    let mut best = [0f64; 2];
    let mut best_cpu = [0f64; 2];
    for round in 1..=rounds {
        for (i, workers) in [1usize, 2].into_iter().enumerate() {
            let o = scenario::run(&load, workers);
            let ok = o.failed == 0
                && o.messages == load.messages
                && o.stats.registrations == load.registrations as u64
                && o.stats.rejected == 0;
            println!(
                "round {round} workers={workers}: {} messages in {:.3} s = {:.0} msgs/s, {:.3} CPU-s = {:.0} msgs/CPU-s (handed over {}, failed flows {}, registrations {}, forwarded {}){}",
                o.messages,
                o.elapsed.as_secs_f64(),
                o.per_second(),
                o.cpu.as_secs_f64(),
                o.per_cpu_second(),
                o.handed_over,
                o.failed,
                o.stats.registrations,
                o.stats.forwarded,
                if ok { "" } else { "  MISMATCH" }
            );
            if !ok {
                eprintln!("server_scaling: a run did not complete every flow as expected");
                std::process::exit(1);
            }
            best[i] = best[i].max(o.per_second());
            best_cpu[i] = best_cpu[i].max(o.per_cpu_second());
        }
    }
    if smoke {
        println!(
            "server_scaling: smoke run (cargo test): every flow completed; figures: cargo bench"
        );
        return;
    }
    let ratio = best[1] / best[0].max(1.0);
    let cpu_ratio = 2.0 * best_cpu[1] / best_cpu[0].max(1.0);
    println!("loadavg after: {}", scenario::load_average());
    println!(
        "workers=1 msgs/s={:.0}  workers=2 msgs/s={:.0}  ratio={ratio:.2}  cpu_ratio={cpu_ratio:.2}  (target >= {TARGET_RATIO})",
        best[0], best[1]
    );
}
