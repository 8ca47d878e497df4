"""`halotune sweep --tdp 45:120:15`: the probe at each TDP step; tokens/s and tokens/J
against watts, the Pareto-optimal steps and the knee.

Only the TDP changes between steps (STAPM = slow = fast); everything else stays as it is, and
the machine ends as it was found. When a daemon serves this root the sweep runs inside it (its
API method `validate` with a `sweep` parameter, under a hold), since the daemon's `apply`
takes profile names only; otherwise through the apply engine.

Exit codes: 0 every step measured, 2 a step failed or nothing could be measured, 4 permission,
64 usage (a bad --tdp, naming the value).
"""

from __future__ import annotations

import argparse
import json
import sys

from halotune.cli import exitcodes
from halotune.cli.validate import (Channel, _err, add_probe_options, check_probe_args,
                                   daemon_serves, make_prober_for, progress_printer, settler)

DAEMON_TIMEOUT_MARGIN_S = 300.0


def add_parser(sub, common) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sweep", help="probe at each TDP step; tokens/s and tokens/J against watts",
        description="Apply only the TDP (STAPM = slow = fast) at each step from START to STOP "
                    "(STOP included), probe, and print a table and a terminal plot of tg "
                    "tokens/s and tokens per joule against the watts measured during tg, with "
                    "the Pareto-optimal steps and the knee marked. Everything else stays as it "
                    "is; the machine ends as it was found.",
        epilog="Exit codes: 0 every step measured, 2 a step failed, 4 permission denied, "
               "64 usage. --tdp values must lie in the platform's 45-120 W range.")
    common(p)
    p.add_argument("--tdp", required=True, metavar="START:STOP:STEP",
                   help="TDP steps in watts, e.g. 45:120:15")
    p.add_argument("--png", metavar="FILE", default=None,
                   help="also save the plot as a PNG (needs matplotlib)")
    add_probe_options(p)
    p.add_argument("--profiles-dir", metavar="DIR", default=None,
                   help="admin profiles directory (to re-apply the profile active before)")
    return p


def _via_daemon(args, steps) -> dict | None:
    """Run the sweep inside the daemon; the document, or None when it refused (printed)."""
    from halotune.daemon.client import ApiError, Client

    timeout = len(steps) * (args.budget * 3 + (args.settle or 30.0)) + DAEMON_TIMEOUT_MARGIN_S
    params = {"sweep": {"tdp": args.tdp}, "backend": args.backend, "budget_s": args.budget,
              "record": not args.no_record}
    for k, v in (("preset", args.preset), ("model", args.model), ("settle_s", args.settle)):
        if v is not None:
            params[k] = v
    if not args.json:
        _err("sweep", f"running inside the daemon ({len(steps)} steps; its event log shows "
                      "the progress)")
    try:
        with Client(args.socket, timeout=timeout) as client:
            return client.call("validate", params)
    except ApiError as e:
        _err("sweep", f"the daemon refused: {e.message}")
    except (OSError, ValueError) as e:
        _err("sweep", f"the daemon did not answer: {e}")
    return None


def run(args) -> int:
    from halotune.tuning.loader import ProfileStore
    from halotune.validation.plot import png_available, save_png
    from halotune.validation.sweep import SweepUsageError, parse_tdp, record, render, run_sweep
    from halotune.validation.validate import ValidationError

    try:
        steps = parse_tdp(args.tdp)
    except SweepUsageError as e:
        _err("sweep", str(e))
        return exitcodes.USAGE
    if (code := check_probe_args(args, "sweep")) is not None:
        return code
    if args.png and not png_available():
        _err("sweep", f"--png {args.png}: matplotlib is not installed (pip install matplotlib); "
                      "nothing was measured. Without --png the table and the terminal plot "
                      "show the same figures")
        return exitcodes.NOT_READY
    if daemon_serves(args):
        doc = _via_daemon(args, steps)
        if doc is None:
            return exitcodes.NOT_READY
    else:
        store = ProfileStore(args.profiles_dir, root=args.root)
        with Channel(args, "sweep", runs=len(steps)) as ch:
            if ch.code is not None:
                return ch.code
            try:
                doc, docs = run_sweep(steps, applier=ch.applier, probe=make_prober_for(args),
                                      settle=settler(args), store=store,
                                      progress=progress_printer(args, "sweep"),
                                      backend=args.backend, spec=args.tdp)
            except ValidationError as e:
                _err("sweep", str(e))
                return e.code
            except KeyboardInterrupt:
                _err("sweep", "interrupted; the machine was restored")
                return exitcodes.NOT_READY
        if not args.no_record:
            record(doc, docs, root=args.root, socket=args.socket)
    if args.png:
        try:
            save_png(doc, args.png)
        except OSError as e:
            _err("sweep", f"--png {args.png}: {e.strerror or e}")
            doc["ok"] = False
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(doc))
    return exitcodes.OK if doc["ok"] else exitcodes.NOT_READY
