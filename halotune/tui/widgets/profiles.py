"""Profiles & probe: the profiles with their descriptions (probe results once the probe
exists), and the daemon's recent events (rules fired, drift, errors)."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message

from halotune.tui.formatting import ACCENT, BAD, DIM, WARN, clip, clock
from halotune.tui.state import ViewState
from halotune.tui.widgets.base import Panel, lines

EVENT_STYLES = {"error": BAD, "drift": BAD, "auth": WARN, "revert": WARN, "rule": "magenta",
                "apply": "green", "rollback": "cyan", "hold": WARN}
MAX_EVENTS = 6


class ProfilesPanel(Panel):
    """Clicking a profile's line posts Picked(name): the app offers to apply it."""

    TITLE = "Profiles & probe"
    NEEDS_DOC = False

    class Picked(Message):
        def __init__(self, profile: str) -> None:
            super().__init__()
            self.profile = profile

    def on_click(self, event) -> None:
        offset = event.get_content_offset(self)
        profiles = self._state.profiles if self._state is not None else []
        if offset is not None and 0 <= offset.y < len(profiles):
            self.post_message(self.Picked(profiles[offset.y]["name"]))

    def build(self, state: ViewState, width: int) -> Text:
        daemon = state.daemon or {}
        active = daemon.get("profile")
        out = []
        if not state.profiles:
            out.append(Text("no profiles loaded", style=DIM))
        name_w = max([len(p.get("name") or "") for p in state.profiles] + [6])
        for p in state.profiles:
            name = p.get("name") or "?"
            t = Text("● " if name == active else "  ", style=ACCENT)
            t.append(f"{name:<{name_w}} ", style=ACCENT if name == active else "bold")
            t.append(clip(p.get("description") or "", max(0, width - name_w - 3)), style=DIM)
            out.append(t)
        for err in state.profile_errors[:2]:
            out.append(Text(clip("⚠ " + err, width), style=WARN))
        out.append(Text(clip("validate: press v (results: halotune history)", width), style=DIM))
        out.append(Text("events", style="bold"))
        # As many events as the panel has room for (it fills a column on wide terminals).
        room = max(MAX_EVENTS, self.content_size.height - len(out))
        events = list(state.events)[-room:]
        if not events:
            out.append(Text("  none yet", style=DIM))
        for e in reversed(events):
            kind = e.get("kind") or "?"
            t = Text(f"{clock(e.get('time'))[:8] if e.get('time') else '--:--:--'} ", style=DIM)
            t.append(f"{kind:<8} ", style=EVENT_STYLES.get(kind, ""))
            t.append(clip(e.get("message") or "", max(0, width - 18)))
            out.append(t)
        return lines(*out)
