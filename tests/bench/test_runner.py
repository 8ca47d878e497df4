"""The bench runner's pieces: llama-bench command line, power windows from its real progress
lines, joules per token from sysfs power, the forecast error."""

from __future__ import annotations

import pytest

from halotune.bench import runner
from halotune.machine.rootfs import RootFS
from halotune.probe.llamabench_output import parse_llamabench
from halotune.probe.watch import Reading, TelemetryWatch
from history.helpers import FIXTURE_JSONL, STANDIN

with open(STANDIN.replace("llama-bench", "help.txt")) as _f:
    HELP_0C1E570 = _f.read()
# An older build: json but no jsonl, no --progress (PR #9288 added jsonl in Sep 2024).
HELP_OLD = ("usage: ./llama-bench [options]\n  -o, --output <csv|json|md|sql>  (default: md)\n"
            "  -mmp, --mmap <0|1>\n")


def test_prepare_adds_jsonl_and_progress_when_the_build_has_them():
    argv, fmt, added = runner.prepare_llama_bench(["llama-bench", "-m", "m.gguf"], HELP_0C1E570)
    assert (fmt, added) == ("jsonl", ["-o", "jsonl", "--progress"])
    assert argv == ["llama-bench", "-m", "m.gguf", "-o", "jsonl", "--progress"]


def test_prepare_respects_the_users_format_and_old_builds():
    argv, fmt, added = runner.prepare_llama_bench(["llama-bench", "-o", "csv"], HELP_0C1E570)
    assert fmt == "csv" and added == ["--progress"]
    argv, fmt, added = runner.prepare_llama_bench(["llama-bench", "--output", "json", "--progress"],
                                                  HELP_0C1E570)
    assert fmt == "json" and added == []
    argv, fmt, added = runner.prepare_llama_bench(["llama-bench"], HELP_OLD)
    assert (fmt, added) == ("json", ["-o", "json"])
    argv, fmt, added = runner.prepare_llama_bench(["llama-bench"], None)   # --help failed
    assert (fmt, added) == ("jsonl", ["-o", "jsonl"])


def test_is_llama_bench_and_model_path():
    assert runner.is_llama_bench(["/opt/llama.cpp/build/bin/llama-bench", "-p", "1"])
    assert not runner.is_llama_bench(["llama-bench.sh"]) and not runner.is_llama_bench([])
    assert runner.model_path(["llama-bench", "-m", "a.gguf"]) == "a.gguf"
    assert runner.model_path(["llama-bench", "-m", "a.gguf,b.gguf"]) is None
    assert runner.model_path(["llama-bench"]) is None


def feed(progress, stream, line, t, monkeypatch):
    monkeypatch.setattr(runner.time, "monotonic", lambda: t)
    progress(stream, line)


def test_windows_from_progress_lines(monkeypatch):
    with open(FIXTURE_JSONL) as f:
        pp_line, tg_line = f.read().splitlines()
    shown = []
    p = runner._Progress(True, shown.append)
    events = [(1.0, "stderr", "llama-bench: benchmark 1/2: starting"),
              (3.0, "stderr", "llama-bench: benchmark 1/2: warmup prompt run"),
              (4.0, "stderr", "llama-bench: benchmark 1/2: prompt run 1/2"),
              (5.0, "stderr", "llama-bench: benchmark 1/2: prompt run 2/2"),
              (6.0, "stdout", pp_line),
              (6.1, "stderr", "llama-bench: benchmark 2/2: starting"),
              (6.5, "stderr", "llama-bench: benchmark 2/2: warmup generation run"),
              (7.0, "stderr", "llama-bench: benchmark 2/2: generation run 1/2"),
              (9.0, "stdout", tg_line)]
    for t, stream, line in events:
        feed(p, stream, line, t, monkeypatch)
    assert p.windows(2, 0.0, 10.0) == ([(4.0, 6.0), (7.0, 9.0)], "timed_runs")
    assert "pp64: 533.06 ± 3.70 t/s" in shown and "tg16: 150.87 ± 1.87 t/s" in shown
    # without progress lines: from the previous record (the first from the start)
    q = runner._Progress(True, None)
    feed(q, "stdout", pp_line, 6.0, monkeypatch)
    feed(q, "stdout", tg_line, 9.0, monkeypatch)
    assert q.windows(2, 0.5, 10.0) == ([(0.5, 6.0), (6.0, 9.0)], "between_records")
    # records not seen live (-o json): the whole run
    assert runner._Progress(True, None).windows(2, 0.5, 10.0) == ([(0.5, 10.0)] * 2, "run")


def test_joules_per_token_from_sysfs_power(reference_root):
    """Real (sysfs) power over each test's window / its tokens per second."""
    with open(FIXTURE_JSONL) as f:
        records = parse_llamabench(f.read())
    watch = TelemetryWatch(RootFS(reference_root), simulated=False)
    for t, watts in ((0.0, 40.0), (4.0, 120.0), (6.0, 90.0), (9.0, 90.0)):
        watch.add(Reading(t, watts, None, 60.0, None, None, None, None, None))
    tests = runner._tests(records, [(4.0, 6.0), (7.0, 9.0)], watch, "sysfs")
    pp, tg = tests
    assert pp["avg_power_w"] == 120.0 and tg["avg_power_w"] == 90.0
    assert pp["joules_per_token"] == pytest.approx(120.0 / 533.05661, abs=1e-4)
    assert tg["joules_per_token"] == pytest.approx(90.0 / 150.8699, abs=1e-4)
    assert pp["power_window_s"] == 2.0
    # simulated power never becomes joules per token
    sim = runner._tests(records, [(4.0, 6.0), (7.0, 9.0)], watch, "simulated")
    assert all(t["joules_per_token"] is None and t["avg_power_w"] is None for t in sim)


def test_forecast_error_against_the_mid_point():
    tests = [{"name": "pp512", "n_prompt": 512, "n_gen": 0, "n_depth": 0, "tokens_per_s": 900.0},
             {"name": "tg128", "n_prompt": 0, "n_gen": 128, "n_depth": 0, "tokens_per_s": 45.0}]
    assert runner._forecast_error({"tg_tokens_per_s": [40.0, 60.0],
                                   "tg_tokens_per_s_mid": 50.0}, tests) == -10.0
    assert runner._forecast_error({"tg_tokens_per_s": [40.0, 50.0]}, tests) == 0.0
    assert runner._forecast_error(None, tests) is None
    assert runner._forecast_error({"tg_tokens_per_s": None}, tests) is None
