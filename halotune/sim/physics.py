"""A small physical model of the APU: `tick(state, dt)` advances the simulated SMU by dt seconds.

Deterministic: the result depends only on the state and dt (no clock, no randomness). It
mutates `state` and writes no file; publish.py renders the files from the new state.

The model, per tick:
1. Demand. The workload (load target, DRAM rate, host-CPU load) and the clock ranges in force
   (performance level, OD commit, fclk/socclk masks, cpufreq policies) give the clocks each
   block asks for.
2. Power limits. Socket power = GFX + CPU cores + SoC/fabric/DRAM. The SMU budget is the fast
   PPT limit on the instantaneous power, the slow PPT (and APU slow) limit on a slow average and
   the STAPM limit on a long average; when demand exceeds it, GFX and core clocks are scaled
   down together until the power fits, and the binding limit's throttle counter advances.
   Power limits override clock floors (a hard-min sclk still throttles), as PPT does.
3. Reporting. gpu_metrics "average_*" power/activity/traffic values are exponentially filtered
   with the SMU's 1 s time_filter_alphavalue; temperatures follow power with an 8 s lag.
Coefficients are CHOSEN so the reference load lands near the reference snapshot (~100 W at
~98 % GFX) and an idle machine near 12 W. Thermal throttling is not modelled.
"""

from __future__ import annotations

import math

from halotune.sim import cpu as cpumodel
from halotune.sim import gpuclients
from halotune.sim import hardware as hw

FAST_TAU_S = 1.0          # time_filter_alphavalue 1000000 us
THERMAL_TAU_S = 8.0
AMBIENT_C = 28.0
CPU_FLOOR_MHZ = 625
GFX_MAX_MHZ = hw.SCLK_MAX  # current_gfx_maxfreq (InfrastructureGfxMaxFreq)

# DRAM: background traffic, write share of GPU traffic, bandwidth per MHz of FCLK.
DRAM_IDLE_READS, DRAM_IDLE_WRITES = 1200.0, 600.0
DRAM_WRITE_RATIO = 0.1816
DRAM_MBPS_PER_FCLK_MHZ = 33.4
DRAM_PEGGED = 65535        # u16 MB/s counter pinned ("saturated")
# GTT: KV cache grows while the GPU works and is freed when the request ends. CHOSEN.
KV_GROWTH_BPS = 24 * 2**20
KV_MAX_BYTES = 2 * 2**30

# Core C0 residency (percent) of each core's background work; the reference pattern.
BACKGROUND_C0 = (3, 4, 6, 3, 5, 2, 4, 3, 3, 2, 2, 1, 3, 2, 2, 1)
SIBLING_SHARE = 0.25       # utilisation of the second SMT thread relative to its core

FILTERED_FAST = ("average_gfx_activity", "average_core_c0_activity", "average_dram_reads",
                 "average_dram_writes", "average_socket_power", "average_apu_power",
                 "average_gfx_power", "average_all_core_power", "average_core_power")
FILTERED_THERMAL = ("temperature_gfx", "temperature_soc", "temperature_core",
                    "temperature_skin")
THROTTLE_TICKS_PER_S = 100  # counter unit is undocumented; the simulator counts 10 ms


def _alpha(dt: float, tau: float) -> float:
    return 1.0 - math.exp(-dt / tau)


def _ramp(activity: float) -> float:
    """DPM response of sclk to GFX activity: flat below 5 %, full clock at 100 %."""
    return min(max((activity - 0.05) / 0.95, 0.0), 1.0)


def _pick(levels: tuple[int, ...], index: int, lo: int, hi: int) -> int:
    return min(max(levels[min(max(index, 0), len(levels) - 1)], lo), hi)


