"""Power: package power against the STAPM/fast/slow limits, GPU and CPU share, platform profile,
and which throttle residency counters grew since the previous sample."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import BAD, DIM, LIMIT_RATIO, NA, OK, WARN, bar, clip, kv, level, num, ratio
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines

THROTTLE_NAMES = {"prochot": "PROCHOT", "spl": "SPL", "fppt": "fast PPT", "sppt": "slow PPT",
                  "thm_core": "core temp", "thm_gfx": "GFX temp", "thm_soc": "SoC temp"}


class PowerPanel(Panel):
    TITLE = "Power"

    def build(self, state: ViewState, width: int) -> Text:
        doc = state.doc or {}
        p = doc.get("power") or {}
        g = state.gpu or {}
        cpu = doc.get("cpu") or {}
        watts = p.get("socket_power_w")
        if watts is None:
            watts = g.get("socket_power_w")
        stapm, fast, slow = p.get("stapm_limit_w"), p.get("fast_limit_w"), p.get("slow_limit_w")
        sustained = stapm or slow
        label = f"{num(watts, 1)} / {num(sustained, 0, ' W')}" if sustained else num(watts, 1, " W")
        frac = ratio(watts, sustained)
        # The bar's scale is the fast (burst) limit; the sustained limit is the tick.
        scale = max(x for x in (fast, sustained, 1.0) if x is not None)
        t_bar = Text("pkg ", style=DIM)
        t_bar.append_text(bar(ratio(watts, scale) if sustained else None,
                              max(4, width - 5 - len(label)), level(frac, LIMIT_RATIO),
                              marks=[ratio(sustained, scale)] if fast and sustained else ()))
        t_bar.append(" " + label)
        if p.get("limits_source") or any(v is not None for v in (stapm, fast, slow)):
            t_lim = kv(Text(), "STAPM", num(stapm, 0))
            kv(t_lim, "fast", num(fast, 0))
            kv(t_lim, "slow", num(slow, 0, " W"))
        else:
            t_lim = Text("limits N/A", style=DIM)
            hint = p.get("limits_hint")
            if hint:
                t_lim.append(": " + clip(hint.split(";")[0].split(" (")[0], width - 12), style=DIM)
        gpu_w, cpu_w = g.get("gfx_power_w"), cpu.get("power_w")
        t_share = kv(Text(), "GPU", num(gpu_w, 1, " W"))
        kv(t_share, "CPU", num(cpu_w, 1, " W"))
        if watts and gpu_w is not None:
            t_share.append(f" ({100 * gpu_w / watts:.0f} % GPU)", style=DIM)
        t_prof = kv(Text(), "profile", p.get("platform_profile") or NA)
        ac = p.get("on_ac_power")
        if ac is not None:
            t_prof.append(" · on AC" if ac else " · on battery", style=DIM if ac else WARN)
        t_thr = Text("throttle ", style=DIM)
        res = g.get("throttle_residency")
        if not res:
            t_thr.append(NA, style=DIM)
        elif state.throttle_active is None:
            t_thr.append("(needs a second sample)", style=DIM)
        elif state.throttle_active:
            t_thr.append(" ".join(THROTTLE_NAMES.get(k, k) for k in state.throttle_active),
                         style=BAD if {"prochot", "thm_core", "thm_gfx", "thm_soc"}
                         & set(state.throttle_active) else WARN)
        else:
            t_thr.append("none", style=OK)
        return lines(t_bar, t_lim, t_share, t_prof, t_thr)
