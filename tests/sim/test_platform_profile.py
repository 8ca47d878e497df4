"""Platform profile with one or two handler drivers, per kernel version
(drivers/acpi/platform_profile.c; amd-pmf sps.c; asus-wmi.c)."""

from __future__ import annotations

import os

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import store
from halotune.sim.reboot import reboot
from halotune.sim.tree import lay_out

LEGACY = "sys/firmware/acpi/platform_profile"
CHOICES = "sys/firmware/acpi/platform_profile_choices"
CLASS = "sys/class/platform-profile"
PMF, ASUS = f"{CLASS}/platform-profile-0", f"{CLASS}/platform-profile-1"
TWO = ("amd-pmf", "asus-wmi")
# amd-pmf's slider limits in the simulator (stapm, fast, slow mW): performance and balanced
PERFORMANCE_MW, BALANCED_MW, LOW_POWER_MW = (120000, 140000, 120000), (100000, 120000, 100000), \
    (60000, 70000, 60000)


def machine(tmp_path, kernel: str, handlers=TWO) -> RootFS:
    root = str(tmp_path / "root")
    lay_out(root, kernel=kernel, profile_handlers=handlers)
    return RootFS(root)


def write(fs: RootFS, rel: str, value: str) -> str:
    try:
        fs.write_text(rel, value)
    except OSError as e:
        return {95: "EOPNOTSUPP", 22: "EINVAL", 13: "EACCES", 2: "ENOENT"}[e.errno]
    return "ok"


def limits(fs: RootFS) -> tuple[int, int, int]:
    lim = store.load_state(fs.root)["limits"]
    return lim["stapm_mw"], lim["fast_mw"], lim["slow_mw"]


def test_two_handlers_on_6_12_only_the_first_registers(tmp_path):
    """platform_profile_register before 6.14: a second handler gets -EEXIST; no class dir."""
    fs = machine(tmp_path, "6.12")
    assert not fs.exists(CLASS)
    assert fs.read_bytes(LEGACY) == b"performance\n"
    assert fs.read_bytes(CHOICES) == b"low-power balanced performance\n"
    assert write(fs, LEGACY, "quiet") == "EOPNOTSUPP"          # no hidden choices yet
    assert write(fs, LEGACY, "custom") == "EINVAL"             # not a profile name before 6.14
    assert write(fs, LEGACY, "low-power") == "ok"
    assert limits(fs) == LOW_POWER_MW


@pytest.mark.parametrize("kernel", ["6.14", "6.17"])
def test_two_handlers_lay_out_a_class_device_each(tmp_path, kernel):
    fs = machine(tmp_path, kernel)
    for dev, name, profile, choices in ((PMF, "amd-pmf", "performance",
                                         "low-power balanced performance"),
                                        (ASUS, "asus-wmi", "balanced",
                                         "quiet balanced performance")):
        assert fs.read_bytes(f"{dev}/name") == f"{name}\n".encode()
        assert fs.read_bytes(f"{dev}/profile") == f"{profile}\n".encode()
        assert fs.read_bytes(f"{dev}/choices") == f"{choices}\n".encode()
        assert os.path.islink(os.path.join(fs.root, dev))       # class dirs link into devices
    # they disagree: _aggregate_profiles says custom; the choices are the AND of
    # choices|hidden: amd-pmf hides quiet, asus-wmi has no low-power
    assert fs.read_bytes(LEGACY) == b"custom\n"
    assert fs.read_bytes(CHOICES) == b"quiet balanced performance\n"


def test_legacy_write_sets_every_handler(tmp_path):
    fs = machine(tmp_path, "6.17")
    assert write(fs, LEGACY, "balanced\n") == "ok"
    assert fs.read_text(f"{PMF}/profile") == fs.read_text(f"{ASUS}/profile") == "balanced"
    assert fs.read_text(LEGACY) == "balanced"
    assert limits(fs) == BALANCED_MW
    assert write(fs, LEGACY, "quiet") == "ok"       # hidden in amd-pmf: its power-saver slider
    assert fs.read_text(f"{PMF}/profile") == "quiet"
    assert limits(fs) == LOW_POWER_MW


