"""Compare a snapshot's sysfs readings with libdrm's (status --cross-check)."""

from __future__ import annotations

from halotune.machine.libdrm import LibdrmReading
from halotune.model.snapshot import Snapshot

# Usage moves between the two reads: accept 2 % or 64 MiB of drift; totals must match exactly.
USED_TOLERANCE = (0.02, 64 << 20)
FIELDS = ("vram_total_bytes", "gtt_total_bytes", "vram_used_bytes", "gtt_used_bytes")


def _agree(field: str, a: int, b: int) -> bool:
    if field.endswith("_total_bytes"):
        return a == b
    rel, absolute = USED_TOLERANCE
    return abs(a - b) <= max(absolute, rel * max(a, b))


def compare(snap: Snapshot, readings: list[LibdrmReading]) -> list[dict]:
    """One row per (card, field) both sources report."""
    by_slot = {r.pci_slot: r for r in readings if r.pci_slot}
    rows = []
    for g in snap.gpus:
        r = by_slot.get(g.pci_slot)
        if r is None:
            rows.append({"card": g.card, "field": None, "sysfs": None, "libdrm": None,
                         "agree": False, "note": "libdrm does not see this device"})
            continue
        for f in FIELDS:
            a, b = getattr(g, f), getattr(r, f)
            if a is not None and b is not None:
                rows.append({"card": g.card, "field": f, "sysfs": a, "libdrm": b,
                             "agree": _agree(f, a, b)})
    return rows
