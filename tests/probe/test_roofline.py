"""The bandwidth roofline: the peak per machine (derived from the memory clock on Strix Halo,
the labelled default, a measured read stream elsewhere) and the efficiency arithmetic."""

from __future__ import annotations

import pytest

import build_trees as bt
from halotune.machine.rootfs import RootFS
from halotune.probe import roofline
from halotune.probe.roofline import STRIX_HALO_DEFAULT_PEAK, peak_bandwidth, tg_efficiency
from halotune.telemetry.sampler import Sampler

REFERENCE = bt.FIXTURES + "/strix-halo"


def snapshot(root: str):
    s = Sampler(RootFS(root), read_tdp=False)
    try:
        return s.sample()
    finally:
        s.close()


def test_strix_halo_peak_from_the_memory_clock():
    snap = snapshot(REFERENCE)
    assert snap.primary_gpu.gfx_target == "gfx1151" and snap.primary_gpu.mclk_mhz == 1000
    peak, source = peak_bandwidth(snap)
    assert peak == 256_000_000_000                      # 1000 MHz x 8 x 32 bytes
    assert source.startswith("derived: memory clock 1000 MHz")
    # the highest clock seen under load wins over the snapshot's
    peak, _ = peak_bandwidth(snap, mclk_mhz=937.5)
    assert peak == 240_000_000_000


def test_strix_halo_idle_memory_clock_falls_back_to_the_labelled_default():
    snap = snapshot(REFERENCE)
    peak, source = peak_bandwidth(snap, mclk_mhz=400)
    assert peak == STRIX_HALO_DEFAULT_PEAK
    assert source.startswith("default: LPDDR5X-8000 x 256 bit")
    snap.primary_gpu.mclk_mhz = None
    assert peak_bandwidth(snap)[0] == STRIX_HALO_DEFAULT_PEAK


def test_other_machines_are_measured(tmp_path, monkeypatch):
    snap = snapshot(bt.build_navi31(str(tmp_path / "navi31")))
    assert peak_bandwidth(snap, measure=False) == (None, "not measured")
    calls = []

    def fake(threads):
        calls.append(threads)
        return 17.5e9

    monkeypatch.setattr("halotune.probe.bandwidth.read_bandwidth", fake)
    peak, source = peak_bandwidth(snap, threads=2)
    assert peak == 17_500_000_000 and calls == [2]
    assert source == "measured: read-only stream (numpy uint64 max, 2 threads, 256 MiB)"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert peak_bandwidth(snapshot(str(empty)), threads=1)[1].startswith("measured:")


def test_the_read_stream_measures_something_plausible():
    from halotune.probe.bandwidth import read_bandwidth

    bw = read_bandwidth(threads=1, nbytes=16 << 20, seconds=0.05)
    assert 1e8 < bw < 1e13


def test_tg_efficiency_arithmetic():
    # 30 t/s x 443 MB per token against a 17.5 GB/s read stream (the probe notes' M Q4_0)
    assert tg_efficiency(30.0, 443_000_000, 17.5e9) == pytest.approx(0.7594, abs=1e-4)
    assert tg_efficiency(100.0, 1_600_000_000, 256e9) == pytest.approx(0.625)
    assert tg_efficiency(None, 1, 1) is None
    assert tg_efficiency(1.0, 1, None) is None
    assert tg_efficiency(1.0, 0, 1.0) is None


def test_constants_agree():
    assert roofline.LPDDR5X_TRANSFERS_PER_UCLK * roofline.STRIX_HALO_BUS_BYTES * 1000e6 \
        == STRIX_HALO_DEFAULT_PEAK
