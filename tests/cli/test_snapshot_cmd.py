"""`halotune snapshot`: the archive unpacks into a tree that reads like the machine it came from."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from halotune.cli.main import main
from halotune.machine import capture
from halotune.machine.platform import read_kernel_release
from halotune.machine.rootfs import RootFS
from halotune.telemetry.sampler import Sampler

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "strix-halo"
TOP = capture.TOP_DIR
DEVICE = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0"
GTTSIZE = "sys/module/amdgpu/parameters/gttsize"
ROOT_UUID = "3f6d2c1e-8b7a-4e21-9c4d-5a0b1e2f3c4d"
BOOT_ID = "9d1c7a52-6e0b-4f3a-8c2d-71e5b4a9f0c3"

RYZENADJ_OUTPUT = """CPU Family: Strix Halo
SMU BIOS Interface Version: 25
Version: v0.17.0
PM Table Version: 64020c
|        Name         |   Value   |     Parameter      |
|---------------------|-----------|--------------------|
| STAPM LIMIT         |    71.000 | stapm-limit        |
| PPT LIMIT FAST      |    71.000 | fast-limit         |
"""


@pytest.fixture
def machine(tmp_path) -> Path:
    """A writable copy of the reference Strix Halo tree, symlinks kept."""
    root = tmp_path / "machine"
    shutil.copytree(FIXTURE, root, symlinks=True)
    return root


def snapshot(root: Path, out: Path, *options: str) -> int:
    return main(["snapshot", "--root", str(root), *options, str(out)])


def unpack(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / TOP


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def archived_bytes(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def manifest(archive: Path) -> dict:
    return json.loads(archived_bytes(archive)[f"{TOP}/MANIFEST.json"])


def file_entry(man: dict, path: str) -> dict:
    return next(f for f in man["files"] if f["path"] == path)


def comparable_sample(root: Path) -> dict:
    """One sample as JSON, less what names the tree or the moment rather than the machine."""
    sampler = Sampler(RootFS(str(root)))
    try:
        d = sampler.sample().to_dict()
    finally:
        sampler.close()
    del d["time"], d["root"]
    d["power"]["limits_hint"] = None       # "ryzenadj not found (looked in ROOT/usr/bin ...)"
    return d


def fail_reads(monkeypatch, suffix: str, code: int, at: str) -> None:
    """Make the file whose path ends in `suffix` fail with `code` at open() or at read()."""
    real_open, real_read = os.open, os.read
    doomed: set[int] = set()

    def fake_open(path, flags, *args, **kwargs):
        if str(path).endswith(suffix) and at == "open":
            raise OSError(code, os.strerror(code), str(path))
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).endswith(suffix):
            doomed.add(fd)
        return fd

    def fake_read(fd, n):
        if fd in doomed:
            raise OSError(code, os.strerror(code))
        return real_read(fd, n)

    def forget_on_close(fd, real_close=os.close):
        doomed.discard(fd)
        real_close(fd)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "read", fake_read)
    monkeypatch.setattr(os, "close", forget_on_close)


# --- the round trip ------------------------------------------------------------------------

def test_unpacked_snapshot_samples_like_the_original(tmp_path, capsys):
    out = tmp_path / "report.tar.gz"
    assert snapshot(FIXTURE, out) == 0
    unpacked = unpack(out, tmp_path / "unpacked")
    assert comparable_sample(unpacked) == comparable_sample(FIXTURE)
    assert sorted(os.listdir(tmp_path)) == ["report.tar.gz", "unpacked"]   # no temp file left
    line = capsys.readouterr().out.strip()
    n_files = len(manifest(out)["files"]) - sum("errno" in f for f in manifest(out)["files"])
    assert line.startswith(f"wrote {out} ({n_files} files, ")
    assert f" KiB) from {FIXTURE}; unpack and read with: " in line
    assert line.endswith(f"halotune status --root DIR/{TOP}")


def test_every_symlink_on_the_way_stays_a_symlink(tmp_path):
    out = tmp_path / "report.tgz"
    assert snapshot(FIXTURE, out) == 0
    unpacked = unpack(out, tmp_path / "unpacked")
    links = [Path(d, n) for d, dirs, files in os.walk(FIXTURE) for n in dirs + files
             if Path(d, n).is_symlink()]
    assert links, "the reference tree has symlinks"
    for link in links:
        rel = link.relative_to(FIXTURE)
        assert (unpacked / rel).is_symlink(), rel
        assert os.readlink(unpacked / rel) == os.readlink(link), rel
    # Discovery goes through the links, and the stored paths do not.
    assert (unpacked / "sys/class/drm/card1/device/gpu_metrics").read_bytes() == \
        (FIXTURE / DEVICE / "gpu_metrics").read_bytes()
    assert not any("/sys/class/drm/card1/" in name for name in members(out))


def test_diagnostic_files_beyond_one_sample_are_collected(tmp_path):
    out = tmp_path / "report.tar.gz"
    assert snapshot(FIXTURE, out) == 0
    names = set(members(out))
    for rel in (f"{DEVICE}/pp_dpm_fclk", f"{DEVICE}/pp_dpm_socclk", f"{DEVICE}/mem_info_vram_total",
                f"{DEVICE}/ip_discovery/die/0/1/0/major", f"{DEVICE}/hwmon/hwmon3/in0_input",
                "sys/devices/system/cpu/cpufreq/policy1/scaling_max_freq",
                "sys/module/ttm/parameters/dma32_pages_limit", "proc/version"):
        assert f"{TOP}/{rel}" in names, rel
    assert f"{TOP}/README.md" not in names          # only what halotune reads


def test_board_identity_is_collected_but_no_serials(machine, tmp_path):
    dmi = machine / "sys/devices/virtual/dmi/id"
    dmi.mkdir(parents=True)
    for name, value in (("product_name", "Desktop (AMD Ryzen AI Max 300 Series)"),
                        ("bios_version", "03.02"), ("product_serial", "FRAXXXX1234"),
                        ("product_uuid", BOOT_ID)):
        (dmi / name).write_text(value + "\n")
    (machine / "sys/class/dmi").mkdir()
    (machine / "sys/class/dmi/id").symlink_to("../../devices/virtual/dmi/id")
    (machine / DEVICE / "serial_number").write_text("0x123456789abcdef0\n")   # amdgpu FRU
    out = tmp_path / "report.tar.gz"
    assert snapshot(machine, out) == 0
    names = set(members(out))
    assert f"{TOP}/sys/devices/virtual/dmi/id/product_name" in names
    assert f"{TOP}/sys/devices/virtual/dmi/id/bios_version" in names
    assert not any(n.endswith(("product_serial", "product_uuid", "serial_number"))
                   for n in names)


def test_manifest_describes_the_capture(tmp_path):
    out = tmp_path / "report.tar.gz"
    assert snapshot(FIXTURE, out) == 0
    man, data = manifest(out), archived_bytes(out)
    assert man["format"] == "halotune.snapshot/1"
    assert man["source_root"] == str(FIXTURE)
    assert man["kernel_release"] == read_kernel_release(RootFS(str(FIXTURE)))
    assert man["cmdline"] == (FIXTURE / "proc/cmdline").read_text().strip()
    assert [g["device_id"] for g in man["amd_gpus"]] == ["0x1586"]
    assert man["redaction"] == {"redacted": False}
    for f in man["files"]:
        if "size" in f:
            assert len(data[f"{TOP}/{f['path']}"]) == f["size"], f["path"]
    # The fixture has no RyzenAdj: the error is the record, not a failure.
    assert man["ryzenadj"]["returncode"] is None
    assert "ryzenadj not found" in man["ryzenadj"]["error"]
    assert data[f"{TOP}/ryzenadj-info.txt"].decode() == man["ryzenadj"]["error"] + "\n"


def test_ryzenadj_info_is_archived(machine, tmp_path):
    bindir = machine / "usr/bin"
    bindir.mkdir(parents=True)
    tool = bindir / "ryzenadj"
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{RYZENADJ_OUTPUT}EOF\n")
    tool.chmod(0o755)
    bindir.chmod(0o755)
    out = tmp_path / "report.tar.gz"
    assert snapshot(machine, out) == 0
    man = manifest(out)
    assert man["ryzenadj"]["returncode"] == 0 and man["ryzenadj"]["error"] is None
    assert man["ryzenadj"]["stdout"] == RYZENADJ_OUTPUT
    assert archived_bytes(out)[f"{TOP}/ryzenadj-info.txt"].decode() == RYZENADJ_OUTPUT


# --- redaction -----------------------------------------------------------------------------

def test_redact_replaces_uuids_boot_id_and_host_name(machine, tmp_path):
    (machine / "proc/cmdline").write_text(f"BOOT_IMAGE=/boot/vmlinuz root=UUID={ROOT_UUID} ro "
                                          "quiet ttm.pages_limit=28835840\n")
    (machine / "proc/sys/kernel/random/boot_id").write_text(BOOT_ID + "\n")
    (machine / "proc/sys/kernel/hostname").write_text("strixbox\n")
    version = machine / "proc/version"
    version.write_text(version.read_text().replace("buildd@", "me@strixbox "))
    out = tmp_path / "report.tar.gz"
    assert snapshot(machine, out, "--redact") == 0

    everything = b"".join(archived_bytes(out).values())
    for secret in (ROOT_UUID, BOOT_ID, "strixbox"):
        assert secret.encode() not in everything, secret
    unpacked = unpack(out, tmp_path / "unpacked")
    zero = capture.ZERO_UUID
    assert f"root=UUID={zero}" in (unpacked / "proc/cmdline").read_text()
    assert (unpacked / "proc/sys/kernel/random/boot_id").read_text() == zero + "\n"

    man = manifest(out)
    replaced = {r["what"]: r for r in man["redaction"]["replaced"]}
    assert man["redaction"]["redacted"] is True
    assert replaced["boot id"]["where"] == ["proc/sys/kernel/random/boot_id"]
    assert replaced["UUID"]["where"] == ["proc/cmdline"]   # the manifest copies the clean one
    assert f"root=UUID={zero}" in man["cmdline"]
    assert replaced["host name"]["where"] == ["proc/version"]
    # Of what halotune reads, only the boot id changed: kernel release, device ids and
    # firmware versions are what makes the report useful.
    expected = comparable_sample(machine)
    expected["boot_id"] = zero
    assert comparable_sample(unpacked) == expected
    assert (unpacked / DEVICE / "gpu_metrics").read_bytes() == \
        (FIXTURE / DEVICE / "gpu_metrics").read_bytes()


def test_redact_zeroes_the_kfd_unique_id(machine, tmp_path):
    node = machine / "sys/devices/virtual/kfd/kfd/topology/nodes/1"
    node.mkdir(parents=True)
    (node / "properties").write_text("cpu_cores_count 0\nunique_id 8413463716214538497\n"
                                     "gfx_target_version 110501\nlocation_id 49920\n")
    (machine / "sys/class/kfd").mkdir()
    (machine / "sys/class/kfd/kfd").symlink_to("../../devices/virtual/kfd/kfd")
    out = tmp_path / "report.tar.gz"
    assert snapshot(machine, out, "--redact") == 0
    props = archived_bytes(out)[f"{TOP}/sys/devices/virtual/kfd/kfd/topology/nodes/1/properties"]
    assert props.decode() == ("cpu_cores_count 0\nunique_id 0\n"
                              "gfx_target_version 110501\nlocation_id 49920\n")
    assert "unique id" in {r["what"] for r in manifest(out)["redaction"]["replaced"]}


def test_redactor_zeroes_block_device_ids_of_other_shapes():
    r = capture.Redactor()
    line = "root=PARTUUID=1a2b3c4d-02 resume=UUID=ABCD-1234 ttm.pages_limit=28835840"
    assert r.text(line, "proc/cmdline") == \
        "root=PARTUUID=00000000-00 resume=UUID=0000-0000 ttm.pages_limit=28835840"


# --- what cannot be read -------------------------------------------------------------------

@pytest.mark.parametrize("code, at", [(errno.EACCES, "open"), (errno.EOPNOTSUPP, "read")])
def test_unreadable_file_is_listed_with_its_errno(machine, tmp_path, monkeypatch, code, at):
    fail_reads(monkeypatch, GTTSIZE, code, at)
    out = tmp_path / "report.tar.gz"
    assert snapshot(machine, out) == 0
    monkeypatch.undo()
    entry = file_entry(manifest(out), GTTSIZE)
    assert entry["errno"] == errno.errorcode[code]
    assert entry["error"] == os.strerror(code)
    assert f"{TOP}/{GTTSIZE}" not in members(out)


def test_special_file_is_not_read(machine, tmp_path):
    thp = machine / "sys/kernel/mm/transparent_hugepage"
    thp.mkdir(parents=True)
    os.mkfifo(thp / "enabled")          # a blocking read would hang the command
    out = tmp_path / "report.tar.gz"
    cp = subprocess.run([sys.executable, "-m", "halotune", "snapshot", "--root", str(machine),
                         str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    entry = file_entry(manifest(out), "sys/kernel/mm/transparent_hugepage/enabled")
    assert entry == {"path": "sys/kernel/mm/transparent_hugepage/enabled", "errno": None,
                     "error": "not a regular file"}


def test_large_file_is_capped(machine, tmp_path):
    stat = machine / "proc/stat"
    stat.write_text(stat.read_text() + "intr " + "1 " * 60_000 + "\n")
    out = tmp_path / "report.tar.gz"
    assert snapshot(machine, out) == 0
    entry = file_entry(manifest(out), "proc/stat")
    assert entry["size"] == capture.MAX_FILE_BYTES and entry["truncated"] is True
    assert len(archived_bytes(out)[f"{TOP}/proc/stat"]) == capture.MAX_FILE_BYTES


def test_capture_stays_inside_the_root_and_out_of_processes(machine):
    (machine / "proc/self").mkdir()
    (machine / "proc/self/mounts").write_text("secret\n")
    (machine / "proc/mounts").symlink_to("self/mounts")
    (machine / "sys/class/drm/card9").symlink_to("../../../../../../etc")
    tree = capture.TreeCapture(str(machine))
    tree.add_all(["proc/mounts", "proc/1/status", "sys/class/drm/card9/device/vendor"])
    assert not tree.files
    assert tree.links == {"proc/mounts": "self/mounts"}
    assert tree.errors["proc/self"].message == "per-process /proc entries are not collected"
    assert tree.errors["proc/1"].message == "per-process /proc entries are not collected"
    assert "leads outside the root" in tree.errors["sys/class/drm/card9"].message


def test_symlink_loop_is_reported_not_followed(machine):
    (machine / "sys/loop_a").symlink_to("loop_b")
    (machine / "sys/loop_b").symlink_to("loop_a")
    tree = capture.TreeCapture(str(machine))
    tree.add("sys/loop_a/x")
    assert tree.errors["sys/loop_a"].errno == "ELOOP"
    assert tree.links == {"sys/loop_a": "loop_b", "sys/loop_b": "loop_a"}


# --- recording -----------------------------------------------------------------------------

def test_recording_rootfs_records_every_kind_of_access():
    fs = capture.RecordingRootFS(str(FIXTURE))
    sampler = Sampler(fs, read_tdp=False)
    sampler.sample()
    sampler.close()
    recorded = set(fs.recorded)
    assert "sys/class/drm" in recorded                                   # listdir
    assert "sys/class/drm/card1/device/vendor" in recorded               # read_int
    assert "sys/class/drm/card1/device/gpu_metrics" in recorded          # hot()
    assert "proc/meminfo" in recorded                                    # hot()
    assert "sys/devices/system/cpu/cpufreq/policy0" in recorded          # glob
    assert "sys/firmware/acpi/platform_profile_choices" in recorded      # read_list
    assert all(not p.startswith("/") for p in recorded)


@pytest.mark.parametrize("method", ["read_bytes", "read_text", "read_int", "read_list", "hot",
                                    "hot_text", "hot_int", "hot_list", "exists", "isdir",
                                    "listdir", "realpath"])
def test_recording_rootfs_records_each_access_method(method):
    fs = capture.RecordingRootFS(str(FIXTURE))
    if not hasattr(fs, method):
        pytest.skip(f"RootFS has no {method}")
    result = getattr(fs, method)("/proc/cmdline")
    for opened in (result, fs):          # hot files keep a descriptor open
        if hasattr(opened, "close"):
            opened.close()
    assert fs.recorded == ["proc/cmdline"]


def test_recording_rootfs_records_glob_matches_not_patterns():
    fs = capture.RecordingRootFS(str(FIXTURE))
    assert fs.glob("sys/devices/system/cpu/cpufreq/policy*") == fs.recorded == [
        "sys/devices/system/cpu/cpufreq/policy0", "sys/devices/system/cpu/cpufreq/policy1"]


# --- exit codes ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["report.tar", "report.zip", "report.gz"])
def test_bad_out_name_is_a_usage_error(tmp_path, capsys, name):
    out = tmp_path / name
    assert snapshot(FIXTURE, out) == 64
    err = capsys.readouterr().err
    assert str(out) in err and ".tar.gz or .tgz" in err
    assert not os.listdir(tmp_path)


def test_out_that_is_a_directory_or_in_a_missing_directory_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "dir.tar.gz").mkdir()
    assert snapshot(FIXTURE, tmp_path / "dir.tar.gz") == 64
    assert snapshot(FIXTURE, tmp_path / "missing" / "r.tar.gz") == 64
    err = capsys.readouterr().err
    assert "is a directory" in err and "does not exist" in err


def test_missing_root_is_a_usage_error(tmp_path, capsys):
    assert snapshot(tmp_path / "nowhere", tmp_path / "r.tar.gz") == 64
    assert "not a directory" in capsys.readouterr().err


def test_empty_root_still_writes_the_archive_and_exits_3(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "report.tar.gz"
    assert snapshot(empty, out) == 3
    captured = capsys.readouterr()
    assert "no AMD GPU found" in captured.err and str(empty) in captured.err
    assert captured.out.startswith(f"wrote {out} (0 files, ")
    man = manifest(out)
    assert man["amd_gpus"] == [] and man["sample_error"] is None
    assert all("errno" in f for f in man["files"])


def test_unwritable_out_exits_4_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    outdir = tmp_path / "locked"
    outdir.mkdir()
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if str(path).startswith(str(outdir)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    out = outdir / "report.tar.gz"
    assert snapshot(FIXTURE, out) == 4
    assert f"cannot write {out}: Permission denied" in capsys.readouterr().err
    assert not os.listdir(outdir)


def test_existing_archive_is_replaced(tmp_path):
    out = tmp_path / "report.tar.gz"
    out.write_bytes(b"old")
    assert snapshot(FIXTURE, out) == 0
    assert f"{TOP}/MANIFEST.json" in members(out)
    assert os.listdir(tmp_path) == ["report.tar.gz"]


def test_command_runs_as_a_module(tmp_path):
    out = tmp_path / "report.tar.gz"
    cp = subprocess.run([sys.executable, "-m", "halotune", "snapshot", "--root", str(FIXTURE),
                         str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith(f"wrote {out} (") and cp.stdout.count("\n") == 1
    assert comparable_sample(unpack(out, tmp_path / "u")) == comparable_sample(FIXTURE)
