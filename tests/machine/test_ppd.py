"""Coexistence with power-profiles-daemon: which actions are disabled, and when not."""

from halotune.machine.ppd import _plain, coexist, disable_conflicting_actions


class FakePpd:
    def __init__(self, version="0.30", driver="amd_pmf", dpm_enabled=True):
        self.props = {
            "Version": version,
            "Profiles": [{"Profile": "balanced", "Driver": driver}],
            "ActionsInfo": [{"Name": "trickle_charge", "Enabled": True},
                            {"Name": "amdgpu_dpm", "Enabled": dpm_enabled}],
        }
        self.calls = []

    def get(self, prop):
        return self.props[prop]

    def set_action_enabled(self, action, enabled):
        self.calls.append((action, enabled))


def test_amdgpu_dpm_disabled_and_nothing_else():
    ppd = FakePpd()
    msgs = disable_conflicting_actions(ppd)
    assert ppd.calls == [("amdgpu_dpm", False)]
    assert msgs == ["disabled power-profiles-daemon 0.30 action amdgpu_dpm (it would overwrite "
                    "the GPU performance level)"]


def test_already_disabled_is_left_alone():
    ppd = FakePpd(dpm_enabled=False)
    assert disable_conflicting_actions(ppd) == [
        "power-profiles-daemon action amdgpu_dpm is already disabled"]
    assert ppd.calls == []


def test_older_ppd_is_only_reported():
    ppd = FakePpd(version="0.23")
    (msg,) = disable_conflicting_actions(ppd)
    assert "0.23" in msg and "from 0.30" in msg and ppd.calls == []


def test_tuned_ppd_has_nothing_to_disable():
    ppd = FakePpd(driver="tuned")
    (msg,) = disable_conflicting_actions(ppd)
    assert msg.startswith("tuned-ppd") and ppd.calls == []


def test_variants_are_unwrapped():
    assert _plain([{"Name": ("s", "amdgpu_dpm"), "Enabled": ("b", True)}]) == [
        {"Name": "amdgpu_dpm", "Enabled": True}]


def test_no_system_bus_is_not_an_error(monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    assert coexist() == []
