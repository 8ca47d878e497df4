"""Render every state-derived file of the simulated machine from the state.

The kernel computes these attributes on each read; the simulator computes them whenever the
state changes (a tick or an accepted write) and updates the files in place. Files whose text
did not change are not touched.
"""

from __future__ import annotations

from halotune.machine.gpu_metrics import encode
from halotune.sim import cpu as cpumodel
from halotune.sim import formats as fmt
from halotune.sim import gpuclients
from halotune.sim import hardware as hw
from halotune.sim import paths, store
from halotune.sim import platform_profile as pprof


class _Busy:
    """Marker: an attribute that exists but fails every read (see publish_busy)."""

    def __repr__(self) -> str:
        return "BUSY"


BUSY = _Busy()


def render(state: dict) -> dict[str, str | bytes | None | _Busy]:
    """Root-relative path -> content for every dynamic file (None: the file must not exist;
    BUSY: an attribute whose reads fail, e.g. of an inactive cpufreq policy)."""
    files: dict[str, str | bytes | None | _Busy] = {}
    files.update(_gpu(state))
    files.update(_cpufreq(state))
    files.update(_system(state))
    files.update(_proc(state))
    files.update(gpuclients.render(state))    # the simulated llama-server (not the machine)
    return files


def publish(root: str, state: dict) -> None:
    """Bring the tree under `root` in line with `state` (caller holds the lock)."""
    gpuclients.lay_out(root)
    for rel, content in render(state).items():
        if content is None:
            store.remove(root, rel)
        elif content is BUSY:
            store.put_unreadable(root, rel)
        else:
            store.put(root, rel, content, 0o600 if rel == paths.GTTSIZE else 0o644)


def _gpu(state: dict) -> dict[str, str | bytes]:
    gpu, m, mem = state["gpu"], state["smu"]["metrics"], state["memory"]
    od_min, od_max = gpu["od_sclk"]
    gtt_used = mem["gtt_model_bytes"] + mem["gtt_kv_bytes"]
    d, h = paths.DEV, paths.HWMON
    power_uw = fmt.hwmon_power_uw(m["average_socket_power"])
    return {
        f"{d}/gpu_metrics": encode(m),
        f"{d}/gpu_busy_percent": fmt.value(m["average_gfx_activity"]),
        f"{d}/power_dpm_force_performance_level": fmt.value(gpu["perf_level"]),
        # min/max lines show the driver's gfx_actual_* values (staged OD edits included)
        f"{d}/pp_dpm_sclk": fmt.sclk_levels(od_min, m["average_gfxclk_frequency"], od_max),
        f"{d}/pp_dpm_fclk": fmt.dpm_levels(hw.FCLK_LEVELS, m["average_fclk_frequency"]),
        f"{d}/pp_dpm_socclk": fmt.dpm_levels(hw.SOCCLK_LEVELS, m["average_socclk_frequency"]),
        f"{d}/pp_dpm_mclk": fmt.dpm_levels(hw.MCLK_LEVELS, m["average_uclk_frequency"]),
        f"{d}/pp_od_clk_voltage": fmt.od_clk_voltage(od_min, od_max, hw.SCLK_MIN, hw.SCLK_MAX),
        f"{d}/mem_info_gtt_total": fmt.value(mem["gtt_total_bytes"]),
        f"{d}/mem_info_gtt_used": fmt.value(gtt_used),
        f"{h}/temp1_input": fmt.value(fmt.hwmon_temp_mc(m["temperature_gfx"])),
        f"{h}/power1_average": fmt.value(power_uw),
        f"{h}/power1_input": fmt.value(power_uw),
        f"{h}/freq1_input": fmt.value(m["average_gfxclk_frequency"] * 1_000_000),
    }


