"""Data and a fake Source for the TUI tests (fixtures in conftest.py).

The TUI only ever sees snapshot dicts, so the tests feed it literal ones: the reference tree
sampled once, then frozen (time, root, version, boot id, host-dependent text), with GPU clients
and history made up here. Nothing depends on the clock, the host or /work/shared, so the
SVG snapshots are the same on every machine (with the pinned textual and rich).
"""

from __future__ import annotations

import copy
import math
import os

from halotune.machine.rootfs import RootFS
from halotune.telemetry.sampler import Sampler
from halotune.tui.sources import Source, SourceError

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(TESTS, "fixtures", "strix-halo")
FROZEN_TIME = "2026-01-15T12:00:00.000Z"
FROZEN_EPOCH = 1768478400.0                     # FROZEN_TIME as POSIX seconds
KERNEL = "6.17.0-5-generic"
DAEMON = {"profile": "llm-max", "verified": True, "holds": [], "sample_interval_s": 1.0,
          "pid": 4242, "root": "/"}
PROFILES = [
    {"name": "bench-stable", "description": "Lowest run-to-run variance for benchmarks: fixed "
                                            "120 W, GPU pinned at 2600 MHz, no boost"},
    {"name": "llm-efficient", "description": "Best tokens per joule: 85 W sustained, balanced "
                                             "platform profile, CPU prefers efficiency"},
    {"name": "llm-max", "description": "Highest sustained LLM throughput: 120 W limits, "
                                       "performance CPU, GPU clocks left to the firmware"},
    {"name": "quiet", "description": "Low noise: 50 W sustained, 55 W bursts, GPU clock capped "
                                     "at 2000 MHz, CPU saves power"},
    {"name": "stock", "description": "The machine's own settings: roll back everything "
                                     "halotune changed"},
]
PROCESSES = [
    {"pid": 31337, "name": "llama-server", "pci_slot": "0000:c3:00.0", "driver": "amdgpu",
     "clients": 1, "vram_bytes": 150994944, "gtt_bytes": 61203283968,
     "engine_gfx_percent": 0.0, "engine_compute_percent": 96.4, "kfd": True},
    {"pid": 2211, "name": "gnome-shell", "pci_slot": "0000:c3:00.0", "driver": "amdgpu",
     "clients": 2, "vram_bytes": 16777216, "gtt_bytes": 402653184,
     "engine_gfx_percent": 1.2, "engine_compute_percent": 0.0, "kfd": False},
    {"pid": 4321, "name": "firefox", "pci_slot": "0000:c3:00.0", "driver": "amdgpu",
     "clients": 1, "vram_bytes": 0, "gtt_bytes": 188743680,
     "engine_gfx_percent": 0.4, "engine_compute_percent": None, "kfd": False},
]
EVENTS = [
    {"seq": 1, "time": "2026-01-15T11:55:00.000Z", "kind": "start",
     "message": "halotune 0.1.0 serving /run/halotune/halotune.sock (root /, pid 4242)"},
    {"seq": 2, "time": "2026-01-15T11:55:01.000Z", "kind": "apply",
     "message": "llm-max (default profile): llm-max applied: 7 value(s) changed, all verified"},
    {"seq": 3, "time": "2026-01-15T11:58:30.000Z", "kind": "rule",
     "message": "process llama-server started: llm-max kept"},
]


def freeze(doc: dict, time: str = FROZEN_TIME) -> dict:
    """What varies by run, machine or checkout, set to fixed values."""
    doc = copy.deepcopy(doc)
    doc.update(time=time, root="/", halotune_version="0.1.0", kernel_release=KERNEL,
               boot_id="00000000-0000-4000-8000-000000000000")
    hint = doc["power"].get("limits_hint")
    if hint:
        doc["power"]["limits_hint"] = ("ryzenadj not found (looked in /usr/local/bin/ryzenadj, "
                                       "/usr/bin/ryzenadj); install RyzenAdj (>= 0.17) to read "
                                       "STAPM/PPT limits")
    return doc


def sample(root: str) -> dict:
    sampler = Sampler(RootFS(root))
    try:
        return sampler.sample().to_dict()
    finally:
        sampler.close()


def reference_doc() -> dict:
    """The reference Strix Halo tree, frozen, with GPU clients and a daemon that serves it."""
    doc = freeze(sample(REFERENCE))
    doc["processes"] = copy.deepcopy(PROCESSES)
    doc["daemon"] = dict(DAEMON)
    return doc


