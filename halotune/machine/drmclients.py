"""GPU clients of the host: processes with a DRM device open, as nvtop and amdgpu_top show them.

Source: the kernel's DRM client usage stats (Documentation/gpu/drm-usage-stats.rst), one text
file per open DRM file descriptor, /proc/<pid>/fdinfo/<fd>:

    drm-driver:	amdgpu
    drm-pdev:	0000:c3:00.0
    drm-client-id:	42
    drm-memory-vram:	123 KiB
    drm-memory-gtt:	4096 KiB
    drm-engine-gfx:	123456789 ns
    drm-engine-compute:	0 ns

Several descriptors can share one DRM client (dup(), fork): a client is counted once per
process, by drm-client-id. Memory is summed per process and device; engine busy % is the
growth of drm-engine-<name> (ns) between two reads over the wall time between them (divided by
drm-engine-capacity-<name> when the driver reports several engines of a kind). ROCm processes
are listed by KFD under /sys/class/kfd/kfd/proc/<pid>; one without a readable DRM descriptor
still gets a row (kfd true, VRAM from KFD's vram_<gpu_id> files).

Processes are read where processes.process_root says (DrmClientReader.of): `proc_root` and
`sys_root` default to "/" and exist so tests can point the reader at literal fixture trees.
A simulated tree read with the host's /proc also has its simulated GPU clients (the demo's
llama-server, sim/gpuclients.py) in `<root>/.halotune-sim/clients/proc`: this reader, and only
it, lists them next to the host's processes (their pid, PID_MAX_LIMIT and up, cannot collide
with a host pid). The process rules, preflight and doctor never see them.

Cost: listing /proc is the only per-read work for processes without DRM descriptors. Which of a
process's descriptors are DRM device nodes (readlink -> /dev/dri/...) is remembered and checked
again every RESCAN_S, so a steady read is one listdir of /proc plus one fdinfo read per DRM
client. EACCES (another user's process) and ESRCH/ENOENT (it exited) are skipped quietly.
"""

from __future__ import annotations

import os
import time

from halotune.machine.parse import is_uint

