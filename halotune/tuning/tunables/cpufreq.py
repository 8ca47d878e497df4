"""Shared helpers for the per-policy cpufreq tunables (governor, EPP, boost).

Interface: sys/devices/system/cpu/cpufreq/policyN/* (one policy per logical CPU with
amd-pstate). States are {"policyN": value} so mixed machines are restored exactly.

Only active policies are read and written. A policy whose CPU is offline (SMT off, cpuN/online
0) keeps its directory, but cpufreq.c show()/store() answer EBUSY for every attribute of it
(policy_is_inactive, Linux 6.11-6.18): such a policy is left alone and named in a note.
"""

from __future__ import annotations

import re

from halotune.tuning.tunables.base import Context, WriteFailed

CPUFREQ = "sys/devices/system/cpu/cpufreq"
INACTIVE = "the CPU is offline (cpufreq answers EBUSY for an inactive policy)"


def all_policies(ctx: Context) -> list[str]:
    """Every policyN directory, active or not, in CPU order."""
    if "cpufreq_policies" not in ctx.cache:
        found = ctx.fs.glob(f"{CPUFREQ}/policy*")
        ctx.cache["cpufreq_policies"] = sorted(
            (p.rsplit("/", 1)[1] for p in found if re.fullmatch(r"policy\d+", p.rsplit("/", 1)[1])),
            key=lambda n: int(n[6:]))
    return ctx.cache["cpufreq_policies"]


def _active(ctx: Context, p: str) -> bool:
    # policyN/affected_cpus lists the policy's online CPUs; reading it fails (EBUSY) when
    # the policy is inactive. A tree without the file (an old capture) counts as active.
    rel = f"{CPUFREQ}/{p}/affected_cpus"
    text = ctx.fs.read_text(rel)
    if text is None:
        return ctx.fs.last_errors.get(rel) == "ENOENT"
    return bool(text.split())


def policies(ctx: Context) -> list[str]:
    """The active policies: the ones whose attributes can be read and written."""
    if "cpufreq_active" not in ctx.cache:
        ctx.cache["cpufreq_active"] = [p for p in all_policies(ctx) if _active(ctx, p)]
    return ctx.cache["cpufreq_active"]


def inactive(ctx: Context) -> list[str]:
    active = set(policies(ctx))
    return [p for p in all_policies(ctx) if p not in active]


def names(pols: list[str]) -> str:
    """policy16..policy31 as "policy16-31", gaps kept: "policy3, policy16-31"."""
    nums = sorted(int(p[6:]) for p in pols)
    parts, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(f"policy{nums[i]}" if i == j else f"policy{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(parts)


def skipped_note(ctx: Context) -> list[str]:
    """One note shared by the governor, EPP and boost tunables (the engine shows it once)."""
    off = inactive(ctx)
    if not off:
        return []
    return [f"cpufreq {names(off)} left alone: each one's CPU is offline (cpufreq answers "
            "EBUSY for an inactive policy); they keep their settings"]


def read_each(ctx: Context, attr: str) -> dict[str, str] | None:
    pols = policies(ctx)
    if not pols:
        return None
    return {p: ctx.fs.read_text(f"{CPUFREQ}/{p}/{attr}") for p in pols}


def refuse_inactive(key: str, attr: str, pending: dict) -> None:
    """A journaled value for a policy that is inactive now cannot be written back: say so
    (the engine keeps the key in the journal, so a later rollback retries it)."""
    if pending:
        shown = sorted(set(map(str, pending.values())))
        raise WriteFailed(key, f"cpufreq/{names(list(pending))}/{attr}", ", ".join(shown),
                          f"{INACTIVE}; kept in the journal: bring the CPU online "
                          "(e.g. SMT on) and run `halotune rollback` again")


def write_each(ctx: Context, key: str, attr: str, target: dict, current: dict | None) -> None:
    off = set(inactive(ctx))        # before the writes: each write empties ctx.cache
    pending = {}
    for p, value in target.items():
        if p in off:
            pending[p] = value
        elif current is None or current.get(p) != value:
            ctx.write(key, f"{CPUFREQ}/{p}/{attr}", str(value))
    refuse_inactive(key, attr, pending)
