"""physics.tick: a pure, deterministic model that obeys clock ranges and power limits."""

from __future__ import annotations

import copy

import pytest

from halotune.sim import physics, publish, scenarios


def run(state: dict, seconds: float, dt: float = 1.0) -> dict:
    for _ in range(round(seconds / dt)):
        physics.tick(state, dt)
    return state["smu"]["metrics"]


@pytest.fixture
def busy() -> dict:
    state = scenarios.reference_state()
    state["workload"].update(pattern="fixed", gpu=1.0, cpu=1.0, dram_mbps=48_000)
    return state


def test_tick_is_deterministic():
    a, b = scenarios.reference_state(), scenarios.reference_state()
    run(a, 30, 0.5)
    run(b, 30, 0.5)
    assert a == b
    with pytest.raises(ValueError):
        physics.tick(a, 0)


@pytest.mark.parametrize("limits", [
    {"stapm_mw": 60_000, "fast_mw": 70_000, "slow_mw": 65_000},
    {"stapm_mw": 90_000, "fast_mw": 50_000, "slow_mw": 90_000},   # fast PPT binds
    {"stapm_mw": 120_000, "fast_mw": 140_000, "slow_mw": 75_000},  # slow PPT binds
])
def test_socket_power_settles_within_the_limits(busy, limits):
    busy["limits"].update(limits)
    cap = min(limits["stapm_mw"], limits["fast_mw"], limits["slow_mw"])
    run(busy, 120)
    for _ in range(30):  # and stays there
        physics.tick(busy, 0.5)
        m = busy["smu"]["metrics"]
        assert m["average_socket_power"] <= cap
        assert busy["smu"]["p_fast_mw"] <= limits["fast_mw"]
    assert m["average_socket_power"] >= cap - 1000  # limited, not collapsed
    assert busy["smu"]["limiter"] is not None


def test_throttling_advances_the_binding_counter(busy):
    before = copy.deepcopy(busy["smu"]["metrics"])
    busy["limits"].update(stapm_mw=50_000)
    m = run(busy, 10)
    assert m["throttle_residency_spl"] == before["throttle_residency_spl"] + 10 * 100
    assert m["throttle_residency_fppt"] == before["throttle_residency_fppt"]
    assert m["average_gfxclk_frequency"] < 2900


def test_unlimited_load_reaches_full_clock(busy):
    m = run(busy, 20)
    assert m["average_gfxclk_frequency"] == 2900
    assert m["average_gfx_activity"] == 100
    assert busy["smu"]["limiter"] is None
    assert m["average_socket_power"] < busy["limits"]["stapm_mw"]


def test_clock_ranges_from_levels_and_od(busy):
    busy["gpu"]["sclk_range"] = [600, 2000]  # an OD commit
    assert run(busy, 5)["average_gfxclk_frequency"] == 2000
    idle = scenarios.idle_state()
    idle["gpu"]["sclk_range"] = [2900, 2900]  # "high" pins sclk even when idle
    assert run(idle, 2)["average_gfxclk_frequency"] == 2900
    busy["gpu"]["sclk_range"] = [600, 600]  # "low"
    busy["gpu"]["fclk_range"] = [400, 400]
    m = run(busy, 10)
    assert (m["average_gfxclk_frequency"], m["average_fclk_frequency"]) == (600, 400)
    assert m["average_dram_reads"] < 400 * 34  # the fabric clock caps the bandwidth


def test_dram_counter_stays_below_its_limit_unless_saturated(busy):
    busy["workload"]["dram_mbps"] = 200_000
    assert 60_000 < run(busy, 10)["average_dram_reads"] < 65535
    busy["workload"]["dram_saturated"] = True
    assert run(busy, 1)["average_dram_reads"] == 65535


def test_temperatures_lag_power(busy):
    start = busy["smu"]["metrics"]["temperature_gfx"]
    busy["workload"].update(gpu=0.0, cpu=0.0, dram_mbps=0)
    after_1s = run(busy, 1)["temperature_gfx"]
    after_60s = run(busy, 60)["temperature_gfx"]
    assert start > after_1s > after_60s
    assert start - after_1s < (start - after_60s) / 4  # a first-order lag of several seconds


def test_counters_advance_with_time_and_load(busy):
    before = copy.deepcopy(busy)
    run(busy, 10)
    m0, m1 = before["smu"]["metrics"], busy["smu"]["metrics"]
    assert m1["system_clock_counter"] - m0["system_clock_counter"] == 10 * 10**9
    busy_jiffies = []
    for old, new in zip(before["proc"]["jiffies"], busy["proc"]["jiffies"]):
        assert sum(new) - sum(old) == pytest.approx(1000)  # USER_HZ x 10 s on every CPU
        busy_jiffies.append((sum(new) - new[3]) - (sum(old) - old[3]))
    # The host thread's core runs at 97 % C0; its SMT sibling carries a quarter of that.
    assert busy_jiffies[0] == pytest.approx(970)
    assert busy_jiffies[16] == pytest.approx(970 / 4)
    assert min(busy_jiffies) > 0
    assert busy["proc"]["ctxt"] > before["proc"]["ctxt"]


def test_gtt_kv_cache_moves_meminfo(busy):
    free = lambda s: int(publish.meminfo_text(s).split("MemFree:")[1].split()[0])  # noqa: E731
    before = free(busy)
    run(busy, 10)
    assert busy["memory"]["gtt_kv_bytes"] > 0
    assert free(busy) < before
    busy["workload"]["gpu"] = 0.0  # the request ends: KV cache freed
    run(busy, 1)
    assert busy["memory"]["gtt_kv_bytes"] == 0 and free(busy) == before
