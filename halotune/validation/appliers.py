"""Apply and roll back for validate and sweep: one interface, three channels.

- EngineApplier: the apply engine directly (no daemon serves this root).
- ClientApplier: a daemon serves this root and we are its client: every change goes through
  its API on the connection that holds the daemon (the daemon refuses `apply` from other
  connections while a hold is active, and allows the holder's own).
- ServiceApplier: inside the daemon (API method `validate`): its own apply_profile/rollback,
  submitted to its event loop from the worker thread, so its bookkeeping (active profile,
  events, TDP re-read) stays right.

Every apply/rollback returns the engine's Outcome as a dict; a refusal raises ApplyFailed, a
rollback that does not restore everything raises RollbackFailed.
"""

from __future__ import annotations

SYNTHETIC_PREFIX = "<"          # ResolvedProfile.path of in-memory profiles (sweep steps)


class ApplyFailed(Exception):
    pass


class RollbackFailed(Exception):
    pass


def is_synthetic(profile) -> bool:
    return str(profile.path).startswith(SYNTHETIC_PREFIX)


def memory_profile(name: str, values: dict, source: str, description: str = ""):
    """A ResolvedProfile built in memory (not from a file): only `values` are applied."""
    from halotune.tuning.loader import ResolvedProfile

    path = f"{SYNTHETIC_PREFIX}{source}>"
    return ResolvedProfile(name=name, path=path, display_path=source, chain=[name],
                           description=description or source, values=dict(values),
                           sources={k: source for k in values})


def _check_hardware(engine, profile) -> None:
    from halotune.tuning.engine import EngineError

    try:
        engine.check_hardware(profile)
    except EngineError as e:
        err = ApplyFailed("; ".join(e.problems))
        err.code = e.code
        raise err from None


def _check_rollback(out: dict) -> dict:
    if not out.get("ok", True):
        raise RollbackFailed(out.get("summary") or "the rollback did not restore every value")
    return out


class EngineApplier:
    name = "engine"
    synthetic = True

    def __init__(self, engine):
        self.engine = engine

    def check(self, profile) -> None:
        """Refuse, before anything changes, a profile whose [requires] this machine fails."""
        _check_hardware(self.engine, profile)

    def apply(self, profile) -> dict:
        from halotune.tuning.engine import EngineError

        try:
            return self.engine.apply(profile).to_dict()
        except EngineError as e:
            err = ApplyFailed("; ".join(e.problems))
            err.changed = e.changed
            raise err from None

    def rollback(self) -> dict:
        from halotune.tuning.engine import EngineError
        from halotune.tuning.journal import JournalError

        try:
            return _check_rollback(self.engine.rollback().to_dict())
        except (EngineError, JournalError) as e:
            raise RollbackFailed(str(e)) from None

    def current(self) -> dict:
        """{"profile", "targets", "confirm_pending"} of what halotune applied this boot."""
        journal = self.engine.state.load(self.engine.fs.root)
        journal.forget_other_boots(self.engine.boot_id())
        active = journal.active or {}
        return {"profile": active.get("profile"), "targets": active.get("targets"),
                "confirm_pending": bool(active.get("confirm_deadline"))}


class ClientApplier:
    name = "daemon"
    synthetic = False

    def __init__(self, client):
        self.client = client

    def _call(self, method: str, params: dict, fail):
        from halotune.daemon.client import ApiError

        try:
            return self.client.call(method, params)
        except ApiError as e:
            raise fail(f"the daemon refused {method}: {e.message}") from None
        except (OSError, ValueError) as e:
            raise fail(f"the daemon did not answer {method}: {e}") from None

    def check(self, profile) -> None:
        pass                    # the daemon checks [requires] itself when it applies

    def apply(self, profile) -> dict:
        if is_synthetic(profile):
            raise ApplyFailed(f"{profile.name}: the daemon applies profiles by name only")
        return self._call("apply", {"profile": profile.name}, ApplyFailed)

    def rollback(self) -> dict:
        return _check_rollback(self._call("rollback", {}, RollbackFailed))

    def current(self) -> dict:
        out = self._call("verify", {}, ApplyFailed)
        pending = any("halotune confirm" in n for n in out.get("notes") or ())
        return {"profile": out.get("profile"), "targets": None, "confirm_pending": pending}


class ServiceApplier:
    name = "daemon"
    synthetic = True

    def __init__(self, service, loop, reason: str = "validate", timeout_s: float = 300.0):
        self.service, self.loop, self.reason, self.timeout_s = service, loop, reason, timeout_s

    def _run(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout_s)

    def check(self, profile) -> None:
        _check_hardware(self.service._engine(), profile)

    def apply(self, profile) -> dict:
        from halotune.daemon.server import ApiError

        try:
            return self._run(self.service.apply_profile(profile.name, reason=self.reason,
                                                        profile=profile))
        except ApiError as e:
            raise ApplyFailed(e.message) from None

    def rollback(self) -> dict:
        from halotune.daemon.server import ApiError
        from halotune.tuning.engine import EngineError

        try:
            return _check_rollback(self._run(self.service.rollback(self.reason)))
        except (ApiError, EngineError) as e:
            raise RollbackFailed(getattr(e, "message", str(e))) from None

    def current(self) -> dict:
        from halotune.tuning.journal import StateDir

        journal = StateDir(self.service.state_dir).load(self.service.fs.root)
        journal.forget_other_boots(self.service.fs.read_text("proc/sys/kernel/random/boot_id"))
        active = journal.active or {}
        return {"profile": active.get("profile"), "targets": active.get("targets"),
                "confirm_pending": bool(active.get("confirm_deadline"))}
