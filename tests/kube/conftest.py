"""The real control plane (tests/harness/kube) for the tests in this folder: one per session."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness" / "kube"
for _path in (HARNESS, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from controlplane import ControlPlane  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


# -- Labhub sites (tests/kube/sites.py, cluster.py, deploy.py): one control plane per site --------
# The three renders start together the first time a site is asked for (they are ansible runs of
# 10 to 60 s that overlap with the control planes' start-up); each site module then gets its own
# control plane, stopped when the module ends.
SITE_HOSTS = {
    "local": {"localhost": "cpu-vm"},
    "example": {**{h: "cpu-vm" for h in ("cp01", "cp02", "cp03", "cpu01", "cpu02")},
                **{h: "dgx-h100" for h in ("gpu01", "gpu02", "gpu03", "gpu04")}},
    "features": {"cp01": "cpu-vm", "gpu01": "dgx-h100", "gpu04": "dgx-h100"},
}


@pytest.fixture(scope="session")
def site_renders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from sites import REPO, features_inventory, start_render  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("sites")
    inventories = {"local": REPO / "inventories" / "local", "example": REPO / "inventories" / "example",
                   "features": features_inventory(root / "features-inventory")}
    started = {name: start_render(name, root / name, inventories[name], SITE_HOSTS[name]) for name in SITE_HOSTS}
    yield started
    for proc, state in started.values():
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if state["log"] is not None and not state["log"].closed:
            state["log"].close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    deploy = sys.modules.get("deploy")
    if deploy is not None and deploy.TIMINGS:
        terminalreporter.section("kube sites: seconds per step")
        for site, steps in deploy.TIMINGS.items():
            terminalreporter.write_line(f"{site}: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
