"""Plain-text rendering of a Snapshot (`status --once` and the simple live view)."""

from __future__ import annotations

from halotune.machine.rootfs import RootFS
from halotune.model.snapshot import GpuSnapshot, Snapshot

NA = "n/a"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return NA
    for unit, div in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def fmt(v, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return NA
    if isinstance(v, float):
        v = f"{v:.{digits}f}"
    return f"{v}{unit}"


def fmt_rate(bps: int | None, saturated: bool = False) -> str:
    if saturated and bps is None:
        return ">=65.5 GB/s (counter saturated)"
    return NA if bps is None else f"{bps / 1e9:.1f} GB/s"


def _gpu_lines(g: GpuSnapshot) -> list[str]:
    target = f" {g.gfx_target}" if g.gfx_target else ""
    kind = "APU" if g.is_apu else ("dGPU" if g.is_apu is False else "GPU")
    limit = g.sclk_limit_mhz or g.gfx_maxfreq_mhz
    lines = [
        f"GPU {g.card} {g.pci_slot or ''}  {g.name} [{g.device_id or '?'}{target}] {kind}",
        f"  busy {fmt(g.busy_percent, ' %')}   sclk {fmt(g.sclk_mhz)} / {fmt(limit)} MHz   "
        f"mclk {fmt(g.mclk_mhz)} MHz   fclk {fmt(g.fclk_mhz)} MHz   level {fmt(g.performance_level)}",
        f"  temp edge {fmt(g.edge_temp_c, ' °C', 1)}   soc {fmt(g.soc_temp_c, ' °C', 1)}"
        + (f"   hotspot {fmt(g.hotspot_temp_c, ' °C', 1)}" if g.hotspot_temp_c is not None else "")
        + (f"   skin {fmt(g.skin_temp_c, ' °C', 1)}" if g.skin_temp_c is not None else ""),
        f"  power socket {fmt(g.socket_power_w, ' W', 2)}   gfx {fmt(g.gfx_power_w, ' W', 2)}"
        + (f"   cap {fmt(g.power_cap_w, ' W', 0)}" if g.power_cap_w is not None else ""),
        f"  VRAM {fmt_bytes(g.vram_used_bytes)} / {fmt_bytes(g.vram_total_bytes)}   "
        f"GTT {fmt_bytes(g.gtt_used_bytes)} / {fmt_bytes(g.gtt_total_bytes)}",
    ]
    if g.gpu_metrics_version == "3.0":
        lines.append(f"  DRAM read {fmt_rate(g.dram_read_bytes_per_s, g.dram_counters_saturated)}"
                     f"   write {fmt_rate(g.dram_write_bytes_per_s, g.dram_counters_saturated)}"
                     f"   (peak ~256 GB/s)")
    if g.throttle_residency:
        busy = {k: v for k, v in g.throttle_residency.items() if v}
        if busy:
            lines.append("  throttle residency " + "  ".join(f"{k}={v}" for k, v in busy.items()))
    return lines


def render(s: Snapshot, demo: bool = False) -> str:
    head = f"halotune {s.halotune_version}  {s.time}"
    if demo:
        head += "  [simulated Strix Halo]"
    elif s.root != "/":
        head += f"  [root {s.root}]"
    if s.kernel_release:
        head += f"  kernel {s.kernel_release}"
    lines = [head, ""]
    for g in s.gpus:
        lines += _gpu_lines(g) + [""]
    m, p, c, n = s.memory, s.power, s.cpu, s.npu
    lines += [
        f"Memory  RAM {fmt_bytes(m.system_available_bytes)} free of {fmt_bytes(m.system_total_bytes)}"
        f"   swap used {fmt_bytes(m.swap_used_bytes)}",
        f"  GPU-usable {fmt_bytes(m.gpu_usable_bytes)}"
        + (f"  ({m.gpu_usable_explained})" if m.gpu_usable_explained else ""),
        f"  {m.ttm_module or 'ttm'}.pages_limit {fmt(m.ttm_pages_limit)}"
        + (f" ({fmt_bytes(m.ttm_pages_limit * 4096)})" if m.ttm_pages_limit else ""),
        "",
        f"Power   package {fmt(p.socket_power_w, ' W', 2)}   platform profile {fmt(p.platform_profile)}"
        + (f" (of {' '.join(p.platform_profile_choices)})" if p.platform_profile_choices else ""),
    ]
    if p.limits_source:
        lines.append(f"  limits STAPM {fmt(p.stapm_limit_w, ' W', 1)}   fast {fmt(p.fast_limit_w, ' W', 1)}"
                     f"   slow {fmt(p.slow_limit_w, ' W', 1)}   (from {p.limits_source})")
    elif p.limits_hint:
        lines.append(f"  limits unknown: {p.limits_hint}")
    lines += [
        "",
        f"CPU     {fmt(c.logical_cpus)} CPUs   busy {fmt(c.utilization_percent, ' %', 1)}"
        f"   {fmt(c.scaling_driver)} {fmt(c.governor)}/{fmt(c.epp)}"
        + (f"   {fmt(c.temp_c, ' °C', 1)}" if c.temp_c is not None else "")
        + (f"   {fmt(c.power_w, ' W', 2)}" if c.power_w is not None else ""),
    ]
    if n.activity_percent is not None:
        lines.append(f"NPU     busy {fmt(n.activity_percent, ' %', 0)}   power {fmt(n.power_w, ' W', 2)}")
    for w in s.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines).rstrip()


def no_gpu_message(fs: RootFS) -> str:
    where = "this machine" if fs.is_host else f"the tree at {fs.root}"
    return (f"halotune: no AMD GPU found on {where} "
            f"(searched {fs.path('sys/class/drm')}/card*/device/vendor for 0x1002).\n"
            f"Try the simulated Strix Halo: halotune status --demo")
