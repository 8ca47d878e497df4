"""The header: which machine, which profile (and whether it holds), whether a daemon serves us."""

from __future__ import annotations

from rich.text import Text

from halotune.tui.formatting import ACCENT, BAD, DIM, NA, OK, WARN, clock, machine_name
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines

_VERIFIED = {True: ("✔ verified", OK), False: ("✖ drift", BAD), None: ("not verified", DIM)}


def connection(state: ViewState) -> Text:
    c = state.conn
    mode, connected = c.get("mode"), c.get("connected")
    hz = c.get("interval_s")
    rate = f" {1 / hz:.0f} Hz" if hz and hz <= 1 else (f" every {hz:g} s" if hz else "")
    if mode == "daemon" and connected:
        t = Text("● daemon connected" + rate, style=OK)
        if c.get("can_mutate") is False:
            t.append(" (read-only for this user)", style=WARN)
        return t
    if mode == "daemon":
        return Text("✖ daemon disconnected, retrying", style=BAD)
    if mode == "local":
        return Text("○ read-only, no daemon" + rate, style=WARN)
    return Text("… starting", style=DIM)


def profile_state(state: ViewState) -> Text:
    t = Text()
    daemon = state.daemon
    if daemon is None:
        t.append("profile ", style=DIM)
        t.append("unknown (no daemon)" if state.conn.get("mode") == "local" else NA, style=DIM)
        return t
    t.append("profile ", style=DIM)
    name = daemon.get("profile")
    t.append(name or "none", style=ACCENT if name else "")
    if name:
        label, style = _VERIFIED.get(daemon.get("verified"), _VERIFIED[None])
        t.append(" " + label, style=style)
    if daemon.get("holds"):
        t.append(f" · {len(daemon['holds'])} hold(s)", style=WARN)
    return t


class HeaderBar(Panel):
    NEEDS_DOC = False
    DEFAULT_CSS = """
    HeaderBar {
        dock: top;
        height: 2;
        border: none;
        padding: 0 1;
        background: $panel;
    }
    """

    def build(self, state: ViewState, width: int) -> Text:
        doc = state.doc or {}
        g = state.gpu
        name, is_halo = machine_name(g)
        top = Text()
        top.append("halotune ", style="bold")
        top.append(name, style=ACCENT if is_halo else WARN)
        if g is not None and g.get("gfx_target"):
            top.append(f" / {g['gfx_target']}", style="bold" if is_halo else "")
        if g is not None and not is_halo:
            top.append(" (not a Strix Halo)", style=WARN)
        top.append(" · kernel ", style=DIM)
        top.append(doc.get("kernel_release") or NA)
        if state.label:
            top.append(f" · {state.label}", style=WARN)
        stamp = clock(doc.get("time")) if doc else ""
        pad = width - len(top.plain) - len(stamp)
        if pad >= 1:
            top.append(" " * pad + stamp, style=DIM)
        bottom = profile_state(state)
        conn = connection(state)
        for note in (" · validation not available yet", " · validation N/A", ""):
            if len(bottom.plain) + len(note) + len(conn.plain) + 1 <= width or not note:
                bottom.append(note, style=DIM)
                break
        pad = width - len(bottom.plain) - len(conn.plain)
        bottom.append(" " * pad if pad >= 1 else " · ")
        bottom.append_text(conn)
        return lines(top, bottom)
