"""cpufreq policy arithmetic shared by the write rules, the physics and the renderers.

Limits follow the kernel's freq-QoS model (drivers/cpufreq/cpufreq.c): a write to
scaling_{min,max}_freq only records a request; the policy's effective limits are the requests
clamped to cpuinfo_{min,max}_freq, with min never above max. So out-of-range writes succeed
and read back clamped, as on a real machine.
"""

from __future__ import annotations

from halotune.sim import hardware as hw

QOS_MIN_DEFAULT_KHZ = 0               # FREQ_QOS_MIN_DEFAULT_VALUE
QOS_MAX_DEFAULT_KHZ = 2_147_483_647   # FREQ_QOS_MAX_DEFAULT_VALUE (S32_MAX)

# Lower index = more performance-oriented (amd-pstate epp_values order).
_EPP_RANK = {"performance": 0, "balance_performance": 1, "default": 1, "balance_power": 2,
             "power": 3}
# Clock a lightly loaded core settles at, relative to its balance_performance clock. CHOSEN.
_EPP_LIGHT_SCALE = {0: None, 1: 1.0, 2: 0.75, 3: 0.55}

# Light-load clock of each core under balance_performance (MHz): the reference snapshot's
# current_coreclk for cores 1-15 (CHOSEN there); core 0 CHOSEN here.
LIGHT_MHZ = (4420, 4312, 4405, 4288, 4350, 4267, 4301, 4276,
             4180, 4155, 4162, 4110, 4198, 4143, 4127, 4105)


def new_policy(mode: str = "active", boost: int = 1) -> dict:
    """A policy as the driver creates it at registration (requests at the QoS defaults; the
    per-policy boost flag mirrors the global one, as cpufreq_online sets it)."""
    active = mode == "active"
    return {
        "governor": "powersave" if active else hw.PASSIVE_DEFAULT_GOVERNOR,
        "epp": hw.EPP_DEFAULT if active else None,
        "min_req_khz": QOS_MIN_DEFAULT_KHZ,
        "max_req_khz": QOS_MAX_DEFAULT_KHZ,
        "boost": boost,
    }


def online(state: dict, n: int) -> bool:
    """Logical CPU n is online (state["cpu"]["offline"] lists the others; absent: all on)."""
    return n not in state["cpu"].get("offline", ())


def online_cpus(state: dict) -> list[int]:
    return [n for n in range(hw.CPUS) if online(state, n)]


def smt_control(state: dict) -> str:
    """kernel/cpu.c control_show: "on", "off" or "forceoff" (SMT is supported here)."""
    return state["cpu"].get("smt_control", "on")


def smt_active(state: dict) -> bool:
    """sched_smt_active(): some core has both of its threads online."""
    return any(online(state, c) and online(state, c + hw.CORES) for c in range(hw.CORES))


def cpulist(cpus: list[int]) -> str:
    """cpumap_print_list_to_buf / bitmap_print_to_pagebuf(true, ...): "0-15,17"."""
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)


def boosted(state: dict, n: int) -> bool:
    """Policy n's boost flag. A global write sets every policy's flag, and a per-policy 1 is
    refused while the global flag is 0, so the policy's own flag is the one in force."""
    return bool(state["cpu"]["policies"][n]["boost"])


def cpuinfo_max_khz(state: dict, n: int) -> int:
    # amd_pstate_cpu_boost_update: boost off lowers cpuinfo.max_freq to the nominal clock.
    return hw.CPUINFO_MAX_KHZ if boosted(state, n) else hw.NOMINAL_KHZ


def effective_limits(state: dict, n: int) -> tuple[int, int]:
    """(scaling_min_freq, scaling_max_freq) of policy n in kHz."""
    pol = state["cpu"]["policies"][n]
    top = cpuinfo_max_khz(state, n)
    hi = min(max(pol["max_req_khz"], hw.CPUINFO_MIN_KHZ), top)
    lo = min(max(pol["min_req_khz"], hw.CPUINFO_MIN_KHZ), hi)
    return lo, hi


def available_governors(mode: str) -> tuple[str, ...]:
    return hw.ACTIVE_GOVERNORS if mode == "active" else hw.PASSIVE_GOVERNORS


def _thread_bounds(state: dict, n: int) -> tuple[float, float, int]:
    """(floor MHz, ceiling MHz, EPP rank) one logical CPU asks of its core."""
    lo, hi = effective_limits(state, n)
    hard_max = hw.CORE_MAX_MHZ if boosted(state, n) else hw.CORE_BASE_MHZ
    ceiling = min(hi / 1000, hard_max)
    floor = min(lo / 1000, ceiling)
    pol = state["cpu"]["policies"][n]
    gov, mode = pol["governor"], state["cpu"]["pstate_mode"]
    if gov == "performance":
        # active: min_limit_perf = min(nominal, max); passive: run at the policy maximum.
        floor = max(floor, min(hw.NOMINAL_KHZ / 1000, ceiling)) if mode == "active" else ceiling
        rank = 0
    elif mode != "active" and gov in ("powersave", "userspace"):
        ceiling = floor
        rank = 3
    else:
        rank = _EPP_RANK.get(pol["epp"] or hw.EPP_DEFAULT, 1)
    return floor, ceiling, rank


def core_bounds(state: dict, core: int) -> tuple[float, float, int]:
    """A core runs for the more demanding of its online SMT threads (policies core, core+16);
    an offline thread asks nothing (amd_pstate_epp_cpu_offline parks it at lowest_perf)."""
    threads = [n for n in (core, core + hw.CORES) if online(state, n)] or [core]
    a = _thread_bounds(state, threads[0])
    b = _thread_bounds(state, threads[-1])
    ceiling = max(a[1], b[1])
    return min(max(a[0], b[0]), ceiling), ceiling, min(a[2], b[2])


def core_clock_want(state: dict, core: int, c0: float) -> float:
    """Clock (MHz) core `core` asks for at C0 residency c0 (0..1), before power limits."""
    floor, ceiling, rank = core_bounds(state, core)
    light = LIGHT_MHZ[core]
    scale = _EPP_LIGHT_SCALE[rank]
    light = light + (ceiling - light) * 0.5 if scale is None else light * scale
    want = light + (ceiling - light) * c0
    return min(max(want, floor), ceiling)


def core_max_mhz(state: dict) -> int:
    """gpu_metrics current_core_maxfreq: the CCLK limit in force."""
    return int(max(core_bounds(state, k)[1] for k in range(hw.CORES)))
