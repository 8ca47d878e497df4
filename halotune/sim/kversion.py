"""Which Linux version the simulated machine runs (`halotune sim DIR --kernel X.Y`).

Driver behaviour that changed between versions is modelled for each version it held in, and
every rule that depends on the version asks `at_least(state, ...)` (state["kernel"] is "X.Y").
The range is what Strix Halo owners run: gfx1151 support landed in 6.11 (earlier kernels do
not drive the GPU), and 6.17 is the kernel of the reference snapshot.
"""

from __future__ import annotations

import re

DEFAULT = "6.17"
OLDEST = (6, 11)
NEWEST = (6, 18)


def parse(text: str) -> tuple[int, int]:
    """"6.14" -> (6, 14); ValueError (with the supported range) for anything else."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    version = (int(m.group(1)), int(m.group(2))) if m else None
    if version is None or not OLDEST <= version <= NEWEST:
        raise ValueError(f"kernel version {text!r} is not modelled: give X.Y between "
                         f"{OLDEST[0]}.{OLDEST[1]} and {NEWEST[0]}.{NEWEST[1]}")
    return version


def normalize(text: str) -> str:
    major, minor = parse(text)
    return f"{major}.{minor}"


def of(state: dict) -> tuple[int, int]:
    return parse(state.get("kernel", DEFAULT))


def at_least(state: dict, major: int, minor: int) -> bool:
    """True when the simulated kernel is version major.minor or newer."""
    return of(state) >= (major, minor)


def release(kernel: str) -> str:
    """The uname -r of the simulated kernel: the reference snapshot's Ubuntu build for 6.17,
    an Ubuntu-style generic build of the same shape for the other versions."""
    major, minor = parse(kernel)
    return "6.17.0-5-generic" if (major, minor) == (6, 17) else f"{major}.{minor}.0-1-generic"
