#!/usr/bin/env bash
# THE test command (README): system packages, unit/integration tests of the workspace, release build of
# rvoip-server, the real-peer integration suite (tests/run-integration.sh), the C ABI checks
# (tests/c/run.sh), the UniFFI bindings checks (tests/bindings/run.sh) and a bounded fuzzing run
# of every cargo-fuzz target (tests/fuzz/run.sh).
# Exits non-zero if any step fails.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FAILED=()
section() { printf '\n==================== %s (at %ss) ====================\n' "$*" "$SECONDS"; }
# Disk: a cold run builds the workspace in debug (tests), release (server, C ABI) and the fuzz
# targets. Line tables are enough for backtraces and valgrind, and incremental state is useless
# on a one-shot machine; together they keep target/ to a few GB. Free space is printed per step
# so that a full disk shows as such.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
disk() { df -h "$ROOT" | awk 'NR==2 {print "disk: " $4 " free of " $2}'; }
disk

section "1/7 system packages (sip-tester baresip tshark rtpengine-daemon kamailio tcpdump iptables sox bc python3 nodejs npm openssl dnsmasq-base libopus-dev libasound2-dev) + python pjsua2, sipvicious"
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip)
command -v tshark >/dev/null || need+=(tshark)
# ng control tests (tests/integration/ng-compare.sh, kamailio-ng.sh): the reference rtpengine, Kamailio 5.6
# with its rtpengine module
command -v rtpengine >/dev/null || need+=(rtpengine-daemon)
command -v kamailio >/dev/null || need+=(kamailio)
command -v sox >/dev/null || need+=(sox)
command -v bc >/dev/null || need+=(bc)
command -v python3 >/dev/null || need+=(python3)
command -v ss >/dev/null || need+=(iproute2)
# NAT test (tests/integration/nat.sh): masquerading routers in network namespaces, capture
command -v iptables >/dev/null || need+=(iptables)
command -v tcpdump >/dev/null || need+=(tcpdump)
# RFC 3263 tests (tests/dns.rs): a private dnsmasq serving NAPTR/SRV/A records
# Redis shared store tests (tests/integration/redis.sh): a private redis-server
command -v redis-server >/dev/null || need+=(redis-server)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
# TLS tests (tests/integration/*-tls.sh): the run's test CA and server certificate
command -v openssl >/dev/null || need+=(openssl)
command -v pkg-config >/dev/null || need+=(pkg-config)
# C toolchain, CMake and valgrind for the C ABI checks (tests/c/run.sh)
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
command -v valgrind >/dev/null || need+=(valgrind)
# node + npm: SIP.js over WSS (tests/integration/sipjs.sh runs `npm ci` in tests/integration/sipjs)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# venv + pip for the Python bindings package (tests/bindings/run.sh)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# libopus for the opus feature (audiopus via pkg-config), ALSA headers for the audio-device feature (cpal)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
pkg-config --exists alsa 2>/dev/null || need+=(libasound2-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "missing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture: answer no, non-interactively
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get update && apt-get install -y "${need[@]}" || FAILED+=("apt-get install ${need[*]}")
  else
    echo "not root: cannot install ${need[*]}; install them (apt-get install -y ${need[*]}) and re-run"
    FAILED+=("missing packages: ${need[*]}")
  fi
else
  echo "all present: $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), baresip, tshark, sox, bc, python3"
fi
# PJSIP's Python API (tests/integration/pjsip.sh): PyPI pjsua2-python
if python3 -c 'import pjsua2' 2>/dev/null; then
  echo "python pjsua2 present"
else
  echo "missing: python module pjsua2"
  python3 -m pip install pjsua2-python || FAILED+=("pip install pjsua2-python")
fi
# prometheus_client's exposition parsers for the metrics test (tests/integration/metrics.sh)
if python3 -c 'import prometheus_client' 2>/dev/null; then
  echo "python prometheus_client present"
else
  echo "missing: python module prometheus_client"
  python3 -m pip install prometheus-client || FAILED+=("pip install prometheus-client")
fi
# sipvicious (svwar, svcrack) for the attack tests (tests/integration/sipvicious.sh)
if python3 -c 'import sipvicious' 2>/dev/null; then
  echo "python sipvicious present"
else
  echo "missing: python module sipvicious"
  python3 -m pip install sipvicious || FAILED+=("pip install sipvicious")
fi

section "2/7 cargo test --workspace --all-targets --features rvoip-sdk/opus,rvoip-sdk/audio-device"
if cargo test --workspace --all-targets --features rvoip-sdk/opus,rvoip-sdk/audio-device; then echo "cargo test: OK"; else FAILED+=("cargo test"); fi

disk
section "3/7 cargo build --release: rvoip-server and the softphone example"
if cargo build --release -p rvoip-sdk --features opus --bin rvoip-server --example softphone; then echo "build: OK"; else FAILED+=("cargo build rvoip-server + softphone example"); fi

disk
section "4/7 integration tests (tests/run-integration.sh) against target/release/rvoip-server"
if [ -x target/release/rvoip-server ]; then
  if RVOIP_SERVER=$ROOT/target/release/rvoip-server tests/run-integration.sh; then :; else FAILED+=("integration tests"); fi
else
  FAILED+=("integration tests (no rvoip-server binary)")
fi

disk
section "5/7 C ABI: smoke tests, sanitizers, examples (tests/c/run.sh)"
if tests/c/run.sh; then echo "C ABI: OK"; else FAILED+=("C ABI smoke tests (tests/c/run.sh)"); fi

disk
section "6/7 UniFFI bindings: Swift/Kotlin generation, Python package + pytest (tests/bindings/run.sh)"
if tests/bindings/run.sh; then echo "bindings: OK"; else FAILED+=("UniFFI bindings (tests/bindings/run.sh)"); fi

disk
section "7/7 fuzzing: every cargo-fuzz target for a bounded time (tests/fuzz/run.sh ${FUZZ_SECS:-30})"
# The corpus replay (seeds and past crashers) already ran in step 2 (tests/fuzz_replay.rs).
if CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} tests/fuzz/run.sh "${FUZZ_SECS:-30}"; then echo "fuzz: OK"; else FAILED+=("fuzzing (tests/fuzz/run.sh)"); fi

disk
section "summary"
if [ ${#FAILED[@]} -eq 0 ]; then echo "ALL OK"; exit 0; fi
printf 'FAILED: %s\n' "${FAILED[@]}"
exit 1
