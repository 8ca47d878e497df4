"""Where a new result goes: the daemon, the state database, or the user's database.

- Not root and a daemon serving this root answers: through its API method "record" (the daemon
  owns the state database; reading-level peers, the socket group, may record).
- Else the state database, DIR/history.db in the state directory (default_state_dir: the
  engine's /var/lib/halotune, or ROOT/.halotune-state for a fake root), when we may write it:
  mode 0640, group halotune when that group exists, so its members can read it.
- Else the user's database, $XDG_STATE_HOME/halotune/history.db (~/.local/state/...), 0600.

`halotune history` reads both, read-only, and merges them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from halotune.history.db import HistoryDB, HistoryError

log = logging.getLogger(__name__)

DB_NAME = "history.db"
STATE_GROUP = "halotune"
STATE_MODE = 0o640
USER_MODE = 0o600
# The daemon's API refuses requests over 64 KiB; leave room for the envelope.
MAX_DAEMON_PARAMS = 60 * 1024


@dataclass
class Recorded:
    id: int
    db: str
    via: str          # "daemon", "state", "user" or "file"

    @property
    def ref(self) -> str:
        """The reference `halotune history show` takes for this run."""
        return f"u{self.id}" if self.via == "user" else str(self.id)


def state_db_path(root: str = "/") -> str:
    from halotune.tuning.engine import default_state_dir

    return os.path.join(default_state_dir(root), DB_NAME)


def user_db_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "halotune", DB_NAME)


def may_write(path: str) -> bool:
    """Whether we may create or write the database at `path` (and its -wal/-shm beside it)."""
    if os.path.exists(path):
        return os.access(path, os.W_OK) and os.access(os.path.dirname(path), os.W_OK)
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(d):          # the first ancestor that exists decides
        parent = os.path.dirname(d)
        if parent == d or os.path.exists(d):
            return False
        d = parent
    return os.access(d, os.W_OK | os.X_OK)


def _origin(via: str) -> dict:
    return {"via": via, "uid": os.getuid(), "pid": os.getpid(),
            "sudo_uid": os.environ.get("SUDO_UID") if os.geteuid() == 0 else None}


def _via_daemon(params: dict, root: str, socket: str | None) -> Recorded | None:
    try:
        from halotune.daemon.client import ApiError, Client
    except ImportError:
        return None
    size = len(json.dumps(params, default=str))
    if size > MAX_DAEMON_PARAMS:
        log.warning("result of %d bytes is too large for the daemon's API; writing it directly",
                    size)
        return None
    client = Client.try_connect(socket)
    if client is None:
        return None
    try:
        with client:
            hello = client.call("hello")
            if hello.get("root") != os.path.abspath(root) or "record" not in hello.get("methods", ()):
                return None
            res = client.call("record", params)
        return Recorded(int(res["id"]), str(res.get("db") or ""), "daemon")
    except ApiError as e:
        log.warning("the daemon refused the record (%s); writing it directly", e)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("the daemon could not record the result (%s); writing it directly", e)
    return None


def record(kind: str, tests: list[dict], *, fingerprint: dict, result: dict | None = None,
           telemetry: dict | None = None, profile: str | None = None,
           backend: str | None = None, model: dict | None = None, forecast: dict | None = None,
           label: str | None = None, measured_at: str | None = None, root: str = "/",
           socket: str | None = None, db_path: str | None = None,
           use_daemon: bool = True) -> Recorded:
    """Store a run where it belongs (module docstring); `db_path` forces one file. Raises
    HistoryError when no database could take it."""
    fields = dict(kind=kind, tests=tests, fingerprint=fingerprint, result=result,
                  telemetry=telemetry, profile=profile, backend=backend, model=model,
                  forecast=forecast, label=label, measured_at=measured_at)
    if db_path:
        with HistoryDB(db_path, mode=USER_MODE) as db:
            return Recorded(db.add_run(**fields, origin=_origin("file")), db.path, "file")
    if use_daemon and os.geteuid() != 0:
        done = _via_daemon(fields, root, socket)
        if done is not None:
            return done
    errors = []
    state = state_db_path(root)
    if may_write(state):
        try:
            with HistoryDB(state, mode=STATE_MODE, group=STATE_GROUP) as db:
                return Recorded(db.add_run(**fields, origin=_origin("state")), db.path, "state")
        except (HistoryError, OSError) as e:
            errors.append(str(e))
            log.warning("cannot write %s (%s); using the user database", state, e)
    user = user_db_path()
    try:
        with HistoryDB(user, mode=USER_MODE) as db:
            return Recorded(db.add_run(**fields, origin=_origin("user")), db.path, "user")
    except OSError as e:
        errors.append(f"{user}: {e.strerror or e}")
    except HistoryError as e:
        errors.append(str(e))
    raise HistoryError("cannot store the result: " + "; ".join(errors))


def record_run(kind: str, tests: list[dict], *, fingerprint: dict, result: dict | None = None,
               telemetry: dict | None = None, profile: str | None = None,
               backend: str | None = None, model: dict | None = None,
               forecast: dict | None = None, label: str | None = None, **where) -> int | None:
    """record() for callers that must not fail over history: the run id, or None (logged)
    when nothing could store it. `where`: measured_at, root, socket, db_path, use_daemon."""
    try:
        return record(kind, tests, fingerprint=fingerprint, result=result, telemetry=telemetry,
                      profile=profile, backend=backend, model=model, forecast=forecast,
                      label=label, **where).id
    except HistoryError as e:
        log.warning("%s", e)
        return None
