"""Animator: ticks under the lock, keeps the files valid and updates them in place."""

from __future__ import annotations

import os
import struct

from halotune.machine.gpu_metrics import decode
from halotune.sim import paths, store
from halotune.sim.animate import LLM_PERIOD_S, Animator, llm_phase
from halotune.sim.ryzenadj import main as ryzenadj

METRICS = f"{paths.DEV}/gpu_metrics"


def test_steps_keep_gpu_metrics_valid(sim_fs):
    animator = Animator(sim_fs.root)
    for _ in range(12):
        animator.step()
        blob = sim_fs.read_bytes(METRICS)
        assert len(blob) == 264
        assert struct.unpack_from("<HBB", blob) == (264, 3, 0)
        m = decode(blob)
        assert not m.warnings
        assert m.raw["stapm_power_limit"] is None  # never written by the driver: 0xFFFF
    assert sim_fs.read_int(f"{paths.DEV}/gpu_busy_percent") == m.raw["average_gfx_activity"]
    assert sim_fs.read_int(f"{paths.HWMON}/temp1_input") % 1000 == 0
    assert sim_fs.read_int(f"{paths.HWMON}/freq1_input") == m.gfxclk_mhz * 1_000_000
    assert store.load_state(sim_fs.root)["t_s"] == 6.0


def test_a_held_descriptor_sees_new_values(sim_fs):
    held = {rel: os.open(sim_fs.path(rel), os.O_RDONLY) for rel in (
        METRICS, f"{paths.HWMON}/power1_average", "proc/stat",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")}
    try:
        before = {rel: os.pread(fd, 65536, 0) for rel, fd in held.items()}
        Animator(sim_fs.root).step(2.0)
        after = {rel: os.pread(fd, 65536, 0) for rel, fd in held.items()}
    finally:
        for fd in held.values():
            os.close(fd)
    for rel in held:
        assert after[rel] != before[rel], rel
        assert after[rel] == sim_fs.read_bytes(rel, 65536), rel


def test_power_settles_under_limits_set_by_ryzenadj(sim_fs, capsys):
    assert ryzenadj(["--stapm-limit=70000", "--fast-limit=80000", "--slow-limit=75000"],
                    sim_fs.root) == 0
    animator = Animator(sim_fs.root)
    animator.set_load(1.0)
    for _ in range(40):
        animator.step(5.0)
    for _ in range(4):
        animator.step()
        m = decode(sim_fs.read_bytes(METRICS))
        assert m.socket_power_w <= 70.0
        assert sim_fs.read_int(f"{paths.HWMON}/power1_average") <= 70_000_000
    assert m.socket_power_w > 65.0
    assert "Sucessfully set stapm_limit to 70000" in capsys.readouterr().out


def test_load_pattern_and_overrides(sim_fs):
    assert llm_phase(0.0)[0] == "prefill"
    assert llm_phase(10.0)[0] == "decode"
    assert llm_phase(LLM_PERIOD_S - 1)[0] == "idle"
    assert llm_phase(LLM_PERIOD_S + 1)[0] == "prefill"
    animator = Animator(sim_fs.root)
    animator.set_load(0.0)
    for _ in range(10):
        animator.step(1.0)
    assert sim_fs.read_int(f"{paths.DEV}/gpu_busy_percent") == 0
    animator.set_dram_saturated(True)
    animator.set_load(None)
    animator.step()
    state = store.load_state(sim_fs.root)
    assert state["workload"]["pattern"] == "llm"
    assert decode(sim_fs.read_bytes(METRICS)).dram_reads_saturated  # 65535 reads as pegged
    assert state["smu"]["metrics"]["average_dram_reads"] == 65535


def test_thread_runs_until_stopped(sim_root):
    animator = Animator(sim_root, interval=0.01)
    thread = animator.start()
    try:
        while store.load_state(sim_root)["t_s"] < 0.05:
            thread.join(0.01)
            assert thread.is_alive()
    finally:
        animator.stop(timeout=2)
    assert not thread.is_alive()


def test_writes_interleave_with_a_running_animator(sim_fs):
    level = f"{paths.DEV}/power_dpm_force_performance_level"
    animator = Animator(sim_fs.root, interval=0.005)
    thread = animator.start()
    try:
        for word in ("manual", "high", "low", "auto", "high") * 4:
            sim_fs.write_text(level, word)
        while store.load_state(sim_fs.root)["t_s"] == 0:  # let it tick at least once
            thread.join(0.005)
            assert thread.is_alive()
    finally:
        animator.stop(timeout=2)
    state = store.load_state(sim_fs.root)
    assert state["gpu"]["perf_level"] == "high"  # no write was lost to an animator save
    assert sim_fs.read_text(level) == "high"
    assert len(store.read_log(sim_fs.root)) == 20
