"""`halotune sweep --tdp 45:120:15`: the probe at each TDP step, and where the curve bends.

Each step applies ONLY the TDP (STAPM = slow = fast = the step's watts: the sustained figure,
no boost window) as an in-memory profile; everything else stays as it is: when halotune had a
profile applied, the step profile carries that profile's values with the TDP replaced (the
engine would otherwise put back the keys a profile leaves alone). At the end the machine is as
it was found (that profile applied again, or rolled back).

Analysis, on tg tokens/s against the watts measured during tg (the TDP setting when the
machine reports no power, said in `watts_source`):
- Pareto-optimal: no other step gives at least the tokens/s for at most the watts (a step that
  measures the same as a lower step is not optimal: it asks a higher limit for nothing);
- the knee: on the Pareto front, the point farthest above the straight line from the first to
  the last point, both axes normalised (the Kneedle construction); none with fewer than 3
  front points or a straight line;
- the most tokens per joule.

The document, "halotune.sweep/1" (keys never absent; null when unknown):
    schema, time, backend, channel, tdp {spec, steps_w, keys}, kept_profile, watts_source,
    points [{tdp_w, watts, tg_tps, pp_tps, depth_tps, tg_test, pp_test, depth_test,
        avg_power_w, tg_avg_power_w, joules_per_token, tokens_per_joule, tg_efficiency,
        tg_cv_percent, pareto, knee, best_efficiency, error, apply, settle, tests, history}],
    pareto_w [tdp_w], knee {tdp_w, watts, tg_tps, reason} | null, knee_reason,
    best_efficiency {tdp_w, tokens_per_joule} | null, restored, aborted, model, fingerprint,
    duration_s, ok, summary (one line), warnings
"""

from __future__ import annotations

import math
import time

from halotune.tuning import limits
from halotune.validation import SWEEP_SCHEMA
from halotune.validation.appliers import ApplyFailed, memory_profile

TDP_KEYS = ("power.stapm_w", "power.slow_w", "power.fast_w")
MAX_STEPS = 40
SOURCE = "halotune sweep --tdp"
KNEE_MIN_GAIN = 0.05
REQUIRES_GFX = ("gfx1151",)       # normalised distance above the chord below which there is no knee


class SweepUsageError(ValueError):
    """A bad --tdp; the message names the flag and the value."""


def parse_tdp(text: str) -> list[float]:
    """"45:120:15" -> [45, 60, 75, 90, 105, 120]. STOP is always measured, even off the grid
    ("45:120:20" -> 45 65 85 105 120). Each value within the platform's range."""
    flag = f"--tdp {text}"
    parts = text.split(":")
    if len(parts) != 3:
        raise SweepUsageError(f"{flag}: expected START:STOP:STEP in watts, e.g. 45:120:15")
    nums = []
    for name, part in zip(("START", "STOP", "STEP"), parts):
        try:
            v = float(part)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise SweepUsageError(f"{flag}: {name} {part!r} is not a number of watts")
        nums.append(v)
    start, stop, step = nums
    if step <= 0:
        raise SweepUsageError(f"{flag}: STEP must be greater than 0 W")
    if start > stop:
        raise SweepUsageError(f"{flag}: START ({start:g} W) is above STOP ({stop:g} W)")
    lo, hi = limits.TDP_MIN_W, limits.TDP_MAX_W
    for name, v in (("START", start), ("STOP", stop)):
        if not lo <= v <= hi:
            raise SweepUsageError(
                f"{flag}: {name} {v:g} W is outside the platform's {lo:g}-{hi:g} W range (the "
                "configurable TDP of the Ryzen AI Max+ 395; halotune/tuning/limits.py)")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    steps = [round(start + i * step, 3) for i in range(n)]
    if stop - steps[-1] > 1e-6:
        steps.append(round(stop, 3))
    if len(steps) > MAX_STEPS:
        raise SweepUsageError(f"{flag}: {len(steps)} steps; at most {MAX_STEPS} (a larger STEP)")
    return steps


def step_profile(watts: float, keep=None):
    """The in-memory profile of one step: the TDP keys at `watts`, on top of the values of
    `keep` (the profile applied before the sweep) when there was one."""
    values = dict(keep.values) if keep is not None else {}
    values.update({k: float(watts) for k in TDP_KEYS})
    desc = f"sweep step: STAPM, slow and fast limits at {watts:g} W" + (
        f", everything else as {keep.name}" if keep is not None else "")
    prof = memory_profile(f"sweep-{watts:g}w", values, SOURCE, desc)
    # The 45-120 W range is the Ryzen AI Max+ 395's: refuse other machines, as llm-max does.
    prof.requires = {"gfx_target": list(REQUIRES_GFX)}
    prof.sources["requires.gfx_target"] = SOURCE
    return prof


