"""Module parameters and memory-management knobs (spec §4.2, §10); the platform profile is
platform_profile.py."""

from __future__ import annotations

import re

from halotune.sim import hardware as hw
from halotune.sim import paths
from halotune.sim.kparse import kstrtol, kstrtoul, proc_int, sysfs_streq
from halotune.sim.rules import reject


_PARAMS = {"pages_limit": "ttm_pages_limit", "page_pool_size": "ttm_page_pool_size",
           "dma32_pages_limit": "ttm_dma32_pages_limit"}


def ttm_param(state: dict, value: str, m: re.Match) -> None:
    """ttm ulong parameters (0644, param_set_ulong): recorded only. mem_info_gtt_total was
    computed at amdgpu init, so a runtime write does not resize GTT (spec §4.2)."""
    try:
        state["params"][_PARAMS[m.group("name")]] = kstrtoul(value)
    except ValueError:
        reject()


def gttsize(state: dict, value: str, _m: re.Match) -> None:
    """amdgpu.gttsize (int, 0600, param_set_int): recorded only, like the ttm parameters."""
    try:
        state["params"]["amdgpu_gttsize"] = kstrtol(value, bits=32)
    except ValueError:
        reject()


def thp(state: dict, value: str, m: re.Match) -> None:
    """transparent_hugepage/{enabled,defrag}: one bare word, compared with sysfs_streq."""
    which = m.group("which")
    choices = hw.THP_ENABLED_CHOICES if which == "enabled" else hw.THP_DEFRAG_CHOICES
    word = next((c for c in choices if sysfs_streq(value, c)), None)
    if word is None:
        reject()
    state["mm"][f"thp_{which}"] = word


_VM_MAX = {"swappiness": hw.SWAPPINESS_MAX,
           "compaction_proactiveness": hw.COMPACTION_PROACTIVENESS_MAX}


def vm_sysctl(state: dict, value: str, m: re.Match) -> None:
    """vm.swappiness (0..200), vm.compaction_proactiveness (0..100): proc_dointvec_minmax."""
    name = m.group("name")
    try:
        number = proc_int(value)
    except ValueError:
        reject()
    if not 0 <= number <= _VM_MAX[name]:
        reject()
    state["mm"][name] = number


def numa_balancing(state: dict, value: str, _m: re.Match) -> None:
    """kernel.numa_balancing (CONFIG_NUMA_BALANCING, as on Ubuntu): sysctl_numa_balancing runs
    proc_dointvec_minmax over 0..NUMA_BALANCING_MAX."""
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
