"""Two stored runs side by side: what changed in the machine, and what it did to throughput
and energy."""

from __future__ import annotations

from halotune.history.db import machine_of
from halotune.model.fingerprint import diff_fingerprints, flatten, format_value

TEST_METRICS = ("tokens_per_s", "joules_per_token", "avg_power_w")
TELEMETRY_METRICS = ("avg_socket_power_w", "avg_gfx_power_w", "max_temp_c", "avg_sclk_mhz")


def _pct(a, b) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return round((b - a) / a * 100.0, 2)


def _delta(a, b) -> float | None:
    return None if a is None or b is None else round(b - a, 4)


def _brief(run: dict) -> dict:
    brief = {k: run.get(k) for k in ("ref", "id", "created_at", "measured_at", "kind", "label",
                                     "profile", "backend", "model")}
    # The machine of a run imported from another's `history export`; None: measured here.
    brief["machine"] = machine_of(run.get("origin"))
    return brief


def compare_runs(a: dict, b: dict) -> dict:
    """{"a", "b" (run summaries), "fingerprint": [{"key", "a", "b", "changed"}] (every field,
    changed ones flagged), "fingerprint_changes": [{"key", "a", "b"}], "tests": [{"name", "a",
    "b", deltas}], "telemetry": [{"metric", "a", "b", "delta"}], "same_machine": bool}. Tests
    match by name (and model when the runs measured several)."""
    fa, fb = flatten(a.get("fingerprint") or {}), flatten(b.get("fingerprint") or {})
    changes = diff_fingerprints(a.get("fingerprint") or {}, b.get("fingerprint") or {})
    changed_keys = {k for k, _, _ in changes}
    rows = [{"key": k, "a": fa.get(k), "b": fb.get(k), "changed": k in changed_keys}
            for k in sorted(set(fa) | set(fb)) if k != "schema"]

    def key(t):
        return (t["name"], t.get("model_name"))

    ta = {key(t): t for t in a.get("tests") or []}
    tb = {key(t): t for t in b.get("tests") or []}
    order = list(ta) + [k for k in tb if k not in ta]
    tests = []
    for k in order:
        x, y = ta.get(k) or {}, tb.get(k) or {}
        row = {"name": k[0], "model": k[1],
               "a": {m: x.get(m) for m in TEST_METRICS} if x else None,
               "b": {m: y.get(m) for m in TEST_METRICS} if y else None}
        row["tokens_per_s_delta_percent"] = _pct(x.get("tokens_per_s"), y.get("tokens_per_s"))
        row["joules_per_token_delta_percent"] = _pct(x.get("joules_per_token"),
                                                     y.get("joules_per_token"))
        row["avg_power_w_delta"] = _delta(x.get("avg_power_w"), y.get("avg_power_w"))
        tests.append(row)
    tel_a, tel_b = a.get("telemetry") or {}, b.get("telemetry") or {}
    telemetry = [{"metric": m, "a": tel_a.get(m), "b": tel_b.get(m),
                  "delta": _delta(tel_a.get(m), tel_b.get(m))} for m in TELEMETRY_METRICS]
    return {"a": _brief(a), "b": _brief(b), "fingerprint": rows,
            "fingerprint_changes": [{"key": k, "a": va, "b": vb} for k, va, vb in changes],
            "tests": tests, "telemetry": telemetry,
            "same_machine": machine_of(a.get("origin")) == machine_of(b.get("origin"))}


# --- text -----------------------------------------------------------------------------------------

def _num(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _signed(v, unit: str = " %") -> str:
    return "-" if v is None else f"{v:+.1f}{unit}"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers)] + [line(r) for r in rows]


CELL_MAX = 48


def _cell(value) -> str:
    text = format_value(value)
    return text if len(text) <= CELL_MAX else text[: CELL_MAX - 1] + "…"


def word_changes(a, b) -> str | None:
    """For long changed strings (the kernel command line): the words removed and added."""
    if not isinstance(a, str) or not isinstance(b, str):
        return None
    wa, wb = a.split(), b.split()
    gone = [w for w in wa if w not in wb]
    new = [w for w in wb if w not in wa]
    parts = [f"-{w}" for w in gone] + [f"+{w}" for w in new]
    return " ".join(parts) if parts else "(white space only)"


def render_compare(cmp: dict, style=None) -> str:
    """Readable text. Changed fingerprint fields start with '*'; `style(text, "changed")` may
    decorate a line further (bold on a terminal)."""
    style = style or (lambda text, kind: text)
    a, b = cmp["a"], cmp["b"]

    def head(r):
        model = (r.get("model") or {}).get("name") or "-"
        return (f"run {r['ref']}: {r['kind']} {r['created_at']}  machine "
                f"{r.get('machine') or '(this one)'}  model {model}  backend "
                f"{r.get('backend') or '-'}  profile {r.get('profile') or '-'}"
                + (f"  label {r['label']}" if r.get("label") else ""))
    out = [f"A  {head(a)}", f"B  {head(b)}"]
    if not cmp.get("same_machine", True):
        out.append(f"* different machines: {a.get('machine') or '(this one)'} and "
                   f"{b.get('machine') or '(this one)'}")
    out.append("")
    n = len(cmp["fingerprint_changes"])
    out.append(f"Fingerprint ({n} field{'s' if n != 1 else ''} changed, marked *)")
    fp_rows = [[("* " if r["changed"] else "  ") + r["key"], _cell(r["a"]), _cell(r["b"])]
               for r in cmp["fingerprint"]]
    lines = _table(["  FIELD", f"A ({a['ref']})", f"B ({b['ref']})"], fp_rows, set())
    out.append(lines[0])
    for r, text in zip(cmp["fingerprint"], lines[1:]):
        out.append(style(text, "changed") if r["changed"] else text)
    for r in cmp["fingerprint"]:
        long = len(format_value(r["a"])) > CELL_MAX or len(format_value(r["b"])) > CELL_MAX
        if r["changed"] and long:
            out.append(f"  {r['key']}: {word_changes(r['a'], r['b']) or 'differs'}")
    out.append("")
    out.append("Tests")
    t_rows = []
    several = len({t.get("model") for t in cmp["tests"]}) > 1
    for t in cmp["tests"]:
        x, y = t["a"] or {}, t["b"] or {}
        t_rows.append([t["name"] + (f" ({t['model']})" if several and t.get("model") else ""),
                       _num(x.get("tokens_per_s")), _num(y.get("tokens_per_s")),
                       _signed(t["tokens_per_s_delta_percent"]),
                       _num(x.get("joules_per_token"), ".3f"), _num(y.get("joules_per_token"), ".3f"),
                       _signed(t["joules_per_token_delta_percent"]),
                       _num(x.get("avg_power_w"), ".1f"), _num(y.get("avg_power_w"), ".1f")])
    if t_rows:
        out += _table(["TEST", "A t/s", "B t/s", "Δ t/s", "A J/tok", "B J/tok", "Δ J/tok",
                       "A W", "B W"], t_rows, set(range(1, 9)))
    else:
        out.append("  (no throughput results in either run)")
    tel = [r for r in cmp["telemetry"] if r["a"] is not None or r["b"] is not None]
    if tel:
        out.append("")
        out.append("Telemetry during the runs")
        out += _table(["METRIC", "A", "B", "Δ"],
                      [[r["metric"], _num(r["a"], ".1f"), _num(r["b"], ".1f"),
                        "-" if r["delta"] is None else f"{r['delta']:+.1f}"] for r in tel],
                      {1, 2, 3})
    return "\n".join(out)
