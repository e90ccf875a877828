# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The preflight role: defaults/main.yml and meta/argument_specs.yml agree, its task files are the
two steps playbooks/preflight.yml runs, and the playbooks it validates for are known to the checks.

The rules themselves are Python (plugins/module_utils/_checks*.py), tested as data in
tests/unit/plugins/module_utils/test_validation.py; the role holds no Jinja check any more.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import yaml

from ansible_collections.labhub.platform.plugins.module_utils import _checks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(REPO, "roles", "preflight")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


DEFAULTS = load("defaults", "main.yml")
OPTIONS = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_every_default_is_specified_with_the_same_value():
    assert set(DEFAULTS) <= set(OPTIONS)
    for name, value in DEFAULTS.items():
        assert OPTIONS[name].get("default") == value, name
    for name, option in OPTIONS.items():
        assert option.get("description"), name
        if name not in DEFAULTS:
            # derived from the play (preflight_scope: the play's hosts): described in words, no default
            assert "default" not in option, name


def test_every_variable_is_prefixed_with_the_role_name():
    assert all(name.startswith("preflight_") for name in DEFAULTS)
    assert all(name.startswith("preflight_") for name in OPTIONS)
    assert not os.path.exists(os.path.join(ROLE, "vars", "main.yml")) or all(
        name.startswith("preflight_") for name in load("vars", "main.yml") or {})


def test_no_jinja_check_left_in_the_role():
    """Two steps: the hardware read (facts.yml) and one validation pass (validate.yml)."""
    tasks = sorted(f for f in os.listdir(os.path.join(ROLE, "tasks")))
    assert tasks == ["facts.yml", "main.yml", "validate.yml"]
    with open(os.path.join(ROLE, "tasks", "main.yml")) as handle:
        main = handle.read()
    assert re.findall(r"import_tasks: (\S+\.yml)", main) == ["facts.yml", "validate.yml"]
    validate = load("tasks", "validate.yml")
    assert [list(t)[1] for t in validate] == ["labhub.platform.validate"]
    with open(os.path.join(REPO, "playbooks", "preflight.yml")) as handle:
        plays = yaml.safe_load(handle)
    assert [p["tasks"][0]["ansible.builtin.include_role"]["tasks_from"] for p in plays] == ["facts", "validate"]
    assert plays[1]["hosts"] == "localhost"


def test_preflight_playbook_names_known_checks():
    """Every value preflight_playbook accepts, and every value an entry playbook sets, is a
    playbook labhub.platform.validate knows (plugins/module_utils/_checks.py PLAYBOOKS)."""
    choices = OPTIONS["preflight_playbook"]["choices"]
    assert DEFAULTS["preflight_playbook"] in choices
    assert set(choices) <= set(_checks.PLAYBOOKS)
    used = {}
    for name in os.listdir(os.path.join(REPO, "playbooks")):
        if name.endswith(".yml"):
            with open(os.path.join(REPO, "playbooks", name)) as handle:
                for value in re.findall(r"preflight_playbook: (\S+)", handle.read()):
                    used[name] = value
    assert used == {"site.yml": "site", "add_node.yml": "add_node", "remove_node.yml": "remove_node",
                    "audit_images.yml": "audit_images"}
    assert set(used.values()) <= set(choices)
