"""Reboot the simulated machine: what a tuning engine's crash recovery and boot-time changes
must survive.

A reboot gives a new `boot_id` and puts every runtime-writable setting (GPU performance level
and OD clocks, fclk/socclk masks, platform profile, cpufreq governor/EPP/limits/boost,
amd-pstate mode, THP, vm sysctls, numa_balancing) and the SMU's TDP limits back to the
power-on values of the tree's scenario, the values `lay_out` produced: the kernel starts
afresh and the firmware resets the SMU. Boot-time configuration is what survives: the ttm,
amdttm and amdgpu module options from modprobe.d (the five directories kmod reads, in its
order: bootconf.py) and the kernel command line set the module parameters and the GTT size. `/proc/stat` counters and the uptime
start again from zero and btime moves forward. Files under `etc/`, the simulator's own state
and `writes.log` (which gets an `{"event": "reboot"}` line) are kept; the workload goes on.

GTT follows amdgpu_ttm_init (spec §4.2): `mem_info_gtt_total` is the TTM page limit x 4096,
or `amdgpu.gttsize` MiB when that deprecated option is set. With the ROCm DKMS driver (a tree
holding `sys/module/amdttm/`) the amdttm limit sizes GTT and `ttm.*` only sets the in-kernel
module's parameters.
"""

from __future__ import annotations

import errno
import os
import uuid

from halotune.machine.rootfs import SIM_MARKER
from halotune.sim import bootconf, paths, scenarios, store
from halotune.sim import platform_profile as pprof
from halotune.sim import hardware as hw
from halotune.sim.kparse import kstrtol, kstrtoul

# state.json keys the kernel and the firmware set afresh at power-on.
RUNTIME_KEYS = ("gpu", "cpu", "platform_profile", "mm", "limits")
# CHOSEN: wall-clock seconds between the old boot's last moment and the new boot (shutdown,
# POST, boot loader), so btime moves past the old boot's uptime.
REBOOT_S = 30
_TTM_PARAMS = ("pages_limit", "page_pool_size", "dma32_pages_limit")
_GTTSIZE_MIN_MIB = 32   # amdgpu_device_check_arguments: smaller values fall back to -1


def reboot(root: str) -> str:
    """Reboot the simulated machine under `root`; returns the new boot_id.

    Raises FileNotFoundError if `root` holds no simulated machine.
    """
    if not os.path.isdir(os.path.join(root, SIM_MARKER)):
        raise FileNotFoundError(errno.ENOENT, "not a simulated machine", root)
    boot_id = str(uuid.uuid4())
    with store.locked(root):
        state = store.load_state(root)
        power_on = scenarios.initial_state(state["scenario"], state.get("kernel", "6.17"),
                                           tuple(pprof.profiles(state)))   # same drivers
        for key in RUNTIME_KEYS:
            state[key] = power_on[key]
        _load_modules(root, state, power_on["params"])
        _restart_counters(state)
        store.put(root, paths.BOOT_ID, f"{boot_id}\n")
        store.commit(root, state, [store.event_entry("reboot", boot_id=boot_id)])
    return boot_id


def _load_modules(root: str, state: dict, power_on_params: dict) -> None:
    """ttm, amdttm and amdgpu load with the boot's options; amdgpu sizes GTT once, and no
    model is loaded yet."""
    options = bootconf.boot_options(root)
    ttm = _ttm_params(options.get("ttm", {}), power_on_params)
    gttsize = _gttsize(options.get("amdgpu", {}))
    state["params"] = {f"ttm_{name}": ttm[name] for name in _TTM_PARAMS}
    state["params"]["amdgpu_gttsize"] = gttsize
    gtt_ttm = ttm   # the TTM amdgpu was built against
    if os.path.isdir(os.path.join(root, paths.AMDTTM)):
        gtt_ttm = _ttm_params(options.get("amdttm", {}), power_on_params)
        _publish_amdttm(root, gtt_ttm)
    gtt_bytes = gtt_ttm["pages_limit"] * hw.PAGE_BYTES if gttsize == -1 else gttsize << 20
    state["memory"].update(gtt_total_bytes=gtt_bytes, gtt_model_bytes=scenarios.IDLE_GTT_BYTES,
                           gtt_kv_bytes=0)


def _ulong(value: str | None) -> int:
    """A ulong module option; 0 for a missing or malformed one. (A malformed option makes the
    real module fail to load; the simulator keeps the default instead.)"""
    try:
        return kstrtoul(value) if value is not None else 0
    except ValueError:
        return 0


def _ttm_params(given: dict, power_on: dict) -> dict[str, int]:
    """ttm_global_init: a limit left at 0 becomes the default, half of RAM in pages (the DMA32
    limit's default is the scenario's)."""
    defaults = {"pages_limit": hw.TTM_DEFAULT_PAGES, "page_pool_size": hw.TTM_DEFAULT_PAGES,
                "dma32_pages_limit": power_on["ttm_dma32_pages_limit"]}
    return {name: _ulong(given.get(name)) or defaults[name] for name in _TTM_PARAMS}


def _gttsize(given: dict) -> int:
    """amdgpu.gttsize in MiB, -1 when unset, malformed or below the driver's 32 MiB minimum."""
    value = given.get("gttsize")
    try:
        mib = kstrtol(value, bits=32) if value is not None else -1
    except ValueError:
        return -1
    return mib if mib >= _GTTSIZE_MIN_MIB else -1


def _publish_amdttm(root: str, ttm: dict[str, int]) -> None:
    # The simulator keeps no amdttm state: its parameters are fixed from one boot to the next.
    params = paths.module_params("amdttm")
    os.makedirs(os.path.join(root, params), exist_ok=True)
    for name in _TTM_PARAMS:
        store.put(root, f"{params}/{name}", f"{ttm[name]}\n")


def _restart_counters(state: dict) -> None:
    """/proc/stat starts from zero; btime is the old boot's btime + uptime + the reboot."""
    proc = state["proc"]
    uptime_s = sum(proc["jiffies"][0]) / 100   # as publish.py derives /proc/uptime
    state["btime"] = int(state["btime"] + uptime_s + REBOOT_S)
    proc["jiffies"] = [[0.0] * len(row) for row in proc["jiffies"]]
    proc["intr"] = [0.0] * len(proc["intr"])
    proc["softirq"] = [0.0] * len(proc["softirq"])
    proc.update(ctxt=0.0, processes=0.0, procs_running=1)
