"""`halotune validate NAME... | --all`: prove profiles with the probe.

For each profile, in A B A B order over --rounds rounds: apply, settle, probe, roll back. The
expectations in each profile's [validate] table get pass/fail verdicts with the measured
numbers; the comparison table marks the best value per column. The machine always ends as it
was found. When a daemon serves this root, validate holds it (its rules pause) and every
change goes through its API on the holding connection; otherwise through the apply engine.

Exit codes: 0 every expectation passed, 2 a verdict failed or was unknown, a run failed, or
nothing could be measured, 4 permission, 64 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from halotune.cli import exitcodes


def _positive(kind, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be greater than 0")
        return value
    return parse


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: must be between 0 and 3600 seconds")
    return value


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Options validate and sweep share (the probe and the machine)."""
    from halotune.probe.backends import CHOICES

    p.add_argument("--json", action="store_true", help="print the JSON document (no progress)")
    p.add_argument("--backend", choices=CHOICES, default="auto",
                   help="probe backend; auto (default): simulated on a simulated machine, else "
                        "llama-bench when found, else in-process")
    p.add_argument("--budget", type=_positive(float, "a number of seconds"), default=30.0,
                   metavar="S", help="time budget of each probe in seconds (30)")
    p.add_argument("--model", metavar="FILE.gguf", default=None,
                   help="probe with this GGUF instead of a generated model")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="generated model size (ci, cpu, apu, ...; default as `halotune probe`)")
    p.add_argument("--settle", type=_non_negative_seconds, default=None, metavar="S",
                   help="wait at most S seconds for temperatures and clock limits to settle "
                        "before each probe (30; 2 on a simulated machine; 0: do not wait)")
    p.add_argument("--no-record", action="store_true", help="do not store the results in history")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="daemon API socket (env HALOTUNE_SOCKET); when a daemon serves this "
                        "root, validate holds it and changes go through it")
    p.add_argument("--state-dir", metavar="DIR", default=os.environ.get("HALOTUNE_STATE_DIR"),
                   help="journal directory (env HALOTUNE_STATE_DIR; default /var/lib/halotune, "
                        "or DIR/.halotune-state for --root DIR)")


def add_parser(sub, common) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "validate", help="prove profiles with the probe: apply, settle, probe, roll back, compare",
        description="For each profile: apply it, wait for the machine to settle, run the probe, "
                    "roll back; profiles alternate (A B A B) over the rounds so drift falls on "
                    "all of them. Prints a comparison table (tg, pp, the depth point, watts, "
                    "joules per token, roofline %) and a pass/fail verdict with the measured "
                    "numbers for every expectation in the profiles' [validate] tables. The "
                    "machine ends as it was found.",
        epilog="Exit codes: 0 every expectation passed, 2 an expectation failed or could not "
               "be checked, or a run failed, 4 permission denied, 64 usage.")
    common(p)
    p.add_argument("names", nargs="*", metavar="NAME", help="profiles to validate")
    p.add_argument("--all", action="store_true", help="validate every profile")
    p.add_argument("--rounds", type=_positive(int, "an integer"), default=2, metavar="N",
                   help="rounds over all profiles (2: A B A B)")
    add_probe_options(p)
    p.add_argument("--profiles-dir", metavar="DIR", default=None,
                   help="admin profiles directory (default /etc/halotune/profiles)")
    return p


def _err(verb: str, msg: str) -> None:
    print(f"halotune {verb}: {msg}", file=sys.stderr)


def make_prober_for(args):
    """probe(label) -> probe/1 document, with this command's probe options."""
    from halotune.probe.runner import ProbeOptions
    from halotune.validation.measure import make_prober

    return make_prober(ProbeOptions(root=args.root, backend=args.backend, model=args.model,
                                    preset=args.preset, budget_s=args.budget))


def check_probe_args(args, verb: str) -> int | None:
    """Refuse what would fail only after a profile had been applied."""
    from halotune.validation.measure import backend_problem

    if args.model and args.preset:
        _err(verb, "--model FILE and --preset exclude each other")
        return exitcodes.USAGE
    if args.model and not os.path.isfile(args.model):
        _err(verb, f"--model {args.model}: no such file")
        return exitcodes.NOT_READY
    if (why := backend_problem(args.root, args.backend)) is not None:
        _err(verb, f"--backend {args.backend}: {why}; nothing was changed")
        return exitcodes.NOT_READY
    return None