def _cpu_hotplug(state: dict) -> dict[str, str]:
    """cpu/online and cpu/offline (drivers/base/cpu.c, cpulists), cpuN/online for N >= 1
    (drivers/base/core.c online_show; x86 gives cpu0 none), smt/control and smt/active
    (kernel/cpu.c control_show, active_show)."""
    online = cpumodel.online_cpus(state)
    offline = [n for n in range(hw.CPUS) if n not in online]
    files = {
        f"{paths.CPU}/online": f"{cpumodel.cpulist(online)}\n",
        f"{paths.CPU}/offline": f"{cpumodel.cpulist(offline)}\n",
        paths.SMT_CONTROL: fmt.value(cpumodel.smt_control(state)),
        paths.SMT_ACTIVE: fmt.value(int(cpumodel.smt_active(state))),
    }
    for n in range(1, hw.CPUS):
        files[paths.cpu_online(n)] = fmt.value(int(n in online))
    return files


# Every attribute of a policy directory (cpufreq.c default_attrs + amd-pstate-epp attrs).
_POLICY_ATTRS = ("affected_cpus", "related_cpus", "cpuinfo_min_freq", "cpuinfo_max_freq",
                 "scaling_driver", "scaling_available_governors", "scaling_governor", "boost",
                 "scaling_min_freq", "scaling_max_freq", "scaling_cur_freq",
                 "energy_performance_available_preferences", "energy_performance_preference")


def _cpufreq(state: dict) -> dict[str, str | None | _Busy]:
    cpu, clocks = state["cpu"], state["smu"]["metrics"]["current_coreclk"]
    mode = cpu["pstate_mode"]
    active = mode == "active"
    files: dict[str, str | None | _Busy] = {
        paths.PSTATE_STATUS: fmt.value(mode),
        paths.BOOST: fmt.value(cpu["boost"]),
        **_cpu_hotplug(state),
    }
    governors = fmt.words(cpumodel.available_governors(mode), trailing_space=not active)
    for n, pol in enumerate(cpu["policies"]):
        p = paths.policy(n)
        if not cpumodel.online(state, n):
            # cpufreq.c show(): every attribute of an inactive policy is -EBUSY.
            for attr in _POLICY_ATTRS:
                files[f"{p}/{attr}"] = BUSY if active or "energy" not in attr else None
            continue
        lo, hi = cpumodel.effective_limits(state, n)
        files[f"{p}/affected_cpus"] = files[f"{p}/related_cpus"] = f"{n}\n"
        files[f"{p}/cpuinfo_min_freq"] = fmt.value(hw.CPUINFO_MIN_KHZ)
        files[f"{p}/scaling_driver"] = fmt.value("amd-pstate-epp" if active else "amd-pstate")
        files[f"{p}/scaling_available_governors"] = governors
        files[f"{p}/scaling_governor"] = fmt.value(pol["governor"])
        files[f"{p}/cpuinfo_max_freq"] = fmt.value(cpumodel.cpuinfo_max_khz(state, n))
        files[f"{p}/boost"] = fmt.value(pol["boost"])
        files[f"{p}/scaling_min_freq"] = fmt.value(lo)
        files[f"{p}/scaling_max_freq"] = fmt.value(hi)
        files[f"{p}/scaling_cur_freq"] = fmt.value(clocks[n % hw.CORES] * 1000)
        epp_avail = f"{p}/energy_performance_available_preferences"
        epp = f"{p}/energy_performance_preference"
        if active:
            # amd-pstate.c: under the performance policy only "performance" is offered.
            files[epp_avail] = ("performance\n" if pol["governor"] == "performance"
                                else fmt.words(hw.EPP_CHOICES, trailing_space=True))
            files[epp] = fmt.value(pol["epp"])
        else:  # the EPP attributes exist only for the amd-pstate-epp driver
            files[epp_avail] = files[epp] = None
    return files


def _system(state: dict) -> dict[str, str]:
    mm, params = state["mm"], state["params"]
    return {
        **pprof.files(state),
        paths.THP_ENABLED: fmt.bracketed(hw.THP_ENABLED_CHOICES, mm["thp_enabled"]),
        paths.THP_DEFRAG: fmt.bracketed(hw.THP_DEFRAG_CHOICES, mm["thp_defrag"]),
        paths.SWAPPINESS: fmt.value(mm["swappiness"]),
        paths.COMPACTION_PROACTIVENESS: fmt.value(mm["compaction_proactiveness"]),
        paths.NUMA_BALANCING: fmt.value(mm["numa_balancing"]),
        f"{paths.TTM_PARAMS}/pages_limit": fmt.value(params["ttm_pages_limit"]),
        f"{paths.TTM_PARAMS}/page_pool_size": fmt.value(params["ttm_page_pool_size"]),
        f"{paths.TTM_PARAMS}/dma32_pages_limit": fmt.value(params["ttm_dma32_pages_limit"]),
        paths.GTTSIZE: fmt.value(params["amdgpu_gttsize"]),
    }


