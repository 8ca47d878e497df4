"""`halotune probe`: measure llama.cpp pp/tg, joules per token and the bandwidth roofline.

Backends: the user's llama-bench when found, else in-process llama-cpp-python (the `probe`
extra), else unavailable (exit 2 with the reasons); `simulated` on a simulated machine. The test
is calibrated once per machine and frozen (halotune/probe/calibration.py). While it runs the
daemon, when one serves this machine, holds its rules (a daemon hold). The result goes to the
history unless --no-record; a history failure never loses it (printed anyway, with a warning).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from halotune.cli import exitcodes

PRICE_ENV = "HALOTUNE_PRICE_KWH"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be greater than 0")
        return value
    return parse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def add_parser(sub, common) -> argparse.ArgumentParser:
    """The `probe` sub-parser; `common` adds --root/--log-level (cli.main._common)."""
    from halotune.probe.backends import CHOICES

    p = sub.add_parser(
        "probe", help="measure llama.cpp tokens/s, joules per token and the roofline",
        description="Run a llama.cpp workload (a generated model, or --model FILE) and report "
                    "prompt processing (pp), token generation (tg) and tg at a context depth "
                    "with their spread, the power and joules per token during the timed work, "
                    "and how close tg comes to the memory-bandwidth limit. The test is "
                    "calibrated on the first run and then frozen, so later runs compare.",
        epilog="Backends: llama-bench (found as ROOT/usr/local/bin, ROOT/usr/bin, PATH or "
               "--llama-bench), inprocess (pip install 'halotune[probe]'), simulated (a "
               "`halotune sim` tree). Exit codes: 0 ok, 2 no backend or the probe failed, "
               "64 usage.")
    common(p)
    p.add_argument("--json", action="store_true",
                   help="print the halotune.probe/1 document (no progress bar)")
    p.add_argument("--backend", choices=CHOICES, default="auto",
                   help="auto (default): simulated on a simulated machine, else llama-bench "
                        "when found, else in-process")
    p.add_argument("--model", metavar="FILE.gguf", default=None,
                   help="benchmark this GGUF instead of a generated model")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="generated model size: ci, cpu (~0.45 GiB), apu (~1.6 GiB), xs, s, m, l "
                        "(default: frozen for this machine, else cpu or apu by backend)")
    p.add_argument("--quant", type=str.upper, choices=["Q4_0", "Q8_0", "F16"], default=None,
                   help="weight type of the generated model (Q4_0)")
    p.add_argument("--budget", type=_positive(float), default=30.0, metavar="S",
                   help="time budget of the measurements in seconds (30)")
    p.add_argument("--ci-target", type=_positive(float), default=2.0, metavar="PCT",
                   help="stop a test once the 95%% CI of its mean is within +-PCT %% (2)")
    p.add_argument("--depth", type=_non_negative_int, default=None, metavar="N",
                   help="context depth of the depth point (0: none; default: calibrated)")
    p.add_argument("--n-prompt", type=_positive(int), default=None, metavar="N",
                   help="prompt tokens of the pp test (default: calibrated)")
    p.add_argument("--n-gen", type=_positive(int), default=None, metavar="N",
                   help="generated tokens of the tg tests (default: calibrated)")
    p.add_argument("--threads", type=_positive(int), default=None, metavar="N",
                   help="CPU threads (default: physical cores, one fewer on a CPU backend)")
    p.add_argument("--recalibrate", action="store_true",
                   help="calibrate again and freeze the new test for this machine")
    p.add_argument("--price-kwh", type=_positive(float), default=None, metavar="X",
                   help=f"electricity price per kWh for the cost per million tokens "
                        f"(env {PRICE_ENV}; 0.30)")
    p.add_argument("--llama-bench", metavar="PATH", default=None,
                   help="the llama-bench binary to use (default: searched)")
    p.add_argument("--no-record", action="store_true", help="do not store the result in history")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="daemon API socket (env HALOTUNE_SOCKET): hold its rules while probing")
    return p


def _price(args) -> float:
    if args.price_kwh is not None:
        return args.price_kwh
    env = os.environ.get(PRICE_ENV)
    if env is None:
        return 0.30
    try:
        value = float(env)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"environment variable {PRICE_ENV}={env!r}: expected a price per "
                         "kWh greater than 0, e.g. 0.30")
    return value


class _Progress:
    """A rich progress bar with ETA on stderr (the budget is the total). Started on the first
    event, so a probe that fails before it starts leaves stderr to the error message."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("probe: starting", total=None)

    def __call__(self, ev: dict) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self._start()
        phase = ev.get("phase")
        if phase in ("generate", "verify"):
            self.bar.update(self.task, description=f"model: {phase}",
                            total=ev.get("total") or None, completed=ev.get("done", 0))
        elif phase == "model":
            self.bar.update(self.task, description=f"model: preset {ev.get('preset')}")
        elif phase == "calibrate":
            self.bar.update(self.task, description="calibrating (first run here)", total=None)
        elif phase in ("loaded", "round"):
            ci = ev.get("ci95_rel_percent")
            desc = "loaded" if phase == "loaded" else (
                f"{ev['test']} ({ev['index'] + 1}/{ev['count']}) n={ev['reps']}"
                + (f" CI ±{ci:.1f}%" if ci is not None else ""))
            self.bar.update(self.task, description=desc, total=ev["budget_s"],
                            completed=min(ev["elapsed_s"], ev["budget_s"]))
        elif phase == "roofline":
            self.bar.update(self.task, description="roofline and fingerprint")


