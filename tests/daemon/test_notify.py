"""sd_notify over $NOTIFY_SOCKET: real AF_UNIX datagram sockets (a path in tmp_path and an
abstract-namespace name) receive exactly what systemd would; nothing ever raises."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import uuid

import pytest

from halotune.daemon import notify

# sun_path holds 108 bytes; pytest's tmp_path can be longer for long test names.
_SUN_PATH_MAX = 107


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        monkeypatch.delenv(var, raising=False)


def _bound(path_or_name) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path_or_name)
    s.settimeout(5)
    return s


@pytest.fixture
def path_socket(tmp_path, monkeypatch):
    """A receiver bound to a file system path; $NOTIFY_SOCKET names it."""
    path = str(tmp_path / "notify")
    short_dir = None
    if len(path.encode()) > _SUN_PATH_MAX:
        short_dir = tempfile.mkdtemp(prefix="ht-")
        path = os.path.join(short_dir, "notify")
    s = _bound(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield s
    s.close()
    if short_dir:
        os.unlink(path)
        os.rmdir(short_dir)


@pytest.fixture
def abstract_socket(monkeypatch):
    """A receiver in the abstract namespace ("@name" in $NOTIFY_SOCKET, as systemd passes
    it to services in containers and to `systemd-notify` tests)."""
    name = f"halotune-test-{uuid.uuid4().hex}"
    s = _bound("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield s
    s.close()


def recv(s: socket.socket) -> bytes:
    return s.recv(65536)


# --- the messages ------------------------------------------------------------------------------

def test_ready_with_status_is_one_datagram(path_socket):
    assert notify.ready("profile llm-max (verified)") is True
    assert recv(path_socket) == b"READY=1\nSTATUS=profile llm-max (verified)"


def test_ready_without_status(path_socket):
    assert notify.ready() is True
    assert recv(path_socket) == b"READY=1"


def test_abstract_namespace(abstract_socket):
    assert notify.ready("starting done") is True
    assert recv(abstract_socket) == b"READY=1\nSTATUS=starting done"


def test_status_watchdog_stopping(path_socket):
    assert notify.status("profile quiet (DRIFT)")
    assert notify.watchdog()
    assert notify.stopping()
    assert notify.stopping("rolling back")
    assert [recv(path_socket) for _ in range(4)] == [
        b"STATUS=profile quiet (DRIFT)", b"WATCHDOG=1", b"STOPPING=1",
        b"STOPPING=1\nSTATUS=rolling back"]


def test_reloading_carries_monotonic_usec(path_socket):
    import time

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify.reloading()
    lines = recv(path_socket).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC" and int(value) >= before


def test_notify_joins_lines_and_cannot_inject_fields(path_socket):
    assert notify.notify("READY=1", "STATUS=a\nWATCHDOG=trigger") is True
    assert recv(path_socket) == b"READY=1\nSTATUS=a WATCHDOG=trigger"
    assert notify.status("two\nlines\tand   spaces")
    assert recv(path_socket) == b"STATUS=two lines and spaces"


def test_long_status_is_cut(path_socket):
    assert notify.status("x" * 5000)
    data = recv(path_socket)
    assert data.startswith(b"STATUS=xxx") and data.endswith(b"...")
    assert len(data) == len("STATUS=") + 512


def test_utf8_status(path_socket):
    assert notify.status("Temperatur 87 °C")
    assert recv(path_socket) == "STATUS=Temperatur 87 °C".encode()


# --- never raises --------------------------------------------------------------------------------

def test_unset_returns_false():
    assert notify.notify("READY=1") is False
    assert notify.ready("x") is False
    assert notify.watchdog() is False
    assert notify.stopping() is False
    assert notify.status("x") is False


@pytest.mark.parametrize("value", ["", "relative/path", "vsock:2:1234", "@"])
def test_unusable_addresses_return_false(monkeypatch, value):
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify.notify("READY=1") is False


def test_missing_socket_returns_false(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify.ready("x") is False


def test_abstract_name_nobody_listens_on(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", f"@halotune-nobody-{uuid.uuid4().hex}")
    assert notify.watchdog() is False


def test_path_that_is_not_a_socket(tmp_path, monkeypatch):
    f = tmp_path / "plain"
    f.write_text("")
    monkeypatch.setenv("NOTIFY_SOCKET", str(f))
    assert notify.ready() is False


def test_path_too_long(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/" + "x" * 300)
    assert notify.ready() is False


def test_no_lines_sends_nothing(path_socket):
    assert notify.notify() is False
    path_socket.settimeout(0.05)
    with pytest.raises(TimeoutError):
        path_socket.recv(100)


def test_environment_is_kept(path_socket):
    # sd_notify(unset_environment=1) would drop it; the daemon notifies for its whole life.
    notify.ready()
    notify.watchdog()
    assert os.environ.get("NOTIFY_SOCKET")
    assert [recv(path_socket) for _ in range(2)] == [b"READY=1", b"WATCHDOG=1"]


# --- watchdog interval ---------------------------------------------------------------------------

def test_watchdog_interval_is_half_the_timeout(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 15.0


def test_watchdog_meant_for_another_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert notify.watchdog_interval() is None


@pytest.mark.parametrize("usec,pid", [(None, None), ("", None), ("0", None), ("-5", None),
                                      ("soon", None), ("30000000", "self?")])
def test_no_watchdog(monkeypatch, usec, pid):
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert notify.watchdog_interval() is None


# --- journald-friendly stderr ------------------------------------------------------------------

def test_journal_formatter_prefixes_every_line():
    fmt = notify.JournalFormatter()
    rec = logging.LogRecord("halotune.daemon", logging.WARNING, __file__, 1, "drift: %s",
                            ("cpu.epp",), None)
    assert fmt.format(rec) == "<4>halotune.daemon: drift: cpu.epp"
    rec = logging.LogRecord("halotune.daemon", logging.ERROR, __file__, 1, "a\nb", (), None)
    assert fmt.format(rec) == "<3>halotune.daemon: a\n<3>b"
    assert [notify.syslog_priority(lv) for lv in (50, 40, 30, 20, 10, 0)] == [2, 3, 4, 6, 7, 7]


def test_journal_stream_detection(tmp_path, monkeypatch):
    with open(tmp_path / "stream", "w") as f:
        st = os.fstat(f.fileno())
        assert notify.journal_stream(f) is False
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert notify.journal_stream(f) is True
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert notify.journal_stream(f) is False
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert notify.journal_stream(f) is False
