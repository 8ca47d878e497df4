"""`halotune status`: one snapshot (--json, --once) or the full-screen TUI (halotune.tui).

The TUI shows the daemon's stream when a daemon serves this root (its socket: --socket,
HALOTUNE_SOCKET or the default), else samples the machine itself, read-only. --demo runs the
simulated Strix Halo with a private daemon on a temporary socket, so applying profiles works
without root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time

from halotune.cli import exitcodes
from halotune.machine.rootfs import RootFS


DEMO_PRIME_S = 1.0


@contextlib.contextmanager
def _demo_root():
    """A simulated Strix Halo in a temporary directory, animated while the command runs."""
    import tempfile

    from halotune.sim.animate import Animator
    from halotune.sim.tree import lay_out

    with tempfile.TemporaryDirectory(prefix="halotune-demo-") as root:
        lay_out(root)
        animator = Animator(root)
        animator.step()
        animator.start()
        try:
            yield root
        finally:
            animator.stop()


def _one_shot(args) -> bool:
    return args.json or args.once or not (sys.stdout.isatty() and sys.stdin.isatty())


def run(args) -> int:
    if args.demo:
        if _one_shot(args):
            with _demo_root() as root:
                return _status(args, root, demo=True)
        return _demo_tui(args)
    if _one_shot(args):
        return _status(args, args.root, demo=False)
    return _tui(args, args.root)


def _status(args, root: str, demo: bool) -> int:
    from halotune.telemetry.sampler import Sampler
    from halotune.views import text

    fs = RootFS(root)
    sampler = Sampler(fs)
    try:
        if demo:
            # Engine busy % is the growth of a counter between two reads: a demo snapshot is
            # the second of two, one animation step apart, so it shows like a live machine's.
            sampler.sample()
            time.sleep(DEMO_PRIME_S)
        if args.json:
            snap = sampler.sample()
            if args.cross_check:
                _cross_check(snap, root)
            json.dump(snap.to_dict(), sys.stdout, indent=2)
            sys.stdout.write("\n")
            return exitcodes.OK if snap.gpus else exitcodes.NO_AMD_GPU
        if not sampler.devices:
            print(text.no_gpu_message(fs), file=sys.stderr)
            return exitcodes.NO_AMD_GPU
        # --once, or not on a terminal (piped): one readable frame
        snap = sampler.sample()
        if args.cross_check:
            _cross_check(snap, root)
        print(text.render(snap, demo=demo))
        return exitcodes.OK
    finally:
        sampler.close()


def _cross_check(snap, root: str) -> None:
    from halotune.machine.libdrm import read_libdrm
    from halotune.telemetry.crosscheck import compare

    readings = read_libdrm(root)
    if readings is None:
        snap.warnings.append("cross-check skipped: needs root /, /dev/dri and the pyamdgpuinfo "
                             "module (pip install 'halotune[amdgpuinfo]')")
        return
    snap.cross_check = compare(snap, readings)
    for row in snap.cross_check:
        if not row["agree"]:
            snap.warnings.append(f"cross-check {row['card']} {row['field']}: sysfs {row['sysfs']} "
                                 f"vs libdrm {row['libdrm']} {row.get('note', '')}".rstrip())


# --- the TUI -------------------------------------------------------------------------------------

def _same_root(a: str | None, b: str) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


def _tui(args, root: str) -> int:
    """The TUI on this machine (or --root tree): the daemon's stream if one serves this root,
    else direct read-only sampling."""
    from halotune.daemon.client import socket_path
    from halotune.tui.sources import DaemonSource

    label = None if os.path.abspath(root) == "/" else f"tree {root}"
    sock = socket_path(getattr(args, "socket", None))
    hello = DaemonSource.probe(sock) if os.path.exists(sock) else None
    if hello is not None and _same_root(hello.get("root"), root):
        return _run_tui(DaemonSource(sock, args.interval), label)
    return _local_tui(args, root, label)


def _local_tui(args, root: str, label: str | None) -> int:
    from halotune.telemetry.sampler import Sampler
    from halotune.tui.sources import LocalSource
    from halotune.views import text

    fs = RootFS(root)
    sampler = Sampler(fs)
    if not sampler.devices:
        sampler.close()
        print(text.no_gpu_message(fs), file=sys.stderr)
        return exitcodes.NO_AMD_GPU
    source = LocalSource(lambda: sampler.sample().to_dict(), args.interval,
                         profiles=lambda: _profiles(getattr(args, "profiles_dir", None), root),
                         close=sampler.close)
    return _run_tui(source, label)


def _profiles(profiles_dir: str | None, root: str = "/") -> dict:
    """The profile list, as the daemon's `profiles` method gives it."""
    from halotune.tuning.loader import ProfileStore

    profiles, errors = ProfileStore(profiles_dir, root=root).load_all()
    return {"profiles": [{"name": p.name, "description": p.description, "path": p.display_path}
                         for p in profiles], "errors": [str(e) for e in errors]}


