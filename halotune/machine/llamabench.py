"""The external `llama-bench` program (llama.cpp tools/llama-bench): what it supports, and runs.

Found like every program halotune runs (machine/programs.py: a configured path, ROOT/usr/local/
bin, ROOT/usr/bin, PATH only for the root "/"), never through an environment variable. Its flags
drift across builds, so they are read from `--help` once per binary (path, mtime and size):
- `-o jsonl` exists since llama.cpp PR #9288 (Sep 2024); older builds: json/csv/md/sql;
- `-fa` takes `on|off|auto` on new builds, `0|1` on old ones (new ones still accept 0/1);
- `-mmp 0|1` is gone from current builds (rejected: "invalid parameter for argument: -mmp"),
  replaced by `-lm/--load-mode`.
A run is a fixed argument vector (no shell) with a timeout; stdout lines are time-stamped as
they arrive, because jsonl prints one flushed line per finished test, which places each test's
timed repetitions in time (the end of the line) for the power integration.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field

from halotune.machine.programs import ProgramError, Programs

NAME = "llama-bench"
HELP_TIMEOUT_S = 15.0

# (path, mtime_ns, size) -> Features: --help is read once per binary and process.
_FEATURES: dict[tuple[str, int, int], "Features"] = {}
_LOCK = threading.Lock()


class LlamaBenchError(ProgramError):
    """llama-bench could not be run, or failed; the message says why (with its stderr tail)."""


@dataclass
class Features:
    path: str
    output_formats: list[str] = field(default_factory=list)
    flash_attn: str | None = None        # "onoff" (on|off|auto), "01" (0|1) or None (no -fa)
    load_mode: bool = False              # -lm/--load-mode
    mmap_flag: bool = False              # -mmp/--mmap (old builds)
    depth: bool = False                  # -d/--n-depth
    list_devices: bool = False
    no_warmup: bool = False
    threads: bool = True                 # -t
    help_text: str = ""

    @property
    def jsonl(self) -> bool:
        return "jsonl" in self.output_formats

    @property
    def output(self) -> str | None:
        """The machine-readable format to ask for: jsonl, else json, else None."""
        if self.jsonl:
            return "jsonl"
        return "json" if "json" in self.output_formats else None


def parse_help(text: str, path: str = NAME) -> Features:
    f = Features(path=path, help_text=text)
    m = re.search(r"--output\s+<([^>]*)>", text)
    if m:
        f.output_formats = [w.strip() for w in m.group(1).split("|") if w.strip()]
    m = re.search(r"(?m)^\s*-fa,\s*--flash-attn\s*(<[^>]*>)?", text)
    if m:
        choices = m.group(1) or ""
        f.flash_attn = "onoff" if "on" in choices else "01"
    f.load_mode = bool(re.search(r"--load-mode\b", text))
    f.mmap_flag = bool(re.search(r"(?m)^\s*-mmp\b", text))
    f.depth = bool(re.search(r"--n-depth\b", text))
    f.list_devices = "--list-devices" in text
    f.no_warmup = "--no-warmup" in text
    f.threads = bool(re.search(r"(?m)^\s*-t,\s*--threads\b", text))
    return f


@dataclass
class Line:
    t: float          # time.monotonic() when the line arrived
    text: str


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    lines: list[Line]
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stderr_tail(self, n: int = 6) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-n:])


class LlamaBench:
    def __init__(self, programs: Programs):
        self.programs = programs
        self._path: str | None = None

    @property
    def path(self) -> str:
        """The binary (raises ProgramNotFound / ProgramRefused with the places looked at)."""
        if self._path is None:
            self._path = self.programs.resolve(NAME)
        return self._path

    def features(self) -> Features:
        path = self.path
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        with _LOCK:
            cached = _FEATURES.get(key)
        if cached is not None:
            return cached
        run = self.run(["--help"], timeout=HELP_TIMEOUT_S)
        text = run.stdout + "\n" + run.stderr
        if "--n-prompt" not in text and "--repetitions" not in text:
            raise LlamaBenchError(f"{path} --help does not look like llama-bench's help "
                                  f"(exit {run.returncode}): {text.strip()[:200]!r}")
        feats = parse_help(text, path)
        with _LOCK:
            _FEATURES[key] = feats
        return feats

    def devices(self) -> list[str] | None:
        """Device lines of `--list-devices` (empty: CPU only), or None when not supported."""
        if not self.features().list_devices:
            return None
        run = self.run(["--list-devices"], timeout=HELP_TIMEOUT_S)
        out = []
        for line in run.stdout.splitlines():
            s = line.strip()
            # "Vulkan0: AMD Radeon Graphics (RADV GFX1151) (65536 MiB, 60000 MiB free)"
            if re.match(r"^[A-Za-z]+\d+:\s", s):
                out.append(s)
        return out

    def bench_args(self, model: str, n_prompt: int, n_gen: int, n_depth: int, reps: int,
                   threads: int | None = None, n_gpu_layers: int | None = 99,
                   flash_attn: bool | None = None, mmap: bool | None = None) -> list[str]:
        """The argument vector (without the program) for one round, built from what this
        build supports. Raises LlamaBenchError for a request the build cannot express."""
        f = self.features()
        out = f.output
        if out is None:
            raise LlamaBenchError(f"{f.path} offers neither -o jsonl nor -o json "
                                  f"(formats: {', '.join(f.output_formats) or 'none found'})")
        args = ["-m", model, "-p", str(n_prompt), "-n", str(n_gen), "-r", str(reps), "-o", out]
        if n_depth:
            if not f.depth:
                raise LlamaBenchError(f"{f.path} has no -d/--n-depth (too old for a depth test)")
            args += ["-d", str(n_depth)]
        if threads is not None and f.threads:
            args += ["-t", str(threads)]
        if n_gpu_layers is not None:
            # Older builds default to 99, newer to -1 (all); say it explicitly.
            args += ["-ngl", str(n_gpu_layers)]
        if flash_attn is not None and f.flash_attn:
            # 0/1 is understood by both the old and the new syntax.
            args += ["-fa", "1" if flash_attn else "0"]
        if mmap is not None:
            if f.load_mode:
                args += ["--load-mode", "mmap" if mmap else "none"]
            elif f.mmap_flag:
                args += ["-mmp", "1" if mmap else "0"]
        return args

    def run(self, args: list[str], timeout: float) -> Run:
        """Run llama-bench with a fixed argument vector; stdout lines time-stamped on arrival.
        A timeout kills the process group and raises LlamaBenchError."""
        import subprocess  # off the import path of commands that never run a program

        argv = [self.path, *args]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, errors="replace",
                                    start_new_session=True)
        except OSError as e:
            raise LlamaBenchError(f"{argv[0]}: {e.strerror}") from None
        lines: list[Line] = []
        err_chunks: list[str] = []

        def read_out():
            for text in proc.stdout:
                lines.append(Line(time.monotonic(), text.rstrip("\n")))

        def read_err():
            err_chunks.append(proc.stderr.read())

        readers = [threading.Thread(target=read_out, daemon=True),
                   threading.Thread(target=read_err, daemon=True)]
        for r in readers:
            r.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            for r in readers:
                r.join(2.0)
            raise LlamaBenchError(
                f"{argv[0]} did not finish within {timeout:g} s (killed); command: "
                f"{' '.join(argv)}") from None
        for r in readers:
            r.join(5.0)
        ended = time.monotonic()
        stdout = "\n".join(ln.text for ln in lines)
        return Run(argv, proc.returncode, stdout, "".join(err_chunks), lines, started, ended)


def _kill(proc) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)   # our own child's session (start_new_session)
    except OSError:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except Exception:  # noqa: BLE001 - best effort after a kill
        pass


def clear_cache() -> None:
    """Forget the --help results (tests)."""
    with _LOCK:
        _FEATURES.clear()
