#!/usr/bin/env python3
"""Cost of one apply and one rollback of the runtime knobs, with the engine in-process.

    python3 benchmarks/apply_cost.py [--iterations N] [--dir DIR]

On a fresh simulated Strix Halo (halotune.sim, no animator) it applies and rolls back, N times
each (50 by default), a profile written to a temporary --profiles-dir that sets every runtime
knob except the TDP limits: platform profile, CPU governor and EPP (32 policies each), GPU
performance level and OD clock cap, the three sysctls and both THP files. TDP limits go
through RyzenAdj, a separate process start per write and per read-back, so the same profile
with power.stapm_w / fast_w / slow_w is measured separately (its figure includes the RyzenAdj
stand-in's process starts).

Each operation is Engine.apply(profile) / Engine.rollback() on a new Engine, as a command
would run it, minus the interpreter start and argument parsing. Reported: median and 90th
percentile in ms, the number of attribute writes, and how much of the time the simulator
itself spent answering them (on a real kernel a sysfs write costs microseconds; the
simulator re-renders its state files on every write). Target: median <= 50 ms for the runtime
knobs. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from halotune.machine.rootfs import RootFS  # noqa: E402
from halotune.sim import kernel as sim_kernel  # noqa: E402
from halotune.sim.tree import lay_out  # noqa: E402
from halotune.tuning.engine import Engine  # noqa: E402
from halotune.tuning.loader import ProfileStore  # noqa: E402

import halotune.sim  # noqa: E402

halotune.sim.wire()   # writes under the simulated root go to its kernel, as the CLI wires it

TARGET_MS = 50.0

RUNTIME = """\
description = "apply_cost benchmark: every runtime knob, no TDP limits"

[power]
platform_profile = "low-power"

[gpu]
performance_level = "manual"
sclk_max_mhz = 2000

[cpu]
governor = "performance"
epp = "performance"

[sysctl]
"vm.swappiness" = 10
"vm.compaction_proactiveness" = 0
"kernel.numa_balancing" = 1

[thp]
enabled = "always"
defrag = "never"
"""

WITH_TDP = RUNTIME.replace(
    'description = "apply_cost benchmark: every runtime knob, no TDP limits"',
    'description = "apply_cost benchmark: every runtime knob and the TDP limits"'
).replace('[power]\n', "[power]\nstapm_w = 50\nslow_w = 50\nfast_w = 55\n")


class SimClock:
    """Counts the simulator's attribute writes and the time spent in them."""

    def __init__(self):
        self.writes = 0
        self.seconds = 0.0
        self._real = sim_kernel.SimKernel.write

    def __enter__(self):
        clock = self

        def timed_write(kernel, rel, value):
            t = time.perf_counter()
            try:
                return clock._real(kernel, rel, value)
            finally:
                clock.seconds += time.perf_counter() - t
                clock.writes += 1

        sim_kernel.SimKernel.write = timed_write
        return self

    def __exit__(self, *exc):
        sim_kernel.SimKernel.write = self._real

    def reset(self):
        self.writes, self.seconds = 0, 0.0


def measure(base: str, name: str, text: str, iterations: int) -> dict:
    root = os.path.join(base, f"{name}-root")
    state = os.path.join(base, f"{name}-state")
    profiles = os.path.join(base, f"{name}-profiles")
    lay_out(root)
    os.makedirs(profiles)
    with open(os.path.join(profiles, f"{name}.toml"), "w") as f:
        f.write(text)
    profile = ProfileStore(profiles).load(name)
    results = {"apply": [], "rollback": [], "apply_sim": [], "rollback_sim": [],
               "apply_writes": 0, "rollback_writes": 0}
    with SimClock() as clock:
        for _ in range(iterations):
            for op in ("apply", "rollback"):
                engine = Engine(RootFS(root), state)
                clock.reset()
                t = time.perf_counter()
                out = engine.apply(profile) if op == "apply" else engine.rollback()
                elapsed = time.perf_counter() - t
                if not out.ok:
                    raise SystemExit(f"{op} of {name} failed: {out.summary}")
                results[op].append(elapsed * 1000)
                results[f"{op}_sim"].append(clock.seconds * 1000)
                results[f"{op}_writes"] = clock.writes
    return results


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1] if len(xs) >= 2 else xs[0]


def report(r: dict, target: bool) -> None:
    for op in ("apply", "rollback"):
        times, sim = r[op], r[f"{op}_sim"]
        med = statistics.median(times)
        own = statistics.median([t - s for t, s in zip(times, sim)])
        line = (f"  {op:<8} median {med:7.1f} ms  p90 {_p90(times):7.1f} ms  "
                f"({r[f'{op}_writes']} attribute writes; in the simulator "
                f"{statistics.median(sim):.1f} ms, the rest {own:.1f} ms)")
        if target:
            line += (f"  target <= {TARGET_MS:g} ms: total {'ok' if med <= TARGET_MS else 'over'}"
                     f", without the simulator {'ok' if own <= TARGET_MS else 'over'}")
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--dir", default=None, help="where to lay out the trees (default: a temp "
                                                "directory, removed afterwards)")
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="halotune-apply-cost-", dir=a.dir)
    try:
        print(f"halotune apply cost: {a.iterations} iterations, simulated Strix Halo in {base}")
        rt = measure(base, "runtime", RUNTIME, a.iterations)
        print("runtime knobs (platform profile, governor, EPP, level, OD, sysctl, THP; no TDP):")
        report(rt, target=True)
        tdp = measure(base, "with-tdp", WITH_TDP, a.iterations)
        print("the same with the TDP limits (RyzenAdj stand-in processes included):")
        report(tdp, target=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
