"""power.stapm_w / fast_w / slow_w: the SMU power limits, through RyzenAdj.

amdgpu has no writable power limit on this APU. RyzenAdj (>= 0.17 for Strix Halo) sets them in
mW (--stapm-limit= --fast-limit= --slow-limit=; never --stapm-time, mis-wired for Strix Halo)
and `ryzenadj -i` reads them back from the PM table in W. Requests are checked against the
platform range (limits.py) by the profile loader and again here, for profiles built in code
(the daemon's rules); a rollback writes back whatever was read.
"""

from __future__ import annotations

import math

from halotune.machine.programs import ProgramError
from halotune.tuning import limits
from halotune.tuning.tunables.base import InvalidTarget, Tunable, WriteFailed

KEYS = {"power.stapm_w": "stapm_limit_w", "power.fast_w": "fast_limit_w",
        "power.slow_w": "slow_limit_w",
        # Not a profile key: journaled because a platform-profile write moves it too, so a
        # rollback restores it exactly.
        "power.apu_slow_w": "apu_slow_limit_w"}
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
        # TDP_MIN_W, at most the profile's power.max_w (the engine passes it in `planned`) or
        # TDP_MAX_W. A value up to what the machine already runs is no raise (the thermal guard
        # steps a 140 W board down to 130 W); nothing ever above TDP_HARD_CEILING_W.
        max_w = planned.get("power.max_w")
        stated = limits.TDP_MAX_W if max_w is None else float(max_w)
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
