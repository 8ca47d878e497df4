"""`halotune probe` end to end on the simulated machine: the halotune.probe/1 keys exactly,
the readable table, exit codes (no backend: 2 with the reasons, usage: 64), and that a history
failure never loses the result."""

from __future__ import annotations

import json

import pytest

from halotune.cli import exitcodes
from halotune.cli import main as cli_main
from halotune.probe.document import MODEL_KEYS, PROBE_SCHEMA, ROOFLINE_KEYS, TEST_KEYS, TOP_KEYS


@pytest.fixture
def run_cli(monkeypatch, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_CACHE_HOME", str(state / "cache"))
    monkeypatch.setenv("HALOTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "models-ci"))
    monkeypatch.delenv("HALOTUNE_PRICE_KWH", raising=False)
    sock = str(state / "no-daemon.sock")

    def run(*argv):
        return cli_main.main(["probe", *argv, "--socket", sock])
    return run


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    from halotune.sim.tree import lay_out

    root = str(tmp_path_factory.mktemp("cli-sim") / "root")
    lay_out(root)
    return root


@pytest.fixture
def recorded(monkeypatch):
    calls = []

    def fake_record_run(kind, tests, **kw):
        calls.append((kind, tests, kw))
        return 41 + len(calls)
    monkeypatch.setattr("halotune.history.record_run", fake_record_run)
    return calls


def test_json_document_keys(run_cli, sim_root, capsys, recorded):
    rc = run_cli("--root", sim_root, "--json", "--preset", "ci", "--budget", "3")
    out, err = capsys.readouterr()
    assert rc == exitcodes.OK, err
    assert err == ""                                    # quiet with --json
    doc = json.loads(out)
    assert list(doc)[:len(TOP_KEYS)] == list(TOP_KEYS)
    assert doc["schema"] == PROBE_SCHEMA == "halotune.probe/1"
    assert doc["backend"] == "simulated"
    assert list(doc["model"])[:5] == list(MODEL_KEYS)
    assert list(doc["roofline"])[:3] == list(ROOFLINE_KEYS)
    assert [t["name"] for t in doc["tests"]] == ["pp64", "tg16", "tg16 @ d256"]
    for t in doc["tests"]:
        assert list(t)[:10] == list(TEST_KEYS)
        assert isinstance(t["samples"], list) and t["cv_percent"] is not None
        assert t["joules_per_token"] > 0 and t["avg_power_w"] > 0
    assert doc["stopped_because"] in ("ci_target", "time_budget", "max_reps")
    assert isinstance(doc["duration_s"], float)
    assert doc["fingerprint"]["schema"] == "halotune.fingerprint/1"
    assert doc["roofline"]["tg_efficiency"] > 0
    cost = doc["cost_per_million_tokens"]
    assert cost["price_per_kwh"] == 0.30
    tg = doc["tests"][1]
    assert cost["value"] == pytest.approx(tg["joules_per_token"] * 1e6 / 3.6e6 * 0.30, rel=1e-3)
    # recorded once, as a probe, with the document's tests and fingerprint
    (kind, tests, kw), = recorded
    assert kind == "probe" and tests == doc["tests"] and kw["fingerprint"] == doc["fingerprint"]
    assert kw["backend"] == "simulated" and doc["history"] == {"run_id": 42}
    json.dumps(doc, allow_nan=False)


def test_price_from_the_environment_and_option(run_cli, sim_root, capsys, recorded,
                                               monkeypatch):
    monkeypatch.setenv("HALOTUNE_PRICE_KWH", "0.5")
    assert run_cli("--root", sim_root, "--json", "--preset", "ci", "--budget", "2",
                   "--no-record") == 0
    assert json.loads(capsys.readouterr().out)["cost_per_million_tokens"]["price_per_kwh"] == 0.5
    assert run_cli("--root", sim_root, "--json", "--preset", "ci", "--budget", "2",
                   "--no-record", "--price-kwh", "0.12") == 0
    assert json.loads(capsys.readouterr().out)["cost_per_million_tokens"]["price_per_kwh"] == 0.12
    assert recorded == []                               # --no-record


def test_bad_price_environment_is_a_usage_error(run_cli, sim_root, capsys, monkeypatch):
    monkeypatch.setenv("HALOTUNE_PRICE_KWH", "cheap")
    assert run_cli("--root", sim_root, "--json") == exitcodes.USAGE
    assert "HALOTUNE_PRICE_KWH='cheap'" in capsys.readouterr().err


def test_table_output(run_cli, sim_root, capsys, recorded):
    assert run_cli("--root", sim_root, "--preset", "ci", "--budget", "2") == 0
    out = capsys.readouterr().out
    assert "probe: backend simulated, model halotune-ci-q4_0-s0" in out
    assert "tg16 @ d256" in out and "roofline: tg at" in out
    assert "recorded in history as run 42" in out


def test_history_failure_never_loses_the_result(run_cli, sim_root, capsys, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("database is locked")
    monkeypatch.setattr("halotune.history.record_run", broken)
    assert run_cli("--root", sim_root, "--json", "--preset", "ci", "--budget", "2") == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["tests"] and doc["history"]["run_id"] is None
    assert "could not record the result in history: database is locked" in err


def test_no_backend_is_exit_2_with_the_reasons(run_cli, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = run_cli("--root", str(empty), "--backend", "llama-bench", "--json")
    out, err = capsys.readouterr()
    assert rc == exitcodes.NOT_READY and out == ""
    assert err.startswith("halotune probe: llama-bench not found (looked in ")
    assert "Traceback" not in err


def test_simulated_backend_on_a_real_root_is_exit_2(run_cli, capsys):
    rc = run_cli("--root", "/", "--backend", "simulated", "--json")
    assert rc == exitcodes.NOT_READY
    assert "needs a simulated machine" in capsys.readouterr().err


def test_usage_errors(run_cli, sim_root, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        run_cli("--root", sim_root, "--budget", "0")
    assert e.value.code == exitcodes.USAGE
    with pytest.raises(SystemExit) as e:
        run_cli("--root", sim_root, "--quant", "Q5_K")
    assert e.value.code == exitcodes.USAGE
    assert run_cli("--root", sim_root, "--model", str(tmp_path / "x.gguf"),
                   "--preset", "ci") == exitcodes.USAGE
    assert run_cli("--root", sim_root, "--model", str(tmp_path / "x.gguf")) == \
        exitcodes.NOT_READY
    assert "x.gguf: no such file" in capsys.readouterr().err
    assert run_cli("--root", sim_root, "--preset", "huge", "--no-record") == exitcodes.USAGE
    assert "--preset huge: unknown preset" in capsys.readouterr().err


def test_not_a_gguf_is_a_clear_error(run_cli, sim_root, capsys, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    rc = run_cli("--root", sim_root, "--model", str(bad), "--no-record")
    err = capsys.readouterr().err
    assert rc == exitcodes.NOT_READY
    assert "bad.gguf" in err and "Traceback" not in err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["probe", "--help"])
    out = capsys.readouterr().out
    for opt in ("--json", "--backend", "--model", "--preset", "--quant", "--budget",
                "--ci-target", "--depth", "--n-prompt", "--n-gen", "--threads",
                "--recalibrate", "--price-kwh", "--no-record", "--socket", "--root"):
        assert opt in out
