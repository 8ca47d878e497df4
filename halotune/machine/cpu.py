"""CPU reads: utilisation from proc/stat, amd-pstate/cpufreq policy state.

Interfaces: /proc/stat cpu lines (USER_HZ ticks); sys/devices/system/cpu/cpufreq/policyN/
{scaling_driver,scaling_governor,energy_performance_preference,...} (amd-pstate-epp, Linux
>= 6.3); the choices files end in a space before the newline.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

CPUFREQ = "sys/devices/system/cpu/cpufreq"


@dataclass
class CpuReading:
    times: dict[str, parse.CpuTimes] = field(default_factory=dict)
    policies: int = 0
    scaling_driver: str | None = None
    governor: str | None = None           # the most common value across policies
    governors_mixed: bool = False
    epp: str | None = None
    epp_mixed: bool = False
    governor_choices: list[str] = field(default_factory=list)
    epp_choices: list[str] = field(default_factory=list)
    amd_pstate_status: str | None = None
    freq_khz: list[int] = field(default_factory=list)
    min_khz: int | None = None
    max_khz: int | None = None
    boost: int | None = None


def _policy_index(rel: str) -> int:
    m = re.search(r"policy(\d+)$", rel)
    return int(m.group(1)) if m else 0


class CpuReader:
    def __init__(self, fs: RootFS):
        self.fs = fs
        self._stat = fs.hot("proc/stat", 64 * 1024)
        self.policy_dirs = sorted(fs.glob(f"{CPUFREQ}/policy*"), key=_policy_index)
        self._cur = [fs.hot(f"{p}/scaling_cur_freq") for p in self.policy_dirs]
        # Hardware limits, fixed per boot.
        first = self.policy_dirs[0] if self.policy_dirs else None
        self.min_khz = fs.read_int(f"{first}/cpuinfo_min_freq") if first else None
        self.max_khz = fs.read_int(f"{first}/cpuinfo_max_freq") if first else None

    def read_times(self) -> dict[str, parse.CpuTimes]:
        return parse.parse_proc_stat(self._stat.read_text())

    def read(self) -> CpuReading:
        fs, r = self.fs, CpuReading()
        r.times = self.read_times()
        r.policies = len(self.policy_dirs)
        r.amd_pstate_status = fs.hot_text("sys/devices/system/cpu/amd_pstate/status")
        r.boost = fs.hot_int(f"{CPUFREQ}/boost")
        r.min_khz, r.max_khz = self.min_khz, self.max_khz
        if self.policy_dirs:
            # The driver, and with it the choices, change with amd_pstate/status and the governor.
            first = self.policy_dirs[0]
            r.scaling_driver = fs.hot_text(f"{first}/scaling_driver")
            r.governor_choices = fs.hot_list(f"{first}/scaling_available_governors") or []
            r.epp_choices = fs.hot_list(f"{first}/energy_performance_available_preferences") or []
            r.governor, r.governors_mixed = self._common("scaling_governor")
            r.epp, r.epp_mixed = self._common("energy_performance_preference")
        r.freq_khz = [v for v in (h.read_int() for h in self._cur) if v is not None]
        return r

    def _common(self, name: str) -> tuple[str | None, bool]:
        values = Counter(v for v in (self.fs.hot_text(f"{p}/{name}") for p in self.policy_dirs) if v)
        if not values:
            return None, False
        return values.most_common(1)[0][0], len(values) > 1
