"""The daemon's event log: every rule firing, apply, drift and refusal, numbered.

Readers of the socket can cause two kinds of event (a refused call, a recorded result), so
they cannot be allowed to push the others out: events of those kinds share a ring of their
own, and refusals are counted per user, one event (and one WARNING in the journal) per user
and minute, so a flood of refused calls neither erases the record of `start` or an admin's
`apply` nor drowns real messages in journald's rate limit.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from halotune.telemetry.sampler import rfc3339_now

log = logging.getLogger("halotune.daemon")

# Kinds an unprivileged client can trigger at will.
READER_KINDS = frozenset({"auth", "record"})
REFUSAL_WINDOW_S = 60.0


class EventLog:
    def __init__(self, maxlen: int = 1000):
        self._events: deque[dict] = deque(maxlen=maxlen)      # the daemon's own events
        self._reader: deque[dict] = deque(maxlen=maxlen)      # READER_KINDS
        self._seq = 0
        self._refusals: dict[int, list] = {}     # uid -> [window start, refusals not logged]
        self.listeners: list = []     # callables(event) -> None (subscribed connections)

    def add(self, kind: str, message: str, **data) -> dict:
        self._seq += 1
        event = {"seq": self._seq, "time": rfc3339_now(), "kind": kind, "message": message}
        if data:
            event["data"] = data
        (self._reader if kind in READER_KINDS else self._events).append(event)
        log.log(logging.WARNING if kind in ("error", "auth", "drift") else logging.INFO,
                "%s: %s", kind, message)
        for listener in list(self.listeners):
            listener(event)
        return event

    def refused(self, peer, what: str, reason: str) -> dict | None:
        """A refused connection or call: an "auth" event for the first refusal of a user in
        each REFUSAL_WINDOW_S, the rest counted into the next one."""
        now = time.monotonic()
        window = self._refusals.get(peer.uid)
        if window is not None and now - window[0] < REFUSAL_WINDOW_S:
            window[1] += 1
            return None
        unlogged = window[1] if window else 0
        self._refusals[peer.uid] = [now, 0]
        message = f"refused {what} from uid {peer.uid} ({peer.user}), pid {peer.pid}: {reason}"
        if unlogged:
            message += f"; {unlogged} more refusal(s) of this user before were not logged"
        return self.add("auth", message, uid=peer.uid, unlogged=unlogged)

    def since(self, seq: int, limit: int) -> dict:
        merged = sorted((e for ring in (self._events, self._reader) for e in ring
                         if e["seq"] > seq), key=lambda e: e["seq"])
        items = merged[:limit]
        # `next` is the last seq returned: pass it back as `since` to continue.
        return {"events": items, "next": items[-1]["seq"] if items else seq}
