"""Per-sample reads of one amdgpu device.

gpu_metrics is read once per sample and is the source of power, clocks, temperatures and
activity: every read of an SMU-backed file costs a firmware table transfer on real hardware.
hwmon and pp_dpm_* are read only for what gpu_metrics does not provide (older kernels, dGPUs,
an unreadable table). Files read every sample are kept open (HotFile).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halotune.machine import gpu_metrics, parse
from halotune.machine.discovery import AmdGpuDevice
from halotune.machine.rootfs import RootFS


@dataclass
class GpuReading:
    """What one sample of one GPU found; None = not available on this GPU/kernel."""

    metrics: gpu_metrics.GpuMetrics | None = None
    busy_percent: float | None = None
    sclk_mhz: int | None = None
    mclk_mhz: int | None = None
    fclk_mhz: int | None = None
    socclk_mhz: int | None = None
    edge_temp_c: float | None = None
    hotspot_temp_c: float | None = None
    mem_temp_c: float | None = None
    soc_temp_c: float | None = None
    socket_power_w: float | None = None
    gfx_power_w: float | None = None
    power_cap_w: float | None = None
    voltage_gfx_mv: int | None = None
    performance_level: str | None = None
    vram_total_bytes: int | None = None
    vram_used_bytes: int | None = None
    gtt_total_bytes: int | None = None
    gtt_used_bytes: int | None = None
    od: parse.OdClock | None = None
    runtime_status: str | None = None
    sources: dict[str, str] = field(default_factory=dict)   # value -> file it came from
    warnings: list[str] = field(default_factory=list)


class GpuReader:
    """Reads one device. Construct once; call read() every sample."""

    def __init__(self, fs: RootFS, device: AmdGpuDevice, is_apu: bool | None = None):
        self.fs = fs
        self.device = device
        d = device.device_dir
        self._metrics = fs.hot(f"{d}/gpu_metrics")
        self._vram_used = fs.hot(f"{d}/mem_info_vram_used")
        self._gtt_used = fs.hot(f"{d}/mem_info_gtt_used")
        self._level = fs.hot(f"{d}/power_dpm_force_performance_level")
        # Sizes are fixed at driver init (amdgpu_vram_mgr.c / amdgpu_gtt_mgr.c): read once.
        self.vram_total = fs.read_int(f"{d}/mem_info_vram_total")
        self.gtt_total = fs.read_int(f"{d}/mem_info_gtt_total")
        self.is_apu = is_apu if is_apu is not None else device.known_apu
        # SMU 14.0.x APUs (GC 11.5.x) pack centiwatts into hwmon power; the rest use Q8 watts.
        self.centiwatt_power = bool(self.is_apu) and (
            (device.mp1_version or (0,))[0] == 14 or (device.gc_version or (0, 0))[:2] == (11, 5)
            or device.device_id in (0x1586, 0x150E))
        self._hwmon = self._find_hwmon_inputs()

    def _find_hwmon_inputs(self) -> dict[str, str]:
        """hwmon inputs by meaning: temp labels (edge/junction/mem), power, sclk, vddgfx."""
        h = self.device.hwmon_dir
        if not h:
            return {}
        out = {}
        for label_file in self.fs.glob(f"{h}/*_label"):
            label = self.fs.read_text(label_file)
            base = label_file[: -len("_label")]
            if label in ("edge", "junction", "mem") and base.rsplit("/", 1)[-1].startswith("temp"):
                out[f"temp_{label}"] = f"{base}_input"
            elif label == "sclk":
                out["sclk"] = f"{base}_input"
            elif label == "vddgfx":
                out["vddgfx"] = f"{base}_input"
        for name in ("power1_average", "power1_input"):
            if self.fs.exists(f"{h}/{name}"):
                out["power"] = f"{h}/{name}"
                break
        if self.fs.exists(f"{h}/power1_cap"):
            out["power_cap"] = f"{h}/power1_cap"
        return out

    def read_metrics(self) -> gpu_metrics.GpuMetrics | None:
        blob = self._metrics.read_bytes()
        if blob is None:
            return None
        if len(blob) >= 4:
            size = int.from_bytes(blob[:2], "little")
            if len(blob) < size:   # torn read while the table was rewritten: retry once
                blob = self._metrics.read_bytes() or blob
        return gpu_metrics.decode(blob, self.device.smc_fw_version, self.device.mp1_version)

    def read(self) -> GpuReading:
        fs, d, r = self.fs, self.device.device_dir, GpuReading()
        m = r.metrics = self.read_metrics()
        if m is not None:
            r.warnings.extend(m.warnings)
        have = m is not None and m.decoded

        def take(name, value, source):
            if value is not None and getattr(r, name) is None:
                setattr(r, name, value)
                r.sources[name] = source

        if have:
            src = f"gpu_metrics v{m.version}"
            take("busy_percent", m.gfx_activity_pct, src)
            take("sclk_mhz", m.gfxclk_mhz, src)
            take("mclk_mhz", m.uclk_mhz, src)
            take("fclk_mhz", m.fclk_mhz, src)
            take("socclk_mhz", m.socclk_mhz, src)
            take("edge_temp_c", m.edge_temp_c, src)
            take("hotspot_temp_c", m.hotspot_temp_c, src)
            take("mem_temp_c", m.mem_temp_c, src)
            take("soc_temp_c", m.soc_temp_c, src)
            take("socket_power_w", m.socket_power_w, src)
            take("gfx_power_w", m.gfx_power_w, src)
        self._fallbacks(r, take)
        r.performance_level = self._level.read_text()
        r.vram_total_bytes, r.gtt_total_bytes = self.vram_total, self.gtt_total
        r.vram_used_bytes = self._vram_used.read_int()
        r.gtt_used_bytes = self._gtt_used.read_int()
        r.od = parse.parse_od_clk_voltage(fs.hot_text(f"{d}/pp_od_clk_voltage"))
        r.runtime_status = fs.hot_text(f"{d}/power/runtime_status")
        return r

    def _fallbacks(self, r: GpuReading, take) -> None:
        """Only for values gpu_metrics left empty: one file each, read on demand."""
        fs, d, hw = self.fs, self.device.device_dir, self._hwmon
        if r.busy_percent is None:
            take("busy_percent", fs.read_int(f"{d}/gpu_busy_percent"), "gpu_busy_percent")
        for name, table in (("sclk_mhz", "pp_dpm_sclk"), ("mclk_mhz", "pp_dpm_mclk"),
                            ("fclk_mhz", "pp_dpm_fclk"), ("socclk_mhz", "pp_dpm_socclk")):
            if getattr(r, name) is None:
                if name == "sclk_mhz" and "sclk" in hw:
                    hz = fs.read_int(hw["sclk"])
                    take(name, None if hz is None else hz // 1_000_000, hw["sclk"])
                    if r.sclk_mhz is not None:
                        continue
                levels = parse.parse_clock_table(fs.read_text(f"{d}/{table}"))
                take(name, parse.current_clock(levels), table)
        for name, key in (("edge_temp_c", "temp_edge"), ("hotspot_temp_c", "temp_junction"),
                          ("mem_temp_c", "temp_mem")):
            if getattr(r, name) is None and key in hw:
                mc = fs.read_int(hw[key])
                take(name, None if mc is None else mc / 1000, hw[key])
        if r.socket_power_w is None and "power" in hw:
            uw = fs.read_int(hw["power"])
            decode = parse.hwmon_apu_power_w if self.centiwatt_power else parse.hwmon_q8_power_w
            take("socket_power_w", decode(uw), hw["power"])
        if "power_cap" in hw:
            take("power_cap_w", parse.hwmon_power_w(fs.read_int(hw["power_cap"])), hw["power_cap"])
        if "vddgfx" in hw and not self.is_apu:
            # APUs on SMU 14.0.x always report 0 mV here (METRICS_VOLTAGE_VDDGFX): never read.
            take("voltage_gfx_mv", fs.read_int(hw["vddgfx"]), hw["vddgfx"])

    def close(self) -> None:
        for f in (self._metrics, self._vram_used, self._gtt_used, self._level):
            f.close()
