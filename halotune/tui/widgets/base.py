"""A panel: a bordered box whose content is rebuilt from the ViewState when it changes."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from halotune.tui.state import ViewState

DEFAULT_WIDTH = 36


class Panel(Widget):
    """Subclasses set TITLE and implement build(state, width) -> Text. The panel redraws only
    when the text differs from what it shows, and asks for a new layout only when its number
    of lines changed: a steady 4 Hz stream of equal-shaped frames is cheap and cannot flicker."""

    TITLE = ""
    NEEDS_DOC = True          # show "waiting" until the first snapshot arrives
    DEFAULT_CSS = """
    Panel {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        border-title-style: bold;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = self.TITLE
        self._text = Text("")
        self._lines = 1
        self._state: ViewState | None = None

    def render(self) -> Text:
        return self._text

    @property
    def plain(self) -> str:
        """What the panel shows, as plain text."""
        return self._text.plain

    def build(self, state: ViewState, width: int) -> Text:   # pragma: no cover - abstract
        raise NotImplementedError

    def show(self, state: ViewState) -> None:
        self._state = state
        self._rebuild()

    def on_resize(self, event) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        if self._state is None:
            return
        width = self.content_size.width or DEFAULT_WIDTH
        if self.NEEDS_DOC and self._state.doc is None:
            text = Text("waiting for the first sample…", style="dim")
        else:
            try:
                text = self.build(self._state, width)
            except Exception as e:  # noqa: BLE001 - odd data must not take the screen down
                text = Text(f"N/A (unexpected data: {type(e).__name__}: {e})", style="dim")
        text = fit(text, width)
        if text == self._text:
            return
        lines = text.plain.count("\n") + 1
        relayout = lines != self._lines
        self._text, self._lines = text, lines
        self.refresh(layout=relayout)


def fit(text: Text, width: int) -> Text:
    """Each line cut to `width` cells with an ellipsis: panels never wrap, so their height is
    their number of lines and a long value cannot push the layout around."""
    parts = text.split("\n", allow_blank=True)
    for part in parts:
        if part.cell_len > width:
            part.truncate(width, overflow="ellipsis")
    out = Text("\n").join(parts)
    out.no_wrap, out.end = True, ""
    return out


def lines(*parts: Text) -> Text:
    """Join Text lines with newlines."""
    return Text("\n").join(parts)
