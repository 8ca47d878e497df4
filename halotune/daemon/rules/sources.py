"""The event sources the rules read, bundled so a test can hand in fakes."""

from __future__ import annotations

from dataclasses import dataclass

from halotune.machine.eventsources import (ClockSource, PowerSupplySource, UeventSource,
                                           open_uevents)
from halotune.machine.processes import ProcessSource
from halotune.machine.rootfs import RootFS


@dataclass
class Sources:
    processes: ProcessSource
    power: PowerSupplySource
    uevents: UeventSource
    clock: ClockSource

    @classmethod
    def open(cls, fs: RootFS) -> "Sources":
        """The polling implementations over `fs` (udev events on the host when available;
        processes where machine.processes.process_root says)."""
        return cls(ProcessSource.of(fs), PowerSupplySource(fs), open_uevents(fs),
                   ClockSource(fs))

    def close(self) -> None:
        self.uevents.close()
