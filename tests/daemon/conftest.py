"""Fixtures for the daemon's tests: the REAL daemon in a child process, against a simulated
Strix Halo laid out in tmp_path.

- `sim_root`: a fresh simulated machine (reference scenario).
- `start_daemon(config="", root=..., state_dir=..., socket=..., wait=True, profiles_dir=None)`:
  `python -m halotune daemon --root R --socket S --state-dir SD --config C` as a child, waiting
  until the socket answers `status`; every daemon started is terminated in the finalizer.
- `machine_digest(root)`: sha1 over every file and symlink of the tree (the simulator's and the
  state directory left out) plus the TDP limits the RyzenAdj stand-in reports.
- `wait_for(predicate, timeout)`: poll until true.

Nothing here reads /work/shared or the host's /sys.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from halotune.daemon.client import Client
from halotune.sim.tree import lay_out

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLE_CONFIG = os.path.join(REPO, "systemd", "halotune.toml.example")
EXCLUDED_TOP = (".halotune-sim", ".halotune-state", "state", "api.sock", "daemon.toml")

# Short intervals everywhere: the whole daemon suite should stay well under a minute.
BASE_CONFIG = """\
[daemon]
sample_interval_s = 0.2
history_s = 60

[api]
socket_group = ""

[rules.drift]
interval_s = 1
"""


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def in_child_as(uid: int, gid: int, fn, groups=()) -> dict:
    """Fork; the child drops to uid/gid with the supplementary `groups` (none by default), runs
    fn() and sends its dict (or the exception) back. Tests that need an ordinary user."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never returns
        os.close(r)
        try:
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            out = fn()
        except BaseException as e:  # noqa: BLE001 - everything goes to the parent
            out = {"error": repr(e)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def machine_digest(root: str) -> str:
    """Equal digests: the machine is byte-for-byte the same (files, links, TDP limits)."""
    from halotune.sim import ryzenadj as sim_ryzenadj

    root = os.path.abspath(root)
    snap: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in EXCLUDED_TOP]
            filenames = [f for f in filenames if f not in EXCLUDED_TOP]
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(path):
                snap[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    snap[rel] = hashlib.sha1(f.read()).hexdigest()
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        sim_ryzenadj.main(["-i"], root)
    snap["(ryzenadj -i)"] = "\n".join(line for line in out.getvalue().splitlines()
                                      if "LIMIT" in line.upper())
    return hashlib.sha1(json.dumps(snap, sort_keys=True).encode()).hexdigest()


def tdp_limits(root: str) -> dict[str, float]:
    """The SMU limits of the simulated machine, in W (stapm, fast, slow)."""
    with open(os.path.join(root, ".halotune-sim", "state.json"), encoding="utf-8") as f:
        lim = json.load(f)["limits"]
    return {k: lim[f"{k}_mw"] / 1000 for k in ("stapm", "fast", "slow")}


def read(root: str, rel: str) -> str:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read().strip()


class DaemonProc:
    def __init__(self, proc: subprocess.Popen, root: str, socket: str, state_dir: str,
                 stderr_path: str):
        self.proc, self.root, self.socket, self.state_dir = proc, root, socket, state_dir
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.socket, timeout=timeout)

    def call(self, method: str, params: dict | None = None):
        with self.client() as c:
            return c.call(method, params)

    def events(self, kind: str | None = None) -> list[dict]:
        evs = self.call("events", {"since": 0, "limit": 1000})["events"]
        return [e for e in evs if kind is None or e["kind"] == kind]

    def wait_event(self, predicate, timeout: float = 10.0, what: str = "an event") -> dict:
        def find():
            return next((e for e in self.events() if predicate(e)), None)
        try:
            return wait_for(find, timeout, 0.1, what)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {what}; events:\n" + "\n".join(
                f"  {e['kind']}: {e['message']}" for e in self.events())) from None

    def profile(self) -> str | None:
        return self.call("status")["daemon"]["profile"]

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@pytest.fixture
def sim_root(tmp_path) -> str:
    root = str(tmp_path / "machine")
    lay_out(root)
    return root


@pytest.fixture
def daemon_env():
    return _env()


