#!/usr/bin/env python3
"""Render the README's screenshot of the TUI: the simulated Strix Halo after three minutes of
its LLM pattern (prefill bursts, token generation, idle gaps), as `halotune status --demo`
shows it, at a fixed size and with frozen time, so the SVG only changes when the TUI does.

    python3 tests/tui/make_screenshot.py [docs/screenshot.svg] [--size 160x48]

The machine is stepped deterministically (one simulated second per sample, no clock), sampled
through the real Sampler, and replayed to the TUI; the profile state, the events and the GPU
process list (the simulated machine has no host processes) are example data from tuidata.py.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(HERE))          # tests/, for tui.tuidata

from halotune.machine.rootfs import RootFS  # noqa: E402
from halotune.sim.animate import Animator  # noqa: E402
from halotune.sim.tree import lay_out  # noqa: E402
from halotune.telemetry.sampler import Sampler  # noqa: E402
from halotune.tui.app import HalotuneApp  # noqa: E402
from tui.tuidata import DAEMON, EVENTS, FROZEN_EPOCH, PROCESSES, FakeSource, freeze  # noqa: E402

SECONDS = 180


def stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def simulated_docs(seconds: int = SECONDS) -> list[dict]:
    docs = []
    with tempfile.TemporaryDirectory(prefix="halotune-shot-") as tmp:
        root = os.path.join(tmp, "machine")
        lay_out(root)
        animator = Animator(root, interval=1.0)
        sampler = Sampler(RootFS(root), tdp_interval_s=0.0)
        try:
            for i in range(seconds):
                animator.step(1.0)
                t = FROZEN_EPOCH - seconds + 1 + i
                doc = freeze(sampler.sample().to_dict(), time=stamp(t))
                doc["processes"] = copy.deepcopy(PROCESSES)
                doc["daemon"] = dict(DAEMON)
                docs.append(doc)
        finally:
            sampler.close()
    return docs


async def render(docs: list[dict], size: tuple[int, int]) -> str:
    app = HalotuneApp(FakeSource(docs, events=EVENTS), label="simulated (demo)")
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        return app.export_screenshot(title="halotune status --demo")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=os.path.join(REPO, "docs", "screenshot.svg"))
    ap.add_argument("--size", default="160x48")
    a = ap.parse_args()
    cols, rows = (int(x) for x in a.size.lower().split("x"))
    svg = asyncio.run(render(simulated_docs(), (cols, rows)))
    with open(a.out, "w") as f:
        f.write(svg)
    print(f"wrote {a.out} ({cols}x{rows})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
