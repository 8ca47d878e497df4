"""`halotune apply|rollback|verify|recover|confirm`: the apply engine's commands."""

from __future__ import annotations

import json
import os
import sys

from halotune.cli import exitcodes
from halotune.machine.rootfs import RootFS


def _engine(args):
    from halotune.tuning.engine import Engine, default_state_dir

    fs = RootFS(args.root)
    state_dir = getattr(args, "state_dir", None) or default_state_dir(args.root)
    return Engine(fs, state_dir, force=getattr(args, "force", False),
                  wait_s=getattr(args, "wait", 0.0) or 0.0)


def _needs_root(args, verb: str) -> int | None:
    if os.path.abspath(args.root) == "/" and os.geteuid() != 0:
        print(f"halotune {verb} changes kernel settings and needs root: "
              f"sudo halotune {verb} ...", file=sys.stderr)
        return exitcodes.PERMISSION
    return None


def _emit(args, outcome) -> int:
    from halotune.views import plan

    if getattr(args, "json", False):
        json.dump({"schema": "halotune.outcome/1", **outcome.to_dict()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(plan.render(outcome))
    return exitcodes.OK if outcome.ok else exitcodes.NOT_READY


def _via_daemon(args, method: str, params: dict):
    """One writer: when a daemon serves this root, mutating commands go through it.
    Returns the outcome, or None when no daemon answers (act directly)."""
    from halotune.daemon.client import ApiError, Client
    from halotune.tuning.engine import EngineError, Outcome, Row

    client = Client.try_connect(getattr(args, "socket", None))
    if client is None:
        return None
    with client:
        try:
            if client.call("hello").get("root") != os.path.abspath(args.root):
                return None
            result = client.call(method, params)
        except ApiError as e:
            if e.code == "EPERM":
                raise PermissionError(e.message) from None
            raise EngineError(e.message.split("; "), code=exitcodes.NOT_READY) from None
    rows = [Row(**r) for r in result.pop("rows", [])]
    return Outcome(rows=rows, **result)


def _guard(fn):
    """Turn the engine's refusals into messages and exit codes."""
    def wrapped(args):
        from halotune.tuning.engine import EngineError
        from halotune.tuning.journal import JournalError
        from halotune.tuning.loader import ProfileError

        try:
            return fn(args)
        except ProfileError as e:
            print(f"halotune: {e}", file=sys.stderr)
            return exitcodes.NOT_READY
        except EngineError as e:
            for p in e.problems:
                print(f"halotune: {p}", file=sys.stderr)
            if e.code == exitcodes.NOT_READY and not e.changed:
                print("halotune: nothing was changed", file=sys.stderr)
            return e.code
        except JournalError as e:
            print(f"halotune: {e}", file=sys.stderr)
            return exitcodes.NOT_READY
        except PermissionError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"halotune: {where}permission denied: {e.strerror or e}", file=sys.stderr)
            return exitcodes.PERMISSION
    return wrapped


@_guard
def apply(args) -> int:
    from halotune.tuning.loader import ProfileStore

    via = _via_daemon(args, "apply", {"profile": args.name, "dry_run": args.dry_run,
                                      "confirm_s": args.confirm})
    if via is not None:
        return _emit(args, via)
    if not args.dry_run and (code := _needs_root(args, "apply")):
        return code
    profile = ProfileStore(args.profiles_dir, root=args.root).load(args.name)
    engine = _engine(args)
    outcome = engine.apply(profile, dry_run=args.dry_run, confirm_s=args.confirm)
    if args.confirm and not args.dry_run:
        _spawn_reverter(args, engine)
    return _emit(args, outcome)


def _spawn_reverter(args, engine) -> None:
    """A detached process that reverts the apply if `halotune confirm` does not come in time.
    Its own session: the SSH session's SIGHUP does not reach it."""
    from halotune.machine.spawn import spawn_detached

    active = engine.state.load(engine.fs.root).active
    deadline = (active or {}).get("confirm_deadline")
    if not deadline:        # nothing waits for confirmation (e.g. `stock` is a rollback)
        return
    argv = [sys.executable, "-m", "halotune", "--root", args.root, "_revert-unconfirmed",
            "--state-dir", engine.state.path, "--deadline", repr(deadline)]
    spawn_detached(argv)


@_guard
def rollback(args) -> int:
    via = _via_daemon(args, "rollback", {"dry_run": args.dry_run})
    if via is not None:
        return _emit(args, via)
    if not args.dry_run and (code := _needs_root(args, "rollback")):
        return code
    return _emit(args, _engine(args).rollback(dry_run=args.dry_run))


@_guard
def verify(args) -> int:
    via = _via_daemon(args, "verify", {})
    return _emit(args, via if via is not None else _engine(args).verify())


@_guard
def recover(args) -> int:
    if code := _needs_root(args, "recover"):
        return code
    return _emit(args, _engine(args).recover(resume=args.resume))


@_guard
def confirm(args) -> int:
    via = _via_daemon(args, "confirm", {})
    if via is not None:
        return _emit(args, via)
    if code := _needs_root(args, "confirm"):
        return code
    return _emit(args, _engine(args).confirm())


# Between two attempts of the detached reverter when another halotune holds the lock.
REVERT_RETRY_S = 5.0


@_guard
def revert_unconfirmed(args) -> int:
    """The detached reverter: at the deadline, revert unless confirmed or replaced. A busy
    lock (a long apply, a hung writer) is waited out, attempt after attempt: giving up would
    leave an unconfirmed profile applied for good."""
    import time

    from halotune.tuning.journal import LockBusy

    time.sleep(max(0.0, args.deadline - time.time()))
    while True:
        try:
            outcome = _engine(args).revert_unconfirmed(args.deadline)
        except LockBusy as e:
            print(f"halotune: {e}; trying again", file=sys.stderr)
            time.sleep(REVERT_RETRY_S)
            continue
        return exitcodes.OK if outcome.ok else exitcodes.NOT_READY
