"""The in-process llama-cpp-python backend: a clear "unavailable" without the extra or without
libllama, and the real smoke test (the ci preset: pp64 / tg16 / depth 256) when llama_cpp
imports. The smoke test is what CI runs of the real path; it stays under ~30 s."""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import sys
import time

import pytest

from halotune.machine.programs import Programs
from halotune.machine.rootfs import RootFS
from halotune.probe.backends import make_backend
from halotune.probe.backends.base import BackendUnavailable, TestCase


def _llama_importable() -> bool:
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        importlib.import_module("llama_cpp")
    except (ImportError, OSError):
        return False
    return True


needs_llama = pytest.mark.skipif(not _llama_importable(),
                                 reason="llama-cpp-python (the probe extra) is not importable")


def block_import(monkeypatch, exc):
    real = builtins.__import__

    def fake(name, *a, **kw):
        if name == "llama_cpp" or name.startswith("llama_cpp."):
            raise exc
        return real(name, *a, **kw)

    for mod in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake)


def test_missing_extra_is_unavailable_with_the_fix(monkeypatch):
    from halotune.probe.backends.inprocess import InProcessBackend

    block_import(monkeypatch, ImportError("No module named 'llama_cpp'"))
    with pytest.raises(BackendUnavailable, match=r"pip install 'halotune\[probe\]'"):
        InProcessBackend()


def test_missing_libllama_is_unavailable(monkeypatch):
    from halotune.probe.backends.inprocess import InProcessBackend

    block_import(monkeypatch, FileNotFoundError("Shared library with base name 'llama' not found"))
    with pytest.raises(BackendUnavailable, match="libllama could not be loaded"):
        InProcessBackend()


def test_auto_without_any_backend_names_every_reason(monkeypatch, tmp_path):
    block_import(monkeypatch, ImportError("No module named 'llama_cpp'"))
    fs = RootFS(str(tmp_path))
    with pytest.raises(BackendUnavailable) as e:
        make_backend("auto", fs, Programs(fs))
    msg = str(e.value)
    assert msg.startswith("no probe backend is available")
    assert "llama-bench: llama-bench not found" in msg and "in-process:" in msg


@pytest.fixture(scope="module")
def ci_model(tmp_path_factory):
    from halotune.probe.gguf_model import PRESETS, ensure_model

    return ensure_model(PRESETS["ci"], cache_dir=str(tmp_path_factory.mktemp("models")))


@needs_llama
def test_loop_basics(ci_model):
    from halotune.probe.backends.inprocess import InProcessBackend

    be = InProcessBackend(threads=1, threads_reason="test")
    try:
        assert be.load(ci_model.path, 512) > 0
        assert be.load(ci_model.path, 256) == 0.0          # already loaded, big enough
        pp = be.measure(TestCase(n_prompt=64), 2, warmup=True)
        tg = be.measure(TestCase(n_gen=16), 2, warmup=True)
        depth = be.measure(TestCase(n_gen=16, n_depth=256), 3, warmup=True)
        for reps in (pp, tg, depth):
            assert all(r.tokens_per_s > 0 and r.t1 >= r.t0 for r in reps)
        # the depth prefix is computed once and kept: the cache holds exactly depth + n_gen
        L = be.L
        assert L.llama_memory_seq_pos_max(be._memory(), 0) == 256 + 16 - 1
        info = be.info()
        assert info.name == "inprocess" and info.threads == 1 and info.cpu_backend is True
    finally:
        be.close()


@needs_llama
def test_smoke_probe_ci_preset(ci_model, tmp_path):
    """The real path end to end: pp64, tg16, tg16 @ d256 in-process, with CV and roofline."""
    from halotune.probe.runner import ProbeOptions, probe

    t0 = time.monotonic()
    doc = probe(ProbeOptions(backend="inprocess", model=None, preset="ci", budget_s=8,
                             cache_dir=str(tmp_path / "models"),
                             calibration_path=str(tmp_path / "cal.json")))
    elapsed = time.monotonic() - t0
    assert doc["backend"] == "inprocess"
    assert [t["name"] for t in doc["tests"]] == ["pp64", "tg16", "tg16 @ d256"]
    for t in doc["tests"]:
        assert t["tokens_per_s"] > 0 and t["cv_percent"] is not None
        assert len(t["samples"]) >= 3
    assert 0 < doc["roofline"]["tg_efficiency"]
    assert doc["roofline"]["source"].startswith(("measured", "derived", "default"))
    assert doc["stopped_because"] in ("ci_target", "time_budget", "max_reps")
    assert doc["backend_info"]["threads"] >= 1 and doc["backend_info"]["threads_reason"]
    assert elapsed < 30
