"""The comparison table of validated profiles, best value per column marked with "*"."""

from __future__ import annotations

# (key, heading, better: "max" | "min")
COLUMNS = (("tg_tps", "tg t/s", "max"), ("pp_tps", "pp t/s", "max"),
           ("depth_tps", "depth t/s", "max"), ("avg_power_w", "W", "min"),
           ("joules_per_token", "J/token", "min"), ("tg_efficiency", "roofline", "max"))


def best_per_column(entries: list[dict]) -> dict[str, list[str]]:
    """{column: names holding its best value}; a column is marked only when at least two
    profiles have a value (one measured profile is the best of nothing)."""
    out = {}
    for key, _, better in COLUMNS:
        vals = [(e[key], e["name"]) for e in entries if e.get(key) is not None]
        if len(vals) < 2:
            out[key] = []
            continue
        top = max(v for v, _ in vals) if better == "max" else min(v for v, _ in vals)
        out[key] = [n for v, n in vals if v == top]
    return out


def fmt_rate(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 1000 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _cell(key: str, v) -> str:
    if v is None:
        return "-"
    if key.endswith("_tps"):
        return fmt_rate(v)
    if key == "avg_power_w":
        return f"{v:.1f}"
    if key == "joules_per_token":
        return f"{v:.4g}"
    if key == "tg_efficiency":
        return f"{v * 100:.1f} %"
    return str(v)


def _grid(head: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def render(doc: dict) -> str:
    """The readable result of `halotune validate` (halotune.validate/1 document)."""
    entries = doc["profiles"]
    best = doc.get("best") or best_per_column(entries)
    depth = next((e["depth_test"] for e in entries if e.get("depth_test")), None)
    tg = next((e["tg_test"] for e in entries if e.get("tg_test")), None)
    pp = next((e["pp_test"] for e in entries if e.get("pp_test")), None)
    names = {"tg_tps": f"{tg or 'tg'} t/s", "pp_tps": f"{pp or 'pp'} t/s",
             "depth_tps": f"{depth or 'depth'} t/s"}
    head = ["profile", *(names.get(k, h) for k, h, _ in COLUMNS), "verdict"]
    rows = []
    for e in entries:
        cells = [e["name"] + ("" if e["requested"] else " (ref)")]
        for key, _, _ in COLUMNS:
            mark = "*" if e["name"] in best.get(key, ()) else " "
            cells.append(_cell(key, e.get(key)) + mark)
        cells.append(e["verdict"].replace("_", " "))
        rows.append(cells)
    order = " ".join(s["profile"] for s in doc["order"])
    lines = [f"validate: {len(entries)} profile(s) x {doc['rounds']} round(s), backend "
             f"{doc.get('backend') or '-'}, through the {doc['channel']}",
             f"order: {order}", ""]
    lines += _grid(head, rows, right=set(range(1, len(COLUMNS) + 1)))
    lines.append("* best in its column; W: average power over the timed work; J/token: tg; "
                 "roofline: tg bandwidth / peak")
    for e in entries:
        if e["expectations"] or e["error"]:
            lines.append("")
            lines.append(f"{e['name']}: {e['verdict'].replace('_', ' ')}")
        for v in e["expectations"]:
            lines.append(f"  {v['verdict'].upper():7} {v['key']}: {v['message']}")
        for r in e["runs"]:
            if r["error"]:
                lines.append(f"  round {r['round']}: {r['error']}")
    lines.append("")
    if doc.get("aborted"):
        lines.append(f"ABORTED: {doc['aborted']}")
    from halotune.validation.validate import restored_text

    lines.append(restored_text(doc.get("restored")))
    recorded = [f"{e['name']} run {e['history']['run_id']}" for e in entries
                if (e.get("history") or {}).get("run_id") is not None]
    if recorded:
        lines.append("recorded in history: " + ", ".join(recorded))
    failed = {(e.get("history") or {}).get("error") for e in entries} - {None}
    for msg in sorted(failed):
        lines.append(f"warning: not recorded in history: {msg}")
    for w in doc.get("warnings") or ():
        lines.append(f"warning: {w}")
    return "\n".join(lines)
