"""Decoder for amdgpu's binary `gpu_metrics` table (device/gpu_metrics).

Interface: drivers/gpu/drm/amd/include/kgd_pp_interface.h, `struct gpu_metrics_vX_Y`, read as
one little-endian blob; the header's (format_revision, content_revision) names the layout
(Linux >= 5.8 for v1.0; v3.0 = SMU 14.0.x APUs such as Strix Halo, Linux >= 6.8).

Rules kept here (sources in ../shared/reference/gpu-metrics-layouts.md):
- dispatch on the header version bytes, never on the length (v1.3, v2.0 and v2.1 are all 120 B);
- a known version with a short blob decodes the available prefix, the rest reads "not provided";
- the driver memsets the struct to 0xFF first, so all-ones means "not provided" -> None;
- units differ by format: v1.x degC / % / W, v2.x centi-degC / centi-% / mW, v3.0 centi-degC /
  % / mW; Renoir's v2 socket power is W on newer firmware.
- v3.0 DRAM read/write counters are u16 MB/s: 65535 there means *saturated*, not missing.

decode() never raises: an unknown version or a blob shorter than its header yields a result
with only the header and a warning.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# One layout = list of (field name, struct code, count). Name None = padding ("2x" etc).
Layout = list[tuple[str | None, str, int]]

_HDR: Layout = [("structure_size", "H", 1), ("format_revision", "B", 1), ("content_revision", "B", 1)]

def _u16(*names: str) -> Layout:
    return [(n, "H", 1) for n in names]


# Field runs shared by several versions (the versions reorder runs, not fields inside them).
_V1_TEMPS_ACTIVITY = _u16("temperature_edge", "temperature_hotspot", "temperature_mem",
                          "temperature_vrgfx", "temperature_vrsoc", "temperature_vrmem",
                          "average_gfx_activity", "average_umc_activity", "average_mm_activity",
                          "average_socket_power")
_V1_CLOCKS = _u16("average_gfxclk_frequency", "average_socclk_frequency", "average_uclk_frequency",
                  "average_vclk0_frequency", "average_dclk0_frequency", "average_vclk1_frequency",
                  "average_dclk1_frequency", "current_gfxclk", "current_socclk", "current_uclk",
                  "current_vclk0", "current_dclk0", "current_vclk1", "current_dclk1") + [
    ("throttle_status", "I", 1), ("current_fan_speed", "H", 1)]
_V2_TEMPS_ACTIVITY = _u16("temperature_gfx", "temperature_soc") + [
    ("temperature_core", "H", 8), ("temperature_l3", "H", 2)] + _u16(
    "average_gfx_activity", "average_mm_activity")
_V2_POWER_CLOCKS = _u16("average_socket_power", "average_cpu_power", "average_soc_power",
                        "average_gfx_power") + [("average_core_power", "H", 8)] + _u16(
    "average_gfxclk_frequency", "average_socclk_frequency", "average_uclk_frequency",
    "average_fclk_frequency", "average_vclk_frequency", "average_dclk_frequency",
    "current_gfxclk", "current_socclk", "current_uclk", "current_fclk", "current_vclk",
    "current_dclk") + [("current_coreclk", "H", 8), ("current_l3clk", "H", 2),
                       ("throttle_status", "I", 1), ("fan_pwm", "H", 1)]

# v1.0: 80 bytes; 4-byte hole after the header, u32 energy, u8 PCIe fields.
V1_0: Layout = _HDR + [(None, "x", 4), ("system_clock_counter", "Q", 1)] + _V1_TEMPS_ACTIVITY + [
    ("energy_accumulator", "I", 1)] + _V1_CLOCKS + [
    ("pcie_link_width", "B", 1), ("pcie_link_speed", "B", 1), (None, "x", 4),
]

# v1.1 .. v1.3 (each appends to the previous): the v1.3 table, cut at each version's size.
V1_3: Layout = _HDR + _V1_TEMPS_ACTIVITY + [
    ("energy_accumulator", "Q", 1), ("system_clock_counter", "Q", 1)] + _V1_CLOCKS + [
    ("pcie_link_width", "H", 1), ("pcie_link_speed", "H", 1), (None, "x", 2),
    ("gfx_activity_acc", "I", 1), ("mem_activity_acc", "I", 1), ("temperature_hbm", "H", 4),
    # v1.1 ends here (96)
    ("firmware_timestamp", "Q", 1),
    # v1.2 ends here (104)
    ("voltage_soc", "H", 1), ("voltage_gfx", "H", 1), ("voltage_mem", "H", 1), (None, "x", 2),
    ("indep_throttle_status", "Q", 1),
]

# v2.0: 120 bytes; 4-byte hole after the header, same fields as v2.1 in another order.
V2_0: Layout = _HDR + [(None, "x", 4), ("system_clock_counter", "Q", 1)] + _V2_TEMPS_ACTIVITY + (
    _V2_POWER_CLOCKS + [(None, "x", 2)])

# v2.1 .. v2.4 (each appends): the v2.4 table, cut at each version's size.
V2_4: Layout = _HDR + _V2_TEMPS_ACTIVITY + [("system_clock_counter", "Q", 1)] + _V2_POWER_CLOCKS + [
    (None, "x", 6),
    # v2.1 ends here (120)
    ("indep_throttle_status", "Q", 1),
    # v2.2 ends here (128)
    ("average_temperature_gfx", "H", 1), ("average_temperature_soc", "H", 1),
    ("average_temperature_core", "H", 8), ("average_temperature_l3", "H", 2),
    # v2.3 ends here (152)
] + _u16("average_cpu_voltage", "average_soc_voltage", "average_gfx_voltage",
         "average_cpu_current", "average_soc_current", "average_gfx_current") + [(None, "x", 4)]

# v3.0: 264 bytes, Strix Halo / Strix Point / Krackan (smu_v14_0_0_get_gpu_metrics).
V3_0: Layout = _HDR + [
    ("temperature_gfx", "H", 1), ("temperature_soc", "H", 1), ("temperature_core", "H", 16),
    ("temperature_skin", "H", 1),
    ("average_gfx_activity", "H", 1), ("average_vcn_activity", "H", 1),
    ("average_ipu_activity", "H", 8), ("average_core_c0_activity", "H", 16),
    ("average_dram_reads", "H", 1), ("average_dram_writes", "H", 1),
    ("average_ipu_reads", "H", 1), ("average_ipu_writes", "H", 1), (None, "x", 2),
    ("system_clock_counter", "Q", 1),
    ("average_socket_power", "I", 1), ("average_ipu_power", "H", 1), (None, "x", 2),
    ("average_apu_power", "I", 1), ("average_gfx_power", "I", 1), ("average_dgpu_power", "I", 1),
    ("average_all_core_power", "I", 1), ("average_core_power", "H", 16),
    ("average_sys_power", "H", 1), ("stapm_power_limit", "H", 1), ("current_stapm_power_limit", "H", 1),
    ("average_gfxclk_frequency", "H", 1), ("average_socclk_frequency", "H", 1),
    ("average_vpeclk_frequency", "H", 1), ("average_ipuclk_frequency", "H", 1),
    ("average_fclk_frequency", "H", 1), ("average_vclk_frequency", "H", 1),
    ("average_uclk_frequency", "H", 1), ("average_mpipu_frequency", "H", 1),
    ("current_coreclk", "H", 16), ("current_core_maxfreq", "H", 1), ("current_gfx_maxfreq", "H", 1),
    (None, "x", 2),
    ("throttle_residency_prochot", "I", 1), ("throttle_residency_spl", "I", 1),
    ("throttle_residency_fppt", "I", 1), ("throttle_residency_sppt", "I", 1),
    ("throttle_residency_thm_core", "I", 1), ("throttle_residency_thm_gfx", "I", 1),
    ("throttle_residency_thm_soc", "I", 1), ("time_filter_alphavalue", "I", 1),
    (None, "x", 4),
]

# (format_revision, content_revision) -> (layout, size of that version's struct)
LAYOUTS: dict[tuple[int, int], tuple[Layout, int]] = {
    (1, 0): (V1_0, 80), (1, 1): (V1_3, 96), (1, 2): (V1_3, 104), (1, 3): (V1_3, 120),
    (2, 0): (V2_0, 120), (2, 1): (V2_4, 120), (2, 2): (V2_4, 128), (2, 3): (V2_4, 152),
    (2, 4): (V2_4, 168), (3, 0): (V3_0, 264),
}

THROTTLE_RESIDENCY = ("prochot", "spl", "fppt", "sppt", "thm_core", "thm_gfx", "thm_soc")

_ALL_ONES = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "Q": 0xFFFFFFFFFFFFFFFF}


class _Compiled:
    """A layout compiled once: struct object, and (name, code, count) cut to a version's size."""

    __slots__ = ("struct", "fields", "size", "pads")

    def __init__(self, layout: Layout, size: int):
        fmt, fields, total, pads = "<", [], 0, []
        for name, code, count in layout:
            step = struct.calcsize("<" + code) * count
            if total + step > size:
                break
            if name is None:
                pads.append((total, step))
            else:
                fields.append((name, code, count, total))
            total += step
            fmt += f"{count}{code}"
        if total != size:
            raise ValueError(f"layout does not reach {size} bytes (stops at {total})")
        self.struct = struct.Struct(fmt)
        self.fields = fields
        self.size = size
        self.pads = pads


