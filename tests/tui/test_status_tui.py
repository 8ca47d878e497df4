"""`halotune status` opening the TUI: --demo (simulated Strix Halo, private daemon, applying a
profile end to end), a daemon serving the root, direct read-only sampling, no GPU. The TUI runs
headless here (the terminal check is bypassed)."""

from __future__ import annotations

import json
import os
import time
import types

import pytest

from halotune.cli import exitcodes, status
from halotune.cli.main import main
from halotune.tui.app import HalotuneApp
from halotune.tui.sources import DaemonSource, LocalSource


async def wait_until(pilot, cond, timeout: float = 15.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.05)


def text(app, panel: str) -> str:
    return app.query_one(f"#{panel}").plain


@pytest.fixture
def tui(monkeypatch):
    """Run `halotune status` with the TUI headless; `script(app, pilot)` drives it."""
    seen = types.SimpleNamespace(source=None, label=None, script=None)

    def run_tui(source, label):
        seen.source, seen.label = source, label
        app = HalotuneApp(source, label=label)

        async def auto(pilot):
            try:
                if seen.script is not None:
                    await seen.script(app, pilot)
            finally:
                app.exit(0)
        app.run(headless=True, size=(120, 40), auto_pilot=auto)
        return app.return_code or 0

    monkeypatch.setattr(status, "_one_shot", lambda args: bool(args.json or args.once))
    monkeypatch.setattr(status, "_start_tui", run_tui)
    monkeypatch.delenv("HALOTUNE_ROOT", raising=False)
    return seen


def test_demo_moves_and_applies_a_profile(tui, monkeypatch):
    """The README's `halotune status --demo`: live values on the simulated machine; applying a
    profile from the TUI changes the header and the power limits."""
    moved = {}

    async def script(app, pilot):
        await wait_until(pilot, lambda: app.frames >= 1 and "daemon connected" in text(app, "header"),
                         what="a first frame from the private daemon")
        assert "Strix Halo / gfx1151" in text(app, "header")
        assert "simulated (demo)" in text(app, "header")
        assert "STAPM 120  fast 140  slow 120 W" in text(app, "power")
        first = (text(app, "gpu"), text(app, "power"))
        await wait_until(pilot, lambda: (text(app, "gpu"), text(app, "power")) != first,
                         what="values that move")
        moved["frames"] = app.frames
        await wait_until(pilot, lambda: len(app.state.profiles) >= 2, what="the profile list")
        names = [p["name"] for p in app.state.profiles]
        await pilot.press("p")
        await pilot.pause(0.2)
        await pilot.press(*["down"] * names.index("quiet"), "enter")
        await pilot.pause(0.2)
        await pilot.press("y")
        await wait_until(pilot, lambda: "profile quiet ✔ verified" in text(app, "header"),
                         what="the header to show the applied profile")
        # The daemon re-reads the TDP limits at most every 5 s.
        await wait_until(pilot, lambda: "STAPM 50  fast 55  slow 50 W" in text(app, "power"),
                         timeout=20, what="the power limits of the profile")
        await wait_until(pilot, lambda: "apply" in text(app, "profiles"), what="the apply event")

    tui.script = script
    assert main(["status", "--demo", "--interval", "0.25"]) == 0
    assert isinstance(tui.source, DaemonSource) and moved["frames"] >= 2


def test_demo_once_and_json_stay_one_shot(capsys):
    assert main(["status", "--demo", "--once"]) == 0
    assert "[simulated Strix Halo]" in capsys.readouterr().out
    assert main(["status", "--demo", "--json"]) == 0
    # The demo's GPU-process panel shows the simulated llama-server (sim/gpuclients.py).
    procs = json.loads(capsys.readouterr().out)["processes"]
    assert [p["name"] for p in procs if p["pid"] >= 4 * 1024 * 1024] == ["llama-server"], procs


def test_without_a_daemon_it_samples_read_only(tui, reference_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "none.sock"))

    async def script(app, pilot):
        await wait_until(pilot, lambda: app.frames >= 1, what="a frame")
        assert "read-only, no daemon" in text(app, "header")
        assert "sclk 2743" in text(app, "gpu")
        await wait_until(pilot, lambda: app.state.profiles, what="profiles (read from disk)")
        await pilot.press("p")
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "Screen"      # no picker: nothing can be applied

    tui.script = script
    assert main(["status", "--root", reference_root]) == 0
    assert isinstance(tui.source, LocalSource) and tui.label == f"tree {reference_root}"


def test_a_daemon_serving_the_root_is_used(tui, tmp_path, monkeypatch):
    from halotune.sim.tree import lay_out

    root = str(tmp_path / "machine")
    lay_out(root)
    args = types.SimpleNamespace(interval=1.0, profiles_dir=None)

    async def script(app, pilot):
        await wait_until(pilot, lambda: "daemon connected" in text(app, "header"), what="connection")

    with status._private_daemon(args, root, str(tmp_path)) as sock:
        monkeypatch.setenv("HALOTUNE_SOCKET", sock)
        tui.script = script
        assert main(["status", "--root", root]) == 0
        assert isinstance(tui.source, DaemonSource)
        # ... but not for another root: that one is sampled directly
        tui.script = None
        assert main(["status", "--root", os.path.join(os.path.dirname(__file__), "..",
                                                      "fixtures", "strix-halo")]) == 0
        assert isinstance(tui.source, LocalSource)


def test_no_gpu_exits_3_without_the_tui(tui, empty_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "none.sock"))
    assert main(["status", "--root", empty_root]) == exitcodes.NO_AMD_GPU
    assert tui.source is None and "no AMD GPU found" in capsys.readouterr().err


def test_log_records_do_not_reach_the_terminal_while_the_tui_runs(tui, reference_root, tmp_path,
                                                                   monkeypatch, caplog):
    import logging
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "none.sock"))
    during = {}

    async def script(app, pilot):
        logging.getLogger("halotune.daemon").warning("held back")
        during["handlers"] = [type(h).__name__ for h in logging.getLogger().handlers]
        during["text"] = caplog.text

    tui.script = script
    assert main(["status", "--root", reference_root]) == 0
    assert during["handlers"] == ["Hold"] and "held back" not in during["text"]
    assert "held back" in caplog.text                     # handed on after the TUI closed
