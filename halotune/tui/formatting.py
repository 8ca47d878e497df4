"""Text building blocks of the panels: N/A handling, units, bars, sparklines, colour thresholds.

Pure functions over plain values (a snapshot dict's fields), returning strings or rich Text;
no Textual here, so the panels' content is testable on its own.
"""

from __future__ import annotations

import datetime as _dt

from rich.text import Text

NA = "N/A"
PEAK_DRAM_BPS = 256e9           # LPDDR5X-8000, 256-bit: Strix Halo's theoretical DRAM peak
SATURATED_BPS = 65_535e6        # gpu_metrics v3.0 average_dram_* are u16 MB/s: 65.5 GB/s at most
SPARKS = "▁▂▃▄▅▆▇█"

# Colours (Textual's default theme names work in rich styles too).
OK, WARN, BAD, DIM, ACCENT = "green", "yellow", "bold red", "dim", "bold cyan"

# Thresholds: (warn at, bad at).
TEMP_EDGE_C = (80.0, 95.0)
TEMP_CPU_C = (85.0, 95.0)
LIMIT_RATIO = (0.85, 0.97)      # package power / sustained limit
USE_RATIO = (0.80, 0.95)        # memory used / total
LOAD = "green"                  # utilisation is not an alarm: one colour, the bar says how much


def level(value: float | None, thresholds: tuple[float, float]) -> str:
    """The colour of a value against (warn, bad) thresholds; dim when unknown."""
    if value is None:
        return DIM
    warn, bad = thresholds
    return BAD if value >= bad else WARN if value >= warn else OK


def num(v, digits: int = 0, unit: str = "") -> str:
    """A number with a unit, or N/A."""
    if v is None:
        return NA
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) or digits:
        s = f"{float(v):.{digits}f}"
    else:
        s = str(v)
    return f"{s}{unit}"


def size(n: int | None, digits: int = 1) -> str:
    """Bytes in binary units: 512 MiB, 110.0 GiB."""
    if n is None:
        return NA
    for unit, div in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.0f} {unit}" if v >= 100 or v == int(v) else f"{v:.{digits}f} {unit}"
    return f"{n} B"


def short_size(n: int | None) -> str:
    """Bytes in at most 5 characters: 512M, 57.2G, 4.0K."""
    if n is None:
        return NA
    for unit, div in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}"
    return f"{n}B"


def rate(bps: float | None) -> str:
    return NA if bps is None else f"{bps / 1e9:.1f} GB/s"


def ratio(value: float | None, total: float | None) -> float | None:
    if value is None or not total:
        return None
    return max(0.0, value / total)


def bar(fraction: float | None, width: int, style: str = OK, marks=()) -> Text:
    """A horizontal bar of `width` cells: filled part in `style`, the rest dim. Eighths of a
    cell are drawn so a bar moves smoothly; an unknown fraction is an all-dim bar. `marks`
    (fractions of the width) are drawn as ticks, e.g. a limit on a scale that goes beyond it."""
    width = max(0, width)
    if fraction is None:
        return Text("·" * width, style=DIM)
    f = min(1.0, max(0.0, fraction))
    eighths = round(f * width * 8)
    full, part = divmod(eighths, 8)
    text = Text("█" * full, style=style)
    if part and full < width:
        text.append(" ▏▎▍▌▋▊▉"[part], style=style)
        full += 1
    text.append("░" * (width - full), style=DIM)
    for m in marks:
        if m is not None and 0 < m < 1 and width > 2:
            i = min(width - 1, int(m * width))
            text = text[:i] + Text("│", style="bold white") + text[i + 1:]
    return text


def spark(values: list[float | None], lo: float, hi: float) -> str:
    """One character per value; None is a blank column."""
    span = (hi - lo) or 1.0
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            i = int((min(hi, max(lo, v)) - lo) / span * (len(SPARKS) - 1) + 0.5)
            out.append(SPARKS[i])
    return "".join(out)


def parse_time(stamp: str | None) -> float | None:
    """RFC 3339 UTC ("2026-11-25T16:30:00.000Z") -> POSIX seconds."""
    if not stamp:
        return None
    try:
        return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def clock(stamp: str | None) -> str:
    """The time of day of an RFC 3339 stamp, as the data says it (UTC): 16:30:00Z."""
    if not stamp or "T" not in stamp:
        return NA
    return stamp.split("T", 1)[1][:8] + "Z"


def clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: max(0, width - 1)] + "…"


def kv(text: Text, label: str, value: str, style: str = "", sep: str = "  ") -> Text:
    """Append `label value` (label dim) to text."""
    if text.plain:
        text.append(sep)
    if label:
        text.append(label + " ", style=DIM)
    text.append(value, style=style or ("dim" if value == NA else ""))
    return text


def machine_name(gpu: dict | None) -> tuple[str, bool]:
    """(what to call the machine, whether it is a Strix Halo)."""
    if gpu is None:
        return "no AMD GPU", False
    if gpu.get("gfx_target") == "gfx1151" or gpu.get("device_id") == "0x1586":
        return "Strix Halo", True
    return gpu.get("name") or f"AMD GPU {gpu.get('device_id') or ''}".strip(), False


def primary_gpu(doc: dict | None) -> dict | None:
    """The integrated GPU when there is one (Strix Halo first), else the first card (as
    Snapshot.primary_gpu does)."""
    gpus = (doc or {}).get("gpus") or []
    for g in gpus:
        if g.get("gfx_target") == "gfx1151":
            return g
    return next((g for g in gpus if g.get("is_apu")), gpus[0] if gpus else None)
