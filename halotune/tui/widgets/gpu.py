"""GPU: busy, shader clock against the limit in force, memory/fabric clocks, temperatures."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import DIM, LOAD, NA, TEMP_EDGE_C, bar, kv, level, num, ratio
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines


def temp(v) -> tuple[str, str]:
    return num(v, 1, " °C"), level(v, TEMP_EDGE_C)


class GpuPanel(Panel):
    TITLE = "GPU"

    def build(self, state: ViewState, width: int) -> Text:
        g = state.gpu
        if g is None:
            return Text("no AMD GPU in this snapshot", style="dim")
        bw = max(4, width - 17)
        busy = g.get("busy_percent")
        t_busy = Text("busy ", style=DIM)
        t_busy.append_text(bar(ratio(busy, 100), bw, LOAD))
        t_busy.append(f" {num(busy, 0, ' %'):>6}")
        sclk = g.get("sclk_mhz")
        limit = g.get("sclk_limit_mhz") or g.get("gfx_maxfreq_mhz")
        t_sclk = Text("sclk ", style=DIM)
        t_sclk.append(num(sclk))
        t_sclk.append(" / ", style=DIM)
        t_sclk.append(num(limit) + " MHz" if limit is not None else NA)
        maxrange = (g.get("sclk_range_mhz") or [None, None])[1]
        if limit is not None and maxrange and limit < maxrange:
            t_sclk.append(f" capped (max {maxrange})", style="yellow")
        t_clk = kv(Text(), "mclk", num(g.get("mclk_mhz"), unit=" MHz"))
        kv(t_clk, "fclk", num(g.get("fclk_mhz"), unit=" MHz"))
        t_temp = Text()
        for label, key in (("edge", "edge_temp_c"), ("soc", "soc_temp_c")):
            kv(t_temp, label, *temp(g.get(key)))
        if g.get("hotspot_temp_c") is not None:
            kv(t_temp, "hotspot", *temp(g.get("hotspot_temp_c")))
        t_lvl = kv(Text(), "level", g.get("performance_level") or NA)
        if g.get("vcn_busy_percent") is not None:
            kv(t_lvl, "video", num(g.get("vcn_busy_percent"), 0, " %"))
        if g.get("gfx_power_w") is not None:
            kv(t_lvl, "gfx", num(g.get("gfx_power_w"), 1, " W"))
        return lines(t_busy, t_sclk, t_clk, t_temp, t_lvl)
