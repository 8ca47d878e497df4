#!/usr/bin/env python3
"""Cost of one full telemetry snapshot, against the floor of reading the same files naively.

    python3 benchmarks/snapshot_cost.py [--root DIR] [--samples N]

The floor is plain open/read/close of every file one sample opens (found by watching os.open
during a sample), with no parsing and no model. Target: snapshot <= 2x the floor. By default
it runs on the reference Strix Halo tree in tests/fixtures (no ryzenadj: TDP readback is a
separate, rate-limited process start and is not part of the per-sample cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from halotune.machine.rootfs import RootFS  # noqa: E402
from halotune.telemetry.sampler import Sampler  # noqa: E402

DEFAULT_ROOT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "strix-halo")


def files_opened_by(fn) -> list[str]:
    """Paths os.open()ed while fn runs (the sampler opens everything through os.open)."""
    seen: list[str] = []
    real_open = os.open

    def spy(path, flags, *a, **kw):
        seen.append(os.fsdecode(path))
        return real_open(path, flags, *a, **kw)

    os.open = spy
    try:
        fn()
    finally:
        os.open = real_open
    return list(dict.fromkeys(seen))


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--samples", type=int, default=2000)
    a = ap.parse_args()

    sampler = Sampler(RootFS(a.root), read_tdp=False)
    sampler.sample()  # warm: the first sample opens the hot files
    # A fresh sampler's first sample shows every file a sample reads, hot ones included.
    paths = files_opened_by(Sampler(RootFS(a.root), read_tdp=False).sample)
    paths = [p for p in paths if os.path.isfile(p)]

    def floor():
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                f.read(4096)

    snap_us = timed(sampler.sample, a.samples)
    json_us = timed(lambda: json.dumps(sampler.sample().to_dict()), a.samples // 4)
    floor_us = timed(floor, a.samples)
    med_s, med_f, med_j = (statistics.median(x) for x in (snap_us, floor_us, json_us))
    print(f"root: {a.root}")
    print(f"files read per sample: {len(paths)}")
    print(f"snapshot (Sampler.sample):     median {med_s:8.1f} us  (p90 "
          f"{statistics.quantiles(snap_us, n=10)[-1]:.1f} us)")
    print(f"floor (open/read/close each):  median {med_f:8.1f} us")
    print(f"snapshot + JSON serialisation: median {med_j:8.1f} us")
    print(f"ratio snapshot/floor: {med_s / med_f:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
