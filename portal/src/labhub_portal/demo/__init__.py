"""``labhub-portal demo``: the portal on embedded SQLite, fed by a SIMULATED cluster (see simulator.py)."""

from .runner import DemoOptions, build_demo, main

__all__ = ["DemoOptions", "build_demo", "main"]
