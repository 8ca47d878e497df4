"""durable: atomic replacement, crash consistency at every step, errors that must propagate."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from halotune.machine import durable
from halotune.machine.durable import CorruptStateError, FaultAt, SimulatedCrash

OLD, NEW = b'{"step": "old"}\n' * 50, b'{"step": "new"}\n' * 80
# Points before the rename leave the old content, the others the new one.
BEFORE_RENAME = ("before_write", "after_write", "after_fsync")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _temps(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if durable._TEMP_MARK in n)


@pytest.fixture
def target(tmp_path) -> str:
    path = str(tmp_path / "journal.json")
    durable.atomic_write(path, OLD)
    return path


def test_content_is_replaced_by_a_rename(target):
    with open(target, "rb") as reader:   # a reader of the old file keeps the old content
        inode = os.stat(target).st_ino
        durable.atomic_write(target, NEW)
        assert reader.read() == OLD
    assert _read(target) == NEW
    assert os.stat(target).st_ino != inode
    assert _temps(os.path.dirname(target)) == []
    assert durable.FAULTS.check("after_fsync", target) is None   # the default hook: no faults


def test_mode_is_exactly_the_one_asked(tmp_path):
    old_umask = os.umask(0o077)
    try:
        durable.atomic_write(str(tmp_path / "a"), b"x", mode=0o644)
        durable.atomic_write(str(tmp_path / "b"), b"x")
        os.chmod(tmp_path / "a", 0o666)
        durable.atomic_write(str(tmp_path / "a"), b"y", mode=0o640)   # a replace resets it
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "b").st_mode) == 0o600


@pytest.mark.parametrize("point", durable.POINTS)
def test_a_crash_at_any_point_leaves_one_complete_version(target, monkeypatch, point):
    monkeypatch.setattr(durable, "FAULTS", FaultAt(point, SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        durable.atomic_write(target, NEW)
    assert _read(target) == (OLD if point in BEFORE_RENAME else NEW)
    # A crash cleans nothing up; recovery removes the leftover temporary file.
    leftovers = _temps(os.path.dirname(target))
    assert len(leftovers) == (1 if point in BEFORE_RENAME else 0)
    assert durable.remove_temps(target) == [os.path.join(os.path.dirname(target), n)
                                            for n in leftovers]
    assert _temps(os.path.dirname(target)) == []


@pytest.mark.parametrize("point", BEFORE_RENAME)
def test_a_crash_before_the_first_version_leaves_no_file(tmp_path, monkeypatch, point):
    path = str(tmp_path / "new.json")
    monkeypatch.setattr(durable, "FAULTS", FaultAt(point, SimulatedCrash()))
    with pytest.raises(SimulatedCrash):
        durable.atomic_write(path, NEW)
    assert not os.path.exists(path)
    assert durable.read_json(path) is None


@pytest.mark.parametrize("point", durable.POINTS)
def test_a_process_killed_at_any_point(target, point):
    """os._exit runs no Python clean-up at all: the closest to pulling the plug."""
    child = textwrap.dedent(f"""
        import os
        from halotune.machine import durable
        durable.FAULTS = durable.FaultAt({point!r}, lambda: os._exit(41))
        durable.atomic_write({target!r}, {NEW!r})
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 41
    assert _read(target) == (OLD if point in BEFORE_RENAME else NEW)


@pytest.mark.parametrize(("point", "code"), [
    ("before_write", errno.ENOSPC), ("after_write", errno.EIO), ("after_fsync", errno.EACCES)])
def test_errors_propagate_and_leave_the_old_file(target, monkeypatch, point, code):
    monkeypatch.setattr(durable, "FAULTS",
                        FaultAt(point, OSError(code, os.strerror(code)), suffix="journal.json"))
    with pytest.raises(OSError) as caught:
        durable.atomic_write(target, NEW)
    assert caught.value.errno == code
    assert _read(target) == OLD
    assert _temps(os.path.dirname(target)) == []


def test_an_error_after_the_rename_still_propagates(target, monkeypatch):
    monkeypatch.setattr(durable, "FAULTS", FaultAt("after_rename", OSError(errno.EIO, "EIO")))
    with pytest.raises(OSError):
        durable.atomic_write(target, NEW)
    assert _read(target) == NEW   # in place, not known to be durable