class Launcher:
    """Starts daemons in `tmpdir` (against `root` unless told otherwise) and stops them all."""

    def __init__(self, tmpdir: str, root: str, env: dict):
        self.tmpdir, self.root, self.env = tmpdir, root, env
        self.started: list[DaemonProc] = []
        self._n = 0

    def __call__(self, config: str = "", *, root: str | None = None,
                 state_dir: str | None = None, socket: str | None = None, wait: bool = True,
                 base: bool = True, profiles_dir: str | None = None,
                 extra_args=()) -> DaemonProc:
        n = self._n = self._n + 1
        root = root or self.root
        state_dir = state_dir or os.path.join(self.tmpdir, f"state{n}")
        socket = socket or os.path.join(self.tmpdir, f"api{n}.sock")
        cfg_path = os.path.join(self.tmpdir, f"daemon{n}.toml")
        with open(cfg_path, "w", encoding="utf-8") as f:
            f.write(merge_config(BASE_CONFIG, config) if base else config)
        args = [sys.executable, "-m", "halotune", "daemon", "--root", root, "--socket", socket,
                "--state-dir", state_dir, "--config", cfg_path, *extra_args]
        if profiles_dir:
            args += ["--profiles-dir", profiles_dir]
        stderr_path = os.path.join(self.tmpdir, f"daemon{n}.log")
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    env=self.env, cwd=self.tmpdir)
        d = DaemonProc(proc, root, socket, state_dir, stderr_path)
        self.started.append(d)
        if wait:
            def ready():
                if proc.poll() is not None:
                    raise AssertionError(f"the daemon exited with {proc.returncode}:\n"
                                         + d.stderr())
                try:
                    with Client(socket, timeout=2) as c:
                        return c.call("status") is not None
                except Exception:  # noqa: BLE001 - not up yet
                    return False
            wait_for(ready, 15.0, 0.05, "the daemon's socket")
        return d

    def stop_all(self) -> None:
        for d in self.started:
            if d.proc.poll() is None:
                d.proc.terminate()
                try:
                    d.proc.wait(10)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                    d.proc.wait(5)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture
def start_daemon(tmp_path, sim_root, daemon_env):
    launcher = Launcher(str(tmp_path), sim_root, daemon_env)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory):
    """One simulated machine and launcher for a whole test module (tests that only read)."""
    tmp = str(tmp_path_factory.mktemp("daemon-module"))
    root = os.path.join(tmp, "machine")
    lay_out(root)
    launcher = Launcher(tmp, root, _env())
    yield launcher
    launcher.stop_all()


def merge_config(base: str, extra: str) -> str:
    """BASE_CONFIG with the tables of `extra` replacing or extending it (TOML tables may not
    repeat, so keys of a table that `extra` also sets are merged by hand)."""
    import tomllib

    data = tomllib.loads(base)
    more = tomllib.loads(extra)
    for table, values in more.items():
        if isinstance(values, dict) and isinstance(data.get(table), dict):
            for k, v in values.items():
                if isinstance(v, dict) and isinstance(data[table].get(k), dict):
                    data[table][k].update(v)
                else:
                    data[table][k] = v
        else:
            data[table] = values
    return to_toml(data)


def to_toml(data: dict, prefix: str = "") -> str:
    """Enough TOML for daemon configs: scalars, tables, arrays of tables."""
    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{prefix}{k}"
        if isinstance(v, list):
            for item in v:
                out += f"\n[[{name}]]\n" + to_toml(item, name + ".")
        else:
            out += f"\n[{name}]\n" + to_toml(v, name + ".")
    return out


@pytest.fixture
def fake_process(tmp_path):
    """start(name, seconds): a copy of /bin/sleep named `name` running (its comm is `name`).

    detached=True starts it through an intermediate that exits at once, so it is not a
    descendant of the test process (someone else's process, not a hold owner's child);
    then the pid is returned."""
    procs: list[subprocess.Popen] = []
    orphans: list[int] = []

    def start(name: str = "llama-server", seconds: float = 60, detached: bool = False):
        import shutil
        path = tmp_path / "bin" / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            shutil.copy("/bin/sleep", path)
        if detached:
            out = subprocess.run(
                [sys.executable, "-c", "import subprocess, sys; "
                 "print(subprocess.Popen(sys.argv[1:], start_new_session=True, "
                 "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)",
                 str(path), str(seconds)], capture_output=True, text=True, check=True)
            orphans.append(int(out.stdout))
            return orphans[-1]
        p = subprocess.Popen([str(path), str(seconds)])
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    for pid in orphans:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
