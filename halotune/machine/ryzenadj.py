"""TDP limits through RyzenAdj (FlyGoat/RyzenAdj >= 0.16; Strix Halo since PR #334).

amdgpu has no writable power limit on this APU; STAPM/PPT limits live in the SMU and are read
back from its PM table with `ryzenadj -i`, a few header lines then a table
`| Name | Value | Parameter |` (older versions spell the third column "Paramter"; debug builds
interleave other lines): parse by the Name column, limits in W, `nan` for unsupported rows.
Writes take mW (`--stapm-limit=85000`); the exit status is the only success signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from halotune.machine.programs import ProgramError, Programs

# ryzenadj -i row names -> our names (W)
INFO_ROWS = {
    "STAPM LIMIT": "stapm_limit_w", "STAPM VALUE": "stapm_value_w",
    "PPT LIMIT FAST": "fast_limit_w", "PPT VALUE FAST": "fast_value_w",
    "PPT LIMIT SLOW": "slow_limit_w", "PPT VALUE SLOW": "slow_value_w",
    "PPT LIMIT APU": "apu_slow_limit_w", "PPT VALUE APU": "apu_slow_value_w",
    "THM LIMIT CORE": "tctl_limit_c", "THM VALUE CORE": "tctl_value_c",
}

# option -> ryzenadj flag (values in mW)
SET_FLAGS = {"stapm_mw": "--stapm-limit", "fast_mw": "--fast-limit", "slow_mw": "--slow-limit",
             "apu_slow_mw": "--apu-slow-limit"}


@dataclass
class TdpLimits:
    stapm_limit_w: float | None = None
    fast_limit_w: float | None = None
    slow_limit_w: float | None = None
    apu_slow_limit_w: float | None = None
    stapm_value_w: float | None = None
    fast_value_w: float | None = None
    slow_value_w: float | None = None
    apu_slow_value_w: float | None = None
    tctl_limit_c: float | None = None
    tctl_value_c: float | None = None
    cpu_family: str | None = None
    pm_table_version: str | None = None
    source: str | None = None        # "ryzenadj" when the values came from it
    hint: str | None = None          # why values are missing, and what to do


def parse_info(text: str) -> TdpLimits:
    lim = TdpLimits()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("CPU Family:"):
            lim.cpu_family = s.partition(":")[2].strip()
        elif s.startswith("PM Table Version:"):
            lim.pm_table_version = s.partition(":")[2].strip()
        elif s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if len(cells) >= 2 and cells[0] in INFO_ROWS:
                try:
                    value = float(cells[1])
                except ValueError:
                    continue
                if math.isfinite(value):     # float() also reads "nan", "inf" and "1e999"
                    setattr(lim, INFO_ROWS[cells[0]], value)
    return lim


class RyzenAdj:
    def __init__(self, programs: Programs):
        self.programs = programs

    def read_limits(self) -> TdpLimits:
        """Never raises: an absent tool or no permission gives nulls and a hint."""
        try:
            res = self.programs.run("ryzenadj", ["-i"])
        except ProgramError as e:
            return TdpLimits(hint=f"{e}; install RyzenAdj (>= 0.17) to read STAPM/PPT limits")
        if not res.ok:
            why = (res.stderr or res.stdout).strip().splitlines()
            return TdpLimits(hint=f"ryzenadj -i failed ({why[-1] if why else res.returncode}); "
                                  "it needs root and the ryzen_smu module or /dev/mem access")
        lim = parse_info(res.stdout)
        if lim.stapm_limit_w is None and lim.fast_limit_w is None:
            lim.hint = "ryzenadj -i printed no STAPM/PPT limits for this CPU"
        else:
            lim.source = "ryzenadj"
        return lim

    def set_limits(self, **mw: int) -> None:
        """Set limits in mW (stapm_mw=, fast_mw=, slow_mw=, apu_slow_mw=). Raises ProgramError."""
        args = [f"{SET_FLAGS[k]}={int(v)}" for k, v in mw.items() if v is not None]
        if not args:
            return
        res = self.programs.run("ryzenadj", args)
        if not res.ok:
            msg = (res.stderr or res.stdout).strip() or f"exit status {res.returncode}"
            raise ProgramError(f"ryzenadj {' '.join(args)} failed: {msg}")
