"""The TUI's own history of the values it draws as sparklines, fed by the snapshot stream and
prefilled from the daemon's `history` method. Time comes from the data (snapshot time, history
rows' `t`), never from the wall clock, so the same data always draws the same sparklines."""

from __future__ import annotations

from collections import deque

from halotune.tui.formatting import parse_time, primary_gpu

SERIES = ("power_w", "busy_percent", "temp_c", "dram_bps")
MAX_ROWS = 3600                  # 15 minutes at 4 Hz, an hour at 1 Hz
STEP_S = 5.0                     # one sparkline column: the mean of 5 s of samples


def _sum(a, b):
    return None if a is None and b is None else (a or 0) + (b or 0)


def row_of(doc: dict) -> tuple | None:
    """(t, package power, GPU busy, edge temperature, DRAM read+write) of a snapshot."""
    t = parse_time(doc.get("time"))
    if t is None:
        return None
    g = primary_gpu(doc) or {}
    power = (doc.get("power") or {}).get("socket_power_w")
    if power is None:
        power = g.get("socket_power_w")
    return (t, power, g.get("busy_percent"), g.get("edge_temp_c"),
            _sum(g.get("dram_read_bytes_per_s"), g.get("dram_write_bytes_per_s")))


class History:
    def __init__(self, maxlen: int = MAX_ROWS):
        self.rows: deque[tuple] = deque(maxlen=maxlen)

    def add(self, doc: dict) -> None:
        row = row_of(doc)
        if row is not None and (not self.rows or row[0] > self.rows[-1][0]):
            self.rows.append(row)

    def prefill(self, result: dict | None) -> None:
        """Rows of the daemon's `history` result, older than anything already here."""
        if not result:
            return
        fields = result.get("fields") or []
        idx = {name: i for i, name in enumerate(fields)}
        if "t" not in idx:
            return

        def get(row, name):
            i = idx.get(name)
            return row[i] if i is not None and i < len(row) else None

        first = self.rows[0][0] if self.rows else float("inf")
        old = []
        for r in result.get("samples") or []:
            t = get(r, "t")
            if t is None or t >= first:
                continue
            old.append((t, get(r, "socket_power_w"), get(r, "busy_percent"),
                        get(r, "edge_temp_c"),
                        _sum(get(r, "dram_read_bytes_per_s"), get(r, "dram_write_bytes_per_s"))))
        if old:
            merged = sorted(old) + list(self.rows)
            self.rows = deque(merged[-self.rows.maxlen:], maxlen=self.rows.maxlen)

    def series(self, name: str, width: int, step_s: float = STEP_S) -> list[float | None]:
        """`width` columns of step_s seconds each, the newest on the right: the mean of the
        samples in each column, None where there was none. Columns are whole multiples of step_s
        since the epoch, so they move one column every step_s instead of jittering."""
        if width <= 0 or not self.rows:
            return []
        col = SERIES.index(name) + 1
        last = int(self.rows[-1][0] // step_s)
        first = last - width + 1
        sums = [0.0] * width
        counts = [0] * width
        for row in reversed(self.rows):
            i = int(row[0] // step_s) - first
            if i < 0:
                break
            v = row[col]
            if v is None:
                continue
            sums[i] += v
            counts[i] += 1
        return [s / c if c else None for s, c in zip(sums, counts)]

    def latest(self, name: str):
        return self.rows[-1][SERIES.index(name) + 1] if self.rows else None

    def peak(self, name: str, span_s: float = 600.0):
        if not self.rows:
            return None
        end = self.rows[-1][0]
        col = SERIES.index(name) + 1
        vals = [r[col] for r in self.rows if r[0] > end - span_s and r[col] is not None]
        return max(vals) if vals else None
