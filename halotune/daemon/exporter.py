"""Prometheus exporter: the daemon's latest Snapshot as `/metrics`, off by default.

The daemon imports this module only when `[metrics] enabled = true`, and prometheus_client is
imported only inside the functions that need it, so `import halotune` (and a one-shot
`halotune status`) never pays for, or depends on, the optional `metrics` extra.

Design rules, each learned from an existing exporter:

* Base units in the name as a suffix (`_watts`, `_bytes`, `_celsius`, `_hertz`, `_ratio`,
  `_seconds`, `_bytes_per_second`; counters end in `_total`), converted from the snapshot's
  MHz / percent fields here, once (Prometheus naming guide, node_exporter).
* Device identity goes in labels, never in metric names (glances' mistake): a name with a
  device index or id in it cannot be aggregated and breaks dashboards when a card is
  renumbered. Every per-GPU metric carries `card`, `pci_slot` and `gfx_target`;
  `halotune_gpu_info` adds the rest.
* A value the machine does not provide (None in the snapshot) is not emitted for that label
  set: in Prometheus absence means unknown, whereas a 0 would be a false reading. Every family
  still has its HELP/TYPE header, so the exposition lists the whole contract.
* No sample timestamps: Prometheus stamps a scrape itself; the sample time is exported as a
  value (`halotune_snapshot_timestamp_seconds`), so staleness is one subtraction away.

The exposition is pinned by tests/fixtures/golden/metrics-reference.txt (node_exporter style):
a rename is a breaking change for every dashboard and alert and must show up in review.

Metrics: `name{labels} type`, then the Snapshot field it comes from. GPU stands for the labels
card, pci_slot, gfx_target; gpus[] is Snapshot.gpus, one entry per AMD GPU.

Daemon
  halotune_up                                       gauge    1 if a snapshot exists, else 0
  halotune_snapshot_timestamp_seconds               gauge    Snapshot.time as Unix seconds
  halotune_daemon_start_time_seconds                gauge    info["daemon_start_time"]
  halotune_profile_info{profile,verified}           gauge    info["profile"], info["verified"]
GPU
  halotune_gpu_info{GPU,device_id,name,revision,vbios_version,smc_fw_version,
                    gpu_metrics_version}            gauge    gpus[] identity fields
  halotune_gpu_busy_ratio{GPU}                      gauge    gpus[].busy_percent / 100
  halotune_gpu_vcn_busy_ratio{GPU}                  gauge    gpus[].vcn_busy_percent / 100
  halotune_gpu_clock_hertz{GPU,clock=sclk|mclk|fclk|socclk}
                                                    gauge    gpus[].<clock>_mhz * 1e6
  halotune_gpu_clock_limit_hertz{GPU,clock=sclk,limit=max|min|firmware_max}
                                                    gauge    gpus[].sclk_limit_mhz (max),
                                                             sclk_min_mhz (min), both OD_SCLK;
                                                             gfx_maxfreq_mhz (firmware_max)
  halotune_gpu_temperature_celsius{GPU,sensor=edge|soc|hotspot|mem|skin}
                                                    gauge    gpus[].<sensor>_temp_c
  halotune_gpu_socket_power_watts{GPU}              gauge    gpus[].socket_power_w
  halotune_gpu_gfx_power_watts{GPU}                 gauge    gpus[].gfx_power_w
  halotune_gpu_power_cap_watts{GPU}                 gauge    gpus[].power_cap_w
  halotune_gpu_performance_level_info{GPU,level}    gauge    gpus[].performance_level
  halotune_gpu_throttle_residency_total{GPU,reason=prochot|spl|fppt|sppt|thm_core|thm_gfx|
                                        thm_soc}    counter  gpus[].throttle_residency: firmware
                                                             ticks, unit undocumented; rate()
  halotune_memory_vram_total_bytes{GPU}             gauge    gpus[].vram_total_bytes
  halotune_memory_vram_used_bytes{GPU}              gauge    gpus[].vram_used_bytes
  halotune_memory_gtt_total_bytes{GPU}              gauge    gpus[].gtt_total_bytes
  halotune_memory_gtt_used_bytes{GPU}               gauge    gpus[].gtt_used_bytes
  halotune_dram_read_bytes_per_second{GPU}          gauge    gpus[].dram_read_bytes_per_s
  halotune_dram_write_bytes_per_second{GPU}         gauge    gpus[].dram_write_bytes_per_s
  halotune_dram_counters_saturated{GPU}             gauge    gpus[].dram_counters_saturated
                                                             (0/1, only with DRAM readings)
Memory
  halotune_memory_system_total_bytes                gauge    memory.system_total_bytes
  halotune_memory_system_available_bytes            gauge    memory.system_available_bytes
  halotune_memory_swap_total_bytes                  gauge    memory.swap_total_bytes
  halotune_memory_swap_used_bytes                   gauge    memory.swap_used_bytes
  halotune_memory_gpu_usable_bytes                  gauge    memory.gpu_usable_bytes
  halotune_memory_ttm_pages_limit_bytes             gauge    memory.ttm_pages_limit * 4096
  halotune_memory_gtt_pending_bytes                 gauge    memory.gtt_pending_bytes
Power
  halotune_power_limit_watts{limit=stapm|fast|slow|apu_slow}
                                                    gauge    power.<limit>_limit_w (ryzenadj)
  halotune_package_power_watts                      gauge    power.socket_power_w
  halotune_on_ac_power                              gauge    power.on_ac_power (0/1)
  halotune_platform_profile_info{profile}           gauge    power.platform_profile
CPU and NPU
  halotune_cpu_utilization_ratio                    gauge    cpu.utilization_percent / 100
  halotune_cpu_temperature_celsius                  gauge    cpu.temp_c (hottest core)
  halotune_cpu_power_watts                          gauge    cpu.power_w
  halotune_cpu_frequency_mean_hertz                 gauge    cpu.freq_mhz_avg * 1e6
  halotune_cpu_scaling_info{driver,governor,epp}    gauge    cpu.scaling_driver, governor, epp
  halotune_npu_activity_ratio                       gauge    npu.activity_percent / 100
  halotune_npu_power_watts                          gauge    npu.power_w
  halotune_npu_read_bytes_per_second                gauge    npu.read_bytes_per_s
  halotune_npu_write_bytes_per_second               gauge    npu.write_bytes_per_s

*_info metrics are always 1 and exposed as gauges (as "info" to an OpenMetrics scraper).
Reserved for the LLM probe (not emitted yet): `halotune_probe_tokens_per_second{profile,test}`.

Label values that the snapshot does not know (pci_slot, gfx_target of an unknown card) are the
empty string, which Prometheus treats as an absent label. `verified` is "true", "false" or
"unknown"; `halotune_profile_info` is absent when no profile is applied.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import socket
import socketserver
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from halotune.machine.memory import PAGE_SIZE
from halotune.machine.parse import is_uint
from halotune.model.snapshot import (CpuSnapshot, GpuSnapshot, MemorySnapshot, NpuSnapshot,
                                     PowerSnapshot, Snapshot)

log = logging.getLogger("halotune.daemon.exporter")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9874
METRICS_PATH = "/metrics"

# get_state() -> (latest snapshot or None, {"profile", "verified", "daemon_start_time"}).
# Called from the HTTP server's thread on every scrape: it must be cheap and thread-safe
# (return the latest snapshot, which the sampling loop replaces and never mutates; never
# sample from here).
State = tuple[Snapshot | None, dict]
GetState = Callable[[], State]

MHZ = 1_000_000
GPU_LABELS = ("card", "pci_slot", "gfx_target")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family of the contract.

    `name` is the exposed name (counters with `_total`, info metrics with `_info`), so the spec
    table reads like the exposition and the golden file.
    """

    name: str
    kind: str                 # "gauge" | "counter" | "info"
    labels: tuple[str, ...]
    help: str


