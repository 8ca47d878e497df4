"""API method "record": a client's result into the state history database.

Non-root commands (probe, bench, validate, import) send their results here, so one writer, the
daemon, owns /var/lib/halotune/history.db. Reading-level peers (the socket's group) may call
it, so everything is checked before it is stored: the shape (pydantic), the kinds, every
string and list bounded, the nesting depth and total size bounded, and a per-user rate.
The peer that sent a run is stored with it (origin: uid, pid).

Synchronous (SQLite with a busy timeout) and free of daemon state besides service.state_dir:
the server calls it in an executor and logs the event itself (EventLog is loop-only).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque

from halotune.history.db import KINDS

MAX_PARAMS_BYTES = 60 * 1024      # the API refuses requests over 64 KiB anyway
MAX_DEPTH = 8
MAX_TESTS = 256
MAX_SAMPLES = 1000
MAX_TEST_KEYS = 40
MAX_DB_BYTES = 1 << 30            # a history that large is a runaway client, not benchmarks
RATE_PER_MINUTE = 60
DB_MODE = 0o640
DB_GROUP = "halotune"

_recent: dict[int, deque] = {}
_rate_lock = threading.Lock()


def _models():
    from typing import Literal, Optional

    from pydantic import BaseModel, ConfigDict, Field

    Name = Field(default=None, max_length=256)

    class TestIn(BaseModel):
        model_config = ConfigDict(extra="allow", allow_inf_nan=False)
        name: str = Field(min_length=1, max_length=64)
        model_name: Optional[str] = Name
        n_prompt: Optional[int] = Field(default=None, ge=0, le=10_000_000)
        n_gen: Optional[int] = Field(default=None, ge=0, le=10_000_000)
        n_depth: Optional[int] = Field(default=None, ge=0, le=10_000_000)
        tokens_per_s: Optional[float] = Field(default=None, ge=0)
        stddev: Optional[float] = Field(default=None, ge=0)
        cv_percent: Optional[float] = Field(default=None, ge=0)
        joules_per_token: Optional[float] = Field(default=None, ge=0)
        avg_power_w: Optional[float] = Field(default=None, ge=0)
        samples: Optional[list[float]] = Field(default=None, max_length=MAX_SAMPLES)

    class RecordIn(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
        kind: Literal[KINDS]  # type: ignore[valid-type]
        tests: list[TestIn] = Field(default_factory=list, max_length=MAX_TESTS)
        fingerprint: dict
        result: Optional[dict] = None
        telemetry: Optional[dict] = None
        model: Optional[dict] = None
        forecast: Optional[dict] = None
        profile: Optional[str] = Field(default=None, max_length=200)
        backend: Optional[str] = Field(default=None, max_length=200)
        label: Optional[str] = Field(default=None, max_length=200)
        measured_at: Optional[str] = Field(default=None, max_length=40)

    return RecordIn


def _depth(obj, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(obj, dict):
        return max([_depth(v, level + 1) for v in obj.values()] or [level + 1])
    if isinstance(obj, list):
        return max([_depth(v, level + 1) for v in obj] or [level + 1])
    return level


def _finite(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


def _rate_ok(uid: int) -> bool:
    now = time.monotonic()
    with _rate_lock:
        q = _recent.setdefault(uid, deque())
        while q and now - q[0] > 60:
            q.popleft()
        if len(q) >= RATE_PER_MINUTE:
            return False
        q.append(now)
        return True


def validate(params: dict) -> dict:
    """The checked fields for HistoryDB.add_run; raises ValueError with a readable message."""
    from pydantic import ValidationError

    if not isinstance(params, dict):
        raise ValueError("params must be an object")
    size = len(json.dumps(params, default=str))
    if size > MAX_PARAMS_BYTES:
        raise ValueError(f"record of {size} bytes is over the {MAX_PARAMS_BYTES} byte limit")
    if _depth(params) > MAX_DEPTH:
        raise ValueError(f"record nested deeper than {MAX_DEPTH} levels")
    if not _finite(params):
        raise ValueError("record holds a non-finite number (NaN or infinity)")
    try:
        rec = _models().model_validate(params)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "params"
        raise ValueError(f"{where}: {first.get('msg')} ({e.error_count()} problem(s))") from None
    for i, t in enumerate(rec.tests):
        if len(t.model_dump()) > MAX_TEST_KEYS:
            raise ValueError(f"tests.{i}: more than {MAX_TEST_KEYS} keys")
    fields = rec.model_dump()
    fields["tests"] = [t.model_dump() for t in rec.tests]
    return fields


def db_path(service) -> str:
    return os.path.join(service.state_dir, "history.db")


def handle_record(service, params: dict, peer) -> dict:
    """Validate and store one run in the state database; returns {"id", "db"}. Raises the
    server's ApiError (EINVAL bad params, EAGAIN rate limit, ENOSPC too large, EIO)."""
    from halotune.daemon.server import ApiError
    from halotune.history.db import HistoryDB, HistoryError

    try:
        fields = validate(params)
    except ValueError as e:
        raise ApiError("EINVAL", f"record: {e}") from None
    if not _rate_ok(peer.uid):
        raise ApiError("EAGAIN", f"record: more than {RATE_PER_MINUTE} records a minute from "
                                 f"uid {peer.uid}; try again later")
    path = db_path(service)
    try:
        if os.path.exists(path) and os.path.getsize(path) > MAX_DB_BYTES:
            raise ApiError("ENOSPC", f"record: {path} is over {MAX_DB_BYTES >> 20} MiB; "
                                     "archive it before recording more")
        with HistoryDB(path, mode=DB_MODE, group=DB_GROUP) as db:
            run_id = db.add_run(**fields, origin={"via": "daemon", "uid": peer.uid,
                                                  "pid": peer.pid})
    except HistoryError as e:
        raise ApiError("EIO", f"record: {e}") from None
    except OSError as e:
        raise ApiError("EIO", f"record: {path}: {e.strerror or e}") from None
    return {"id": run_id, "db": path, "kind": fields["kind"]}