def test_partial_writes_are_completed_and_a_full_disk_fails_cleanly(target, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    durable.atomic_write(target, NEW)
    assert _read(target) == NEW

    written = []

    def fill_up(fd, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(real_write(fd, bytes(data[:100])))
        return written[-1]

    monkeypatch.setattr(os, "write", fill_up)
    with pytest.raises(OSError) as caught:
        durable.atomic_write(target, OLD)
    assert caught.value.errno == errno.ENOSPC
    assert _read(target) == NEW
    assert _temps(os.path.dirname(target)) == []


def test_the_file_and_its_directory_are_fsynced(target, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    durable.atomic_write(target, NEW)
    directory, name = os.path.split(os.path.realpath(target))
    assert len(synced) == 2
    assert synced[0].startswith(os.path.join(directory, f".{name}{durable._TEMP_MARK}"))
    assert synced[1] == directory   # after the rename, so the rename is on disk


def test_json_is_canonical(tmp_path):
    path = str(tmp_path / "state.json")
    durable.write_json(path, {"b": [1, 2], "a": {"z": None, "y": "é"}})
    assert _read(path) == (b'{\n "a": {\n  "y": "\\u00e9",\n  "z": null\n },\n'
                           b' "b": [\n  1,\n  2\n ]\n}\n')
    assert durable.read_json(path) == {"a": {"y": "é", "z": None}, "b": [1, 2]}
    with pytest.raises(ValueError):
        durable.write_json(path, {"power": float("nan")})   # not JSON: refused, file kept
    assert durable.read_json(path)["b"] == [1, 2]


@pytest.mark.parametrize(("content", "reason"), [
    (None, "truncated"), (b"", "empty file"), (b"\n \n", "only white space"),
    (b"\x00" * 64, "not JSON"), (b'{"a": "\xff"}', "not UTF-8")])
def test_corrupt_files_are_reported(tmp_path, content, reason):
    path = str(tmp_path / "state.json")
    durable.write_json(path, {"phase": "applying", "originals": {"x": "1" * 40}})
    if content is None:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    else:
        with open(path, "wb") as f:
            f.write(content)
    with pytest.raises(CorruptStateError) as caught:
        durable.read_json(path)
    assert caught.value.path == path
    assert (reason if content is not None else "not JSON") in caught.value.reason
    assert path in str(caught.value)
    assert durable.read_json(str(tmp_path / "missing.json")) is None


def test_ensure_dir_creates_and_fsyncs_parents(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync",
                        lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                    real_fsync(fd)))
    base = os.path.realpath(tmp_path)
    deep = os.path.join(base, "var", "lib", "halotune")
    durable.ensure_dir(deep)
    assert os.path.isdir(deep)
    assert stat.S_IMODE(os.stat(deep).st_mode) == 0o700
    assert synced == [base, os.path.join(base, "var"), os.path.join(base, "var", "lib")]
    synced.clear()
    durable.ensure_dir(deep, mode=0o755)   # an existing directory is left alone
    assert synced == [] and stat.S_IMODE(os.stat(deep).st_mode) == 0o700
    with open(os.path.join(base, "file"), "w"):
        pass
    with pytest.raises(FileExistsError):
        durable.ensure_dir(os.path.join(base, "file"))


def test_remove_is_durable_and_tolerates_a_missing_file(target, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")))
    assert durable.remove(target) is True
    assert not os.path.exists(target) and synced == [os.path.dirname(os.path.realpath(target))]
    assert durable.remove(target) is False


def test_fault_at_fires_where_and_as_often_as_asked(target, monkeypatch):
    with pytest.raises(ValueError):
        FaultAt("before_lunch", SimulatedCrash())
    fault = FaultAt("after_write", OSError(errno.EIO, "EIO"), suffix="other.json")
    monkeypatch.setattr(durable, "FAULTS", fault)
    durable.atomic_write(target, NEW)   # another file's fault
    assert fault.fired == 0
    fault.suffix = "journal.json"
    with pytest.raises(OSError):
        durable.atomic_write(target, OLD)
    durable.atomic_write(target, OLD)   # times=1: fired once only
    assert (fault.fired, _read(target)) == (1, OLD)
    assert json.loads(_read(target).splitlines()[0]) == {"step": "old"}