RESCAN_S = 5.0
_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_fdinfo(text: str) -> dict | None:
    """The DRM keys of one fdinfo file: {"driver", "pdev", "client_id", "memory": {region:
    bytes}, "engines": {name: ns}, "capacity": {name: n}}; None when it is not a DRM client."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("drm-"):
            fields[key] = value.strip()
    if "drm-driver" not in fields:
        return None
    out = {"driver": fields["drm-driver"], "pdev": fields.get("drm-pdev"),
           "client_id": fields.get("drm-client-id"), "memory": {}, "engines": {}, "capacity": {}}
    resident: dict[str, int] = {}
    for key, value in fields.items():
        if key.startswith("drm-memory-"):
            n = _bytes(value)
            if n is not None:
                out["memory"][key[len("drm-memory-"):]] = n
        elif key.startswith("drm-resident-"):
            n = _bytes(value)
            if n is not None:
                resident[key[len("drm-resident-"):]] = n
        elif key.startswith("drm-engine-capacity-"):
            n = _int(value)
            if n:
                out["capacity"][key[len("drm-engine-capacity-"):]] = n
        elif key.startswith("drm-engine-"):
            parts = value.split()
            n = _int(parts[0]) if parts else None
            if n is not None and (len(parts) == 1 or parts[1] == "ns"):
                out["engines"][key[len("drm-engine-"):]] = n
    for region, n in resident.items():          # newer keys, when the legacy ones are absent
        out["memory"].setdefault(region, n)
    return out


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _bytes(value: str) -> int | None:
    parts = value.split()
    if not parts or len(parts) > 2:
        return None
    n = _int(parts[0])
    unit = _UNITS.get(parts[1] if len(parts) == 2 else "")
    return None if n is None or unit is None else n * unit


def _read(path: str, size: int = 8192) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


class DrmClientReader:
    """Reads the GPU clients of the host; keep one per sampler (it remembers engine counters
    for busy % and which descriptors are DRM nodes)."""

    @classmethod
    def of(cls, fs) -> "DrmClientReader | None":
        """The GPU clients of the machine at `fs` (a RootFS): processes where
        processes.process_root says, plus a simulated tree's own simulated clients when that
        is the host's /proc; None when the machine has no processes to read."""
        from halotune.machine.processes import process_root
        from halotune.machine.rootfs import SIM_MARKER

        root = process_root(fs)
        if root is None:
            return None
        simulated = None
        if fs.is_simulated and not fs.is_host and os.path.abspath(root) == "/":
            simulated = os.path.join(fs.root, SIM_MARKER, "clients")
        return cls(root, root, simulated=simulated)

    def __init__(self, proc_root: str = "/", sys_root: str = "/", rescan_s: float = RESCAN_S,
                 clock=time.monotonic_ns, simulated: str | None = None):
        self.proc = os.path.join(proc_root, "proc")
        # Where each pid was listed: the process table, or the simulated clients' proc/.
        self._procs = [self.proc] + ([os.path.join(simulated, "proc")] if simulated else [])
        self._where: dict[int, str] = {}
        self.kfd_proc = os.path.join(sys_root, "sys/class/kfd/kfd/proc")
        self.kfd_nodes = os.path.join(sys_root, "sys/class/kfd/kfd/topology/nodes")
        self.rescan_ns = int(rescan_s * 1e9)
        self.clock = clock
        self._fds: dict[int, tuple[int, list[str]]] = {}      # pid -> (scanned at, DRM fds)
        self._prev: dict[tuple, int] = {}                     # (pid, pdev, client, engine) -> ns
        self._prev_t: int | None = None
        self._gpu_slots: dict[str, str] | None = None         # KFD gpu_id -> PCI slot

    # --- descriptors ---------------------------------------------------------------------
    def _drm_fds(self, pid: int, now: int) -> list[str]:
        cached = self._fds.get(pid)
        if cached is not None and now - cached[0] < self.rescan_ns:
            return cached[1]
        found = []
        try:
            dfd = os.open(f"{self._dir(pid)}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:             # EACCES: another user's process; ENOENT: it exited
            dfd = None
        if dfd is not None:
            try:
                for name in os.listdir(dfd):
                    try:
                        if os.readlink(name, dir_fd=dfd).startswith("/dev/dri/"):
                            found.append(name)
                    except OSError:
                        continue
            except OSError:
                pass
            finally:
                os.close(dfd)
        self._fds[pid] = (now, found)
        return found

    def _clients(self, pid: int, fds: list[str]) -> dict[tuple, dict] | None:
        """{(pdev, client key): parsed fdinfo}; None when a remembered fd is gone (rescan)."""
        clients: dict[tuple, dict] = {}
        for fd in fds:
            text = _read(f"{self._dir(pid)}/{pid}/fdinfo/{fd}")
            info = parse_fdinfo(text) if text is not None else None
            if info is None:
                return None
            key = (info["pdev"], info["client_id"] if info["client_id"] is not None else f"fd{fd}")
            clients.setdefault(key, info)
        return clients

    # --- KFD -----------------------------------------------------------------------------
    def _kfd_slots(self) -> dict[str, str]:
        if self._gpu_slots is None:
            slots = {}
            try:
                nodes = os.listdir(self.kfd_nodes)
            except OSError:
                nodes = []
            for node in nodes:
                gpu_id = (_read(f"{self.kfd_nodes}/{node}/gpu_id") or "").strip()
                props = _read(f"{self.kfd_nodes}/{node}/properties") or ""
                kv = dict(line.split(None, 1) for line in props.splitlines() if " " in line)
                loc, dom = _int(kv.get("location_id", "").strip()), _int(kv.get("domain", "0").strip())
                if gpu_id and gpu_id != "0" and loc is not None and dom is not None:
                    slots[gpu_id] = f"{dom:04x}:{loc >> 8:02x}:{(loc >> 3) & 0x1f:02x}.{loc & 7}"
            self._gpu_slots = slots
        return self._gpu_slots

    def _kfd(self) -> dict[int, dict[str | None, int | None]]:
        """pid -> {PCI slot (None if unknown): VRAM bytes (None if unreadable)} of KFD processes."""
        try:
            pids = [int(p) for p in os.listdir(self.kfd_proc) if is_uint(p)]
        except OSError:
            return {}
        out: dict[int, dict[str | None, int | None]] = {}
        for pid in pids:
            vram: dict[str | None, int | None] = {}
            try:
                names = os.listdir(f"{self.kfd_proc}/{pid}")
            except OSError:
                names = []
            for name in names:
                if name.startswith("vram_"):
                    n = _int((_read(f"{self.kfd_proc}/{pid}/{name}") or "").strip())
                    slot = self._kfd_slots().get(name[len("vram_"):])
                    if n is not None:
                        vram[slot] = (vram.get(slot) or 0) + n
                    else:
                        vram.setdefault(slot, None)
            out[pid] = vram or {None: None}
        return out

    # --- one read ------------------------------------------------------------------------
    def read(self) -> list[dict]:
        """One row per (process, device): pid, name, pci_slot, driver, clients, vram_bytes,
        gtt_bytes, engine_gfx_percent, engine_compute_percent, kfd. Heaviest first."""
        now = self.clock()
        self._where = {}
        for proc in self._procs:
            try:
                for e in os.scandir(proc):
                    if is_uint(e.name):
                        self._where.setdefault(int(e.name), proc)
            except OSError:
                continue
        pids = list(self._where)
        live = set(pids)
        for gone in self._fds.keys() - live:
            del self._fds[gone]
        dt = None if self._prev_t is None else now - self._prev_t
        kfd = self._kfd()
        prev, self._prev, self._prev_t = self._prev, {}, now
        rows: list[dict] = []
        for pid in pids:
            fds = self._drm_fds(pid, now)
            if not fds:
                continue
            clients = self._clients(pid, fds)
            if clients is None:                 # a descriptor closed: look again now
                self._fds.pop(pid, None)
                clients = self._clients(pid, self._drm_fds(pid, now)) or {}
            if clients:
                rows.extend(self._rows(pid, clients, prev, dt, pid in kfd))
        with_rows = {r["pid"] for r in rows}
        for pid, vram in kfd.items():
            if pid in with_rows or pid not in live and os.path.isdir(self.proc):
                continue
            for slot, nbytes in vram.items():
                rows.append({"pid": pid, "name": self._name(pid), "pci_slot": slot,
                             "driver": "amdgpu" if slot else None, "clients": 0,
                             "vram_bytes": nbytes, "gtt_bytes": None,
                             "engine_gfx_percent": None, "engine_compute_percent": None,
                             "kfd": True})
        rows.sort(key=lambda r: (-((r["vram_bytes"] or 0) + (r["gtt_bytes"] or 0)), r["pid"],
                                 r["pci_slot"] or ""))
        return rows

    def _rows(self, pid: int, clients: dict[tuple, dict], prev: dict, dt: int | None,
              is_kfd: bool) -> list[dict]:
        by_dev: dict[str | None, dict] = {}
        for (pdev, client), info in clients.items():
            row = by_dev.get(pdev)
            if row is None:
                row = by_dev[pdev] = {
                    "pid": pid, "name": None, "pci_slot": pdev, "driver": info["driver"],
                    "clients": 0, "vram_bytes": None, "gtt_bytes": None,
                    "engine_gfx_percent": None, "engine_compute_percent": None, "kfd": is_kfd,
                    "_busy": {}}
            row["clients"] += 1
            for region, field in (("vram", "vram_bytes"), ("gtt", "gtt_bytes")):
                if region in info["memory"]:
                    row[field] = (row[field] or 0) + info["memory"][region]
            for engine, ns in info["engines"].items():
                key = (pid, pdev, client, engine)
                self._prev[key] = ns
                before = prev.get(key)
                if dt and before is not None and ns >= before:
                    busy = row["_busy"].setdefault(engine, [0, 1])
                    busy[0] += ns - before
                    busy[1] = info["capacity"].get(engine, 1)
        name = self._name(pid)
        for row in by_dev.values():
            row["name"] = name
            busy = row.pop("_busy")
            for engine, field in (("gfx", "engine_gfx_percent"), ("compute", "engine_compute_percent")):
                if engine in busy and dt:
                    delta, capacity = busy[engine]
                    row[field] = round(min(100.0, 100.0 * delta / dt / capacity), 1)
        return list(by_dev.values())

    def _dir(self, pid: int) -> str:
        return self._where.get(pid, self.proc)

    def _name(self, pid: int) -> str | None:
        comm = _read(f"{self._dir(pid)}/{pid}/comm", 64)
        return comm.strip() if comm else None
