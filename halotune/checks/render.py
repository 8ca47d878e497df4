"""Readable text for the preflight and doctor reports (the JSON is the documents themselves)."""

from __future__ import annotations

import textwrap

from halotune.checks.report import GIB

WIDTH = 100
_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def preflight(report: dict) -> str:
    checks = report["checks"]
    fails = sum(c["status"] == "fail" for c in checks)
    warns = sum(c["status"] == "warn" for c in checks)
    verdict = ("READY" if report["status"] == "pass" else
               "READY, with warnings" if report["status"] == "warn" else "NOT READY")
    counts = ", ".join(x for x in (f"{fails} failed" if fails else "",
                                   f"{warns} warning(s)" if warns else "") if x)
    lines = [f"halotune preflight: {verdict}" + (f" ({counts})" if counts else ""),
             f"  root {report['root']}, watched for {report['window_s']:g} s"
             + (f", profile {report['profile']}" if report.get("profile") else ""), ""]
    width = max(len(c["title"]) for c in checks)
    for c in checks:
        head = f"  {_MARK[c['status']]}  {c['title']:<{width}}  "
        body = _wrap(str(c["value"]), " " * len(head))
        lines.append(head + body[0].lstrip())
        lines += body[1:]
        if c["status"] in ("warn", "fail") and c.get("expected") is not None:
            lines += _wrap(f"expected: {c['expected']}", " " * 8)
        if c.get("fix"):
            lines += _wrap(f"fix: {c['fix']}", " " * 8)
    f = report.get("forecast")
    if f:
        lines += ["", *forecast(f)]
    for w in report.get("warnings") or []:
        lines += _wrap(f"note: {w}", "")
    return "\n".join(lines)


def forecast(f: dict) -> list[str]:
    m = f["model"]
    name = m.get("name") or m["paths"][0]
    tps = f["tg_tokens_per_s"]
    head = (f"Forecast for {name}: token generation {tps[0]:.1f} - {tps[1]:.1f} tokens/s"
            if tps else f"Forecast for {name}: not available")
    kind = (f"MoE, {m['expert_used_count']} of {m['expert_count']} experts per token"
            if m.get("moe") else "dense")
    peak = f["peak_bandwidth_bytes_per_s"]
    lines = [head]
    lines += _wrap(f"{f['bytes_per_token'] / GIB:.2f} GiB read per token ({kind}); peak "
                   f"{peak / 1e9:.0f} GB/s ({f['peak_source']}); efficiency "
                   f"{f['efficiency'][0]:.2f}-{f['efficiency'][1]:.2f} "
                   f"({f['efficiency_source']})", "  ")
    return lines


_SEV = {"fault": "FAULT", "warn": "WARN", "info": "info"}


def doctor(report: dict) -> str:
    found = [e for e in report["entries"] if e["status"] == "found"]
    unknown = [e for e in report["entries"] if e["status"] == "unknown"]
    ok = len(report["entries"]) - len(found) - len(unknown)
    lines = [f"halotune doctor: {len(report['entries'])} known problems checked on "
             f"{report['root']}: {len(found)} found, {ok} not present, "
             f"{len(unknown)} could not be checked", ""]
    order = {"fault": 0, "warn": 1, "info": 2}
    for e in sorted(found, key=lambda e: order[e["severity"]]):
        lines.append(f"  {_SEV[e['severity']]:<5}  {e['title']}  [{e['id']}]")
        lines += _wrap(f"what: {e['what']}", " " * 9)
        lines += _wrap(f"why: {e['why']}", " " * 9)
        lines += _wrap(f"fix: {e['fix']}", " " * 9)
        lines += _wrap(f"source: {e['source']}", " " * 9)
        lines.append("")
    if not found:
        lines += ["  No known problem found.", ""]
    for e in unknown:
        lines += _wrap(f"could not check {e['id']}: {e['what']}", "  ")
    return "\n".join(lines).rstrip()
