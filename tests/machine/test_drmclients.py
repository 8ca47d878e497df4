"""GPU clients from DRM fdinfo and KFD (halotune.machine.drmclients), on literal fixture trees:
parsing, one count per DRM client, engine busy % between two reads, KFD-only processes, the
descriptor cache, and the snapshot's `processes` list."""

from __future__ import annotations

import os

import pytest

from halotune.machine.drmclients import DrmClientReader, parse_fdinfo
from halotune.machine.rootfs import RootFS
from halotune.telemetry.sampler import Sampler

PDEV = "0000:c3:00.0"


def fdinfo(client: int, vram_kib: int = 0, gtt_kib: int = 0, gfx_ns: int = 0,
           compute_ns: int = 0, pdev: str = PDEV) -> str:
    return (f"pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t1055\n"
            f"drm-driver:\tamdgpu\ndrm-client-id:\t{client}\ndrm-pdev:\t{pdev}\n"
            f"pasid:\t32770\n"
            f"drm-memory-vram:\t{vram_kib} KiB\ndrm-memory-gtt: \t{gtt_kib} KiB\n"
            f"drm-memory-cpu: \t0 KiB\namd-memory-visible-vram:\t{vram_kib} KiB\n"
            f"drm-engine-gfx:\t{gfx_ns} ns\ndrm-engine-compute:\t{compute_ns} ns\n"
            f"drm-engine-dma:\t0 ns\n")


class Tree:
    """A literal proc/ (and sys/class/kfd) tree under `root`."""

    def __init__(self, root):
        self.root = str(root)

    def process(self, pid: int, comm: str, fds: dict[int, str]) -> None:
        base = os.path.join(self.root, "proc", str(pid))
        os.makedirs(os.path.join(base, "fd"), exist_ok=True)
        os.makedirs(os.path.join(base, "fdinfo"), exist_ok=True)
        with open(os.path.join(base, "comm"), "w") as f:
            f.write(comm + "\n")
        for fd, target in fds.items():
            os.symlink(target, os.path.join(base, "fd", str(fd)))

    def fdinfo(self, pid: int, fd: int, text: str) -> None:
        with open(os.path.join(self.root, "proc", str(pid), "fdinfo", str(fd)), "w") as f:
            f.write(text)

    def kfd(self, pid: int, vram: dict[str, int]) -> None:
        base = os.path.join(self.root, "sys/class/kfd/kfd/proc", str(pid))
        os.makedirs(base, exist_ok=True)
        for gpu_id, n in vram.items():
            with open(os.path.join(base, f"vram_{gpu_id}"), "w") as f:
                f.write(f"{n}\n")

    def kfd_node(self, node: int, gpu_id: str, location_id: int, domain: int = 0) -> None:
        base = os.path.join(self.root, "sys/class/kfd/kfd/topology/nodes", str(node))
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "gpu_id"), "w") as f:
            f.write(gpu_id + "\n")
        with open(os.path.join(base, "properties"), "w") as f:
            f.write(f"simd_count 80\nlocation_id {location_id}\ndomain {domain}\n")


class Clock:
    def __init__(self):
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path / "host")


def reader(tree: Tree, clock=None, **kw) -> DrmClientReader:
    return DrmClientReader(tree.root, tree.root, clock=clock or Clock(), **kw)


# --- parsing ---------------------------------------------------------------------------------

def test_parse_amdgpu_fdinfo():
    info = parse_fdinfo(fdinfo(7, vram_kib=2048, gtt_kib=4, gfx_ns=123, compute_ns=5))
    assert info["driver"] == "amdgpu" and info["pdev"] == PDEV and info["client_id"] == "7"
    assert info["memory"] == {"vram": 2048 * 1024, "gtt": 4096, "cpu": 0}
    assert info["engines"] == {"gfx": 123, "compute": 5, "dma": 0}


def test_parse_units_resident_fallback_and_capacity():
    info = parse_fdinfo("drm-driver: xe\ndrm-client-id: 1\ndrm-resident-vram0: 3 MiB\n"
                        "drm-total-vram0: 9 MiB\ndrm-memory-gtt: 512\n"
                        "drm-engine-render: 10 ns\ndrm-engine-capacity-render: 2\n"
                        "drm-cycles-render: 55\n")
    assert info["memory"] == {"vram0": 3 << 20, "gtt": 512}
    assert info["engines"] == {"render": 10} and info["capacity"] == {"render": 2}


@pytest.mark.parametrize("text", ["", "pos:\t0\nflags:\t02\n", "drm-client-id: 3\n"])
def test_not_a_drm_client(text):
    assert parse_fdinfo(text) is None


# --- the reader ------------------------------------------------------------------------------

