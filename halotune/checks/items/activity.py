"""What else runs: GPU activity and clients, LLM servers, CPU load, disk and network I/O, swap."""

from __future__ import annotations

import os

from halotune.checks.report import gib, item, rate


def gpu_busy(ctx) -> dict:
    title = "GPU idle"
    limit = ctx.th["gpu"]["busy_fail_percent"]
    busy = ctx.obs.busy
    if not busy:
        return item("gpu_busy", title, "skip", "GPU activity not readable", f"<= {limit:g} %")
    mean = sum(busy) / len(busy)
    value = (f"{mean:.0f} % busy on average, {max(busy):.0f} % at most "
             f"({len(busy)} readings over {ctx.obs.seconds:g} s)")
    if mean > limit:
        return item("gpu_busy", title, "fail", value, f"<= {limit:g} %",
                    "stop what uses the GPU (see the GPU clients check), then run preflight again")
    return item("gpu_busy", title, "pass", value, f"<= {limit:g} %")


def _ours(pid: int, obs) -> bool:
    """halotune itself: this process and its descendants, and any other halotune (the
    daemon, a TUI)."""
    if pid in obs.ours or pid == os.getpid():
        return True
    info = obs.all_processes.get(pid)
    return info is not None and info.matches("halotune*")


NO_PROCESSES = ("not checked: a recorded tree without proc/<pid> has no processes "
                "(machine.processes.process_root)")


def gpu_clients(ctx) -> dict:
    title = "No other GPU clients"
    if ctx.obs.proc_root is None:
        return item("gpu_clients", title, "skip", NO_PROCESSES, "none")
    pci = ctx.obs.last.primary_gpu.pci_slot if ctx.obs.last.primary_gpu else None
    rows = [r for r in ctx.obs.clients
            if not _ours(r["pid"], ctx.obs)
            and (r.get("driver") in ("amdgpu", None))
            and (pci is None or r.get("pci_slot") in (pci, None))]
    if not rows:
        # DRM descriptors of other users' processes are readable by root only (KFD's list of
        # ROCm processes is not): say so rather than claim there are none.
        partial = ctx.obs.proc_root == "/" and os.geteuid() != 0
        return item("gpu_clients", title, "pass",
                    "none visible (other users' processes are seen only by root)" if partial
                    else "none", "none")
    names = []
    for r in rows:
        mem = (r.get("vram_bytes") or 0) + (r.get("gtt_bytes") or 0)
        busy = [f"{r[k]:g} % {e}" for k, e in (("engine_gfx_percent", "gfx"),
                                                 ("engine_compute_percent", "compute"))
                if r.get(k)]
        extra = ", ".join([gib(mem)] + busy + (["ROCm"] if r.get("kfd") else []))
        names.append(f"{r.get('name') or '?'} (pid {r['pid']}; {extra})")
    return item("gpu_clients", title, "fail", "; ".join(names), "none",
                "close these programs (idle GPU clients still hold clocks and memory: two idle "
                "ROCm clients pin the GPU at 100 % busy)")


def llm_servers(ctx) -> dict:
    title = "No LLM servers running"
    if ctx.obs.proc_root is None:
        return item("llm_servers", title, "skip", NO_PROCESSES, "none")
    allowed = set(ctx.allow)
    patterns = [p for p in ctx.th["processes"]["servers"] if p not in allowed]
    found = sorted((p for p in ctx.obs.processes.values()
                    if any(p.matches(pat) for pat in patterns)
                    and not any(p.matches(a) for a in allowed)), key=lambda p: p.pid)
    note = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
    if not found:
        return item("llm_servers", title, "pass", "none" + note, "none")
    return item("llm_servers", title, "fail", ", ".join(p.describe() for p in found) + note,
                "none", "stop them, or pass --allow NAME for one that must keep running")


def cpu_load(ctx) -> dict:
    title = "CPU load low"
    th = ctx.th["cpu"]
    pct, load = ctx.obs.cpu_percent, ctx.obs.loadavg_1m
    cpus = ctx.obs.last.cpu.logical_cpus or os.cpu_count() or 1
    parts = []
    if pct is not None:
        parts.append(f"{pct:.0f} % busy ({ctx.obs.cpu_source})")
    if load is not None:
        parts.append(f"load {load:.2f} on {cpus} CPUs")
    if not parts:
        return item("cpu_load", title, "skip", "CPU load not readable", None)
    value = ", ".join(parts)
    expected = f"<= {th['busy_warn_percent']:g} % busy, load <= {th['load_per_cpu_warn']:g} per CPU"
    fix = "stop background jobs (compiles, indexers, updates) before measuring"
    if pct is not None and pct > th["busy_fail_percent"]:
        return item("cpu_load", title, "fail", value, expected, fix)
    if (pct is not None and pct > th["busy_warn_percent"]) or \
            (load is not None and load / cpus > th["load_per_cpu_warn"]):
        return item("cpu_load", title, "warn", value, expected, fix)
    return item("cpu_load", title, "pass", value, expected)


def io(ctx) -> dict:
    title = "Disk and network quiet"
    th, r = ctx.th["io"], ctx.obs.io
    disk, net = r.get("disk_bytes_per_s"), r.get("net_rx_bytes_per_s")
    if disk is None and net is None:
        return item("io", title, "skip", "proc/diskstats and proc/net/dev not readable", None)
    value = f"disk {rate(disk)}, network receive {rate(net)}" + (
        f" on {r['net_iface']}" if r.get("net_iface") else "")
    expected = (f"disk <= {rate(th['disk_warn_bytes_per_s'])}, "
                f"receive <= {rate(th['net_rx_warn_bytes_per_s'])}")
    problems = []
    if net is not None and net > th["net_rx_warn_bytes_per_s"]:
        problems.append("a download seems to be running")
    if disk is not None and disk > th["disk_warn_bytes_per_s"]:
        problems.append("the disks are busy")
    if problems:
        return item("io", title, "warn", f"{value}: {' and '.join(problems)}", expected,
                    "wait for downloads and copies to finish (a background download cost ~5 % "
                    "of prompt processing in one report)")
    return item("io", title, "pass", value, expected)


def swap(ctx) -> dict:
    title = "No swap in use"
    m = ctx.obs.last.memory
    limit = ctx.th["swap"]["used_warn_bytes"]
    if m.swap_used_bytes is None:
        return item("swap", title, "skip", "swap not readable", None)
    if not m.swap_total_bytes:
        return item("swap", title, "pass", "no swap configured", "none in use")
    value = f"{gib(m.swap_used_bytes)} of {gib(m.swap_total_bytes)} in use"
    if m.swap_used_bytes > limit:
        return item("swap", title, "warn", value, "none in use",
                    "free it before measuring: sudo swapoff -a && sudo swapon -a")
    return item("swap", title, "pass", value, "none in use")
