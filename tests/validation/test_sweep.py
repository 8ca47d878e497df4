"""`halotune sweep` on the simulated machine, probe backend "simulated" (labelled so)."""

import json
import os

import pytest

from halotune.tuning.loader import ProfileStore
from halotune.validation.plot import png_available, scatter
from halotune.validation.sweep import (SweepUsageError, TDP_KEYS, analyse, knee, parse_tdp,
                                       pareto, step_profile)

from .conftest import PROBE_ARGS, differences, machine_state

SWEEP_KEYS = ["schema", "time", "backend", "channel", "tdp", "kept_profile", "watts_source",
              "points", "pareto_w", "knee", "knee_reason", "best_efficiency", "restored",
              "aborted", "model", "fingerprint", "duration_s", "ok", "summary", "warnings"]
POINT_KEYS = ["tdp_w", "watts", "tg_tps", "pp_tps", "depth_tps", "tg_test", "pp_test",
              "depth_test", "avg_power_w", "tg_avg_power_w", "joules_per_token",
              "tokens_per_joule", "tg_efficiency", "tg_cv_percent", "pareto", "knee",
              "best_efficiency", "error", "apply", "settle", "tests", "history"]


def test_parse_tdp():
    assert parse_tdp("45:120:15") == [45, 60, 75, 90, 105, 120]
    assert parse_tdp("45:120:20") == [45, 65, 85, 105, 120]      # STOP always measured
    assert parse_tdp("60:60:5") == [60]
    assert parse_tdp("50.5:52:0.5") == [50.5, 51, 51.5, 52]


@pytest.mark.parametrize("spec, message", [
    ("30:120:15", "--tdp 30:120:15: START 30 W is outside the platform's 45-120 W range"),
    ("45:150:15", "--tdp 45:150:15: STOP 150 W is outside the platform's 45-120 W range"),
    ("45-120", "--tdp 45-120: expected START:STOP:STEP in watts, e.g. 45:120:15"),
    ("45:120:x", "--tdp 45:120:x: STEP 'x' is not a number of watts"),
    ("45:120:0", "--tdp 45:120:0: STEP must be greater than 0 W"),
    ("90:60:15", "--tdp 90:60:15: START (90 W) is above STOP (60 W)"),
    ("45:120:nan", "--tdp 45:120:nan: STEP 'nan' is not a number of watts"),
    ("45:120:1", "--tdp 45:120:1: 76 steps; at most 40"),
])
def test_bad_tdp_refused_naming_flag_and_value(spec, message):
    with pytest.raises(SweepUsageError) as ei:
        parse_tdp(spec)
    assert str(ei.value).startswith(message), str(ei.value)


def test_out_of_range_refused_by_the_cli_before_anything(run_cli, sim_root):
    before = machine_state(sim_root)
    rc, out, err = run_cli("sweep", "--tdp", "30:120:15", "--root", sim_root, *PROBE_ARGS)
    assert rc == 64 and out == ""
    assert "halotune sweep: --tdp 30:120:15: START 30 W is outside the platform's 45-120 W" \
        in err
    assert differences(before, machine_state(sim_root)) == []


def pt(tdp, watts, tg, tpj=None):
    return {"tdp_w": tdp, "watts": watts, "tg_tps": tg, "tokens_per_joule": tpj}


def test_pareto_and_knee_maths():
    pts = [pt(45, 45, 84), pt(60, 60, 91), pt(75, 75, 95), pt(90, 90, 96.5),
           pt(105, 90, 96.5), pt(120, 95, 96.0)]
    front = pareto(pts)
    # 105 measures exactly as 90 (asks a higher limit for nothing); 120 is worse for more
    assert [pts[i]["tdp_w"] for i in front] == [45, 60, 75, 90]
    k, why = knee(pts, front)
    assert pts[k]["tdp_w"] == 60 and "farthest above the straight line" in why
    linear = [pt(w, w, w * 2.0) for w in (45, 60, 75, 90)]
    assert knee(linear, pareto(linear)) == (None, "tokens/s grow about linearly with watts: "
                                                  "no knee")
    assert knee(pts[:2], [0, 1])[0] is None
    summary = analyse([pt(45, 45, 84, 1.9), pt(60, 60, 91, 1.5), pt(75, 75, 95, 1.3)])
    assert summary["best_efficiency"] == {"tdp_w": 45, "tokens_per_joule": 1.9}


