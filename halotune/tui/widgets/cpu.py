"""CPU: per-core utilisation in one compact line (one cell per core), governor and EPP."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import DIM, LOAD, NA, SPARKS, TEMP_CPU_C, WARN, kv, level, num
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines


def cores(values: list, width: int) -> list[Text]:
    """One block per core, height and colour by utilisation; wraps to a second row if needed."""
    out, row = [], Text()
    for v in values:
        if len(row) >= width:
            out.append(row)
            row = Text()
        if v is None:
            row.append("·", style=DIM)
        else:
            i = int(min(100.0, max(0.0, v)) / 100 * (len(SPARKS) - 1) + 0.5)
            row.append(SPARKS[i], style=LOAD)
    out.append(row)
    return out[:2]


class CpuPanel(Panel):
    TITLE = "CPU"

    def build(self, state: ViewState, width: int) -> Text:
        c = (state.doc or {}).get("cpu") or {}
        per = c.get("per_cpu_utilization_percent")
        source = "threads"
        if not per:
            per, source = c.get("core_c0_percent"), "cores C0"
        t_top = kv(Text(), "busy", num(c.get("utilization_percent"), 1, " %"))
        kv(t_top, "", f"{num(c.get('freq_mhz_avg'), 0)}/{num(c.get('max_freq_mhz'), 0)} MHz")
        if c.get("temp_c") is not None:
            kv(t_top, "", num(c.get("temp_c"), 1, " °C"), level(c.get("temp_c"), TEMP_CPU_C))
        out = [t_top]
        if per:
            rows = cores(per, width)
            suffix = f" {len(per)} {source}"
            if len(rows[-1]) + len(suffix) <= width:
                rows[-1].append(suffix, style=DIM)
            out.extend(rows)
        else:
            out.append(Text(f"per-core {NA}", style=DIM))
        t_gov = Text()
        t_gov.append(c.get("governor") or NA, style=WARN if c.get("governors_mixed") else "")
        t_gov.append(" / ", style=DIM)
        t_gov.append(c.get("epp") or NA, style=WARN if c.get("epp_mixed") else "")
        for extra in ((f" ({c['scaling_driver']})" if c.get("scaling_driver") else ""),
                      ("" if c.get("boost") is None else " boost " + ("on" if c["boost"] else "off"))):
            if extra and len(t_gov) + len(extra) <= width:
                t_gov.append(extra, style=DIM)
        out.append(t_gov)
        return lines(*out)
