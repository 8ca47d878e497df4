"""Initial states of the simulated machine (the contents of `.halotune-sim/state.json`).

"reference" is the moment the reference snapshot shows (an LLM prompt-processing burst: GPU
98 % busy at 2743 MHz, 98.43 W); its gpu_metrics values are copied from
tests/fixtures/make_gpu_metrics.py, so the laid-out blob is byte-identical to the fixture.
"idle" is the same machine with no model loaded, settled by the physics model (GPU ~2 %,
600 MHz, ~12 W).
"""

from __future__ import annotations

import copy

from halotune.sim import cpu as cpumodel
from halotune.sim import hardware as hw
from halotune.sim import kversion
from halotune.sim import physics
from halotune.sim import platform_profile as pprof

SCENARIOS = ("reference", "idle")

# Raw gpu_metrics v3.0 fields of the reference moment (units as the driver fills them:
# centi-degC, %, MB/s, ns, mW, MHz). Fields absent here stay at the 0xFF fill.
REFERENCE_METRICS: dict = {
    "temperature_gfx": 6237,
    "temperature_soc": 6481,
    "temperature_core": [5912, 6034, 5876, 5988, 6120, 5954, 5899, 6011,
                         5790, 5843, 5812, 5768, 5901, 5856, 5833, 5874],
    "temperature_skin": 4125,
    "average_gfx_activity": 98,
    "average_vcn_activity": 0,
    "average_ipu_activity": [0] * 8,
    "average_core_c0_activity": [97, 4, 6, 3, 5, 2, 4, 3, 3, 2, 2, 1, 3, 2, 2, 1],
    "average_dram_reads": 48213,
    "average_dram_writes": 9137,
    "average_ipu_reads": 0,
    "average_ipu_writes": 0,
    "system_clock_counter": 5_412_345_678_901,
    "average_socket_power": 98430,
    "average_ipu_power": 0,
    "average_apu_power": 98430,
    "average_gfx_power": 71250,
    "average_dgpu_power": 0,
    "average_all_core_power": 9870,
    "average_core_power": [2110, 612, 655, 540, 598, 521, 577, 533,
                           498, 470, 455, 431, 502, 468, 452, 428],
    "average_sys_power": 0,
    "average_gfxclk_frequency": 2743,
    "average_socclk_frequency": 1104,
    "average_vpeclk_frequency": hw.VPECLK_MHZ,
    "average_ipuclk_frequency": 0,
    "average_fclk_frequency": 1960,
    "average_vclk_frequency": 0,
    "average_uclk_frequency": hw.UCLK_MHZ,
    "average_mpipu_frequency": 0,
    "current_coreclk": [5087, 4312, 4405, 4288, 4350, 4267, 4301, 4276,
                        4180, 4155, 4162, 4110, 4198, 4143, 4127, 4105],
    "current_core_maxfreq": hw.CORE_MAX_MHZ,
    "current_gfx_maxfreq": hw.SCLK_MAX,
    "throttle_residency_prochot": 0,
    "throttle_residency_spl": 18231,
    "throttle_residency_fppt": 0,
    "throttle_residency_sppt": 2871,
    "throttle_residency_thm_core": 0,
    "throttle_residency_thm_gfx": 0,
    "throttle_residency_thm_soc": 0,
    "time_filter_alphavalue": 1_000_000,
}

# Default TDP limits: the "performance" slider of amd-pmf (hardware.PROFILE_LIMITS_MW). The
# reference's 98.43 W sits below them. apu_slow follows slow; tctl is the 395's 100 degC.
# Time constants CHOSEN short so limit changes show within seconds.
_STAPM, _FAST, _SLOW = hw.PROFILE_LIMITS_MW["performance"]
DEFAULT_LIMITS = {"stapm_mw": _STAPM, "fast_mw": _FAST, "slow_mw": _SLOW, "apu_slow_mw": _SLOW,
                  "tctl_c": 100, "stapm_time_s": 30, "slow_time_s": 5}

# Prompt processing (the reference moment): GPU-bound, a host thread feeding it.
PREFILL = {"gpu": 0.98, "cpu": 0.97, "dram_mbps": 48_000}
IDLE = {"gpu": 0.02, "cpu": 0.02, "dram_mbps": 0}

# The reference snapshot's GTT: 61847080960 B of model weights, no KV cache yet.
_REFERENCE_GTT_BYTES = 61_847_080_960
# CHOSEN: desktop buffers only, no model loaded (the idle scenario, and every tree after a reboot)
IDLE_GTT_BYTES = 283_115_520
_IDLE_SETTLE_S = 240               # long enough for the 30 s STAPM average to settle


# /proc/stat of the reference moment. cpu0, cpu1 and the counters are the fixture's (CHOSEN
# there); the other 30 CPUs are CHOSEN here: cpu2-15 like cpu1, and each SMT sibling
# (cpu16-31) with a third of its first thread's busy time over the same time since boot.
_CPU0 = [1851233, 610, 240512, 19400120, 5001, 0, 10233, 0, 0, 0]
_CPU1 = [403801, 609, 230611, 19713309, 4820, 0, 2601, 0, 0, 0]
REFERENCE_PROC = {
    "btime": 1_764_050_000,
    "intr": [1_284_402_113, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0],
    "ctxt": 2_318_840_123,
    "processes": 812_340,
    "procs_running": 3,
    "softirq": [512_233_401, 4, 123_212, 21, 0, 0, 0, 2, 0, 0, 0],
}


