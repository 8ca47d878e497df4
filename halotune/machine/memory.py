"""System memory and the GTT (ttm) knobs.

Interfaces: /proc/meminfo (kB); sys/module/ttm/parameters/{pages_limit,page_pool_size} (4 KiB
pages; `amdttm` instead with the ROCm DKMS driver); sys/module/amdgpu/parameters/gttsize (MiB,
0600 root-only, deprecated since ~6.14); /proc/cmdline and modprobe.d (modprobe.py) for what
the next boot asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halotune.machine import modprobe, parse
from halotune.machine.modprobe import ModuleOption
from halotune.machine.platform import read_kernel_release
from halotune.machine.rootfs import RootFS

PAGE_SIZE = 4096
# Written by halotune's memory.gtt_gib tunable; read here to report a pending reboot.
GTT_CONF = "etc/modprobe.d/halotune-gtt.conf"
GTTSIZE_MIN_MIB = 32     # amdgpu_device_check_arguments: a smaller gttsize falls back to -1


@dataclass
class GttNextBoot:
    """The GTT size the next boot gives amdgpu, and what sets it.

    amdgpu_ttm_init (drivers/gpu/drm/amd/amdgpu/amdgpu_ttm.c, 6.11-6.18): GTT is
    ttm_tt_pages_limit() pages, unless amdgpu.gttsize (MiB, deprecated: a drm_warn since
    ~6.15) is set, which wins. ttm_tt_mgr_init / ttm_global_init (drivers/gpu/drm/ttm/ttm_tt.c,
    ttm_device.c): pages_limit 0 (unset) becomes half of RAM in pages. With the ROCm DKMS
    driver the limit is amdttm's. A value the kernel cannot parse makes the module fail to load.
    """

    ttm_module: str                      # "ttm" or "amdttm": whose pages_limit counts
    bytes: int | None = None             # None: unknown (malformed option, no MemTotal)
    source: ModuleOption | None = None   # the winning option; None: the kernel's default
    overridden: list[ModuleOption] = field(default_factory=list)   # same setting, lost
    problem: str | None = None

    @property
    def where(self) -> str:
        return self.source.where if self.source else "kernel default (half of RAM)"


def _kstrtol(value: str | None) -> int | None:
    """kstrtol/kstrtoul with base 0 (param_set_int/ulong): 0x hex, leading 0 octal."""
    if value is None:
        return None
    v = value.strip()
    sign = -1 if v.startswith("-") else 1
    v = v[1:] if v[:1] in ("+", "-") else v
    try:
        if v.lower().startswith("0x"):
            n = int(v[2:], 16)
        elif len(v) > 1 and v.startswith("0"):
            n = int(v[1:], 8)
        else:
            n = int(v, 10)
    except ValueError:
        return None
    return sign * n


def ttm_module_of(fs: RootFS) -> str:
    """The TTM amdgpu uses: the ROCm DKMS driver's amdttm when loaded, else ttm."""
    return "amdttm" if fs.exists("sys/module/amdttm") else "ttm"


def gtt_next_boot(fs: RootFS, overlay: dict[str, str | None] | None = None) -> GttNextBoot:
    """What amdgpu_ttm_init will size GTT to at the next boot (see GttNextBoot); `overlay`:
    modprobe.d files about to be written (modprobe.conf_files)."""
    module = ttm_module_of(fs)
    opts = modprobe.boot_options(fs, modprobe.builtin_modules(fs, read_kernel_release(fs)),
                                 overlay)
    out = GttNextBoot(module)
    if fs.read_text("proc/cmdline") is None:     # its module.param words would win: unknown
        out.problem = ("/proc/cmdline cannot be read: the next boot's GTT size is unknown (the "
                       "kernel command line overrides modprobe.d)")
        return out
    gttsize = modprobe.settings(opts, "amdgpu", "gttsize")
    if gttsize:
        mib = _kstrtol(gttsize[-1].value)
        if mib is None:
            out.problem = (f"{gttsize[-1].where}: amdgpu gttsize={gttsize[-1].value} is not a "
                           "number: amdgpu would refuse to load")
            return out
        if mib != -1 and mib >= GTTSIZE_MIN_MIB:
            out.bytes, out.source, out.overridden = mib << 20, gttsize[-1], gttsize[:-1]
            return out
    pages = modprobe.settings(opts, module, "pages_limit")
    n = 0
    if pages:
        n = _kstrtol(pages[-1].value)
        if n is None or n < 0:
            out.problem = (f"{pages[-1].where}: {module} pages_limit={pages[-1].value} is not a "
                           f"number: {module} would refuse to load")
            return out
        out.overridden = pages[:-1]
        if n:
            out.source = pages[-1]
    if not n:
        mem_total = parse.parse_meminfo(fs.read_text("proc/meminfo")).get("MemTotal")
        n = mem_total // PAGE_SIZE // 2 if mem_total else None
    out.bytes = n * PAGE_SIZE if n else None
    return out


def live_gtt_bytes(gtt_total: int | None, reading: "MemoryReading") -> int | None:
    """The running GTT size: mem_info_gtt_total when a GPU reports it, else what the live
    module parameters say amdgpu_ttm_init chose."""
    if gtt_total is not None:
        return gtt_total
    if reading.amdgpu_gttsize_mib is not None and reading.amdgpu_gttsize_mib >= GTTSIZE_MIN_MIB:
        return reading.amdgpu_gttsize_mib << 20
    return reading.ttm_pages_limit * PAGE_SIZE if reading.ttm_pages_limit else None


def pending_gtt_bytes(next_boot: GttNextBoot | None, live: int | None,
                      reading: "MemoryReading | None" = None) -> int | None:
    """The next boot's GTT size when it differs from the running one (a reboot is pending).

    When nothing configures GTT (the kernel's default, half of RAM), the running kernel's own
    module parameters must show the change (a configured limit or gttsize that is gone): the
    default is an estimate from MemTotal, not a value read back, so it never makes a pending
    change on its own."""
    if next_boot is None or next_boot.bytes is None or next_boot.bytes == live:
        return None
    if next_boot.source is None:
        if reading is None or not reading.ttm_pages_limit:
            return None
        gttsize_live = (reading.amdgpu_gttsize_mib or -1) >= GTTSIZE_MIN_MIB
        if reading.ttm_pages_limit * PAGE_SIZE == next_boot.bytes and not gttsize_live:
            return None
    return next_boot.bytes


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
    gtt_next_boot: GttNextBoot | None = None   # what every modprobe.d file + cmdline give


class MemoryReader:
    def __init__(self, fs: RootFS):
        self.fs = fs
        self._meminfo = fs.hot("proc/meminfo", 16 * 1024)
        # The ROCm DKMS driver ships its own TTM named amdttm; the in-kernel driver uses ttm.
        self.ttm_module = next((m for m in ("amdttm", "ttm")
                                if fs.exists(f"sys/module/{m}/parameters/pages_limit")), None)
        self._next_boot_cache: tuple[tuple, GttNextBoot] | None = None

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
        r.gtt_next_boot = self._next_boot()
        return r

    def _next_boot(self) -> GttNextBoot:
        # Recomputed only when a modprobe.d directory or file changed (kmod's own
        # path_stamps idea): a sample must not re-read every config file.
        stamp = modprobe.stamp(self.fs)
        if self._next_boot_cache is None or self._next_boot_cache[0] != stamp:
            self._next_boot_cache = (stamp, gtt_next_boot(self.fs))
        return self._next_boot_cache[1]
