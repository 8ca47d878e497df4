"""The telemetry snapshot: one typed record per sample, and its stable JSON form.

Plain dataclasses, not pydantic: a one-shot `halotune status --json` must stay within ~100 ms,
and importing pydantic alone costs ~70 ms (measured with python -X importtime). Validation of
user input (profiles, config, API messages) uses pydantic elsewhere.

JSON contract "halotune.status/1": every key below is always present; a value the machine does
not provide is null, never absent. Units are in the names: _w watts (float), _c degC, _bytes
and _bytes_per_s integers, _mhz, _percent. New keys may be added; none may be renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA = "halotune.status/1"
GIB = 1 << 30


@dataclass
class GpuSnapshot:
    card: str
    pci_slot: str | None
    device_id: str | None                # "0x1586"; None when the kernel gave no device id
    gfx_target: str | None               # "gfx1151"
    name: str
    is_apu: bool | None = None
    revision: str | None = None
    subsystem: str | None = None
    busy_percent: float | None = None
    sclk_mhz: int | None = None
    sclk_limit_mhz: int | None = None    # OD_SCLK soft maximum in force (pp_od_clk_voltage)
    sclk_min_mhz: int | None = None      # OD_SCLK hard minimum in force
    sclk_range_mhz: list[int] | None = None   # OD_RANGE [min, max] the hardware allows
    gfx_maxfreq_mhz: int | None = None   # gpu_metrics current_gfx_maxfreq: the limit in force
    mclk_mhz: int | None = None
    fclk_mhz: int | None = None
    socclk_mhz: int | None = None
    edge_temp_c: float | None = None
    soc_temp_c: float | None = None
    hotspot_temp_c: float | None = None
    mem_temp_c: float | None = None
    skin_temp_c: float | None = None
    socket_power_w: float | None = None
    gfx_power_w: float | None = None
    power_cap_w: float | None = None
    performance_level: str | None = None
    vram_total_bytes: int | None = None
    vram_used_bytes: int | None = None
    gtt_total_bytes: int | None = None
    gtt_used_bytes: int | None = None
    dram_read_bytes_per_s: int | None = None
    dram_write_bytes_per_s: int | None = None
    dram_counters_saturated: bool = False
    vcn_busy_percent: float | None = None
    throttle_residency: dict[str, int | None] | None = None
    gpu_metrics_version: str | None = None
    smc_fw_version: str | None = None
    vbios_version: str | None = None
    runtime_status: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class MemorySnapshot:
    system_total_bytes: int | None = None
    system_available_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_used_bytes: int | None = None
    ttm_pages_limit: int | None = None
    ttm_page_pool_size: int | None = None
    ttm_module: str | None = None                 # "ttm" or "amdttm"
    amdgpu_gttsize_mib: int | None = None         # deprecated module parameter; -1 = unset
    gtt_pending_bytes: int | None = None          # a boot-time GTT change waiting for reboot
    gpu_usable_bytes: int | None = None
    gpu_usable_explained: str | None = None


@dataclass
class PowerSnapshot:
    platform_profile: str | None = None
    platform_profile_choices: list[str] = field(default_factory=list)
    stapm_limit_w: float | None = None
    fast_limit_w: float | None = None
    slow_limit_w: float | None = None
    apu_slow_limit_w: float | None = None
    limits_source: str | None = None              # "ryzenadj" or null
    limits_hint: str | None = None                # why the limits are null, what to do
    socket_power_w: float | None = None           # APU package power (CPU + GPU + SoC)
    on_ac_power: bool | None = None


@dataclass
class CpuSnapshot:
    utilization_percent: float | None = None
    utilization_source: str | None = None
    per_cpu_utilization_percent: list[float] | None = None
    governor: str | None = None
    governors_mixed: bool = False
    epp: str | None = None
    epp_mixed: bool = False
    scaling_driver: str | None = None
    amd_pstate_status: str | None = None
    governor_choices: list[str] = field(default_factory=list)
    epp_choices: list[str] = field(default_factory=list)
    logical_cpus: int | None = None
    freq_mhz_avg: float | None = None
    freq_mhz_max: float | None = None
    min_freq_mhz: float | None = None
    max_freq_mhz: float | None = None
    boost: bool | None = None
    temp_c: float | None = None                   # hottest core (gpu_metrics per-core)
    core_temps_c: list[float | None] | None = None
    power_w: float | None = None                  # all-core power (gpu_metrics)
    core_power_w: list[float | None] | None = None
    core_c0_percent: list[float | None] | None = None
    core_maxfreq_mhz: int | None = None           # gpu_metrics current_core_maxfreq


@dataclass
class NpuSnapshot:
    activity_percent: float | None = None
    power_w: float | None = None
    read_bytes_per_s: int | None = None
    write_bytes_per_s: int | None = None


@dataclass
class Snapshot:
    time: str                                     # RFC 3339 UTC, "Z"
    root: str
    gpus: list[GpuSnapshot] = field(default_factory=list)
    memory: MemorySnapshot = field(default_factory=MemorySnapshot)
    power: PowerSnapshot = field(default_factory=PowerSnapshot)
    cpu: CpuSnapshot = field(default_factory=CpuSnapshot)
    npu: NpuSnapshot = field(default_factory=NpuSnapshot)
    pending_reboot: list[dict] = field(default_factory=list)
    kernel_release: str | None = None
    boot_id: str | None = None
    halotune_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    cross_check: list[dict] | None = None         # status --cross-check: sysfs vs libdrm rows
    # GPU clients of the host (halotune.machine.drmclients): one row per process and device,
    # {pid, name, pci_slot, driver, clients, vram_bytes, gtt_bytes, engine_gfx_percent,
    # engine_compute_percent, kfd}. Empty on a fake tree (no host processes there).
    processes: list[dict] = field(default_factory=list)
    schema: str = SCHEMA

    @property
    def primary_gpu(self) -> GpuSnapshot | None:
        """The integrated GPU when there is one (Strix Halo first), else the first card."""
        for g in self.gpus:
            if g.gfx_target == "gfx1151":
                return g
        return next((g for g in self.gpus if g.is_apu), self.gpus[0] if self.gpus else None)

    def to_dict(self) -> dict:
        d = _plain(self)
        # schema first: readers identify the document before anything else
        return {"schema": d.pop("schema"), **d}


def _plain(obj):
    """dataclasses.asdict without its deep copies (3x faster; snapshots hold no shared state)."""
    if hasattr(obj, "__dataclass_fields__"):
        return {name: _plain(getattr(obj, name)) for name in obj.__dataclass_fields__}
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def gpu_usable_bytes(vram_total: int | None, gtt_total: int | None, mem_total: int | None,
                     is_apu: bool | None) -> int | None:
    """Memory a GPU can place model weights in.

    On an APU the GTT is system RAM: the GPU can map up to the GTT size, but never more than
    the RAM the OS keeps for itself allows (MemTotal less ~4 GiB for the OS). Adding
    GTT to RAM, or GTT to VRAM without the cap, overcounts. On a dGPU it is the VRAM.
    """
    if vram_total is None:
        return None
    if not is_apu:
        return vram_total
    if gtt_total is None or mem_total is None:
        return vram_total
    return vram_total + max(0, min(gtt_total, mem_total - 4 * GIB))
