"""`history compare A B`: fingerprint differences highlighted, throughput and energy deltas."""

from __future__ import annotations

import pytest

from halotune.history.compare import compare_runs, render_compare
from halotune.history.db import HistoryDB

from .helpers import MODEL, cli, fingerprint, make_tests


@pytest.fixture
def two_runs(db_path):
    with HistoryDB(db_path) as db:
        db.add_run("bench", make_tests(pp=533.06, tg=150.87), fingerprint=fingerprint(),
                   model=MODEL, backend="CPU",
                   telemetry={"avg_socket_power_w": 98.4, "max_temp_c": 64.8})
        db.add_run("bench", make_tests(pp=426.45, tg=120.70), model=MODEL, backend="CPU",
                   fingerprint=fingerprint(**{"tdp.stapm_w": 85.0, "platform_profile": "balanced",
                                              "kernel_cmdline": "BOOT_IMAGE=/boot/vmlinuz ro "
                                              "quiet amd_iommu=pt ttm.pages_limit=28835840"}),
                   telemetry={"avg_socket_power_w": 84.9, "max_temp_c": 58.1}, label="85 W")
    return db_path


def test_compare_structure(two_runs):
    with HistoryDB(two_runs, readonly=True) as db:
        cmp = compare_runs(db.get_run(1), db.get_run(2))
    changes = {c["key"]: (c["a"], c["b"]) for c in cmp["fingerprint_changes"]}
    assert set(changes) == {"tdp.stapm_w", "platform_profile", "kernel_cmdline"}
    assert changes["tdp.stapm_w"] == (None, 85.0)       # the reference tree has no ryzenadj
    assert sum(r["changed"] for r in cmp["fingerprint"]) == 3
    pp, tg = cmp["tests"]
    assert pp["name"] == "pp64" and tg["name"] == "tg16"
    assert tg["tokens_per_s_delta_percent"] == pytest.approx(-20.0, abs=0.01)
    assert tg["a"]["joules_per_token"] == pytest.approx(98.4 / 150.87, abs=1e-4)
    assert tg["joules_per_token_delta_percent"] == pytest.approx(
        (98.4 / 120.70 - 98.4 / 150.87) / (98.4 / 150.87) * 100, abs=0.05)
    tel = {r["metric"]: r for r in cmp["telemetry"]}
    assert tel["avg_socket_power_w"]["delta"] == pytest.approx(-13.5)


def test_text_marks_changed_fields_and_only_those(two_runs):
    with HistoryDB(two_runs, readonly=True) as db:
        text = render_compare(compare_runs(db.get_run(1), db.get_run(2)))
    marked = [ln.split()[1] for ln in text.splitlines() if ln.startswith("* ")]
    assert marked == ["kernel_cmdline", "platform_profile", "tdp.stapm_w"]
    assert any(ln.startswith("  kernel_release ") for ln in text.splitlines())
    # the long command line is summarised word by word
    assert "-amd_iommu=off" in text and "+amd_iommu=pt" in text
    tg = next(ln for ln in text.splitlines() if ln.startswith("tg16"))
    assert "150.87" in tg and "120.70" in tg and "-20.0 %" in tg


def test_text_styles_changed_lines():
    a = {"ref": "1", "kind": "bench", "created_at": "t", "tests": [], "fingerprint": {"k": 1, "j": 2}}
    b = dict(a, ref="2", fingerprint={"k": 2, "j": 2})
    text = render_compare(compare_runs(a, b), style=lambda t, kind: f"<b>{t}</b>")
    assert "<b>* k" in text and "<b>  j" not in text


def test_compare_command(two_runs):
    r = cli("history", "compare", "--db", two_runs, "@previous", "@latest")
    assert r.rc == 0, r
    assert "3 fields changed" in r.out
    assert any(ln.startswith("* tdp.stapm_w") for ln in r.out.splitlines())
    r = cli("history", "compare", "--db", two_runs, "1", "2", "--json")
    doc = r.json()
    assert doc["schema"] == "halotune.history/1"
    assert doc["compare"]["a"]["ref"] == "1" and doc["compare"]["b"]["label"] == "85 W"
    r = cli("history", "compare", "--db", two_runs, "1", "7")
    assert r.rc == 2 and "no run 7" in r.err
