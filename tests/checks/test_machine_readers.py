"""The machine readers added for preflight and doctor, on literal text and small trees:
activity counters, KFD topology, users and groups, modprobe.d options."""

from __future__ import annotations

import os

from halotune.checks.conditions import version_tuple
from halotune.machine import activity, groups, kfd, modprobe
from halotune.machine.rootfs import RootFS

from .conftest import write

DISKSTATS = """\
 259       0 nvme0n1 1000 0 80000 100 2000 0 160000 200 0 300 300
 259       1 nvme0n1p1 10 0 800 1 20 0 1600 2 0 3 3
   7       0 loop0 500 0 99999 0 0 0 0 0 0 0 0
 253       0 dm-0 900 0 70000 0 1900 0 150000 0 0 0 0
   8       0 sda 10 0 16 0 0 0 0 0 0 0 0
"""


def test_diskstats_counts_whole_disks_only():
    read, written = activity.parse_diskstats(DISKSTATS)
    assert read == (80000 + 16) * 512 and written == 160000 * 512
    assert activity.parse_diskstats(DISKSTATS, disks={"sda"}) == (16 * 512, 0)
    assert activity.parse_diskstats("") == (None, None)
    assert activity.parse_diskstats("garbage line\n") == (None, None)


NETDEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 123456 100 0 0 0 0 0 0 123456 100 0 0 0 0 0 0
enp191s0: 98765432 70000 0 0 0 0 0 12 1234 10 0 0 0 0 0 0
 wlan0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
"""


def test_net_dev_receive_bytes_without_loopback():
    assert activity.parse_net_dev(NETDEV) == {"enp191s0": 98765432, "wlan0": 0}


def test_loadavg():
    assert activity.parse_loadavg("1.25 0.80 0.40 2/1203 99881\n") == 1.25
    assert activity.parse_loadavg("") is None


def test_rates_between_two_reads():
    a = activity.Activity(t=10.0, disk_read_bytes=0, disk_write_bytes=0,
                          net_rx_bytes={"eth0": 0, "tun0": 0})
    b = activity.Activity(t=12.0, disk_read_bytes=4_000_000, disk_write_bytes=2_000_000,
                          net_rx_bytes={"eth0": 10_000_000, "tun0": 9_000_000, "new0": 5})
    r = activity.rates(a, b)
    assert r["disk_bytes_per_s"] == 3_000_000
    assert r["net_iface"] == "eth0" and r["net_rx_bytes_per_s"] == 5_000_000
    back = activity.Activity(t=13.0, disk_read_bytes=0, disk_write_bytes=0, net_rx_bytes={})
    assert activity.rates(b, back)["disk_bytes_per_s"] is None


def test_activity_reader_under_a_root(tmp_path):
    root = str(tmp_path)
    write(root, "proc/diskstats", DISKSTATS)
    write(root, "proc/net/dev", NETDEV)
    write(root, "proc/loadavg", "0.50 0.40 0.30 1/100 5\n")
    os.makedirs(os.path.join(root, "sys/block/nvme0n1"))
    a = activity.ActivityReader(RootFS(root), clock=lambda: 1.0).read()
    assert a.disk_read_bytes == 80000 * 512 and a.loadavg_1m == 0.5
    assert a.net_rx_bytes["enp191s0"] == 98765432


def test_kfd_gpu_nodes(idle_root):
    nodes = kfd.gpu_nodes(RootFS(idle_root))
    assert [n["node"] for n in nodes] == ["1"]
    assert nodes[0]["gfx_target"] == "gfx1151" and nodes[0]["simd_count"] == "80"
    assert kfd.kfd_present(RootFS(idle_root))


def test_users_and_groups(tmp_path):
    root = str(tmp_path)
    write(root, "etc/passwd", "alice:x:4321:4321::/home/alice:/bin/bash\n# comment\n")
    write(root, "etc/group", "alice:x:4321:\nrender:x:991:bob,alice\nvideo:x:44:\n")
    fs = RootFS(root)
    u = groups.lookup_user(fs, "alice")
    assert u.uid == 4321 and u.groups == {"alice", "render"} and u.gids == {4321, 991}
    assert groups.lookup_user(fs, "nobody-here") is None
    assert groups.group_name(fs, 44) == "video"


def test_device_access_by_mode_bits(tmp_path):
    root = str(tmp_path)
    dev = write(root, "dev/kfd", "", 0o660)
    gid = os.stat(dev).st_gid
    fs = RootFS(root)
    member = groups.User("alice", 4321, 4321, {"render"}, {4321, gid})
    stranger = groups.User("eve", 4322, 4322, set(), {4322})
    assert groups.device_access(fs, "dev/kfd", member).read_write
    assert not groups.device_access(fs, "dev/kfd", stranger).read_write
    os.chmod(dev, 0o666)
    assert groups.device_access(fs, "dev/kfd", stranger).read_write
    assert groups.device_access(fs, "dev/absent", member) is None


def test_invoking_user_under_sudo():
    assert groups.invoking_user({"SUDO_USER": "alice", "SUDO_UID": "4321"}) == ("alice", 4321)
    name, uid = groups.invoking_user({})
    assert uid == os.getuid()


def test_modprobe_options_and_command_line(tmp_path):
    root = str(tmp_path)
    write(root, "etc/modprobe.d/ttm.conf", "options ttm pages_limit=31457280 \\\n page_pool_size=15728640\n")
    write(root, "etc/modprobe.d/notes.txt", "options amdgpu gttsize=1\n")        # not *.conf
    write(root, "usr/lib/modprobe.d/ttm.conf", "options ttm pages_limit=1\n")     # hidden by /etc
    write(root, "usr/lib/modprobe.d/amd-gpu.conf", "options amd-gpu gtt-size=2 # comment\n")
    write(root, "proc/cmdline", "ro quiet amdgpu.gttsize=126976 ttm.pages-limit=9\n")
    fs = RootFS(root)
    opts = {(o.module, o.param, o.value, o.where) for o in modprobe.modprobe_options(fs)}
    assert opts == {("ttm", "pages_limit", "31457280", "/etc/modprobe.d/ttm.conf"),
                    ("ttm", "page_pool_size", "15728640", "/etc/modprobe.d/ttm.conf"),
                    ("amd_gpu", "gtt_size", "2", "/usr/lib/modprobe.d/amd-gpu.conf"),
                    # kmod has no inline comments: the kernel gets (and ignores) "#" and "comment"
                    ("amd_gpu", "#", None, "/usr/lib/modprobe.d/amd-gpu.conf"),
                    ("amd_gpu", "comment", None, "/usr/lib/modprobe.d/amd-gpu.conf")}
    assert [o.value for o in modprobe.configured(fs, "ttm", "pages_limit")] == ["31457280", "9"]
    assert [o.where for o in modprobe.configured(fs, "amdgpu", "gttsize")] == ["kernel command line"]


def test_version_tuple():
    assert version_tuple("6.17.0-5-generic") == (6, 17, 0)
    assert version_tuple("6.18.4-200.fc43.x86_64") == (6, 18, 4)
    assert version_tuple("6.19") == (6, 19)
    assert version_tuple("weird") is None
