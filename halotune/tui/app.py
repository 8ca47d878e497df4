"""The full-screen TUI of `halotune status`: panels drawn from snapshot dicts pushed by a Source.

The app never touches the machine: it renders what its Source (the daemon's stream, or direct
read-only sampling set up by the CLI) gives it, and asks the Source for changes.
"""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.widgets import Footer

from halotune.tui import theme
from halotune.tui.screens import ConfirmDialog, HelpScreen, ProfilePicker
from halotune.tui.sources import Source, SourceError
from halotune.tui.state import ViewState
from halotune.tui.widgets import (BandwidthPanel, CpuPanel, GpuPanel, HeaderBar, HistoryPanel,
                                  MemoryPanel, PowerPanel, ProcessesPanel, ProfilesPanel)
from halotune.tui.widgets.base import Panel

HISTORY_PREFILL_S = 300


class SourceUpdate(Message):
    """Posted (thread-safely) by the Source's thread for every update."""

    def __init__(self, kind: str, payload) -> None:
        super().__init__()
        self.kind, self.payload = kind, payload


class HalotuneApp(App):
    TITLE = "halotune"
    CSS = theme.CSS
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("p", "pick", "apply profile"),
        Binding("r", "rollback", "roll back"),
        Binding("v", "validate", "validate"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, source: Source, label: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.state = ViewState(label=label)
        self._panels: list[Panel] = []
        self._connected_once = False
        self.frames = 0                      # snapshots drawn (tests and benchmarks read it)

    # --- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with VerticalScroll(id="body"):
            with Grid(id="grid"):
                yield GpuPanel(id="gpu")
                yield PowerPanel(id="power")
                yield MemoryPanel(id="memory")
                yield BandwidthPanel(id="bandwidth")
                yield CpuPanel(id="cpu")
                yield HistoryPanel(id="history")
                yield ProcessesPanel(id="processes")
                yield ProfilesPanel(id="profiles")
        yield Footer()

    def on_mount(self) -> None:
        self._panels = list(self.query(Panel))
        self._layout_for(self.size.width)
        self._redraw()
        self.source.start(self._sink)
        self.load_profiles()

    def on_resize(self, event) -> None:
        self._layout_for(event.size.width)

    def _layout_for(self, width: int) -> None:
        grid = self.query_one("#grid")
        wide = width >= theme.WIDE_AT
        if wide == grid.has_class("-wide"):
            return
        grid.set_class(wide, "-wide")
        profiles = self.query_one("#profiles")
        if wide:
            grid.move_child(profiles, after=self.query_one("#power"))
        else:
            grid.move_child(profiles, after=self.query_one("#processes"))

    def on_unmount(self) -> None:
        self.source.stop()

    # --- updates from the source -------------------------------------------------------------
    def _sink(self, kind: str, payload) -> None:
        self.post_message(SourceUpdate(kind, payload))

    def on_source_update(self, msg: SourceUpdate) -> None:
        st = self.state
        if msg.kind == "snapshot":
            st.take_snapshot(msg.payload)
            self.frames += 1
            self._redraw()
        elif msg.kind == "state":
            was = st.conn.get("connected")
            st.conn = dict(msg.payload)
            self._redraw()
            if st.conn.get("connected") and not was:
                if self._connected_once:
                    self.notify("daemon connection restored", timeout=3)
                self._connected_once = True
                self.load_from_daemon()
            elif was and not st.conn.get("connected"):
                self.notify(escape(st.conn.get("detail") or "daemon disconnected"),
                            severity="error", timeout=5)
        elif msg.kind == "event":
            if st.add_event(msg.payload):
                kind = msg.payload.get("kind")
                if kind in ("drift", "error"):
                    self.notify(escape(msg.payload.get("message") or kind), title=kind,
                                severity="error" if kind == "error" else "warning", timeout=8)
                self.query_one(ProfilesPanel).show(st)

    def _redraw(self) -> None:
        with self.batch_update():
            for panel in self._panels:
                panel.show(self.state)

    # --- blocking calls, in worker threads ---------------------------------------------------
    @work(thread=True, exclusive=True, group="profiles")
    def load_profiles(self) -> None:
        try:
            result = self.source.profiles()
        except SourceError as e:
            result = {"profiles": [], "errors": [e.message]}
        self.call_from_thread(self._set_profiles, result)

    def _set_profiles(self, result: dict) -> None:
        self.state.profiles = list(result.get("profiles") or [])
        self.state.profile_errors = [str(e) for e in result.get("errors") or []]
        self.query_one(ProfilesPanel).show(self.state)

    @work(thread=True, exclusive=True, group="prefill")
    def load_from_daemon(self) -> None:
        """Profiles, recent events and the history for the sparklines, once connected."""
        try:
            history = self.source.history(HISTORY_PREFILL_S)
            events = self.source.events()
            profiles = self.source.profiles()
        except SourceError:
            return
        self.call_from_thread(self._prefilled, history, events, profiles)

    def _prefilled(self, history, events, profiles) -> None:
        self.state.history.prefill(history)
        for e in events:
            self.state.add_event(e)
        self._set_profiles(profiles)
        self._redraw()

    # --- actions ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        """The main screen's keys do nothing while a dialog or the help is open (escape first)."""
        if action in ("pick", "rollback", "validate", "help", "quit") and len(self.screen_stack) > 1:
            return False
        return True

    def _refuse_if_read_only(self, what: str) -> bool:
        if self.source.read_only:
            self.notify(f"{what}: read-only, no daemon. Start `halotune daemon` (or try "
                        "`halotune status --demo`) to change the machine.",
                        title="Not available", severity="error", timeout=6)
            return True
        if not self.state.conn.get("connected"):
            self.notify(f"{what}: the daemon is not connected", severity="error", timeout=5)
            return True
        return False

    def _permission_note(self) -> str:
        if self.state.conn.get("can_mutate") is False:
            return ("\n\n[yellow]The daemon says this user may not make changes (root or its "
                    "admin group only): it will refuse.[/]")
        return ""

    def action_pick(self, name: str | None = None) -> None:
        if self._refuse_if_read_only("Apply"):
            return
        if name is not None:
            self._confirm_apply(name)
            return
        active = (self.state.daemon or {}).get("profile")
        self.push_screen(ProfilePicker(self.state.profiles, active), self._confirm_apply)

    def _confirm_apply(self, name: str | None) -> None:
        if not name:
            return
        desc = next((p.get("description") for p in self.state.profiles if p.get("name") == name), "")
        message = (f"Apply profile [b]{escape(name)}[/b]?\n[dim]{escape(desc or '')}[/dim]\n\n"
                   "The daemon records the current values first; [b]r[/b] rolls back."
                   + self._permission_note())
        self.push_screen(ConfirmDialog("Apply profile", message, "Apply"),
                         lambda yes: self.apply_profile(name) if yes else None)

    @work(thread=True, group="change")
    def apply_profile(self, name: str) -> None:
        self._change(lambda: self.source.apply(name), f"Apply {name}")

    def action_rollback(self) -> None:
        if self._refuse_if_read_only("Roll back"):
            return
        message = ("Restore the values the machine had before halotune changed it?"
                   + self._permission_note())
        self.push_screen(ConfirmDialog("Roll back", message, "Roll back"),
                         lambda yes: self.rollback() if yes else None)

    @work(thread=True, group="change")
    def rollback(self) -> None:
        self._change(self.source.rollback, "Roll back")

    def _change(self, call, what: str) -> None:
        try:
            out = call()
        except SourceError as e:
            title = {"EPERM": "Refused: no permission", "EBUSY": "Busy",
                     "EROFS": "Not available"}.get(e.code, f"{what} failed ({e.code})")
            self.call_from_thread(self.notify, escape(e.message), title=title,
                                  severity="error", timeout=8)
            return
        ok = (out or {}).get("ok", True)
        self.call_from_thread(self.notify, escape((out or {}).get("summary") or "done"),
                              title=what, severity="information" if ok else "warning", timeout=6)

    @work(thread=True, group="validate")
    def action_validate(self) -> None:
        try:
            out = self.source.validate()
        except SourceError as e:
            severity = "warning" if e.code == "ENOSYS" else "error"
            self.call_from_thread(self.notify, escape(e.message), title="Validate",
                                  severity=severity, timeout=6)
            return
        self.call_from_thread(self.notify, escape(str((out or {}).get("summary") or out)),
                              title="Validate", timeout=6)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_profiles_panel_picked(self, msg: ProfilesPanel.Picked) -> None:
        self.action_pick(msg.profile)
