"""halotune's command line: parse arguments, then hand over to one module per verb.

Kept light: this module imports nothing heavy, so `halotune status --json` starts fast; each
verb imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from halotune import __version__
from halotune.cli import exitcodes


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 means "not ready" here, so usage errors are 64."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(exitcodes.USAGE, f"{self.prog}: error: {message}\n")


def _common(p: argparse.ArgumentParser) -> None:
    """Options every command honours (also accepted after the verb)."""
    p.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                   help="read the machine under DIR instead of / (env HALOTUNE_ROOT)")
    p.add_argument("--log-level", default=argparse.SUPPRESS,
                   choices=["debug", "info", "warning", "error"], help="log verbosity (warning)")


# Commands whose parser lives in their own module (halotune/cli/<verb>.py: add_parser(sub,
# common) and run(args)). Only the module of the verb being run is imported, so these never
# cost `halotune status --json` anything; the help line here stands in for the others.
_PLUGIN_VERBS = {
    "preflight": "check the machine is ready for a benchmark (exit 0 ready, 2 not)",
    "doctor": "look for known Strix Halo problems (kernel, firmware, command line, ...)",
    "probe": "measure llama.cpp pp/tg tokens/s, joules per token and the bandwidth roofline",
    "validate": "prove profiles with the probe: apply, settle, probe, roll back, compare",
    "sweep": "probe at each TDP step; tokens/s and tokens/J against watts",
    "bench": "run a benchmark command with preflight, telemetry and a history record",
    "history": "list, compare, check and import benchmark results",
}


def _command_word(argv: list[str]) -> str | None:
    """The verb on a command line (skipping the global options and their values)."""
    it = iter(argv)
    for a in it:
        if a in ("--root", "--log-level"):
            next(it, None)
        elif not a.startswith("-"):
            return a
    return None


class _OneVerb:
    """Stands in for the subparsers action: builds the full parser of the verb being run and a
    bare entry (name and help line, for `halotune --help`) for every other verb. argparse spends
    ~1 ms per option on help strings and gettext look-ups, which `status --json` would
    otherwise pay for all two dozen verbs."""

    def __init__(self, sub, word: str | None):
        self._sub, self._word = sub, word

    def add_parser(self, name: str, **kw):
        if self._word is None or name == self._word:
            return self._sub.add_parser(name, **kw)
        self._sub.add_parser(name, **({"help": kw["help"]} if "help" in kw else {}))
        return _Unbuilt()


class _Unbuilt:
    """A parser not being built: every add_argument/add_subparsers/add_parser call is a no-op."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: self


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    word = _command_word(sys.argv[1:] if argv is None else argv)
    p = _Parser(prog="halotune",
                description="Telemetry, tuning and LLM validation for AMD Strix Halo machines.",
                epilog="Exit codes: 0 ok, 1 warnings under --strict, 2 not ready or failed, "
                       "3 no AMD GPU found, 4 permission denied, 64 usage error.")
    p.add_argument("--version", action="version", version=f"halotune {__version__}")
    _common(p)
    subparsers = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub = _OneVerb(subparsers, word)

    st = sub.add_parser("status", help="show the live state of the machine",
                        description="Show GPU, memory, power and CPU state. One snapshot with "
                                    "--json or --once; a live view otherwise.")
    _common(st)
    st.add_argument("--json", action="store_true", help="print one JSON snapshot and exit")
    st.add_argument("--once", action="store_true", help="print one readable summary and exit")
    st.add_argument("--demo", action="store_true",
                    help="run on the built-in simulated Strix Halo (no root, no hardware)")
    st.add_argument("--socket", metavar="PATH", default=None,
                    help="daemon API socket to render (env HALOTUNE_SOCKET)")
    st.add_argument("--cross-check", action="store_true",
                    help="compare sysfs readings with libdrm (needs the amdgpuinfo extra and a "
                         "real GPU)")
    st.add_argument("--interval", type=float, default=1.0, metavar="S",
                    help="refresh interval of the live view in seconds (1.0)")

    sim = sub.add_parser("sim", help="lay out (and animate) the simulated Strix Halo",
                         description="Write a simulated Strix Halo sysfs/procfs tree into DIR. "
                                     "Point any command at it with --root DIR.")
    _common(sim)
    sim.add_argument("dir", metavar="DIR", help="directory to create the tree in")
    sim.add_argument("--animate", action="store_true",
                     help="keep the machine moving until interrupted")
    sim.add_argument("--scenario", default="reference", choices=["reference", "idle"],
                     help="starting state (reference: the documented LLM burst)")
    sim.add_argument("--interval", type=float, default=0.5, metavar="S",
                     help="animation step in seconds (0.5)")
    sim.add_argument("--force", action="store_true", help="lay out into a non-empty DIR")
    sim.add_argument("--kernel", default="6.17", metavar="X.Y",
                     help="the Linux version whose driver behaviour the machine follows "
                          "(6.11-6.18; default 6.17, the reference snapshot's)")
    sim.add_argument("--platform-profile-handlers", default="amd-pmf", metavar="NAMES",
                     help="platform-profile drivers in registration order, comma separated "
                          "(amd-pmf, or amd-pmf,asus-wmi for an ASUS machine; default amd-pmf)")
    sim.add_argument("--reboot", action="store_true",
                     help="simulate a reboot of the machine in DIR: new boot_id, runtime "
                          "settings back to firmware defaults, modprobe.d GTT settings applied")

    snap = sub.add_parser("snapshot", help="collect what halotune reads into a bug-report archive",
                          description="Collect every file halotune reads, plus `ryzenadj -i`, "
                                      "the kernel release and command line, into OUT.tar.gz. "
                                      "The archive unpacks into a tree usable with --root.")
    _common(snap)
    snap.add_argument("out", metavar="OUT.tar.gz")
    snap.add_argument("--redact", action="store_true",
                      help="replace boot ids, UUIDs and the host name before archiving")
    _tuning_parsers(sub)

    sv = sub.add_parser("service", help="install or remove the systemd unit (pip/pipx installs)",
                        description="Put halotune's systemd unit, tmpfiles.d and sysusers.d "
                                    "files in place (install), or stop the service, roll the "
                                    "machine back and remove them (uninstall). Needs root "
                                    "unless --prefix is given. See systemd/README.md.")
    _common(sv)
    svsub = sv.add_subparsers(dest="service_command", metavar="install|uninstall",
                              parser_class=_Parser)
    for verb, text in (("install", "write the unit, tmpfiles.d and sysusers.d files; reload systemd"),
                       ("uninstall", "stop the service, roll back, remove the files")):
        v = svsub.add_parser(verb, help=text, description=text)
        _common(v)
        v.add_argument("--prefix", metavar="DIR", default="/",
                       help="put the files under DIR instead of / (staging: systemd is not run)")
        v.add_argument("--dry-run", action="store_true",
                       help="print what would be done, change nothing")
        if verb == "install":
            v.add_argument("--force", action="store_true",
                           help="install even when a non-root user can write the installation")
        v.add_argument("--state-dir", metavar="DIR", default=os.environ.get("HALOTUNE_STATE_DIR"),
                       help="journal to roll back with (uninstall; default /var/lib/halotune, or "
                            "DIR/.halotune-state for --root DIR)")

    dm = sub.add_parser("daemon", help="run the halotune service (sampling, API, rules)",
                        description="Run the service: sample telemetry, serve the local API "
                                    "(docs/api.md), apply profiles by rule. Normally started by "
                                    "systemd (systemd/halotune.service).")
    _common(dm)
    dm.add_argument("--config", metavar="PATH", default=None,
                    help="configuration file (env HALOTUNE_CONFIG; default "
                         "/etc/halotune/halotune.toml)")
    dm.add_argument("--socket", metavar="PATH", default=None,
                    help="API socket (env HALOTUNE_SOCKET; default from the configuration)")
    dm.add_argument("--state-dir", metavar="DIR", default=os.environ.get("HALOTUNE_STATE_DIR"),
                    help="journal directory (env HALOTUNE_STATE_DIR)")
    _profiles_dir(dm)
    dm.add_argument("--check-config", action="store_true",
                    help="validate the configuration file and exit")

    for verb, text in _PLUGIN_VERBS.items():
        if verb == word:
            import importlib
            importlib.import_module(f"halotune.cli.{verb}").add_parser(subparsers, _common)
        else:
            _common(subparsers.add_parser(verb, help=text))
    return p


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text}: must be between 0 and 86400 seconds")
    return value


