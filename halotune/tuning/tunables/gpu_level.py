"""gpu.performance_level: power_dpm_force_performance_level.

Interface: device/power_dpm_force_performance_level (rw). Accepted writes on SMU 14.0.x:
auto low high manual profile_standard profile_min_sclk profile_min_mclk profile_peak (plus
profile_exit, never used as a target).

Every level but `manual` (and `profile_exit`) makes the SMU send that level's GFX range and
overwrite the OD_SCLK values (smu_v14_0_common_set_performance_level sets
gfx_actual_hard_min_freq/soft_max_freq; kernels 6.11-6.18): leaving `manual` throws away an OD
range. So the OD keys are journaled with the level (`affects`), and the level is written first
both ways: on apply `manual` enables the OD edits that follow; on rollback the original level
goes back first (`manual` to allow the OD restore after it, any other level to set its own
range, which is then the original one) and the OD range after it.
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
    affects = ("gpu.sclk_min_mhz", "gpu.sclk_max_mhz")   # reset when the level leaves manual
    apply_rank = 50          # before gpu_clock_range (60)
    rollback_rank = 5        # before gpu_clock_range (10)

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

    def resets(self, states) -> tuple[str, ...]:
        """Keys this level decides (engine: not re-asserted after it): the OD range, unless
        the level is `manual`."""
        return () if states.get(KEY) in (None, "manual") else self.affects

    def write(self, ctx, states, current):
        ctx.write(KEY, self._file(ctx), states[KEY])


TUNABLES = [GpuPerformanceLevel()]
