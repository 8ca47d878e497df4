"""thp.enabled / thp.defrag: transparent hugepages.

Interface: sys/kernel/mm/transparent_hugepage/{enabled,defrag}: the choices with the current
one in brackets (`always [madvise] never`); write one bare word.
"""

from __future__ import annotations

from halotune.machine import parse
from halotune.tuning.tunables.base import Tunable, choices_error, restore_choice

THP = "sys/kernel/mm/transparent_hugepage"
# Every choice the kernel offers (mm/huge_memory.c, enabled_store / defrag_store; the THP ABI
# in Documentation/admin-guide/mm/transhuge.rst): the schema's choices, and what a restore may
# write.
CHOICES = {"enabled": ("always", "madvise", "never"),
           "defrag": ("always", "defer", "defer+madvise", "madvise", "never")}


class Thp(Tunable):
    apply_rank = 72
    rollback_rank = 72

    def __init__(self, attr: str):
        self.attr = attr
        self.rel = f"{THP}/{attr}"
        self.key = f"thp.{attr}"
        self.name = f"thp_{attr}"
        self.keys = (self.key,)

    def unavailable(self, ctx):
        return None if ctx.fs.exists(self.rel) else "transparent hugepages not built into this kernel"

    def check_restore_state(self, key, state):
        return restore_choice(state, CHOICES[self.attr], self.rel)

    def read(self, ctx):
        return {self.key: parse.parse_bracket_choice(ctx.fs.read_text(self.rel))[0]}

    def plan(self, ctx, targets, planned, current):
        value = str(targets[self.key])
        choices = parse.parse_bracket_choice(ctx.fs.read_text(self.rel))[1]
        if value not in choices:
            raise choices_error(self.key, value, choices, self.rel)
        return {self.key: value}

    def write(self, ctx, states, current):
        ctx.write(self.key, self.rel, states[self.key])


TUNABLES = [Thp("enabled"), Thp("defrag")]
