"""The real control plane (tests/harness/kube) for the tests in this folder: one per session."""
from __future__ import annotations

import re
import sys
import threading
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
# The renders of the sites this session runs (test_site_<name>.py) and their control planes all
# start together the first time a site is asked for: the renders are ansible runs (cached, see
# sites.py) and the control planes' start-up is mostly waiting, so they overlap. Each site module
# then deploys onto its own control plane, stopped when the module ends.
SITE_HOSTS = {
    "local": {"localhost": "cpu-vm"},
    "example": {**{h: "cpu-vm" for h in ("cp01", "cp02", "cp03", "cpu01", "cpu02")},
                **{h: "dgx-h100" for h in ("gpu01", "gpu02", "gpu03", "gpu04")}},
    "features": {"cp01": "cpu-vm", "gpu01": "dgx-h100", "gpu04": "dgx-h100"},
}


def wanted_sites(session: pytest.Session) -> list[str]:
    names: list[str] = []
    for item in session.items:
        match = re.fullmatch(r"test_site_(\w+)\.py", item.path.name)
        if match and match.group(1) in SITE_HOSTS and match.group(1) not in names:
            names.append(match.group(1))
    return names


@pytest.fixture(scope="session")
def site_renders(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from sites import REPO, features_inventory, start_render  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("sites")
    started = {}
    for name in wanted_sites(request.session):
        inventory = features_inventory(root / "features-inventory") if name == "features" else REPO / "inventories" / name
        started[name] = start_render(name, root / name, inventory, SITE_HOSTS[name])
    yield started
    for proc, state in started.values():
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if state["log"] is not None and not state["log"].closed:
            state["log"].close()


def _start_plane(plane: ControlPlane, errors: list[BaseException]) -> None:
    try:
        plane.start()
    except BaseException as err:  # noqa: BLE001 - re-raised by the site's fixture
        errors.append(err)


@pytest.fixture(scope="session")
def site_planes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """name -> (ControlPlane, start thread, errors of the start)."""
    planes = {}
    for name in wanted_sites(request.session):
        plane = ControlPlane(tmp_path_factory.mktemp(f"kube-{name}") / "plane")
        errors: list[BaseException] = []
        thread = threading.Thread(target=_start_plane, args=(plane, errors), name=f"start {name}", daemon=True)
        thread.start()
        planes[name] = (plane, thread, errors)
    yield planes
    for plane, thread, _errors in planes.values():
        thread.join(timeout=120)
        plane.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    deploy = sys.modules.get("deploy")
    if deploy is not None and deploy.TIMINGS:
        terminalreporter.section("kube sites: seconds per step")
        for site, steps in deploy.TIMINGS.items():
            terminalreporter.write_line(f"{site}: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
