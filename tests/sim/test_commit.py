"""A simulated write is one step: a writer killed anywhere leaves the files and the simulated
kernel's state in agreement (as a kernel store() completes or never starts), and the machine
layer reaches the simulator only through the writer the CLI or a test wires."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from halotune.machine.rootfs import RootFS
from halotune.sim import paths, store

POLICY = "sys/devices/system/cpu/cpufreq/policy{n}/scaling_governor"


def _governors_agree(root: str) -> list[str]:
    """Policies whose scaling_governor file differs from the state the simulator holds."""
    state = store.load_state(root)
    apart = []
    for n, pol in enumerate(state["cpu"]["policies"]):
        with open(os.path.join(root, POLICY.format(n=n))) as f:
            if f.read().strip() != pol["governor"]:
                apart.append(f"policy{n}")
    return apart


def test_a_writer_killed_after_the_commit_point_is_finished_by_the_next_reader(
        sim_root, subprocess_env):
    # The child dies (os._exit, as under kill -9) right after the change became durable,
    # before any file shows it.
    child = textwrap.dedent(f"""
        import os, sys
        import halotune.sim
        from halotune.sim import publish
        from halotune.machine.rootfs import RootFS
        halotune.sim.wire()
        publish.publish = lambda root, state: os._exit(9)
        RootFS({sim_root!r}).write_text({POLICY.format(n=18)!r}, "performance")
    """)
    rc = subprocess.run([sys.executable, "-c", child], env=subprocess_env).returncode
    assert rc == 9
    assert os.path.exists(os.path.join(sim_root, paths.PENDING))
    with open(os.path.join(sim_root, POLICY.format(n=18))) as f:
        assert f.read().strip() == "powersave"       # the files lag: the write is half done

    RootFS(sim_root)                                  # the next halotune process finishes it
    assert not os.path.exists(os.path.join(sim_root, paths.PENDING))
    with open(os.path.join(sim_root, POLICY.format(n=18))) as f:
        assert f.read().strip() == "performance"
    assert store.load_state(sim_root)["cpu"]["policies"][18]["governor"] == "performance"
    ok = [e for e in store.read_log(sim_root)
          if e.get("path", "").endswith("policy18/scaling_governor")]
    assert [e["result"] for e in ok] == ["ok"]        # logged exactly once


def test_a_finished_change_is_not_logged_twice(sim_root):
    fs = RootFS(sim_root)
    fs.write_text(POLICY.format(n=3), "performance")
    # A kill after the log line but before the state rename leaves pending.json whose lines
    # are already in the log: finishing it must not repeat them.
    state = store.load_state(sim_root)
    entry = store.write_entry(POLICY.format(n=4), "performance", "ok")
    state["cpu"]["policies"][4]["governor"] = "performance"
    with open(os.path.join(sim_root, paths.WRITES_LOG), "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
    with open(os.path.join(sim_root, paths.PENDING), "w") as f:
        json.dump({"state": state, "log": [entry]}, f)
    store.repair(sim_root)
    lines = [e for e in store.read_log(sim_root) if e.get("path") == POLICY.format(n=4)]
    assert len(lines) == 1
    assert _governors_agree(sim_root) == []


def test_random_kill_9_of_writers_never_splits_files_from_state(sim_root, subprocess_env):
    # Writers toggle every policy's governor; each is SIGKILLed at a random moment.
    child = textwrap.dedent(f"""
        import halotune.sim
        from halotune.machine.rootfs import RootFS
        halotune.sim.wire()
        fs = RootFS({sim_root!r})
        while True:
            for gov in ("performance", "powersave"):
                for n in range(32):
                    fs.write_text({POLICY!r}.format(n=n), gov)
    """)
    rng = random.Random(1234)
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", child], env=subprocess_env)
        time.sleep(0.35 + rng.random() * 0.4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        RootFS(sim_root)      # what any halotune command does first under a simulated root
        assert _governors_agree(sim_root) == []


def test_the_machine_layer_does_not_import_the_simulator(subprocess_env):
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import halotune.machine
        for info in pkgutil.iter_modules(halotune.machine.__path__):
            importlib.import_module("halotune.machine." + info.name)
        print(sorted(m for m in sys.modules if m.startswith("halotune.sim")))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_a_write_under_an_unwired_simulated_root_is_refused(sim_root, subprocess_env):
    code = textwrap.dedent(f"""
        from halotune.machine.rootfs import RootFS
        try:
            RootFS({sim_root!r}).write_text({POLICY.format(n=0)!r}, "performance")
        except RuntimeError as e:
            print("refused:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env, check=True,
                         capture_output=True, text=True).stdout
    assert out.startswith("refused:") and "no simulated kernel is wired" in out
    with open(os.path.join(sim_root, POLICY.format(n=0))) as f:
        assert f.read().strip() == "powersave"
