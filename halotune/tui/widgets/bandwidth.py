"""Bandwidth: DRAM read and write (gpu_metrics v3.0) against the 256 GB/s peak; flagged when
the u16 MB/s counters are pinned at their 65.5 GB/s limit."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import (BAD, DIM, NA, OK, PEAK_DRAM_BPS, SATURATED_BPS, bar, rate,
                                     ratio)
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines


class BandwidthPanel(Panel):
    TITLE = "DRAM bandwidth"

    def build(self, state: ViewState, width: int) -> Text:
        g = state.gpu or {}
        rd, wr = g.get("dram_read_bytes_per_s"), g.get("dram_write_bytes_per_s")
        saturated = bool(g.get("dram_counters_saturated"))
        if rd is None and wr is None and not saturated:
            version = g.get("gpu_metrics_version")
            why = f"gpu_metrics {version} has no DRAM counters" if version else "no gpu_metrics"
            return lines(Text(f"read {NA}  write {NA}", style=DIM), Text(why, style=DIM))
        out = []
        for name, v in (("read", rd), ("write", wr)):
            label = f" {'≥65.5 GB/s' if v is None and saturated else rate(v):>10}"
            t = Text(f"{name:<6}", style=DIM)
            t.append_text(bar(ratio(v, PEAK_DRAM_BPS), max(4, width - 6 - len(label)), "cyan"))
            t.append(label)
            out.append(t)
        total = (rd or 0) + (wr or 0)
        t = Text(f"total {total / 1e9:.1f} of 256 GB/s peak ({100 * total / PEAK_DRAM_BPS:.0f} %)",
                 style=DIM)
        out.append(t)
        if saturated or any(v is not None and v >= SATURATED_BPS for v in (rd, wr)):
            out.append(Text("⚠ counter saturated at 65.5 GB/s: real traffic is higher", style=BAD))
        else:
            out.append(Text("counters in range", style=OK + " dim"))
        return lines(*out)
