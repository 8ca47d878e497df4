"""`halotune validate`: apply -> settle -> probe -> roll back, per profile, in A B A B order.

The machine is rolled back after every run, and whatever happens (a refused apply, a failed
or crashed probe, Ctrl-C) it ends as it was found: rolled back to its original values, or, when
a profile was applied before validate started, with that profile applied again. Each profile's
[validate] expectations get a verdict with the measured numbers (expectations.py); profiles
they compare with (`relative_to`) are measured in the same run.

The document, "halotune.validate/1" (keys never absent; null when unknown):
    schema, time, backend, channel ("engine" | "daemon"), rounds,
    order [{index, round, profile}],
    profiles [{name, description, source, requested, verdict ("pass" | "fail" | "unknown" |
        "error" | "no_expectations"), error, tg_tps, pp_tps, depth_tps, depth_test, tg_test,
        pp_test, tg_cv_percent, avg_power_w, tg_avg_power_w, joules_per_token, tg_efficiency,
        tests [probe/1 test keys + rounds], expectations [{key, expected, relative_to, measured,
        reference, verdict, message, source}], runs [{index, round, apply, settle, probe,
        rollback, error}], history}],
    best {column: [profile names]}, restored {action, profile, ok, summary}, aborted,
    model, fingerprint, duration_s, ok, summary (one line), warnings
"""

from __future__ import annotations

import time

from halotune.validation import VALIDATE_SCHEMA
from halotune.validation.appliers import ApplyFailed, RollbackFailed, memory_profile
from halotune.validation.plan import alternating_order

DEFAULT_ROUNDS = 2


class ValidationError(Exception):
    """A refusal before anything changed; `code` is the exit code, `api` the daemon API's
    error code for the same refusal."""

    def __init__(self, message: str, code: int = 2, api: str | None = None):
        super().__init__(message)
        self.code = code
        self.api = api or ("ENODEV" if code == 3 else "EINVAL")


# --- which profiles ---------------------------------------------------------------------------

def select(store, names: list[str], all_: bool):
    """(profiles to measure, names asked for, {name: [Expectation]}). Profiles named by a
    `relative_to` are added (after the ones asked for). ProfileError for a broken profile or
    an unknown name, naming the file and key."""
    from halotune.tuning.loader import ProfileError
    from halotune.validation.expectations import expectations_of

    if all_:
        profiles, errors = store.load_all()
        if errors:
            raise errors[0]
    else:
        profiles = [store.load(n) for n in dict.fromkeys(names)]
    requested = [p.name for p in profiles]
    known = store.names()
    exps: dict[str, list] = {}
    queue = list(profiles)
    while queue:
        p = queue.pop(0)
        exps[p.name] = expectations_of(p)
        for e in exps[p.name]:
            ref = e.relative_to
            if ref is None:
                continue
            if ref == p.name:
                raise ProfileError(e.source, "validate.relative_to", ref,
                                   "must name another profile (a profile compared with itself "
                                   "proves nothing)")
            if ref not in known:
                raise ProfileError(e.source, "validate.relative_to", ref,
                                   f"no such profile (known: {', '.join(known)})")
            if ref not in exps and all(q.name != ref for q in queue):
                q = store.load(ref)
                profiles.append(q)
                queue.append(q)
    return profiles, requested, exps


def _back_to(before: dict, store, warnings: list[str]):
    """The profile to re-apply at the end (the one active before), or None: roll back."""
    name = before.get("profile")
    if not name:
        return None
    from halotune.tuning.loader import ProfileError

    try:
        if store is not None:
            return store.load(name)
    except ProfileError as e:
        if not before.get("targets"):
            warnings.append(f"{name} was applied before, but cannot be loaded again ({e}): "
                            "the machine is rolled back to its original values instead")
            return None
    if before.get("targets"):
        return memory_profile(name, before["targets"], "the journal's active profile")
    return None


# --- the run ----------------------------------------------------------------------------------

def check_all(applier, profiles) -> None:
    """Every profile must be applicable here ([requires]) before the first change."""
    for p in profiles:
        try:
            applier.check(p)
        except ApplyFailed as e:
            raise ValidationError(f"{e}; nothing was changed",
                                  getattr(e, "code", 2)) from None


def _outcome(out: dict) -> dict:
    return {"ok": out.get("ok"), "summary": out.get("summary")}


