"""Fixtures and helpers for the apply engine's tests on the simulated Strix Halo.

- `sim_root`: a freshly laid-out simulated machine (reference scenario), on tmpfs when the
  host has a writable /dev/shm (removed afterwards), else in tmp_path.
- `state_dir`: a journal/lock directory outside the tree.
- `tree_snapshot(root)` / `tree_digest(root)`: every regular file's bytes and every symlink's
  target under the root (the simulator's `.halotune-sim/` and the default state directory
  `.halotune-state/` left out), plus the TDP state as the RyzenAdj stand-in's `-i` prints it.
  Two equal digests mean the machine is byte-for-byte the same.
- `writes(root)`: the ordered (path, value, result) write attempts of `.halotune-sim/writes.log`
  (events such as a reboot skipped).
- `run_cli(*args)`: `halotune.cli.main.main` in-process, output captured; `run_cli_subprocess`
  runs `python -m halotune` in a child.
- `fast_ryzenadj`: runs the RyzenAdj stand-in in-process instead of as a child process (the very
  same `halotune.sim.ryzenadj.main`, so the same output, exit codes and writes.log lines; only
  the ~50 ms interpreter start is saved). A missing or replaced `usr/local/bin/ryzenadj` still
  goes the real way.

Nothing here reads /work/shared or the host's /sys.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass

import pytest

from halotune.machine import durable
from halotune.machine import programs as _programs
from halotune.machine.rootfs import RootFS
from halotune.machine.ryzenadj import RyzenAdj
from halotune.sim import ryzenadj as _sim_ryzenadj
from halotune.sim.tree import lay_out
from halotune.tuning.loader import ResolvedProfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(HERE, "fixtures")
SNAPSHOT_DIR = os.path.join(FIXTURES, "write-order")

SHIPPED = ("llm-max", "llm-efficient", "quiet", "bench-stable")
ALL_SHIPPED = SHIPPED + ("stock",)
EXCLUDED_TOP = (".halotune-sim", ".halotune-state")

DEV = "sys/devices/pci0000:00/0000:00:08.1/0000:c3:00.0"
CARD = "sys/class/drm/card1/device"
CPUFREQ = "sys/devices/system/cpu/cpufreq"
CMDLINE_NO_TTM = ("BOOT_IMAGE=/boot/vmlinuz-6.17.0-5-generic "
                  "root=UUID=3f6d2c1e-8b7a-4e21-9c4d-5a0b1e2f3c4d ro quiet splash amd_iommu=off\n")

# Figures the crash campaign reports at the end of the run (pytest_terminal_summary below).
CAMPAIGN_REPORT: dict[str, object] = {}


# --- the machine's content ------------------------------------------------------------------

def tdp_state(root: str) -> str:
    """`ryzenadj -i` of the stand-in (limits from state.json), run in-process: reading logs
    no write."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = _sim_ryzenadj.main(["-i"], root)
    return f"exit {rc}\n{out.getvalue()}"