_COMPILED = {ver: _Compiled(layout, size) for ver, (layout, size) in LAYOUTS.items()}


def layout_size(frev: int, crev: int) -> int | None:
    c = _COMPILED.get((frev, crev))
    return c.size if c else None


def _raw_fields(blob: bytes, c: _Compiled, avail: int, missing: set[str]):
    """Unpack a blob padded to the layout size; values wholly or partly past `avail` bytes
    (a truncated read) are None and their field names go into `missing`."""
    values = c.struct.unpack(blob)
    out: dict = {}
    i = 0
    for name, code, count, offset in c.fields:
        na = _ALL_ONES[code]
        width = struct.calcsize(code)
        if offset + width * count <= avail:
            if count == 1:
                v = values[i]
                out[name] = None if v == na else v
            else:
                out[name] = [None if v == na else v for v in values[i : i + count]]
        else:
            missing.add(name)
            cut = max(0, (avail - offset) // width)   # whole elements still inside the blob
            if count == 1:
                out[name] = None
            else:
                out[name] = [None if (k >= cut or v == na) else v
                             for k, v in enumerate(values[i : i + count])]
        i += count
    return out


@dataclass
class GpuMetrics:
    """One decoded gpu_metrics table, in common units. None = not provided by this GPU/version."""

    structure_size: int | None = None
    format_revision: int | None = None
    content_revision: int | None = None
    raw: dict = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)   # fields cut off by a truncated blob
    warnings: list[str] = field(default_factory=list)
    # temperatures, degC
    gfx_temp_c: float | None = None          # v3/v2 temperature_gfx (hwmon "edge" on APUs)
    edge_temp_c: float | None = None         # v1 temperature_edge; on APUs = gfx temperature
    hotspot_temp_c: float | None = None      # v1 junction
    mem_temp_c: float | None = None          # v1 VRAM
    soc_temp_c: float | None = None          # v2/v3 SoC ("hotspot" on APUs)
    skin_temp_c: float | None = None         # v3
    core_temps_c: list[float | None] = field(default_factory=list)
    # activity, percent
    gfx_activity_pct: float | None = None
    mm_activity_pct: float | None = None     # VCN / media
    umc_activity_pct: float | None = None    # v1 memory controller
    ipu_activity_pct: list[float | None] = field(default_factory=list)
    core_c0_pct: list[float | None] = field(default_factory=list)
    # power, watts
    socket_power_w: float | None = None
    gfx_power_w: float | None = None
    cpu_power_w: float | None = None         # v3 all-core, v2 cpu rail
    soc_power_w: float | None = None
    ipu_power_w: float | None = None
    sys_power_w: float | None = None
    core_power_w: list[float | None] = field(default_factory=list)
    # clocks, MHz
    gfxclk_mhz: int | None = None
    socclk_mhz: int | None = None
    uclk_mhz: int | None = None
    fclk_mhz: int | None = None
    vclk_mhz: int | None = None
    core_clocks_mhz: list[int | None] = field(default_factory=list)
    gfx_maxfreq_mhz: int | None = None       # v3 current_gfx_maxfreq (limit in force)
    core_maxfreq_mhz: int | None = None      # v3 current_core_maxfreq
    # memory traffic, bytes/s (v3 only)
    dram_read_bps: int | None = None
    dram_write_bps: int | None = None
    dram_reads_saturated: bool = False
    dram_writes_saturated: bool = False
    ipu_read_bps: int | None = None
    ipu_write_bps: int | None = None
    # counters
    throttle_residency: dict[str, int | None] = field(default_factory=dict)
    throttle_status: int | None = None
    indep_throttle_status: int | None = None
    system_clock_counter_ns: int | None = None
    fan_rpm: int | None = None

    @property
    def version(self) -> str | None:
        if self.format_revision is None:
            return None
        return f"{self.format_revision}.{self.content_revision}"

    @property
    def decoded(self) -> bool:
        return bool(self.raw) and (self.format_revision, self.content_revision) in LAYOUTS


