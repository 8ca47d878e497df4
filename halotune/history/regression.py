"""The regression alarm: a result clearly below what this machine used to measure, and what
changed since.

A test of a run is flagged when its tokens/s is more than `threshold_percent` below the median
of earlier comparable results: the same test name, model (name; sha256 too when both runs know
it) and backend, measured before it (sweeps left out: they vary the TDP on purpose; a
validation compares only with results under the same profile, as quiet is meant to be slower;
runs imported from another machine's `history export` compare only with that machine's). The
alarm names the fingerprint fields that differ between the flagged run and the run(s) that
gave the median, which is usually the answer to "why" (a kernel, firmware or TDP change).
"""

from __future__ import annotations

import statistics

from halotune.history.db import machine_of
from halotune.model.fingerprint import diff_fingerprints, format_value

DEFAULT_THRESHOLD_PERCENT = 5.0
BASELINE_RUNS = 10            # the median of at most this many of the latest earlier results
EXCLUDED_KINDS = ("sweep",)


def _comparable(row: dict, run: dict) -> bool:
    if row["ref"] == run["ref"] or row["kind"] in EXCLUDED_KINDS:
        return False
    if row["tokens_per_s"] is None or row["backend"] != run["backend"]:
        return False
    # Another machine's results (a fleet import) are no baseline for this one.
    if row.get("machine") != machine_of(run.get("origin")):
        return False
    if "validate" in (row["kind"], run["kind"]) and row.get("profile") != run.get("profile"):
        return False
    sha = (run.get("model") or {}).get("sha256")
    if sha and row["model_sha256"] and row["model_sha256"] != sha:
        return False
    return row["measured_at"] < run["measured_at"]


def _median_rows(rows: list[dict]) -> list[dict]:
    """The row(s) that give the median: the middle one, or the middle two."""
    ordered = sorted(rows, key=lambda r: r["tokens_per_s"])
    n = len(ordered)
    return ordered[n // 2: n // 2 + 1] if n % 2 else ordered[n // 2 - 1: n // 2 + 1]


def check_regression(db, run_id, threshold_percent: float = DEFAULT_THRESHOLD_PERCENT) -> list[dict]:
    """Alarms for run `run_id` (an id, ref, "@latest"...) of `db` (a HistoryDB or the merged
    HistoryView): one dict per flagged test, empty when nothing regressed."""
    run = db.get_run(run_id)
    fingerprint = run.get("fingerprint") or {}
    alarms = []
    for test in run["tests"]:
        value = test.get("tokens_per_s")
        if value is None:
            continue
        rows = [r for r in db.find_tests(test["name"], test.get("model_name"))
                if _comparable(r, run)][-BASELINE_RUNS:]
        if not rows:
            continue
        median = statistics.median(r["tokens_per_s"] for r in rows)
        if median <= 0:
            continue
        drop = (median - value) / median * 100.0
        if drop <= threshold_percent:
            continue
        medians = _median_rows(rows)
        changed: dict[str, dict] = {}
        for m in medians:
            for key, before, after in diff_fingerprints(db.fingerprint_of(m["ref"]), fingerprint):
                changed.setdefault(key, {"key": key, "before": before, "after": after})
        changes = sorted(changed.values(), key=lambda c: c["key"])
        what = ("; changed since: " + ", ".join(
            f"{c['key']} {format_value(c['before'])} -> {format_value(c['after'])}"
            for c in changes)) if changes else "; no fingerprint field changed"
        alarms.append({
            "run": run["ref"], "test": test["name"], "model": test.get("model_name"),
            "backend": run["backend"], "metric": "tokens_per_s", "value": value,
            "baseline_median": median, "baseline_runs": [r["ref"] for r in rows],
            "median_runs": [m["ref"] for m in medians],
            "drop_percent": round(drop, 2), "threshold_percent": threshold_percent,
            "changed": changes,
            "message": (f"{test['name']}: {value:.2f} t/s is {drop:.1f} % below the median "
                        f"{median:.2f} t/s of {len(rows)} earlier run(s){what}"),
        })
    return alarms