def _read_bytes(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


def _walk(top: str, rel: str = ""):
    """(rel, DirEntry) for every entry below top, symlinks not followed, sorted."""
    with os.scandir(os.path.join(top, rel) if rel else top) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        r = f"{rel}/{e.name}" if rel else e.name
        yield r, e
        if e.is_dir(follow_symlinks=False):
            yield from _walk(top, r)


def tree_snapshot(root: str, tdp: bool = True) -> dict[str, str]:
    """{relative path: sha1 of the bytes | "-> target" for a symlink}, plus "(ryzenadj -i)"."""
    root = os.path.abspath(root)
    snap: dict[str, str] = {}
    with os.scandir(root) as it:
        top = sorted((e for e in it if e.name not in EXCLUDED_TOP), key=lambda e: e.name)
    for e0 in top:
        entries = [(e0.name, e0)]
        if e0.is_dir(follow_symlinks=False):
            entries += list(_walk(root, e0.name))
        for rel, e in entries:
            if e.is_symlink():
                snap[rel] = "-> " + os.readlink(e.path)
            elif e.is_file(follow_symlinks=False):
                snap[rel] = hashlib.sha1(_read_bytes(e.path)).hexdigest()
    if tdp:
        snap["(ryzenadj -i)"] = tdp_state(root)
    return snap


def tree_digest(root: str, tdp: bool = True) -> str:
    """sha1 over tree_snapshot: equal digests = byte-identical machine (and TDP state)."""
    blob = json.dumps(tree_snapshot(root, tdp), sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()


def snapshot_diff(before: dict, after: dict) -> list[str]:
    """Readable differences between two tree snapshots."""
    out = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            if k == "(ryzenadj -i)" and k in before and k in after:
                import difflib
                out += ["ryzenadj -i: " + line for line in difflib.unified_diff(
                    before[k].splitlines(), after[k].splitlines(), lineterm="", n=0)]
            else:
                out.append(f"{k}: {before.get(k, '(absent)')} -> {after.get(k, '(absent)')}")
    return out


def assert_same_tree(before: dict, root: str, what: str = "") -> None:
    diff = snapshot_diff(before, tree_snapshot(root))
    assert not diff, f"{what}: the machine differs:\n" + "\n".join(diff[:40])


def writes(root: str) -> list[tuple[str, str, str]]:
    """Ordered (path, value, result) of every write attempt in .halotune-sim/writes.log."""
    out = []
    with open(os.path.join(root, ".halotune-sim", "writes.log"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            if "event" in entry:
                continue
            out.append((entry["path"], entry["value"], entry["result"]))
    return out


def log_lines(root: str) -> int:
    with open(os.path.join(root, ".halotune-sim", "writes.log"), encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def read_journal(state_dir: str) -> dict | None:
    path = os.path.join(state_dir, "journal.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def boot_id(root: str) -> str:
    with open(os.path.join(root, "proc/sys/kernel/random/boot_id")) as f:
        return f.read().strip()


def read_file(root: str, rel: str) -> str:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def write_plain(root: str, rel: str, text: str) -> None:
    """A plain file write into the tree (not a kernel write: no writes.log line)."""
    with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
        f.write(text)


def drop_ttm_from_cmdline(root: str) -> None:
    """The reference cmdline sets ttm.pages_limit, which makes memory.gtt_gib refuse."""
    write_plain(root, "proc/cmdline", CMDLINE_NO_TTM)


def _policies(root: str) -> list[str]:
    names = [n for n in os.listdir(os.path.join(root, CPUFREQ)) if re.fullmatch(r"policy\d+", n)]
    return sorted(names, key=lambda n: int(n[len("policy"):]))


def _strip(root: str, rel: str) -> str:
    return read_file(root, rel).strip()


def live_states(root: str) -> dict[str, object]:
    """The machine's state per profile key, read straight from the tree's files and the
    simulator's SMU limits (never through the tunables under test), in the journal's format:
    per-policy values as {policyN: value}, GTT as the conf file's text (None: absent),
    TDP in W, THP as the bracketed word of the choices file."""
    states: dict[str, object] = {}
    pols = _policies(root)
    states["cpu.governor"] = {p: _strip(root, f"{CPUFREQ}/{p}/scaling_governor") for p in pols}
    states["cpu.epp"] = {p: _strip(root, f"{CPUFREQ}/{p}/energy_performance_preference")
                         for p in pols}
    states["cpu.boost"] = {"global": int(_strip(root, f"{CPUFREQ}/boost")),
                           **{p: int(_strip(root, f"{CPUFREQ}/{p}/boost")) for p in pols}}
    # pp_od_clk_voltage: "OD_SCLK:\n0:        600Mhz\n1:       2900Mhz\n..."
    od = read_file(root, f"{CARD}/pp_od_clk_voltage")
    sclk = dict(re.findall(r"^([01]):\s+(\d+)Mhz", od.split("OD_RANGE:")[0], re.M))
    states["gpu.sclk_min_mhz"], states["gpu.sclk_max_mhz"] = int(sclk["0"]), int(sclk["1"])
    states["gpu.performance_level"] = _strip(root, f"{CARD}/power_dpm_force_performance_level")
    gtt = os.path.join(root, "etc/modprobe.d/halotune-gtt.conf")
    states["memory.gtt_gib"] = read_file(root, gtt) if os.path.exists(gtt) else None
    states["power.platform_profile"] = _strip(root, "sys/firmware/acpi/platform_profile")
    for key in ("vm.swappiness", "vm.compaction_proactiveness", "kernel.numa_balancing"):
        states[f"sysctl.{key}"] = int(_strip(root, "proc/sys/" + key.replace(".", "/")))
    with open(os.path.join(root, ".halotune-sim", "state.json"), encoding="utf-8") as f:
        lim = json.load(f)["limits"]
    for key in ("stapm", "fast", "slow", "apu_slow"):
        states[f"power.{key}_w"] = lim[f"{key}_mw"] / 1000
    for attr in ("enabled", "defrag"):
        text = read_file(root, f"sys/kernel/mm/transparent_hugepage/{attr}")
        states[f"thp.{attr}"] = re.search(r"\[([^]]+)\]", text).group(1)
    return states


def make_profile(name: str = "t", **values) -> ResolvedProfile:
    """A resolved profile for the engine directly; keys with dots given as a dict."""
    display = f"test/{name}.toml"
    return ResolvedProfile(name=name, path=display, display_path=display, chain=[name],
                           description="test profile", values=dict(values),
                           sources={k: display for k in values})


def write_profile(directory: str, name: str, text: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# --- the command line -------------------------------------------------------------------------

@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def clean_environ(extra: dict | None = None) -> dict[str, str]:
    """This checkout importable, no inherited HALOTUNE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def run_cli_subprocess(args, env: dict | None = None, timeout: float = 60.0) -> CliResult:
    cp = subprocess.run([sys.executable, "-m", "halotune", *map(str, args)], cwd=REPO,
                        env=clean_environ(env), capture_output=True, text=True, timeout=timeout)
    return CliResult(cp.returncode, cp.stdout, cp.stderr)


@pytest.fixture
def halotune_env(monkeypatch, tmp_path):
    """No HALOTUNE_* from the outside; no daemon socket; children can import this checkout."""
    for k in list(os.environ):
        if k.startswith("HALOTUNE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("PYTHONPATH", clean_environ()["PYTHONPATH"])


@pytest.fixture
def run_cli(capsys, halotune_env):
    """Run `halotune ARGS...` in-process; returns CliResult(rc, out, err)."""
    from halotune.cli.main import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:   # argparse usage errors
            rc = e.code if isinstance(e.code, int) else 1
        cap = capsys.readouterr()
        return CliResult(rc, cap.out, cap.err)

    return run


# --- the machine ------------------------------------------------------------------------------

def scratch_dir(tmp_path) -> tuple[str, bool]:
    """A directory for simulated trees: on tmpfs when there is one (every simulated write
    rewrites ~350 small files), else tmp_path. Returns (path, must_remove)."""
    import tempfile

    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return tempfile.mkdtemp(prefix="halotune-test-", dir="/dev/shm"), True
    return str(tmp_path), False


def _laid_out(tmp_path, kernel: str | None = None):
    import shutil

    base, remove = scratch_dir(tmp_path)
    root = os.path.join(base, "root")
    lay_out(root) if kernel is None else lay_out(root, kernel=kernel)
    yield root
    if remove:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sim_root(tmp_path):
    yield from _laid_out(tmp_path)


# The kernel-fidelity tests run against a kernel before the platform-profile class interface
# (6.12) and the reference snapshot's (6.17): see halotune/sim/kversion.py.
KERNELS = ("6.12", "6.17")


@pytest.fixture(params=KERNELS)
def kernel_root(request, tmp_path):
    """A simulated machine running each of KERNELS in turn."""
    yield from _laid_out(tmp_path, request.param)


@pytest.fixture
def state_dir(tmp_path) -> str:
    return str(tmp_path / "state")


@pytest.fixture
def profiles_dir(tmp_path) -> str:
    d = tmp_path / "profiles"
    d.mkdir()
    return str(d)


_real_run = _programs.Programs.run


def _is_stand_in(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return b"Simulated RyzenAdj" in f.read(400)
    except OSError:
        return False


def fast_run(self, name, args, timeout=15.0):
    """Programs.run, with the simulator's RyzenAdj stand-in run in-process."""
    if name == "ryzenadj" and self.fs.is_simulated:
        path = self.resolve(name)          # absent / refused: the same errors as before
        if _is_stand_in(path):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = _sim_ryzenadj.main(list(args), self.fs.root)
            return _programs.ProgramResult([path, *args], rc, out.getvalue(), err.getvalue())
    return _real_run(self, name, args, timeout)


def install_fast_ryzenadj() -> None:
    """For forked children and workers (no monkeypatch there)."""
    _programs.Programs.run = fast_run


@pytest.fixture
def fast_ryzenadj(monkeypatch):
    monkeypatch.setattr(_programs.Programs, "run", fast_run)


@pytest.fixture
def engine_for(state_dir, fast_ryzenadj):
    """engine_for(root, force=False) -> an Engine on the tree, journal in state_dir."""
    from halotune.tuning.engine import Engine

    def make(root: str, **kw):
        return Engine(RootFS(root), state_dir, **kw)

    return make


# --- killing halotune at a chosen step (crash tests) ---------------------------------------------

class Stepper:
    """Counts the steps of a run; SIGKILLs the process at step `kill_at` (-1: never)."""

    def __init__(self, kill_at: int):
        self.kill_at = kill_at
        self.n = 0
        self.labels: list[str] = []

    def step(self, label: str) -> None:
        self.labels.append(label)
        if self.n == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.n += 1


def _install_steps(stepper: Stepper) -> None:
    write_text = RootFS.write_text
    set_limits = RyzenAdj.set_limits

    def counted_write(self, rel, value):
        stepper.step(f"write {rel} = {value}")
        return write_text(self, rel, value)

    def counted_limits(self, **mw):
        if any(v is not None for v in mw.values()):
            stepper.step("ryzenadj " + " ".join(f"{k}={v}" for k, v in sorted(mw.items())))
        return set_limits(self, **mw)

    class Steps(durable.Faults):
        def check(self, point, path):
            what = "journal" if path.endswith("journal.json") else os.path.basename(path)
            stepper.step(f"{what} {point}")

    RootFS.write_text = counted_write
    RyzenAdj.set_limits = counted_limits
    durable.FAULTS = Steps()


def isolate_environ() -> None:
    """For forked children and workers: no HALOTUNE_* from outside, no daemon to talk to."""
    for k in [k for k in os.environ if k.startswith("HALOTUNE_") and k != "HALOTUNE_SOCKET"]:
        del os.environ[k]
    os.environ.setdefault("HALOTUNE_SOCKET", "/nonexistent/halotune-test.sock")


def run_killed(argv: list[str], kill_at: int, labels_to: str | None = None) -> int:
    """Run main(argv) in a forked child killed at step `kill_at`; returns the wait status.
    With labels_to, the child writes its step labels there (a full run)."""
    from halotune.cli.main import main

    pid = os.fork()
    if pid == 0:   # the child: never returns into pytest
        code = 70
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            isolate_environ()
            stepper = Stepper(kill_at)
            _install_steps(stepper)
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                code = main(argv)
            if labels_to:
                with open(labels_to, "w") as f:
                    json.dump({"rc": code, "labels": stepper.labels}, f)
        except BaseException:
            if labels_to:
                with open(labels_to, "w") as f:
                    json.dump({"rc": 70, "error": traceback.format_exc()}, f)
        finally:
            os._exit(code if isinstance(code, int) else 70)
    _, status = os.waitpid(pid, 0)
    return status


def quiet_main(argv: list[str]) -> tuple[int, str]:
    from halotune.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(argv)
    return rc, out.getvalue()


# --- reporting --------------------------------------------------------------------------------

def pytest_terminal_summary(terminalreporter):
    if CAMPAIGN_REPORT:
        terminalreporter.write_sep("-", "halotune crash campaign")
        for key, line in CAMPAIGN_REPORT.items():
            terminalreporter.write_line(f"{key}: {line}")
