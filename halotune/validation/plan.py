"""The order of the runs: A B A B.

Every round visits every profile once, in the same order, so slow drift (a warming room, a
filling page cache, a throttling fan curve) and bursts of noise fall on all profiles alike
instead of on whichever profile ran last.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    index: int          # 0-based position in the whole run
    round: int          # 1-based
    profile: str

    def to_dict(self) -> dict:
        return {"index": self.index, "round": self.round, "profile": self.profile}


def alternating_order(names: list[str], rounds: int) -> list[Step]:
    """[A, B, C] x 2 rounds -> A B C A B C (never A A B B). Names keep their given order;
    duplicates are dropped."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    unique = list(dict.fromkeys(names))
    return [Step(r * len(unique) + i, r + 1, n)
            for r in range(rounds) for i, n in enumerate(unique)]
