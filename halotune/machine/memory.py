"""System memory and the GTT (ttm) knobs.

Interfaces: /proc/meminfo (kB); sys/module/ttm/parameters/{pages_limit,page_pool_size} (4 KiB
pages; `amdttm` instead with the ROCm DKMS driver); sys/module/amdgpu/parameters/gttsize (MiB,
0600 root-only, deprecated since ~6.14); /proc/cmdline for what was asked at boot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halotune.machine import parse
from halotune.machine.rootfs import RootFS

PAGE_SIZE = 4096
# Written by halotune's memory.gtt_gib tunable; read here to report a pending reboot.
GTT_CONF = "etc/modprobe.d/halotune-gtt.conf"


def pages_in_conf(text: str | None) -> int | None:
    """pages_limit from modprobe.d text (`options ttm pages_limit=N ...`; amdttm with DKMS)."""
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "options" and words[1] in ("ttm", "amdttm"):
            for w in words[2:]:
                k, _, v = w.partition("=")
                if k == "pages_limit" and parse.is_uint(v):
                    return int(v)
    return None


@dataclass
class MemoryReading:
    meminfo: dict[str, int] = field(default_factory=dict)
    ttm_module: str | None = None
    ttm_pages_limit: int | None = None
    ttm_page_pool_size: int | None = None
    ttm_dma32_pages_limit: int | None = None
    amdgpu_gttsize_mib: int | None = None
    amdgpu_gttsize_readable: bool = True
    gtt_conf_pages: int | None = None      # pages_limit halotune wrote for the next boot


class MemoryReader:
    def __init__(self, fs: RootFS):
        self.fs = fs
        self._meminfo = fs.hot("proc/meminfo", 16 * 1024)
        # The ROCm DKMS driver ships its own TTM named amdttm; the in-kernel driver uses ttm.
        self.ttm_module = next((m for m in ("amdttm", "ttm")
                                if fs.exists(f"sys/module/{m}/parameters/pages_limit")), None)

    def read_meminfo(self) -> dict[str, int]:
        return parse.parse_meminfo(self._meminfo.read_text())

    def read(self) -> MemoryReading:
        fs, r = self.fs, MemoryReading()
        r.meminfo = self.read_meminfo()
        r.ttm_module = self.ttm_module
        if self.ttm_module:
            p = f"sys/module/{self.ttm_module}/parameters"
            r.ttm_pages_limit = fs.hot_int(f"{p}/pages_limit")
            r.ttm_page_pool_size = fs.hot_int(f"{p}/page_pool_size")
            r.ttm_dma32_pages_limit = fs.hot_int(f"{p}/dma32_pages_limit")
        r.amdgpu_gttsize_mib = fs.hot_int("sys/module/amdgpu/parameters/gttsize")
        r.amdgpu_gttsize_readable = "sys/module/amdgpu/parameters/gttsize" not in fs.last_errors
        r.gtt_conf_pages = pages_in_conf(fs.hot_text(GTT_CONF))
        return r
