"""Watch the machine for a short window: what preflight's checks look at.

A check needs either the latest state (temperatures, limits, profile) or a change over time
(GPU busy, throttle counters, disk and network rates, CPU time): one sampler reads the machine
at `hz` for `seconds`, activity counters and /proc/stat are read at both ends.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from halotune.machine import parse
from halotune.machine.activity import ActivityReader, rates
from halotune.machine.processes import ProcInfo, ProcessSource, proc_dir, process_root
from halotune.machine.rootfs import RootFS
from halotune.model.snapshot import Snapshot


@dataclass
class Observation:
    first: Snapshot
    last: Snapshot
    seconds: float
    busy: list[float] = field(default_factory=list)          # GPU busy % readings
    cpu_percent: float | None = None                         # over the whole window
    cpu_source: str | None = None
    io: dict = field(default_factory=dict)                   # activity.rates()
    loadavg_1m: float | None = None
    processes: dict[int, ProcInfo] = field(default_factory=dict)   # all but `ours`
    ours: set[int] = field(default_factory=set)     # this process and its descendants
    all_processes: dict[int, ProcInfo] = field(default_factory=dict)
    clients: list[dict] = field(default_factory=list)        # GPU clients (last reading)
    proc_root: str | None = "/"                  # where processes were read (None: nowhere)


def default_proc_root(fs: RootFS) -> str | None:
    """Where the processes are read: machine.processes.process_root (the one rule for every
    command: the host's for "/" and for a simulated tree, a fake tree's own proc/<pid>)."""
    return process_root(fs)


def observe(fs: RootFS, seconds: float, hz: float, programs=None,
            proc_root: str | None = None, sleep=time.sleep) -> Observation:
    from halotune.telemetry.sampler import Sampler

    proc_root = default_proc_root(fs) if proc_root is None else proc_root
    sampler = Sampler(fs, programs, proc_root=proc_root)
    activity = ActivityReader(fs)
    try:
        t0 = time.monotonic()
        a0, times0 = activity.read(), sampler.cpu.read_times()
        first = sampler.sample()
        busy = [_busy(first)]
        last = first
        step = 1.0 / hz
        while True:
            left = t0 + seconds - time.monotonic()
            if left <= 0:
                break
            sleep(min(step, left))
            last = sampler.sample()
            busy.append(_busy(last))
        if last is first:                   # a zero window: still two readings of counters
            last = sampler.sample()
            busy.append(_busy(last))
        a1, times1 = activity.read(), sampler.cpu.read_times()
        obs = Observation(first=first, last=last, seconds=round(time.monotonic() - t0, 3),
                          busy=[b for b in busy if b is not None], proc_root=proc_root)
    finally:
        sampler.close()
    obs.io = rates(a0, a1)
    obs.loadavg_1m = a1.loadavg_1m
    total = parse.utilization_percent(times0.get("cpu"), times1.get("cpu"))
    if total is not None:
        obs.cpu_percent, obs.cpu_source = round(total, 1), "proc/stat over the window"
    elif last.cpu.utilization_percent is not None:
        obs.cpu_percent, obs.cpu_source = last.cpu.utilization_percent, last.cpu.utilization_source
    # exclude_pid -1 (no such process): the whole table, so that a GPU client that is a child
    # of ours can be told apart from a process we may not read.
    src = ProcessSource(exclude_pid=-1, proc=proc_dir(proc_root))
    obs.all_processes = src.snapshot()
    obs.ours = lineage(obs.all_processes, os.getpid())
    obs.processes = {pid: p for pid, p in obs.all_processes.items() if pid not in obs.ours}
    obs.clients = list(last.processes)
    return obs


def lineage(table: dict[int, ProcInfo], ancestor: int) -> set[int]:
    """`ancestor` and every process descending from it in `table`."""
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = set(), [ancestor]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += children.get(pid, [])
    return out


def _busy(snap: Snapshot) -> float | None:
    g = snap.primary_gpu
    return None if g is None else g.busy_percent