def later(doc: dict, seconds: float = 1.0, **gpu) -> dict:
    """The same snapshot `seconds` later, with SPL throttling counted and `gpu` fields changed."""
    d = copy.deepcopy(doc)
    d["time"] = f"2026-01-15T12:00:{int(seconds):02d}.000Z"
    g = d["gpus"][0]
    if g.get("throttle_residency"):
        g["throttle_residency"]["spl"] += 40
    g.update(gpu)
    return d


def synthetic_history(seconds: int = 300, end: float = FROZEN_EPOCH) -> dict:
    """The daemon's `history` result for the last `seconds`: an LLM pattern (prefill bursts,
    token generation, idle) at 1 Hz, made up but shaped like the simulated machine's."""
    fields = ["t", "busy_percent", "sclk_mhz", "socket_power_w", "gfx_power_w", "edge_temp_c",
              "soc_temp_c", "dram_read_bytes_per_s", "dram_write_bytes_per_s", "gtt_used_bytes",
              "cpu_utilization_percent", "cpu_temp_c", "npu_activity_percent"]
    samples = []
    for i in range(seconds):
        t = end - seconds + i
        phase = (i % 40)
        if phase < 8:
            busy, power, dram = 98.0, 98.0, 48e9
        elif phase < 30:
            busy, power, dram = 62.0, 78.0, 88e9
        else:
            busy, power, dram = 2.0, 14.0, 2e9
        temp = 50.0 + 12.0 * (1 - math.exp(-i / 60.0)) + power / 20.0
        samples.append([t, busy, 2743, power, power * 0.7, round(temp, 2), round(temp + 2.4, 2),
                        dram * 0.84, dram * 0.16, 61_000_000_000, 9.0, 60.0, 0.0])
    return {"fields": fields, "samples": samples, "windows": {}}


class FakeSource(Source):
    """Replays snapshot dicts; records calls; apply() answers like the daemon and pushes the
    snapshot a daemon would send next (the profile in the header, its power limits)."""

    mode = "daemon"
    read_only = False

    def __init__(self, docs=(), *, mode="daemon", connected=True, can_mutate=True,
                 profiles=PROFILES, history=None, events=(), apply_error=None):
        self.docs = list(docs)
        self.mode = mode
        self.read_only = mode != "daemon"
        self.connected, self.can_mutate = connected, can_mutate
        self._profiles = list(profiles)
        self._history, self._events = history, list(events)
        self.apply_error = apply_error
        self.calls: list[tuple] = []
        self.sink = None
        self.stopped = False

    def start(self, sink) -> None:
        self.sink = sink
        sink("state", {"mode": self.mode, "connected": self.connected,
                       "detail": "connected" if self.connected else "no daemon",
                       "can_mutate": self.can_mutate, "interval_s": 1.0})
        for d in self.docs:
            sink("snapshot", d)

    def push(self, kind: str, payload) -> None:
        self.sink(kind, payload)

    def stop(self) -> None:
        self.stopped = True

    def profiles(self) -> dict:
        self.calls.append(("profiles",))
        return {"profiles": self._profiles, "errors": []}

    def history(self, seconds):
        self.calls.append(("history", seconds))
        return self._history

    def events(self):
        self.calls.append(("events",))
        return list(self._events)

    def apply(self, profile: str) -> dict:
        self.calls.append(("apply", profile))
        if self.read_only:
            return super().apply(profile)
        if self.apply_error is not None:
            raise self.apply_error
        if self.docs:
            d = copy.deepcopy(self.docs[-1])
            d["daemon"] = dict(d.get("daemon") or {}, profile=profile, verified=True)
            d["power"].update(stapm_limit_w=50.0, fast_limit_w=55.0, slow_limit_w=50.0,
                              limits_source="ryzenadj", platform_profile="low-power")
            self.push("snapshot", d)
        return {"ok": True, "summary": f"{profile} applied: 8 value(s) changed, all verified"}

    def rollback(self) -> dict:
        self.calls.append(("rollback",))
        if self.read_only:
            return super().rollback()
        return {"ok": True, "summary": "original values restored and verified"}

    def validate(self) -> dict:
        self.calls.append(("validate",))
        if self.read_only:
            return super().validate()
        return {"ok": True, "summary": "1 round(s): llm-efficient pass, llm-max no expectations; "
                                       "machine rolled back"}
