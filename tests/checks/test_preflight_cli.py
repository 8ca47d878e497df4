"""`halotune preflight` on the simulated machine: the exit codes scripts use, the JSON
document, and the done-when of the issue (0 clean; 2 with a competing GPU client or a hot
machine, naming the cause)."""

from __future__ import annotations

from .conftest import add_process, sim_edit


def args(root, state_dir, *extra):
    return ["preflight", "--root", root, "--state-dir", state_dir, "--window", "0.05", *extra]


def test_clean_machine_exits_0(run_cli, idle_root, state_dir):
    r = run_cli(*args(idle_root, state_dir, "--json"))
    assert r.rc == 0, r
    doc = r.json()
    assert doc["schema"] == "halotune.preflight/1" and doc["ready"] is True
    assert doc["snapshot"]["gpus"][0]["gfx_target"] == "gfx1151"
    assert "fingerprint" in doc


def test_competing_gpu_client_exits_2_naming_it(run_cli, idle_root, state_dir):
    add_process(idle_root, 31337, "comfyui", ["python3", "main.py"], drm=True)
    r = run_cli(*args(idle_root, state_dir, "--json"))
    assert r.rc == 2, r
    failed = [c for c in r.json()["checks"] if c["status"] == "fail"]
    assert [c["id"] for c in failed] == ["gpu_clients"]
    assert "comfyui (pid 31337" in failed[0]["value"]


def test_hot_machine_exits_2_naming_it(run_cli, idle_root, state_dir):
    def hot(state):
        m = state["smu"]["metrics"]
        m["temperature_gfx"] = m["temperature_soc"] = 9400
    sim_edit(idle_root, hot)
    r = run_cli(*args(idle_root, state_dir))
    assert r.rc == 2, r
    assert "NOT READY" in r.out
    line = next(ln for ln in r.out.splitlines() if "FAIL" in ln)
    assert "Temperatures" in line and "94.0 °C" in line


def test_warnings_exit_1_only_under_strict(run_cli, idle_root, state_dir):
    sim_edit(idle_root, lambda s: s["smu"]["metrics"].update(temperature_gfx=7000))
    assert run_cli(*args(idle_root, state_dir)).rc == 0
    r = run_cli(*args(idle_root, state_dir, "--strict"))
    assert r.rc == 1 and "READY, with warnings" in r.out


def test_text_report_lists_every_check(run_cli, idle_root, state_dir):
    r = run_cli(*args(idle_root, state_dir))
    assert r.rc == 0 and r.out.startswith("halotune preflight: READY")
    for title in ("GPU idle", "No other GPU clients", "No LLM servers running", "On AC power",
                  "GPU memory", "TDP limits"):
        assert title in r.out


def test_allow_lets_a_server_run(run_cli, idle_root, state_dir):
    add_process(idle_root, 777, "llama-server", ["llama-server", "-m", "m.gguf"])
    assert run_cli(*args(idle_root, state_dir)).rc == 2
    assert run_cli(*args(idle_root, state_dir, "--allow", "llama-server")).rc == 0


def test_model_and_forecast_in_text(run_cli, idle_root, state_dir, tmp_path):
    from .conftest import write_gguf

    path = write_gguf(str(tmp_path / "m.gguf"))[0]
    r = run_cli(*args(idle_root, state_dir, "--model", path, "--ctx", "2048"))
    assert r.rc == 0, r
    assert "Forecast for halotune-test: token generation" in r.out
    assert "2048 tokens" in r.out


def test_usage_errors_exit_64(run_cli, idle_root, state_dir, tmp_path):
    assert run_cli(*args(idle_root, state_dir, "--ctx", "0")).rc == 64
    assert run_cli(*args(idle_root, state_dir, "--window", "soon")).rc == 64
    bad = tmp_path / "t.toml"
    bad.write_text("[thermal]\nlimit_c = 'hot'\n")
    r = run_cli(*args(idle_root, state_dir, "--thresholds", str(bad)))
    assert r.rc == 64 and "thermal.limit_c = 'hot': must be a number" in r.err


def test_no_amd_gpu_exits_3(run_cli, empty_root, state_dir):
    r = run_cli(*args(empty_root, state_dir))
    assert r.rc == 3 and "no AMD GPU" in r.err
