"""Picking a profile (p, or a click in the profiles panel) and confirming a change."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 76; max-width: 100%; height: auto; max-height: 100%;
    border: round $accent; background: $surface; padding: 0 1;
}}
{name} Horizontal {{ height: auto; align-horizontal: right; }}
{name} Button {{ margin: 0 0 0 1; min-width: 10; }}
{name} OptionList {{ height: auto; max-height: 14; border: none; padding: 0; }}
"""


class ProfilePicker(ModalScreen[str | None]):
    """The profiles as a list; Enter or a click picks one (dismisses with its name)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = _CSS.format(name="ProfilePicker")

    def __init__(self, profiles: list[dict], active: str | None = None):
        super().__init__()
        self.profiles, self.active = profiles, active

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "Apply a profile"
            if not self.profiles:
                yield Static(Text("No profiles are available.", style="dim"))
            width = max([len(p["name"]) for p in self.profiles] + [4]) + 2
            options = []
            for p in self.profiles:
                row = Table.grid(padding=(0, 1))
                row.add_column(width=width, no_wrap=True)
                row.add_column(ratio=1)
                row.add_row(Text(("● " if p["name"] == self.active else "  ") + p["name"],
                                 style="bold"),
                            Text(p.get("description") or "", style="dim"))
                options.append(Option(row, id=p["name"]))
            picker = OptionList(*options)
            names = [p["name"] for p in self.profiles]
            if names:
                picker.highlighted = names.index(self.active) if self.active in names else 0
            yield picker
            with Horizontal():
                yield Button("Cancel", id="cancel")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question: y or the confirm button says yes; n, escape or Cancel say no."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]
    DEFAULT_CSS = _CSS.format(name="ConfirmDialog")

    def __init__(self, title: str, message: str, confirm: str = "Apply"):
        super().__init__()
        self.title_text, self.message, self.confirm = title, message, confirm

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = self.title_text
            yield Static(self.message)
            with Horizontal():
                yield Button("Cancel", id="no")
                yield Button(f"{self.confirm} (y)", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
