"""power.stapm_w / fast_w / slow_w: the SMU power limits, through RyzenAdj.

amdgpu has no writable power limit on this APU. RyzenAdj (>= 0.17 for Strix Halo) sets them in
mW (--stapm-limit= --fast-limit= --slow-limit=; never --stapm-time, mis-wired for Strix Halo)
and `ryzenadj -i` reads them back from the PM table in W. Requests are checked against the
platform range (limits.py): check_profile_values holds the profile rules (the loader calls it
on every profile), plan checks again with the machine's values for the keys a profile leaves
alone (profiles built in code: the daemon's rules). A rollback writes back whatever was read,
up to TDP_HARD_CEILING_W (check_restore_state: a journal value above it is refused).
"""

from __future__ import annotations

import math

from halotune.machine.programs import ProgramError
from halotune.tuning import limits
from halotune.tuning.tunables.base import (Blame, InvalidTarget, Tunable, WriteFailed, is_number,
                                           order_error)

KEYS = {"power.stapm_w": "stapm_limit_w", "power.fast_w": "fast_limit_w",
        "power.slow_w": "slow_limit_w",
        # Not a profile key: journaled because a platform-profile write moves it too, so a
        # rollback restores it exactly.
        "power.apu_slow_w": "apu_slow_limit_w"}
PROFILE_KEYS = ("power.stapm_w", "power.slow_w", "power.fast_w")
# fast >= slow >= stapm: (higher, lower) pairs, in the order they are checked.
ORDER = (("power.slow_w", "power.stapm_w"), ("power.fast_w", "power.slow_w"),
         ("power.fast_w", "power.stapm_w"))
FLAGS = {"power.stapm_w": "stapm_mw", "power.fast_w": "fast_mw", "power.slow_w": "slow_mw",
         "power.apu_slow_w": "apu_slow_mw"}


class TdpLimits(Tunable):
    name = "tdp"
    keys = tuple(KEYS)
    apply_rank = 20
    rollback_rank = 40

    def _limits(self, ctx):
        if "ryzenadj" not in ctx.cache:
            ctx.cache["ryzenadj"] = ctx.ryzenadj.read_limits()
        return ctx.cache["ryzenadj"]

    def unavailable(self, ctx):
        lim = self._limits(ctx)
        if lim.source is None:
            return lim.hint or "ryzenadj did not report the limits"
        return None

    def unavailable_note(self, reason):
        return ("TDP limits unavailable (" + reason + "); the platform profile alone sets the "
                "power level. RyzenAdj >= 0.17 needs root and the ryzen_smu module, or /dev/mem "
                "(blocked under Secure Boot lockdown; iomem=relaxed otherwise)")

    def check_profile_values(self, values, blame=None):
        """Each limit within TDP_MIN_W and the profile's ceiling (power.max_w, else TDP_MAX_W),
        and fast >= slow >= stapm."""
        from halotune.tuning.loader import format_value as fv

        blame = blame or Blame()
        ceiling = values.get("power.max_w", limits.TDP_MAX_W)
        for k in PROFILE_KEYS:
            if k in values and not is_number(values[k]):
                return [InvalidTarget(k, values[k], "must be a number of watts")]
            if k in values and not limits.TDP_MIN_W <= values[k] <= ceiling:
                return [InvalidTarget(k, values[k], f"must be between {fv(limits.TDP_MIN_W)} "
                                                    f"and {fv(ceiling)}")]
        for hi, lo in ORDER:
            err = order_error(values, hi, lo, blame)
            if err:
                return [err]
        return []

    def check_restore_state(self, key, state):
        # What a rollback writes was read from the machine (a 140 W board, a 25 W quiet
        # mode), so not the profile range: any positive value up to the hard ceiling.
        if state is None or (is_number(state) and 0 < state <= limits.TDP_HARD_CEILING_W):
            return None
        return f"must be a number of watts above 0 and at most {limits.TDP_HARD_CEILING_W:g}"

    def read(self, ctx):
        lim = self._limits(ctx)
        return {k: getattr(lim, attr) for k, attr in KEYS.items()}

    def plan(self, ctx, targets, planned, current):
        out = {}
        for key in KEYS:
            if key in targets:
                v = targets[key]
                # A profile built in code (not by the loader) may carry anything: refuse what
                # is not a finite number rather than let float() raise.
                if isinstance(v, bool) or not isinstance(v, (int, float)) \
                        or not math.isfinite(v):
                    raise InvalidTarget(key, v, "must be a number of watts")
                out[key] = float(v)
        # The loader checks the profile's own values; here the merge with what the machine
        # keeps for keys the profile leaves alone must still hold fast >= slow >= stapm.
        merged = {k: out.get(k, current.get(k)) for k in ("power.stapm_w", "power.fast_w",
                                                          "power.slow_w")}
        f, s, st = merged["power.fast_w"], merged["power.slow_w"], merged["power.stapm_w"]
        if None not in (f, s) and f < s:
            raise InvalidTarget("power.fast_w", f, f"must be >= power.slow_w ({s:g} W)")
        if None not in (s, st) and s < st:
            raise InvalidTarget("power.slow_w", s, f"must be >= power.stapm_w ({st:g} W)")
        # The loader's range, again for profiles built in code (the daemon's rules): at least
        # TDP_MIN_W, at most the profile's power.max_w (the engine sets ctx.tdp_max_w) or
        # TDP_MAX_W. A value up to what the machine already runs is no raise (the thermal guard
        # steps a 140 W board down to 130 W); nothing ever above TDP_HARD_CEILING_W.
        stated = limits.TDP_MAX_W if ctx.tdp_max_w is None else float(ctx.tdp_max_w)
        for key, v in out.items():
            now = current.get(key)
            ceiling = min(max(stated, now if isinstance(now, (int, float)) else 0.0),
                          limits.TDP_HARD_CEILING_W)
            if not limits.TDP_MIN_W <= v <= ceiling:
                raise InvalidTarget(key, v, f"must be between {limits.TDP_MIN_W:g} and "
                                            f"{ceiling:g} W")
        return out

    def write(self, ctx, states, current):
        args = {FLAGS[k]: round(v * 1000) for k, v in states.items() if v is not None}
        try:
            ctx.ryzenadj.set_limits(**args)
        except ProgramError as e:
            raise WriteFailed(",".join(states), "ryzenadj", str(args), str(e)) from None
        ctx.writes.append(("ryzenadj", " ".join(f"{k}={v}" for k, v in args.items())))
        ctx.forget()

    def matches(self, key, current, target):
        if current is None or target is None:
            return current == target
        return abs(current - target) <= limits.TDP_VERIFY_TOLERANCE_W

    def show(self, key, state):
        return "-" if state is None else f"{state:g} W"


TUNABLES = [TdpLimits()]
