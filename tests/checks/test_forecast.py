"""The token-generation forecast: bytes per token from the GGUF (dense and MoE) against the
peak bandwidth, scaled by the measured or the stated default efficiency."""

from __future__ import annotations

import pytest

from halotune.checks import forecast as fc
from halotune.checks.thresholds import load_thresholds
from halotune.machine.rootfs import RootFS
from halotune.probe.gguf_info import bytes_per_token, read_gguf
from halotune.telemetry.sampler import Sampler

from .conftest import write_gguf


@pytest.fixture
def th():
    return load_thresholds()


@pytest.fixture
def snap(idle_root):
    s = Sampler(RootFS(idle_root))
    try:
        yield s.sample()
    finally:
        s.close()


def test_dense_forecast_uses_default_range(tmp_path, th, snap):
    info = read_gguf(write_gguf(str(tmp_path / "d.gguf"), n_embd=128, n_ff=256)[0])
    f = fc.forecast(info, snap, th, root=str(tmp_path))
    bpt = bytes_per_token(info)
    assert f["bytes_per_token"] == bpt
    assert f["model"]["moe"] is False
    assert f["efficiency"] == [0.55, 0.80] and f["efficiency_measured"] is None
    assert "default assumption" in f["efficiency_source"]
    peak = f["peak_bandwidth_bytes_per_s"]
    assert peak == 256_000_000_000 and "1000 MHz" in f["peak_source"]
    assert f["tg_tokens_per_s"] == [round(0.55 * peak / bpt, 2), round(0.80 * peak / bpt, 2)]
    assert f["tg_tokens_per_s"][0] < f["tg_tokens_per_s_mid"] < f["tg_tokens_per_s"][1]


def test_moe_reads_only_the_used_experts(tmp_path, th, snap):
    dense = read_gguf(write_gguf(str(tmp_path / "d.gguf"), n_embd=128, n_ff=256,
                                 experts=(8, 8))[0])
    moe = read_gguf(write_gguf(str(tmp_path / "m.gguf"), n_embd=128, n_ff=256, experts=(8, 2))[0])
    assert dense.size_bytes == moe.size_bytes
    fd, fm = fc.forecast(dense, snap, th), fc.forecast(moe, snap, th)
    assert fm["model"]["moe"] and fm["model"]["expert_used_count"] == 2
    assert fm["bytes_per_token"] < fd["bytes_per_token"] < moe.size_bytes + 1
    assert fm["tg_tokens_per_s"][0] > fd["tg_tokens_per_s"][0]


def test_measured_efficiency_from_history(tmp_path, th, snap):
    from halotune.history import HistoryDB

    path = str(tmp_path / "history.db")
    with HistoryDB(path) as db:
        db.add_run("probe", [{"name": "tg128", "tokens_per_s": 50.0}], fingerprint={},
                   result={"roofline": {"tg_efficiency": 0.7}})
    info = read_gguf(write_gguf(str(tmp_path / "d.gguf"))[0])
    f = fc.forecast(info, snap, th, history=path)
    assert f["efficiency_measured"] == 0.7
    assert f["efficiency"] == [round(0.7 * 0.92, 4), round(0.7 * 1.08, 4)]
    assert "measured on this machine" in f["efficiency_source"]


def test_state_database_of_the_root_is_found(idle_root, tmp_path, th, snap):
    from halotune.history import HistoryDB
    from halotune.history.record import state_db_path

    with HistoryDB(state_db_path(idle_root)) as db:
        db.add_run("probe", [], fingerprint={}, result={"roofline": {"tg_efficiency": 0.64}})
    assert fc.measured_efficiency(None, idle_root) == 0.64


def test_no_history_means_default(tmp_path):
    assert fc.measured_efficiency(None, str(tmp_path)) is None
    assert fc.measured_efficiency(str(tmp_path / "absent.db")) is None
    (tmp_path / "garbage.db").write_text("not a database")
    assert fc.measured_efficiency(str(tmp_path / "garbage.db")) is None


def test_peak_without_snapshot_is_the_labelled_default(th):
    peak, source = fc.peak_bandwidth(None, th)
    assert peak == 256_000_000_000 and "256 GB/s" in source


def test_forecast_in_preflight_report(idle_root, tmp_path):
    from halotune.checks.preflight import run_preflight

    path = write_gguf(str(tmp_path / "d.gguf"))[0]
    r = run_preflight(RootFS(idle_root), model=path, window_s=0.02,
                      state_dir=str(tmp_path / "state"), history=str(tmp_path / "none.db"))
    f = r["forecast"]
    assert f["model"]["paths"] == [path] and f["method"].startswith("tg tokens/s")
    assert r["ctx"] == 4096
