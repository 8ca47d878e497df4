"""Processes: the GPU clients of the host (DRM fdinfo and KFD), heaviest first, as the
snapshot's `processes` list gives them."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import DIM, NA, short_size
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines

MAX_ROWS = 8


def pct(v) -> str:
    return NA if v is None else f"{v:.0f}"


class ProcessesPanel(Panel):
    TITLE = "GPU processes"

    def build(self, state: ViewState, width: int) -> Text:
        doc = state.doc or {}
        procs = doc.get("processes")
        if procs is None:
            return Text("N/A: this halotune does not report processes", style=DIM)
        if not procs:
            why = ("none" if (doc.get("root") or "/") == "/"
                   else "none (a tree's processes are read only when it is simulated or "
                        "has its own proc/<pid>)")
            return Text(f"GPU clients: {why}", style=DIM)
        name_w = max(6, min(24, width - 38))
        show_dev = width - name_w >= 60
        head = Text(f"{'PID':>7} {'NAME':<{name_w}} {'VRAM':>6} {'GTT':>6} {'GFX%':>5} {'CMP%':>5}"
                    + ("  DEVICE       " if show_dev else ""), style="bold")
        out = [head]
        room = max(MAX_ROWS, self.content_size.height - 2)
        for p in procs[:room]:
            t = Text(f"{p.get('pid', ''):>7} ")
            name = (p.get("name") or "?")[:name_w]
            t.append(f"{name:<{name_w}} ", style="bold")
            t.append(f"{short_size(p.get('vram_bytes')):>6} {short_size(p.get('gtt_bytes')):>6}")
            for key in ("engine_gfx_percent", "engine_compute_percent"):
                s = pct(p.get(key))
                t.append(f" {s:>5}", style=DIM if s == NA else "")
            if show_dev:
                t.append(f"  {(p.get('pci_slot') or NA):<12} ", style=DIM)
            if p.get("kfd"):
                t.append(" KFD", style="magenta")
            out.append(t)
        if len(procs) > room:
            out.append(Text(f"… {len(procs) - room} more", style=DIM))
        return lines(*out)