def run(args) -> int:
    from halotune.probe.runner import ProbeFailed, ProbeOptions, probe

    try:
        price = _price(args)
    except ValueError as e:
        print(f"halotune probe: {e}", file=sys.stderr)
        return exitcodes.USAGE
    if args.model and (args.preset or args.quant):
        print("halotune probe: --model FILE and --preset/--quant exclude each other",
              file=sys.stderr)
        return exitcodes.USAGE
    if args.model and not os.path.isfile(args.model):
        print(f"halotune probe: --model {args.model}: no such file", file=sys.stderr)
        return exitcodes.NOT_READY
    opts = ProbeOptions(root=args.root, backend=args.backend, model=args.model,
                        preset=args.preset, quant=args.quant, budget_s=args.budget,
                        ci_target_percent=args.ci_target, n_depth=args.depth,
                        n_prompt=args.n_prompt, n_gen=args.n_gen, threads=args.threads,
                        recalibrate=args.recalibrate, price_kwh=price,
                        llama_bench=args.llama_bench)
    try:
        with _hold(args), _Progress(quiet=args.json) as progress:
            doc = probe(opts, progress=progress)
    except ProbeFailed as e:
        print(f"halotune probe: {e}", file=sys.stderr)
        return e.exit_code
    if not args.no_record:
        doc["history"] = _record(doc, args)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from halotune.probe.document import render_table

        print(render_table(doc))
        h = doc.get("history") or {}
        if h.get("run_id") is not None:
            print(f"recorded in history as run {h['run_id']}")
    return exitcodes.OK


def _hold(args):
    try:
        from halotune.daemon.client import daemon_hold
    except ImportError:        # an install without the daemon client
        import contextlib

        return contextlib.nullcontext()
    return daemon_hold(owner="probe", reason="halotune probe is measuring",
                       path=getattr(args, "socket", None))


def _record(doc: dict, args) -> dict:
    """Store the run; {"run_id"} or {"run_id": None, "error"} (warned, never fatal)."""
    try:
        from halotune.history import record_run
    except ImportError as e:
        msg = f"history is not available ({e}); the result was not recorded"
        print(f"halotune probe: warning: {msg}", file=sys.stderr)
        return {"run_id": None, "error": msg}
    fp = doc.get("fingerprint") or {}
    try:
        run_id = record_run("probe", doc["tests"], fingerprint=fp, result=doc,
                            telemetry=doc.get("telemetry"), profile=fp.get("active_profile"),
                            backend=doc["backend"], model=doc["model"], root=args.root,
                            socket=getattr(args, "socket", None))
    except Exception as e:  # noqa: BLE001 - the measurement must survive a history failure
        msg = f"could not record the result in history: {e}"
        print(f"halotune probe: warning: {msg}", file=sys.stderr)
        return {"run_id": None, "error": msg}
    if run_id is None:
        msg = "could not record the result in history (see the warning above)"
        print(f"halotune probe: warning: {msg}", file=sys.stderr)
        return {"run_id": None, "error": msg}
    return {"run_id": run_id}
