"""cpu.boost: CPU boost, global (cpufreq/boost, 0/1) and per policy where amd-pstate has it
(policyN/boost, believed Linux 6.11+, UNCONFIRMED). State: {"global": 0|1, "policyN": 0|1}.
Policies of offline CPUs are left alone: their files answer EBUSY, and a global write does not
touch their flag (cpufreq_boost_trigger_state: for_each_active_policy)."""

from __future__ import annotations

from halotune.tuning.tunables import cpufreq
from halotune.tuning.tunables.base import Tunable, WriteFailed, restore_per_policy

KEY = "cpu.boost"
GLOBAL = f"{cpufreq.CPUFREQ}/boost"


class CpuBoost(Tunable):
    name = "cpu_boost"
    keys = (KEY,)
    apply_rank = 45
    rollback_rank = 65

    def _files(self, ctx) -> dict[str, str]:
        files = {}
        if ctx.fs.exists(GLOBAL):
            files["global"] = GLOBAL
        for p in cpufreq.policies(ctx):
            rel = f"{cpufreq.CPUFREQ}/{p}/boost"
            if ctx.fs.exists(rel):
                files[p] = rel
        return files

    def unavailable(self, ctx):
        return None if self._files(ctx) else "no cpufreq boost control on this kernel/driver"

    def check_restore_state(self, key, state):
        def check(v):
            return None if v is None or (v in (0, 1) and not isinstance(v, bool)) \
                else "must be 0 or 1"
        return restore_per_policy(state, check, names=r"global|policy\d+")

    def read(self, ctx):
        return {KEY: {name: ctx.fs.read_int(rel) for name, rel in self._files(ctx).items()}}

    def plan(self, ctx, targets, planned, current):
        value = 1 if targets[KEY] else 0
        return {KEY: {name: value for name in self._files(ctx)}}

    def write(self, ctx, states, current):
        files, want = self._files(ctx), states[KEY]
        cur = dict(current.get(KEY) or {})
        glob = want.get("global")
        # Per-policy boost is refused while the global switch is off, and a global write sets
        # every policy's flag (Linux 6.15+): enable globally first, disable globally last.
        if glob == 1 and cur.get("global") != 1:
            ctx.write(KEY, files["global"], "1")
            cur = self.read(ctx)[KEY]
        off = set(cpufreq.inactive(ctx))
        pending = {}
        for name, value in want.items():
            if name != "global" and cur.get(name) != value:
                if name in off:              # journaled while its CPU was online
                    pending[name] = value
                    continue
                if name not in files:        # a journaled policy this machine does not have
                    raise WriteFailed(KEY, f"cpufreq/{name}/boost", value,
                                      "no such cpufreq policy on this machine")
                ctx.write(KEY, files[name], str(value))
        if glob == 0 and cur.get("global") != 0:
            ctx.write(KEY, files["global"], "0")
        cpufreq.refuse_inactive(KEY, "boost", pending)

    def plan_notes(self, ctx, states):
        return cpufreq.skipped_note(ctx)

    def show(self, key, state):
        if isinstance(state, dict) and state:
            vals = set(state.values())
            if len(vals) == 1:
                return "on" if vals.pop() else "off"
        return super().show(key, state)


TUNABLES = [CpuBoost()]
