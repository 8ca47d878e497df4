"""The regression alarm as Prometheus metrics: a file for node_exporter's textfile collector
(`--collector.textfile.directory`), written by `halotune history check --textfile FILE`.

The daemon's exporter describes the live machine; a regression is a fact about stored results,
known only when `history check` runs (after a bench, from a timer), so it goes through the
textfile collector, which node_exporter reads at each scrape. contrib/prometheus/halotune.rules.yml
alerts on halotune_history_regressions > 0.
"""

from __future__ import annotations

import os
import time


def _label(value) -> str:
    # Text exposition format 0.0.4: backslash, double quote and line feed are escaped.
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(ref: str, alarms: list[dict], now: float | None = None) -> str:
    out = [
        "# HELP halotune_history_regressions Tests the last `halotune history check` flagged "
        "(0: none).",
        "# TYPE halotune_history_regressions gauge",
        f"halotune_history_regressions {len(alarms)}",
        "# HELP halotune_history_check_timestamp_seconds Unix time of the last "
        "`halotune history check`.",
        "# TYPE halotune_history_check_timestamp_seconds gauge",
        f"halotune_history_check_timestamp_seconds {now if now is not None else time.time():.3f}",
        "# HELP halotune_history_regression_drop_percent How far a flagged test fell below the "
        "median of earlier results (percent).",
        "# TYPE halotune_history_regression_drop_percent gauge",
    ]
    for a in alarms:
        out.append(f'halotune_history_regression_drop_percent{{run="{_label(ref)}",'
                   f'test="{_label(a.get("test"))}",model="{_label(a.get("model"))}"}} '
                   f'{a["drop_percent"]}')
    return "\n".join(out) + "\n"


def write(path: str, text: str) -> None:
    """Atomically: node_exporter must never read half a file (a temporary file in the same
    directory, renamed; its name does not end in .prom, so the collector ignores it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
