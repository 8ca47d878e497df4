"""The probe's JSON document, "halotune.probe/1", and its readable summary.

Contract keys (always present; a value that is not known is null, never absent): schema,
backend, model {name, type, size_bytes, n_params, sha256}, tests [{name, n_prompt, n_gen,
n_depth, tokens_per_s, stddev, cv_percent, samples, joules_per_token, avg_power_w}], roofline
{peak_bytes_per_s, source, tg_efficiency}, duration_s, stopped_because, fingerprint. Extra keys
may be added (backend_info, spec, cost_per_million_tokens, telemetry, warnings); none may be
renamed.
"""

from __future__ import annotations

import datetime as _dt

PROBE_SCHEMA = "halotune.probe/1"
TEST_KEYS = ("name", "n_prompt", "n_gen", "n_depth", "tokens_per_s", "stddev", "cv_percent",
             "samples", "joules_per_token", "avg_power_w")
MODEL_KEYS = ("name", "type", "size_bytes", "n_params", "sha256")
ROOFLINE_KEYS = ("peak_bytes_per_s", "source", "tg_efficiency")
TOP_KEYS = ("schema", "backend", "model", "tests", "roofline", "duration_s", "stopped_because",
            "fingerprint")
J_PER_KWH = 3.6e6
DEFAULT_PRICE_KWH = 0.30


def cost_per_million_tokens(joules_per_token: float | None, price_kwh: float) -> float | None:
    """Electricity cost of generating one million tokens at `price_kwh` per kWh."""
    if joules_per_token is None:
        return None
    return float(f"{joules_per_token * 1e6 / J_PER_KWH * price_kwh:.6g}")


def build_document(*, backend: str, model: dict, tests: list[dict], roofline: dict,
                   duration_s: float, stopped_because: str, fingerprint: dict,
                   extra: dict | None = None) -> dict:
    doc = {
        "schema": PROBE_SCHEMA,
        "backend": backend,
        "model": {k: model.get(k) for k in MODEL_KEYS} | {k: v for k, v in model.items()
                                                          if k not in MODEL_KEYS},
        "tests": [{k: t.get(k) for k in TEST_KEYS} | {k: v for k, v in t.items()
                                                      if k not in TEST_KEYS} for t in tests],
        "roofline": {k: roofline.get(k) for k in ROOFLINE_KEYS} | {
            k: v for k, v in roofline.items() if k not in ROOFLINE_KEYS},
        "duration_s": round(duration_s, 3),
        "stopped_because": stopped_because,
        "fingerprint": fingerprint,
    }
    doc["time"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")
    for k, v in (extra or {}).items():
        if k not in TOP_KEYS:
            doc[k] = v
    return doc


def _fmt(v, spec: str, unit: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{unit}"


def render_table(doc: dict) -> str:
    """The readable summary (`halotune probe` without --json)."""
    m = doc["model"]
    lines = []
    size = m.get("size_bytes")
    lines.append(f"probe: backend {doc['backend']}, model {m.get('name')} ({m.get('type')}, "
                 f"{_fmt(size and size / 2**20, '.1f', ' MiB')}, "
                 f"{_fmt(m.get('n_params') and m['n_params'] / 1e6, '.1f', ' M params')})")
    info = doc.get("backend_info") or {}
    if info.get("threads"):
        lines.append(f"threads: {info['threads']} ({info.get('threads_reason') or '-'})")
    head = (f"{'test':<16} {'t/s':>10} {'± sd':>9} {'CV %':>6} {'n':>3} {'W':>7} "
            f"{'J/token':>9}  stop")
    lines.append(head)
    lines.append("-" * len(head))
    for t in doc["tests"]:
        lines.append(f"{t['name']:<16} {_fmt(t['tokens_per_s'], '.2f'):>10} "
                     f"{_fmt(t['stddev'], '.2f'):>9} {_fmt(t['cv_percent'], '.1f'):>6} "
                     f"{len(t['samples']):>3} {_fmt(t['avg_power_w'], '.1f'):>7} "
                     f"{_fmt(t['joules_per_token'], '.4g'):>9}  {t.get('stopped_because', '')}")
    r = doc["roofline"]
    peak = r.get("peak_bytes_per_s")
    eff = r.get("tg_efficiency")
    lines.append(f"roofline: tg at {_fmt(eff and eff * 100, '.1f', ' %')} of "
                 f"{_fmt(peak and peak / 1e9, '.1f', ' GB/s')} ({r.get('source')})")
    cost = doc.get("cost_per_million_tokens") or {}
    if cost.get("value") is not None:
        lines.append(f"electricity: {cost['value']:.4g} per million generated tokens at "
                     f"{cost['price_per_kwh']:g} per kWh")
    elif cost.get("reason"):
        lines.append(f"power: {cost['reason']}")
    lines.append(f"duration {doc['duration_s']:.1f} s, stopped because: {doc['stopped_because']}")
    for w in doc.get("warnings") or []:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
