"""Forecast of a model's token-generation speed on this machine, before it is loaded.

Token generation is memory-bandwidth-bound on Strix Halo: every generated token reads the
weights it uses once (all of them for a dense model; for MoE the shared tensors plus
expert_used_count of expert_count experts) and the KV cache at the current depth. So

    tg tokens/s = efficiency x peak bandwidth / bytes read per token

with bytes per token from the GGUF header (halotune.probe.gguf_info.bytes_per_token, the one
helper the probe and history use too), the peak bandwidth from halotune.probe.roofline (derived
from the memory clock on Strix Halo, never measured here), else the 256 GB/s theoretical peak
of the thresholds file, and the efficiency the last probe measured on this machine (the history
databases) or the stated default range. The result is a range, never a single number.
"""

from __future__ import annotations

import os

from halotune.checks import model as gguf

METHOD = "tg tokens/s = efficiency x peak bandwidth / bytes read per generated token"


def peak_bandwidth(snapshot, th: dict) -> tuple[int, str]:
    """(bytes/s, where it comes from)."""
    try:
        from halotune.probe.roofline import peak_bandwidth as probe_peak
    except ImportError:
        probe_peak = None
    if probe_peak is not None and snapshot is not None:
        value, source = probe_peak(snapshot, measure=False)
        if value:
            return int(value), source
    return int(th["forecast"]["peak_bandwidth_bytes_per_s"]), th["forecast"]["peak_source"]


def _history_paths(root: str) -> list[str]:
    try:
        from halotune.history.record import state_db_path, user_db_path
    except ImportError:
        return []
    return [state_db_path(root), user_db_path()]


def measured_efficiency(history=None, root: str = "/") -> float | None:
    """The tg efficiency (share of peak bandwidth) the last probe measured on this machine.
    `history`: a HistoryDB, a database path, or None for the state and user databases."""
    if history is not None and not isinstance(history, str):
        return _plausible(history.last_tg_efficiency())
    for path in [history] if isinstance(history, str) else _history_paths(root):
        value = _efficiency_from(path)
        if value is not None:
            return value
    return None


def _efficiency_from(path: str) -> float | None:
    if not os.path.exists(path):
        return None
    try:
        from halotune.history import HistoryDB

        with HistoryDB(path, readonly=True) as db:
            return _plausible(db.last_tg_efficiency())
    except Exception:  # noqa: BLE001 - unreadable, locked or foreign database: none measured
        return None


def _plausible(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and 0 < value <= 1.0 else None


def forecast(info, snapshot, th: dict, *, depth: int = 0, efficiency: float | None = None,
             history=None, root: str = "/") -> dict:
    """The forecast document for a model (probe.gguf_info.GgufInfo)."""
    peak, peak_source = peak_bandwidth(snapshot, th)
    measured = _plausible(efficiency) if efficiency is not None else \
        measured_efficiency(history, root)
    f = th["forecast"]
    if measured is not None:
        spread = f["measured_spread"]
        eff = [round(measured * (1 - spread), 4), round(measured * (1 + spread), 4)]
        eff_source = (f"measured on this machine: tg efficiency {measured:.3f} of peak in the "
                      f"last probe, +/- {spread:.0%}")
    else:
        eff = [float(x) for x in f["default_efficiency"]]
        eff_source = f["default_efficiency_source"]
    bpt = gguf.bytes_per_token(info, depth)
    tps = [round(e * peak / bpt, 2) for e in eff] if bpt > 0 else None
    return {
        "model": gguf.describe(info),
        "depth": depth,
        "bytes_per_token": bpt,
        "peak_bandwidth_bytes_per_s": peak,
        "peak_source": peak_source,
        "efficiency": eff,
        "efficiency_source": eff_source,
        "efficiency_measured": measured,
        "tg_tokens_per_s": tps,
        "tg_tokens_per_s_mid": None if tps is None else round(sum(tps) / 2, 2),
        "method": METHOD,
    }
