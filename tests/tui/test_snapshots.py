"""SVG snapshots of the main screen on the reference tree, at 80x24 and 160x48
(pytest-textual-snapshot). The data is frozen (tuidata.py): time, root, kernel, host-dependent
text, GPU clients, history and events are fixed, so the SVGs only change when the TUI does.

The SVGs depend on the exact textual and rich versions: they were recorded with the versions
pinned in pyproject.toml's `test` extra (TEXTUAL and RICH below; a test keeps them in sync).
With other versions installed the comparisons are skipped, not failed.

Update after an intended change of the screen, and review the SVGs like code:
    python3 -m pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import os
import re
from importlib.metadata import version

import pytest

from halotune.tui.app import HalotuneApp

from .tuidata import EVENTS, FROZEN_EPOCH, FakeSource, later, synthetic_history

TEXTUAL, RICH = "8.2.8", "15.0.0"
PYPROJECT = os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")

pytest.importorskip("pytest_textual_snapshot", reason="pip install -e '.[test]'")
pinned = pytest.mark.skipif(
    (version("textual"), version("rich")) != (TEXTUAL, RICH),
    reason=f"snapshots recorded with textual {TEXTUAL} and rich {RICH} (pip install -e '.[test]')")


def main_screen(doc: dict) -> HalotuneApp:
    """Two snapshots a second apart (so throttling shows), five minutes of history, events."""
    source = FakeSource([doc, later(doc, 1)], history=synthetic_history(end=FROZEN_EPOCH + 1),
                        events=EVENTS)
    return HalotuneApp(source)


async def ready(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pinned
def test_main_screen_80x24(snap_compare, reference_doc):
    assert snap_compare(main_screen(reference_doc), terminal_size=(80, 24), run_before=ready)


@pinned
def test_main_screen_160x48(snap_compare, reference_doc):
    assert snap_compare(main_screen(reference_doc), terminal_size=(160, 48), run_before=ready)


def test_pins_match_pyproject():
    with open(PYPROJECT) as f:
        test_extra = next(line for line in f if line.startswith("test = ["))
    assert f'"textual=={TEXTUAL}"' in test_extra and f'"rich=={RICH}"' in test_extra
    assert re.search(r'"pytest-textual-snapshot==[\d.]+"', test_extra)