class _Demand:
    """What every block asks for this tick, before power limits."""

    def __init__(self, state: dict):
        w, gpu = state["workload"], state["gpu"]
        self.act = min(max(float(w["gpu"]), 0.0), 1.0)
        lo, hi = gpu["sclk_range"]  # lo <= hi <= SCLK_MAX: the OD commit checks it
        self.sclk = lo + (min(hi, GFX_MAX_MHZ) - lo) * _ramp(self.act)
        self.socclk = _pick(hw.SOCCLK_LEVELS, round(self.act * 4), *gpu["socclk_range"])
        want_reads = DRAM_IDLE_READS + self.act * float(w["dram_mbps"])
        fclk_idx = round(max(self.act, want_reads / DRAM_PEGGED) * 7)
        self.fclk = _pick(hw.FCLK_LEVELS, fclk_idx, *gpu["fclk_range"])
        self.saturated = bool(w.get("dram_saturated"))
        if self.saturated:
            self.reads = float(DRAM_PEGGED)
        else:
            self.reads = min(want_reads, self.fclk * DRAM_MBPS_PER_FCLK_MHZ, DRAM_PEGGED - 1)
        self.writes = DRAM_IDLE_WRITES + (self.reads - DRAM_IDLE_READS) * DRAM_WRITE_RATIO
        load = min(max(float(w["cpu"]), 0.0), 1.0)
        self.c0 = [max(BACKGROUND_C0[0], load * 97.0)]
        self.c0 += [bg * (0.5 + 0.5 * load) for bg in BACKGROUND_C0[1:]]
        self.core_mhz = [cpumodel.core_clock_want(state, k, c / 100) for k, c in
                         enumerate(self.c0)]


class _Point:
    """Clocks and powers at throttle factor s (1 = no throttling, 0 = hardware minima)."""

    def __init__(self, d: _Demand, s: float):
        self.sclk = hw.SCLK_MIN + s * (d.sclk - hw.SCLK_MIN) if d.sclk > hw.SCLK_MIN else d.sclk
        self.core_mhz = [CPU_FLOOR_MHZ + s * (f - CPU_FLOOR_MHZ) if f > CPU_FLOOR_MHZ else f
                         for f in d.core_mhz]
        self.gfx_mw = 500.0 + 74_640.0 * d.act * (self.sclk / GFX_MAX_MHZ) ** 2
        self.core_mw = [60.0 + (f / hw.CORE_MAX_MHZ) ** 2 * (180.0 + 19.0 * c0)
                        for f, c0 in zip(self.core_mhz, d.c0)]
        soc_mw = 7200.0 + 3000.0 * d.fclk / hw.FCLK_LEVELS[-1] + 0.18 * (d.reads + d.writes)
        self.socket_mw = self.gfx_mw + sum(self.core_mw) + soc_mw


def _budget(state: dict, dt: float) -> list[tuple[float, str]]:
    """Allowed instantaneous power per limit: the fast PPT caps it directly; slow PPT and STAPM
    cap their running averages, which never rise past the limit (and while an average sits above
    a freshly lowered limit, the power is held at the limit)."""
    lim, smu = state["limits"], state["smu"]
    slow = min(lim["slow_mw"], lim["apu_slow_mw"])
    a_slow = _alpha(dt, lim["slow_time_s"])
    a_stapm = _alpha(dt, lim["stapm_time_s"])
    return [
        (float(lim["fast_mw"]), "fppt"),
        (max(slow, smu["p_slow_mw"] + (slow - smu["p_slow_mw"]) / a_slow), "sppt"),
        (max(lim["stapm_mw"], smu["p_stapm_mw"] + (lim["stapm_mw"] - smu["p_stapm_mw"]) / a_stapm),
         "spl"),
    ]


def _throttle(d: _Demand, budget: float) -> _Point:
    """The fastest operating point within budget (the floor if even that is too much)."""
    lo, hi = 0.0, 1.0
    for _ in range(30):  # bisection keeps `lo` within budget
        mid = (lo + hi) / 2
        if _Point(d, mid).socket_mw <= budget:
            lo = mid
        else:
            hi = mid
    return _Point(d, lo)


def _ema(old, new, a: float):
    if isinstance(old, list):
        return [o + (n - o) * a for o, n in zip(old, new)]
    return old + (new - old) * a


def _round(v):
    return [round(x) for x in v] if isinstance(v, list) else round(v)


