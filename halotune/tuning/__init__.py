"""Profiles and the apply engine: plan, journal, apply, verify, roll back, recover."""
