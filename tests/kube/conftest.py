"""The real control plane (tests/harness/kube) for the tests in this folder: one per session."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness" / "kube"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))

from controlplane import ControlPlane  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
