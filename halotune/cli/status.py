"""`halotune status`: one snapshot (--json, --once) or a live text view of the machine."""

from __future__ import annotations

import contextlib
import json
import sys
import time

from halotune.cli import exitcodes
from halotune.machine.rootfs import RootFS


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


def run(args) -> int:
    if args.demo:
        with _demo_root() as root:
            return _status(args, root, demo=True)
    return _status(args, args.root, demo=False)


def _status(args, root: str, demo: bool) -> int:
    from halotune.telemetry.sampler import Sampler
    from halotune.views import text

    fs = RootFS(root)
    sampler = Sampler(fs)
    try:
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
        if args.once or not sys.stdout.isatty():
            snap = sampler.sample()
            if args.cross_check:
                _cross_check(snap, root)
            print(text.render(snap, demo=demo))
            return exitcodes.OK
        return _live(sampler, args.interval, demo)
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


def _live(sampler, interval: float, demo: bool) -> int:
    """A plain refreshing view until the Textual TUI lands; Ctrl-C quits."""
    from halotune.views import text

    interval = min(10.0, max(0.1, interval))
    try:
        while True:
            frame = text.render(sampler.sample(), demo=demo)
            sys.stdout.write("\x1b[H\x1b[2J" + frame + "\n\n(Ctrl-C to quit)\n")
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return exitcodes.OK
