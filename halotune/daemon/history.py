"""The in-memory history: compact rows of the key values, one per sample, in a ring.

A full snapshot is kilobytes (per-core arrays); an hour at 1 Hz of those would cost tens of MB.
History keeps only the values sparklines and windows need, as tuples.
"""

from __future__ import annotations

import math
import time
from collections import deque

from halotune.model.snapshot import Snapshot

FIELDS = ("t", "busy_percent", "sclk_mhz", "socket_power_w", "gfx_power_w", "edge_temp_c",
          "soc_temp_c", "dram_read_bytes_per_s", "dram_write_bytes_per_s", "gtt_used_bytes",
          "cpu_utilization_percent", "cpu_temp_c", "npu_activity_percent")


def row_of(snap: Snapshot, t: float) -> tuple:
    g = snap.primary_gpu
    gv = (None,) * 9 if g is None else (
        g.busy_percent, g.sclk_mhz, g.socket_power_w, g.gfx_power_w, g.edge_temp_c,
        g.soc_temp_c, g.dram_read_bytes_per_s, g.dram_write_bytes_per_s, g.gtt_used_bytes)
    return (t, *gv, snap.cpu.utilization_percent, snap.cpu.temp_c, snap.npu.activity_percent)


class History:
    def __init__(self, seconds: int, interval_s: float):
        # Sized for the fastest sampling a subscriber can ask for, capped to bound memory.
        self.seconds = seconds
        self.rows: deque[tuple] = deque(maxlen=min(int(seconds / max(interval_s, 0.1)) + 1, 36000))

    def add(self, snap: Snapshot, t: float | None = None) -> None:
        self.rows.append(row_of(snap, time.time() if t is None else t))

    def query(self, seconds: float, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        since = now - min(seconds, self.seconds)
        rows = [r for r in self.rows if r[0] >= since]
        windows = {}
        for i, name in enumerate(FIELDS[1:], start=1):
            vals = [r[i] for r in rows if r[i] is not None and not (isinstance(r[i], float) and math.isnan(r[i]))]
            if vals:
                windows[name] = {"min": min(vals), "mean": sum(vals) / len(vals), "max": max(vals)}
            else:
                windows[name] = {"min": None, "mean": None, "max": None}
        return {"fields": list(FIELDS), "samples": [list(r) for r in rows], "windows": windows}
