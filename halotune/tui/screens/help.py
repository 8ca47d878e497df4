"""The help screen (?): keys, what each panel shows, where the data comes from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]Keys[/b] (the footer's keys can be clicked too)
  [b]p[/b]  pick a profile and apply it (asks first; needs the daemon and permission)
  [b]r[/b]  roll back: restore what the machine had before halotune (asks first)
  [b]v[/b]  validate the current profile with the probe (not available yet)
  [b]?[/b]  this help        [b]q[/b]  quit        [b]escape[/b]  close a dialog
  Clicking a profile in "Profiles & probe" offers to apply it.

[b]Panels[/b]
  [b]GPU[/b]        busy, shader clock vs the limit in force, memory/fabric clocks, temperatures
  [b]Power[/b]      package power vs the sustained (STAPM) limit; fast/slow PPT limits;
             GPU and CPU share; throttle = residency counters that grew since the last sample
  [b]Memory[/b]     VRAM carve-out and GTT in use; the TTM ceiling (ttm.pages_limit); a GTT
             change waiting for a reboot; system RAM. On an APU the GTT is system RAM:
             GPU-usable memory is VRAM + GTT, never VRAM + GTT + RAM
  [b]Bandwidth[/b]  DRAM read/write from gpu_metrics v3.0 vs the 256 GB/s peak; the counters
             saturate at 65.5 GB/s, shown as a warning
  [b]CPU[/b]        one cell per logical CPU (or core C0 residency), governor / EPP
  [b]Processes[/b]  GPU clients from /proc/<pid>/fdinfo (VRAM, GTT, engine time) and KFD
  [b]History[/b]    the last minutes of power, GPU busy, edge temperature and DRAM traffic
  [b]Profiles[/b]   the profiles (● = applied) and the daemon's events (rules, drift, errors)

[b]Data[/b]
  With a daemon, everything comes from its socket (docs/api.md) and changes go through it.
  Without one, halotune samples the machine itself, read-only. N/A = not available.
  [dim]Press escape, q or ? to close.[/dim]"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as v:
            v.border_title = "halotune help"
            yield Static(Text.from_markup(HELP))

    def action_close(self) -> None:
        self.dismiss(None)
