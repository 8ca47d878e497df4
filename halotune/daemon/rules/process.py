"""Process rules: while a matching process runs, its profile; hold_s after it exits, back.

The trigger is the process table (names and command lines), never gpu_busy_percent: a GPU at
100 % busy may be two idle ROCm clients, and a model server between requests is at 0 %.

Any local user can start a process with a matching name or command line. A rule with `users`
matches only processes whose real uid is one of them; one with `exe` only processes whose
/proc/PID/exe is one of those paths (globs allowed), so a copy of /bin/sleep named llama-server
does not. Both are read only for processes that already match by name, and one that cannot be
read (another user's exe when the daemon is not root) does not match.
"""

from __future__ import annotations

import fnmatch

from halotune.daemon.rules.arbitration import Candidate

INTERVAL_S = 1.0


class ProcessRules:
    def __init__(self, rules, configs):
        self.rules = rules
        self.configs = list(configs)
        self.running: dict[int, list] = {}       # rule index -> matching processes
        self.ended_at: dict[int, float] = {}     # rule index -> monotonic time of the exit
        self._due = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.configs)

    def update(self, now: float) -> None:
        if not self.configs or now < self._due:
            return
        self._due = now + INTERVAL_S
        table = self.rules.sources.processes.snapshot()
        for i, cfg in enumerate(self.configs):
            found = [p for p in table.values()
                     if any(p.matches(m) for m in cfg.match) and self._allowed(cfg, p.pid)]
            found.sort(key=lambda p: p.pid)
            before = self.running.get(i, [])
            if found and not before:
                self.ended_at.pop(i, None)
                held = " (a hold is active: no switch until it ends)" if self.rules.held() else ""
                self.rules.fire("process", f"process rule {cfg.name!r}: {found[0].describe()} "
                                f"started (wants {cfg.profile}){held}", name=cfg.name,
                                pid=found[0].pid, process=found[0].name)
            elif before and not found:
                self.ended_at[i] = now
                self.rules.fire("process", f"process rule {cfg.name!r}: {before[0].describe()} "
                                f"exited; its profile stays {cfg.hold_s:g} s more",
                                name=cfg.name, pid=before[0].pid, process=before[0].name)
            self.running[i] = found

    def _allowed(self, cfg, pid: int) -> bool:
        """The rule's optional owner and executable conditions hold for `pid`."""
        source = self.rules.sources.processes
        if cfg.users is not None and source.owner(pid) not in cfg.users:
            return False
        if cfg.exe is not None:
            path = source.exe(pid)
            if path is None or not any(fnmatch.fnmatchcase(path, pat) for pat in cfg.exe):
                return False
        return True

    def candidate(self, now: float) -> Candidate | None:
        """The first configured rule that is running or still in its hold time."""
        for i, cfg in enumerate(self.configs):
            procs = self.running.get(i)
            if procs:
                return Candidate("process", cfg.profile,
                                 f"process rule {cfg.name!r}: {procs[0].describe()} runs")
            ended = self.ended_at.get(i)
            if ended is not None:
                if now - ended < cfg.hold_s:
                    return Candidate("process", cfg.profile,
                                     f"process rule {cfg.name!r}: hold time after exit")
                del self.ended_at[i]
        return None
