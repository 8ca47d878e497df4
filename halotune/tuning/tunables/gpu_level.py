"""gpu.performance_level: power_dpm_force_performance_level.

Interface: device/power_dpm_force_performance_level (rw). Accepted writes on SMU 14.0.x:
auto low high manual profile_standard profile_min_sclk profile_min_mclk profile_peak (plus
profile_exit, never used as a target). `manual` is what enables the pp_od_clk_voltage edits,
so it goes before them on apply and after their reset on rollback.
"""

from __future__ import annotations

from halotune.tuning.tunables import gpu
from halotune.tuning.tunables.base import Tunable, choices_error, restore_choice

KEY = "gpu.performance_level"
LEVELS = ["auto", "low", "high", "manual", "profile_standard", "profile_min_sclk",
          "profile_min_mclk", "profile_peak"]


class GpuPerformanceLevel(Tunable):
    name = "gpu_performance_level"
    keys = (KEY,)
    apply_rank = 50
    rollback_rank = 20

    def _file(self, ctx):
        d = gpu.device_dir(ctx)
        return f"{d}/power_dpm_force_performance_level" if d else None

    def unavailable(self, ctx):
        f = self._file(ctx)
        if f is None:
            return "no AMD GPU found"
        return None if ctx.fs.exists(f) else f"{ctx.fs.path(f)} does not exist"

    def check_restore_state(self, key, state):
        return restore_choice(state, LEVELS, "power_dpm_force_performance_level")

    def read(self, ctx):
        return {KEY: ctx.fs.read_text(self._file(ctx))}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[KEY])
        if value not in LEVELS:
            raise choices_error(KEY, value, LEVELS, "power_dpm_force_performance_level")
        return {KEY: value}

    def write(self, ctx, states, current):
        ctx.write(KEY, self._file(ctx), states[KEY])


TUNABLES = [GpuPerformanceLevel()]
