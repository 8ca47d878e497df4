"""The full-screen TUI of `halotune status` (Textual).

Renders snapshot dicts (halotune.status/1 plus the daemon's "daemon" key) from a Source and
never reads the machine itself: see sources.py for where the data comes from.
"""

from __future__ import annotations


def run(source, label: str | None = None) -> int:
    """Run the TUI until the user quits; returns the exit status."""
    from halotune.tui.app import HalotuneApp

    HalotuneApp(source, label=label).run()
    return 0
