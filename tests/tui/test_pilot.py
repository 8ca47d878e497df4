"""The TUI driven through Textual's pilot: keys, dialogs, the mouse, a disconnected or absent
daemon, missing fields, another GPU, narrow and wide terminals."""

from __future__ import annotations

import copy

import pytest

from halotune.tui.app import HalotuneApp
from halotune.tui.screens import ConfirmDialog, HelpScreen, ProfilePicker
from halotune.tui.sources import DaemonSource, SourceError

from .tuidata import EVENTS, FakeSource, later, synthetic_history



def text(app, panel_id: str) -> str:
    return app.query_one(f"#{panel_id}").plain


class Notes:
    """Records app.notify calls (and still shows them)."""

    def __init__(self, app):
        self.items: list[dict] = []
        self._notify = app.notify
        app.notify = self

    def __call__(self, message, *, title="", severity="information", timeout=None, **kw):
        self.items.append({"message": str(message), "title": title, "severity": severity})
        return self._notify(message, title=title, severity=severity, timeout=timeout, **kw)

    def text(self) -> str:
        return "\n".join(f"{n['title']}: {n['message']}" for n in self.items)


async def settle(pilot, app):
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def run(coro):
    import asyncio
    return asyncio.run(coro)


def make_app(docs, **kw):
    source = FakeSource(docs, **kw)
    return HalotuneApp(source), source


# --- the main screen -------------------------------------------------------------------------

def test_main_screen_shows_the_reference(reference_doc):
    app, source = make_app([reference_doc], history=synthetic_history(), events=EVENTS)

    async def go():
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, app)
            header = text(app, "header")
            assert "Strix Halo / gfx1151" in header and "kernel 6.17.0-5-generic" in header
            assert "profile llm-max ✔ verified" in header and "daemon connected" in header
            assert "12:00:00Z" in header
            gpu = text(app, "gpu")
            assert "98 %" in gpu and "sclk 2743 / 2900 MHz" in gpu and "edge 62.4 °C" in gpu
            assert "mclk 1000 MHz" in gpu and "fclk 1960 MHz" in gpu and "level auto" in gpu
            power = text(app, "power")
            assert "98.4 W" in power and "limits N/A: ryzenadj not found" in power
            assert "platform" not in power and "profile performance" in power
            mem = text(app, "memory")
            assert "161 MiB / 512 MiB" in mem and "57.6 GiB / 110 GiB" in mem
            assert "ttm ceiling 110 GiB" in mem and "GPU-usable 110 GiB" in mem
            bw = text(app, "bandwidth")
            assert "48.2 GB/s" in bw and "9.1 GB/s" in bw and "of 256 GB/s peak" in bw
            cpu = text(app, "cpu")
            assert "16 cores C0" in cpu and "powersave / balance_performance" in cpu
            procs = text(app, "processes")
            assert "llama-server" in procs and "57.0G" in procs and "KFD" in procs
            assert "96" in procs
            hist = text(app, "history")
            assert "98 W" in hist and any(c in hist for c in "▁▂▃▄▅▆▇█")
            prof = text(app, "profiles")
            assert "● llm-max" in prof and "quiet" in prof and "validate: press v" in prof
            assert "process llama-server started" in prof
            assert ("history", 300) in source.calls
    run(go())


def test_values_move_and_throttling_shows(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, app)
            assert "needs a second sample" in text(app, "power")
            source.push("snapshot", later(reference_doc, 1, busy_percent=42.0, sclk_mhz=1500))
            await settle(pilot, app)
            assert "42 %" in text(app, "gpu") and "sclk 1500" in text(app, "gpu")
            assert "throttle SPL" in text(app, "power")
            assert "12:00:01Z" in text(app, "header")
            assert app.frames == 2
    run(go())


def test_waiting_before_the_first_snapshot():
    app, _ = make_app([])

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            assert "waiting for the first sample" in text(app, "gpu")
            assert "daemon connected" in text(app, "header")
    run(go())


# --- keys and dialogs --------------------------------------------------------------------------

def test_help_opens_and_closes(reference_doc):
    app, _ = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
    run(go())


