"""`halotune preflight`: is the machine ready for a benchmark? Exit 0 ready, 1 warnings under
--strict, 2 not ready, 3 no AMD GPU, 64 usage (a bad thresholds file)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from halotune.cli import exitcodes


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{text}: must be between 0 and 600 seconds")
    return value


def add_parser(sub, common) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "preflight", help="check the machine is ready for a benchmark",
        description="Watch the machine for a moment and check what makes benchmarks "
                    "unreproducible: the profile and its limits, other GPU clients and LLM "
                    "servers, CPU and I/O load, swap, temperatures and throttling, AC power, "
                    "and (with --model) whether the model fits, with a token-generation "
                    "forecast. Exit 0 ready, 1 warnings (with --strict), 2 not ready.")
    common(p)
    p.add_argument("--profile", metavar="NAME", help="the profile that must be applied")
    p.add_argument("--model", metavar="FILE.gguf",
                   help="check this model fits (first file of a split model) and forecast it")
    p.add_argument("--ctx", type=_positive_int, metavar="N",
                   help="context for the KV cache with --model (default 4096)")
    p.add_argument("--allow", action="append", default=[], metavar="NAME",
                   help="an LLM server allowed to keep running (repeatable)")
    p.add_argument("--window", type=_seconds, metavar="S",
                   help="seconds to watch the machine (default 1.5, from the thresholds)")
    p.add_argument("--thresholds", metavar="FILE",
                   help="TOML file overriding thresholds (same sections as the shipped "
                        "halotune/checks/thresholds.toml)")
    p.add_argument("--json", action="store_true",
                   help="print the halotune.preflight/1 document (with snapshot and fingerprint)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check warns")
    p.add_argument("--state-dir", metavar="DIR", default=os.environ.get("HALOTUNE_STATE_DIR"),
                   help="journal directory to verify the profile against")
    p.add_argument("--profiles-dir", metavar="DIR", default=None,
                   help="admin profiles directory (default /etc/halotune/profiles)")
    return p


def exit_code(report: dict, strict: bool) -> int:
    if not report["snapshot"]["gpus"]:
        return exitcodes.NO_AMD_GPU
    if report["status"] == "fail":
        return exitcodes.NOT_READY
    if report["status"] == "warn" and strict:
        return exitcodes.WARNINGS
    return exitcodes.OK


def run(args) -> int:
    from halotune.checks import render
    from halotune.checks.preflight import run_preflight
    from halotune.checks.thresholds import ThresholdError
    from halotune.machine.rootfs import RootFS

    try:
        report = run_preflight(RootFS(args.root), profile=args.profile, model=args.model,
                               ctx=args.ctx, allow=tuple(args.allow), window_s=args.window,
                               state_dir=args.state_dir, thresholds=args.thresholds,
                               profiles_dir=args.profiles_dir)
    except ThresholdError as e:
        print(f"halotune: {e}", file=sys.stderr)
        return exitcodes.USAGE
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render.preflight(report))
    code = exit_code(report, args.strict)
    if code == exitcodes.NO_AMD_GPU:
        print(f"halotune: no AMD GPU found under {args.root}", file=sys.stderr)
    return code
