"""Which amdgpu device the GPU tunables act on: the Strix Halo iGPU, else the first APU,
else the first card (discovery order)."""

from __future__ import annotations

from halotune.machine.discovery import find_amd_gpus
from halotune.tuning.tunables.base import Context


def device_dir(ctx: Context) -> str | None:
    if "gpu_dir" not in ctx.cache:
        gpus = find_amd_gpus(ctx.fs)
        pick = (next((g for g in gpus if g.is_strix_halo), None)
                or next((g for g in gpus if g.known_apu), None)
                or (gpus[0] if gpus else None))
        ctx.cache["gpu_dir"] = pick.device_dir if pick else None
    return ctx.cache["gpu_dir"]