@pytest.mark.parametrize("value, code", [
    ("custom", "EINVAL"),            # refused by name in platform_profile_store
    ("turbo", "EINVAL"),
    ("max-power", "EINVAL"),         # not a profile name up to 6.18
    ("low-power", "EOPNOTSUPP"),     # asus-wmi lacks it
    ("cool", "EOPNOTSUPP"),
])
def test_legacy_write_refusals(tmp_path, value, code):
    fs = machine(tmp_path, "6.17")
    before = store.load_state(fs.root)
    assert write(fs, LEGACY, value) == code
    assert store.load_state(fs.root)["platform_profile"] == before["platform_profile"]


def test_class_write_sets_one_handler(tmp_path):
    fs = machine(tmp_path, "6.17")
    assert write(fs, f"{PMF}/profile", "balanced") == "ok"      # amd_pmf_profile_set re-sends
    assert limits(fs) == BALANCED_MW
    assert write(fs, f"{ASUS}/profile", "performance") == "ok"
    assert fs.read_text(f"{PMF}/profile") == "balanced"
    assert fs.read_text(f"{ASUS}/profile") == "performance"
    assert fs.read_text(LEGACY) == "custom"
    assert limits(fs) == BALANCED_MW                             # asus-wmi sends no limits
    assert write(fs, f"{PMF}/profile", "quiet") == "ok"          # hidden choice, accepted
    assert write(fs, f"{ASUS}/profile", "quiet") == "ok"
    assert fs.read_text(LEGACY) == "quiet"


@pytest.mark.parametrize("rel, value, code", [
    (f"{PMF}/profile", "custom", "EOPNOTSUPP"),     # a name, but no handler offers it
    (f"{ASUS}/profile", "low-power", "EOPNOTSUPP"),
    (f"{ASUS}/profile", "balanced-performance", "EOPNOTSUPP"),
    (f"{PMF}/profile", "turbo", "EINVAL"),
    (f"{PMF}/name", "asus-wmi", "EACCES"),          # read-only attributes
    (f"{PMF}/choices", "quiet", "EACCES"),
])
def test_class_write_refusals(tmp_path, rel, value, code):
    fs = machine(tmp_path, "6.17")
    before = store.load_state(fs.root)
    assert write(fs, rel, value) == code
    assert store.load_state(fs.root)["platform_profile"] == before["platform_profile"]


def test_one_handler_on_6_17_hides_its_hidden_choices(tmp_path):
    """_remove_hidden_choices for a single handler; the store still accepts them."""
    fs = machine(tmp_path, "6.17", handlers=("amd-pmf",))
    assert fs.read_bytes(CHOICES) == b"low-power balanced performance\n"
    assert fs.read_text(f"{PMF}/name") == "amd-pmf"
    assert not fs.exists(ASUS)
    assert write(fs, LEGACY, "balanced-performance") == "ok"
    assert fs.read_text(LEGACY) == "balanced-performance"
    assert limits(fs) == PERFORMANCE_MW


def test_reboot_keeps_the_handlers_and_resets_their_profiles(tmp_path):
    fs = machine(tmp_path, "6.17")
    assert write(fs, LEGACY, "quiet") == "ok"
    reboot(fs.root)
    assert fs.read_text(f"{PMF}/profile") == "performance"
    assert fs.read_text(f"{ASUS}/name") == "asus-wmi"
    assert fs.read_text(f"{ASUS}/profile") == "balanced"


def test_laying_out_again_removes_the_old_handlers(tmp_path):
    machine(tmp_path, "6.17")
    fs = machine(tmp_path, "6.12", handlers=("amd-pmf",))
    assert not fs.exists(CLASS)
    assert not fs.glob("sys/devices/platform/*/platform-profile")
    assert fs.read_text(LEGACY) == "performance"


def test_unknown_handler_is_refused(tmp_path):
    with pytest.raises(ValueError, match="asus"):
        lay_out(str(tmp_path / "root"), profile_handlers=("amd-pmf", "hp-wmi"))


def test_sim_command_lays_out_the_handlers(tmp_path, capsys):
    from halotune.cli.main import main

    root = str(tmp_path / "m")
    assert main(["sim", root, "--kernel", "6.15",
                 "--platform-profile-handlers", "amd-pmf,asus-wmi"]) == 0
    fs = RootFS(root)
    assert fs.read_text(f"{ASUS}/name") == "asus-wmi"
    assert fs.read_text(LEGACY) == "custom"
    assert main(["sim", str(tmp_path / "n"), "--platform-profile-handlers", "amd-pmf,hp"]) == 64
    assert "platform-profile handlers 'amd-pmf,hp'" in capsys.readouterr().err
