"""The daemon's event log: every rule firing, apply, drift and refusal, numbered."""

from __future__ import annotations

import logging
from collections import deque

from halotune.telemetry.sampler import rfc3339_now

log = logging.getLogger("halotune.daemon")


class EventLog:
    def __init__(self, maxlen: int = 1000):
        self._events: deque[dict] = deque(maxlen=maxlen)
        self._seq = 0
        self.listeners: list = []     # callables(event) -> None (subscribed connections)

    def add(self, kind: str, message: str, **data) -> dict:
        self._seq += 1
        event = {"seq": self._seq, "time": rfc3339_now(), "kind": kind, "message": message}
        if data:
            event["data"] = data
        self._events.append(event)
        log.log(logging.WARNING if kind in ("error", "auth", "drift") else logging.INFO,
                "%s: %s", kind, message)
        for listener in list(self.listeners):
            listener(event)
        return event

    def since(self, seq: int, limit: int) -> dict:
        items = [e for e in self._events if e["seq"] > seq][:limit]
        # `next` is the last seq returned: pass it back as `since` to continue.
        return {"events": items, "next": items[-1]["seq"] if items else seq}
