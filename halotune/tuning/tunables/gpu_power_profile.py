"""gpu.power_profile: pp_power_profile_mode (compute/3D workload heuristics).

Interface: device/pp_power_profile_mode, a table whose current row is starred; write the
row's index. It does not exist on Strix Halo (smu_v14_0_0 has no get_power_profile_mode, so
the file is hidden): unavailable there, and skipped unless the profile marks it required.
"""

from __future__ import annotations

import re

from halotune.tuning.tunables import gpu
from halotune.tuning.tunables.base import InvalidTarget, Tunable, choices_error

KEY = "gpu.power_profile"
REQUIRED = "gpu.power_profile_required"     # profile meta key: unavailable is an error
_ROW = re.compile(r"^\s*(\d+)\s+([A-Z0-9_]+)\s*(\*)?")


def parse_modes(text: str | None) -> tuple[dict[str, int], str | None]:
    """{"BOOTUP_DEFAULT": 0, "COMPUTE": 5, ...}, current mode name."""
    modes, current = {}, None
    for line in (text or "").splitlines():
        m = _ROW.match(line)
        if m and m.group(2) not in modes:
            modes[m.group(2)] = int(m.group(1))
            if m.group(3) or line.rstrip().endswith("*"):
                current = m.group(2)
    return modes, current


class GpuPowerProfile(Tunable):
    name = "gpu_power_profile"
    keys = (KEY,)
    apply_rank = 65
    rollback_rank = 15

    def _file(self, ctx):
        d = gpu.device_dir(ctx)
        return f"{d}/pp_power_profile_mode" if d else None

    def unavailable(self, ctx):
        f = self._file(ctx)
        if f is None or not ctx.fs.exists(f):
            return "not supported on this GPU (no pp_power_profile_mode; Strix Halo hides it)"
        return None

    def check_profile_values(self, values, blame=None):
        if values.get(REQUIRED) and KEY not in values:
            return [InvalidTarget(REQUIRED, values[REQUIRED], "needs gpu.power_profile")]
        return []

    def check_restore_state(self, key, state):
        # A mode name as parse_modes reads it from the table.
        if state is None or (isinstance(state, str) and re.fullmatch(r"[A-Z0-9_]+", state)):
            return None
        return "must be a power profile mode name from pp_power_profile_mode (e.g. COMPUTE)"

    def read(self, ctx):
        return {KEY: parse_modes(ctx.fs.read_text(self._file(ctx)))[1]}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[KEY]).upper()
        modes, _ = parse_modes(ctx.fs.read_text(self._file(ctx)))
        if value not in modes:
            raise choices_error(KEY, value, list(modes), "pp_power_profile_mode")
        return {KEY: value}

    def write(self, ctx, states, current):
        modes, _ = parse_modes(ctx.fs.read_text(self._file(ctx)))
        ctx.write(KEY, self._file(ctx), str(modes[states[KEY]]))


TUNABLES = [GpuPowerProfile()]
