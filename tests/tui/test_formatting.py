"""Formatting helpers and the sparkline history of the TUI."""

from __future__ import annotations

import pytest

from halotune.tui import formatting as f
from halotune.tui.history import History, row_of
from halotune.tui.state import ViewState


def test_na_and_units():
    assert f.num(None) == "N/A" and f.num(3) == "3" and f.num(2.345, 1, " W") == "2.3 W"
    assert f.size(None) == "N/A" and f.size(536870912) == "512 MiB"
    assert f.size(118111600640) == "110 GiB" and f.size(61953511424) == "57.7 GiB"
    assert f.short_size(150994944) == "144M" and f.short_size(0) == "0B"
    assert f.rate(None) == "N/A" and f.rate(48213000000) == "48.2 GB/s"


@pytest.mark.parametrize("value, style", [(None, f.DIM), (60.0, f.OK), (85.0, f.WARN),
                                          (99.0, f.BAD)])
def test_temperature_thresholds(value, style):
    assert f.level(value, f.TEMP_EDGE_C) == style


def test_bar_is_exactly_its_width():
    for frac in (None, 0.0, 0.013, 0.5, 0.999, 1.0, 1.7):
        for width in (0, 1, 7, 30):
            assert len(f.bar(frac, width)) == width
    assert f.bar(0.5, 4).plain == "██░░"
    assert f.bar(None, 3).plain == "···"


def test_spark_and_time():
    assert f.spark([0, 50, 100, None, 200], 0, 100) == "▁▅█ █"
    assert f.parse_time("2026-01-15T12:00:00.000Z") == 1768478400.0
    assert f.parse_time("yesterday") is None and f.clock(None) == "N/A"
    assert f.clock("2026-01-15T12:34:56.789Z") == "12:34:56Z"


def test_machine_names():
    assert f.machine_name(None) == ("no AMD GPU", False)
    assert f.machine_name({"gfx_target": "gfx1151"}) == ("Strix Halo", True)
    assert f.machine_name({"device_id": "0x744c", "name": "Radeon RX 7900 XTX"}) == \
        ("Radeon RX 7900 XTX", False)
    doc = {"gpus": [{"card": "card0", "is_apu": False}, {"card": "card1", "gfx_target": "gfx1151"}]}
    assert f.primary_gpu(doc)["card"] == "card1" and f.primary_gpu({}) is None


def doc_at(t: int, power: float, busy: float = 50.0) -> dict:
    return {"time": f"2026-01-15T12:{t // 60:02d}:{t % 60:02d}.000Z",
            "power": {"socket_power_w": power},
            "gpus": [{"gfx_target": "gfx1151", "busy_percent": busy, "edge_temp_c": 60.0,
                      "dram_read_bytes_per_s": 10, "dram_write_bytes_per_s": None}]}


def test_history_columns_are_time_buckets():
    h = History()
    for t in range(0, 30):
        h.add(doc_at(t, power=float(t)))
    h.add(doc_at(10, power=999.0))                # out of order: ignored
    cols = h.series("power_w", 3, step_s=10)
    assert cols == [4.5, 14.5, 24.5]
    assert h.series("power_w", 5, step_s=10)[:2] == [None, None]
    assert h.latest("dram_bps") == 10 and h.peak("power_w") == 29.0
    assert row_of({"time": "bad"}) is None


def test_history_prefill_goes_before_the_stream():
    h = History()
    h.add(doc_at(100, power=7.0))
    base = 1768478400.0
    h.prefill({"fields": ["t", "socket_power_w", "busy_percent"],
               "samples": [[base + 99, 5.0, 1.0], [base + 98, 4.0, 1.0], [base + 100, 6.0, 1.0]]})
    assert [r[1] for r in h.rows] == [4.0, 5.0, 7.0]
    h.prefill(None)
    h.prefill({"fields": ["x"], "samples": [[1]]})
    assert len(h.rows) == 3


def test_events_are_kept_once_and_in_order():
    st = ViewState()
    assert st.add_event({"seq": 2, "kind": "apply"})
    assert st.add_event({"seq": 1, "kind": "start"})
    assert not st.add_event({"seq": 2, "kind": "apply"})
    assert st.add_event({"kind": "error", "message": "local"})
    assert [e.get("seq") for e in st.events] == [1, 2, None]


def test_throttle_needs_two_samples():
    st = ViewState()
    g = {"gfx_target": "gfx1151", "throttle_residency": {"spl": 5, "prochot": 0}}
    st.take_snapshot({"gpus": [g]})
    assert st.throttle_active is None
    st.take_snapshot({"gpus": [dict(g, throttle_residency={"spl": 9, "prochot": 0})]})
    assert st.throttle_active == ["spl"]
    st.take_snapshot({"gpus": [dict(g, throttle_residency=None)]})
    assert st.throttle_active is None


def test_the_tui_never_imports_the_machine_layer():
    """halotune/tui renders snapshot dicts only: no halotune.machine, telemetry, sim, daemon."""
    import ast
    import pathlib

    import halotune.tui as tui
    for path in pathlib.Path(tui.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("halotune.machine", "halotune.telemetry",
                                            "halotune.sim", "halotune.daemon", "halotune.tuning")), \
                    f"{path}: imports {name}"
