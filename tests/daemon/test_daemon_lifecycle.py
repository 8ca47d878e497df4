"""The service's life: clean stop (rollback or not), recovery after a crash mid-apply, one
daemon per state directory and per socket, configuration errors, the example config."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import typing

import pytest

from halotune.daemon import config as daemon_config

from .conftest import EXAMPLE_CONFIG, machine_digest, read, wait_for

SWAPPINESS = "proc/sys/vm/swappiness"


def test_sigterm_rolls_back_to_the_original_machine(start_daemon, sim_root):
    original = machine_digest(sim_root)
    d = start_daemon()
    result = d.call("apply", {"profile": "llm-max"})
    assert result["ok"], result
    assert read(sim_root, SWAPPINESS) == "10"
    assert machine_digest(sim_root) != original
    assert d.stop(signal.SIGTERM) == 0
    assert machine_digest(sim_root) == original
    assert not os.path.exists(d.socket)


def test_restore_on_exit_false_keeps_the_profile(start_daemon, sim_root):
    d = start_daemon("[daemon]\nrestore_on_exit = false\n")
    assert d.call("apply", {"profile": "llm-max"})["ok"]
    assert d.stop(signal.SIGTERM) == 0
    assert read(sim_root, SWAPPINESS) == "10"
    governor = "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    assert read(sim_root, governor) == "performance"


def _crash_mid_apply(root: str, state_dir: str) -> int:
    """Apply llm-max through the engine in a forked child that dies (os._exit) right after
    its first sysfs write, as kill -9 would. Returns the child's exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            from halotune.machine.rootfs import RootFS
            from halotune.tuning.engine import Engine
            from halotune.tuning.loader import ProfileStore

            real = RootFS.write_text

            def write_then_die(self, rel, value):
                real(self, rel, value)
                os._exit(9)

            RootFS.write_text = write_then_die
            Engine(RootFS(root), state_dir).apply(ProfileStore().load("llm-max"))
        finally:
            os._exit(3)                      # the write never came: a test bug
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_restart_after_a_crash_mid_apply_recovers_the_journal(start_daemon, sim_root, tmp_path):
    original = machine_digest(sim_root)
    state_dir = str(tmp_path / "crashed-state")
    assert _crash_mid_apply(sim_root, state_dir) == 9
    assert machine_digest(sim_root) != original            # half applied
    d = start_daemon(state_dir=state_dir)
    assert machine_digest(sim_root) == original            # undone before serving
    ev = d.wait_event(lambda e: e["kind"] == "rollback" and "unfinished" in e["message"],
                      what="the recovery event")
    assert "restored" in ev["message"]
    assert d.profile() is None


def test_second_daemon_on_the_same_state_dir_refuses(start_daemon, tmp_path):
    first = start_daemon()
    second = start_daemon(state_dir=first.state_dir, wait=False)
    assert second.proc.wait(15) == 2
    err = second.stderr()
    assert f"pid {first.pid}" in err and first.state_dir in err, err
    assert first.call("hello")["api"] == 1                 # the first one is unharmed


def test_second_daemon_on_the_same_socket_refuses(start_daemon):
    first = start_daemon()
    second = start_daemon(socket=first.socket, wait=False)
    assert second.proc.wait(15) == 2
    assert first.socket in second.stderr()
    assert os.path.exists(first.socket)
    assert first.call("hello")["api"] == 1


def test_bad_config_value_exits_64_naming_file_key_value(tmp_path, sim_root, daemon_env):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[daemon]\nsample_interval_s = 99\n\n[rules.thermal]\nstep_w = 0\n")
    p = subprocess.run([sys.executable, "-m", "halotune", "daemon", "--root", sim_root,
                        "--socket", str(tmp_path / "s"), "--state-dir", str(tmp_path / "st"),
                        "--config", str(cfg)], capture_output=True, text=True, env=daemon_env,
                       timeout=30)
    assert p.returncode == 64
    assert re.search(rf"{re.escape(str(cfg))}: daemon\.sample_interval_s = 99: .*10",
                     p.stderr), p.stderr
    assert f"{cfg}: rules.thermal.step_w = 0: " in p.stderr
    assert not os.path.exists(tmp_path / "s")

    cfg.write_text("[daemon]\nno_such_option = 1\n")
    p = subprocess.run([sys.executable, "-m", "halotune", "daemon", "--check-config",
                        "--config", str(cfg)], capture_output=True, text=True, env=daemon_env,
                       timeout=30)
    assert p.returncode == 64 and f"{cfg}: daemon.no_such_option = 1: " in p.stderr, p.stderr


def _option_names(model, prefix="") -> list[str]:
    """Every option of a pydantic model, recursively (tables, arrays of tables)."""
    from pydantic import BaseModel

    names = []
    for name, field in model.model_fields.items():
        names.append(prefix + name)
        ann = field.annotation
        inner = [ann, *typing.get_args(ann)]
        for t in inner:
            if isinstance(t, type) and issubclass(t, BaseModel):
                names += _option_names(t, prefix + name + ".")
    return names


def _documented(text: str) -> set[str]:
    """Dotted option paths the example shows, commented out or not: every [table],
    [[array]] and `key = value` line, keys placed in the table above them."""
    documented, table = set(), ""
    for line in text.splitlines():
        body = line.lstrip("#").strip()
        m = re.fullmatch(r"\[\[?\s*([A-Za-z0-9_.]+)\s*\]?\]", body)
        if m:
            table = m.group(1)
            parts = table.split(".")
            documented.update(".".join(parts[:i + 1]) for i in range(len(parts)))
            continue
        m = re.match(r"([A-Za-z0-9_]+)\s*=", body)
        if m:
            documented.add(f"{table}.{m.group(1)}" if table else m.group(1))
    return documented


def test_example_config_parses_and_documents_every_option():
    daemon_config.load(EXAMPLE_CONFIG)                     # parses and validates
    with open(EXAMPLE_CONFIG, encoding="utf-8") as f:
        text = f.read()
    names = _option_names(daemon_config.DaemonConfig)
    assert "rules.process.hold_s" in names and "rules.drift.max_backoff_s" in names
    missing = [n for n in names if n not in _documented(text)]
    assert not missing, f"options not documented in {EXAMPLE_CONFIG}: {missing}"


def test_example_config_passes_check_config(daemon_env):
    p = subprocess.run([sys.executable, "-m", "halotune", "daemon", "--check-config",
                        "--config", EXAMPLE_CONFIG], capture_output=True, text=True,
                       env=daemon_env, timeout=30)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_stops_cleanly_too(start_daemon, sim_root, sig):
    d = start_daemon()
    wait_for(lambda: d.call("status")["daemon"]["sample_interval_s"] == pytest.approx(0.2))
    assert d.stop(sig) == 0