def _g(name: str, labels: tuple[str, ...], help: str) -> MetricSpec:
    return MetricSpec(name, "gauge", labels, help)


# The contract, in exposition order. Adding a family is fine; renaming one breaks dashboards.
METRICS: tuple[MetricSpec, ...] = (
    _g("halotune_up", (), "1 when the daemon has a telemetry snapshot to export, else 0."),
    _g("halotune_snapshot_timestamp_seconds", (),
       "Unix time the exported snapshot was sampled (Snapshot.time)."),
    _g("halotune_daemon_start_time_seconds", (), "Unix time the halotune daemon started."),
    MetricSpec("halotune_profile_info", "info", (),
               "Tuning profile applied by halotune; verified says whether a read-back matched."),
    MetricSpec("halotune_gpu_info", "info", GPU_LABELS,
               "Identity of an AMD GPU (PCI device id, name, firmware versions)."),
    _g("halotune_gpu_busy_ratio", GPU_LABELS, "GPU busy fraction 0..1 (gpu_busy_percent)."),
    _g("halotune_gpu_vcn_busy_ratio", GPU_LABELS,
       "Video codec (VCN) busy fraction 0..1 (gpu_metrics)."),
    _g("halotune_gpu_clock_hertz", GPU_LABELS + ("clock",),
       "Current GPU clock by domain: sclk (shader), mclk (memory), fclk (fabric), socclk."),
    _g("halotune_gpu_clock_limit_hertz", GPU_LABELS + ("clock", "limit"),
       "Clock limits in force: max/min from pp_od_clk_voltage OD_SCLK, firmware_max from "
       "gpu_metrics current_gfx_maxfreq."),
    _g("halotune_gpu_temperature_celsius", GPU_LABELS + ("sensor",),
       "GPU/APU temperature by sensor (edge, soc, hotspot, mem, skin)."),
    _g("halotune_gpu_socket_power_watts", GPU_LABELS,
       "Socket power: on an APU the whole package (CPU + GPU + SoC)."),
    _g("halotune_gpu_gfx_power_watts", GPU_LABELS, "Power of the graphics engine alone."),
    _g("halotune_gpu_power_cap_watts", GPU_LABELS, "hwmon power1_cap in force."),
    MetricSpec("halotune_gpu_performance_level_info", "info", GPU_LABELS + ("level",),
               "power_dpm_force_performance_level (auto, manual, high, ...)."),
    MetricSpec("halotune_gpu_throttle_residency_total", "counter", GPU_LABELS + ("reason",),
               "SMU throttle residency counter per limiter (firmware ticks, unit undocumented); "
               "rate() > 0 means the limiter is throttling now. 32-bit, wraps like a reset."),
    _g("halotune_memory_vram_total_bytes", GPU_LABELS, "VRAM size (the UMA carve-out on an APU)."),
    _g("halotune_memory_vram_used_bytes", GPU_LABELS, "VRAM in use."),
    _g("halotune_memory_gtt_total_bytes", GPU_LABELS,
       "GTT size: system RAM the GPU may map (ttm pages_limit)."),
    _g("halotune_memory_gtt_used_bytes", GPU_LABELS, "GTT in use (model weights on an APU)."),
    _g("halotune_dram_read_bytes_per_second", GPU_LABELS,
       "DRAM read bandwidth of the whole SoC (gpu_metrics v3)."),
    _g("halotune_dram_write_bytes_per_second", GPU_LABELS,
       "DRAM write bandwidth of the whole SoC (gpu_metrics v3)."),
    _g("halotune_dram_counters_saturated", GPU_LABELS,
       "1 when a DRAM bandwidth counter hit its ceiling, so the rate is a lower bound."),
    _g("halotune_memory_system_total_bytes", (), "MemTotal from /proc/meminfo."),
    _g("halotune_memory_system_available_bytes", (), "MemAvailable from /proc/meminfo."),
    _g("halotune_memory_swap_total_bytes", (), "SwapTotal from /proc/meminfo."),
    _g("halotune_memory_swap_used_bytes", (), "SwapTotal - SwapFree from /proc/meminfo."),
    _g("halotune_memory_gpu_usable_bytes", (),
       "Memory the primary GPU can place model weights in (VRAM + GTT capped at RAM - 4 GiB)."),
    _g("halotune_memory_ttm_pages_limit_bytes", (),
       "ttm pages_limit in force, in bytes (the GTT ceiling)."),
    _g("halotune_memory_gtt_pending_bytes", (),
       "GTT size configured for the next boot when it differs from the one in force."),
    _g("halotune_power_limit_watts", ("limit",),
       "APU power limits (STAPM, fast/slow PPT, APU slow PPT) read with ryzenadj."),
    _g("halotune_package_power_watts", (), "APU package power (CPU + GPU + SoC)."),
    _g("halotune_on_ac_power", (), "1 on mains power, 0 on battery."),
    MetricSpec("halotune_platform_profile_info", "info", ("profile",),
               "ACPI platform_profile in force (low-power, balanced, performance, ...)."),
    _g("halotune_cpu_utilization_ratio", (), "CPU utilisation 0..1 across all logical CPUs."),
    _g("halotune_cpu_temperature_celsius", (), "Temperature of the hottest CPU core."),
    _g("halotune_cpu_power_watts", (), "Power of all CPU cores (gpu_metrics)."),
    _g("halotune_cpu_frequency_mean_hertz", (), "Mean current frequency of the CPU cores."),
    MetricSpec("halotune_cpu_scaling_info", "info", (),
               "cpufreq scaling driver, governor and energy-performance preference in force."),
    _g("halotune_npu_activity_ratio", (), "NPU (XDNA) activity 0..1 (gpu_metrics v3)."),
    _g("halotune_npu_power_watts", (), "NPU power (gpu_metrics v3)."),
    _g("halotune_npu_read_bytes_per_second", (), "NPU memory read bandwidth (gpu_metrics v3)."),
    _g("halotune_npu_write_bytes_per_second", (), "NPU memory write bandwidth (gpu_metrics v3)."),
)

