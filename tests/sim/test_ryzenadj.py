"""The RyzenAdj stand-in: run as the installed script, like the real tool."""

from __future__ import annotations

import os
import subprocess

from halotune.machine.ryzenadj import parse_info
from halotune.sim import paths, store
from halotune.sim.ryzenadj import main


def run(root: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(root, paths.RYZENADJ), *args], capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})


def test_info_then_a_limit_change(sim_root):
    info = run(sim_root, "-i")
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert lines[:4] == ["CPU Family: Strix Halo", "SMU BIOS Interface Version: 25",
                         "Version: v0.17.0 ", "PM Table Version: 64020c"]
    assert lines[4] == "|        Name         |   Value   |     Parameter      |"
    assert "| STAPM LIMIT         |   120.000 | stapm-limit        |" in lines
    assert "| TDC LIMIT VDD       |       nan | vrm-current        |" in lines
    before = parse_info(info.stdout)
    assert (before.stapm_limit_w, before.fast_limit_w, before.stapm_value_w) == (120, 140, 98.43)

    set_ = run(sim_root, "--stapm-limit=85000", "--fast-limit", "95000")
    assert set_.returncode == 0
    assert set_.stdout == ("Sucessfully set stapm_limit to 85000\n"
                           "Sucessfully set fast_limit to 95000\n")
    after = parse_info(run(sim_root, "-i").stdout)
    assert (after.stapm_limit_w, after.fast_limit_w, after.slow_limit_w) == (85, 95, 120)
    log = store.read_log(sim_root)
    assert [(e["path"], e["value"], e["result"]) for e in log] == [
        ("ryzenadj:stapm-limit", "85000", "ok"), ("ryzenadj:fast-limit", "95000", "ok")]


def test_refusals_and_bad_command_lines(sim_root, capsys):
    garbage = run(sim_root, "--stapm-limit=lots")
    assert garbage.returncode == 1
    assert "expects an unsigned 32-bit integer value" in garbage.stderr
    # In-process from here on: the same main() the script calls, without a fork each.
    assert main(["--slow-limit=1000", "-i"], sim_root) == 255
    out = capsys.readouterr().out
    assert "set_slow_limit is rejected by SMU" in out and "PM Table" not in out
    assert main(["-a", "70000", "-b75000", "--apu-slow-limit=70000"], sim_root) == 0
    assert main(["--foo"], sim_root) == 1
    assert main(["--stapm-limit"], sim_root) == 1
    assert "requires a value" in capsys.readouterr().err
    assert main(["-i"], os.path.dirname(sim_root)) == 255  # not a simulated machine
    limits = store.load_state(sim_root)["limits"]
    assert (limits["stapm_mw"], limits["fast_mw"], limits["slow_mw"], limits["apu_slow_mw"]) \
        == (70000, 75000, 120000, 70000)
    assert [e["result"] for e in store.read_log(sim_root)] == ["rejected", "ok", "ok", "ok"]