# --- analysis ---------------------------------------------------------------------------------

def pareto(points: list[dict]) -> list[int]:
    """Indexes of the Pareto-optimal points (min watts, max tg_tps), by watts."""
    cand = [i for i, p in enumerate(points)
            if p.get("watts") is not None and p.get("tg_tps") is not None]

    def dominates(q, p):
        return (q["watts"] <= p["watts"] and q["tg_tps"] >= p["tg_tps"] and
                (q["watts"] < p["watts"] or q["tg_tps"] > p["tg_tps"] or q["tdp_w"] < p["tdp_w"]))
    front = [i for i in cand if not any(dominates(points[j], points[i]) for j in cand if j != i)]
    return sorted(front, key=lambda i: (points[i]["watts"], points[i]["tdp_w"]))


def knee(points: list[dict], front: list[int]) -> tuple[int | None, str]:
    """(index of the knee or None, why)."""
    if len(front) < 3:
        return None, f"{len(front)} Pareto-optimal point(s): a knee needs at least 3"
    xs = [points[i]["watts"] for i in front]
    ys = [points[i]["tg_tps"] for i in front]
    dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
    if dx <= 0 or dy <= 0:
        return None, "tokens/s do not rise with watts along the Pareto front"
    gains = [(ys[k] - ys[0]) / dy - (xs[k] - xs[0]) / dx for k in range(len(front))]
    k = max(range(1, len(front) - 1), key=lambda k: gains[k])
    if gains[k] < KNEE_MIN_GAIN:
        return None, "tokens/s grow about linearly with watts: no knee"
    return front[k], ("the Pareto point farthest above the straight line from the first to the "
                      f"last one ({gains[k]:.2f} of the normalised range): above it, more watts "
                      "buy little")


def analyse(points: list[dict]) -> dict:
    """Marks points (pareto, knee, best_efficiency) and returns the summary keys."""
    front = pareto(points)
    k, why = knee(points, front)
    eff = [i for i, p in enumerate(points) if p.get("tokens_per_joule") is not None]
    best = max(eff, key=lambda i: (points[i]["tokens_per_joule"], -points[i]["tdp_w"])) \
        if eff else None
    for i, p in enumerate(points):
        p["pareto"] = i in front
        p["knee"] = i == k
        p["best_efficiency"] = i == best
    return {
        "pareto_w": [points[i]["tdp_w"] for i in front],
        "knee": None if k is None else {"tdp_w": points[k]["tdp_w"], "watts": points[k]["watts"],
                                        "tg_tps": points[k]["tg_tps"], "reason": why},
        "knee_reason": why,
        "best_efficiency": None if best is None else {
            "tdp_w": points[best]["tdp_w"], "tokens_per_joule": points[best]["tokens_per_joule"]},
    }


# --- the run ----------------------------------------------------------------------------------

def _tdp_skipped(out: dict) -> str | None:
    for r in out.get("rows") or ():
        if r.get("key") in TDP_KEYS and r.get("status") == "skipped":
            return r.get("note") or "the TDP limits cannot be set on this machine"
    return None


def _brief(point: dict, doc: dict) -> str:
    from halotune.validation.table import fmt_rate

    tg = next((t for t in doc.get("tests", []) if t.get("n_gen") and not t.get("n_prompt")
               and not t.get("n_depth")), None)
    st = point["settle"] or {}
    text = f"settled in {st.get('waited_s', 0):.1f} s" if st.get("settled") else \
        (st.get("reason") or "not settled")
    if tg:
        text += f", {tg['name']} {fmt_rate(tg['tokens_per_s'])} t/s"
        if tg.get("avg_power_w") is not None:
            text += f" at {tg['avg_power_w']:.1f} W"
    return text