_SPECS = {m.name: m for m in METRICS}


# --- conversions -------------------------------------------------------------------------------

def _scaled(value: float | None, factor: float) -> float | None:
    """value * factor, keeping None (unknown) as None rather than turning it into 0."""
    return None if value is None else value * factor


def _ratio(percent: float | None) -> float | None:
    """Percent -> 0..1, rounded to 8 places.

    The rounding only strips binary float noise (8.8 / 100 == 0.08800000000000001), which would
    otherwise show in the exposition and the golden file; the finest source resolution is
    0.01 % (gpu_metrics centi-percent), i.e. 1e-4 as a ratio, so nothing real is lost.
    """
    return None if percent is None else round(percent / 100, 8)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def _label(value: Any) -> str:
    """Label values are strings; unknown is "" (Prometheus treats it as no label)."""
    return "" if value is None else str(value)


def _verified_label(value: bool | None) -> str:
    return "unknown" if value is None else ("true" if value else "false")


def _unix_time(rfc3339: str | None) -> float | None:
    """Snapshot.time ("...Z") as Unix seconds; None if missing or unparsable."""
    if not rfc3339:
        return None
    try:
        t = _dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:                       # the contract says UTC; be explicit about it
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


# --- families ----------------------------------------------------------------------------------

class _Families:
    """Every family of METRICS, created up front so each is exposed even without samples."""

    def __init__(self) -> None:
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily)
        makers = {
            "gauge": lambda s: GaugeMetricFamily(s.name, s.help, labels=s.labels),
            # The client appends _total / _info itself; the spec holds the exposed name.
            "counter": lambda s: CounterMetricFamily(s.name[:-len("_total")], s.help,
                                                     labels=s.labels),
            "info": lambda s: InfoMetricFamily(s.name[:-len("_info")], s.help, labels=s.labels),
        }
        self._families = {s.name: makers[s.kind](s) for s in METRICS}

    def add(self, name: str, labels: Iterable[Any], value: float | None) -> None:
        """One sample; a None value is skipped (absence = unknown)."""
        if value is None:
            return
        spec = _SPECS[name]
        values = [_label(v) for v in labels]
        if len(values) != len(spec.labels):
            raise ValueError(f"{name}: {len(values)} label values for labels {spec.labels}")
        self._families[name].add_metric(values, value)

    def add_info(self, name: str, labels: Iterable[Any], info: dict[str, Any]) -> None:
        """One info sample (value 1) whose extra labels are `info`."""
        self._families[name].add_metric([_label(v) for v in labels],
                                        {k: _label(v) for k, v in info.items()})

    def __iter__(self) -> Iterator:
        return iter(self._families.values())


