"""`halotune bench -- CMD`: preflight, live run as the user, telemetry, parsing of real-format
llama-bench output (a stand-in printing real 0c1e570 records), and the stored history run."""

from __future__ import annotations

import json
import os
import sys

import pytest

from halotune.history.db import HistoryDB
from halotune.history.record import state_db_path
from history.helpers import STANDIN, cli  # tests/history/helpers.py

BENCH = ["--", STANDIN, "-p", "64", "-n", "16"]


def bench(sim, *args, env=None, monkeypatch=None):
    if env and monkeypatch:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    return cli("bench", "--root", sim, *args)


def stored(sim, ref="@latest"):
    with HistoryDB(state_db_path(sim), readonly=True) as db:
        return db.get_run(ref)


def apply_profile(sim, name):
    from halotune.machine.rootfs import RootFS
    from halotune.tuning.engine import Engine, default_state_dir
    from halotune.tuning.loader import ProfileStore

    Engine(RootFS(sim), default_state_dir(sim)).apply(ProfileStore(None).load(name))


def test_bench_stores_results_fingerprint_and_telemetry(sim):
    r = bench(sim, "--force", "--json", "--label", "first", *BENCH)
    assert r.rc == 0, r
    doc = r.json()
    assert doc["schema"] == "halotune.bench/1" and doc["status"] == "ok"
    assert doc["command"] == [STANDIN, "-p", "64", "-n", "16", "-o", "jsonl", "--progress"]
    assert doc["added_args"] == ["-o", "jsonl", "--progress"]
    assert doc["returncode"] == 0 and doc["duration_s"] > 0.5
    # the records the stand-in printed verbatim (the real run at -p 64 -n 16)
    assert [(t["name"], t["tokens_per_s"], t["stddev"]) for t in doc["tests"]] == [
        ("pp64", 533.05661, 3.698829), ("tg16", 150.8699, 1.865757)]
    assert doc["tests"][1]["samples"] == [152.189, 149.551]
    assert doc["backend"] == "CPU" and doc["model"]["name"] == "S-q4_0.gguf"
    # telemetry sampled during the run; simulated power is kept apart from real throughput
    tel = doc["telemetry"]
    assert tel["samples"] >= 2 and tel["power_source"] == "simulated"
    assert tel["avg_socket_power_w"] == pytest.approx(98.43)
    assert tel["max_temp_c"] is not None
    assert tel["power_window"] == "timed_runs"
    assert all(t["joules_per_token"] is None and t["avg_power_w"] is None for t in doc["tests"])
    assert "simulated" in doc["energy_note"]
    # the preflight ran (and failed on the busy simulated GPU: --force ran anyway)
    if doc["preflight"] is not None:
        assert doc["preflight"]["ready"] is False
        assert "preflight failed; running anyway (--force)" in doc["warnings"]
    fp = doc["fingerprint"]
    assert fp["tdp"] == {"stapm_w": 120.0, "fast_w": 140.0, "slow_w": 120.0}
    assert fp["llama_cpp"] == {"build": "0c1e570 (1)", "backend": "CPU"}
    assert fp["kernel_release"] == "6.17.0-5-generic"
    # stored in the simulated machine's state database
    rec = doc["recorded"]
    assert rec["via"] == "state" and rec["db"] == state_db_path(sim)
    run = stored(sim, rec["ref"])
    assert run["kind"] == "bench" and run["label"] == "first"
    assert run["fingerprint"] == fp
    assert run["telemetry"]["avg_socket_power_w"] == pytest.approx(98.43)
    assert run["result"]["command"] == doc["command"] and run["result"]["returncode"] == 0
    assert [t["tokens_per_s"] for t in run["tests"]] == [533.05661, 150.8699]


def test_text_output_and_live_progress(sim):
    r = bench(sim, "--force", *BENCH)
    assert r.rc == 0, r
    assert "pp64: 533.06 ± 3.70 t/s" in r.err                    # live, per test
    assert "llama-bench: benchmark 2/2: generation run 1/2" in r.err
    lines = r.out.splitlines()
    table = lines[lines.index(next(ln for ln in lines if ln.startswith("TEST"))):]
    assert table[1].split()[:3] == ["pp64", "533.06", "3.70"]
    assert table[2].split()[:3] == ["tg16", "150.87", "1.87"]
    assert "avg socket power 98.4 W (simulated)" in r.out
    assert f"stored: run 1 in {state_db_path(sim)}" in r.out


def test_compare_two_bench_runs_after_a_tdp_change(sim, monkeypatch):
    assert bench(sim, "--force", *BENCH).rc == 0
    apply_profile(sim, "llm-efficient")                 # 85 W STAPM instead of 120 W
    monkeypatch.setenv("STANDIN_SCALE", "0.8")          # and the machine is 20 % slower
    r = bench(sim, "--force", "--json", *BENCH)
    assert r.rc == 0, r
    second = r.json()
    # the regression alarm names what changed
    (alarm_pp, alarm_tg) = second["regressions"]
    assert alarm_tg["test"] == "tg16" and alarm_tg["drop_percent"] == pytest.approx(20.0, abs=0.1)
    assert {"tdp.stapm_w", "active_profile"} <= {c["key"] for c in alarm_tg["changed"]}

    r = cli("history", "--root", sim, "compare", "@previous", "@latest", "--json")
    assert r.rc == 0, r
    cmp = r.json()["compare"]
    changes = {c["key"]: (c["a"], c["b"]) for c in cmp["fingerprint_changes"]}
    assert changes["tdp.stapm_w"] == (120.0, 85.0)
    assert changes["tdp.fast_w"] == (140.0, 100.0)
    assert changes["active_profile"] == (None, "llm-efficient")
    assert "kernel_release" not in changes
    tg = next(t for t in cmp["tests"] if t["name"] == "tg16")
    assert tg["a"]["tokens_per_s"] == 150.8699
    assert tg["tokens_per_s_delta_percent"] == pytest.approx(-20.0, abs=0.01)

    text = cli("history", "--root", sim, "compare", "@previous", "@latest").out
    assert any(ln.startswith("* tdp.stapm_w") and "120" in ln and "85" in ln
               for ln in text.splitlines())
    assert any(ln.startswith("  kernel_release") for ln in text.splitlines())


