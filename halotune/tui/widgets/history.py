"""History: sparklines of the last minutes of package power, GPU busy, edge temperature and
DRAM traffic, from the TUI's own history (prefilled by the daemon's)."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import DIM, NA, TEMP_EDGE_C, level, spark
from halotune.tui.history import STEP_S
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines

# (series, label, scale low, scale high or None for "the limit / the peak seen", format, style)
ROWS = (
    ("power_w", "power", 0.0, None, lambda v: f"{v:.0f} W", "yellow"),
    ("busy_percent", "busy", 0.0, 100.0, lambda v: f"{v:.0f} %", "green"),
    ("temp_c", "temp", 30.0, 100.0, lambda v: f"{v:.0f} °C", None),
    ("dram_bps", "DRAM", 0.0, 256e9, lambda v: f"{v / 1e9:.0f} GB/s", "cyan"),
)


class HistoryPanel(Panel):
    TITLE = "History"

    def build(self, state: ViewState, width: int) -> Text:
        h = state.history
        p = (state.doc or {}).get("power") or {}
        out = []
        w = max(4, width - 15)
        minutes = w * STEP_S / 60
        title = f"History (last {minutes:.0f} min)" if minutes >= 2 else f"History (last {w * STEP_S:.0f} s)"
        if self.border_title != title:
            self.border_title = title
        for name, label, lo, hi, fmt, style in ROWS:
            if hi is None:
                hi = max(x for x in (p.get("fast_limit_w"), p.get("stapm_limit_w"),
                                     h.peak(name), 1.0) if x is not None)
            latest = h.latest(name)
            t = Text(f"{label:<6}", style=DIM)
            t.append(f"{spark(h.series(name, w), lo, hi):>{w}}",
                     style=style or level(latest, TEMP_EDGE_C))
            t.append(f" {fmt(latest) if latest is not None else NA:>8}")
            out.append(t)
        return lines(*out)
