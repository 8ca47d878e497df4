"""`halotune bench -- CMD...`: run the user's benchmark under watch and keep the evidence.

Hold the daemon (its rules stay still) -> preflight (abort on a failure unless forced) ->
fingerprint -> run the command as the invoking user, sampling telemetry meanwhile -> parse
llama-bench output -> store results, fingerprint and telemetry in history -> check for a
regression. The result is one "halotune.bench/1" document.

llama-bench specifics: `-o jsonl` is added when the user chose no output format (`-o json`
on builds whose --help lacks jsonl), and `--progress` when the build has it, so that each
test's power is averaged over its timed repetitions only: from its first "prompt run" /
"generation run" progress line to the moment its record is printed. Without progress lines
the window runs from the previous record (the first test's includes model load and warm-up);
with `-o json` (printed at the end) it is the whole run. Each window is labelled.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import time
from dataclasses import dataclass

from halotune.machine.rootfs import RootFS

log = logging.getLogger(__name__)

BENCH_SCHEMA = "halotune.bench/1"
LLAMA_BENCH = "llama-bench"
HELP_TIMEOUT_S = 15.0
PARSED_FORMATS = ("json", "jsonl")
_PROGRESS = re.compile(r"benchmark (\d+)/(\d+): (?:prompt|generation) run (\d+)/")
SIMULATED_ENERGY_NOTE = ("power comes from a simulated machine: it is kept in the telemetry "
                         "but never combined with measured throughput into joules per token")


@dataclass
class BenchOptions:
    argv: list[str]
    root: str = "/"
    force: bool = False
    profile: str | None = None
    label: str | None = None
    record: bool = True
    socket: str | None = None
    db_path: str | None = None
    hz: float = 4.0


# --- the command line ----------------------------------------------------------------------------

def is_llama_bench(argv: list[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == LLAMA_BENCH


def option_value(argv: list[str], *names: str) -> str | None:
    """The value after the last occurrence of one of `names` (llama-bench's `-o FMT` style)."""
    value = None
    for i, arg in enumerate(argv[1:], start=1):
        if arg in names and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def prepare_llama_bench(argv: list[str], help_text: str | None) -> tuple[list[str], str, list[str]]:
    """(argv to run, output format, arguments added)."""
    added = []
    fmt = option_value(argv, "-o", "--output")
    if fmt is None:
        fmt = "jsonl" if help_text is None or "jsonl" in help_text else "json"
        added += ["-o", fmt]
    if help_text and "--progress" in help_text and "--progress" not in argv:
        added.append("--progress")
    return [*argv, *added], fmt, added


def model_path(argv: list[str]) -> str | None:
    value = option_value(argv, "-m", "--model")
    if not value or "," in value:
        return None        # none, or several models: no single-model forecast
    return value


# --- the pieces ---------------------------------------------------------------------------------

def _hold(owner: str, reason: str, socket: str | None):
    try:
        from halotune.daemon.client import daemon_hold
    except ImportError:
        return contextlib.nullcontext(None)
    return daemon_hold(owner=owner, reason=reason, path=socket)


def _preflight(fs: RootFS, profile: str | None, model: str | None) -> tuple[dict | None, str | None, bool]:
    """(report, note, failed): a report; or None with why it was skipped (not in this build:
    not a failure) or why it could not run (a failure: an unknown --profile, say)."""
    try:
        from halotune.checks.preflight import run_preflight
    except ImportError as e:
        return None, f"preflight is not available in this build ({e}); the machine was not checked", False
    wanted = {"profile": profile, "model": model}
    try:
        params = inspect.signature(run_preflight).parameters
        kwargs = {k: v for k, v in wanted.items() if k in params and v is not None}
        report = run_preflight(fs, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported, and treated as a failed preflight
        log.debug("preflight", exc_info=True)
        return None, f"preflight could not run: {type(e).__name__}: {e}", True
    if not isinstance(report, dict) or "ready" not in report:
        return None, "preflight returned no verdict", True
    return report, None, not report["ready"]


def preflight_digest(report: dict) -> dict:
    """What a stored run keeps of a preflight report (not its snapshot and fingerprint)."""
    checks = [{k: c.get(k) for k in ("id", "title", "status", "value", "expected", "fix")}
              for c in report.get("checks") or [] if isinstance(c, dict)]
    return {"ready": bool(report.get("ready")), "status": report.get("status"),
            "checks": checks, "warnings": list(report.get("warnings") or [])}


def _watch(fs: RootFS, hz: float, programs):
    try:
        from halotune.probe.watch import TelemetryWatch
    except ImportError as e:
        return None, f"telemetry sampling is not available in this build ({e})"
    return TelemetryWatch(fs, hz=hz, programs=programs), None


class _Progress:
    """Live lines for the user, and the timing of llama-bench's tests for the power windows."""

    def __init__(self, llama: bool, emit):
        self.llama, self.emit = llama, emit
        self.record_times: list[float] = []
        self.timed_start: dict[int, float] = {}      # benchmark index (1-based) -> first timed run

    def __call__(self, stream: str, line: str) -> None:
        now = time.monotonic()
        if self.llama and stream == "stdout" and line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "avg_ts" in obj:
                self.record_times.append(now)
                self._say_record(obj)
                return
        if self.llama and stream == "stderr":
            m = _PROGRESS.search(line)
            if m:
                self.timed_start.setdefault(int(m.group(1)), now)
        if self.emit is not None and line.strip():
            self.emit(line)

    def _say_record(self, obj: dict) -> None:
        if self.emit is None:
            return
        from halotune.probe.llamabench_output import test_name

        try:
            name = test_name(int(obj.get("n_prompt", 0)), int(obj.get("n_gen", 0)),
                             int(obj.get("n_depth") or 0))
            self.emit(f"{name}: {float(obj['avg_ts']):.2f} ± {float(obj.get('stddev_ts', 0)):.2f} t/s")
        except (TypeError, ValueError):
            pass

    def windows(self, n_tests: int, t0: float, t1: float) -> tuple[list[tuple[float, float]], str]:
        """Per-test (start, end) and how they were found."""
        if n_tests and len(self.record_times) == n_tests:
            out, kind = [], "timed_runs"
            for i, end in enumerate(self.record_times):
                start = self.timed_start.get(i + 1)
                if start is None or start > end:
                    start, kind = (self.record_times[i - 1] if i else t0), "between_records"
                out.append((start, end))
            return out, kind
        return [(t0, t1)] * n_tests, "run"


def _tests(records, windows, watch, power_source) -> list[dict]:
    from halotune.history.importer import test_of

    tests = []
    for rec, (start, end) in zip(records, windows):
        t = test_of(rec)
        avg = watch.average_power(start, end) if watch is not None else None
        if power_source == "sysfs" and avg is not None:
            t["avg_power_w"] = round(avg, 2)
            t["joules_per_token"] = round(avg / rec.avg_ts, 4) if rec.avg_ts > 0 else None
        t["power_window_s"] = round(end - start, 3)
        tests.append(t)
    return tests


def measured_tg(tests: list[dict]) -> float | None:
    """tokens/s of the first plain token-generation test (tgN, no depth)."""
    return next((t["tokens_per_s"] for t in tests if t.get("n_prompt") == 0 and t.get("n_gen")
                 and not t.get("n_depth")), None)


def _forecast_error(forecast: dict | None, tests: list[dict]) -> float | None:
    """Measured tg against the forecast's mid-point (checks.forecast: "tg_tokens_per_s_mid",
    or the middle of the "tg_tokens_per_s" [low, high] range), in percent."""
    if not isinstance(forecast, dict):
        return None
    mid = forecast.get("tg_tokens_per_s_mid")
    rng = forecast.get("tg_tokens_per_s")
    if mid is None and isinstance(rng, (list, tuple)) and len(rng) == 2:
        mid = (rng[0] + rng[1]) / 2
    tg = measured_tg(tests)
    if not isinstance(mid, (int, float)) or mid <= 0 or tg is None:
        return None
    return round((tg - mid) / mid * 100.0, 2)


# --- the run ------------------------------------------------------------------------------------

def run_bench(opts: BenchOptions, progress=None) -> dict:
    """Run one benchmark; returns the "halotune.bench/1" document (see the module docstring).
    `progress(text)` receives live lines. Raises UserCommandError when the command cannot be
    started (nothing is recorded then)."""
    from halotune.machine.programs import Programs
    from halotune.machine.usercmd import run_user_command
    from halotune.telemetry.fingerprint import collect_fingerprint

    emit = progress or (lambda text: None)
    fs = RootFS(opts.root)
    programs = Programs(fs)
    llama = is_llama_bench(opts.argv)
    argv, fmt, added = list(opts.argv), None, []
    warnings: list[str] = []
    if llama:
        help_res = None
        try:
            help_res = run_user_command([opts.argv[0], "--help"], timeout=HELP_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the real run reports the error properly
            log.debug("llama-bench --help: %s", e)
        help_text = (help_res.stdout + help_res.stderr) if help_res is not None else None
        argv, fmt, added = prepare_llama_bench(opts.argv, help_text or None)
    doc = {"schema": BENCH_SCHEMA, "status": None, "command": argv, "user_command": list(opts.argv),
           "added_args": added, "llama_bench": llama, "output_format": fmt, "run_as": None,
           "returncode": None, "duration_s": None, "forced": opts.force, "preflight": None,
           "preflight_note": None, "profile": opts.profile, "label": opts.label, "tests": [],
           "model": None, "backend": None, "telemetry": None, "energy_note": None,
           "fingerprint": None, "forecast": None, "forecast_error_percent": None,
           "recorded": None, "regressions": [], "warnings": warnings}
    reason = " ".join(opts.argv)[:200]
    with _hold("bench", reason, opts.socket):
        emit("preflight ...")
        report, note, failed = _preflight(fs, opts.profile, model_path(argv) if llama else None)
        doc["preflight_note"] = note
        if note:
            warnings.append(note)
        if report is not None:
            doc["preflight"] = preflight_digest(report)
            doc["forecast"] = report.get("forecast") if isinstance(report.get("forecast"), dict) else None
        if failed and not opts.force:
            doc["status"] = "aborted"
            if report is not None and isinstance(report.get("fingerprint"), dict):
                doc["fingerprint"] = report["fingerprint"]
            return doc
        if failed:
            warnings.append("preflight failed; running anyway (--force)")
        fingerprint = collect_fingerprint(fs, programs=programs)
        watch, why = _watch(fs, opts.hz, programs)
        if why:
            warnings.append(why)
        live = _Progress(llama, emit)
        emit("running: " + " ".join(argv))
        if watch is not None:
            watch.start()
        t0 = time.monotonic()
        try:
            res = run_user_command(argv, live)
        finally:
            t1 = time.monotonic()
            if watch is not None:
                watch.stop()
    doc.update(returncode=res.returncode, duration_s=res.duration_s,
               run_as=None if res.run_as is None else {"uid": res.run_as.uid,
                                                       "gid": res.run_as.gid,
                                                       "user": res.run_as.name})
    telemetry = watch.summary(t0, t1) if watch is not None else None
    power_source = (telemetry or {}).get("power_source")
    records = []
    if llama and fmt in PARSED_FORMATS:
        from halotune.probe.llamabench_output import NotLlamaBenchOutput, parse_llamabench

        try:
            records = parse_llamabench(res.stdout, source=f"{opts.argv[0]} output")
        except NotLlamaBenchOutput as e:
            warnings.append(str(e))
    elif llama:
        warnings.append(f"llama-bench output format {fmt!r} is not parsed; leave -o out (or use "
                        "-o jsonl) to store per-test results")
    windows, window_kind = live.windows(len(records), t0, t1)
    doc["tests"] = _tests(records, windows, watch, power_source)
    if telemetry is not None:
        telemetry["power_window"] = window_kind if records else "run"
        doc["telemetry"] = telemetry
    if power_source == "simulated":
        doc["energy_note"] = SIMULATED_ENERGY_NOTE
    elif power_source is None and telemetry is not None:
        doc["energy_note"] = telemetry.get("power_null_reason")
    extra = None
    if records:
        from halotune.history.importer import run_fields

        shared = run_fields(records)
        doc["model"], doc["backend"] = shared["model"], shared["backend"]
        extra = {"llama_cpp": shared["llama_cpp"]}
    if extra:
        from halotune.model.fingerprint import merge

        fingerprint = merge(fingerprint, extra)
    doc["fingerprint"] = fingerprint
    doc["forecast_error_percent"] = _forecast_error(doc["forecast"], doc["tests"])
    doc["status"] = "ok" if res.ok else "failed"
    if not res.ok:
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        warnings.append(f"{opts.argv[0]} exited with status {res.returncode}: {tail}")
    if opts.record:
        _store(doc, opts, res, warnings)
    return doc


def _store(doc: dict, opts: BenchOptions, res, warnings: list[str]) -> None:
    from halotune.history import HistoryError, check_regression
    from halotune.history.record import record
    from halotune.history.view import HistoryView

    result = {"command": doc["command"], "returncode": res.returncode,
              "duration_s": res.duration_s, "output_format": doc["output_format"],
              "preflight": doc["preflight"], "forced": opts.force,
              "forecast_error_percent": doc["forecast_error_percent"],
              "energy_note": doc["energy_note"]}
    profile = doc["fingerprint"].get("active_profile") or opts.profile
    try:
        done = record("bench", doc["tests"], fingerprint=doc["fingerprint"], result=result,
                      telemetry=doc["telemetry"], profile=profile, backend=doc["backend"],
                      model=doc["model"], forecast=doc["forecast"], label=opts.label,
                      root=opts.root, socket=opts.socket, db_path=opts.db_path)
    except HistoryError as e:
        warnings.append(f"not recorded: {e}")
        return
    doc["recorded"] = {"ref": done.ref, "id": done.id, "db": done.db, "via": done.via}
    if not doc["tests"]:
        return
    try:
        with HistoryView.open(opts.root, db_path=opts.db_path) as view:
            ref = done.ref if not opts.db_path else str(done.id)
            doc["regressions"] = check_regression(view, ref)
    except HistoryError as e:
        warnings.append(f"regression check skipped: {e}")