def _scale(v, div):
    return None if v is None else v / div


def _scale_list(vs, div, limit=None):
    vs = vs if limit is None else vs[:limit]
    return [None if v is None else v / div for v in vs]


MB = 1_000_000  # gpu_metrics MB/s counters: decimal megabytes (UNCONFIRMED, see reference §3)
U16_MAX = 0xFFFF


def decode(blob: bytes | None, smc_fw_version: int | None = None,
           mp1_version: tuple[int, int, int] | None = None) -> GpuMetrics:
    """Decode a gpu_metrics blob. Never raises; problems become `warnings`."""
    m = GpuMetrics()
    if not blob or len(blob) < 4:
        m.warnings.append(f"gpu_metrics: blob of {len(blob or b'')} bytes has no header")
        return m
    m.structure_size, m.format_revision, m.content_revision = struct.unpack_from("<HBB", blob, 0)
    c = _COMPILED.get((m.format_revision, m.content_revision))
    if c is None:
        m.warnings.append(f"gpu_metrics: unknown version {m.version} "
                          f"({len(blob)} bytes); header only")
        return m
    avail = min(len(blob), m.structure_size or 0, c.size)
    if avail < c.size:
        m.warnings.append(f"gpu_metrics v{m.version}: {len(blob)} bytes "
                          f"(structure_size {m.structure_size}, layout {c.size}); "
                          f"missing tail fields read as not provided")
    # A short blob is padded with the driver's own 0xFF fill, so missing fields read as None.
    buf = blob[:avail] + b"\xff" * (c.size - avail)
    m.raw = raw = _raw_fields(buf, c, avail, m.missing)
    m.system_clock_counter_ns = raw.get("system_clock_counter")
    try:
        if m.format_revision == 1:
            _units_v1(m, raw)
        elif m.format_revision == 2:
            _units_v2(m, raw, smc_fw_version, mp1_version)
        else:
            _units_v3(m, raw, smc_fw_version)
    except Exception as e:  # pragma: no cover - a decoder bug must not reach the caller
        m.warnings.append(f"gpu_metrics v{m.version}: unit conversion failed: {e!r}")
    return m


