"""Modal screens: help, the profile picker and the confirmation dialog."""

from halotune.tui.screens.apply import ConfirmDialog, ProfilePicker
from halotune.tui.screens.help import HelpScreen

__all__ = ["ConfirmDialog", "HelpScreen", "ProfilePicker"]
