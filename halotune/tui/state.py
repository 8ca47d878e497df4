"""What the panels draw from: the latest snapshot, the connection, history, profiles, events.

One ViewState per app, updated by the app from its Source's messages; panels only read it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from halotune.tui.formatting import primary_gpu
from halotune.tui.history import History

MAX_EVENTS = 200


@dataclass
class ViewState:
    doc: dict | None = None                  # the latest halotune.status/1 dict
    conn: dict = field(default_factory=lambda: {"mode": "none", "connected": False,
                                                "detail": "starting", "can_mutate": None})
    history: History = field(default_factory=History)
    profiles: list[dict] = field(default_factory=list)
    profile_errors: list[str] = field(default_factory=list)
    events: deque = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    label: str | None = None                 # "simulated Strix Halo", "tree /path", ...
    # residency counters that grew since the previous sample; None until there are two
    throttle_active: list[str] | None = None
    _prev_residency: dict | None = None
    _seen_seqs: set = field(default_factory=set)

    @property
    def gpu(self) -> dict | None:
        return primary_gpu(self.doc)

    @property
    def daemon(self) -> dict | None:
        return (self.doc or {}).get("daemon") if self.conn.get("connected") else None

    def take_snapshot(self, doc: dict) -> None:
        self.doc = doc
        self.history.add(doc)
        g = self.gpu or {}
        res = g.get("throttle_residency")
        prev = self._prev_residency
        if res and prev:
            self.throttle_active = [k for k, v in res.items()
                                    if v is not None and prev.get(k) is not None and v > prev[k]]
        else:
            self.throttle_active = None
        self._prev_residency = dict(res) if res else None

    def add_event(self, event: dict) -> bool:
        """Keep an event once (the stream and the `events` call may both bring it)."""
        seq = event.get("seq")
        if seq is not None:
            if seq in self._seen_seqs:
                return False
            self._seen_seqs.add(seq)
        self.events.append(event)
        if seq is not None and len(self.events) > 1:
            ordered = sorted(self.events, key=lambda e: (e.get("seq") is None, e.get("seq") or 0))
            self.events = deque(ordered, maxlen=MAX_EVENTS)
        return True