def run_sweep(steps: list[float], *, applier, probe, settle, store=None, progress=None,
              backend=None, spec: str | None = None,
              clock=time.monotonic) -> tuple[dict, dict[float, dict]]:
    """Probe at each TDP step. Returns (the halotune.sweep/1 document, {tdp_w: probe doc}).
    Raises validate.ValidationError before any change; other exceptions propagate after the
    machine has been restored."""
    from halotune.probe.runner import ProbeFailed
    from halotune.validation.measure import metrics
    from halotune.validation.validate import ValidationError, _back_to, _restore, check_all

    t0 = clock()
    say = progress or (lambda msg: None)
    if not applier.synthetic:
        raise ValidationError("this channel applies profiles by name only; a sweep needs the "
                              "engine or the daemon's own validate method")
    warnings: list[str] = []
    check_all(applier, [step_profile(steps[0])])
    before = applier.current()
    if before.get("confirm_pending"):
        raise ValidationError(f"{before.get('profile')} waits for `halotune confirm`: confirm "
                              "it or roll back before sweeping; nothing was changed", api="EBUSY")
    keep = _back_to(before, store, warnings)
    points: list[dict] = []
    docs: dict[float, dict] = {}
    aborted = None
    try:
        for i, w in enumerate(steps):
            where = f"[{i + 1}/{len(steps)}] {w:g} W"
            point = {"tdp_w": w, "error": None, "apply": None, "settle": None}
            points.append(point)
            say(f"{where}: apply, settle, probe")
            try:
                out = applier.apply(step_profile(w, keep))
                point["apply"] = {"ok": out.get("ok"), "summary": out.get("summary")}
                skipped = _tdp_skipped(out)
                if skipped:
                    aborted = f"the TDP limits cannot be set: {skipped}"
                    point["error"] = f"apply: {aborted}"
                    break
                if not out.get("ok"):
                    raise ApplyFailed(out.get("summary") or "the apply failed")
                point["settle"] = settle().to_dict()
                docs[w] = probe(f"sweep {w:g} W")
            except ApplyFailed as e:
                point["error"] = f"apply: {e}"
            except ProbeFailed as e:
                point["error"] = f"probe: {e}"
            say(f"{where}: {point['error'] or _brief(point, docs[w])}")
    finally:
        restored = _restore(applier, keep, False, say)

    for p in points:
        m = metrics([docs[p["tdp_w"]]]) if p["tdp_w"] in docs else {}
        for k in ("tg_tps", "pp_tps", "depth_tps", "tg_test", "pp_test", "depth_test",
                  "avg_power_w", "tg_avg_power_w", "joules_per_token", "tg_efficiency",
                  "tg_cv_percent"):
            p[k] = m.get(k)
        jpt = p["joules_per_token"]
        p["tokens_per_joule"] = round(1.0 / jpt, 4) if jpt else None
        p["tests"] = m.get("tests", [])
        p["history"] = None
    measured = [p for p in points if p["tdp_w"] in docs]
    source = "measured" if measured and all(p["tg_avg_power_w"] is not None
                                            for p in measured) else "tdp_setting"
    if source == "tdp_setting" and measured:
        warnings.append("no power reading during tg: watts are the TDP settings, and tokens "
                        "per joule are unknown")
    for p in points:
        p["watts"] = (p["tg_avg_power_w"] if source == "measured" else p["tdp_w"]) \
            if p["tdp_w"] in docs else None
    summary = analyse(points)
    first = docs[measured[0]["tdp_w"]] if measured else None
    for d in docs.values():
        warnings.extend(m for m in d.get("warnings") or () if m not in warnings)
    ok = (aborted is None and bool(restored.get("ok")) and bool(measured)
          and not any(p["error"] for p in points))
    doc = {
        "schema": SWEEP_SCHEMA,
        "time": _now(),
        "backend": first["backend"] if first else backend,
        "channel": applier.name,
        "tdp": {"spec": spec, "steps_w": list(steps), "keys": list(TDP_KEYS)},
        "kept_profile": keep.name if keep is not None else None,
        "watts_source": source,
        "points": [_ordered(p) for p in points],
        **summary,
        "restored": restored,
        "aborted": aborted,
        "model": first["model"] if first else None,
        "fingerprint": first["fingerprint"] if first else None,
        "duration_s": round(clock() - t0, 3),
        "ok": ok,
        "summary": _summary(steps, summary, restored, aborted),
        "warnings": warnings,
    }
    return doc, docs


def _summary(steps, summary: dict, restored: dict, aborted) -> str:
    from halotune.validation.validate import restored_text

    k, e = summary["knee"], summary["best_efficiency"]
    parts = [f"{len(steps)} step(s) {steps[0]:g}-{steps[-1]:g} W",
             f"knee at {k['tdp_w']:g} W" if k else "no knee",
             f"most tokens/J at {e['tdp_w']:g} W" if e else "tokens/J unknown"]
    head = f"ABORTED ({aborted}); " if aborted else ""
    return f"{head}{', '.join(parts)}; {restored_text(restored)}"