def tick(state: dict, dt: float) -> None:
    """Advance the simulated machine by dt seconds (dt > 0)."""
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    smu, m = state["smu"], state["smu"]["metrics"]
    state["t_s"] = state["t_s"] + dt
    d = _Demand(state)

    budget, limiter = min(_budget(state, dt))
    p = _Point(d, 1.0)
    throttled = p.socket_mw > budget
    if throttled:
        p = _throttle(d, budget)
        key = f"throttle_residency_{limiter}"
        m[key] = m[key] + round(dt * THROTTLE_TICKS_PER_S)
    smu["limiter"] = limiter if throttled else None
    a_slow = _alpha(dt, state["limits"]["slow_time_s"])
    a_stapm = _alpha(dt, state["limits"]["stapm_time_s"])
    smu["p_slow_mw"] += (p.socket_mw - smu["p_slow_mw"]) * a_slow
    smu["p_stapm_mw"] += (p.socket_mw - smu["p_stapm_mw"]) * a_stapm
    smu["p_fast_mw"] = p.socket_mw

    socket_w = p.socket_mw / 1000
    instant = {
        "average_gfx_activity": d.act * 100,
        "average_core_c0_activity": d.c0,
        "average_dram_reads": d.reads,
        "average_dram_writes": d.writes,
        "average_socket_power": p.socket_mw,
        "average_apu_power": p.socket_mw,   # no dGPU: APU power equals socket power
        "average_gfx_power": p.gfx_mw,
        "average_all_core_power": sum(p.core_mw),
        "average_core_power": p.core_mw,
        "temperature_gfx": (AMBIENT_C + 0.277 * socket_w + 0.1 * p.gfx_mw / 1000) * 100,
        "temperature_soc": (AMBIENT_C + 0.374 * socket_w) * 100,
        "temperature_core": [(AMBIENT_C + 0.29 * socket_w + mw / 1000) * 100 for mw in p.core_mw],
        "temperature_skin": (AMBIENT_C + 0.1346 * socket_w) * 100,
    }
    filt = smu["filtered"]
    a_fast, a_therm = _alpha(dt, FAST_TAU_S), _alpha(dt, THERMAL_TAU_S)
    for key in FILTERED_FAST + FILTERED_THERMAL:
        filt[key] = _ema(filt[key], instant[key], a_fast if key in FILTERED_FAST else a_therm)
        m[key] = _round(filt[key])
    if d.saturated:  # a pegged counter reads its maximum, not an average approaching it
        filt["average_dram_reads"] = m["average_dram_reads"] = DRAM_PEGGED

    m["average_gfxclk_frequency"] = round(p.sclk)
    m["average_socclk_frequency"] = d.socclk
    m["average_fclk_frequency"] = d.fclk
    m["current_coreclk"] = [round(f) for f in p.core_mhz]
    m["current_core_maxfreq"] = cpumodel.core_max_mhz(state)
    m["system_clock_counter"] = m["system_clock_counter"] + round(dt * 1e9)

    _advance_memory(state, d, dt)
    _advance_proc(state, d, dt)
    gpuclients.advance(state, d.act, dt)


def _advance_memory(state: dict, d: _Demand, dt: float) -> None:
    mem = state["memory"]
    if state["workload"]["gpu"] < 0.05:
        mem["gtt_kv_bytes"] = 0
    else:
        grown = mem["gtt_kv_bytes"] + dt * KV_GROWTH_BPS * d.act
        mem["gtt_kv_bytes"] = min(int(grown) // 4096 * 4096, KV_MAX_BYTES)


def thread_utilisation(c0: list[float]) -> list[float]:
    """Busy fraction of each logical CPU: cpu n < 16 carries its core's C0 residency, its SMT
    sibling n + 16 a quarter of it."""
    first = [min(c / 100, 1.0) for c in c0]
    return first + [u * SIBLING_SHARE for u in first]


# Where busy and idle jiffies go: (user, nice, system, idle, iowait, irq, softirq, ...).
_BUSY_SPLIT = (0.80, 0.0, 0.17, 0.0, 0.0, 0.01, 0.02, 0.0, 0.0, 0.0)
_SOFTIRQ_SPLIT = (0.01, 0.30, 0.02, 0.10, 0.05, 0.0, 0.02, 0.25, 0.05, 0.20)


def _advance_proc(state: dict, d: _Demand, dt: float) -> None:
    proc = state["proc"]
    util = thread_utilisation(d.c0)
    ticks = dt * 100  # USER_HZ
    for row, u in zip(proc["jiffies"], util):
        for i, share in enumerate(_BUSY_SPLIT):
            row[i] += ticks * u * share
        row[3] += ticks * (1.0 - u)
    busy = sum(util) / len(util)
    # intr lists only the legacy IRQs 0-9, quiet on this machine: only the total moves.
    proc["intr"][0] += dt * (12_000 + 60_000 * busy)
    proc["ctxt"] += dt * (25_000 + 150_000 * busy)
    proc["processes"] += dt * 2.5
    softirqs = dt * (4_000 + 20_000 * busy)
    proc["softirq"] = [proc["softirq"][0] + softirqs] + [
        v + softirqs * s for v, s in zip(proc["softirq"][1:], _SOFTIRQ_SPLIT)]
    proc["procs_running"] = 1 + sum(1 for u in util if u > 0.5)
