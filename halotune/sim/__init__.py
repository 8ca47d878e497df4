"""The simulated Strix Halo: a sysfs/procfs tree that behaves like the amdgpu driver.

Reached only from the CLI (`halotune sim`, `status --demo`); the rest of halotune sees it as a
root directory.
"""