def _add_daemon(out: _Families, snapshot: Snapshot | None, info: dict) -> None:
    out.add("halotune_up", (), 0 if snapshot is None else 1)
    out.add("halotune_daemon_start_time_seconds", (), info.get("daemon_start_time"))
    if snapshot is not None:
        out.add("halotune_snapshot_timestamp_seconds", (), _unix_time(snapshot.time))
    if info.get("profile") is not None:
        verified = _verified_label(info.get("verified"))
        out.add_info("halotune_profile_info", (),
                     {"profile": info["profile"], "verified": verified})


def _add_gpu(out: _Families, g: GpuSnapshot) -> None:
    ids = (g.card, g.pci_slot, g.gfx_target)
    out.add_info("halotune_gpu_info", ids, {
        "device_id": g.device_id, "name": g.name, "revision": g.revision,
        "vbios_version": g.vbios_version, "smc_fw_version": g.smc_fw_version,
        "gpu_metrics_version": g.gpu_metrics_version})
    out.add("halotune_gpu_busy_ratio", ids, _ratio(g.busy_percent))
    out.add("halotune_gpu_vcn_busy_ratio", ids, _ratio(g.vcn_busy_percent))
    for clock, mhz in (("sclk", g.sclk_mhz), ("mclk", g.mclk_mhz), ("fclk", g.fclk_mhz),
                       ("socclk", g.socclk_mhz)):
        out.add("halotune_gpu_clock_hertz", (*ids, clock), _scaled(mhz, MHZ))
    for limit, mhz in (("max", g.sclk_limit_mhz), ("min", g.sclk_min_mhz),
                       ("firmware_max", g.gfx_maxfreq_mhz)):
        out.add("halotune_gpu_clock_limit_hertz", (*ids, "sclk", limit), _scaled(mhz, MHZ))
    for sensor, celsius in (("edge", g.edge_temp_c), ("soc", g.soc_temp_c),
                            ("hotspot", g.hotspot_temp_c), ("mem", g.mem_temp_c),
                            ("skin", g.skin_temp_c)):
        out.add("halotune_gpu_temperature_celsius", (*ids, sensor), celsius)
    out.add("halotune_gpu_socket_power_watts", ids, g.socket_power_w)
    out.add("halotune_gpu_gfx_power_watts", ids, g.gfx_power_w)
    out.add("halotune_gpu_power_cap_watts", ids, g.power_cap_w)
    if g.performance_level is not None:
        out.add_info("halotune_gpu_performance_level_info", (*ids, g.performance_level), {})
    for reason, ticks in (g.throttle_residency or {}).items():
        out.add("halotune_gpu_throttle_residency_total", (*ids, reason), ticks)
    _add_gpu_memory(out, ids, g)


