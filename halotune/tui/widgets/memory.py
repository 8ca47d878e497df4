"""Memory: the VRAM carve-out and GTT as bars, the TTM ceiling, a GTT change waiting for a
reboot, system RAM, and what "GPU-usable" means on an APU."""

from __future__ import annotations

import textwrap

from rich.text import Text

from halotune.tui.formatting import DIM, NA, USE_RATIO, WARN, bar, level, ratio, size
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines

PAGE = 4096
APU_NOTE = "GPU-usable {usable}: VRAM + GTT, and GTT is system RAM, not extra"


def used_bar(name: str, used, total, width: int) -> Text:
    label = f" {size(used)} / {size(total)}"
    frac = ratio(used, total)
    t = Text(f"{name:<5}", style=DIM)
    t.append_text(bar(frac, max(4, width - 5 - len(label)), level(frac, USE_RATIO)))
    t.append(label, style="" if used is not None else DIM)
    return t


class MemoryPanel(Panel):
    TITLE = "Memory"

    def build(self, state: ViewState, width: int) -> Text:
        doc = state.doc or {}
        m = doc.get("memory") or {}
        g = state.gpu or {}
        out = [used_bar("VRAM", g.get("vram_used_bytes"), g.get("vram_total_bytes"), width),
               used_bar("GTT", g.get("gtt_used_bytes"), g.get("gtt_total_bytes"), width)]
        pages = m.get("ttm_pages_limit")
        t = Text("ttm ceiling ", style=DIM)
        t.append(size(pages * PAGE) if pages else NA)
        if m.get("ttm_module") and m.get("ttm_module") != "ttm":
            t.append(f" ({m['ttm_module']})", style=DIM)
        pending = m.get("gtt_pending_bytes")
        if pending is not None:
            t.append(" → ", style=WARN)
            t.append(f"{size(pending)} after reboot", style=WARN)
        out.append(t)
        avail, total = m.get("system_available_bytes"), m.get("system_total_bytes")
        t = Text("RAM ", style=DIM)
        t.append(f"{size(avail)} free of {size(total)}")
        if m.get("swap_used_bytes"):
            t.append(f" · swap {size(m['swap_used_bytes'])}", style=WARN)
        out.append(t)
        usable = m.get("gpu_usable_bytes")
        if g.get("is_apu"):
            note = APU_NOTE.format(usable=size(usable))
        elif usable is not None:
            note = f"GPU-usable {size(usable)}: dedicated VRAM"
        else:
            note = f"GPU-usable {NA}"
        for line in textwrap.wrap(note, max(20, width))[:2]:
            out.append(Text(line, style=DIM))
        return lines(*out)
