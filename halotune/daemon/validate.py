"""API method `validate`: validate profiles (or sweep the TDP) inside the daemon.

params (all optional but one of profiles/all/sweep):
    profiles  ["llm-efficient", ...]      or  all: true
    sweep     {"tdp": "45:120:15"}        a TDP sweep instead of a validation
    rounds    1..20 (2)                   budget_s  > 0, <= 600 (30)
    backend   auto | llama-bench | inprocess | simulated      preset, model (a .gguf path)
    settle_s  0..3600 (machine default)   record    true (default): store in history

Returns the halotune.validate/1 (or halotune.sweep/1) document. Needs mutating-level
authorisation (it applies profiles). The work runs in a worker thread; every apply and
rollback goes through the daemon's own apply_profile/rollback on its loop, so the engine stays
single-writer and the daemon's active profile, events and TDP re-read stay right. While it
runs, the daemon holds itself on behalf of the caller (its rules and drift re-assertion pause;
`apply` from other connections is refused), and a second validate is refused (EBUSY).

When the daemon stops, the validation ends at its next step: the daemon refuses its applies
and rollbacks (EBUSY), settling and probing are not started any more, and the daemon waits
for this worker before it restores the original values itself.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

_RUNNING: set[int] = set()
_LOCK = threading.Lock()
MAX_ROUNDS = 20
MAX_BUDGET_S = 600.0
HOLD_TTL_S = 86400


def _check(params: dict) -> dict:
    """Checked parameters, or ApiError EINVAL naming the parameter and value."""
    from halotune.daemon.server import ApiError
    from halotune.probe.backends import CHOICES

    def bad(msg):
        return ApiError("EINVAL", f"validate: {msg}")

    out = {"profiles": [], "all": False, "sweep": None, "rounds": 2, "budget_s": 30.0,
           "backend": "auto", "preset": None, "model": None, "settle_s": None, "record": True}
    names = params.get("profiles", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names) \
            or len(names) > 50:
        raise bad("params.profiles must be a list of profile names")
    out["profiles"] = names
    out["all"] = params.get("all", False)
    if not isinstance(out["all"], bool):
        raise bad("params.all must be true or false")
    sweep = params.get("sweep")
    if sweep is not None:
        if not isinstance(sweep, dict) or not isinstance(sweep.get("tdp"), str):
            raise bad('params.sweep must be {"tdp": "START:STOP:STEP"}')
        out["sweep"] = sweep["tdp"]
    if sum(bool(x) for x in (names, out["all"], out["sweep"])) != 1:
        raise bad("give exactly one of params.profiles, params.all or params.sweep")
    for key, lo, hi, kind in (("rounds", 1, MAX_ROUNDS, int), ("budget_s", 0, MAX_BUDGET_S, float),
                              ("settle_s", 0, 3600, float)):
        if key in params and params[key] is not None:
            v = params[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    (kind is int and not float(v).is_integer()) or not lo <= v <= hi or \
                    (key == "budget_s" and v <= 0):
                raise bad(f"params.{key} = {v!r}: must be a number between {lo} and {hi}")
            out[key] = kind(v)
    backend = params.get("backend", "auto")
    if backend not in CHOICES:
        raise bad(f"params.backend = {backend!r}: choose from {', '.join(CHOICES)}")
    out["backend"] = backend
    for key in ("preset", "model"):
        v = params.get(key)
        if v is not None and (not isinstance(v, str) or not v or len(v) > 4096):
            raise bad(f"params.{key} must be a string")
        out[key] = v
    if out["model"] and out["preset"]:
        raise bad("params.model and params.preset exclude each other")
    if out["model"] and not os.path.isfile(out["model"]):
        raise bad(f"params.model = {out['model']!r}: no such file")
    rec = params.get("record", True)
    if not isinstance(rec, bool):
        raise bad("params.record must be true or false")
    out["record"] = rec
    return out


def _work(service, loop, p: dict, uid: int) -> dict:
    """The validation or sweep itself (worker thread)."""
    from halotune.daemon.server import ApiError
    from halotune.machine.rootfs import RootFS
    from halotune.probe.runner import ProbeOptions
    from halotune.tuning.loader import ProfileError
    from halotune.validation.appliers import ServiceApplier
    from halotune.validation.measure import make_prober
    from halotune.validation.settle import SettleConfig, settle
    from halotune.validation.validate import ValidationError

    from halotune.validation.measure import backend_problem

    if (why := backend_problem(service.root, p["backend"])) is not None:
        raise ApiError("ENODEV", f"validate: backend {p['backend']}: {why}; nothing was changed")
    fs = RootFS(service.root)
    cfg = SettleConfig.for_machine(fs, p["settle_s"])
    prober = make_prober(ProbeOptions(root=service.root, backend=p["backend"], model=p["model"],
                                      preset=p["preset"], budget_s=p["budget_s"]))
    applier = ServiceApplier(service, loop, reason=f"validate, requested by uid {uid}")
    from halotune.tuning.loader import ProfileStore

    store = ProfileStore(service.profiles_dir, root=service.root)
    stop = getattr(service, "stop_event", None) or threading.Event()

    def unless_stopping(step, fn):
        def run(*args, **kwargs):
            if stop.is_set():
                raise ApiError("EBUSY", f"validate: the daemon is stopping; {step} not started")
            return fn(*args, **kwargs)
        return run

    prober = unless_stopping("probe", prober)
    settle_once = unless_stopping("settle", lambda: settle(fs, cfg))

    def progress(msg: str) -> None:
        loop.call_soon_threadsafe(service.events.add, "validate", msg)

    where = {"db_path": os.path.join(service.state_dir, "history.db"), "root": service.root}
    try:
        if p["sweep"] is not None:
            from halotune.validation.sweep import SweepUsageError, parse_tdp, record, run_sweep

            try:
                steps = parse_tdp(p["sweep"])
            except SweepUsageError as e:
                raise ApiError("EINVAL", f"validate: {e}".replace("--tdp", "params.sweep.tdp"))
            doc, docs = run_sweep(steps, applier=applier, probe=prober,
                                  settle=settle_once, store=store, progress=progress,
                                  backend=p["backend"], spec=p["sweep"])
        else:
            from halotune.validation.validate import record, run_validation, select

            try:
                profiles, requested, exps = select(store, p["profiles"], p["all"])
            except ProfileError as e:
                missing = e.file is None
                raise ApiError("ENOENT" if missing else "EINVAL", str(e)) from None
            doc, docs = run_validation(profiles, requested, exps, applier=applier,
                                       probe=prober, settle=settle_once,
                                       rounds=p["rounds"], store=store, progress=progress,
                                       backend=p["backend"])
    except ValidationError as e:
        raise ApiError(e.api, f"validate: {e}") from None
    if p["record"] and not stop.is_set():
        record(doc, docs, **where)
    return doc


async def handle_validate(service, conn, params) -> dict:
    """The API method `validate` (wired by the daemon as api_validate)."""
    from halotune.daemon.server import ApiError

    p = _check(params)
    if service.hold_active(exclude=conn):
        raise ApiError("EBUSY", "a hold is active (" + ", ".join(
            f"{h['owner']}: {h['reason']}" for h in service.holds.values()) + ")")
    key = id(service)
    with _LOCK:
        if key in _RUNNING:
            raise ApiError("EBUSY", "a validation is already running")
        _RUNNING.add(key)
    what = f"sweep {p['sweep']}" if p["sweep"] else (
        "all profiles" if p["all"] else " ".join(p["profiles"]))
    hold_id = uuid.uuid4().hex[:12]
    service.holds[hold_id] = {"owner": "validate", "reason": f"validating {what}",
                              "expires": time.time() + HOLD_TTL_S, "uid": conn.peer.uid,
                              "pid": conn.peer.pid, "conn": conn}
    conn.holds.add(hold_id)
    _exclude(service)
    service.events.add("hold", f"hold {hold_id} by validate: validating {what}")
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, _work, service, loop, p, conn.peer.uid)
    finally:
        if service.holds.pop(hold_id, None) is not None:
            service.events.add("hold", f"hold {hold_id} released: validate finished")
        conn.holds.discard(hold_id)
        _exclude(service)
        with _LOCK:
            _RUNNING.discard(key)


def _exclude(service) -> None:
    """Keep the daemon's process-rule exclusions in step with its holds."""
    fn = getattr(service, "_exclude_holders", None)
    if fn is not None:
        fn()