def _add_gpu_memory(out: _Families, ids: tuple, g: GpuSnapshot) -> None:
    out.add("halotune_memory_vram_total_bytes", ids, g.vram_total_bytes)
    out.add("halotune_memory_vram_used_bytes", ids, g.vram_used_bytes)
    out.add("halotune_memory_gtt_total_bytes", ids, g.gtt_total_bytes)
    out.add("halotune_memory_gtt_used_bytes", ids, g.gtt_used_bytes)
    out.add("halotune_dram_read_bytes_per_second", ids, g.dram_read_bytes_per_s)
    out.add("halotune_dram_write_bytes_per_second", ids, g.dram_write_bytes_per_s)
    # dram_counters_saturated defaults to False even where there are no DRAM counters at all:
    # only a GPU that reports bandwidth can say whether its counters saturated.
    if g.dram_read_bytes_per_s is not None or g.dram_write_bytes_per_s is not None:
        out.add("halotune_dram_counters_saturated", ids, int(g.dram_counters_saturated))


def _add_memory(out: _Families, m: MemorySnapshot) -> None:
    out.add("halotune_memory_system_total_bytes", (), m.system_total_bytes)
    out.add("halotune_memory_system_available_bytes", (), m.system_available_bytes)
    out.add("halotune_memory_swap_total_bytes", (), m.swap_total_bytes)
    out.add("halotune_memory_swap_used_bytes", (), m.swap_used_bytes)
    out.add("halotune_memory_gpu_usable_bytes", (), m.gpu_usable_bytes)
    out.add("halotune_memory_ttm_pages_limit_bytes", (), _scaled(m.ttm_pages_limit, PAGE_SIZE))
    out.add("halotune_memory_gtt_pending_bytes", (), m.gtt_pending_bytes)


def _add_power(out: _Families, p: PowerSnapshot) -> None:
    for limit, watts in (("stapm", p.stapm_limit_w), ("fast", p.fast_limit_w),
                         ("slow", p.slow_limit_w), ("apu_slow", p.apu_slow_limit_w)):
        out.add("halotune_power_limit_watts", (limit,), watts)
    out.add("halotune_package_power_watts", (), p.socket_power_w)
    out.add("halotune_on_ac_power", (), _flag(p.on_ac_power))
    if p.platform_profile is not None:
        out.add_info("halotune_platform_profile_info", (), {"profile": p.platform_profile})


