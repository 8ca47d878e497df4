"""validate and sweep with a daemon: the API handler inside the daemon, and the CLI as a
client of a real daemon (changes through the holding connection). Backend "simulated"."""

import asyncio
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from halotune.daemon import validate as dv
from halotune.daemon.server import ApiError

from .conftest import PROBE_ARGS, differences, machine_state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = {"backend": "simulated", "preset": "ci", "budget_s": 5, "record": False}


@pytest.fixture
def daemon(sim_root, tmp_path, venv, fast_ryzenadj):
    """The daemon's service object in this process (not serving a socket)."""
    from halotune.daemon.config import DaemonConfig
    from halotune.daemon.service import Daemon
    from halotune.telemetry.sampler import Sampler

    d = Daemon(DaemonConfig(), sim_root, str(tmp_path / "state"), str(tmp_path / "x.sock"))
    d.sampler = Sampler(d.fs)
    yield d
    d.sampler.close()
    d._engine_thread.close(timeout=10)
    d._reader_pool.shutdown(wait=False)
    d._sample_pool.shutdown(wait=False)


def conn():
    return SimpleNamespace(peer=SimpleNamespace(uid=os.getuid(), pid=os.getpid()), holds=set())


def call(daemon, params, c=None):
    return asyncio.run(dv.handle_validate(daemon, c or conn(), params))


def test_handler_validates_under_its_own_hold(daemon, sim_root):
    before = machine_state(sim_root)
    holds_seen = []
    real_apply = daemon.apply_profile

    async def spy(name, reason, **kw):
        holds_seen.append([h["owner"] for h in daemon.holds.values()])
        return await real_apply(name, reason, **kw)
    daemon.apply_profile = spy
    doc = call(daemon, {"profiles": ["llm-efficient"], "rounds": 1, **BASE})
    assert doc["schema"] == "halotune.validate/1" and doc["channel"] == "daemon"
    assert doc["backend"] == "simulated"
    assert [p["name"] for p in doc["profiles"]] == ["llm-efficient", "llm-max"]
    assert doc["profiles"][0]["verdict"] == "pass" and doc["ok"]
    assert holds_seen == [["validate"], ["validate"]]
    assert daemon.holds == {} and daemon.active_profile is None
    kinds = [e["kind"] for e in daemon.events.since(0, 1000)["events"]]
    assert kinds[0] == "hold" and kinds[-1] == "hold" and "validate" in kinds
    assert "apply" in kinds and "rollback" in kinds
    assert differences(before, machine_state(sim_root)) == []


def test_handler_sweeps(daemon, sim_root):
    before = machine_state(sim_root)
    doc = call(daemon, {"sweep": {"tdp": "45:120:75"}, **BASE})
    assert doc["schema"] == "halotune.sweep/1" and doc["channel"] == "daemon"
    assert [p["tdp_w"] for p in doc["points"]] == [45, 120]
    assert doc["points"][1]["tg_tps"] > doc["points"][0]["tg_tps"]
    assert differences(before, machine_state(sim_root)) == []


@pytest.mark.parametrize("params, words", [
    ({}, "exactly one of params.profiles, params.all or params.sweep"),
    ({"profiles": ["llm-max"], "all": True}, "exactly one of"),
    ({"profiles": "llm-max"}, "params.profiles must be a list"),
    ({"all": True, "rounds": 0}, "params.rounds = 0: must be a number between 1 and 20"),
    ({"all": True, "budget_s": 0}, "params.budget_s = 0"),
    ({"all": True, "backend": "gpu"}, "params.backend = 'gpu': choose from auto"),
    ({"sweep": {"tdp": "30:120:15"}}, "params.sweep.tdp 30:120:15: START 30 W is outside the "
                                      "platform's 45-120 W range"),
    ({"profiles": ["nope"]}, 'no profile named "nope"'),
])
def test_handler_refuses_bad_params(daemon, params, words):
    with pytest.raises(ApiError) as ei:
        call(daemon, {**BASE, **params})
    assert words in ei.value.message, ei.value.message
    assert daemon.holds == {}


