"""One API client connection: an ordered outgoing queue shared by answers and stream lines.

Answers are never dropped. Stream lines (snapshots, events) are bounded: a subscriber with
STREAM_BACKLOG unsent lines cannot keep up; it gets one `dropped: N` line and is closed, so a
slow client never holds memory or delays the others.
"""

from __future__ import annotations

import asyncio
import json

STREAM_BACKLOG = 64
SEND_TIMEOUT_S = 5.0


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


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

    def answer(self, msg: dict) -> None:
        if not self.closing:
            self.out.put_nowait((False, encode(msg)))

    def stream(self, line: bytes) -> None:
        """Queue a stream line; on overflow drop the backlog, mark it, and close."""
        if self.closing:
            return
        if self.stream_pending >= STREAM_BACKLOG:
            dropped = 1
            kept = []
            while not self.out.empty():
                is_stream, data = self.out.get_nowait()
                if is_stream:
                    dropped += 1
                else:
                    kept.append((is_stream, data))
            for item in kept:
                self.out.put_nowait(item)
            self.out.put_nowait((False, encode({"v": 1, "event": "dropped", "dropped": dropped})))
            self.out.put_nowait((False, None))      # close after the marker
            self.closing = True
            self.stream_pending = 0
            return
        self.stream_pending += 1
        self.out.put_nowait((True, line))

    async def writer_loop(self) -> None:
        try:
            while True:
                is_stream, data = await self.out.get()
                if data is None:
                    break
                if is_stream:
                    self.stream_pending -= 1
                self.writer.write(data)
                await asyncio.wait_for(self.writer.drain(), SEND_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.closing = True
            self.writer.transport.abort() if self.writer.transport else None

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.out.put_nowait((False, None))