def test_step_profile_sets_only_the_tdp_and_keeps_the_active_profile():
    plain = step_profile(60)
    assert plain.values == {k: 60.0 for k in TDP_KEYS}
    assert plain.path.startswith("<") and plain.name == "sweep-60w"
    keep = ProfileStore().load("llm-max")
    kept = step_profile(75, keep)
    assert {k: v for k, v in kept.values.items() if k not in TDP_KEYS} == \
        {k: v for k, v in keep.values.items() if k not in TDP_KEYS}
    assert all(kept.values[k] == 75.0 for k in TDP_KEYS)


def test_sweep_45_120_15(run_cli, sim_root):
    before = machine_state(sim_root)
    rc, out, err = run_cli("sweep", "--tdp", "45:120:15", "--root", sim_root, "--json",
                           *PROBE_ARGS)
    assert rc == 0, err
    assert differences(before, machine_state(sim_root)) == []
    doc = json.loads(out)
    assert list(doc) == SWEEP_KEYS
    assert doc["schema"] == "halotune.sweep/1" and doc["backend"] == "simulated"
    assert doc["tdp"] == {"spec": "45:120:15", "steps_w": [45, 60, 75, 90, 105, 120],
                          "keys": list(TDP_KEYS)}
    pts = doc["points"]
    assert [list(p) for p in pts] == [POINT_KEYS] * 6
    assert doc["watts_source"] == "measured"
    tg = [p["tg_tps"] for p in pts]
    # monotone-ish: never more than 1 % below the previous step, and a real rise overall
    assert all(b >= a * 0.99 for a, b in zip(tg, tg[1:]))
    assert tg[-1] > tg[0] * 1.1
    # it levels off: the last 30 W buy far less than the first 30 W
    assert (tg[-1] - tg[-3]) < 0.25 * (tg[2] - tg[0])
    assert all(p["watts"] <= p["tdp_w"] + 0.5 for p in pts)
    assert doc["pareto_w"] and all(p["pareto"] == (p["tdp_w"] in doc["pareto_w"]) for p in pts)
    assert pts[0]["pareto"] and not pts[-1]["pareto"]       # 120 W buys nothing over 105 W
    assert doc["knee"] is not None and doc["knee"]["tdp_w"] in doc["pareto_w"]
    assert sum(p["knee"] for p in pts) == 1
    assert doc["best_efficiency"]["tdp_w"] == 45
    assert doc["restored"]["action"] == "rolled_back" and doc["restored"]["ok"]
    assert all(p["history"]["run_id"] is not None for p in pts)
    assert doc["ok"] is True
    assert doc["summary"] == (f"6 step(s) 45-120 W, knee at {doc['knee']['tdp_w']:g} W, most "
                              "tokens/J at 45 W; machine rolled back to its original values")

    from halotune.validation.sweep import render

    text = render(doc)
    assert "KNEE" in text and "pareto" in text and "most tokens/J" in text
    assert "tokens/s against watts (measured during tg)" in text
    assert "o step   * Pareto-optimal   K knee   E most tokens per joule" in text
    assert "machine rolled back to its original values" in text


def test_sweep_keeps_and_restores_the_active_profile(run_cli, sim_root, engine):
    store = ProfileStore()
    assert engine.apply(store.load("quiet")).ok
    state = machine_state(sim_root)
    rc, out, err = run_cli("sweep", "--tdp", "60:90:30", "--root", sim_root, "--state-dir",
                           engine.state.path, "--no-record", *PROBE_ARGS)
    assert rc == 0, err
    assert "everything else as quiet" in out and "quiet applied again, as before" in out
    assert engine.verify().profile == "quiet"
    assert differences(state, machine_state(sim_root)) == []
    engine.rollback()


def test_terminal_plot():
    text = scatter([(45, 10, "o"), (60, 20, "*"), (90, 25, "K")], width=20, height=5,
                   title="t")
    lines = text.splitlines()
    assert lines[0] == "t"
    assert lines[1].lstrip().startswith("25 |") and lines[1].endswith("K")
    assert lines[3].lstrip().startswith("17.5 |")
    assert lines[-3].lstrip().startswith("10 |o")
    assert lines[-2].strip().startswith("+" + "-" * 20)
    assert "45" in lines[-1] and "90 W" in lines[-1]
    assert "(nothing measured)" in scatter([], title="x")


@pytest.mark.skipif(png_available(), reason="matplotlib is installed here")
def test_png_without_matplotlib_is_refused_before_measuring(run_cli, sim_root, tmp_path):
    before = machine_state(sim_root)
    png = str(tmp_path / "s.png")
    rc, out, err = run_cli("sweep", "--tdp", "45:120:15", "--png", png, "--root", sim_root,
                           *PROBE_ARGS)
    assert rc == 2
    assert f"--png {png}: matplotlib is not installed (pip install matplotlib)" in err
    assert not os.path.exists(png)
    assert differences(before, machine_state(sim_root)) == []