def _add_cpu(out: _Families, c: CpuSnapshot) -> None:
    out.add("halotune_cpu_utilization_ratio", (), _ratio(c.utilization_percent))
    out.add("halotune_cpu_temperature_celsius", (), c.temp_c)
    out.add("halotune_cpu_power_watts", (), c.power_w)
    out.add("halotune_cpu_frequency_mean_hertz", (), _scaled(c.freq_mhz_avg, MHZ))
    scaling = {"driver": c.scaling_driver, "governor": c.governor, "epp": c.epp}
    if any(v is not None for v in scaling.values()):
        out.add_info("halotune_cpu_scaling_info", (), scaling)


def _add_npu(out: _Families, n: NpuSnapshot) -> None:
    out.add("halotune_npu_activity_ratio", (), _ratio(n.activity_percent))
    out.add("halotune_npu_power_watts", (), n.power_w)
    out.add("halotune_npu_read_bytes_per_second", (), n.read_bytes_per_s)
    out.add("halotune_npu_write_bytes_per_second", (), n.write_bytes_per_s)


# --- collector, render -------------------------------------------------------------------------

class SnapshotCollector:
    """A prometheus_client custom collector over the daemon's latest snapshot.

    prometheus_client accepts any object with collect() (the Collector base class is only an
    interface), so this class needs nothing from the library at import time; the metric
    family classes are imported when a scrape builds them. It keeps no state of its own: every
    scrape reads get_state() afresh, so what is exported is exactly the daemon's last sample.
    """

    def __init__(self, get_state: GetState):
        self._get_state = get_state

    def collect(self) -> Iterator:
        snapshot, info = self._get_state()
        out = _Families()
        _add_daemon(out, snapshot, info or {})
        if snapshot is not None:
            for g in snapshot.gpus:
                _add_gpu(out, g)
            _add_memory(out, snapshot.memory)
            _add_power(out, snapshot.power)
            _add_cpu(out, snapshot.cpu)
            _add_npu(out, snapshot.npu)
        yield from out


def make_registry(get_state: GetState):
    """A private CollectorRegistry holding only the snapshot collector.

    Private, not prometheus_client.REGISTRY: the global one also carries the client's process
    and platform collectors and any metric a library registers, none of which is our contract.
    """
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get_state))
    return registry


def render(get_state: GetState) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of the current state."""
    from prometheus_client import generate_latest

    return generate_latest(make_registry(get_state))


# --- HTTP server -------------------------------------------------------------------------------

def _bare_host(host: str) -> str:
    """'[::1]' -> '::1' (the bracketed form of HOST:PORT settings)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    """True for a loopback address literal or the name "localhost".

    Other names are not resolved: a name that resolves to loopback today may not tomorrow, and
    the check guards an unauthenticated endpoint.
    """
    host = _bare_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9874' / '[::1]:9874' (the `[metrics] listen` setting) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not is_uint(port):
        raise ValueError(f"metrics listen address {listen!r}: must be HOST:PORT, e.g. "
                         f"{DEFAULT_HOST}:{DEFAULT_PORT}")
    return _bare_host(host), int(port)


def _check_host(host: str, allow_remote: bool) -> None:
    if allow_remote or is_loopback(host):
        return
    raise ValueError(
        f"refusing to serve metrics on {host!r}: not a loopback address. /metrics has no "
        f"authentication and describes this machine's load and tuning; to expose it to the "
        f"network set `allow_remote = true` in the [metrics] section of the daemon config "
        f"(MetricsServer(..., allow_remote=True)), or listen on 127.0.0.1 and scrape through a "
        f"reverse proxy")