def _first(*vals):
    for v in vals:
        if v is not None:
            return v
    return None


def _units_v1(m: GpuMetrics, r: dict) -> None:
    # v1.x (dGPU): whole degC, percent, whole W, MHz.
    m.edge_temp_c = _scale(r["temperature_edge"], 1)
    m.gfx_temp_c = m.edge_temp_c
    m.hotspot_temp_c = _scale(r["temperature_hotspot"], 1)
    m.mem_temp_c = _scale(r["temperature_mem"], 1)
    m.gfx_activity_pct = _scale(r["average_gfx_activity"], 1)
    m.umc_activity_pct = _scale(r["average_umc_activity"], 1)
    m.mm_activity_pct = _scale(r["average_mm_activity"], 1)
    m.socket_power_w = _scale(r["average_socket_power"], 1)
    m.gfxclk_mhz = _first(r["current_gfxclk"], r["average_gfxclk_frequency"])
    m.socclk_mhz = _first(r["current_socclk"], r["average_socclk_frequency"])
    m.uclk_mhz = _first(r["current_uclk"], r["average_uclk_frequency"])
    m.vclk_mhz = _first(r["current_vclk0"], r["average_vclk0_frequency"])
    m.throttle_status = r["throttle_status"]
    m.indep_throttle_status = r.get("indep_throttle_status")
    m.fan_rpm = r["current_fan_speed"]


