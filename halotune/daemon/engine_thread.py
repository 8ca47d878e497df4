"""The daemon's one engine thread: every change to the machine runs here, one at a time, in
the order asked (a rule's switch queued before an admin's apply runs first, so the admin's
wins).

What the daemon needs beyond a one-thread executor:
- at stop, `cancel_pending()` drops the changes not started yet (their callers get
  `Stopping`), so the stop-time rollback runs right after the change in progress, never
  before a change queued earlier;
- `running()` says which job runs and since when, so the watchdog can stop pinging systemd
  when a job hangs (a ryzenadj or a sysfs write that never returns);
- a daemon thread: a hung job cannot keep the process alive after the stop.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time


class Stopping(Exception):
    """The daemon is stopping: the job was refused or dropped before it started."""


class EngineThread:
    def __init__(self, name: str = "halotune-engine"):
        self._jobs: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._current: tuple[str, float] | None = None
        self.jobs_started = 0          # a reader's reading is only trusted if none started
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, what: str) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._closed:
                fut.set_exception(Stopping("the daemon is stopping"))
                return fut
            self._jobs.append((fn, what, fut))
            self._cv.notify()
        return fut

    def cancel_pending(self) -> int:
        """Drop the jobs not started yet; answer how many."""
        with self._cv:
            dropped = list(self._jobs)
            self._jobs.clear()
        for _fn, _what, fut in dropped:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(Stopping("the daemon is stopping"))
        return len(dropped)

    def quiet_since(self) -> int | None:
        """A mark for `still_quiet`, or None while a job runs or waits."""
        if self._current is not None or self._jobs:
            return None
        return self.jobs_started

    def still_quiet(self, mark: int | None) -> bool:
        """No job ran or ran partly since `mark` (from quiet_since)."""
        return mark is not None and self.quiet_since() == mark

    def running(self) -> tuple[str, float] | None:
        """(what, seconds running) of the job in progress, or None when idle."""
        cur = self._current
        return (cur[0], time.monotonic() - cur[1]) if cur else None

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, let the queued ones run, wait for the thread; False if it is still
        busy after `timeout` (a hung job)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if not self._jobs:
                    return
                fn, what, fut = self._jobs.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            self._current = (what, time.monotonic())
            self.jobs_started += 1
            try:
                result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)
            else:
                fut.set_result(result)
            finally:
                self._current = None
