"""Modules run on the managed node: their warnings go into the module result.

ansible-core 2.19 routes module_utils warnings to the controller's Display once anything
controller-side has been imported in the process (``ansible.module_utils._internal.is_controller``),
which happens when the validation tests (tests/unit/plugins/module_utils/test_validation.py) import
Ansible's Templar. Each module test runs with the flag off, as on a managed node.
"""
from __future__ import annotations

import pytest

from ansible.module_utils import _internal


@pytest.fixture(autouse=True)
def _as_on_a_managed_node(monkeypatch):
    monkeypatch.setattr(_internal, "is_controller", False)