# Renoir family (MP1 12.0.0 / 12.0.1) reports v2 socket power in W on newer PMFW.
def _renoir_socket_in_watts(smc: int | None, mp1: tuple | None, value: int) -> bool:
    if mp1 is not None and mp1[:2] == (12, 0) and smc is not None:
        return (mp1[2] == 1 and smc >= 0x40000F) or (mp1[2] == 0 and smc >= 0x373200)
    return False


def _units_v2(m: GpuMetrics, r: dict, smc: int | None, mp1: tuple | None) -> None:
    # v2.x (APU): centi-degC, centi-percent, mW, MHz.
    m.gfx_temp_c = _scale(r["temperature_gfx"], 100)
    m.edge_temp_c = m.gfx_temp_c
    m.soc_temp_c = _scale(r["temperature_soc"], 100)
    m.core_temps_c = _scale_list(r["temperature_core"], 100)
    m.gfx_activity_pct = _scale(r["average_gfx_activity"], 100)
    m.mm_activity_pct = _scale(r["average_mm_activity"], 100)
    sock = r["average_socket_power"]
    if sock is not None and _renoir_socket_in_watts(smc, mp1, sock):
        m.socket_power_w = float(sock)
    else:
        m.socket_power_w = _scale(sock, 1000)
    m.cpu_power_w = _scale(r["average_cpu_power"], 1000)
    m.soc_power_w = _scale(r["average_soc_power"], 1000)
    m.gfx_power_w = _scale(r["average_gfx_power"], 1000)
    m.core_power_w = _scale_list(r["average_core_power"], 1000)
    m.gfxclk_mhz = _first(r["current_gfxclk"], r["average_gfxclk_frequency"])
    m.socclk_mhz = _first(r["current_socclk"], r["average_socclk_frequency"])
    m.uclk_mhz = _first(r["current_uclk"], r["average_uclk_frequency"])
    # Van Gogh, Yellow Carp, SMU 13.0.4/13.0.5 and Cyan Skillfish copy MemclkFrequency into the
    # FCLK fields; only Renoir (MP1 12.0.x) fills them from the fabric clock. Unknown MP1: unknown.
    if mp1 is not None and mp1[0] == 12:
        m.fclk_mhz = _first(r["current_fclk"], r["average_fclk_frequency"])
    m.vclk_mhz = _first(r["current_vclk"], r["average_vclk_frequency"])
    m.core_clocks_mhz = list(r["current_coreclk"])
    m.throttle_status = r["throttle_status"]
    m.indep_throttle_status = r.get("indep_throttle_status")


def _mbps(v: int | None, cut_off: bool) -> tuple[int | None, bool]:
    """u16 MB/s counter -> (bytes/s, saturated). 65535 is a pegged counter, not "missing";
    a counter cut off by a truncated read is just unknown."""
    if v is None:
        return None, not cut_off
    return v * MB, False


