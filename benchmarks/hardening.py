#!/usr/bin/env python3
"""Run the hardening campaigns of issue #8 at full size and print each campaign's figure.

    .venv/bin/python benchmarks/hardening.py            # full sizes (HALOTUNE_HARDENING_FULL=1)
    .venv/bin/python benchmarks/hardening.py --quick    # the CI subset (what `pytest` runs)
    .venv/bin/python benchmarks/hardening.py --only crash load   # some campaigns only

Campaigns (tests/hardening/): crash (random SIGKILL of apply/rollback, power loss, disk full,
permission failures, damaged state files), fuzz (gpu_metrics, sysfs parsers, profiles, the
API, llama-bench ingestion), load (subscribers + apply/rollback loop), security, variety.
Full sizes: 500 apply + 200 rollback kill points (plus power loss, disk full and permission
failures at every journal save), 100,000 gpu_metrics blobs (+43,260 every version x length),
1,000-10,000 inputs per other fuzz target (16,000 mutated profiles), 100 clients for 60 s.
On a 2-core machine the full run takes about ten minutes (the CI subset two); --only runs a
part. The kill points are random (printed seed; --seed replays a run). Exit status: pytest's.
The figures are also written as JSON with --json FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMPAIGNS = {
    "crash": ["tests/hardening/test_crash_campaign.py"],
    "fuzz": ["tests/hardening/test_fuzz_gpu_metrics.py", "tests/hardening/test_fuzz_sysfs.py",
             "tests/hardening/test_fuzz_profiles.py", "tests/hardening/test_fuzz_api.py",
             "tests/hardening/test_fuzz_llamabench.py"],
    "load": ["tests/hardening/test_load.py"],
    "security": ["tests/hardening/test_security.py", "tests/hardening/test_hostile_clients.py"],
    "variety": ["tests/hardening/test_variety.py"],
}
# The figure that matters most in each campaign, shown first.
HEADLINE = ("runs", "kill_points", "lost_originals", "inputs", "crashes", "failures", "score",
            "clients", "daemon_cpu_percent", "rss_growth_kib", "files", "problems")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the CI sizes instead of the full ones")
    p.add_argument("--only", nargs="+", choices=sorted(CAMPAIGNS), metavar="CAMPAIGN",
                   help=f"run only these campaigns ({', '.join(CAMPAIGNS)})")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    p.add_argument("--seed", type=int, help="seed of the random kill points (full run)")
    args = p.parse_args(argv)

    files = [f for c in (args.only or CAMPAIGNS) for f in CAMPAIGNS[c]]
    fd, figures_path = tempfile.mkstemp(prefix="halotune-hardening-", suffix=".json")
    os.close(fd)
    os.unlink(figures_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["HALOTUNE_HARDENING_FIGURES"] = figures_path
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if not args.quick:
        env["HALOTUNE_HARDENING_FULL"] = "1"
    if args.seed is not None:
        env["HALOTUNE_HARDENING_SEED"] = str(args.seed)
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
           "--durations=15"]
    size = "CI subset" if args.quick else "full sizes"
    print(f"halotune hardening campaigns ({size}): {' '.join(args.only or CAMPAIGNS)}",
          flush=True)
    t0 = time.monotonic()
    rc = subprocess.call(cmd, cwd=REPO, env=env)
    elapsed = time.monotonic() - t0
    try:
        with open(figures_path, encoding="utf-8") as f:
            figures = json.load(f)
        os.unlink(figures_path)
    except (OSError, ValueError):
        figures = {}
    print()
    print(f"=== figures ({size}, {elapsed / 60:.1f} min, pytest exit {rc}) ===")
    for campaign in sorted(figures):
        fig = figures[campaign]
        head = [f"{k}={fig[k]}" for k in HEADLINE if k in fig]
        rest = [f"{k}={v}" for k, v in fig.items() if k not in HEADLINE]
        print(f"{campaign}: {', '.join(head + rest)}")
    lost = sum(f.get("lost_originals", 0) for f in figures.values())
    crashes = sum(f.get("crashes", 0) for f in figures.values())
    print(f"--- total: lost originals {lost}, fuzz crashes {crashes}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"size": size, "minutes": round(elapsed / 60, 1), "pytest_exit": rc,
                       "figures": figures}, f, indent=1, sort_keys=True, default=str)
    return rc


if __name__ == "__main__":
    sys.exit(main())
