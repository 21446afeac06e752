#!/usr/bin/env python3
"""Checks rvoip-server's HTTP endpoints (tests/integration/metrics.sh).

  metrics_check.py metrics URL [--save FILE] EXPECT...
      GET URL (/metrics), parse it with the prometheus_client package's OpenMetrics parser and
      its Prometheus text parser (both must accept it and agree), and check every EXPECT:
        NAME{k=v,k=v}=VALUE   the sample exists and equals VALUE
        NAME{k=v}>=VALUE      the sample exists and is at least VALUE
        NAME{k=v}=absent      no such sample
      Prints every checked sample; exits 1 naming each mismatch.
  metrics_check.py healthz URL          200, status ok, event loop alive, every store reachable
  metrics_check.py status URL CHECK...  GET URL (/status) and check its JSON:
        bindings_total=N calls_total=N calls_total>=N bindings_listed=N
        binding_fields (every listed binding has aor, contact, expires_s>0, transport udp, source)
        call_fields (every listed call has call_id, from, to, state early|confirmed, age_s)
  metrics_check.py code URL METHOD STATUS   the HTTP status of METHOD URL is STATUS
  metrics_check.py wait URL SECONDS         polls URL until it answers (any status)
"""

import json
import re
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as prometheus_families


def get(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(families):
    out = {}
    for fam in families:
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            if key in out:
                raise SystemExit(f"duplicate sample {s.name}{s.labels}")
            out[key] = s.value
    return out


EXPECT = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?(=|>=)(.+)$")


def cmd_metrics(url, args):
    save = None
    if args[:1] == ["--save"]:
        save, args = args[1], args[2:]
    status, ctype, text = get(url)
    if status != 200:
        raise SystemExit(f"/metrics answered {status}")
    if save:
        with open(save, "w") as f:
            f.write(text)
    if "openmetrics-text" not in ctype:
        raise SystemExit(f"/metrics Content-Type {ctype!r}")
    om = samples(openmetrics_families(text))
    prom_text = "\n".join(l for l in text.splitlines() if l != "# EOF") + "\n"
    prom = samples(prometheus_families(prom_text))
    if om.keys() != prom.keys() or any(om[k] != prom[k] for k in om):
        diff = sorted(set(om.items()) ^ set(prom.items()), key=str)[:5]
        raise SystemExit(f"the OpenMetrics and Prometheus parsers disagree: {diff}")
    bad = []
    for e in args:
        m = EXPECT.match(e)
        if not m:
            raise SystemExit(f"bad expectation {e!r}")
        name, labels, op, want = m.groups()
        lab = frozenset(
            tuple(kv.split("=", 1)) for kv in (labels.split(",") if labels else []) if kv
        )
        have = om.get((name, lab))
        if want == "absent":
            ok = have is None
        elif have is None:
            ok = False
        elif op == "=":
            ok = have == float(want)
        else:
            ok = have >= float(want)
        print(f"{'ok  ' if ok else 'BAD '} {e:70} have {have}")
        if not ok:
            bad.append(f"{e} (have {have})")
    print(f"{len(om)} samples parsed by both parsers; {len(args) - len(bad)}/{len(args)} expectations met")
    if bad:
        raise SystemExit("metrics wrong: " + "; ".join(bad))


def cmd_healthz(url):
    status, ctype, text = get(url)
    body = json.loads(text)
    print(f"/healthz {status}: {text.strip()}")
    if status != 200 or body.get("status") != "ok":
        raise SystemExit(f"/healthz {status} {text.strip()}")
    if body["event_loop"].get("alive") is not True:
        raise SystemExit("/healthz: event loop not alive")
    stores = body.get("stores", [])
    if not stores or not all(s.get("reachable") is True for s in stores):
        raise SystemExit(f"/healthz stores {stores}")
    if not any(s.get("name") == "location" for s in stores):
        raise SystemExit(f"/healthz: no location store in {stores}")


def cmd_status(url, checks):
    status, ctype, text = get(url)
    if status != 200 or "json" not in ctype:
        raise SystemExit(f"/status {status} {ctype}")
    body = json.loads(text)
    print(
        f"/status: bindings_total={body['bindings_total']} listed={len(body['bindings'])} "
        f"calls_total={body['calls_total']} listed={len(body['calls'])}"
    )
    if body["calls"]:
        print(f"  first call: {body['calls'][0]}")
    if body["bindings"]:
        print(f"  first binding: {body['bindings'][0]}")
    bad = []
    for c in checks:
        if c == "binding_fields":
            for b in body["bindings"]:
                if not (b["aor"] and b["contact"].startswith("sip:") and b["expires_s"] > 0
                        and b["transport"] == "udp" and b["source"].startswith("127.0.0.1:")):
                    bad.append(f"binding {b}")
                    break
        elif c == "call_fields":
            for k in body["calls"]:
                if not (k["call_id"] and "sip:" in k["from"] and "sip:" in k["to"]
                        and k["state"] in ("early", "confirmed") and k["age_s"] >= 0):
                    bad.append(f"call {k}")
                    break
        else:
            m = re.match(r"^(\w+)(=|>=)(\d+)$", c)
            if not m:
                raise SystemExit(f"bad status check {c!r}")
            key, op, want = m.group(1), m.group(2), int(m.group(3))
            have = len(body["bindings"]) if key == "bindings_listed" else body[key]
            if not (have == want if op == "=" else have >= want):
                bad.append(f"{c} (have {have})")
    if bad:
        raise SystemExit("/status wrong: " + "; ".join(bad))


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    cmd, url, rest = argv[1], argv[2], argv[3:]
    if cmd == "metrics":
        cmd_metrics(url, rest)
    elif cmd == "healthz":
        cmd_healthz(url)
    elif cmd == "status":
        cmd_status(url, rest)
    elif cmd == "code":
        status, _, _ = get(url, rest[0])
        if status != int(rest[1]):
            raise SystemExit(f"{rest[0]} {url}: {status}, want {rest[1]}")
    elif cmd == "wait":
        deadline = time.monotonic() + float(rest[0])
        while True:
            try:
                get(url)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{url} did not answer within {rest[0]} s")
                time.sleep(0.1)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
