"""The files halotune may ever write, root-relative. Nothing in a profile names a path."""

from __future__ import annotations

import re

_ALLOWED = [re.compile(p) for p in (
    r"sys/class/drm/card\d+/device/(power_dpm_force_performance_level|pp_od_clk_voltage"
    r"|pp_power_profile_mode)",
    r"sys/firmware/acpi/platform_profile",
    r"sys/class/platform-profile/platform-profile-\d+/profile",   # Linux >= 6.14, per handler
    r"sys/devices/system/cpu/cpufreq/policy\d+/(scaling_governor|energy_performance_preference"
    r"|boost)",
    r"sys/devices/system/cpu/cpufreq/boost",
    r"proc/sys/vm/(swappiness|compaction_proactiveness)",
    r"proc/sys/kernel/numa_balancing",
    r"sys/kernel/mm/transparent_hugepage/(enabled|defrag)",
    r"etc/modprobe\.d/halotune-gtt\.conf",
)]


def allowed(rel: str) -> bool:
    rel = rel.lstrip("/")
    return ".." not in rel.split("/") and any(p.fullmatch(rel) for p in _ALLOWED)
