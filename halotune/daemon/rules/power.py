"""Power source (laptops such as the Flow Z13): ac_profile on mains, battery_profile on battery.

Polled every INTERVAL_S over the root; a power_supply uevent (udev on the host, the
simulator's feed otherwise) makes the next sample read at once. No supply at all is a desktop
on AC.
"""

from __future__ import annotations

from halotune.daemon.rules.arbitration import Candidate

INTERVAL_S = 2.0


class PowerRule:
    def __init__(self, rules, config):
        self.rules = rules
        self.config = config
        self.state = None
        self._due = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.config.ac_profile or self.config.battery_profile)

    def kick(self) -> None:
        """A power_supply uevent arrived: read at the next update."""
        self._due = 0.0

    def update(self, now: float) -> None:
        if not self.enabled or now < self._due:
            return
        self._due = now + INTERVAL_S
        state = self.rules.sources.power.read()
        if self.state is None or state.on_ac != self.state.on_ac:
            wants = self._profile(state)
            self.rules.fire("power", f"power source: {state.label} ({state.reason})"
                            + (f", wants {wants}" if wants else ", no profile configured for it"),
                            on_ac=state.on_ac)
        self.state = state

    def _profile(self, state) -> str | None:
        return self.config.ac_profile if state.on_ac else self.config.battery_profile

    def candidate(self, now: float) -> Candidate | None:
        if self.state is None:
            return None
        name = self._profile(self.state)
        if not name:
            return None
        # On battery it outranks the process rules (arbitration.py), on mains it does not.
        return Candidate("power" if self.state.on_ac else "battery", name,
                         f"power source: {self.state.label}")