def run_validation(profiles, requested, exps, *, applier, probe, settle, rounds=DEFAULT_ROUNDS,
                   store=None, progress=None, backend=None,
                   clock=time.monotonic) -> tuple[dict, dict[str, list[dict]]]:
    """Measure `profiles` (ResolvedProfile) in A B A B order and judge their expectations.
    Returns (the halotune.validate/1 document, {profile: its probe documents}).

    applier: appliers.*Applier; probe(name) -> probe/1 document (raises runner.ProbeFailed);
    settle() -> settle.SettleResult. Raises ValidationError before any change; any other
    exception propagates after the machine has been rolled back and restored."""
    from halotune.probe.runner import ProbeFailed
    from halotune.validation.measure import metrics, run_summary

    t0 = clock()
    say = progress or (lambda msg: None)
    by_name = {p.name: p for p in profiles}
    steps = alternating_order(list(by_name), rounds)
    warnings: list[str] = []
    check_all(applier, profiles)
    before = applier.current()
    if before.get("confirm_pending"):
        raise ValidationError(f"{before.get('profile')} waits for `halotune confirm`: confirm "
                              "it or roll back before validating; nothing was changed",
                              api="EBUSY")
    back_to = _back_to(before, store, warnings)
    runs: dict[str, list[dict]] = {n: [] for n in by_name}
    docs: dict[str, list[dict]] = {n: [] for n in by_name}
    aborted = None
    clean = False            # the machine is at its originals (last change was a rollback)
    restored = None
    try:
        for step in steps:
            run = {"index": step.index, "round": step.round, "apply": None, "settle": None,
                   "probe": None, "rollback": None, "error": None}
            runs[step.profile].append(run)
            where = f"[{step.index + 1}/{len(steps)}] round {step.round}, {step.profile}"
            clean = False
            try:
                try:
                    say(f"{where}: apply, settle, probe")
                    out = applier.apply(by_name[step.profile])
                    run["apply"] = _outcome(out)
                    if not out.get("ok"):
                        raise ApplyFailed(out.get("summary") or "the apply failed")
                    run["settle"] = settle().to_dict()
                    doc = probe(step.profile)
                    docs[step.profile].append(doc)
                    run["probe"] = run_summary(doc)
                except ApplyFailed as e:
                    run["error"] = f"apply: {e}"
                except ProbeFailed as e:
                    run["error"] = f"probe: {e}"
            finally:
                run["rollback"] = _outcome(applier.rollback())
                clean = True
            say(f"{where}: {run['error'] or _brief(run)}, rolled back")
    except RollbackFailed as e:
        aborted = f"a rollback failed, validation stopped: {e}"
        clean = False
    finally:
        restored = _restore(applier, back_to, clean, say)

    measured = {n: metrics(d) if d else None for n, d in docs.items()}
    doc = _document(profiles, requested, exps, runs, docs, measured, steps, rounds, applier,
                    backend, restored, aborted, warnings)
    doc["duration_s"] = round(clock() - t0, 3)
    return doc, docs


def _brief(run: dict) -> str:
    """One progress line's worth of a run: settle time and tg."""
    from halotune.validation.table import fmt_rate

    tg = next((t for t in run["probe"]["tests"] if t.get("n_gen") and not t.get("n_prompt")
               and not t.get("n_depth")), None)
    st = run["settle"] or {}
    settled = (f"settled in {st.get('waited_s', 0):.1f} s" if st.get("settled")
               else st.get("reason") or "not settled")
    return f"{settled}, {tg['name']} {fmt_rate(tg['tokens_per_s'])} t/s" if tg else settled


def _restore(applier, back_to, clean: bool, say) -> dict:
    """Leave the machine as it was found: re-apply the profile that was active, or make sure
    the originals are back."""
    try:
        if back_to is not None:
            say(f"re-applying {back_to.name} (it was applied before validate started)")
            out = applier.apply(back_to)
            return {"action": "reapplied", "profile": back_to.name, **_outcome(out)}
        if clean:
            return {"action": "rolled_back", "profile": None, "ok": True,
                    "summary": "the machine has its original values"}
        out = applier.rollback()
        return {"action": "rolled_back", "profile": None, **_outcome(out)}
    except (ApplyFailed, RollbackFailed) as e:
        return {"action": "reapplied" if back_to is not None else "rolled_back",
                "profile": back_to.name if back_to is not None else None, "ok": False,
                "summary": str(e)}