POINT_KEYS = ("tdp_w", "watts", "tg_tps", "pp_tps", "depth_tps", "tg_test", "pp_test",
              "depth_test", "avg_power_w", "tg_avg_power_w", "joules_per_token",
              "tokens_per_joule", "tg_efficiency", "tg_cv_percent", "pareto", "knee",
              "best_efficiency", "error", "apply", "settle", "tests", "history")


def _ordered(p: dict) -> dict:
    return {k: p.get(k) for k in POINT_KEYS}


def _now() -> str:
    from halotune.validation.validate import _now as now

    return now()


def record(doc: dict, docs: dict[float, dict], **where) -> None:
    """One history run (kind "sweep", left out of the regression alarm) per measured step."""
    try:
        from halotune.history import record_run
    except ImportError as e:
        doc["warnings"].append(f"history is not available ({e}); nothing was recorded")
        return
    from halotune.probe.document import TEST_KEYS

    for p in doc["points"]:
        d = docs.get(p["tdp_w"])
        if d is None:
            continue
        result = {k: p[k] for k in ("tdp_w", "watts", "tg_tps", "pp_tps", "tokens_per_joule",
                                    "pareto", "knee")}
        result["steps_w"] = doc["tdp"]["steps_w"]
        try:
            run_id = record_run("sweep", [{k: t.get(k) for k in TEST_KEYS} for t in p["tests"]],
                                fingerprint=d.get("fingerprint") or {}, result=result,
                                profile=f"sweep-{p['tdp_w']:g}w", backend=doc["backend"],
                                model=doc["model"], label=f"sweep {p['tdp_w']:g} W", **where)
        except Exception as e:  # noqa: BLE001 - the measurement must survive a history failure
            p["history"] = {"run_id": None, "error": str(e)}
            continue
        p["history"] = {"run_id": run_id} if run_id is not None else {
            "run_id": None, "error": "could not record the result in history"}


# --- output -----------------------------------------------------------------------------------

def render(doc: dict) -> str:
    """The table and the terminal plot of `halotune sweep`."""
    from halotune.validation.plot import sweep_plot
    from halotune.validation.table import _grid, fmt_rate

    pts = doc["points"]
    tg = next((p["tg_test"] for p in pts if p.get("tg_test")), "tg")
    pp = next((p["pp_test"] for p in pts if p.get("pp_test")), "pp")
    dp = next((p["depth_test"] for p in pts if p.get("depth_test")), "depth")
    head = ["TDP W", "W" if doc["watts_source"] == "measured" else "W (setting)",
            f"{tg} t/s", f"{pp} t/s", f"{dp} t/s", "tokens/J", "roofline", "marks"]
    rows = []
    for p in pts:
        if p["error"]:
            rows.append([f"{p['tdp_w']:g}", "-", "-", "-", "-", "-", "-", p["error"]])
            continue
        marks = " ".join(m for m, on in (("pareto", p["pareto"]), ("KNEE", p["knee"]),
                                         ("most tokens/J", p["best_efficiency"])) if on)
        rows.append([f"{p['tdp_w']:g}", "-" if p["watts"] is None else f"{p['watts']:.1f}",
                     fmt_rate(p["tg_tps"]), fmt_rate(p["pp_tps"]), fmt_rate(p["depth_tps"]),
                     "-" if p["tokens_per_joule"] is None else f"{p['tokens_per_joule']:.4g}",
                     "-" if p["tg_efficiency"] is None else f"{p['tg_efficiency'] * 100:.1f} %",
                     marks])
    kept = doc.get("kept_profile")
    lines = [f"sweep: TDP {' '.join(f'{w:g}' for w in doc['tdp']['steps_w'])} W (STAPM = slow = "
             f"fast), everything else {'as ' + kept if kept else 'unchanged'}; backend "
             f"{doc.get('backend') or '-'}", ""]
    lines += _grid(head, rows, right=set(range(0, 7)))
    lines.append("")
    lines.append(sweep_plot(doc))
    lines.append("")
    knee_ = doc.get("knee")
    lines.append(f"knee: {knee_['tdp_w']:g} W ({knee_['reason']})" if knee_
                 else f"knee: none ({doc.get('knee_reason')})")
    if doc.get("aborted"):
        lines.append(f"ABORTED: {doc['aborted']}")
    from halotune.validation.validate import restored_text

    lines.append(restored_text(doc.get("restored")))
    for w in doc.get("warnings") or ():
        lines.append(f"warning: {w}")
    return "\n".join(lines)
