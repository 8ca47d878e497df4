"""Who wins: one priority order for every source of a wanted profile.

hold > manual apply > thermal guard > battery > process rule > AC power > default profile.

Battery ranks above the process rules because any local user can start a process a rule
matches: that must never hold a high-power profile on battery. On mains the power-source rule
ranks below them, as a baseline the process rules raise.

A hold (taken by probe, validate and bench through the API) wins by freezing everything: no
rule switches and drift is not re-asserted while it lasts. A manual apply (API/CLI) wins over
every rule until a rollback. The thermal guard is an override on top of whichever profile wins
below it (a TDP ceiling), so it never names a profile of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY = ("hold", "manual", "thermal", "battery", "process", "power", "default")
RANK = {source: i for i, source in enumerate(PRIORITY)}


@dataclass(frozen=True)
class Candidate:
    source: str                 # one of PRIORITY
    profile: str | None         # profile name; None: the machine's original values
    why: str = ""               # what fired, for events ("llama-server (pid 42) runs")

    def __post_init__(self):
        if self.source not in RANK:
            raise ValueError(f"unknown source {self.source!r} (one of {', '.join(PRIORITY)})")


def arbitrate(candidates) -> tuple[str | None, str | None]:
    """(profile, source) of the highest-priority candidate; (None, None) when there is none
    (nothing wants a profile: the machine keeps, or returns to, its original values). The
    first candidate wins a tie within one source (process rules in configuration order)."""
    best = None
    for c in candidates:
        if c is not None and (best is None or RANK[c.source] < RANK[best.source]):
            best = c
    return (None, None) if best is None else (best.profile, best.source)


def winner(candidates) -> Candidate | None:
    """The winning candidate itself (same order as arbitrate)."""
    best = None
    for c in candidates:
        if c is not None and (best is None or RANK[c.source] < RANK[best.source]):
            best = c
    return best


def outranks(a: str, b: str | None) -> bool:
    """True when source `a` wins over source `b` (anything wins over no source)."""
    return b is None or RANK[a] < RANK[b]
