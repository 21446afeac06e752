//! Clock and /proc readers: CPU time of threads, RSS, machine idle time, load.

use std::sync::OnceLock;
use std::time::Instant;

pub static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide epoch (CLOCK_MONOTONIC, as `Instant`).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Summed on-CPU time (ns, `schedstat` field 1) of every thread of `pid` ("self" allowed),
/// or of only those whose `comm` is `name`.
pub fn cpu_ns(pid: &str, name: Option<&str>) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut sum = 0;
    for e in dir.flatten() {
        if let Some(n) = name {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != n {
                continue;
            }
        }
        let s = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        sum += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    sum
}

/// Thread ids of `pid` ("self" allowed), or only of those whose `comm` is `name`.
pub fn threads(pid: &str, name: Option<&str>) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            name.is_none_or(|n| {
                std::fs::read_to_string(e.path().join("comm"))
                    .unwrap_or_default()
                    .trim_end()
                    == n
            })
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// `VmRSS` of `pid` in kB.
pub fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Idle time of all CPUs in ns and the number of CPUs (`/proc/stat`: idle + iowait, USER_HZ
/// 100). The idle columns are exact on a tickless kernel, while user/system are sampled at each
/// tick and miss short bursts such as a packet loop's: busy time = CPUs × wall − idle.
pub fn machine_idle_ns() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpus = s
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    let Some(l) = s.lines().next() else {
        return (0, cpus);
    };
    let f: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let pick = |i: usize| f.get(i).copied().unwrap_or(0);
    ((pick(3) + pick(4)) * 10_000_000, cpus)
}

pub fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}
