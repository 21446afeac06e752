//! Replays the fuzz corpora under `cargo test`: every file of `fuzz/seeds/<target>/` (the
//! curated seeds, committed), `fuzz/artifacts/<target>/` (past crashers, committed as
//! regression inputs) and, when present, `fuzz/corpus/<target>/` (what local fuzzing runs
//! generated, not committed) goes through the same `rvoip_sdk::fuzzing::<target>` function
//! that the cargo-fuzz target calls. A target without seeds fails: the test cannot pass
//! vacuously. Run the fuzzers themselves with `tests/fuzz/run.sh`.

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("sip_message", rvoip_sdk::fuzzing::sip_message),
    ("sdp", rvoip_sdk::fuzzing::sdp),
    ("rtp_rtcp", rvoip_sdk::fuzzing::rtp_rtcp),
    ("digest", rvoip_sdk::fuzzing::digest),
    ("srtp", rvoip_sdk::fuzzing::srtp),
    ("dtls", rvoip_sdk::fuzzing::dtls),
    ("server_core", rvoip_sdk::fuzzing::server_core),
    ("bencode", rvoip_sdk::fuzzing::bencode),
    ("ng", rvoip_sdk::fuzzing::ng),
    ("user_agent", rvoip_sdk::fuzzing::user_agent),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The regular files of `dir`, sorted; empty if the directory does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(name: &str, f: Target) {
    let root = fuzz_dir();
    let seeds = files(&root.join("seeds").join(name));
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/{name}/ is missing or empty: every target needs seeds"
    );
    let mut n = 0;
    for kind in ["seeds", "artifacts", "corpus"] {
        for path in files(&root.join(kind).join(name)) {
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                // A fuzzer running meanwhile replaces files of its corpus.
                Err(e) if kind == "corpus" && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            let r = std::panic::catch_unwind(|| f(&data));
            assert!(r.is_ok(), "{name}: {} panicked", path.display());
            n += 1;
        }
    }
    eprintln!("{name}: {n} inputs replayed");
}

macro_rules! replay_tests {
    ($($t:ident),*) => {$(
        #[test]
        fn $t() {
            let (name, f) = TARGETS
                .iter()
                .find(|(n, _)| *n == stringify!($t))
                .expect("target listed");
            replay(name, *f);
        }
    )*};
}

replay_tests!(
    sip_message,
    sdp,
    rtp_rtcp,
    digest,
    srtp,
    dtls,
    server_core,
    bencode,
    ng,
    user_agent
);

/// Every target listed here has a cargo-fuzz binary and a seed directory (and vice versa).
#[test]
fn every_target_is_replayed() {
    let root = fuzz_dir();
    let mut on_disk: Vec<String> = files(&root.join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "fuzz/fuzz_targets and TARGETS differ");
}
