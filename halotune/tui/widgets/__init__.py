"""The panels of the main screen, one module each."""

from halotune.tui.widgets.bandwidth import BandwidthPanel
from halotune.tui.widgets.cpu import CpuPanel
from halotune.tui.widgets.gpu import GpuPanel
from halotune.tui.widgets.header import HeaderBar
from halotune.tui.widgets.history import HistoryPanel
from halotune.tui.widgets.memory import MemoryPanel
from halotune.tui.widgets.power import PowerPanel
from halotune.tui.widgets.processes import ProcessesPanel
from halotune.tui.widgets.profiles import ProfilesPanel

__all__ = ["BandwidthPanel", "CpuPanel", "GpuPanel", "HeaderBar", "HistoryPanel", "MemoryPanel",
           "PowerPanel", "ProcessesPanel", "ProfilesPanel"]
