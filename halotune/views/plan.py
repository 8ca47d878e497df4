"""Tables for apply/rollback/verify outcomes (the diff a user reads before trusting a change)."""

from __future__ import annotations

STATUS_MARK = {"ok": "ok", "same": "=", "change": "->", "restored": "restored", "drift": "DRIFT",
               "skipped": "skipped", "undone": "undone"}


def render(outcome) -> str:
    rows = outcome.rows
    lines = [f"halotune {outcome.action}" + (f": {outcome.profile}" if outcome.profile else "")]
    if rows:
        show_after = any(r.after is not None for r in rows)
        head = ["KEY", "BEFORE", "TARGET"] + (["NOW"] if show_after else []) + ["", ""]
        table = [head]
        for r in rows:
            cells = [r.key + (" (boot)" if r.boot_time else ""), r.before, r.target]
            if show_after:
                cells.append(r.after if r.after is not None else "")
            cells += [STATUS_MARK.get(r.status, r.status), r.note]
            table.append(cells)
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for w in outcome.warnings:
        lines.append(f"warning: {w}")
    for n in outcome.notes:
        lines.append(f"note: {n}")
    if outcome.summary:
        lines.append(outcome.summary)
    return "\n".join(lines)