def test_q_quits_and_stops_the_source(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("q")
            await pilot.pause()
    run(go())
    assert source.stopped and app.return_code in (0, None)


def test_apply_a_profile_changes_header_and_limits(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            assert "limits N/A" in text(app, "power")
            await pilot.press("p")
            await pilot.pause()
            assert isinstance(app.screen, ProfilePicker)
            # llm-max (the active profile) is highlighted; quiet is the next one
            await pilot.press("down", "enter")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog)
            assert "quiet" in str(app.screen.message)
            await pilot.press("y")
            await settle(pilot, app)
            assert ("apply", "quiet") in source.calls
            assert "profile quiet ✔ verified" in text(app, "header")
            power = text(app, "power")
            assert "STAPM 50  fast 55  slow 50 W" in power and "/ 50 W" in power
            assert "quiet applied" in notes.text()
    run(go())


def test_cancel_applies_nothing(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            await settle(pilot, app)
            await pilot.press("p")
            await pilot.pause()
            await pilot.press("escape")                # leave the picker
            await pilot.pause()
            await pilot.press("p", "enter")            # pick, then say no
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("n")
            await settle(pilot, app)
    run(go())
    assert not [c for c in source.calls if c[0] == "apply"]


def test_apply_refused_without_permission(reference_doc):
    err = SourceError("EPERM", "apply needs root (uid 1000 (alice), pid 77)")
    app, source = make_app([reference_doc], can_mutate=False, apply_error=err)

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            assert "read-only for this user" in text(app, "header")
            await pilot.press("p", "enter")
            await pilot.pause()
            assert "may not make changes" in str(app.screen.message)
            await pilot.press("y")
            await settle(pilot, app)
            assert notes.items[-1]["severity"] == "error"
            assert "Refused: no permission: apply needs root" in notes.text()
            assert "profile llm-max" in text(app, "header")        # unchanged
            assert app.is_running
    run(go())


def test_rollback_asks_then_calls_the_daemon(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await settle(pilot, app)
            assert ("rollback",) in source.calls
            assert "original values restored" in notes.text()
    run(go())


def test_validate_runs_through_the_daemon(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            await pilot.press("v")
            await settle(pilot, app)
            assert ("validate",) in source.calls
            assert "llm-efficient pass" in notes.text() and "rolled back" in notes.text()
    run(go())


# --- the mouse -----------------------------------------------------------------------------

def test_click_a_profile_then_the_apply_button(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, app)
            # the profiles panel: border row, then one line per profile ("quiet" is the 4th)
            await pilot.click("#profiles", offset=(4, 4))
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog) and "quiet" in str(app.screen.message)
            await pilot.click("#yes")
            await settle(pilot, app)
            assert ("apply", "quiet") in source.calls
    run(go())


def test_footer_keys_are_clickable(reference_doc):
    app, _ = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            footer_keys = [w for w in app.query("FooterKey") if "help" in str(w.description)]
            assert footer_keys
            await pilot.click(footer_keys[0])
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
    run(go())


# --- without a daemon --------------------------------------------------------------------------

def test_read_only_without_a_daemon(reference_doc):
    doc = dict(reference_doc)
    del doc["daemon"]
    app, source = make_app([doc], mode="local", connected=False, can_mutate=False)

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            assert "read-only, no daemon" in text(app, "header")
            assert "profile unknown (no daemon)" in text(app, "header")
            await pilot.press("p")
            await pilot.pause()
            assert not isinstance(app.screen, ProfilePicker)
            await pilot.press("r")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmDialog)
            assert "read-only, no daemon" in notes.text()
            assert "quiet" in text(app, "profiles")           # still listed
    run(go())
    assert not [c for c in source.calls if c[0] in ("apply", "rollback")]


def test_daemon_disconnect_and_reconnect(reference_doc):
    app, source = make_app([reference_doc], history=synthetic_history(), events=EVENTS)

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            source.push("state", {"mode": "daemon", "connected": False,
                                  "detail": "daemon connection lost: EOF"})
            await settle(pilot, app)
            assert "daemon disconnected, retrying" in text(app, "header")
            assert "profile N/A" in text(app, "header")    # the stale daemon info is not shown
            await pilot.press("p")
            await pilot.pause()
            assert not isinstance(app.screen, ProfilePicker)
            assert "not connected" in notes.text()
            source.push("state", {"mode": "daemon", "connected": True, "detail": "connected",
                                  "can_mutate": True, "interval_s": 1.0})
            source.push("snapshot", later(reference_doc, 2))
            await settle(pilot, app)
            assert "daemon connected" in text(app, "header")
            assert "restored" in notes.text()
            # events fetched again after the reconnection are not shown twice
            assert text(app, "profiles").count("process llama-server started") == 1
    run(go())


def test_daemon_source_without_a_daemon_reports_disconnected(tmp_path, reference_doc):
    app = HalotuneApp(DaemonSource(str(tmp_path / "nobody.sock")))

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(50):
                await pilot.pause(0.05)
                if "disconnected" in text(app, "header"):
                    break
            assert "daemon disconnected, retrying" in text(app, "header")
            assert "waiting for the first sample" in text(app, "gpu")
    run(go())


# --- odd data ------------------------------------------------------------------------------

def test_missing_fields_are_shown_as_na(reference_doc):
    doc = {"schema": "halotune.status/1", "time": "2026-01-15T12:00:00.000Z",
           "gpus": [{"card": "card0", "device_id": "0x1586", "gfx_target": None, "name": "?"}],
           "memory": {}, "power": {}, "cpu": {}, "npu": {}}
    app, _ = make_app([doc], history={"fields": ["t"], "samples": [[1.0]]})

    async def go():
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, app)
            for panel in ("gpu", "power", "memory", "bandwidth", "cpu", "history"):
                assert "N/A" in text(app, panel), panel
            assert "kernel N/A" in text(app, "header")
            assert "does not report processes" in text(app, "processes")
    run(go())


def test_empty_and_gpu_less_snapshots(reference_doc):
    app, source = make_app([{}])

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            assert "no AMD GPU" in text(app, "header") and "no AMD GPU" in text(app, "gpu")
            source.push("snapshot", {"time": "not a time", "gpus": [], "processes": []})
            await settle(pilot, app)
            assert "no AMD GPU" in text(app, "gpu")
    run(go())


def test_a_gpu_that_is_not_a_strix_halo(navi31_root):
    from .tuidata import freeze, sample
    doc = freeze(sample(navi31_root))
    app, _ = make_app([doc])

    async def go():
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, app)
            header = text(app, "header")
            assert doc["gpus"][0]["name"] in header and "(not a Strix Halo)" in header
            assert "no DRAM counters" in text(app, "bandwidth")
            assert "dedicated VRAM" in text(app, "memory")
            assert "N/A" in text(app, "power")
    run(go())


