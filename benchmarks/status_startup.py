#!/usr/bin/env python3
"""What one `halotune status --json` process costs a script, from exec to exit.

    python3 benchmarks/status_startup.py [--root DIR] [--runs N] [--peer CMD]

Prints the median wall time of N runs of the installed `halotune` console script on the
reference Strix Halo tree, beside the floor of the same interpreter doing nothing
(`python -c pass`) and, when a peer command is given or rocm-smi is on PATH, that peer's median
and the ratio (target: no slower than one rocm-smi call, aim for half of it). Also prints the
slowest imports of one run (`python -X importtime`), where the time usually goes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_ROOT = os.path.join(REPO, "tests", "fixtures", "strix-halo")


def median_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def slowest_imports(argv: list[str], n: int = 8) -> list[tuple[int, str]]:
    err = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                         text=True, check=False).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=DEFAULT_ROOT)
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--peer", default=None, help="command to compare with (default: rocm-smi "
                    "--showuse --json when on PATH)")
    args = ap.parse_args()

    script = shutil.which("halotune", path=os.path.dirname(sys.executable)) or "halotune"
    status = [script, "status", "--json", "--root", args.root]
    floor = median_ms([sys.executable, "-c", "pass"], args.runs)
    ours = median_ms(status, args.runs)
    print(f"python -c pass            {floor:6.1f} ms (the interpreter's floor)")
    print(f"halotune status --json    {ours:6.1f} ms ({ours - floor:.1f} ms above the floor)")
    peer = shlex.split(args.peer) if args.peer else (
        ["rocm-smi", "--showuse", "--json"] if shutil.which("rocm-smi") else None)
    if peer:
        theirs = median_ms(peer, args.runs)
        print(f"{' '.join(peer)[:25]:25s} {theirs:6.1f} ms; halotune/peer = {ours / theirs:.2f}")
    else:
        print("no peer: rocm-smi is not installed here (pass --peer CMD to compare)")
    print("slowest imports of one run (cumulative us):")
    for us, name in slowest_imports(["-m", "halotune", *status[1:]]):
        print(f"  {us:7d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
