"""`halotune daemon`: the sampling loop, the API handlers, and the service lifecycle.

One asyncio loop. Sampling runs in a one-thread executor (a sample may start ryzenadj), so
do engine changes (one writer, on the engine thread, engine_thread.py); the loop itself only
moves snapshots to subscribers and answers requests. `verify` only reads: it runs on a reader
thread, never queued behind changes, and concurrent verifies share one reading.

The watchdog is pinged from the sampling loop, and only while the engine thread makes
progress: if sampling stalls, or one engine job runs longer than ENGINE_STUCK_S, the pings
stop (STATUS= and the log say why) and systemd restarts the service.

Stop: new changes are refused, queued ones dropped, every worker (validate, the rules'
switch, the confirm reverter, record) is cancelled and waited for, and only then are the
original values restored, so nothing can change the machine after that rollback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import json
import logging
import os
import signal
import threading
import time
import uuid

from halotune import __version__
from halotune.daemon import notify
from halotune.daemon.config import DaemonConfig
from halotune.daemon.connection import Connection
from halotune.daemon.engine_thread import EngineThread, Stopping
from halotune.daemon.events import EventLog
from halotune.daemon.history import History
from halotune.daemon.server import MUTATING_METHODS, READ_METHODS, ApiError, Server
from halotune.machine.hoststate import system_stopping
from halotune.machine.rootfs import RootFS
from halotune.telemetry.sampler import Sampler

log = logging.getLogger("halotune.daemon")

MIN_INTERVAL_S, MAX_INTERVAL_S = 0.1, 10.0
# The longest legitimate engine job is an apply waiting 30 s for the journal lock (another
# halotune holds it) plus its writes and ryzenadj runs (10 s each at most): twice that is hung.
# HALOTUNE_ENGINE_STUCK_S overrides it (the tests hang a job on purpose).
try:
    ENGINE_STUCK_S = max(1.0, float(os.environ.get("HALOTUNE_ENGINE_STUCK_S", "120")))
except ValueError:
    ENGINE_STUCK_S = 120.0
# At stop, how long workers (a validate's probe, a record) may take to notice and end.
WORKERS_STOP_WAIT_S = 10.0
# A verify answer younger than this, with no change since, is served again.
VERIFY_REUSE_S = 1.0


class DaemonError(Exception):
    pass


class Daemon:
    def __init__(self, config: DaemonConfig, root: str, state_dir: str, socket_path: str,
                 profiles_dir: str | None = None):
        self.config = config
        self.root = root
        self.state_dir = state_dir
        self.profiles_dir = profiles_dir
        self.fs = RootFS(root)
        self.events = EventLog()
        self.history = History(config.daemon.history_s, MIN_INTERVAL_S)
        self.server = Server(self, socket_path, config.api)
        self.latest = None
        self.latest_line: bytes | None = None
        self.holds: dict[str, dict] = {}
        self.active_profile: str | None = None
        self.verified: bool | None = None
        # Why the daemon cannot change the machine (a damaged journal), None when it can: it
        # keeps monitoring and serving, and status says why (daemon.degraded).
        self.degraded: str | None = None
        self.rules = None                  # set by run(): halotune.daemon.rules (when present)
        self._sample_pool = concurrent.futures.ThreadPoolExecutor(1, "halotune-sample")
        self._engine_thread = EngineThread()
        self._reader_pool = concurrent.futures.ThreadPoolExecutor(1, "halotune-reader")
        # Bumped by every change: a verify reading taken before it is not reused after it.
        self._generation = 0
        self._verify_inflight: tuple[int, asyncio.Future] | None = None
        self._verify_last: tuple[int, float, object] | None = None
        self.stopping = False            # set at stop: the machine takes no more changes
        self.stop_event = threading.Event()   # the same, for worker threads (validate)
        self._workers: set = set()        # asyncio tasks/futures to wait for at stop
        self._confirm_timers: set = set()
        self._stuck_reported: str | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._lock_fd: int | None = None
        self.started = time.time()

    # --- lifecycle -----------------------------------------------------------------------------
    def _single_instance(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, "daemon.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonError(f"another halotune daemon (pid {holder}) already runs for state "
                              f"directory {self.state_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _engine(self):
        from halotune.tuning.engine import Engine
        return Engine(RootFS(self.root), self.state_dir, wait_s=30.0)

    async def _in_engine(self, fn, what: str = "change", at_stop: bool = False):
        from halotune.tuning.journal import JournalError

        if self.stopping and not at_stop:
            raise ApiError("EBUSY", f"{what}: the daemon is stopping; nothing was changed")
        try:
            return await asyncio.wrap_future(self._engine_thread.submit(fn, what))
        except Stopping:
            raise ApiError("EBUSY", f"{what}: the daemon is stopping; nothing was changed") \
                from None
        except JournalError as e:
            # A journal the engine cannot trust: refuse the change, keep serving.
            self._degrade(str(e))
            raise ApiError("EIO", str(e)) from None
        finally:
            self._generation += 1

    def track(self, aw):
        """Wait for this task or future at stop, before the rollback."""
        fut = asyncio.ensure_future(aw)
        self._workers.add(fut)
        fut.add_done_callback(self._workers.discard)
        return fut

    def _degrade(self, reason: str | None) -> None:
        if reason and reason != self.degraded:
            self.events.add("error", f"degraded, no changes to the machine: {reason}")
        self.degraded = reason

    async def run(self) -> int:
        self._single_instance()
        self.sampler = Sampler(self.fs)
        loop = self._loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.server.start()
        except ApiError as e:
            raise DaemonError(e.message) from None
        self.events.add("start", f"halotune {__version__} serving {self.server.path} "
                                 f"(root {self.root}, pid {os.getpid()})")
        await self._startup_changes()
        if self.config.metrics.enabled:
            self._start_metrics()
        try:
            from halotune.daemon.rules import Rules
            self.rules = Rules(self)
        except ImportError:
            self.rules = None
        notify.ready(self._status_line())
        sampling = asyncio.create_task(self._sample_loop())
        await self._stop.wait()
        notify.stopping()
        sampling.cancel()
        await self._shutdown()
        return 0

    async def _startup_changes(self) -> None:
        """Recover an unfinished journal, then apply the default profile."""
        if self.fs.is_host:
            # Coexistence acts: power-profiles-daemon >= 0.30 stops writing the DPM level.
            from halotune.machine import ppd
            for msg in await asyncio.get_running_loop().run_in_executor(None, ppd.coexist):
                self.events.add("start", msg)
        try:
            out = await self._in_engine(lambda: self._engine().recover(), "recover")
            if out.rows:
                self.events.add("rollback", "recovered an unfinished change: " + out.summary)
            if not out.ok:
                self.events.add("error", "recovery incomplete: " + "; ".join(out.warnings))
        except Exception as e:  # noqa: BLE001 - a broken journal must not stop monitoring
            self.events.add("error", f"journal recovery failed: {getattr(e, 'message', e)}")
        self._refresh_active()
        # A confirmation pending from before this start (a daemon restart, a reboot with a
        # boot-time key): its revert is scheduled again, at once if the deadline has passed.
        pending = self._arm_confirm_deadline()
        name = self.config.daemon.default_profile
        if name and self.degraded:
            self.events.add("error", f"default profile {name} not applied: {self.degraded}")
        elif name and self.sampler.devices and self.active_profile != name and not pending:
            try:
                await self.apply_profile(name, reason="default profile")
            except ApiError as e:        # a broken profile file: serve, and say why
                self.events.add("error", f"default profile {name} not applied: {e.message}")

    def _refresh_active(self) -> None:
        from halotune.tuning.journal import JournalError, StateDir
        try:
            journal = StateDir(self.state_dir).load(self.fs.root)
            active = journal.active
            self.active_profile = active["profile"] if active else None
            # For the thermal guard resuming its ceiling after a restart (rules/thermal.py).
            self.active_targets = dict(active.get("targets", {})) if active else {}
            self.original_tdp = {k: e.get("state") for k, e in journal.baseline.items()
                                 if k.startswith("power.") and isinstance(e, dict)}
            self._degrade(None)
        except JournalError as e:
            self.active_profile = None
            self.active_targets, self.original_tdp = {}, {}
            self._degrade(str(e))
        except Exception:  # noqa: BLE001
            self.active_profile = None
            self.active_targets, self.original_tdp = {}, {}

    async def _stop_workers(self) -> None:
        """Refuse every further change, drop the queued ones, and wait for the workers that
        could still ask for one (validate, the rules' switch, the confirm reverter, record)."""
        self.stopping = True
        self.stop_event.set()
        for handle in list(self._confirm_timers):
            handle.cancel()
        self._confirm_timers.clear()
        dropped = self._engine_thread.cancel_pending()
        if dropped:
            self.events.add("stop", f"{dropped} queued change(s) dropped: the daemon is stopping")
        rules_task = getattr(self.rules, "_task", None)
        if isinstance(rules_task, asyncio.Task) and not rules_task.done():
            self.track(rules_task)
        if self._workers:
            done, pending = await asyncio.wait(list(self._workers), timeout=WORKERS_STOP_WAIT_S)
            if pending:
                self.events.add("error", f"{len(pending)} worker(s) still running at stop; "
                                         "they can no longer change the machine")

    async def _shutdown(self) -> None:
        await self._stop_workers()
        self._refresh_active()          # what the workers left applied
        if self.config.daemon.restore_on_exit and self.active_profile and not system_stopping():
            try:
                # Queued after the change in progress (if any), ahead of nothing else.
                out = await self._in_engine(lambda: self._engine().rollback(),
                                            "rollback at stop", at_stop=True)
                self._refresh_active()
                self.events.add("rollback", f"service stopped: {out.summary}")
            except Exception as e:  # noqa: BLE001
                self.events.add("error", f"rollback at stop failed: {e}")
        await self.server.stop()
        if getattr(self, "_metrics", None):
            self._metrics.stop()
        self._sample_pool.shutdown(wait=False)
        self._reader_pool.shutdown(wait=False, cancel_futures=True)
        if not self._engine_thread.close(timeout=5.0):
            log.error("the engine thread is still busy at exit (%s)",
                      (self._engine_thread.running() or ("?",))[0])
        self.sampler.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    def stop(self) -> None:
        """Ask a running daemon to stop (from any thread)."""
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop.set)

    def _start_metrics(self) -> None:
        try:
            from halotune.daemon.exporter import MetricsServer
        except ImportError as e:
            self.events.add("error", f"metrics disabled: {e}")
            return
        host, _, port = self.config.metrics.listen.rpartition(":")
        try:
            self._metrics = MetricsServer(self._metrics_state, host=host, port=int(port),
                                          allow_remote=self.config.metrics.allow_remote)
            self._metrics.start()
        except (ValueError, OSError) as e:
            self.events.add("error", f"metrics disabled: {e}")

    def _metrics_state(self):
        return self.latest, {"profile": self.active_profile, "verified": self.verified,
                             "daemon_start_time": self.started}

    # --- sampling --------------------------------------------------------------------------------
    def interval(self) -> float:
        asked = [c.sub_interval for c in self.server.connections if c.sub_interval]
        return max(MIN_INTERVAL_S, min([self.config.daemon.sample_interval_s, *asked]))

    async def _sample_loop(self) -> None:
        loop = asyncio.get_running_loop()
        wd = notify.watchdog_interval()
        last_wd = 0.0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                snap = await loop.run_in_executor(self._sample_pool, self.sampler.sample)
            except Exception as e:  # noqa: BLE001 - keep sampling; report once per kind
                self.events.add("error", f"sampling failed: {e!r}")
                snap = None
            if snap is not None:
                self._publish(snap)
                if self.rules is not None:
                    try:
                        await self.rules.on_sample(snap)
                    except Exception as e:  # noqa: BLE001
                        log.exception("rules failed")
                        self.events.add("error", f"rules failed: {e!r}")
            if wd and time.monotonic() - last_wd >= wd:
                stuck = self._engine_stuck()
                if stuck is None:
                    notify.watchdog()
                    notify.status(self._status_line())
                    last_wd = time.monotonic()
                else:       # no ping: systemd restarts the service after WatchdogSec
                    notify.status(stuck)
            self._wake.clear()
            delay = self.interval() - (time.monotonic() - t0)
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    def _engine_stuck(self) -> str | None:
        """Why the engine thread is hung (a job running over ENGINE_STUCK_S), or None."""
        running = self._engine_thread.running()
        if running is None or running[1] < ENGINE_STUCK_S:
            self._stuck_reported = None
            return None
        what, seconds = running
        why = (f"STUCK: engine job '{what}' running for {seconds:.0f} s (over "
               f"{ENGINE_STUCK_S:g} s); watchdog pings stopped")
        if self._stuck_reported != what:
            self._stuck_reported = what
            log.error("%s", why)
            self.events.add("error", why)
        return why

    def _publish(self, snap) -> None:
        now = time.time()
        self.latest = snap
        doc = snap.to_dict()
        doc["daemon"] = self._daemon_info()
        self.latest_line = None
        self.history.add(snap, now)
        line = None
        for c in list(self.server.connections):
            if c.sub_interval and now - c.last_sent >= c.sub_interval * 0.9:
                if line is None:   # serialised once per sample, whatever the subscriber count
                    line = (json.dumps({"v": 1, "event": "snapshot", "data": doc},
                                       separators=(",", ":")) + "\n").encode()
                c.last_sent = now
                c.stream(line)

    def _daemon_info(self) -> dict:
        return {"profile": self.active_profile, "verified": self.verified,
                "degraded": self.degraded,
                "holds": [{"id": k, **{x: v for x, v in h.items() if x != "conn"}}
                          for k, h in self.holds.items()],
                "sample_interval_s": self.interval(), "pid": os.getpid(), "root": self.root}

    def _status_line(self) -> str:
        if self.degraded:
            return "DEGRADED: the journal cannot be used; monitoring only (see status)"
        prof = self.active_profile or "none"
        ver = {True: "verified", False: "DRIFT", None: "not verified"}[self.verified]
        return f"profile {prof} ({ver})"

    # --- changes (shared by the API and the rules) ---------------------------------------------
    def hold_active(self, exclude: Connection | None = None) -> bool:
        now = time.time()
        for k, h in list(self.holds.items()):
            if h["expires"] < now:
                del self.holds[k]
                self.events.add("hold", f"hold {k} by {h['owner']} expired")
                self._exclude_holders()
        return any(h.get("conn") is not exclude for h in self.holds.values())

    def _exclude_holders(self) -> None:
        """A holder's own processes (the probe's llama-bench, bench's command) never trigger
        process rules, during the hold or in the rule's hold time after it."""
        rules = getattr(self, "rules", None)
        procs = getattr(getattr(rules, "sources", None), "processes", None)
        if procs is not None and hasattr(procs, "also_exclude"):
            procs.also_exclude = {h["pid"] for h in self.holds.values() if h.get("pid")}

    def _store(self):
        from halotune.tuning.loader import ProfileStore
        return ProfileStore(self.profiles_dir, root=self.root)

    async def apply_profile(self, name: str, reason: str, dry_run: bool = False,
                            confirm_s: float | None = None, profile=None) -> dict:
        from halotune.tuning.engine import EngineError
        from halotune.tuning.loader import ProfileError

        try:
            profile = profile if profile is not None else self._store().load(name)
        except ProfileError as e:
            missing = e.file is None or "no such profile" in str(e)   # not a broken file
            raise ApiError("ENOENT" if missing else "EINVAL", str(e)) from None
        try:
            out = await self._in_engine(lambda: self._engine().apply(profile, dry_run=dry_run,
                                                                     confirm_s=confirm_s),
                                        f"apply {name}")
        except EngineError as e:
            raise ApiError("ENODEV" if e.code == 3 else "EINVAL", "; ".join(e.problems)) from None
        if not dry_run:
            self._refresh_active()
            self.sampler.refresh_tdp()       # the limits just changed: read them next sample
            self.verified = out.ok
            self.events.add("apply", f"{name} ({reason}): {out.summary}")
            notify.status(self._status_line())
        return out.to_dict()

    async def rollback(self, reason: str, dry_run: bool = False) -> dict:
        out = await self._in_engine(lambda: self._engine().rollback(dry_run=dry_run), "rollback")
        if not dry_run:
            self._refresh_active()
            self.sampler.refresh_tdp()
            self.verified = None
            self.events.add("rollback", f"{reason}: {out.summary}")
        return out.to_dict()

    # --- API handlers (api_<method>) ---------------------------------------------------------------
    async def disconnected(self, conn: Connection) -> None:
        for hold_id in list(conn.holds):
            if self.holds.pop(hold_id, None) is not None:
                self.events.add("hold", f"hold {hold_id} released: its connection closed")
        self._exclude_holders()
        self._unlisten(conn)

    def _unlisten(self, conn: Connection) -> None:
        self.events.listeners = [f for f in self.events.listeners
                                 if getattr(f, "__self__", None) is not conn
                                 and getattr(f, "conn", None) is not conn]

    async def api_hello(self, conn, params):
        return {"api": 1, "version": __version__, "root": self.root,
                "methods": sorted(READ_METHODS | MUTATING_METHODS),
                "peer": {"uid": conn.peer.uid, "gid": conn.peer.gid, "pid": conn.peer.pid,
                         "can_mutate": self.server.may_mutate(conn.peer)}}

    async def api_status(self, conn, params):
        if self.latest is None:
            raise ApiError("EBUSY", "no sample yet; try again in a second")
        doc = self.latest.to_dict()
        doc["daemon"] = self._daemon_info()
        return doc

    async def api_subscribe(self, conn, params):
        interval = params.get("interval_s", self.config.daemon.sample_interval_s)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise ApiError("EINVAL", "interval_s must be a number of seconds (0.1 - 10)")
        conn.sub_interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(interval)))
        conn.last_sent = 0.0
        if params.get("events") and not conn.sub_events:
            conn.sub_events = True

            def forward(event, conn=conn):
                conn.stream((json.dumps({"v": 1, "event": "event", "data": event},
                                        separators=(",", ":")) + "\n").encode())
            forward.conn = conn
            self.events.listeners.append(forward)
        self._wake.set()       # sample now at the new rate
        return {"interval_s": conn.sub_interval}

    async def api_unsubscribe(self, conn, params):
        conn.sub_interval, conn.sub_events = None, False
        self._unlisten(conn)
        return {"subscribed": False}

    async def api_history(self, conn, params):
        seconds = params.get("seconds", 60)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ApiError("EINVAL", "seconds must be a positive number")
        return self.history.query(float(seconds))

    async def api_profiles(self, conn, params):
        profiles, errors = self._store().load_all()
        return {"profiles": [{"name": p.name, "description": p.description, "path": p.display_path}
                             for p in profiles], "errors": [str(e) for e in errors]}

    async def api_apply(self, conn, params):
        name = params.get("profile")
        if not isinstance(name, str) or not name:
            raise ApiError("EINVAL", 'params.profile must name a profile, e.g. "llm-max"')
        confirm_s = params.get("confirm_s")
        if confirm_s is not None and (isinstance(confirm_s, bool)
                                      or not isinstance(confirm_s, (int, float))
                                      or not 0 < confirm_s <= 86400):
            raise ApiError("EINVAL", "confirm_s must be a number of seconds, above 0 and at "
                                     "most 86400")
        dry_run = bool(params.get("dry_run", False))
        if not dry_run and self.hold_active(exclude=conn):
            raise ApiError("EBUSY", "a hold is active (" + ", ".join(
                f"{h['owner']}: {h['reason']}" for h in self.holds.values()) + ")")
        result = await self.apply_profile(name, reason=f"requested by uid {conn.peer.uid}",
                                          dry_run=dry_run, confirm_s=confirm_s)
        if not dry_run and self.rules is not None:
            self.rules.note_manual(name, ok=bool(result.get("ok")))
        if confirm_s and not dry_run:
            # Armed whenever the engine armed it (drifted values included), not only on "ok".
            self._arm_confirm_deadline()
        return result

    def _pending_deadline(self) -> float | None:
        from halotune.tuning.journal import StateDir
        try:
            journal = StateDir(self.state_dir).load(self.fs.root)
        except Exception:  # noqa: BLE001 - a broken journal is reported by recover
            return None
        deadline = (journal.active or {}).get("confirm_deadline")
        return deadline if isinstance(deadline, (int, float)) and deadline else None

    def _arm_confirm_deadline(self) -> float | None:
        """Schedule the revert of the confirmation the journal says is pending (if any)."""
        deadline = self._pending_deadline()
        if deadline is not None and not self.stopping:
            self._confirm_later(max(0.0, deadline - time.time()))
        return deadline

    def _confirm_later(self, delay: float) -> None:
        handle = asyncio.get_running_loop().call_later(delay, self._confirm_deadline_passed)
        self._confirm_timers.add(handle)

    def _confirm_deadline_passed(self) -> None:
        async def revert():
            from halotune.tuning.journal import LockBusy
            deadline = self._pending_deadline()
            if not deadline or deadline > time.time() + 0.5:
                return        # confirmed, replaced, or a later deadline (its own timer)
            try:
                out = await self._in_engine(lambda: self._engine().revert_unconfirmed(deadline),
                                            "revert unconfirmed")
            except LockBusy as e:
                self.events.add("error", f"confirm deadline: {e}; trying again in 5 s")
                if not self.stopping:
                    self._confirm_later(5.0)
                return
            except Exception as e:  # noqa: BLE001 - reported; the journal keeps the deadline
                self.events.add("error", f"revert of the unconfirmed profile failed: {e}")
                return
            self._refresh_active()
            self.sampler.refresh_tdp()
            self.verified = None
            self.events.add("revert", out.summary)
            if not out.ok:
                self.events.add("error", "revert incomplete: " + "; ".join(out.warnings))
        if not self.stopping:
            self.track(revert())

    async def api_rollback(self, conn, params):
        result = await self.rollback(f"requested by uid {conn.peer.uid}",
                                     dry_run=bool(params.get("dry_run", False)))
        if not params.get("dry_run") and self.rules is not None:
            self.rules.note_manual(None)
        return result

    async def api_confirm(self, conn, params):
        out = await self._in_engine(lambda: self._engine().confirm(), "confirm")
        self.events.add("confirm", out.summary)
        return out.to_dict()

    async def api_verify(self, conn, params):
        if conn is None:
            # The daemon's own drift rule: on the engine thread, between changes, never a
            # reading taken halfway through one (it would "see" drift and re-assert).
            out = await self._in_engine(lambda: self._engine().verify(), "verify (drift rule)")
            self.verified = out.ok if out.profile else None
            return out.to_dict()
        # One verify a second per connection: a client asking in a tight loop waits here
        # (cheaply) instead of keeping the loop, and the engine thread's share of it, busy.
        wait = getattr(conn, "next_verify", 0.0) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        conn.next_verify = time.monotonic() + VERIFY_REUSE_S
        return await self.verify()

    async def verify(self) -> dict:
        """Read the machine against the journal (read-only) on the reader thread, never
        behind the engine's changes. Verifies asked while one runs share its reading, and a
        reading under VERIFY_REUSE_S old with no change since is served again: a crowd of
        readers costs one reading a second at most."""
        from halotune.tuning.journal import JournalError

        gen = self._generation
        last = self._verify_last
        if last is not None and last[0] == gen and time.monotonic() - last[1] < VERIFY_REUSE_S:
            return last[2]
        inflight = self._verify_inflight
        if inflight is not None and inflight[0] == gen and not inflight[1].done():
            try:
                return (await asyncio.shield(inflight[1]))[0].to_dict()
            except JournalError as e:
                raise ApiError("EIO", str(e)) from None
        fut = asyncio.get_running_loop().create_task(self._reading())
        self._verify_inflight = (gen, fut)
        try:
            out = await asyncio.shield(fut)
        except JournalError as e:
            self._degrade(str(e))
            raise ApiError("EIO", str(e)) from None
        finally:
            if self._verify_inflight is not None and self._verify_inflight[1] is fut:
                self._verify_inflight = None
        out, settled = out
        doc = out.to_dict()
        if settled and self._generation == gen:   # no change ran meanwhile: the reading holds
            self.verified = out.ok if out.profile else None
            self._verify_last = (gen, time.monotonic(), doc)
        return doc

    async def _reading(self):
        """(verify outcome, settled): settled when no change ran during the reading; while
        changes run, a few tries, then the last reading (a reader sees what the CLI would)."""
        loop = asyncio.get_running_loop()
        for attempt in range(4):
            mark = self._engine_thread.quiet_since()
            out = await loop.run_in_executor(self._reader_pool, lambda: self._engine().verify())
            if self._engine_thread.still_quiet(mark):
                return out, True
            await asyncio.sleep(0.1 * (attempt + 1))
        return out, False

    async def api_hold(self, conn, params):
        owner, reason = params.get("owner"), params.get("reason", "")
        ttl = params.get("ttl_s", 3600)
        if not isinstance(owner, str) or not owner or not isinstance(reason, str):
            raise ApiError("EINVAL", "hold needs params.owner (and optional reason, ttl_s)")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 86400:
            raise ApiError("EINVAL", "ttl_s must be between 0 and 86400 seconds")
        hold_id = uuid.uuid4().hex[:12]
        self.holds[hold_id] = {"owner": owner, "reason": reason, "expires": time.time() + ttl,
                               "uid": conn.peer.uid, "pid": conn.peer.pid, "conn": conn}
        conn.holds.add(hold_id)
        self._exclude_holders()
        self.events.add("hold", f"hold {hold_id} by {owner}: {reason}")
        return {"hold_id": hold_id}

    async def api_release(self, conn, params):
        hold_id = params.get("hold_id")
        hold = self.holds.get(hold_id) if isinstance(hold_id, str) else None
        if hold is None:
            raise ApiError("ENOENT", f"no hold {hold_id!r}")
        if hold["uid"] != conn.peer.uid and conn.peer.uid != 0:
            raise ApiError("EPERM", "only the holder or root may release a hold")
        del self.holds[hold_id]
        conn.holds.discard(hold_id)
        self._exclude_holders()
        self.events.add("hold", f"hold {hold_id} released")
        return {"released": hold_id}

    async def api_events(self, conn, params):
        since, limit = params.get("since", 0), params.get("limit", 100)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (since, limit)):
            raise ApiError("EINVAL", "since and limit must be integers")
        return self.events.since(since, max(1, min(limit, 1000)))

    async def api_record(self, conn, params):
        from halotune.daemon.record import handle_record
        if self.stopping:
            raise ApiError("EBUSY", "record: the daemon is stopping")
        result = await self.track(asyncio.get_running_loop().run_in_executor(
            None, handle_record, self, params, conn.peer))
        self.events.add("record", f"run {result['id']} ({result['kind']}) recorded for uid "
                                  f"{conn.peer.uid}")
        return result

    async def api_validate(self, conn, params):
        from halotune.daemon.validate import handle_validate
        if self.stopping:
            raise ApiError("EBUSY", "validate: the daemon is stopping; nothing was changed")
        return await self.track(handle_validate(self, conn, params))
