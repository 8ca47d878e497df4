"""cpu.governor: the cpufreq governor of every active policy (amd-pstate-epp offers performance
and powersave). Written before EPP both ways: the EPP choices depend on the governor. Policies
of offline CPUs are left alone (see cpufreq.py)."""

from __future__ import annotations

from halotune.tuning.tunables import cpufreq
from halotune.tuning.tunables.base import Tunable, choices_error, restore_per_policy

KEY = "cpu.governor"


class CpuGovernor(Tunable):
    name = "cpu_governor"
    keys = (KEY,)
    affects = ("cpu.epp",)        # the performance governor forces EPP to performance
    apply_rank = 30
    rollback_rank = 50

    def unavailable(self, ctx):
        return None if cpufreq.policies(ctx) else "no cpufreq policies (cpufreq disabled?)"

    def check_restore_state(self, key, state):
        import re

        return restore_per_policy(state, lambda v: None if isinstance(v, str) and re.fullmatch(
            r"[a-z0-9][a-z0-9_]*", v) else "must be a governor name")

    def read(self, ctx):
        return {KEY: cpufreq.read_each(ctx, "scaling_governor")}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[KEY])
        out = {}
        for p in cpufreq.policies(ctx):
            rel = f"{cpufreq.CPUFREQ}/{p}/scaling_available_governors"
            choices = ctx.fs.read_list(rel) or []
            if value not in choices:
                raise choices_error(KEY, value, choices, rel)
            out[p] = value
        return {KEY: out}

    def write(self, ctx, states, current):
        cpufreq.write_each(ctx, KEY, "scaling_governor", states[KEY], current.get(KEY))

    def plan_notes(self, ctx, states):
        return cpufreq.skipped_note(ctx)


TUNABLES = [CpuGovernor()]
