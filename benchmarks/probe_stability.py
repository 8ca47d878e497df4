#!/usr/bin/env python3
"""Stability of the probe: run the default probe twice and compare.

    python3 benchmarks/probe_stability.py [--runs N] [-- EXTRA PROBE OPTIONS]

Each run is `python -m halotune probe --json --no-record` in its own process, exactly as a user
runs it (the frozen per-machine test, its budget, the default backend), one after the other.
Printed per test: each run's mean tokens/s, median, per-repetition CV and 95 % CI, then the
difference between the runs' means and medians in percent, and the wall time of each probe.
Targets: CV <= 2 % on quiet hardware; on a noisy shared 2-core VM single repetitions vary
3-14 % and between-run differences of 6-10 % are normal (probe notes 3.3). Figures only, no
assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def run_probe(extra: list[str]) -> tuple[dict, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "halotune", "probe", "--json", "--no-record",
                         *extra], capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - t0
    if cp.returncode != 0:
        sys.exit(f"probe failed (exit {cp.returncode}): {cp.stderr.strip()}")
    return json.loads(cp.stdout), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("extra", nargs="*", help="options passed to `halotune probe`")
    args = ap.parse_args()
    docs = []
    for i in range(args.runs):
        doc, wall = run_probe(args.extra)
        docs.append((doc, wall))
        print(f"run {i + 1}: {wall:.1f} s wall, probe duration {doc['duration_s']:.1f} s, "
              f"stopped because {doc['stopped_because']}")
    first = docs[0][0]
    spec = first.get("spec") or {}
    print(f"backend {first['backend']}, model {first['model']['name']}, threads "
          f"{(first.get('backend_info') or {}).get('threads')}, spec "
          f"pp{spec.get('n_prompt')}/tg{spec.get('n_gen')}/d{spec.get('n_depth')} "
          f"({spec.get('source')}), budget {spec.get('budget_s')} s")
    print(f"{'test':<16} {'run':>3} {'mean t/s':>10} {'median':>10} {'CV %':>6} {'CI95 %':>7} "
          f"{'n':>3}")
    for idx, t in enumerate(first["tests"]):
        means, medians = [], []
        for i, (doc, _) in enumerate(docs):
            u = doc["tests"][idx]
            means.append(u["tokens_per_s"])
            medians.append(u["median"])
            print(f"{u['name']:<16} {i + 1:>3} {u['tokens_per_s']:>10.2f} {u['median']:>10.2f} "
                  f"{u['cv_percent']:>6.2f} {u['ci95_rel_percent'] or 0:>7.2f} "
                  f"{len(u['samples']):>3}")
        diff = 100.0 * (means[-1] - means[0]) / means[0]
        mdiff = 100.0 * (medians[-1] - medians[0]) / medians[0]
        print(f"{t['name']:<16} difference between runs: mean {diff:+.2f} %, "
              f"median {mdiff:+.2f} %")
    effs = [d["roofline"]["tg_efficiency"] for d, _ in docs]
    print("tg roofline efficiency: " + ", ".join("-" if e is None else f"{100 * e:.1f} %"
                                                 for e in effs)
          + f" of {first['roofline']['peak_bytes_per_s'] / 1e9:.1f} GB/s "
            f"({first['roofline']['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
