"""`halotune preflight`: is this machine in a state where a benchmark means something?

run_preflight() watches the machine for a short window, runs every check in checks/items
(each pass/warn/fail/skip with the measured value, the expectation and a one-line fix), adds
the token-generation forecast for --model, and returns the "halotune.preflight/1" document
with the full snapshot and the fingerprint. `halotune bench` calls it before a run.
Nothing here writes to the machine: the profile is verified read-only.
"""

from __future__ import annotations

import logging

from halotune.checks import model as gguf
from halotune.checks.context import Context
from halotune.checks.report import item, overall
from halotune.checks.thresholds import load_thresholds
from halotune.checks.window import observe
from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS

SCHEMA = "halotune.preflight/1"
log = logging.getLogger(__name__)


def run_preflight(fs: RootFS, *, profile: str | None = None, model: str | None = None,
                  ctx: int | None = None, allow=(), window_s: float | None = None,
                  programs: Programs | None = None, state_dir: str | None = None,
                  proc_root: str | None = None, thresholds: dict | str | None = None,
                  profiles_dir: str | None = None, history=None) -> dict:
    """The preflight report. `thresholds` is a dict (already loaded) or an override file;
    `proc_root` where processes are read (default: machine.processes.process_root: the host's
    for "/" and a simulated tree, a fake tree's own proc/<pid>); `history` a HistoryDB or
    database path for the measured efficiency."""
    th = thresholds if isinstance(thresholds, dict) else load_thresholds(thresholds)
    programs = programs or Programs(fs)
    seconds = th["window"]["seconds"] if window_s is None else max(0.0, float(window_s))
    warnings: list[str] = []

    c = Context(fs=fs, obs=None, th=th, profile_name=profile, allow=tuple(allow),
                n_ctx=ctx or th["memory"]["default_ctx"])
    if model:
        try:
            c.model = gguf.read_model(model)
        except gguf.ModelError as e:
            c.model_error = str(e)
    c.obs = observe(fs, seconds, th["window"]["sample_hz"], programs=programs, proc_root=proc_root)
    _profile(c, profiles_dir, state_dir, programs)

    from halotune.checks import items

    checks = []
    for check in items.ALL:
        try:
            checks.append(check(c))
        except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
            log.debug("check %s failed", check.__name__, exc_info=True)
            checks.append(item(check.__name__, check.__name__, "warn",
                               f"the check itself failed: {type(e).__name__}: {e}", None,
                               "report this as a halotune bug"))
    status = overall(checks)

    forecast = None
    if c.model is not None:
        from halotune.checks.forecast import forecast as make_forecast

        try:
            forecast = make_forecast(c.model, c.obs.last, th, history=history, root=fs.root)
        except Exception as e:  # noqa: BLE001
            warnings.append(f"no forecast: {type(e).__name__}: {e}")

    fingerprint = _fingerprint(fs, c.obs.last, programs, warnings)
    return {
        "schema": SCHEMA,
        "ready": status != "fail",
        "status": status,
        "root": fs.root,
        "time": c.obs.last.time,
        "window_s": c.obs.seconds,
        "profile": profile,
        "model": model,
        "ctx": c.n_ctx if model else ctx,
        "allow": list(c.allow),
        "checks": checks,
        "forecast": forecast,
        "warnings": warnings,
        "thresholds": th,
        "snapshot": c.obs.last.to_dict(),
        "fingerprint": fingerprint,
    }


def _profile(c: Context, profiles_dir, state_dir, programs) -> None:
    """Load the profile asked for, verify what is applied (read-only), and set what the TDP,
    platform-profile and CPU checks expect."""
    from halotune.machine.ryzenadj import RyzenAdj
    from halotune.tuning.engine import Engine, default_state_dir
    from halotune.tuning.journal import JournalError, StateDir
    from halotune.tuning.loader import ProfileError, ProfileStore

    if c.profile_name:
        try:
            prof = ProfileStore(profiles_dir, root=c.fs.root).load(c.profile_name)
            c.expected = dict(prof.values)
            c.expected_from = f"profile {prof.name}"
        except ProfileError as e:
            c.profile_error = str(e)
    state_dir = state_dir or default_state_dir(c.fs.root)
    try:
        c.verify = Engine(c.fs, state_dir, ryzenadj=RyzenAdj(programs)).verify()
        if not c.profile_name:
            journal = StateDir(state_dir).load(c.fs.root)
            journal.forget_other_boots(c.fs.read_text("proc/sys/kernel/random/boot_id"))
            if journal.active:
                c.expected = dict(journal.active.get("targets") or {})
                c.expected_from = f"applied profile {journal.active.get('profile')}"
    except JournalError as e:
        # Not root: the journal is root-only, but a daemon serving this root may verify for us.
        c.verify = _verify_via_daemon(c.fs.root)
        if c.verify is None:
            c.verify_error = str(e)


def _verify_via_daemon(root: str):
    """The daemon's `verify` outcome (a reading method), or None without a daemon for root."""
    import os

    from halotune.daemon.client import ApiError, Client
    from halotune.tuning.engine import Outcome, Row

    client = Client.try_connect(None)
    if client is None:
        return None
    try:
        with client:
            if client.call("hello").get("root") != os.path.abspath(root):
                return None
            result = dict(client.call("verify", {}))
    except (ApiError, OSError):
        return None
    rows = [Row(**r) for r in result.pop("rows", [])]
    return Outcome(rows=rows, **result)


def _fingerprint(fs, snapshot, programs, warnings: list[str]) -> dict:
    try:
        from halotune.telemetry.fingerprint import collect_fingerprint
    except ImportError:
        warnings.append("no fingerprint: halotune.telemetry.fingerprint is not available")
        return {}
    try:
        return collect_fingerprint(fs, snapshot=snapshot, programs=programs)
    except Exception as e:  # noqa: BLE001 - the report is still useful without it
        warnings.append(f"no fingerprint: {type(e).__name__}: {e}")
        return {}
