"""Shared helpers for the per-policy cpufreq tunables (governor, EPP, boost).

Interface: sys/devices/system/cpu/cpufreq/policyN/* (one policy per logical CPU with
amd-pstate). States are {"policyN": value} so mixed machines are restored exactly.
"""

from __future__ import annotations

import re

from halotune.tuning.tunables.base import Context

CPUFREQ = "sys/devices/system/cpu/cpufreq"


def policies(ctx: Context) -> list[str]:
    if "cpufreq_policies" not in ctx.cache:
        found = ctx.fs.glob(f"{CPUFREQ}/policy*")
        ctx.cache["cpufreq_policies"] = sorted(
            (p.rsplit("/", 1)[1] for p in found if re.fullmatch(r"policy\d+", p.rsplit("/", 1)[1])),
            key=lambda n: int(n[6:]))
    return ctx.cache["cpufreq_policies"]


def read_each(ctx: Context, attr: str) -> dict[str, str] | None:
    pols = policies(ctx)
    if not pols:
        return None
    return {p: ctx.fs.read_text(f"{CPUFREQ}/{p}/{attr}") for p in pols}


def write_each(ctx: Context, key: str, attr: str, target: dict, current: dict | None) -> None:
    for p, value in target.items():
        if current is None or current.get(p) != value:
            ctx.write(key, f"{CPUFREQ}/{p}/{attr}", str(value))