def _smt_sibling(row: list[int], busy_scale: float) -> list[int]:
    busy = [round(v * busy_scale) if i != 3 else 0 for i, v in enumerate(row)]
    busy[3] = sum(row) - sum(busy)  # same total since boot; the rest is idle
    return busy


def _reference_jiffies() -> list[list[float]]:
    rows = [_CPU0, _CPU1] + [_CPU1] * (hw.CORES - 2)
    rows += [_smt_sibling(r, 1 / 3) for r in rows]
    return [[float(v) for v in r] for r in rows]


def reference_state() -> dict:
    metrics = copy.deepcopy(REFERENCE_METRICS)
    filtered_keys = physics.FILTERED_FAST + physics.FILTERED_THERMAL
    return {
        "version": 1,
        "scenario": "reference",
        "t_s": 0.0,
        "btime": REFERENCE_PROC["btime"],
        "workload": {"pattern": "llm", "pattern_offset_s": 4.0, "dram_saturated": False,
                     **PREFILL},
        "limits": dict(DEFAULT_LIMITS),
        "gpu": {
            "perf_level": "auto",
            "saved_perf_level": "auto",
            "od_sclk": [hw.SCLK_MIN, hw.SCLK_MAX],
            "sclk_range": [hw.SCLK_MIN, hw.SCLK_MAX],
            "fclk_range": [hw.FCLK_LEVELS[0], hw.FCLK_LEVELS[-1]],
            "socclk_range": [hw.SOCCLK_LEVELS[0], hw.SOCCLK_LEVELS[-1]],
            "fclk_mask": None,
            "socclk_mask": None,
        },
        "smu": {
            "metrics": metrics,
            "filtered": {k: copy.deepcopy(metrics[k]) for k in filtered_keys},
            "p_fast_mw": float(metrics["average_socket_power"]),
            "p_slow_mw": float(metrics["average_socket_power"]),
            "p_stapm_mw": float(metrics["average_socket_power"]),
            "limiter": None,
        },
        "memory": {
            "gtt_total_bytes": hw.GTT_TOTAL_BYTES,
            "gtt_model_bytes": _REFERENCE_GTT_BYTES,
            "gtt_kv_bytes": 0,
            # MemTotal - MemFree - Buffers - Cached - GTT of the reference meminfo
            "other_used_kb": 6_491_084,
            # MemAvailable - MemFree of the reference meminfo
            "reclaimable_kb": 4_698_792,
        },
        "cpu": {
            "pstate_mode": "active",
            "boost": 1,
            "policies": [cpumodel.new_policy() for _ in range(hw.CPUS)],
        },
        "proc": {
            "jiffies": _reference_jiffies(),
            "intr": [float(v) for v in REFERENCE_PROC["intr"]],
            "ctxt": float(REFERENCE_PROC["ctxt"]),
            "processes": float(REFERENCE_PROC["processes"]),
            "procs_running": REFERENCE_PROC["procs_running"],
            "softirq": [float(v) for v in REFERENCE_PROC["softirq"]],
        },
        "platform_profile": pprof.power_on(hw.DEFAULT_PROFILE_HANDLERS),
        "params": {"ttm_pages_limit": 28_835_840, "ttm_page_pool_size": 28_835_840,
                   "ttm_dma32_pages_limit": 524_288, "amdgpu_gttsize": -1},
        # numa_balancing: Ubuntu enables it by default, but check_numabalancing_enable only
        # turns it on with more than one NUMA node; this APU has one.
        "mm": {"thp_enabled": "madvise", "thp_defrag": "madvise", "swappiness": 60,
               "compaction_proactiveness": 20, "numa_balancing": 0},
    }


def idle_state() -> dict:
    state = reference_state()
    state["scenario"] = "idle"
    state["workload"] = {"pattern": "fixed", "dram_saturated": False, **IDLE}
    state["memory"]["gtt_model_bytes"] = IDLE_GTT_BYTES
    for _ in range(_IDLE_SETTLE_S):
        physics.tick(state, 1.0)
    state["t_s"] = 0.0
    return state


def initial_state(scenario: str, kernel: str = kversion.DEFAULT,
                  profile_handlers: tuple[str, ...] = hw.DEFAULT_PROFILE_HANDLERS) -> dict:
    """The power-on state of `scenario` on Linux `kernel` ("X.Y", see kversion.py) with the
    platform-profile handler drivers `profile_handlers` (registration order)."""
    if scenario == "reference":
        state = reference_state()
    elif scenario == "idle":
        state = idle_state()
    else:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    state["kernel"] = kversion.normalize(kernel)
    state["platform_profile"] = pprof.power_on(pprof.check_handlers(profile_handlers))
    return state
