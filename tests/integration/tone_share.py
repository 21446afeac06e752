#!/usr/bin/env python3
"""How much of a WAV recording's energy lies at one tone, measured per 20 ms block.

The same measure as rvoip_sdk::media::tone::tone_fraction_blocks: the samples are cut into
consecutive 20 ms blocks from the first sample; each block's Goertzel power at FREQ (scaled so that a
pure tone's power equals its energy, |X(f)|^2 / (N/2)) is summed, and the sum is divided by the summed
energy of the same blocks. An energy-weighted mean of the per-block shares: silent blocks weigh
nothing, a phase jump (jitter buffer, concealed frame) only costs the blocks that straddle it.

Multi-channel WAVs are mixed down to mono (mean of the channels), or one channel is taken with
--channel N (0 = left). 16-bit PCM only.

Usage: tone_share.py WAV FREQ [--min 0.9] [--min-seconds 1.0] [--skip 0] [--until S] [--label NAME] [--channel N]
                    [--max-also SHARE]
Prints one line: "NAME: 99.87 % of the energy at FREQ Hz per 20 ms block (... s with signal, ...)"
and exits 0 if the share is >= --min and at least --min-seconds of blocks carry signal, else 1.
"""
import argparse
import math
import struct
import sys
import wave


def read_mono(path, channel=None):
    w = wave.open(path, "rb")
    ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
    raw = w.readframes(n)
    w.close()
    if width != 2:
        raise SystemExit("%s: %d-byte samples, want 16-bit PCM" % (path, width))
    vals = struct.unpack("<%dh" % (len(raw) // 2), raw[: len(raw) // 2 * 2])
    if ch == 1:
        return list(vals), rate
    if channel is not None:
        if not 0 <= channel < ch:
            raise SystemExit("%s: no channel %d (%d channels)" % (path, channel, ch))
        return list(vals[channel::ch]), rate
    return [sum(vals[i : i + ch]) / ch for i in range(0, len(vals) - ch + 1, ch)], rate


def goertzel_power(block, freq, rate):
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in block:
        s0 = x + coeff * s1 - s2
        s2 = s1
        s1 = s0
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def block_share(samples, freq, rate, block_len):
    """(share, blocks with signal): as tone_fraction_blocks (whole blocks; a short input is one block)."""
    blocks = [samples[i : i + block_len] for i in range(0, len(samples) - block_len + 1, block_len)]
    if not blocks and samples:
        blocks = [samples]
    tone = total = 0.0
    live = 0
    # "signal": a block whose RMS is above about -60 dBFS (a dither/noise floor is not signal)
    floor = (32768 * 10 ** (-60 / 20)) ** 2
    for b in blocks:
        e = sum(x * x for x in b)
        if e / len(b) > floor:
            live += 1
        tone += goertzel_power(b, freq, rate) / (len(b) / 2.0)
        total += e
    if total <= 0 or not math.isfinite(tone):
        return 0.0, live
    return min(max(tone / total, 0.0), 1.0), live


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wav")
    ap.add_argument("freq", type=float)
    ap.add_argument("--min", type=float, default=0.9, help="minimum share (0..1)")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="minimum seconds of blocks with signal")
    ap.add_argument("--skip", type=float, default=0.0, help="seconds left out at the start")
    ap.add_argument("--until", type=float, default=None, help="seconds from the start where the measure ends")
    ap.add_argument("--label", default=None)
    ap.add_argument("--also", type=float, action="append", default=[], help="also report the share at this Hz")
    ap.add_argument("--channel", type=int, default=None, help="take this channel (0 = left) instead of the mix")
    ap.add_argument("--max-also", type=float, default=None,
                    help="fail when the share at an --also tone exceeds this (0..1)")
    a = ap.parse_args()
    samples, rate = read_mono(a.wav, a.channel)
    if a.until is not None:
        samples = samples[: int(a.until * rate)]
    samples = samples[int(a.skip * rate) :]
    block = rate // 50
    share, live = block_share(samples, a.freq, rate, block)
    secs = live * block / rate
    also = [(f, block_share(samples, f, rate, block)[0]) for f in a.also]
    extra = "".join(", %.1f %% at %g Hz" % (100 * s, f) for f, s in also)
    ok = share >= a.min and secs >= a.min_seconds
    if a.max_also is not None and any(s > a.max_also for _, s in also):
        ok = False
        extra += " (FAILED: over %.0f %% at another tone)" % (100 * a.max_also)
    print("%s: %.2f %% of the energy at %g Hz per 20 ms block (%s; %.2f s with signal of %.2f s at %d Hz%s)" % (
        a.label or a.wav, 100 * share, a.freq, "ok" if ok else "FAILED, want >= %.0f %% and >= %.1f s" % (
            100 * a.min, a.min_seconds), secs, len(samples) / rate, rate, extra))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
