"""The one place the machine layer knows about the simulated Strix Halo.

A tree laid out by `halotune sim` carries a `.halotune-sim/` directory at its root. Writes under
such a root are answered by the simulator's driver rules (halotune/sim/kernel.py) instead of the
plain file: EINVAL for values outside the choices, EBUSY for an EPP write under the performance
governor, EACCES for read-only attributes, command files re-rendered rather than overwritten,
and every write appended to `.halotune-sim/writes.log`. The rules run in the writing process
under a lock shared with the animator, so they hold whether or not `sim --animate` is running.
"""

from __future__ import annotations


def write(root: str, rel: str, value: str) -> None:
    """Apply one attribute write to the simulated kernel; raises OSError like the driver."""
    from halotune.sim.kernel import SimKernel

    SimKernel(root).write(rel, value)