def test_handler_refuses_while_busy_or_held(daemon):
    other = conn()
    daemon.holds["h1"] = {"owner": "probe", "reason": "measuring", "expires": time.time() + 60,
                          "uid": 0, "pid": 1, "conn": other}
    with pytest.raises(ApiError) as ei:
        call(daemon, {"all": True, **BASE})
    assert ei.value.code == "EBUSY" and "probe: measuring" in ei.value.message
    daemon.holds.clear()
    dv._RUNNING.add(id(daemon))
    try:
        with pytest.raises(ApiError) as ei:
            call(daemon, {"all": True, **BASE})
        assert ei.value.code == "EBUSY" and "already running" in ei.value.message
    finally:
        dv._RUNNING.discard(id(daemon))


def test_cli_goes_through_a_running_daemon(run_cli, sim_root, tmp_path):
    from halotune.daemon.client import Client

    cfg = tmp_path / "daemon.toml"
    cfg.write_text("[daemon]\nsample_interval_s = 0.2\n[api]\nsocket_group = \"\"\n")
    sock = str(tmp_path / "api.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALOTUNE_")}
    env["PYTHONPATH"] = REPO
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "halotune", "daemon", "--root", sim_root,
                                 "--socket", sock, "--state-dir", str(tmp_path / "dstate"),
                                 "--config", str(cfg)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                with Client(sock, timeout=2) as c:
                    if c.call("status"):
                        break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline, "the daemon did not come up"
                time.sleep(0.05)
        before = machine_state(sim_root)
        rc, out, err = run_cli("validate", "llm-efficient", "--root", sim_root, "--socket", sock,
                               "--rounds", "1", "--no-record", "--json", *PROBE_ARGS)
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["channel"] == "daemon" and doc["backend"] == "simulated"
        assert all(r["rollback"]["ok"] for p in doc["profiles"] for r in p["runs"])
        assert differences(before, machine_state(sim_root)) == []
        with Client(sock, timeout=5) as c:
            events = c.call("events", {"since": 0, "limit": 1000})["events"]
            assert c.call("status")["daemon"]["holds"] == []
        msgs = [e["message"] for e in events]
        assert any("hold" in m and "validate" in m for m in msgs)
        assert sum(e["kind"] == "apply" for e in events) == 2      # llm-efficient, llm-max
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_sweep_runs_inside_the_daemon(run_cli, sim_root, tmp_path):
    """The daemon (its api_validate -> handle_validate), serving in a thread of this
    process; `halotune sweep` delegates to it."""
    import threading

    from halotune.daemon.client import Client
    from halotune.daemon.config import DaemonConfig
    from halotune.daemon.service import Daemon

    sock = str(tmp_path / "api.sock")
    cfg = DaemonConfig.model_validate({"daemon": {"sample_interval_s": 0.2},
                                       "api": {"socket_group": ""}})
    d = Daemon(cfg, sim_root, str(tmp_path / "dstate"), sock)
    t = threading.Thread(target=lambda: asyncio.run(d.run()), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with Client(sock, timeout=2) as c:
                    if c.call("status"):
                        break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline and t.is_alive(), "the daemon did not start"
                time.sleep(0.05)
        before = machine_state(sim_root)
        rc, out, err = run_cli("sweep", "--tdp", "45:120:75", "--root", sim_root, "--socket",
                               sock, "--json", *PROBE_ARGS)
        assert rc == 0, err + out[-2000:]
        doc = json.loads(out)
        assert doc["schema"] == "halotune.sweep/1" and doc["channel"] == "daemon"
        assert [p["tdp_w"] for p in doc["points"]] == [45, 120]
        assert all(p["history"]["run_id"] is not None for p in doc["points"])
        assert os.path.exists(tmp_path / "dstate" / "history.db")
        assert differences(before, machine_state(sim_root)) == []
        assert d.holds == {}
    finally:
        d.stop()
        t.join(10)
