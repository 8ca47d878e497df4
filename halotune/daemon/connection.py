"""One API client connection: an ordered outgoing queue shared by answers and stream lines.

Answers are never dropped, but bounded: with more than MAX_QUEUED_BYTES of answers unsent the
server reads no further request from the client until they drain (a client pipelining
megabytes of requests without reading grew the daemon by 700 MB before), and closes it if
they do not drain within DRAIN_TIMEOUT_S. Stream lines (snapshots, events) are bounded too: a
subscriber with STREAM_BACKLOG unsent lines cannot keep up; it gets one `dropped: N` line and
is closed, so a slow client never holds memory or delays the others.
"""

from __future__ import annotations

import asyncio
import json
import math

STREAM_BACKLOG = 64
MAX_QUEUED_BYTES = 1 << 20  # unsent answers beyond which requests are not read
DRAIN_TIMEOUT_S = 60.0      # a peer that reads nothing for this long is gone
FLUSH_TIMEOUT_S = 10.0      # after the dropped marker, time to read what was already sent


def encode(obj) -> bytes:
    """One JSON line; a non-finite float (never valid JSON) goes out as null."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)
    return text.encode() + b"\n"


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer):
        self.reader, self.writer, self.peer = reader, writer, peer
        self.out: asyncio.Queue = asyncio.Queue()
        self.stream_pending = 0
        self.sub_interval: float | None = None
        self.sub_events = False
        self.last_sent = 0.0
        self.closing = False
        self.holds: set[str] = set()
        self.queued_bytes = 0                  # answers queued, not yet given to the socket
        self._below = asyncio.Event()
        self._below.set()

    def answer(self, msg: dict) -> None:
        if not self.closing:
            data = encode(msg)
            self.queued_bytes += len(data)
            if self.queued_bytes > MAX_QUEUED_BYTES:
                self._below.clear()
            self.out.put_nowait((False, data))

    async def drained(self) -> bool:
        """Wait while more than MAX_QUEUED_BYTES of answers are unsent; False (and the
        connection closed) when the client does not read them within DRAIN_TIMEOUT_S."""
        if self._below.is_set() or self.closing:
            return not self.closing
        try:
            await asyncio.wait_for(self._below.wait(), DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.writer.transport.abort()
            self.close()
            return False
        return not self.closing

    def stream(self, line: bytes) -> None:
        """Queue a stream line. With STREAM_BACKLOG lines unsent the subscriber cannot keep
        up: its unsent stream lines are dropped, one `dropped: N` line follows what it was
        already sent, and the connection closes once that is flushed (or FLUSH_TIMEOUT_S)."""
        if self.closing:
            return
        if self.stream_pending < STREAM_BACKLOG:
            self.stream_pending += 1
            self.out.put_nowait((True, line))
            return
        dropped = 1
        while not self.out.empty():
            is_stream, data = self.out.get_nowait()
            if is_stream:
                dropped += 1
            elif data is not None:
                self.writer.write(data)          # answers are never dropped
        # Written behind the lines already handed to the transport, so the order holds.
        self.writer.write(encode({"v": 1, "event": "dropped", "dropped": dropped}))
        self.closing = True
        self.stream_pending = 0
        self.out.put_nowait((False, None))       # wake and end the writer loop
        transport = self.writer.transport
        self.writer.close()                      # closes after flushing the buffer
        asyncio.get_running_loop().call_later(FLUSH_TIMEOUT_S, transport.abort)

    async def writer_loop(self) -> None:
        try:
            while True:
                is_stream, data = await self.out.get()
                if data is None or self.writer.is_closing():
                    break
                if is_stream:
                    self.stream_pending -= 1
                else:
                    self.queued_bytes -= len(data)
                    if self.queued_bytes <= MAX_QUEUED_BYTES // 2:
                        self._below.set()
                self.writer.write(data)
                await asyncio.wait_for(self.writer.drain(), DRAIN_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            self.writer.transport.abort()
        finally:
            self.closing = True
            self._below.set()
            if not self.writer.is_closing():
                self.writer.close()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.out.put_nowait((False, None))