def test_one_count_per_client_and_non_drm_fds_skipped(tree):
    # fd 5 and 6 share client 42 (dup), fd 7 is a second client; fd 3 is a socket.
    tree.process(100, "llama-server", {3: "socket:[4242]", 5: "/dev/dri/renderD128",
                                       6: "/dev/dri/renderD128", 7: "/dev/dri/card1"})
    tree.fdinfo(100, 5, fdinfo(42, vram_kib=1024, gtt_kib=8 << 20))
    tree.fdinfo(100, 6, fdinfo(42, vram_kib=1024, gtt_kib=8 << 20))
    tree.fdinfo(100, 7, fdinfo(43, vram_kib=0, gtt_kib=1024))
    tree.process(200, "bash", {0: "/dev/pts/0", 1: "/dev/pts/0"})
    (row,) = reader(tree).read()
    assert row["pid"] == 100 and row["name"] == "llama-server" and row["pci_slot"] == PDEV
    assert row["clients"] == 2 and row["driver"] == "amdgpu" and row["kfd"] is False
    assert row["vram_bytes"] == 1024 * 1024
    assert row["gtt_bytes"] == (8 << 30) + (1 << 20)
    assert row["engine_gfx_percent"] is None          # one read: no rate yet


def test_engine_busy_between_two_reads(tree):
    clock = Clock()
    tree.process(100, "llama-server", {5: "/dev/dri/renderD128"})
    tree.fdinfo(100, 5, fdinfo(1, gfx_ns=10_000_000_000, compute_ns=0))
    r = reader(tree, clock)
    r.read()
    clock.advance(2.0)
    tree.fdinfo(100, 5, fdinfo(1, gfx_ns=11_500_000_000, compute_ns=200_000_000))
    (row,) = r.read()
    assert row["engine_gfx_percent"] == 75.0 and row["engine_compute_percent"] == 10.0


def test_rows_sorted_heaviest_first_and_per_device(tree):
    tree.process(10, "small", {4: "/dev/dri/renderD128"})
    tree.fdinfo(10, 4, fdinfo(1, vram_kib=10))
    tree.process(20, "big", {4: "/dev/dri/renderD128", 5: "/dev/dri/renderD129"})
    tree.fdinfo(20, 4, fdinfo(2, gtt_kib=1 << 20))
    tree.fdinfo(20, 5, fdinfo(3, vram_kib=5, pdev="0000:03:00.0"))
    rows = reader(tree).read()
    assert [(r["pid"], r["pci_slot"]) for r in rows] == [(20, PDEV), (10, PDEV), (20, "0000:03:00.0")]


def test_kfd_only_process_gets_a_row(tree):
    tree.process(300, "rocm-app", {3: "/dev/kfd"})        # no DRM descriptor visible
    tree.kfd(300, {"48879": 3 << 30})
    tree.kfd_node(0, "0", 0)                              # the CPU node
    tree.kfd_node(1, "48879", 0xC300)
    (row,) = reader(tree).read()
    assert row == {"pid": 300, "name": "rocm-app", "pci_slot": PDEV, "driver": "amdgpu",
                   "clients": 0, "vram_bytes": 3 << 30, "gtt_bytes": None,
                   "engine_gfx_percent": None, "engine_compute_percent": None, "kfd": True}


def test_kfd_process_with_drm_descriptors_is_marked_not_duplicated(tree):
    tree.process(300, "rocm-app", {4: "/dev/dri/renderD128"})
    tree.fdinfo(300, 4, fdinfo(9, vram_kib=64))
    tree.kfd(300, {"48879": 65536})
    (row,) = reader(tree).read()
    assert row["kfd"] is True and row["clients"] == 1


def test_exited_and_unreadable_processes_are_skipped(tree):
    tree.process(100, "gone", {5: "/dev/dri/renderD128"})      # fdinfo missing: it exited
    os.makedirs(os.path.join(tree.root, "proc", "101"))         # no fd dir (EACCES-like)
    tree.kfd(999, {"1": 1})                                     # KFD entry of an exited pid
    assert reader(tree).read() == []


def test_descriptor_list_is_cached_until_rescan(tree):
    clock = Clock()
    tree.process(100, "late-gpu-user", {0: "/dev/null"})
    r = reader(tree, clock, rescan_s=5.0)
    assert r.read() == []
    os.symlink("/dev/dri/renderD128", os.path.join(tree.root, "proc/100/fd/9"))
    tree.fdinfo(100, 9, fdinfo(1, vram_kib=4))
    clock.advance(1.0)
    assert r.read() == []                                     # cached: not looked at again yet
    clock.advance(5.0)
    assert [row["pid"] for row in r.read()] == [100]


def test_missing_proc_dir_reads_nothing(tmp_path):
    assert DrmClientReader(str(tmp_path), str(tmp_path)).read() == []


# --- the snapshot ----------------------------------------------------------------------------

def test_sampler_puts_processes_in_the_snapshot(reference_root, tree):
    tree.process(4242, "llama-server", {5: "/dev/dri/renderD128"})
    tree.fdinfo(4242, 5, fdinfo(1, vram_kib=1024, gtt_kib=1 << 20))
    sampler = Sampler(RootFS(reference_root), read_tdp=False, proc_root=tree.root)
    try:
        doc = sampler.sample().to_dict()
    finally:
        sampler.close()
    (p,) = doc["processes"]
    assert (p["pid"], p["name"], p["gtt_bytes"], p["kfd"]) == (4242, "llama-server", 1 << 30, False)


def test_a_fake_tree_has_no_host_processes(reference_root):
    sampler = Sampler(RootFS(reference_root), read_tdp=False)
    try:
        assert sampler.drm_clients is None
        assert sampler.sample().to_dict()["processes"] == []
    finally:
        sampler.close()
