#!/usr/bin/env python3
"""Idle SIP-over-TLS connections for benches/tls_load.sh (issue 11).

Opens TLS connections to HOST:PORT in steps (--steps 1000,5000: first 1000, then 4000 more), each
completing the handshake and a REGISTER with digest (REGISTER -> 401 -> REGISTER with
Authorization -> 200) for its own AOR (userNNNN, password --password), and keeps every connection
open and silent. After each step it prints "READY <open> ok=<registered> failed=<failed>" and waits
for a line on stdin before the next step; after the last step, for a line (or EOF) before closing
everything and exiting. Bounded: --deadline seconds in all (then everything is closed), at most
--concurrency handshakes at once, every exchange with a timeout. Loopback only.

Server certificates are not verified (the bench's self-made CA); the client offers TLS 1.2+ with
Python's default ciphers (TLS 1.3 with both servers here).
"""
import argparse
import asyncio
import hashlib
import os
import re
import ssl
import sys
import time


def parse_challenges(resp):
    """(realm, nonce, opaque, algorithm, qop) of each WWW-Authenticate header."""
    out = []
    for m in re.finditer(r"^(?:WWW-Authenticate):\s*Digest\s+(.*)$", resp, re.I | re.M):
        params = dict(
            (k.lower(), v1 if v1 else v2)
            for k, v1, v2 in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', m.group(1))
        )
        out.append(params)
    return out


def digest_header(p, user, password, uri, method="REGISTER"):
    alg = (p.get("algorithm") or "MD5").upper()
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[alg]

    def H(s):
        return h(s.encode()).hexdigest()

    realm, nonce = p["realm"], p["nonce"]
    ha1 = H(f"{user}:{realm}:{password}")
    ha2 = H(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    qop = p.get("qop")
    if qop and "auth" in [q.strip() for q in qop.split(",")]:
        cnonce, nc = os.urandom(8).hex(), "00000001"
        resp = H(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        resp = H(f"{ha1}:{nonce}:{ha2}")
    fields += [f'response="{resp}"', f"algorithm={alg}"]
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Authorization: Digest " + ", ".join(fields)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"^Content-Length:\s*(\d+)", head, re.I | re.M)
    n = int(m.group(1)) if m else 0
    if n:
        await reader.readexactly(n)
    return head.decode(errors="replace")


async def register(i, a, ctx, conns, sem):
    user = f"user{i + a.user_offset:04d}"
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(a.host, a.port, ssl=ctx, server_hostname=None), a.timeout)
        except Exception as e:  # noqa: BLE001 (any failure counts)
            return f"connect: {e!r}"
        conns.append(writer)
        lhost, lport = writer.get_extra_info("sockname")[:2]
        uri = f"sip:{a.host}:{a.port}"
        call_id = f"idle-{os.getpid()}-{i}@{lhost}"
        auth = ""
        for cseq in (1, 2):
            msg = (
                f"REGISTER {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {lhost}:{lport};branch=z9hG4bK-idle{os.getpid()}-{i}-{cseq};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:{user}@{a.host}>;tag=idle{i}\r\n"
                f"To: <sip:{user}@{a.host}>\r\n"
                f"Call-ID: {call_id}\r\n"
                f"CSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:{user}@{lhost}:{lport};transport=tls>\r\n"
                f"{auth}"
                "Expires: 3600\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            writer.write(msg.encode())
            try:
                while True:
                    resp = await asyncio.wait_for(read_response(reader), a.timeout)
                    code = int(resp.split(" ", 2)[1])
                    if code >= 200:
                        break
            except Exception as e:  # noqa: BLE001
                return f"REGISTER {cseq}: {e!r}"
            if code == 200 or (code == 401 and a.challenge_only):
                return None
            if code != 401 or cseq == 2:
                return f"REGISTER {cseq}: {resp.splitlines()[0]}"
            ch = [p for p in parse_challenges(resp)
                  if (p.get("algorithm") or "MD5").upper() in ("MD5", "SHA-256")]
            if not ch:
                return "no usable challenge"
            auth = digest_header(ch[0], user, a.password, uri) + "\r\n"
        return "unreachable"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5061)
    ap.add_argument("--steps", default="1000,5000")
    ap.add_argument("--user-offset", type=int, default=0)
    ap.add_argument("--password", default="secret")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument("--deadline", type=float, default=600.0)
    ap.add_argument("--challenge-only", action="store_true",
                    help="stop at the 401 (no binding is made): the connection's own cost")
    a = ap.parse_args()
    if not a.host.startswith("127.") and a.host not in ("localhost", "::1"):
        sys.exit("loopback only")
    t_end = time.monotonic() + a.deadline
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    sem = asyncio.Semaphore(a.concurrency)
    conns, ok, failed, errors = [], 0, 0, {}
    loop = asyncio.get_running_loop()
    done = 0
    try:
        for step in [int(s) for s in a.steps.split(",")]:
            t0 = time.monotonic()
            tasks = [register(i, a, ctx, conns, sem) for i in range(done, step)]
            left = max(1.0, t_end - time.monotonic())
            for r in await asyncio.wait_for(asyncio.gather(*tasks), left):
                if r is None:
                    ok += 1
                else:
                    failed += 1
                    errors[r.split(":")[0]] = r
            done = step
            print(f"READY {len(conns)} ok={ok} failed={failed} secs={time.monotonic() - t0:.1f}"
                  + (f" errors={list(errors.values())[:3]}" if errors else ""), flush=True)
            left = max(1.0, t_end - time.monotonic())
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), left)
    except asyncio.TimeoutError:
        print("DEADLINE", flush=True)
    finally:
        for w in conns:
            w.close()
        try:
            print(f"CLOSED {len(conns)}", flush=True)
        except BrokenPipeError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