def _demo_tui(args) -> int:
    """The simulated Strix Halo, animated, served by a private daemon on a temporary socket."""
    import tempfile

    from halotune.sim.animate import Animator
    from halotune.sim.tree import lay_out
    from halotune.tui.sources import DaemonSource

    with tempfile.TemporaryDirectory(prefix="halotune-demo-") as tmp:
        root = os.path.join(tmp, "machine")
        lay_out(root)
        animator = Animator(root)
        animator.step()
        animator.start()
        try:
            with _quiet_logging(), _private_daemon(args, root, tmp) as sock:
                return _run_tui(DaemonSource(sock, args.interval), "simulated (demo)")
        finally:
            animator.stop()


@contextlib.contextmanager
def _private_daemon(args, root: str, tmp: str):
    """halotune.daemon.service.Daemon in a thread with its own event loop, on tmp/api.sock."""
    import asyncio
    import threading

    from halotune.daemon.config import DaemonConfig
    from halotune.daemon.service import Daemon
    from halotune.tui.sources import DaemonSource

    config = DaemonConfig.model_validate({
        "daemon": {"sample_interval_s": min(1.0, max(0.1, args.interval)),
                   "restore_on_exit": False},        # the tree is thrown away anyway
        "api": {"socket_group": None, "admin_group": None}})
    sock = os.path.join(tmp, "api.sock")
    daemon = Daemon(config, root, os.path.join(tmp, "state"), sock,
                    profiles_dir=getattr(args, "profiles_dir", None))
    failed: list[BaseException] = []

    def serve():
        try:
            asyncio.run(daemon.run())
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            failed.append(e)

    thread = threading.Thread(target=serve, name="halotune-demo-daemon", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15.0
    while DaemonSource.probe(sock, 1.0) is None:
        if failed or not thread.is_alive() or time.monotonic() > deadline:
            daemon.stop()
            raise RuntimeError(f"the demo daemon did not start: {failed[0] if failed else 'timeout'}")
        time.sleep(0.05)
    try:
        yield sock
    finally:
        daemon.stop()
        thread.join(10.0)


@contextlib.contextmanager
def _quiet_logging():
    """Log records would write over the full-screen TUI: hold them while it runs, then print
    the warnings and errors."""
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record):
            held.append(record)

    root_logger = logging.getLogger()
    saved = root_logger.handlers[:]
    hold = Hold(logging.WARNING)
    root_logger.handlers[:] = [hold]
    try:
        yield
    finally:
        root_logger.handlers[:] = saved
        for record in held[-20:]:
            for h in saved:
                h.handle(record)


def _run_tui(source, label: str | None) -> int:
    with _quiet_logging():
        return _start_tui(source, label)


def _start_tui(source, label: str | None) -> int:
    from halotune import tui

    return tui.run(source, label=label)
