"""The simulated Strix Halo: a sysfs/procfs tree that behaves like the amdgpu driver.

Reached only from the CLI (`halotune sim`, `status --demo`) and from tests; the rest of halotune
sees it as a root directory. Entry points: tree.lay_out, kernel.SimKernel, animate.Animator,
ryzenadj.main. README.md next to this file lists the CHOSEN values and the state.json keys.
"""
