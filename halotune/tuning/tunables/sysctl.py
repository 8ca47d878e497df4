"""sysctl.*: VM and scheduler knobs that matter for large model weights in RAM.

Interface: /proc/sys/vm/swappiness (0-200 since Linux 5.8), vm/compaction_proactiveness
(0-100, Linux >= 5.9), kernel/numa_balancing (only with CONFIG_NUMA_BALANCING; 0-3). One
integer per file.
"""

from __future__ import annotations

from halotune.tuning import limits
from halotune.tuning.tunables.base import InvalidTarget, Tunable


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

    def plan(self, ctx, targets, planned, current):
        v = targets[self.key]
        lo, hi = self.valid
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise InvalidTarget(self.key, v, f"must be an integer between {lo} and {hi}")
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
