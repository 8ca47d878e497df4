"""The external llama-bench backend against the stand-in (tests/fixtures/fake-llama-bench):
flag detection from --help (jsonl vs json, -fa syntax, -mmp vs --load-mode, -d), the command
line built from it, rounds of -r R, timeouts, failures and garbage output, and a whole probe."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from halotune.machine import llamabench as mlb
from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS
from halotune.probe.backends import make_backend
from halotune.probe.backends.base import BackendError, BackendUnavailable, TestCase
from halotune.probe.backends.llamabench import LlamaBenchBackend

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_DIR = os.path.join(TESTS, "fixtures", "fake-llama-bench")
OUTPUTS = os.path.join(TESTS, "fixtures", "llama-bench")


@pytest.fixture
def lb_root(tmp_path, monkeypatch):
    """A root whose usr/local/bin holds the stand-in llama-bench; its argv log."""
    root = tmp_path / "root"
    bindir = root / "usr" / "local" / "bin"
    bindir.mkdir(parents=True)
    for name in os.listdir(FAKE_DIR):
        shutil.copy(os.path.join(FAKE_DIR, name), bindir / name)
    os.chmod(bindir / "llama-bench", 0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LLAMA_BENCH_DIR", OUTPUTS)
    monkeypatch.setenv("FAKE_LLAMA_BENCH_LOG", str(log))
    monkeypatch.setenv("FAKE_LLAMA_BENCH_TIME_SCALE", "0.01")
    for k in ("FAKE_LLAMA_BENCH_MODE", "FAKE_LLAMA_BENCH_DEVICES"):
        monkeypatch.delenv(k, raising=False)
    mlb.clear_cache()
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return {"root": str(root), "log": log, "model": str(model),
            "programs": Programs(RootFS(str(root)))}


def argv_log(env) -> list[list[str]]:
    if not env["log"].exists():
        return []
    return [json.loads(line) for line in env["log"].read_text().splitlines()]


# --- --help detection ------------------------------------------------------------------------

def test_features_of_the_current_build(lb_root):
    f = mlb.LlamaBench(lb_root["programs"]).features()
    assert f.path == os.path.join(lb_root["root"], "usr/local/bin/llama-bench")
    assert f.output_formats == ["csv", "json", "jsonl", "md", "sql"]
    assert f.output == "jsonl"
    assert f.flash_attn == "onoff"
    assert f.load_mode and not f.mmap_flag
    assert f.depth and f.list_devices and f.threads


def test_features_of_an_old_build(lb_root, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "old")
    f = mlb.LlamaBench(lb_root["programs"]).features()
    assert f.output == "json" and not f.jsonl
    assert f.flash_attn == "01"
    assert f.mmap_flag and not f.load_mode
    assert not f.depth and not f.list_devices


def test_parse_help_of_the_real_build_text():
    with open(os.path.join(FAKE_DIR, "llama-bench-0c1e570-help.txt")) as fh:
        f = mlb.parse_help(fh.read())
    assert (f.output, f.flash_attn, f.load_mode, f.mmap_flag, f.depth) == \
        ("jsonl", "onoff", True, False, True)


def test_help_is_read_once_per_binary(lb_root):
    for _ in range(3):
        mlb.LlamaBench(lb_root["programs"]).features()
    assert argv_log(lb_root).count(["--help"]) == 1
    # a new binary (another mtime) is asked again
    path = os.path.join(lb_root["root"], "usr/local/bin/llama-bench")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    mlb.LlamaBench(lb_root["programs"]).features()
    assert argv_log(lb_root).count(["--help"]) == 2


def test_not_llama_bench_help_is_refused(tmp_path):
    root = tmp_path / "r"
    (root / "usr/bin").mkdir(parents=True)
    fake = root / "usr/bin/llama-bench"
    fake.write_text("#!/bin/sh\necho 'usage: something else'\n")
    fake.chmod(0o755)
    mlb.clear_cache()
    with pytest.raises(BackendUnavailable, match="does not look like llama-bench"):
        LlamaBenchBackend(Programs(RootFS(str(root))))


# --- the command line ------------------------------------------------------------------------

def test_args_for_the_current_build(lb_root):
    lb = mlb.LlamaBench(lb_root["programs"])
    args = lb.bench_args("m.gguf", 64, 0, 0, 3, threads=1, flash_attn=True, mmap=False)
    assert args == ["-m", "m.gguf", "-p", "64", "-n", "0", "-r", "3", "-o", "jsonl", "-t", "1",
                    "-ngl", "99", "-fa", "1", "--load-mode", "none"]
    assert "-d" in lb.bench_args("m.gguf", 0, 16, 256, 2)


def test_args_for_an_old_build(lb_root, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "old")
    lb = mlb.LlamaBench(lb_root["programs"])
    args = lb.bench_args("m.gguf", 0, 16, 0, 2, flash_attn=False, mmap=False)
    assert args[args.index("-o") + 1] == "json"
    assert args[-4:] == ["-fa", "0", "-mmp", "0"]
    with pytest.raises(mlb.LlamaBenchError, match="no -d/--n-depth"):
        lb.bench_args("m.gguf", 0, 16, 256, 2)


def test_the_stand_in_rejects_what_the_real_builds_reject(lb_root, monkeypatch):
    lb = mlb.LlamaBench(lb_root["programs"])
    run = lb.run(["-m", lb_root["model"], "-mmp", "0"], timeout=20)
    assert run.returncode == 1 and "invalid parameter for argument: -mmp" in run.stderr
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "old")
    run = lb.run(["-m", lb_root["model"], "-o", "jsonl"], timeout=20)
    assert run.returncode == 1


# --- measuring -------------------------------------------------------------------------------

def test_a_round_returns_the_samples_with_windows(lb_root, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_BENCH_TIME_SCALE", "1.0")    # sleep the modelled 0.43 s
    be = LlamaBenchBackend(lb_root["programs"], threads=1)
    be.load(lb_root["model"], 512)
    t_before = time.monotonic()
    reps = be.measure(TestCase(n_gen=16), 4, warmup=True)
    assert len(reps) == 4
    assert all(140 < r.tokens_per_s < 160 for r in reps)        # FAKE tg 150 +- 1 %
    run = be.runs[-1]
    assert run.argv[1:] == ["-m", lb_root["model"], "-p", "0", "-n", "16", "-r", "4", "-o",
                            "jsonl", "-t", "1", "-ngl", "99"]
    # windows back to back, ending when the test's line arrived, inside the process's life
    for a, b in zip(reps, reps[1:]):
        assert b.t0 == pytest.approx(a.t1)
    assert t_before <= reps[0].t0 and reps[-1].t1 <= run.ended
    for r in reps:
        assert r.t1 - r.t0 == pytest.approx(16 / r.tokens_per_s, rel=1e-3)
    info = be.info()
    assert info.build == "0c1e570 (1)" and info.device == "CPU" and info.cpu_backend is True


def test_depth_round(lb_root):
    be = LlamaBenchBackend(lb_root["programs"])
    be.load(lb_root["model"], 4096)
    reps = be.measure(TestCase(n_gen=16, n_depth=512), 2, warmup=True)
    assert len(reps) == 2
    argv = be.runs[-1].argv
    assert argv[argv.index("-d") + 1] == "512" and argv[argv.index("-p") + 1] == "0"


def test_old_build_json_with_banners(lb_root, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "old")
    be = LlamaBenchBackend(lb_root["programs"], flash_attn=True, mmap=False)
    assert be.supports_depth is False
    be.load(lb_root["model"], 512)
    reps = be.measure(TestCase(n_prompt=64), 3, warmup=True)
    assert len(reps) == 3 and all(490 < r.tokens_per_s < 510 for r in reps)
    argv = be.runs[-1].argv
    assert argv[argv.index("-o") + 1] == "json" and "-mmp" in argv and "--load-mode" not in argv
    assert be.info().device == "Vulkan"


def test_timeout_kills_and_says_so(lb_root, monkeypatch):
    be = LlamaBenchBackend(lb_root["programs"], timeout_s=1.0)
    be.load(lb_root["model"], 512)
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "hang")
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"did not finish within 1 s \(killed\)"):
        be.measure(TestCase(n_gen=16), 2, warmup=True)
    assert time.monotonic() - t0 < 10


def test_garbage_output_is_a_clear_error(lb_root, monkeypatch):
    be = LlamaBenchBackend(lb_root["programs"])
    be.load(lb_root["model"], 512)
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "garbage")
    with pytest.raises(BackendError, match="not llama-bench output"):
        be.measure(TestCase(n_gen=16), 2, warmup=True)


def test_failure_reports_exit_code_and_stderr(lb_root, monkeypatch):
    be = LlamaBenchBackend(lb_root["programs"])
    be.load(lb_root["model"], 512)
    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "fail")
    with pytest.raises(BackendError, match=r"(?s)failed \(exit 1\).*failed to load model"):
        be.measure(TestCase(n_gen=16), 2, warmup=True)


def test_missing_model_file(lb_root):
    be = LlamaBenchBackend(lb_root["programs"])
    with pytest.raises(BackendError, match="no such model file"):
        be.load(os.path.join(lb_root["root"], "nope.gguf"), 512)


# --- finding it ------------------------------------------------------------------------------

def test_not_found_names_where_it_looked(tmp_path, monkeypatch, lb_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    # An environment variable must not choose what halotune runs.
    monkeypatch.setenv("HALOTUNE_LLAMA_BENCH",
                       os.path.join(lb_root["root"], "usr/local/bin/llama-bench"))
    fs = RootFS(str(empty))
    with pytest.raises(BackendUnavailable, match="llama-bench not found.*usr/local/bin"):
        make_backend("llama-bench", fs, Programs(fs))


def test_configured_path_is_used(tmp_path, lb_root):
    empty = tmp_path / "empty2"
    empty.mkdir()
    fs = RootFS(str(empty))
    path = os.path.join(lb_root["root"], "usr/local/bin/llama-bench")
    be = make_backend("llama-bench", fs, Programs(fs, {"llama-bench": path}))
    assert be.features.path == path


def test_threads_follow_the_device_list(lb_root, monkeypatch):
    from halotune.probe.backends import physical_cores

    fs = RootFS(lb_root["root"])
    cores = physical_cores()
    be = make_backend("auto", fs, lb_root["programs"])
    assert be.name == "llama-bench" and be.cpu_hint is True
    assert be.threads == max(1, cores - 1)
    monkeypatch.setenv("FAKE_LLAMA_BENCH_DEVICES",
                       "Vulkan0: AMD Radeon 8060S (RADV GFX1151) (65536 MiB, 60000 MiB free)")
    be = make_backend("auto", fs, lb_root["programs"])
    assert be.cpu_hint is False and be.threads == cores
    be = make_backend("auto", fs, lb_root["programs"], threads=7)
    assert be.threads == 7 and be.threads_reason == "--threads"


# --- a whole probe through llama-bench -------------------------------------------------------

@pytest.fixture(scope="module")
def ci_model(tmp_path_factory):
    from halotune.probe.gguf_model import PRESETS, ensure_model

    return ensure_model(PRESETS["ci"], cache_dir=str(tmp_path_factory.mktemp("models")))


def test_whole_probe_through_llama_bench(lb_root, ci_model, tmp_path, monkeypatch):
    from halotune.probe.runner import ProbeOptions, probe

    streams = []
    monkeypatch.setattr("halotune.probe.bandwidth.read_bandwidth",
                        lambda threads: streams.append(threads) or 20e9)
    doc = probe(ProbeOptions(root=lb_root["root"], backend="llama-bench", model=ci_model.path,
                             budget_s=3, calibration_path=str(tmp_path / "cal.json")))
    assert doc["schema"] == "halotune.probe/1" and doc["backend"] == "llama-bench"
    names = [t["name"] for t in doc["tests"]]
    assert names[0].startswith("pp") and names[1].startswith("tg") and "@ d" in names[2]
    for t in doc["tests"]:
        assert len(t["samples"]) % 3 == 0                   # rounds of -r 3
        assert t["cv_percent"] is not None
        assert t["joules_per_token"] is None                # no AMD GPU under this root
    assert doc["model"]["sha256"] == ci_model.sha256
    assert doc["backend_info"]["build"] == "0c1e570 (1)"
    runs = [a for a in argv_log(lb_root) if "-m" in a]
    assert all(a[a.index("-o") + 1] == "jsonl" for a in runs)
    # calibration (pp64, tg8), then the frozen spec: a second probe does not calibrate
    n_before = len(runs)
    doc2 = probe(ProbeOptions(root=lb_root["root"], backend="llama-bench", model=ci_model.path,
                              budget_s=3, calibration_path=str(tmp_path / "cal.json")))
    assert doc2["spec"]["source"] == "frozen"
    # the measured peak is frozen with the test: measured once, then reused
    assert len(streams) == 1
    assert doc["roofline"]["source"].startswith("measured: read-only stream")
    assert doc2["roofline"]["source"].startswith(doc["roofline"]["source"] + "; frozen 20")
    assert doc2["roofline"]["peak_bytes_per_s"] == doc["roofline"]["peak_bytes_per_s"] == 20e9
    assert [t["name"] for t in doc2["tests"]] == names
    runs2 = [a for a in argv_log(lb_root) if "-m" in a][n_before:]
    assert not any(a[a.index("-n") + 1] == "8" for a in runs2)


def test_old_build_probe_skips_the_depth_point(lb_root, ci_model, tmp_path, monkeypatch):
    from halotune.probe.runner import ProbeOptions, probe

    monkeypatch.setenv("FAKE_LLAMA_BENCH_MODE", "old")
    doc = probe(ProbeOptions(root=lb_root["root"], backend="llama-bench", model=ci_model.path,
                             budget_s=2, calibration_path=str(tmp_path / "cal.json"),
                             measure_bandwidth=False))
    assert all(t["n_depth"] == 0 for t in doc["tests"])
    assert any("no -d/--n-depth" in w for w in doc["warnings"])