# --- terminal sizes ------------------------------------------------------------------------

@pytest.mark.parametrize("size, wide", [((80, 24), False), ((119, 40), False), ((160, 48), True)])
def test_layout_follows_the_width(reference_doc, size, wide):
    app, _ = make_app([reference_doc])

    async def go():
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            assert app.query_one("#grid").has_class("-wide") is wide
            order = [w.id for w in app.query_one("#grid").children]
            assert order.index("profiles") == (2 if wide else 7)
            for panel in ("gpu", "power", "memory", "bandwidth"):
                region = app.query_one(f"#{panel}").region
                assert region.height > 2 and region.bottom <= size[1] - 1, panel
    run(go())


def screen_text(app) -> str:
    return "\n".join("".join(seg.text for seg in strip)
                     for strip in app.screen._compositor.render_strips())


def test_narrow_terminal_shows_the_key_values(reference_doc):
    app, _ = make_app([reference_doc], history=synthetic_history())

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            screen = screen_text(app)
            for value in ("Strix Halo / gfx1151", "profile llm-max", "daemon connected",
                          "98 %", "sclk 2743 / 2900 MHz", "edge 62.4 °C", "98.4 W",
                          "161 MiB / 512 MiB", "57.6 GiB / 110 GiB", "48.2 GB/s",
                          "busy 8.8 %", "powersave / balance_performance", "power", "temp",
                          "apply profile", "quit"):
                assert value in screen, value
            for panel in app.query("Panel"):       # lines longer than a panel end in "…"
                for line in panel.plain.splitlines():
                    assert len(line) <= panel.content_size.width, (panel.id, line)
            await pilot.resize_terminal(160, 48)
            await settle(pilot, app)
            assert app.query_one("#grid").has_class("-wide")
    run(go())


def test_unexpected_data_does_not_take_the_screen_down(reference_doc):
    doc = copy.deepcopy(reference_doc)
    doc["gpus"][0]["busy_percent"] = "lots"
    doc["processes"] = [{"pid": "x", "vram_bytes": "many"}]
    app, _ = make_app([doc])

    async def go():
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, app)
            assert "unexpected data" in text(app, "gpu")
            assert "unexpected data" in text(app, "processes")
            assert "98.4 W" in text(app, "power")            # the other panels draw
    run(go())


def test_main_keys_wait_while_a_dialog_is_open(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            await settle(pilot, app)
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("p", "q", "v")
            await settle(pilot, app)
            assert isinstance(app.screen, ConfirmDialog) and len(app.screen_stack) == 2
            assert app.is_running and ("validate",) not in source.calls
            await pilot.press("escape")
            await pilot.pause()
            assert len(app.screen_stack) == 1
    run(go())


def test_drift_and_errors_from_the_daemon_are_announced(reference_doc):
    app, source = make_app([reference_doc])

    async def go():
        async with app.run_test(size=(100, 40)) as pilot:
            notes = Notes(app)
            await settle(pilot, app)
            source.push("event", {"seq": 9, "time": "2026-01-15T12:00:02.000Z", "kind": "drift",
                                  "message": "power.stapm_w: 120 W, expected 50 W"})
            await settle(pilot, app)
            assert notes.items[-1]["severity"] == "warning" and "stapm" in notes.text()
            assert "drift" in text(app, "profiles") and "expected 50 W" in text(app, "profiles")
    run(go())