# A scrape is one small request answered from memory: these bound what any local process
# (the port is open to every user, see docs/api.md) can hold of the daemon through it.
SCRAPE_WORKERS = 4          # requests served at once
SCRAPE_TIMEOUT_S = 5.0      # to send the request, and per read/write while served
MAX_WAITING = 64            # accepted connections that have not sent their request yet


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the debug log, not stderr: a 15 s scrape would flood the journal."""

    timeout = SCRAPE_TIMEOUT_S    # socket timeout of each accepted connection (slowloris)

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 (base-class name)
        log.debug("metrics %s - %s", self.address_string(), format % args)


class _Server(WSGIServer):
    """Serves each scrape from a fixed pool of SCRAPE_WORKERS threads, once its request has
    arrived. Accepted connections wait in a selector until they send something; at most
    MAX_WAITING wait (a new one evicts the oldest) and none longer than SCRAPE_TIMEOUT_S. A
    thread per connection let one local user open 900 threads and take the daemon to its
    descriptor limit; idle connections no longer hold a thread, nor delay a scrape."""

    request_queue_size = 128    # listen backlog: a burst of connects is not dropped (5 before)

    def __init__(self, *args, **kwargs):
        import selectors
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(SCRAPE_WORKERS, thread_name_prefix="halotune-scrape")
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, float] = {}     # connection -> deadline, in order
        self._lock = threading.Lock()
        self._closed = threading.Event()
        super().__init__(*args, **kwargs)
        self._watcher = threading.Thread(target=self._watch, name="halotune-scrape-wait",
                                         daemon=True)
        self._watcher.start()

    def process_request(self, request, client_address) -> None:
        import selectors
        import time

        request.setblocking(False)
        with self._lock:
            if len(self._waiting) >= MAX_WAITING:
                oldest = next(iter(self._waiting))
                self._forget(oldest)
                self.shutdown_request(oldest)
            self._waiting[request] = time.monotonic() + SCRAPE_TIMEOUT_S
            self._selector.register(request, selectors.EVENT_READ, client_address)

    def _forget(self, request) -> None:
        del self._waiting[request]
        self._selector.unregister(request)

    def _watch(self) -> None:
        import time

        while not self._closed.is_set():
            ready = self._selector.select(timeout=0.25) if self._waiting else ()
            if not ready:
                self._closed.wait(0.05 if not self._waiting else 0)
            now = time.monotonic()
            with self._lock:
                for key, _events in ready:
                    if key.fileobj in self._waiting:
                        self._forget(key.fileobj)
                        key.fileobj.setblocking(True)
                        self._pool.submit(self._serve_one, key.fileobj, key.data)
                for request, deadline in list(self._waiting.items()):
                    if deadline <= now:
                        self._forget(request)
                        self.shutdown_request(request)

    def _serve_one(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken client must not end the worker
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        log.debug("metrics: request from %s failed", client_address, exc_info=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(host): a reverse DNS lookup that can hang
        # daemon start-up for seconds on a machine with a broken resolver. The name is unused.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port
        self.setup_environ()

    def server_close(self) -> None:
        super().server_close()
        self._closed.set()
        self._watcher.join(2)
        with self._lock:
            for request in list(self._waiting):
                self._forget(request)
                self.shutdown_request(request)
        self._selector.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _routes(metrics_app: Callable) -> Callable:
    """Serve the exposition at /metrics only (prometheus_client's app answers any path)."""

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == METRICS_PATH:
            return metrics_app(environ, start_response)
        if path == "/":
            status, body = "200 OK", b"halotune exporter: metrics at /metrics\n"
        else:
            status, body = "404 Not Found", b"not found: halotune metrics are at /metrics\n"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsServer:
    """`/metrics` over HTTP from a background thread; start() and stop() from the daemon.

    Loopback only unless allow_remote=True: the daemon config decides, this class enforces.
    Port 0 picks a free port (tests); `address` reports the one bound.
    """

    def __init__(self, get_state: GetState, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 *, allow_remote: bool = False):
        _check_host(host, allow_remote)
        if not 0 <= port < 65536:
            raise ValueError(f"metrics port {port} out of range 0..65535")
        self._get_state = get_state
        self._host, self._port = _bare_host(host), port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) bound; the configured pair before start()."""
        if self._server is None:
            return self._host, self._port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve in a daemon thread. Raises OSError if the port cannot be bound."""
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        from prometheus_client import make_wsgi_app

        app = _routes(make_wsgi_app(make_registry(self._get_state)))
        server_class = _Server6 if ":" in self._host else _Server
        self._server = make_server(self._host, self._port, app, server_class=server_class,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5},
                                        name="halotune-metrics", daemon=True)
        self._thread.start()
        log.info("metrics: serving http://%s:%d%s", *self._url_parts())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the listening socket and join the thread (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()            # returns once serve_forever has left its loop
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        self._server = self._thread = None

    def _url_parts(self) -> tuple[str, int, str]:
        host, port = self.address
        return (f"[{host}]" if ":" in host else host), port, METRICS_PATH

    def __enter__(self) -> "MetricsServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