def daemon_serves(args) -> bool:
    """Whether a daemon answers on the socket and serves this root."""
    try:
        from halotune.daemon.client import ApiError, Client
    except ImportError:
        return False
    client = Client.try_connect(getattr(args, "socket", None))
    if client is None:
        return False
    with client:
        try:
            return client.call("hello").get("root") == os.path.abspath(args.root)
        except (ApiError, OSError, ValueError):
            return False


class Channel:
    """The applier for this command: the daemon's API on a held connection, or the engine.
    A context manager (the hold ends when it exits). `code`/`message` when refused."""

    def __init__(self, args, verb: str, runs: int = 1):
        self.args, self.verb = args, verb
        # The hold must outlast the whole run (the daemon drops expired holds).
        per_run = args.budget * 3 + (30.0 if args.settle is None else args.settle) + 60.0
        self.ttl_s = min(86400.0, runs * per_run + 600.0)
        self.applier = None
        self.code = None
        self._hold = None

    def __enter__(self):
        from halotune.validation.appliers import ClientApplier, EngineApplier

        args = self.args
        if daemon_serves(args):
            from halotune.daemon.client import daemon_hold

            self._hold = daemon_hold(owner=self.verb, reason=f"halotune {self.verb} is measuring",
                                     ttl_s=self.ttl_s, path=args.socket)
            hold = self._hold.__enter__()
            if hold is None:
                _err(self.verb, "the daemon serving this machine did not grant a hold (see the "
                                "warning above): run as root or as a member of its admin group")
                self.code = exitcodes.PERMISSION
                return self
            self.applier = ClientApplier(hold.client)
            return self
        if os.path.abspath(args.root) == "/" and os.geteuid() != 0:
            _err(self.verb, f"applies profiles and needs root: sudo halotune {self.verb} ...")
            self.code = exitcodes.PERMISSION
            return self
        from halotune.machine.rootfs import RootFS
        from halotune.tuning.engine import Engine, default_state_dir

        self.applier = EngineApplier(Engine(RootFS(args.root),
                                            args.state_dir or default_state_dir(args.root)))
        return self

    def __exit__(self, *exc):
        if self._hold is not None:
            return self._hold.__exit__(*exc)
        return False


def settler(args):
    from halotune.machine.rootfs import RootFS
    from halotune.validation.settle import SettleConfig, settle

    fs = RootFS(args.root)
    cfg = SettleConfig.for_machine(fs, args.settle)
    return lambda: settle(fs, cfg)


def progress_printer(args, verb: str):
    if args.json:
        return None
    return lambda msg: print(f"halotune {verb}: {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    from halotune.tuning.loader import ProfileError, ProfileStore
    from halotune.validation.validate import ValidationError, record, run_validation, select

    if not args.names and not args.all:
        _err("validate", "name at least one profile (halotune profiles list), or --all")
        return exitcodes.USAGE
    if args.names and args.all:
        _err("validate", "name profiles or give --all, not both")
        return exitcodes.USAGE
    if (code := check_probe_args(args, "validate")) is not None:
        return code
    store = ProfileStore(args.profiles_dir, root=args.root)
    try:
        profiles, requested, exps = select(store, args.names, args.all)
    except ProfileError as e:
        _err("validate", str(e))
        return exitcodes.NOT_READY
    prober = make_prober_for(args)
    with Channel(args, "validate", runs=len(profiles) * args.rounds) as ch:
        if ch.code is not None:
            return ch.code
        try:
            doc, docs = run_validation(profiles, requested, exps, applier=ch.applier,
                                       probe=prober, settle=settler(args), rounds=args.rounds,
                                       store=store, progress=progress_printer(args, "validate"),
                                       backend=args.backend)
        except ValidationError as e:
            _err("validate", str(e))
            return e.code
        except KeyboardInterrupt:
            _err("validate", "interrupted; the machine was rolled back")
            return exitcodes.NOT_READY
    if not args.no_record:
        record(doc, docs, root=args.root, socket=args.socket)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from halotune.validation.table import render

        print(render(doc))
    return exitcodes.OK if doc["ok"] else exitcodes.NOT_READY
