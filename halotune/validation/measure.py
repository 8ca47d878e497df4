"""Run the probe for validate and sweep, and boil its halotune.probe/1 documents down.

One probe document per run; a profile measured in several rounds gets its figures from all of
them: each test's repetitions pooled (mean, spread and CV over every repetition of every round,
so round-to-round drift counts as noise, honestly), watts as energy over timed time.
"""

from __future__ import annotations

import dataclasses

from halotune.probe.document import TEST_KEYS


def kind_of(test: dict) -> str:
    """pp, tg, depth (tg at a context depth), or other (a combined pp+tg test)."""
    p, g, d = test.get("n_prompt") or 0, test.get("n_gen") or 0, test.get("n_depth") or 0
    if p and not g:
        return "pp"
    if g and not p:
        return "depth" if d else "tg"
    return "other"


def test_seconds(test: dict) -> float:
    """Timed seconds the test's repetitions imply (tokens / rate, as the runner counts them);
    computed from the samples, not the rounded timed_s."""
    tokens = (test.get("n_prompt") or 0) + (test.get("n_gen") or 0)
    return sum(tokens / s for s in test.get("samples") or () if s and s > 0)


def run_summary(doc: dict) -> dict:
    """What one probe run contributes to a validation or sweep document."""
    roof = doc.get("roofline") or {}
    return {
        "duration_s": doc.get("duration_s"),
        "stopped_because": doc.get("stopped_because"),
        "tests": [{k: t.get(k) for k in TEST_KEYS} | {
            "stopped_because": t.get("stopped_because"),
            "power_null_reason": t.get("power_null_reason")} for t in doc.get("tests", [])],
        "roofline": {"peak_bytes_per_s": roof.get("peak_bytes_per_s"),
                     "source": roof.get("source"), "tg_efficiency": roof.get("tg_efficiency")},
        "avg_power_w": _r(avg_power([doc]), 2),
        "warnings": list(doc.get("warnings") or []),
    }


def avg_power(docs: list[dict]) -> float | None:
    """Energy over timed time across every test of every run; None without power readings."""
    energy = seconds = 0.0
    for doc in docs:
        for t in doc.get("tests", []):
            p = t.get("avg_power_w")
            if p is None:
                continue
            s = test_seconds(t)
            energy += p * s
            seconds += s
    if seconds > 0:
        return energy / seconds
    # Repetitions too short to weigh (a modelled backend): the plain mean.
    powers = [t["avg_power_w"] for d in docs for t in d.get("tests", [])
              if t.get("avg_power_w") is not None]
    return sum(powers) / len(powers) if powers else None


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _r(v, digits: int):
    return None if v is None else round(float(v), digits)


def combine_tests(docs: list[dict]) -> list[dict]:
    """Each test pooled over the runs (halotune.probe/1 test keys, plus `rounds`)."""
    from halotune.probe.stats import summarize

    by_name: dict[str, list[dict]] = {}
    for doc in docs:
        for t in doc.get("tests", []):
            by_name.setdefault(t["name"], []).append(t)
    out = []
    for name, runs in by_name.items():
        samples = [s for t in runs for s in t.get("samples") or ()]
        s = summarize(samples) if samples else None
        first = runs[0]
        out.append({
            "name": name, "n_prompt": first.get("n_prompt"), "n_gen": first.get("n_gen"),
            "n_depth": first.get("n_depth"),
            "tokens_per_s": _r(s.mean, 3) if s else None,
            "stddev": _r(s.stddev, 3) if s else None,
            "cv_percent": _r(s.cv_percent, 2) if s else None,
            "samples": [_r(x, 3) for x in samples],
            "joules_per_token": _r(_mean(t.get("joules_per_token") for t in runs), 6),
            "avg_power_w": _r(_mean(t.get("avg_power_w") for t in runs), 2),
            "rounds": len(runs),
        })
    return out


def metrics(docs: list[dict]) -> dict:
    """The figures validate compares and the table shows, from one or more probe documents."""
    tests = combine_tests(docs)

    def first(kind):
        return next((t for t in tests if kind_of(t) == kind), None)

    tg, pp, depth = first("tg"), first("pp"), first("depth")
    reasons = [t.get("power_null_reason") for d in docs for t in d.get("tests", [])
               if t.get("power_null_reason")]
    return {
        "tg_tps": tg and tg["tokens_per_s"],
        "pp_tps": pp and pp["tokens_per_s"],
        "depth_tps": depth and depth["tokens_per_s"],
        "depth_test": depth and depth["name"],
        "tg_test": tg and tg["name"],
        "pp_test": pp and pp["name"],
        "tg_cv_percent": tg and tg["cv_percent"],
        "avg_power_w": _r(avg_power(docs), 2),
        "tg_avg_power_w": tg and tg["avg_power_w"],
        "joules_per_token": tg and tg["joules_per_token"],
        "tg_efficiency": _r(_mean((d.get("roofline") or {}).get("tg_efficiency")
                                  for d in docs), 4),
        "power_null_reason": reasons[0] if reasons else None,
        "tests": tests,
    }


def make_prober(options):
    """probe(label) -> halotune.probe/1 document, each call a fresh probe with `options`
    (halotune.probe.runner.ProbeOptions). Raises runner.ProbeFailed."""
    from halotune.probe.runner import probe

    def run(label: str, progress=None) -> dict:
        return probe(dataclasses.replace(options), progress=progress)
    return run


def backend_problem(root: str, choice: str) -> str | None:
    """Why the probe cannot run here (checked before anything is applied), or None."""
    from halotune.machine.programs import Programs
    from halotune.machine.rootfs import RootFS
    from halotune.probe.backends import BackendUnavailable, make_backend

    fs = RootFS(root)
    try:
        make_backend(choice, fs, Programs(fs)).close()
    except (BackendUnavailable, ValueError) as e:
        return str(e)
    return None
