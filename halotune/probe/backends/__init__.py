"""Probe backends behind one interface (base.py), and the choice between them.

auto: the simulated backend on a simulated machine (real llama.cpp speed says nothing about a
simulated TDP), else the user's llama-bench when one is found, else in-process
llama-cpp-python, else unavailable with every reason.
"""

from __future__ import annotations

import os

from halotune.probe.backends.base import (Backend, BackendError, BackendInfo, BackendUnavailable,
                                          Rep, TestCase)

CHOICES = ("auto", "llama-bench", "inprocess", "simulated")


def physical_cores(fs=None) -> int:
    """Physical cores this process may run on: distinct (package, core) pairs of the CPUs in
    its affinity mask, from sys/devices/system/cpu/cpuN/topology (Documentation/ABI/stable/
    sysfs-devices-system-cpu); os.cpu_count() when topology is missing."""
    from halotune.machine.rootfs import RootFS

    fs = fs or RootFS("/")
    try:
        allowed = os.sched_getaffinity(0) if fs.is_host else None
    except (AttributeError, OSError):
        allowed = None
    cores = set()
    for rel in fs.glob("sys/devices/system/cpu/cpu[0-9]*"):
        try:
            n = int(os.path.basename(rel)[3:])
        except ValueError:
            continue
        if allowed is not None and n not in allowed:
            continue
        core = fs.read_text(f"{rel}/topology/core_id")
        pkg = fs.read_text(f"{rel}/topology/physical_package_id")
        if core is None:
            continue
        cores.add((pkg, core))
    if cores:
        return len(cores)
    return len(allowed) if allowed else (os.cpu_count() or 1)


def cpu_threads(cores: int) -> tuple[int, str]:
    """Threads for a CPU backend: one per physical core, less one left to the telemetry
    sampler so it never steals a benchmark core."""
    if cores <= 1:
        return 1, "1 physical core"
    return cores - 1, f"{cores} physical cores, one left to the telemetry sampler"


def make_backend(choice: str, fs, programs, threads: int | None = None,
                 flash_attn: bool | None = None) -> Backend:
    """The backend for `choice`, or BackendUnavailable naming every reason."""
    if choice not in CHOICES:
        raise ValueError(f"unknown backend {choice!r} (choose from {', '.join(CHOICES)})")
    if choice == "simulated" or (choice == "auto" and fs.is_simulated):
        from halotune.probe.backends.simulated import SimulatedBackend

        return SimulatedBackend(fs, programs)
    cores = physical_cores()
    if threads:
        given = (threads, "--threads")
    else:
        given = None
    reasons = []
    if choice in ("auto", "llama-bench"):
        from halotune.probe.backends.llamabench import LlamaBenchBackend

        try:
            t, why, on_cpu = _llamabench_threads(programs, cores)
            if given:
                t, why = given
            be = LlamaBenchBackend(programs, threads=t, threads_reason=why,
                                   flash_attn=flash_attn)
            be.cpu_hint = on_cpu
            return be
        except BackendUnavailable as e:
            if choice == "llama-bench":
                raise
            reasons.append(f"llama-bench: {e}")
    if choice in ("auto", "inprocess"):
        from halotune.probe.backends.inprocess import InProcessBackend

        try:
            be = InProcessBackend()
            if given:
                be.threads, be.threads_reason = given
            elif be.gpu_offload:
                be.threads, be.threads_reason = cores, f"{cores} physical cores (GPU build)"
            else:
                be.threads, be.threads_reason = cpu_threads(cores)
            return be
        except BackendUnavailable as e:
            if choice == "inprocess":
                raise
            reasons.append(f"in-process: {e}")
    raise BackendUnavailable("no probe backend is available: " + "; ".join(reasons))


def _llamabench_threads(programs, cores: int) -> tuple[int, str, bool | None]:
    """-t for llama-bench: one fewer than the cores when it runs on the CPU (no GPU device
    in --list-devices), all cores otherwise; and whether it runs on the CPU (None: unknown)."""
    from halotune.machine.llamabench import LlamaBench
    from halotune.machine.programs import ProgramError

    try:
        devices = LlamaBench(programs).devices()
    except ProgramError:
        devices = None
    if devices == []:
        return (*cpu_threads(cores), True)
    if devices:
        return cores, f"{cores} physical cores (GPU build)", False
    return cores, f"{cores} physical cores (device list unknown)", None


__all__ = ["Backend", "BackendError", "BackendInfo", "BackendUnavailable", "CHOICES", "Rep",
           "TestCase", "cpu_threads", "make_backend", "physical_cores"]
