"""Recorder: turns periodic pod listings into container sessions (see README, gap rule)."""
