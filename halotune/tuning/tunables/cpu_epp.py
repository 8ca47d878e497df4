"""cpu.epp: amd-pstate energy_performance_preference of every policy.

Interface: policyN/energy_performance_preference and energy_performance_available_preferences
(amd-pstate-epp, Linux >= 6.3). Under the performance governor the choices shrink to
`performance` and any other write fails with EBUSY, so a target is checked against the state
*after* the planned governor write, and EPP is written after the governor both ways.

`default` is a real write: amd-pstate loads the firmware's preference (epp_default) and the
file then reads back as that value's name, never "default" (amd-pstate.c
amd_pstate_set_energy_pref_index / show_energy_performance_preference, 6.11-6.18). So it is
always written, and verified against the name the file shows after the write (`settled`).
Policies of offline CPUs are left alone (see cpufreq.py).
"""

from __future__ import annotations

from halotune.tuning.tunables import cpufreq
from halotune.tuning.tunables.base import (Blame, InvalidTarget, Tunable, choices_error,
                                           restore_per_policy)

KEY = "cpu.epp"
ALL_EPP = ["default", "performance", "balance_performance", "balance_power", "power"]


class CpuEpp(Tunable):
    name = "cpu_epp"
    keys = (KEY,)
    apply_rank = 40
    rollback_rank = 60

    def unavailable(self, ctx):
        pols = cpufreq.policies(ctx)
        if not pols:
            return "no cpufreq policies"
        if not ctx.fs.exists(f"{cpufreq.CPUFREQ}/{pols[0]}/energy_performance_preference"):
            return "no energy_performance_preference (amd-pstate not in active/EPP mode)"
        return None

    def check_profile_values(self, values, blame=None):
        """amd-pstate answers EBUSY to any EPP but performance under the performance governor."""
        from halotune.tuning.loader import format_value as fv

        blame, gov = blame or Blame(), "cpu.governor"
        if values.get(gov) == "performance" and KEY in values and values[KEY] != "performance":
            if blame.pick(KEY, gov) == KEY:
                return [InvalidTarget(KEY, values[KEY], f'the performance governor accepts only '
                                      f'"performance" ({gov} = "performance"{blame.where(gov, KEY)})')]
            return [InvalidTarget(gov, values[gov], f'accepts only {KEY} = "performance" (it is '
                                  f'{fv(values[KEY])}{blame.where(KEY, gov)})')]
        return []

    def check_restore_state(self, key, state):
        return restore_per_policy(state, lambda v: None if v is None or v in ALL_EPP else
                                  "must be one of " + ", ".join(ALL_EPP))

    def read(self, ctx):
        return {KEY: cpufreq.read_each(ctx, "energy_performance_preference")}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[KEY])
        # The governor this policy will have once the plan's earlier writes are done.
        governors = planned.get("cpu.governor") or cpufreq.read_each(ctx, "scaling_governor") or {}
        out = {}
        for p in cpufreq.policies(ctx):
            gov = governors.get(p)
            rel = f"{cpufreq.CPUFREQ}/{p}/energy_performance_available_preferences"
            if gov == "performance":
                if value != "performance":
                    raise InvalidTarget(KEY, value, f"must be performance under the performance "
                                                    f"governor ({p}; the kernel answers EBUSY)")
            else:
                live = ctx.fs.read_list(rel) or []
                # The live list reflects the governor now; if it is changing away from
                # performance, the full list becomes available.
                choices = live if len(live) > 1 else ALL_EPP
                if value not in choices:
                    raise choices_error(KEY, value, choices, rel)
            out[p] = value
        return {KEY: out}

    def write(self, ctx, states, current):
        cpufreq.write_each(ctx, KEY, "energy_performance_preference", states[KEY],
                           current.get(KEY))

    def settled(self, ctx, key, target):
        """After a write of `default`, what each policy shows is the value to verify."""
        if not isinstance(target, dict) or "default" not in target.values():
            return target
        now = self.read(ctx)[KEY] or {}
        return {p: now.get(p, v) if v == "default" else v for p, v in target.items()}

    def plan_notes(self, ctx, states):
        return cpufreq.skipped_note(ctx)


TUNABLES = [CpuEpp()]
