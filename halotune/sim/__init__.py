"""The simulated Strix Halo: a sysfs/procfs tree that behaves like the amdgpu driver.

Reached only from the CLI (`halotune sim`, `status --demo`) and from tests; the rest of halotune
sees it as a root directory. Entry points: tree.lay_out, kernel.SimKernel, animate.Animator,
ryzenadj.main. README.md next to this file lists the CHOSEN values and the state.json keys.

The machine layer never imports this package: `wire()` hands RootFS the simulated kernel's
write and repair functions (the modules behind them load on the first write to a simulated
root, so wiring costs nothing at start-up).
"""

from __future__ import annotations


def _write(root: str, rel: str, value: str) -> None:
    from halotune.sim.kernel import SimKernel

    SimKernel(root).write(rel, value)


def _repair(root: str) -> None:
    from halotune.sim import store

    store.repair(root)


def wire() -> None:
    """Let RootFS answer writes under a simulated root with the simulated kernel."""
    from halotune.machine.rootfs import wire_simulator

    wire_simulator(_write, _repair)
