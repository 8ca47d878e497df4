"""gpu.sclk_min_mhz / gpu.sclk_max_mhz: the GFX clock range, through pp_od_clk_voltage.

Interface (smu_v14_0_od_edit_dpm_table, SMU 14.0.x): `s 0 <MHz>` hard minimum, `s 1 <MHz>`
soft maximum, `r` restore defaults, `c` commit; all EINVAL unless the performance level is
`manual`. Targets are checked against OD_RANGE. A write to the defaults is `r` + `c`; to other
values `s 0`, `s 1`, `c`. Both ways these come after the performance level (gpu_level.py): a
level other than `manual` sets the range itself, so a rollback to such a level usually finds
the OD range already back and writes nothing here.
"""

from __future__ import annotations

from halotune.machine import parse
from halotune.tuning.tunables import gpu
from halotune.tuning.tunables.base import Blame, InvalidTarget, Tunable, is_int, order_error

MIN, MAX = "gpu.sclk_min_mhz", "gpu.sclk_max_mhz"


class GpuClockRange(Tunable):
    name = "gpu_clock_range"
    keys = (MIN, MAX)
    apply_rank = 60
    rollback_rank = 10

    def _file(self, ctx):
        d = gpu.device_dir(ctx)
        return f"{d}/pp_od_clk_voltage" if d else None

    def _od(self, ctx) -> parse.OdClock:
        return parse.parse_od_clk_voltage(ctx.fs.read_text(self._file(ctx)))

    def unavailable(self, ctx):
        f = self._file(ctx)
        if f is None:
            return "no AMD GPU found"
        od = self._od(ctx)
        if od.range_min is None or od.sclk_max is None:
            return f"{ctx.fs.path(f)} has no OD_SCLK/OD_RANGE (overdrive unsupported)"
        return None

    def check_profile_values(self, values, blame=None):
        """OD edits need the `manual` level (EINVAL otherwise); min <= max."""
        from halotune.tuning.loader import format_value as fv

        blame, level = blame or Blame(), "gpu.performance_level"
        for k in (MIN, MAX):
            if k in values and values.get(level) != "manual":
                if level not in values:
                    return [InvalidTarget(k, values[k], f'needs {level} = "manual" (it is not set)')]
                if blame.pick(k, level) == k:
                    return [InvalidTarget(k, values[k], f'needs {level} = "manual" (it is '
                                          f'{fv(values[level])}{blame.where(level, k)})')]
                return [InvalidTarget(level, values[level], f'must be "manual": {k} is set '
                                      f'({fv(values[k])}{blame.where(k, level)})')]
        err = order_error(values, MAX, MIN, blame)
        return [err] if err else []

    def check_restore_state(self, key, state):
        # OD_SCLK as read: MHz; the driver checks it against OD_RANGE on the write.
        return None if state is None or (is_int(state) and state > 0) else \
            "must be a positive integer of MHz"

    def read(self, ctx):
        od = self._od(ctx)
        return {MIN: od.sclk_min, MAX: od.sclk_max}

    def plan(self, ctx, targets, planned, current):
        od = self._od(ctx)
        level = planned.get("gpu.performance_level") or ctx.fs.read_text(
            f"{gpu.device_dir(ctx)}/power_dpm_force_performance_level")
        if level != "manual":
            key = MIN if MIN in targets else MAX
            raise InvalidTarget(key, targets[key], 'needs gpu.performance_level = "manual" '
                                                   "(the driver refuses OD edits otherwise)")
        out = {}
        for key in (MIN, MAX):
            if key in targets:
                v = int(targets[key])
                if not od.range_min <= v <= od.range_max:
                    raise InvalidTarget(key, v, f"must be between {od.range_min} and "
                                                f"{od.range_max} (OD_RANGE of pp_od_clk_voltage)")
                out[key] = v
        lo, hi = out.get(MIN, current.get(MIN)), out.get(MAX, current.get(MAX))
        if lo is not None and hi is not None and lo > hi:
            raise InvalidTarget(MIN, lo, f"must be <= gpu.sclk_max_mhz ({hi})")
        return out

    def write(self, ctx, states, current):
        f, od = self._file(ctx), self._od(ctx)
        want = {MIN: states.get(MIN, current.get(MIN)), MAX: states.get(MAX, current.get(MAX))}
        if (want[MIN], want[MAX]) == (od.range_min, od.range_max):
            ctx.write(MIN, f, "r")          # back to the driver's defaults
        else:
            # Raise the max before the min (and lower the min before the max) so the pair
            # never crosses while staged.
            order = [MAX, MIN] if want[MIN] > (current.get(MAX) or 0) else [MIN, MAX]
            for key in order:
                if want[key] is not None:
                    ctx.write(key, f, f"s {0 if key == MIN else 1} {want[key]}")
        ctx.write(MAX, f, "c")

    def show(self, key, state):
        return "-" if state is None else f"{state} MHz"


TUNABLES = [GpuClockRange()]
