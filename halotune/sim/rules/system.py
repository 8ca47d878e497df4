"""Module parameters and memory-management knobs (spec §4.2, §10); the platform profile is
platform_profile.py. Each rule names the kernel code it follows; none of them changed between
6.11 and 6.18 as far as the source shows, so none asks the kernel version."""

from __future__ import annotations

import re

from halotune.sim import hardware as hw
from halotune.sim import paths
from halotune.sim.kparse import kstrtol, kstrtoul, proc_int, sysfs_streq
from halotune.sim.rules import reject


_PARAMS = {"pages_limit": "ttm_pages_limit", "page_pool_size": "ttm_page_pool_size",
           "dma32_pages_limit": "ttm_dma32_pages_limit"}


def ttm_param(state: dict, value: str, m: re.Match) -> None:
    """ttm ulong parameters: pages_limit and dma32_pages_limit (drivers/gpu/drm/ttm/ttm_tt.c,
    module_param_named(..., ulong, 0644)), page_pool_size (ttm_pool.c, module_param ulong
    0644), all set by param_set_ulong (kstrtoul). Recorded only: amdgpu_ttm_init computed
    mem_info_gtt_total at load, so a runtime write does not resize GTT (spec §4.2)."""
    try:
        state["params"][_PARAMS[m.group("name")]] = kstrtoul(value)
    except ValueError:
        reject()


def gttsize(state: dict, value: str, _m: re.Match) -> None:
    """amdgpu.gttsize (drivers/gpu/drm/amd/amdgpu/amdgpu_drv.c, module_param_named(gttsize,
    amdgpu_gtt_size, int, 0600); param_set_int): recorded only, like the ttm parameters."""
    try:
        state["params"]["amdgpu_gttsize"] = kstrtol(value, bits=32)
    except ValueError:
        reject()


def thp(state: dict, value: str, m: re.Match) -> None:
    """transparent_hugepage/{enabled,defrag} (mm/huge_memory.c enabled_store / defrag_store):
    one bare word compared with sysfs_streq, -EINVAL otherwise; the top-level files keep these
    words with the per-size mTHP controls of 6.8+."""
    which = m.group("which")
    choices = hw.THP_ENABLED_CHOICES if which == "enabled" else hw.THP_DEFRAG_CHOICES
    word = next((c for c in choices if sysfs_streq(value, c)), None)
    if word is None:
        reject()
    state["mm"][f"thp_{which}"] = word


_VM_MAX = {"swappiness": hw.SWAPPINESS_MAX,
           "compaction_proactiveness": hw.COMPACTION_PROACTIVENESS_MAX}


def vm_sysctl(state: dict, value: str, m: re.Match) -> None:
    """vm.swappiness (0..200 since 5.8: proc_dointvec_minmax with extra2 SYSCTL_TWO_HUNDRED,
    kernel/sysctl.c's vm table, later mm/vmscan.c) and vm.compaction_proactiveness (0..100:
    mm/compaction.c compaction_proactiveness_sysctl_handler, proc_dointvec_minmax)."""
    name = m.group("name")
    try:
        number = proc_int(value)
    except ValueError:
        reject()
    if not 0 <= number <= _VM_MAX[name]:
        reject()
    state["mm"][name] = number


def numa_balancing(state: dict, value: str, _m: re.Match) -> None:
    """kernel.numa_balancing (CONFIG_NUMA_BALANCING, as on Ubuntu): kernel/sched/core.c
    sysctl_numa_balancing runs proc_dointvec_minmax over 0..NUMA_BALANCING_MAX (and refuses
    a writer without CAP_SYS_ADMIN with -EPERM; the simulated writer is always root)."""
    try:
        number = proc_int(value)
    except ValueError:
        reject()
    if not 0 <= number <= hw.NUMA_BALANCING_MAX:
        reject()
    state["mm"]["numa_balancing"] = number


RULES = (
    (rf"{re.escape(paths.TTM_PARAMS)}/(?P<name>pages_limit|page_pool_size|dma32_pages_limit)",
     ttm_param),
    (re.escape(paths.GTTSIZE), gttsize),
    (rf"{re.escape(paths.THP)}/(?P<which>enabled|defrag)", thp),
    (r"proc/sys/vm/(?P<name>swappiness|compaction_proactiveness)", vm_sysctl),
    (re.escape(paths.NUMA_BALANCING), numa_balancing),
)
