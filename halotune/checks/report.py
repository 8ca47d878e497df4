"""One preflight check result, and how results roll up into a verdict."""

from __future__ import annotations

STATUSES = ("pass", "warn", "fail", "skip")
GIB = 1 << 30


def item(id: str, title: str, status: str, value, expected=None, fix: str | None = None) -> dict:
    assert status in STATUSES, status
    return {"id": id, "title": title, "status": status, "value": value, "expected": expected,
            "fix": fix if status in ("warn", "fail") else None}


def overall(checks: list[dict]) -> str:
    states = {c["status"] for c in checks}
    return "fail" if "fail" in states else "warn" if "warn" in states else "pass"


def gib(n: int | float | None) -> str:
    """A memory size, in GiB (MiB below 1 GiB: small models and free space stay readable)."""
    if n is None:
        return "?"
    return f"{n / GIB:.1f} GiB" if abs(n) >= 0.95 * GIB or n == 0 else f"{n / (1 << 20):.0f} MiB"


def rate(n: int | float | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.1f} MB/s" if n >= 1e5 else f"{n / 1e3:.0f} kB/s"


def watts(v: float | None) -> str:
    return "?" if v is None else f"{v:g} W"