def _state(p: argparse.ArgumentParser, wait: bool = True) -> None:
    p.add_argument("--state-dir", metavar="DIR", default=os.environ.get("HALOTUNE_STATE_DIR"),
                   help="journal and lock directory (env HALOTUNE_STATE_DIR; default "
                        "/var/lib/halotune, or DIR/.halotune-state for --root DIR)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="daemon API socket (env HALOTUNE_SOCKET); when a daemon serves this "
                        "root, changes go through it")
    if wait:
        p.add_argument("--wait", type=float, default=0.0, metavar="S",
                       help="wait up to S seconds for another halotune to finish (0)")


def _profiles_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiles-dir", metavar="DIR", default=None,
                   help="admin profiles directory (default /etc/halotune/profiles); the "
                        "shipped profiles stay available underneath")


def _profiles_dir_suppressed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiles-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


def _tuning_parsers(sub) -> None:
    ap = sub.add_parser("apply", help="apply a tuning profile (shows the plan, verifies)",
                        description="Apply a profile: plan current -> target per tunable, "
                                    "journal the originals durably, write in a safe order, "
                                    "verify. Needs root on a real machine.")
    _common(ap)
    ap.add_argument("name", metavar="NAME", help="profile name (see `halotune profiles list`)")
    ap.add_argument("--dry-run", action="store_true", help="show the plan, write nothing")
    ap.add_argument("--confirm", type=_positive_seconds, metavar="S", default=None,
                    help="revert automatically unless `halotune confirm` comes within S seconds")
    ap.add_argument("--force", action="store_true",
                    help="allow values refused by default (GTT above 90 %% of RAM)")
    _state(ap)
    _profiles_dir(ap)

    rb = sub.add_parser("rollback", help="restore the values the machine had before halotune",
                        description="Restore exactly the original values, then verify.")
    _common(rb)
    rb.add_argument("--dry-run", action="store_true", help="show what would be restored")
    _state(rb)

    vf = sub.add_parser("verify", help="compare the machine with the applied profile (drift)",
                        description="List values that no longer hold (another daemon or the "
                                    "firmware changed them). Exit 2 when something drifted.")
    _common(vf)
    _state(vf, wait=False)

    rc = sub.add_parser("recover", help="finish what a crashed apply/rollback left behind",
                        description="Undo an unfinished transaction (restore the originals), "
                                    "or complete it with --resume.")
    _common(rc)
    rc.add_argument("--resume", action="store_true", help="complete the interrupted apply")
    _state(rc)

    cf = sub.add_parser("confirm", help="keep a profile applied with --confirm")
    _common(cf)
    _state(cf)

    # No help= at all: argparse (< 3.13) lists a sub-command given help=SUPPRESS as "==SUPPRESS==".
    rv = sub.add_parser("_revert-unconfirmed")
    _common(rv)
    rv.add_argument("--deadline", type=float, required=True)
    _state(rv)

    pr = sub.add_parser("profiles", help="list, show and compare tuning profiles")
    _common(pr)
    _profiles_dir(pr)
    pr.add_argument("--json", action="store_true", help="machine-readable output")
    psub = pr.add_subparsers(dest="profiles_command", metavar="list|show|diff",
                             parser_class=_Parser)
    ls = psub.add_parser("list", help="every profile with its description")
    sh = psub.add_parser("show", help="one profile, resolved (inheritance applied)")
    sh.add_argument("name", metavar="NAME")
    df = psub.add_parser("diff", help="what differs between two profiles")
    df.add_argument("a", metavar="A")
    df.add_argument("b", metavar="B")
    for sp in (ls, sh, df):     # accepted after the subcommand too
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
        _profiles_dir_suppressed(sp)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.WARNING),
                        format="halotune: %(levelname)s: %(message)s")


# Each other command is the module halotune/cli/<command>.py with a run(args).
_TUNING_VERBS = ("apply", "rollback", "verify", "recover", "confirm", "_revert-unconfirmed")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.root = getattr(args, "root", None) or os.environ.get("HALOTUNE_ROOT") or "/"
    _setup_logging(getattr(args, "log_level", None) or os.environ.get("HALOTUNE_LOG_LEVEL", "warning"))
    if args.command is None:
        parser.print_help()
        return exitcodes.USAGE
    # A --root holding the simulated Strix Halo answers writes like its kernel (imports on use).
    from halotune import sim
    sim.wire()
    try:
        if args.command in _TUNING_VERBS:
            from halotune.cli import tuning
            return getattr(tuning, args.command.strip("_").replace("-", "_"))(args)
        # argparse only lets known commands through; each imports what it needs when it runs.
        import importlib
        return importlib.import_module(f"halotune.cli.{args.command}").run(args)
    except KeyboardInterrupt:
        return exitcodes.OK
    except BrokenPipeError:
        # `halotune status --json | head` closed the pipe: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exitcodes.OK
