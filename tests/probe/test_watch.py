"""TelemetryWatch: sample-and-hold integration over windows, the summary contract, throttle
deltas, a low-priority sampling thread, and power over windows on the simulated machine."""

from __future__ import annotations

import os
import time

import pytest

from halotune.machine.rootfs import RootFS
from halotune.probe.watch import NO_GPU_REASON, Reading, TelemetryWatch

SUMMARY_KEYS = {"samples", "duration_s", "avg_socket_power_w", "avg_gfx_power_w", "max_temp_c",
                "avg_sclk_mhz", "avg_dram_read_bytes_per_s", "avg_dram_write_bytes_per_s",
                "throttle_delta", "power_source", "power_null_reason", "short_window"}


def reading(t, watts, throttle=None, temp=50.0):
    return Reading(t=t, socket_w=watts, gfx_w=watts / 2, temp_c=temp, sclk_mhz=2000.0,
                   mclk_mhz=1000, dram_read=1e9, dram_write=2e8, throttle=throttle)


@pytest.fixture
def replay(tmp_path):
    """A watch fed with scripted readings (no thread): 10 W from t=0, 20 W from 1, 30 W from 2,
    40 W from 3."""
    w = TelemetryWatch(RootFS(str(tmp_path)), simulated=False)
    w.has_gpu = True
    for i, watts in enumerate((10.0, 20.0, 30.0, 40.0)):
        w.add(reading(float(i), watts, throttle={"spl": 100 * i, "thm_core": None}))
    return w


def test_window_average_holds_each_reading_until_the_next(replay):
    assert replay.average_power(0.5, 1.5) == pytest.approx(15.0)
    assert replay.average_power(0.0, 3.0) == pytest.approx(20.0)
    assert replay.average_power(1.2, 1.4) == pytest.approx(20.0)   # inside one interval
    assert replay.average_power(2.5, 2.5) == pytest.approx(30.0)   # zero length: in force
    assert replay.average_power(2.5, 4.0) == pytest.approx((0.5 * 30 + 1.0 * 40) / 1.5)


def test_summary_contract_and_values(replay):
    s = replay.summary(0.5, 2.5)
    assert SUMMARY_KEYS <= set(s)
    assert s["avg_socket_power_w"] == pytest.approx(20.0)
    assert s["avg_gfx_power_w"] == pytest.approx(10.0)
    assert s["samples"] == 2 and s["duration_s"] == pytest.approx(2.0)
    assert s["power_source"] == "sysfs" and s["power_null_reason"] is None
    assert s["short_window"] is True
    assert s["throttle_delta"] == {"spl": 200, "thm_core": None}
    assert s["avg_dram_read_bytes_per_s"] == 1_000_000_000
    assert s["max_temp_c"] == 50.0


def test_simulated_power_is_labelled(tmp_path):
    w = TelemetryWatch(RootFS(str(tmp_path)), simulated=True)
    w.add(reading(0.0, 50.0))
    assert w.power_source() == ("simulated", None)
    assert w.summary(0.0, 6.0)["short_window"] is False


def test_no_gpu_means_null_power_with_a_reason(tmp_path):
    with TelemetryWatch(RootFS(str(tmp_path)), hz=20) as w:
        t0 = w.mark()
        time.sleep(0.2)
        t1 = w.mark()
    s = w.summary(t0, t1)
    assert w.has_gpu is False
    assert s["avg_socket_power_w"] is None and s["power_source"] is None
    assert s["power_null_reason"] == NO_GPU_REASON


@pytest.fixture(scope="module")
def idle_sim(tmp_path_factory):
    from halotune.sim.tree import lay_out

    root = str(tmp_path_factory.mktemp("watchsim") / "root")
    lay_out(root, scenario="idle")
    return root


def test_power_over_windows_on_the_simulated_machine(idle_sim):
    from halotune.sim.animate import Animator

    anim = Animator(idle_sim)
    with TelemetryWatch(RootFS(idle_sim), hz=10) as w:
        a0 = w.mark()
        time.sleep(0.4)
        a1 = w.mark()
        anim.set_load(1.0)
        for _ in range(6):                # 60 simulated seconds: the filters settle
            anim.step(10.0)
        b0 = w.mark()
        time.sleep(0.4)
        b1 = w.mark()
        anim.set_load(0.0)
    idle, busy = w.summary(a0, a1), w.summary(b0, b1)
    assert idle["power_source"] == busy["power_source"] == "simulated"
    assert idle["avg_socket_power_w"] < 20 < 60 < busy["avg_socket_power_w"]
    assert busy["avg_sclk_mhz"] > idle["avg_sclk_mhz"]
    assert idle["samples"] >= 2 and busy["samples"] >= 2
    assert w.priority_lowered is True
    assert w.thread_id is not None and w.thread_id != os.getpid()


def test_samples_at_four_hertz_from_a_low_priority_thread(idle_sim):
    before = os.getpriority(os.PRIO_PROCESS, 0)
    w = TelemetryWatch(RootFS(idle_sim))          # default 4 Hz
    w.start()
    try:
        time.sleep(0.1)
        assert os.getpriority(os.PRIO_PROCESS, w.thread_id) == 19
        assert os.getpriority(os.PRIO_PROCESS, 0) == before     # only that thread
        t0 = w.mark()
        time.sleep(1.3)
        t1 = w.mark()
    finally:
        w.stop()
    n = sum(1 for r in w.readings if t0 <= r.t <= t1)
    assert n >= 4                                  # >= 4 Hz (5 expected in 1.3 s)
