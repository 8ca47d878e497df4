"""sysctl.*: VM and scheduler knobs that matter for large model weights in RAM.

Interface: /proc/sys/vm/swappiness (0-200 since Linux 5.8), vm/compaction_proactiveness
(0-100, Linux >= 5.9), kernel/numa_balancing (only with CONFIG_NUMA_BALANCING; 0-3). One
integer per file.
"""

from __future__ import annotations

from halotune.tuning import limits
from halotune.tuning.tunables.base import InvalidTarget, Tunable, is_int


class Sysctl(Tunable):
    apply_rank = 70
    rollback_rank = 70

    def __init__(self, key: str, rel: str, valid: tuple[int, int]):
        self.key, self.rel, self.valid = key, rel, valid
        self.name = key.replace(".", "_")
        self.keys = (key,)

    def unavailable(self, ctx):
        return None if ctx.fs.exists(self.rel) else f"{ctx.fs.path(self.rel)} does not exist"

    def read(self, ctx):
        return {self.key: ctx.fs.read_int(self.rel)}

    def _why_not(self, v) -> str | None:
        lo, hi = self.valid
        return None if is_int(v) and lo <= v <= hi else f"must be an integer between {lo} and {hi}"

    def check_profile_values(self, values, blame=None):
        why = self._why_not(values[self.key]) if self.key in values else None
        return [InvalidTarget(self.key, values[self.key], why)] if why else []

    def check_restore_state(self, key, state):
        # The kernel holds the same range for what it reports as for what it accepts.
        return None if state is None else self._why_not(state)

    def plan(self, ctx, targets, planned, current):
        v = targets[self.key]
        why = self._why_not(v)
        if why:
            raise InvalidTarget(self.key, v, why)
        return {self.key: v}

    def write(self, ctx, states, current):
        ctx.write(self.key, self.rel, str(states[self.key]))


TUNABLES = [
    Sysctl("sysctl.vm.swappiness", "proc/sys/vm/swappiness", limits.SWAPPINESS_RANGE),
    Sysctl("sysctl.vm.compaction_proactiveness", "proc/sys/vm/compaction_proactiveness",
           limits.COMPACTION_PROACTIVENESS_RANGE),
    Sysctl("sysctl.kernel.numa_balancing", "proc/sys/kernel/numa_balancing",
           limits.NUMA_BALANCING_RANGE),
]
