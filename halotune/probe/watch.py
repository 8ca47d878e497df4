"""Telemetry while the probe runs: sample the machine at >= 4 Hz in a low-priority thread.

The sampler must not steal the benchmark's cores: its thread lowers its own priority to nice 19
(setpriority(PRIO_PROCESS, tid) acts on one thread on Linux, see setpriority(2) NOTES; os.nice
would renice the whole process on other systems), and a CPU backend runs one thread fewer.

summary(t0, t1) integrates over a time window (time.monotonic()) with the samples held between
readings (each reading stands until the next), so even a window shorter than the sampling
interval gets the reading in force. gpu_metrics power is itself filtered by the SMU with a 1 s
time constant, so windows shorter than SHORT_WINDOW_S are flagged. Power from a simulated
machine is labelled "simulated"; with no AMD GPU it is null with the reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

SHORT_WINDOW_S = 5.0
NO_GPU_REASON = ("no AMD GPU found: package power is read from amdgpu's gpu_metrics, which "
                 "this machine does not have")


@dataclass
class Reading:
    t: float
    socket_w: float | None
    gfx_w: float | None
    temp_c: float | None
    sclk_mhz: float | None
    mclk_mhz: float | None
    dram_read: float | None
    dram_write: float | None
    throttle: dict | None


def _reading(snap, t: float) -> Reading:
    g = snap.primary_gpu
    socket = snap.power.socket_power_w
    if socket is None and g is not None:
        socket = g.socket_power_w
    temps = [v for v in ((g.edge_temp_c, g.hotspot_temp_c, g.soc_temp_c) if g else ())
             if v is not None]
    if snap.cpu.temp_c is not None:
        temps.append(snap.cpu.temp_c)
    return Reading(t=t, socket_w=socket, gfx_w=g.gfx_power_w if g else None,
                   temp_c=max(temps) if temps else None,
                   sclk_mhz=g.sclk_mhz if g else None, mclk_mhz=g.mclk_mhz if g else None,
                   dram_read=g.dram_read_bytes_per_s if g else None,
                   dram_write=g.dram_write_bytes_per_s if g else None,
                   throttle=dict(g.throttle_residency) if g and g.throttle_residency else None)


class TelemetryWatch:
    """Context manager: start() on enter, stop() on exit."""

    def __init__(self, fs, hz: float = 4.0, programs=None, simulated: bool | None = None,
                 sampler=None):
        if hz <= 0:
            raise ValueError("hz must be positive")
        self.fs = fs
        self.hz = hz
        self.interval = 1.0 / hz
        self.programs = programs
        self.simulated = fs.is_simulated if simulated is None else simulated
        self._sampler = sampler
        self.readings: list[Reading] = []
        self.errors: list[str] = []
        self.has_gpu: bool | None = None
        self.priority_lowered: bool | None = None
        self.thread_id: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle --------------------------------------------------------------------
    def _make_sampler(self):
        from halotune.telemetry.sampler import Sampler

        # No ryzenadj here: a process start per limit refresh is not worth it mid-benchmark.
        s = Sampler(self.fs, programs=self.programs, read_tdp=False)
        s.drm_clients = None       # /proc walks of every process: not needed for the probe
        return s

    def start(self) -> None:
        if self._thread is not None:
            return
        if self._sampler is None:
            self._sampler = self._make_sampler()
        self.has_gpu = bool(self._sampler.devices)
        self._stop.clear()
        self._sample_once()     # a reading in force from the start
        self._thread = threading.Thread(target=self._run, name="halotune-probe-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5.0)
        self._thread = None
        self._sample_once()     # closes the last window
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def mark(self) -> float:
        return time.monotonic()

    def _lower_priority(self) -> None:
        self.thread_id = threading.get_native_id()
        try:
            # setpriority(2) on a thread id changes only that thread on Linux.
            os.setpriority(os.PRIO_PROCESS, self.thread_id, 19)
            self.priority_lowered = True
        except (AttributeError, OSError) as e:
            self.priority_lowered = False
            log.debug("telemetry thread priority unchanged: %s", e)

    def _run(self) -> None:
        self._lower_priority()
        next_t = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self._sample_once()
            next_t += self.interval
            now = time.monotonic()
            if next_t < now:           # fell behind (a slow read): do not burst to catch up
                next_t = now + self.interval

    def _sample_once(self) -> None:
        if self._sampler is None:
            return
        try:
            snap = self._sampler.sample()
        except Exception as e:  # noqa: BLE001 - a failed reading must not end the probe
            self.errors.append(str(e))
            return
        r = _reading(snap, time.monotonic())
        with self._lock:
            self.readings.append(r)

    def add(self, reading: Reading) -> None:
        """Append a reading (tests and replays)."""
        with self._lock:
            self.readings.append(reading)

    # --- results -----------------------------------------------------------------------
    def power_source(self) -> tuple[str | None, str | None]:
        """("sysfs"|"simulated"|None, reason when None)."""
        with self._lock:
            have = any(r.socket_w is not None for r in self.readings)
        if have:
            return ("simulated" if self.simulated else "sysfs"), None
        if self.has_gpu is False:
            return None, NO_GPU_REASON
        return None, ("the AMD GPU reported no socket power (gpu_metrics and hwmon power1_*"
                      " absent or unreadable)")

    def _window(self, t0: float | None, t1: float | None) -> list[tuple[float, Reading]]:
        """(weight in s, reading) pieces covering [t0, t1], each reading held until the next.
        A zero-length window gets the reading in force at that instant with weight 0."""
        with self._lock:
            rs = list(self.readings)
        if not rs:
            return []
        if t0 is None:
            t0 = rs[0].t
        if t1 is None:
            t1 = rs[-1].t
        pieces = []
        for i, r in enumerate(rs):
            start = r.t
            end = rs[i + 1].t if i + 1 < len(rs) else max(t1, r.t)
            lo, hi = max(start, t0), min(end, t1)
            if hi > lo:
                pieces.append((hi - lo, r))
        if not pieces:
            before = [r for r in rs if r.t <= t0] or rs[:1]
            pieces.append((0.0, before[-1]))
        return pieces

    @staticmethod
    def _avg(pieces, attr: str) -> float | None:
        vals = [(w, getattr(r, attr)) for w, r in pieces if getattr(r, attr) is not None]
        if not vals:
            return None
        total = sum(w for w, _ in vals)
        if total <= 0:
            return sum(v for _, v in vals) / len(vals)
        return sum(w * v for w, v in vals) / total

    def average_power(self, t0: float | None, t1: float | None) -> float | None:
        """Time-weighted average socket power over the window, W."""
        return self._avg(self._window(t0, t1), "socket_w")

    def summary(self, t0: float | None = None, t1: float | None = None) -> dict:
        pieces = self._window(t0, t1)
        with self._lock:
            rs = list(self.readings)
        lo = t0 if t0 is not None else (rs[0].t if rs else 0.0)
        hi = t1 if t1 is not None else (rs[-1].t if rs else 0.0)
        inside = [r for r in rs if lo <= r.t <= hi]
        source, reason = self.power_source()
        temps = [r.temp_c for _, r in pieces if r.temp_c is not None]
        return {
            "samples": len(inside),
            "duration_s": round(max(hi - lo, 0.0), 3),
            "avg_socket_power_w": _r(self._avg(pieces, "socket_w")) if source else None,
            "avg_gfx_power_w": _r(self._avg(pieces, "gfx_w")) if source else None,
            "max_temp_c": max(temps) if temps else None,
            "avg_sclk_mhz": _r(self._avg(pieces, "sclk_mhz")),
            "max_mclk_mhz": max((r.mclk_mhz for _, r in pieces if r.mclk_mhz is not None),
                                default=None),
            "avg_dram_read_bytes_per_s": _int(self._avg(pieces, "dram_read")),
            "avg_dram_write_bytes_per_s": _int(self._avg(pieces, "dram_write")),
            "throttle_delta": self._throttle_delta(lo, hi),
            "power_source": source,
            "power_null_reason": reason,
            "short_window": (hi - lo) < SHORT_WINDOW_S,
        }

    def _throttle_delta(self, t0: float, t1: float) -> dict | None:
        """Advance of each throttle residency counter from the reading in force at t0 to the
        one at t1 (monotonic counters: deltas are what mean something)."""
        with self._lock:
            rs = [r for r in self.readings if r.throttle]
        if not rs:
            return None
        first = ([r for r in rs if r.t <= t0] or rs[:1])[-1]
        last = ([r for r in rs if r.t <= t1] or rs[:1])[-1]
        out = {}
        for k, v in last.throttle.items():
            a = first.throttle.get(k)
            out[k] = None if v is None or a is None else max(v - a, 0)
        return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _int(v: float | None) -> int | None:
    return None if v is None else int(round(v))
