"""Fixtures for the containerd integration tests: a real, private containerd.

``containerd`` (session scope) starts Debian's containerd from
tests/harness/containerd.py on a temp root/state/socket, yields the running
daemon (``.address`` is its socket) and stops it at the end of the session.
Each test uses its own containerd namespace, so tests do not see each other.
"""
from __future__ import annotations

import itertools
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent / "harness", HERE):  # containerd.py; image_archives.py
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from containerd import CONTAINERD, Containerd  # noqa: E402  pylint: disable=wrong-import-position

_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def containerd():
    if not os.path.exists(CONTAINERD) or not shutil.which("ctr"):
        pytest.skip("containerd/ctr not installed (tests/harness/host-packages.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    daemon = Containerd().start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def namespace(containerd, request):
    """A fresh containerd namespace for one test."""
    name = "t%d-%s" % (next(_namespaces), request.node.name.replace("[", "-").replace("]", "")[:40].lower())
    name = "".join(c if c.isalnum() else "-" for c in name)
    # containerd namespaces: alphanumeric words joined by single '.', '_' or '-'.
    yield "-".join(part for part in name.split("-") if part)
