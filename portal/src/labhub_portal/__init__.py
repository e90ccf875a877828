"""Labhub usage portal: records JupyterHub single-user pods, bills CPU/GPU hours, stops servers,
syncs a MySQL report table and serves an API (and, via labhub_portal.web, a browser UI)."""

__version__ = "0.1.0"
