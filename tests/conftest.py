"""Shared pytest fixtures for the labhub.platform collection tests.

The collection is imported as ``ansible_collections.labhub.platform`` through the
symlinked collections path that ``make venv`` creates under ``.cache/``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = REPO / ".cache"
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
# A skip or xfail not on tests/skip-allowlist.txt fails the run (shared with the portal and hub suites).
HARNESS = REPO / "tests" / "harness"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))
pytest_plugins = ["labhub_skips"]
# The processes the tests start (ansible-playbook and the Ansible modules it runs) keep the bytecode
# of what they import from AnsiballZ zips, which CPython would otherwise compile on every module
# run: see tests/harness/zipimport_cache/sitecustomize.py.
ZIPIMPORT_CACHE = str(HARNESS / "zipimport_cache")
os.environ.setdefault("LABHUB_ZIPIMPORT_CACHE", str(REPO / ".cache" / "zipimport"))
if ZIPIMPORT_CACHE not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ZIPIMPORT_CACHE, os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The z2jh reference data (values.yaml, values.schema.yaml); see ../shared/reference."""
    ref = Path(os.environ.get("LABHUB_SHARED_REFERENCE", REPO.parent / "shared" / "reference"))
    if not (ref / "z2jh-4.4.0" / "values.schema.yaml").is_file():
        pytest.skip(f"z2jh reference data not found under {ref} (set LABHUB_SHARED_REFERENCE)")
    return ref
