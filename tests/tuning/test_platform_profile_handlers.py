"""power.platform_profile with amd-pmf plus an OEM handler (asus-wmi), per kernel version.

From Linux 6.14 the legacy sys/firmware/acpi/platform_profile reads "custom" when the handlers
disagree and refuses "custom" (EINVAL): the originals must be read and restored per handler
through sys/class/platform-profile/platform-profile-N. Before 6.14 only amd-pmf registers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import pytest

from halotune.machine.rootfs import RootFS
from halotune.sim import ryzenadj, store
from halotune.sim.tree import lay_out

from .conftest import make_profile, read_journal, scratch_dir, tdp_state

LEGACY = "sys/firmware/acpi/platform_profile"
# where the class links point (the simulator's write log records the real path)
PMF_DEVICE = "sys/devices/platform/AMDI0105:00/platform-profile/platform-profile-0"
ASUS_DEVICE = "sys/devices/platform/asus-nb-wmi/platform-profile/platform-profile-1"
PMF, ASUS = ("sys/class/platform-profile/platform-profile-0",
             "sys/class/platform-profile/platform-profile-1")


@pytest.fixture
def two_handlers(tmp_path, request):
    """A machine with amd-pmf and asus-wmi on the kernel `request.param`."""
    base, remove = scratch_dir(tmp_path)
    root = os.path.join(base, "root")
    lay_out(root, kernel=request.param, profile_handlers=("amd-pmf", "asus-wmi"))
    yield root
    if remove:
        shutil.rmtree(base, ignore_errors=True)


def _custom_tdp(root: str) -> None:
    """Limits another tool set, which amd-pmf's re-send on a profile write overrides."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert ryzenadj.main(["--stapm-limit=90000", "--fast-limit=110000",
                              "--slow-limit=95000", "--apu-slow-limit=95000"], root) == 0


def _profile_writes(root: str) -> list[tuple[str, str, str]]:
    return [(e["path"], e["value"], e["result"]) for e in store.read_log(root)
            if "platform-profile" in e.get("path", "") or "platform_profile" in e.get("path", "")]


@pytest.mark.parametrize("two_handlers", ["6.15", "6.17"], indirect=True)
def test_disagreeing_handlers_are_restored_each_to_its_own(two_handlers, engine_for,
                                                           state_dir):
    root, fs = two_handlers, RootFS(two_handlers)
    fs.write_text(f"{ASUS}/profile", "quiet")          # amd-pmf stays at performance
    assert fs.read_text(LEGACY) == "custom"
    _custom_tdp(root)
    tdp_before = tdp_state(root)

    out = engine_for(root).apply(make_profile("bal", **{"power.platform_profile": "balanced"}))
    assert out.ok, (out.summary, out.rows, out.warnings)
    assert fs.read_text(f"{PMF}/profile") == fs.read_text(f"{ASUS}/profile") == "balanced"
    assert read_journal(state_dir)["baseline"]["power.platform_profile"]["state"] == \
        {"amd-pmf": "performance", "asus-wmi": "quiet"}

    back = engine_for(root).rollback()
    assert back.ok, (back.summary, back.rows, back.warnings)
    assert fs.read_text(f"{PMF}/profile") == "performance"
    assert fs.read_text(f"{ASUS}/profile") == "quiet"
    assert fs.read_text(LEGACY) == "custom"
    assert tdp_state(root) == tdp_before                # after amd-pmf re-sent its slider
    # one legacy write sets both; the rollback writes each handler's class device
    assert _profile_writes(root) == [
        (f"{ASUS_DEVICE}/profile", "quiet", "ok"),               # the test's own setup
        (LEGACY, "balanced", "ok"),
        (f"{PMF_DEVICE}/profile", "performance", "ok"),
        (f"{ASUS_DEVICE}/profile", "quiet", "ok")]


@pytest.mark.parametrize("two_handlers", ["6.12"], indirect=True)
def test_before_6_14_only_amd_pmf_is_seen_and_restored(two_handlers, engine_for, state_dir):
    root, fs = two_handlers, RootFS(two_handlers)
    assert not fs.exists("sys/class/platform-profile")
    _custom_tdp(root)
    tdp_before = tdp_state(root)
    out = engine_for(root).apply(make_profile("bal", **{"power.platform_profile": "balanced"}))
    assert out.ok, (out.summary, out.rows, out.warnings)
    assert read_journal(state_dir)["baseline"]["power.platform_profile"]["state"] == \
        "performance"
    back = engine_for(root).rollback()
    assert back.ok, (back.summary, back.rows, back.warnings)
    assert fs.read_text(LEGACY) == "performance"
    assert tdp_state(root) == tdp_before
    assert _profile_writes(root) == [(LEGACY, "balanced", "ok"), (LEGACY, "performance", "ok")]


@pytest.mark.parametrize("two_handlers", ["6.17"], indirect=True)
def test_custom_is_no_target(two_handlers, engine_for):
    from halotune.tuning.engine import EngineError

    with pytest.raises(EngineError, match="custom.*must be one of quiet, balanced, performance"):
        engine_for(two_handlers).apply(make_profile("c", **{"power.platform_profile": "custom"}))


@pytest.mark.parametrize("two_handlers", ["6.17"], indirect=True)
def test_an_old_journal_word_is_restored_through_the_legacy_file(two_handlers, engine_for,
                                                                 state_dir):
    """Journals before per-handler states hold one word: written to the legacy file, which
    sets every handler; a journaled "custom" is refused with a clear message, not written."""
    root, fs = two_handlers, RootFS(two_handlers)
    out = engine_for(root).apply(make_profile("q", **{"power.platform_profile": "quiet"}))
    assert out.ok, out.rows
    path = os.path.join(state_dir, "journal.json")
    journal = json.load(open(path))
    journal["baseline"]["power.platform_profile"]["state"] = "balanced"
    journal.pop("checksum", None)           # as the previous version wrote it (no checksum)
    json.dump(journal, open(path, "w"))
    back = engine_for(root).rollback()
    assert back.ok, (back.summary, back.rows, back.warnings)
    assert fs.read_text(f"{PMF}/profile") == fs.read_text(f"{ASUS}/profile") == "balanced"

    out = engine_for(root).apply(make_profile("q", **{"power.platform_profile": "quiet"}))
    journal = json.load(open(path))
    journal["baseline"]["power.platform_profile"]["state"] = "custom"
    journal.pop("checksum", None)
    json.dump(journal, open(path, "w"))
    back = engine_for(root).rollback()
    assert not back.ok
    assert any("journaled 'custom'" in w and "platform-profile/*/profile" in w
               for w in back.warnings), back.warnings
    assert all(v != "custom" for _p, v, _r in _profile_writes(root))
