"""Turn machine readings into Snapshots: the one place telemetry is assembled.

A Sampler is built once per root (discovery, open hot files) and sample() is called per
interval. Data flows one way: machine readers -> this module -> model.Snapshot -> views.
"""

from __future__ import annotations

import datetime as _dt
import time

from halotune import __version__
from halotune.machine import parse
from halotune.machine.amdgpu import GpuReader, GpuReading
from halotune.machine.cpu import CpuReader, CpuReading
from halotune.machine.discovery import AmdGpuDevice, find_amd_gpus
from halotune.machine.drmclients import DrmClientReader
from halotune.machine.memory import MemoryReader, live_gtt_bytes, pending_gtt_bytes
from halotune.machine.platform import PlatformReader
from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj, TdpLimits
from halotune.model.snapshot import (CpuSnapshot, GpuSnapshot, MemorySnapshot, NpuSnapshot,
                                     PowerSnapshot, Snapshot, gpu_usable_bytes)

# One-shot CPU utilisation without a gpu_metrics C0 table: two proc/stat reads this far apart.
ONE_SHOT_CPU_WINDOW_S = 0.05


def rfc3339_now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


class Sampler:
    def __init__(self, fs: RootFS, programs: Programs | None = None,
                 read_tdp: bool = True, tdp_interval_s: float = 5.0,
                 proc_root: str | None = None):
        self.fs = fs
        self.devices: list[AmdGpuDevice] = find_amd_gpus(fs)
        self.readers = [GpuReader(fs, d, is_apu=self._is_apu(fs, d)) for d in self.devices]
        self.cpu = CpuReader(fs)
        self.memory = MemoryReader(fs)
        self.platform = PlatformReader(fs)
        self.ryzenadj = RyzenAdj(programs or Programs(fs)) if read_tdp else None
        self.tdp_interval_s = tdp_interval_s
        self._tdp: TdpLimits | None = None
        self._tdp_at = 0.0
        self._prev_times = None
        # GPU clients are processes: read where machine.processes.process_root says (the one
        # rule for every command), or from `proc_root` (a directory holding proc/ and
        # sys/class/kfd, for tests).
        if proc_root is None:
            self.drm_clients = DrmClientReader.of(fs)
        else:
            self.drm_clients = DrmClientReader(proc_root, proc_root)

    @staticmethod
    def _is_apu(fs: RootFS, dev: AmdGpuDevice) -> bool | None:
        if dev.known_apu is not None:
            return dev.known_apu
        # Unknown ID: gpu_metrics format 2 and 3 are emitted only by APUs.
        reader = GpuReader(fs, dev, is_apu=None)
        m = reader.read_metrics()
        reader.close()
        if m is not None and m.format_revision in (2, 3):
            return True
        if m is not None and m.format_revision == 1:
            return False
        return None

    # --- sampling ----------------------------------------------------------------------
    def sample(self) -> Snapshot:
        readings = [r.read() for r in self.readers]
        gpus = [self._gpu(r.device, reading, r.is_apu) for r, reading in zip(self.readers, readings)]
        snap = Snapshot(time=rfc3339_now(), root=self.fs.root, gpus=gpus,
                        halotune_version=__version__)
        apu_reading = next((rd for r, rd in zip(self.readers, readings) if r.is_apu), None)
        plat = self.platform.read()
        snap.kernel_release, snap.boot_id = plat.kernel_release, plat.boot_id
        snap.memory = self._memory(snap)
        snap.power = self._power(plat, snap)
        snap.cpu = self._cpu(self.cpu.read(), apu_reading)
        snap.npu = self._npu(apu_reading)
        if self.drm_clients is not None:
            snap.processes = self.drm_clients.read()
        for g in gpus:
            snap.warnings.extend(f"{g.card}: {w}" for w in g.warnings)
        return snap

    def _gpu(self, dev: AmdGpuDevice, r: GpuReading, is_apu: bool | None) -> GpuSnapshot:
        m = r.metrics if r.metrics is not None and r.metrics.decoded else None
        g = GpuSnapshot(
            card=dev.card, pci_slot=dev.pci_slot, device_id=dev.device_id_hex,
            gfx_target=dev.gfx_target, name=dev.name, is_apu=is_apu,
            revision=None if dev.revision is None else f"0x{dev.revision:02x}",
            subsystem=dev.subsystem,
            busy_percent=r.busy_percent, sclk_mhz=r.sclk_mhz, mclk_mhz=r.mclk_mhz,
            fclk_mhz=r.fclk_mhz, socclk_mhz=r.socclk_mhz,
            edge_temp_c=r.edge_temp_c, soc_temp_c=r.soc_temp_c, hotspot_temp_c=r.hotspot_temp_c,
            mem_temp_c=r.mem_temp_c, socket_power_w=r.socket_power_w, gfx_power_w=r.gfx_power_w,
            power_cap_w=r.power_cap_w, performance_level=r.performance_level,
            vram_total_bytes=r.vram_total_bytes, vram_used_bytes=r.vram_used_bytes,
            gtt_total_bytes=r.gtt_total_bytes, gtt_used_bytes=r.gtt_used_bytes,
            smc_fw_version=None if dev.smc_fw_version is None else f"0x{dev.smc_fw_version:08x}",
            vbios_version=dev.vbios_version, runtime_status=r.runtime_status,
            sources=dict(r.sources), warnings=list(r.warnings),
        )
        if r.od is not None:
            g.sclk_min_mhz, g.sclk_limit_mhz = r.od.sclk_min, r.od.sclk_max
            if r.od.range_min is not None:
                g.sclk_range_mhz = [r.od.range_min, r.od.range_max]
        if r.metrics is not None:
            g.gpu_metrics_version = r.metrics.version
        if m is not None:
            g.skin_temp_c = m.skin_temp_c
            g.gfx_maxfreq_mhz = m.gfx_maxfreq_mhz
            g.vcn_busy_percent = m.mm_activity_pct
            if m.format_revision == 3:
                g.dram_read_bytes_per_s = m.dram_read_bps
                g.dram_write_bytes_per_s = m.dram_write_bps
                g.dram_counters_saturated = m.dram_reads_saturated or m.dram_writes_saturated
                g.throttle_residency = dict(m.throttle_residency)
        return g

    def _memory(self, snap: Snapshot) -> MemorySnapshot:
        r = self.memory.read()
        mi = r.meminfo
        mem = MemorySnapshot(
            system_total_bytes=mi.get("MemTotal"), system_available_bytes=mi.get("MemAvailable"),
            swap_total_bytes=mi.get("SwapTotal"),
            swap_used_bytes=(mi["SwapTotal"] - mi["SwapFree"]
                             if "SwapTotal" in mi and "SwapFree" in mi else None),
            ttm_pages_limit=r.ttm_pages_limit, ttm_page_pool_size=r.ttm_page_pool_size,
            ttm_module=r.ttm_module, amdgpu_gttsize_mib=r.amdgpu_gttsize_mib,
        )
        g = snap.primary_gpu
        # Every modprobe.d file and the command line, as kmod and amdgpu_ttm_init read them.
        live = live_gtt_bytes(g.gtt_total_bytes if g is not None else None, r)
        mem.gtt_pending_bytes = pending_gtt_bytes(r.gtt_next_boot, live, r)
        if mem.gtt_pending_bytes is not None:
            snap.pending_reboot.append({
                "key": "memory.gtt_gib", "file": r.gtt_next_boot.where,
                "current_bytes": live, "after_reboot_bytes": mem.gtt_pending_bytes})
        if g is not None:
            mem.gpu_usable_bytes = gpu_usable_bytes(g.vram_total_bytes, g.gtt_total_bytes,
                                                    mem.system_total_bytes, g.is_apu)
            if g.is_apu:
                mem.gpu_usable_explained = (
                    "VRAM carve-out + GTT, with GTT capped at system RAM less 4 GiB: GTT is "
                    "system memory, so it is never added to RAM")
            else:
                mem.gpu_usable_explained = "dedicated VRAM"
        return mem

    def _power(self, plat, snap: Snapshot) -> PowerSnapshot:
        p = PowerSnapshot(platform_profile=plat.platform_profile,
                          platform_profile_choices=plat.platform_profile_choices,
                          on_ac_power=plat.on_ac_power)
        g = snap.primary_gpu
        if g is not None and g.is_apu:
            p.socket_power_w = g.socket_power_w
        lim = self._tdp_limits()
        if lim is not None:
            p.stapm_limit_w, p.fast_limit_w = lim.stapm_limit_w, lim.fast_limit_w
            p.slow_limit_w, p.apu_slow_limit_w = lim.slow_limit_w, lim.apu_slow_limit_w
            p.limits_source, p.limits_hint = lim.source, lim.hint
        return p

    def _tdp_limits(self) -> TdpLimits | None:
        # ryzenadj is a process start and an SMU PM-table transfer: not on every sample.
        if self.ryzenadj is None or not any(r.is_apu for r in self.readers):
            return None
        now = time.monotonic()
        if self._tdp is None or now - self._tdp_at >= self.tdp_interval_s:
            self._tdp, self._tdp_at = self.ryzenadj.read_limits(), now
        return self._tdp

    def refresh_tdp(self) -> None:
        """Forget the cached limits (after a TDP write)."""
        self._tdp = None

    def _cpu(self, r: CpuReading, apu: GpuReading | None) -> CpuSnapshot:
        c = CpuSnapshot(governor=r.governor, governors_mixed=r.governors_mixed, epp=r.epp,
                        epp_mixed=r.epp_mixed, scaling_driver=r.scaling_driver,
                        amd_pstate_status=r.amd_pstate_status, governor_choices=r.governor_choices,
                        epp_choices=r.epp_choices,
                        boost=None if r.boost is None else bool(r.boost))
        per_cpu = [k for k in r.times if k != "cpu"]
        c.logical_cpus = len(per_cpu) or r.policies or None
        if r.freq_khz:
            c.freq_mhz_avg = sum(r.freq_khz) / len(r.freq_khz) / 1000
            c.freq_mhz_max = max(r.freq_khz) / 1000
        c.min_freq_mhz = None if r.min_khz is None else r.min_khz / 1000
        c.max_freq_mhz = None if r.max_khz is None else r.max_khz / 1000
        m = apu.metrics if apu is not None and apu.metrics is not None and apu.metrics.decoded else None
        if m is not None:
            n = sum(1 for t in m.core_temps_c if t is not None)
            if n:
                c.core_temps_c = m.core_temps_c
                c.temp_c = max(t for t in m.core_temps_c if t is not None)
            c.power_w = m.cpu_power_w
            c.core_power_w = m.core_power_w or None
            c.core_c0_percent = m.core_c0_pct or None
            c.core_maxfreq_mhz = m.core_maxfreq_mhz
        self._utilization(c, r)
        return c

    def _utilization(self, c: CpuSnapshot, r: CpuReading) -> None:
        prev, cur = self._prev_times, r.times
        if prev is None and cur and not c.core_c0_percent:
            # One-shot on a machine without C0 residency in gpu_metrics: a short window.
            time.sleep(ONE_SHOT_CPU_WINDOW_S)
            prev, cur = cur, self.cpu.read_times()
        self._prev_times = cur
        if prev is not None and cur:
            total = parse.utilization_percent(prev.get("cpu"), cur.get("cpu"))
            if total is not None:
                c.utilization_percent, c.utilization_source = round(total, 1), "proc/stat"
                c.per_cpu_utilization_percent = [
                    round(parse.utilization_percent(prev.get(k), cur[k]) or 0.0, 1)
                    for k in cur if k != "cpu"]
                return
        if c.core_c0_percent:
            c.utilization_percent = round(_mean(c.core_c0_percent) or 0.0, 1)
            c.utilization_source = "gpu_metrics core C0 residency"

    def _npu(self, apu: GpuReading | None) -> NpuSnapshot:
        m = apu.metrics if apu is not None and apu.metrics is not None and apu.metrics.decoded else None
        if m is None or m.format_revision != 3:
            return NpuSnapshot()
        return NpuSnapshot(activity_percent=_mean(m.ipu_activity_pct), power_w=m.ipu_power_w,
                           read_bytes_per_s=m.ipu_read_bps, write_bytes_per_s=m.ipu_write_bps)

    def close(self) -> None:
        for r in self.readers:
            r.close()
        self.fs.close()
