"""contrib/ansible/roles/halotune with ansible-playbook -c local against a simulated Strix Halo:
installs halotune (pip, into a venv, from a wheel of this tree), writes its configuration and an
admin profile, installs and enables the unit (systemctl --root, no systemd as PID 1), applies the
profile, exports and fetches the host's history. A second run must change nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from .conftest import REPO, clean_env, copy_tree, need, require_tool

PLAYBOOK = os.path.join(REPO, "contrib", "ansible", "tests", "fleet-test.yml")
ROLES = os.path.join(REPO, "contrib", "ansible", "roles")
PROFILE = """description = "fleet test: llm-max at 100 W"
inherits = "llm-max"

[power]
stapm_w = 100
slow_w = 100
fast_w = 100
"""


def _ansible_playbook() -> str:
    """ansible-playbook: $ANSIBLE_PLAYBOOK (.ci/run sets it), else PATH."""
    explicit = os.environ.get("ANSIBLE_PLAYBOOK")
    if explicit:
        need(os.access(explicit, os.X_OK), f"ANSIBLE_PLAYBOOK={explicit} is not an executable")
        return explicit
    return require_tool("ansible-playbook")


def _recap(out: str, host: str) -> dict[str, int]:
    m = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", out, re.M)
    assert m, out[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


@pytest.fixture(scope="module")
def fleet_host(tmp_path_factory):
    playbook_bin = _ansible_playbook()
    require_tool("systemctl")
    tmp = tmp_path_factory.mktemp("ansible")
    # halotune as a wheel of this tree (built from a copy: no build/ in the checkout)
    src = str(tmp / "src")
    copy_tree(src)
    wheels = str(tmp / "wheels")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "--wheel-dir", wheels, src],
                       capture_output=True, text=True, env=clean_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    from halotune import __version__
    # the simulated machine, with one result in its history
    sim = str(tmp / "sim")
    r = subprocess.run([sys.executable, "-m", "halotune", "sim", sim], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from halotune.history.record import record
    from halotune.machine.rootfs import RootFS
    from halotune.telemetry.fingerprint import collect_fingerprint

    seeded = record("bench", [{"name": "tg16", "model_name": "S-q4_0.gguf",
                               "tokens_per_s": 150.87}],
                    fingerprint=collect_fingerprint(RootFS(sim)), backend="CPU",
                    model={"name": "S-q4_0.gguf"}, root=sim, use_daemon=False)
    assert seeded.via == "state"
    venv_python = os.path.join(os.path.dirname(playbook_bin), "python")
    variables = {
        "halotune_install": "pip",
        "halotune_pip_spec": f"halotune[metrics]=={__version__}",
        "halotune_pip_extra_args": f"--find-links {wheels}",
        "halotune_venv": str(tmp / "venv"),
        "halotune_python": getattr(sys, "_base_executable", sys.executable),
        "halotune_prefix": str(tmp / "prefix"),
        "halotune_root": sim,
        "halotune_config": {"daemon": {"sample_interval_s": 2.0},
                            "metrics": {"enabled": True, "listen": "127.0.0.1:9874"}},
        "halotune_process_rules": [{"name": "LLM servers", "match": ["llama-server"],
                                    "profile": "fleet-test", "hold_s": 30.0}],
        "halotune_profiles": {"fleet-test": PROFILE},
        "halotune_profile": "fleet-test",
        "halotune_history_export": str(tmp / "export.jsonl"),
        "halotune_history_dest": str(tmp / "fetched"),
        "ansible_python_interpreter": venv_python if os.path.exists(venv_python) else sys.executable,
    }
    (tmp / "vars.json").write_text(json.dumps(variables))
    (tmp / "inventory.ini").write_text("halo-a ansible_connection=local\n")
    env = clean_env() | {"ANSIBLE_ROLES_PATH": ROLES, "ANSIBLE_HOME": str(tmp / "ansible-home"),
                         "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0",
                         "ANSIBLE_RETRY_FILES_ENABLED": "0"}

    def play():
        started = time.monotonic()
        r = subprocess.run([playbook_bin, "-c", "local", "-i", str(tmp / "inventory.ini"),
                            "-e", f"@{tmp / 'vars.json'}", PLAYBOOK], capture_output=True,
                           text=True, env=env, timeout=1200, cwd=str(tmp))
        print(f"ansible-playbook: {time.monotonic() - started:.0f} s")
        assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
        return r.stdout

    first = play()
    second = play()
    return {"tmp": tmp, "sim": sim, "seeded": seeded, "first": first, "second": second,
            "vars": variables}


def test_first_run_installs_configures_enables_applies(fleet_host):
    h = fleet_host
    tmp, prefix = h["tmp"], h["vars"]["halotune_prefix"]
    assert _recap(h["first"], "halo-a")["changed"] >= 6
    halotune = str(tmp / "venv" / "bin" / "halotune")
    assert os.access(halotune, os.X_OK)
    toml = open(os.path.join(prefix, "etc/halotune/halotune.toml")).read()
    import tomllib

    config = tomllib.loads(toml)
    assert config["daemon"]["sample_interval_s"] == 2.0 and config["metrics"]["enabled"] is True
    assert config["rules"]["process"][0]["match"] == ["llama-server"]
    unit = open(os.path.join(prefix, "etc/systemd/system/halotune.service")).read()
    assert f"ExecStart={halotune} daemon" in unit
    wants = os.path.join(prefix, "etc/systemd/system/multi-user.target.wants/halotune.service")
    assert os.readlink(wants) == "/etc/systemd/system/halotune.service"
    # the admin profile is in force on the simulated machine (read back by halotune itself)
    r = subprocess.run([halotune, "verify", "--json", "--root", h["sim"]], capture_output=True,
                       text=True, env=clean_env(), cwd=str(tmp))
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["profile"] == "fleet-test" and doc["ok"] is True
    stapm = next(row for row in doc["rows"] if row["key"] == "power.stapm_w")
    assert stapm["after"] == "100 W"


def test_history_fetched_with_the_inventory_name(fleet_host):
    h = fleet_host
    fetched = h["tmp"] / "fetched" / "halo-a.jsonl"
    lines = [json.loads(x) for x in fetched.read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["machine"]["name"] == "halo-a"
    assert lines[0]["tests"][0]["tokens_per_s"] == 150.87
    # the controller merges the fleet's files into one database
    from halotune.history.db import HistoryDB
    from halotune.history.fleet import import_export

    merged = import_export(str(fetched), db_path=str(h["tmp"] / "fleet.db"))
    assert len(merged.added) == 1 and merged.machines == ["halo-a"]
    with HistoryDB(merged.db, readonly=True) as db:
        assert db.get_run(1)["origin"]["machine"]["name"] == "halo-a"


def test_second_run_changes_nothing(fleet_host):
    recap = _recap(fleet_host["second"], "halo-a")
    assert recap["changed"] == 0 and recap["failed"] == 0, fleet_host["second"][-4000:]
