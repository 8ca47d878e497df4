"""Tunables: one module per kind, each exporting TUNABLES (instances of base.Tunable).

Adding a tunable is adding one file here; the registry finds it by listing the package.
"""

from __future__ import annotations

import importlib
import pkgutil

from halotune.tuning.tunables.base import Tunable

_HELPERS = {"base", "cpufreq", "gpu"}


def all_tunables() -> list[Tunable]:
    found: list[Tunable] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _HELPERS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "TUNABLES", []))
    keys = [k for t in found for k in t.keys]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise RuntimeError(f"profile keys owned by two tunables: {sorted(dupes)}")
    return found


def by_key() -> dict[str, Tunable]:
    return {k: t for t in all_tunables() for k in t.keys}