def test_failed_preflight_aborts_without_force(sim):
    pytest.importorskip("halotune.checks.preflight")
    r = bench(sim, "--json", *BENCH)                    # the simulated GPU is 98 % busy
    assert r.rc == 2, r
    doc = r.json()
    assert doc["status"] == "aborted" and doc["returncode"] is None
    failed = [c["id"] for c in doc["preflight"]["checks"] if c["status"] == "fail"]
    assert failed
    assert doc["recorded"] is None and not os.path.exists(state_db_path(sim))
    assert doc["fingerprint"]["tdp"]["stapm_w"] == 120.0      # the preflight's, as evidence
    r = bench(sim, *BENCH)
    assert r.rc == 2 and "not run: the preflight failed (use --force" in r.out


def test_other_command_stores_duration_and_telemetry(sim):
    r = bench(sim, "--force", "--json", "--", sys.executable, "-c",
              "import time; print('working'); time.sleep(0.6)")
    assert r.rc == 0, r
    doc = r.json()
    assert doc["llama_bench"] is False and doc["added_args"] == [] and doc["tests"] == []
    assert doc["telemetry"]["samples"] >= 2 and doc["telemetry"]["power_window"] == "run"
    run = stored(sim)
    assert run["tests"] == [] and run["result"]["duration_s"] >= 0.6
    assert run["telemetry"]["duration_s"] >= 0.6
    assert "working" in r.err                           # its output shown live


def test_user_chosen_json_output_is_parsed(sim):
    r = bench(sim, "--force", "--json", "--", STANDIN, "-p", "64", "-n", "16", "-o", "json")
    doc = r.json()
    assert doc["added_args"] == ["--progress"] and doc["output_format"] == "json"
    assert [t["name"] for t in doc["tests"]] == ["pp64", "tg16"]
    assert doc["telemetry"]["power_window"] == "run"    # -o json prints at the end


def test_markdown_output_is_kept_but_not_parsed(sim):
    r = bench(sim, "--force", "--json", "--", STANDIN, "-o", "md")
    doc = r.json()
    assert doc["status"] == "ok" and doc["tests"] == []
    assert any("output format 'md' is not parsed" in w for w in doc["warnings"])
    assert stored(sim)["tests"] == []


def test_vulkan_banner_on_stdout_is_tolerated(sim, monkeypatch):
    monkeypatch.setenv("STANDIN_BANNER", "1")
    doc = bench(sim, "--force", "--json", *BENCH).json()
    assert [t["tokens_per_s"] for t in doc["tests"]] == [533.05661, 150.8699]
    assert "ggml_vulkan: Found 1 Vulkan devices:" not in json.dumps(doc["tests"])


def test_failing_command_is_recorded_and_exits_2(sim, monkeypatch):
    monkeypatch.setenv("STANDIN_EXIT", "1")
    r = bench(sim, "--force", "--json", *BENCH)
    assert r.rc == 2
    doc = r.json()
    assert doc["status"] == "failed" and doc["returncode"] == 1
    assert any("exited with status 1" in w for w in doc["warnings"])
    assert stored(sim)["result"]["returncode"] == 1


def test_no_record(sim):
    doc = bench(sim, "--force", "--json", "--no-record", *BENCH).json()
    assert doc["recorded"] is None and len(doc["tests"]) == 2
    assert not os.path.exists(state_db_path(sim))


def test_explicit_database(sim, hist_env):
    db = str(hist_env / "mine.db")
    doc = bench(sim, "--force", "--json", "--db", db, *BENCH).json()
    assert doc["recorded"]["db"] == db and doc["recorded"]["via"] == "file"
    assert cli("history", "--db", db, "--json").json()["runs"][0]["ref"] == "1"


def test_command_errors(sim):
    r = bench(sim, "--force", "--", "no-such-llama-bench", "-p", "1")
    assert r.rc == 2 and "no-such-llama-bench: command not found" in r.err
    assert "Traceback" not in r.err
    r = bench(sim, "--force")
    assert r.rc == 64 and "no command given" in r.err


def test_a_preflight_that_cannot_run_counts_as_failed(sim, monkeypatch):
    preflight = pytest.importorskip("halotune.checks.preflight")

    def broken(fs, **kw):
        raise KeyError("profile 'no-such-profile'")
    monkeypatch.setattr(preflight, "run_preflight", broken)
    r = bench(sim, "--json", "--profile", "no-such-profile", *BENCH)
    assert r.rc == 2 and r.json()["status"] == "aborted"
    assert "preflight could not run: KeyError" in r.json()["preflight_note"]
    r = bench(sim, "--json", "--force", *BENCH)
    assert r.rc == 0 and "preflight failed; running anyway (--force)" in r.json()["warnings"]


def test_without_the_preflight_module_the_run_goes_on_with_a_warning(sim, monkeypatch):
    monkeypatch.setitem(sys.modules, "halotune.checks.preflight", None)    # ImportError
    r = bench(sim, "--json", *BENCH)
    assert r.rc == 0, r
    doc = r.json()
    assert doc["preflight"] is None and "not available in this build" in doc["preflight_note"]
    assert doc["preflight_note"] in doc["warnings"]
