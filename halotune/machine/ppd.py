"""Coexistence with power-profiles-daemon: ask it to stop managing the GPU's DPM level.

Interface: D-Bus system bus, service and interface org.freedesktop.UPower.PowerProfiles at
/org/freedesktop/UPower/PowerProfiles; properties Version (s), Profiles (aa{sv}, "Driver"),
ActionsInfo (aa{sv}: "Name", "Enabled"); method SetActionEnabled(s action, b enabled), added
in power-profiles-daemon 0.30. Its `amdgpu_dpm` action writes
power_dpm_force_performance_level on every profile change, which would fight halotune. With
tuned-ppd (tuned's drop-in replacement, Driver "tuned") there is no such action to disable.
The bus is reached through jeepney (pure Python), imported only here.
"""

from __future__ import annotations

from typing import Protocol

SERVICE = "org.freedesktop.UPower.PowerProfiles"
PATH = "/org/freedesktop/UPower/PowerProfiles"
CONFLICTING_ACTIONS = ("amdgpu_dpm",)
MIN_MINOR_VERSION = 30


class PpdBus(Protocol):
    def get(self, prop: str): ...
    def set_action_enabled(self, action: str, enabled: bool) -> None: ...


def disable_conflicting_actions(bus: PpdBus) -> list[str]:
    """Disable PPD actions that write what halotune manages. Returns what happened, one
    line each, for the daemon's events."""
    version = str(bus.get("Version"))
    for profile in bus.get("Profiles") or []:
        if str(profile.get("Driver", "")) == "tuned":
            return [f"tuned-ppd {version} provides the power profiles: no GPU action to disable"]
    try:
        minor = int(version.split(".")[1] if "." in version else version)
    except ValueError:
        return [f"power-profiles-daemon reports version {version!r}: cannot tell whether it "
                "can disable its amdgpu_dpm action"]
    if version.split(".")[0] == "0" and minor < MIN_MINOR_VERSION:
        return [f"power-profiles-daemon {version} runs and may overwrite the GPU performance "
                f"level on profile changes (its actions can be disabled from 0.{MIN_MINOR_VERSION})"]
    done = []
    for action in bus.get("ActionsInfo") or []:
        name = str(action.get("Name", ""))
        if name in CONFLICTING_ACTIONS:
            if action.get("Enabled"):
                bus.set_action_enabled(name, False)
                done.append(f"disabled power-profiles-daemon {version} action {name} "
                            "(it would overwrite the GPU performance level)")
            else:
                done.append(f"power-profiles-daemon action {name} is already disabled")
    return done


class JeepneyPpdBus:
    """PpdBus over the system bus with jeepney (blocking; run it off the event loop)."""

    def __init__(self, timeout: float = 2.0):
        from jeepney import DBusAddress
        from jeepney.io.blocking import open_dbus_connection

        self._conn = open_dbus_connection(bus="SYSTEM")
        self._addr = DBusAddress(PATH, bus_name=SERVICE, interface=SERVICE)
        self._props = DBusAddress(PATH, bus_name=SERVICE, interface="org.freedesktop.DBus.Properties")
        self._timeout = timeout

    def _call(self, msg):
        from jeepney.wrappers import unwrap_msg

        return unwrap_msg(self._conn.send_and_get_reply(msg, timeout=self._timeout))

    def get(self, prop: str):
        from jeepney import new_method_call

        (variant,) = self._call(new_method_call(self._props, "Get", "ss", (SERVICE, prop)))
        return _plain(variant)

    def set_action_enabled(self, action: str, enabled: bool) -> None:
        from jeepney import new_method_call

        self._call(new_method_call(self._addr, "SetActionEnabled", "sb", (action, enabled)))

    def close(self) -> None:
        self._conn.close()


def _plain(value):
    """jeepney returns variants as (signature, value) pairs: unwrap them recursively."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return _plain(value[1])
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def coexist() -> list[str]:
    """Best effort at daemon start: never raises (no bus, no PPD, no jeepney: nothing to do)."""
    try:
        bus = JeepneyPpdBus()
    except ImportError:
        return []
    except Exception:  # noqa: BLE001 - no system bus (containers, CI)
        return []
    try:
        return disable_conflicting_actions(bus)
    except Exception as e:  # noqa: BLE001 - PPD absent (ServiceUnknown) or refused
        text = str(e)
        if "ServiceUnknown" in text or "was not provided" in text:
            return []
        return [f"could not ask power-profiles-daemon to disable its GPU action: {text}"]
    finally:
        bus.close()