def _units_v3(m: GpuMetrics, r: dict, smc: int | None) -> None:
    # v3.0 (SMU 14.0.x): centi-degC, percent, mW, MHz, MB/s.
    m.gfx_temp_c = _scale(r["temperature_gfx"], 100)
    m.edge_temp_c = m.gfx_temp_c
    m.soc_temp_c = _scale(r["temperature_soc"], 100)
    m.core_temps_c = _scale_list(r["temperature_core"], 100)
    m.skin_temp_c = _scale(r["temperature_skin"], 100)
    # GfxActivity is raw percent on SMU firmware > 0x5d4600, centi-percent before (amdgpu_top).
    act_div = 100 if smc is not None and smc <= 0x5D4600 else 1
    m.gfx_activity_pct = _scale(r["average_gfx_activity"], act_div)
    vcn = r["average_vcn_activity"]
    # Documented as percent; amdgpu_top divides by 100. Accept both, never report > 100 %.
    m.mm_activity_pct = None if vcn is None else (vcn / 100 if vcn > 100 else float(vcn))
    m.ipu_activity_pct = _scale_list(r["average_ipu_activity"], 1)
    m.core_c0_pct = _scale_list(r["average_core_c0_activity"], 1)
    m.socket_power_w = _scale(r["average_socket_power"], 1000)
    m.gfx_power_w = _scale(r["average_gfx_power"], 1000)
    m.cpu_power_w = _scale(r["average_all_core_power"], 1000)
    m.ipu_power_w = _scale(r["average_ipu_power"], 1000)
    m.sys_power_w = _scale(r["average_sys_power"], 1000)
    m.core_power_w = _scale_list(r["average_core_power"], 1000)
    m.gfxclk_mhz = r["average_gfxclk_frequency"]
    m.socclk_mhz = r["average_socclk_frequency"]
    m.uclk_mhz = r["average_uclk_frequency"]
    m.fclk_mhz = r["average_fclk_frequency"]
    m.vclk_mhz = r["average_vclk_frequency"]
    m.core_clocks_mhz = list(r["current_coreclk"])
    m.core_maxfreq_mhz = r["current_core_maxfreq"]
    m.gfx_maxfreq_mhz = r["current_gfx_maxfreq"]
    m.dram_read_bps, m.dram_reads_saturated = _mbps(
        r["average_dram_reads"], "average_dram_reads" in m.missing)
    m.dram_write_bps, m.dram_writes_saturated = _mbps(
        r["average_dram_writes"], "average_dram_writes" in m.missing)
    # NPU counters: a pegged NPU counter is reported as unknown rather than as a saturation flag.
    m.ipu_read_bps = None if r["average_ipu_reads"] is None else r["average_ipu_reads"] * MB
    m.ipu_write_bps = None if r["average_ipu_writes"] is None else r["average_ipu_writes"] * MB
    m.throttle_residency = {k: r[f"throttle_residency_{k}"] for k in THROTTLE_RESIDENCY}


def encode(fields: dict, frev: int = 3, crev: int = 0) -> bytes:
    """Pack raw field values into a blob of the given version, the way the driver does:
    0xFF fill first, then the fields it assigns (missing/None stay all-ones).
    Used by the simulator and by tests that build blobs of other versions."""
    c = _COMPILED[(frev, crev)]
    values: list[int] = []
    for name, code, count, _offset in c.fields:
        na = _ALL_ONES[code]
        if name == "structure_size":
            v = fields.get(name, c.size)
        elif name == "format_revision":
            v = frev
        elif name == "content_revision":
            v = crev
        else:
            v = fields.get(name)
        if count == 1:
            values.append(na if v is None else int(v))
        else:
            seq = list(v) if v is not None else []
            seq = (seq + [None] * count)[:count]
            values.extend(na if x is None else int(x) for x in seq)
    blob = bytearray(c.struct.pack(*values))
    for off, n in c.pads:  # padding keeps the memset(0xFF) fill
        blob[off : off + n] = b"\xff" * n
    return bytes(blob)
