"""Optional cross-check through libdrm (pyamdgpuinfo, extra `halotune[amdgpuinfo]`).

libdrm asks the kernel through the DRM ioctls (AMDGPU_INFO_*), a path independent of the sysfs
files the rest of halotune reads, so agreement between the two is evidence that a reading is
right. It needs a real GPU behind /dev/dri: it cannot read a fake tree, so it runs only when
the root is "/". Absent module or device: None, never an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class LibdrmReading:
    pci_slot: str | None
    vram_used_bytes: int | None = None
    gtt_used_bytes: int | None = None
    vram_total_bytes: int | None = None
    gtt_total_bytes: int | None = None
    sclk_mhz: int | None = None
    load_percent: float | None = None


def _call(obj, name: str):
    fn = getattr(obj, name, None)
    try:
        return fn() if callable(fn) else None
    except Exception:  # noqa: BLE001 - a libdrm query can fail per ASIC; absence is fine
        return None


def read_libdrm(root: str, module=None, dri_dir: str = "/dev/dri") -> list[LibdrmReading] | None:
    """One reading per GPU pyamdgpuinfo sees, or None when the cross-check cannot run here."""
    if os.path.abspath(root) != "/" or not os.path.isdir(dri_dir):
        return None
    if module is None:
        try:
            import pyamdgpuinfo as module  # GPL-3.0-only, optional
        except ImportError:
            return None
    try:
        count = module.detect_gpus()
    except Exception:  # noqa: BLE001 - no permission on /dev/dri, no amdgpu
        return None
    out = []
    for i in range(count):
        try:
            gpu = module.get_gpu(i)
        except Exception:  # noqa: BLE001
            continue
        info = getattr(gpu, "memory_info", None) or {}
        sclk_hz = _call(gpu, "query_sclk")
        load = _call(gpu, "query_load")
        out.append(LibdrmReading(
            pci_slot=getattr(gpu, "pci_slot", None),
            vram_used_bytes=_call(gpu, "query_vram_usage"),
            gtt_used_bytes=_call(gpu, "query_gtt_usage"),
            vram_total_bytes=info.get("vram_size"), gtt_total_bytes=info.get("gtt_size"),
            sclk_mhz=None if sclk_hz is None else int(sclk_hz // 1_000_000),
            load_percent=None if load is None else round(load * 100, 1),
        ))
    return out
