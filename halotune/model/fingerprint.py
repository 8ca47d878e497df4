"""The fingerprint: the machine state a benchmark result depends on, as one versioned object.

Every probe, validation, bench and imported result carries one, so a result can be traced to
the kernel, firmware, driver stack and settings it was measured under, and two results can be
compared field by field. Collected by halotune.telemetry.fingerprint.collect_fingerprint.

Contract "halotune.fingerprint/1": every key of `empty_fingerprint()` is always present; a
value nobody could determine is null (linux_firmware_package: "unknown"). Keys may be added,
never renamed. Differences are named by dotted keys ("tdp.stapm_w", "firmware.ip.mec").
"""

from __future__ import annotations

FINGERPRINT_SCHEMA = "halotune.fingerprint/1"


def empty_fingerprint() -> dict:
    """The full key set, every value unknown."""
    return {
        "schema": FINGERPRINT_SCHEMA,
        "halotune_version": None,
        "kernel_release": None,
        "kernel_cmdline": None,
        "firmware": {"smu": None, "vbios": None, "ip": {}},
        "linux_firmware_package": "unknown",
        "rocm_version": None,
        "mesa_version": None,
        "gpu": {"gfx_target": None, "device_id": None},
        "cpu_model": None,
        "memory_total_bytes": None,
        "carveout_bytes": None,
        "gtt_bytes": None,
        "ttm_pages_limit": None,
        "tdp": {"stapm_w": None, "fast_w": None, "slow_w": None},
        "platform_profile": None,
        "active_profile": None,
        "governor": None,
        "epp": None,
        "llama_cpp": {"build": None, "backend": None},
    }


def merge(base: dict, extra: dict | None) -> dict:
    """`base` with `extra` merged in, nested dicts key by key (a None in extra does not erase a
    known value). Returns a new dict."""
    out = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif value is not None or key not in out:
            out[key] = value
    return out


def flatten(fp: dict, prefix: str = "") -> dict[str, object]:
    """{"tdp": {"stapm_w": 85}} -> {"tdp.stapm_w": 85}; lists stay values. An empty nested
    dict contributes no key (firmware.ip on a machine without fw_version/)."""
    out: dict[str, object] = {}
    for key, value in fp.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def diff_fingerprints(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) for every key whose value differs, sorted by key.
    A key missing on one side counts as null there (older fingerprints lack newer keys)."""
    fa, fb = flatten(a or {}), flatten(b or {})
    out = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        if va != vb:
            out.append((key, va, vb))
    return out


def format_value(value) -> str:
    """A fingerprint value for a table cell."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(format_value(v) for v in value)
    return str(value)
