"""`halotune doctor`: known Strix Halo problems checked on this machine. Exit 0 when nothing
beyond information is found, 1 with warnings under --strict, 2 on a fault, 3 without an AMD
GPU, 64 for a malformed --checks file."""

from __future__ import annotations

import argparse
import json
import sys

from halotune.cli import exitcodes


def add_parser(sub, common) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "doctor", help="look for known Strix Halo problems",
        description="Check the machine against known Strix Halo problems (kernel, firmware, "
                    "driver packages, kernel command line, GTT, other tools managing the GPU, "
                    "permissions, ROCm environment). Each finding says what was seen, why it "
                    "matters, the fix and the source. Exit 0 nothing wrong beyond information, "
                    "1 warnings (with --strict), 2 a fault.")
    common(p)
    p.add_argument("--json", action="store_true", help="print the halotune.doctor/1 document")
    p.add_argument("--strict", action="store_true", help="exit 1 when a warning is found")
    p.add_argument("--user", metavar="NAME",
                   help="check group membership and device access for this user (default: "
                        "the invoking user; SUDO_USER under sudo)")
    p.add_argument("--checks", metavar="FILE", help=argparse.SUPPRESS)   # a doctor.toml to test
    return p


def exit_code(report: dict, strict: bool, has_gpu: bool) -> int:
    if report["status"] == "fault":
        return exitcodes.NOT_READY
    if not has_gpu:
        return exitcodes.NO_AMD_GPU
    if report["status"] == "warn" and strict:
        return exitcodes.WARNINGS
    return exitcodes.OK


def run(args) -> int:
    from halotune.checks import render
    from halotune.checks.doctor import DoctorDataError, run_doctor
    from halotune.checks.facts import Facts
    from halotune.machine.rootfs import RootFS

    fs = RootFS(args.root)
    facts = Facts(fs, user=args.user)
    try:
        report = run_doctor(fs, facts=facts, entries_path=args.checks)
    except DoctorDataError as e:
        print(f"halotune: {e}", file=sys.stderr)
        return exitcodes.USAGE
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render.doctor(report))
    has_gpu = bool(facts.snapshot.gpus)
    if not has_gpu:
        print(f"halotune: no AMD GPU found under {args.root}", file=sys.stderr)
    return exit_code(report, args.strict, has_gpu)