def _document(profiles, requested, exps, runs, docs, measured, steps, rounds, applier, backend,
              restored, aborted, warnings) -> dict:
    from halotune.validation.expectations import evaluate, overall
    from halotune.validation.table import best_per_column

    first = next((d[0] for d in docs.values() if d), None)
    entries = []
    for p in profiles:
        m = measured[p.name]
        verdicts = [evaluate(e, p.name, measured) for e in exps.get(p.name, [])]
        errors = [r["error"] for r in runs[p.name] if r["error"]]
        entry = {"name": p.name, "description": p.description, "source": p.display_path,
                 "requested": p.name in requested,
                 "verdict": overall(verdicts) if m is not None else "error",
                 "error": errors[0] if errors else None}
        for k in ("tg_tps", "pp_tps", "depth_tps", "depth_test", "tg_test", "pp_test",
                  "tg_cv_percent", "avg_power_w", "tg_avg_power_w", "joules_per_token",
                  "tg_efficiency"):
            entry[k] = m.get(k) if m else None
        entry["tests"] = m["tests"] if m else []
        entry["expectations"] = verdicts
        entry["runs"] = runs[p.name]
        entry["history"] = None
        entries.append(entry)
    for d in docs.values():
        for doc in d:
            warnings.extend(w for w in doc.get("warnings") or () if w not in warnings)
    ok = (aborted is None and bool(restored and restored.get("ok"))
          and not any(e["error"] for e in entries)
          and all(e["verdict"] in ("pass", "no_expectations") for e in entries))
    return {
        "schema": VALIDATE_SCHEMA,
        "time": _now(),
        "backend": first["backend"] if first else backend,
        "channel": applier.name,
        "rounds": rounds,
        "order": [s.to_dict() for s in steps],
        "profiles": entries,
        "best": best_per_column(entries),
        "restored": restored,
        "aborted": aborted,
        "model": first["model"] if first else None,
        "fingerprint": first["fingerprint"] if first else None,
        "duration_s": None,
        "ok": ok,
        "summary": _summary(entries, rounds, restored, aborted),
        "warnings": warnings,
    }


def restored_text(restored: dict | None) -> str:
    r = restored or {}
    if r.get("action") == "reapplied":
        return (f"{r['profile']} applied again, as before" if r.get("ok") else
                f"re-applying {r['profile']} FAILED: {r.get('summary')}")
    return ("machine rolled back to its original values" if r.get("ok") else
            f"rollback FAILED: {r.get('summary')} (run `halotune rollback`)")


def _summary(entries, rounds, restored, aborted) -> str:
    """One line: every profile's verdict, and how the machine was left."""
    verdicts = ", ".join(f"{e['name']} {e['verdict'].replace('_', ' ')}" for e in entries)
    head = f"ABORTED ({aborted}); " if aborted else ""
    return f"{head}{rounds} round(s): {verdicts}; {restored_text(restored)}"


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


# --- history ----------------------------------------------------------------------------------

def record(doc: dict, docs: dict[str, list[dict]], **where) -> None:
    """One history run (kind "validate") per measured profile; sets each profile's `history`
    to {"run_id"} or {"run_id": None, "error"}. `where`: root, socket, db_path, use_daemon."""
    try:
        from halotune.history import record_run
    except ImportError as e:
        doc["warnings"].append(f"history is not available ({e}); nothing was recorded")
        return
    from halotune.probe.document import TEST_KEYS

    for entry in doc["profiles"]:
        measured = docs.get(entry["name"]) or []
        if not measured:
            continue
        result = {k: entry[k] for k in ("name", "verdict", "tg_tps", "pp_tps", "depth_tps",
                                        "avg_power_w", "joules_per_token", "tg_efficiency")}
        result["expectations"] = [{k: v[k] for k in ("key", "expected", "relative_to",
                                                     "measured", "verdict")}
                                  for v in entry["expectations"]]
        result["rounds"] = doc["rounds"]
        result["validated_with"] = [p["name"] for p in doc["profiles"]]
        try:
            run_id = record_run(
                "validate", [{k: t.get(k) for k in TEST_KEYS} for t in entry["tests"]],
                fingerprint=measured[0].get("fingerprint") or {}, result=result,
                profile=entry["name"], backend=doc["backend"], model=doc["model"],
                label=f"validate {entry['name']}", **where)
        except Exception as e:  # noqa: BLE001 - the measurement must survive a history failure
            entry["history"] = {"run_id": None, "error": str(e)}
            continue
        entry["history"] = {"run_id": run_id} if run_id is not None else {
            "run_id": None, "error": "could not record the result in history"}