# /proc/meminfo rows after the dynamic ones; CHOSEN constants of a 128 GB Ubuntu box
# (CommitLimit = SwapTotal + MemTotal / 2).
MEMINFO_TAIL = (
    ("SwapCached", 0), ("Active", 5210432), ("Inactive", 3874116),
    ("Active(anon)", 2896644), ("Inactive(anon)", 0), ("Active(file)", 2313788),
    ("Inactive(file)", 3874116), ("Unevictable", 30240), ("Mlocked", 30240),
    ("SwapTotal", 8388604), ("SwapFree", 8388604), ("Zswap", 0), ("Zswapped", 0),
    ("Dirty", 1204), ("Writeback", 0), ("AnonPages", 2740560), ("Mapped", 1204664),
    ("Shmem", 186452), ("KReclaimable", 318840), ("Slab", 812344), ("SReclaimable", 318840),
    ("SUnreclaim", 493504), ("KernelStack", 26304), ("PageTables", 48920),
    ("SecPageTables", 2060), ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
    ("CommitLimit", 74264736), ("Committed_AS", 9841236), ("VmallocTotal", 34359738367),
    ("VmallocUsed", 262144), ("VmallocChunk", 0), ("Percpu", 40448),
    ("HardwareCorrupted", 0), ("AnonHugePages", 1234944), ("ShmemHugePages", 0),
    ("ShmemPmdMapped", 0), ("FileHugePages", 0), ("FilePmdMapped", 0), ("Unaccepted", 0),
    ("HugePages_Total", 0), ("HugePages_Free", 0), ("HugePages_Rsvd", 0),
    ("HugePages_Surp", 0), ("Hugepagesize", 2048), ("Hugetlb", 0),
    ("DirectMap4k", 1065984), ("DirectMap2M", 28241920), ("DirectMap1G", 105906176),
)
BUFFERS_KB, CACHED_KB = 412088, 6031440


def meminfo_text(state: dict) -> str:
    """GTT pages come out of MemFree; the rest of the machine's use is constant."""
    mem = state["memory"]
    gtt_kb = (mem["gtt_model_bytes"] + mem["gtt_kv_bytes"]) // 1024
    free = hw.MEMTOTAL_KB - mem["other_used_kb"] - BUFFERS_KB - CACHED_KB - gtt_kb
    rows = [("MemTotal", hw.MEMTOTAL_KB), ("MemFree", free),
            ("MemAvailable", free + mem["reclaimable_kb"]), ("Buffers", BUFFERS_KB),
            ("Cached", CACHED_KB), *MEMINFO_TAIL]
    return fmt.meminfo(rows)


def _proc(state: dict) -> dict[str, str]:
    proc = state["proc"]
    jiffies = [[int(v) for v in row] for row in proc["jiffies"]]
    # Uptime follows /proc/stat (every CPU accounts each tick); the snapshot's gpu_metrics
    # system_clock_counter (5412 s) disagrees with its /proc/stat (~2.5 days of jiffies).
    uptime_s = sum(proc["jiffies"][0]) / 100
    idle_s = sum(row[3] for row in proc["jiffies"]) / 100
    return {
        paths.PROC_MEMINFO: meminfo_text(state),
        paths.PROC_STAT: fmt.proc_stat(
            jiffies, [int(v) for v in proc["intr"]], int(proc["ctxt"]), state["btime"],
            int(proc["processes"]), proc["procs_running"], 0, [int(v) for v in proc["softirq"]]),
        paths.PROC_UPTIME: fmt.uptime(uptime_s, idle_s),
    }
