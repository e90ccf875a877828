# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The preflight role's variables: defaults/main.yml and meta/argument_specs.yml agree."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import yaml

ROLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles", "preflight")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


DEFAULTS = load("defaults", "main.yml")
OPTIONS = load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def test_every_default_is_specified_with_the_same_value():
    assert sorted(DEFAULTS) == sorted(OPTIONS)
    for name, value in DEFAULTS.items():
        assert OPTIONS[name].get("default") == value, name
        assert OPTIONS[name].get("description"), name


def test_every_variable_is_prefixed_with_the_role_name():
    assert all(name.startswith("preflight_") for name in DEFAULTS)
    assert all(name.startswith("preflight_") for name in load("vars", "main.yml"))


def test_every_check_file_is_imported():
    with open(os.path.join(ROLE, "tasks", "main.yml")) as handle:
        main = handle.read()
    imported = set(re.findall(r"import_tasks: (\S+\.yml)", main))
    on_disk = set()
    for sub in ("cluster", "node"):
        on_disk.update("%s/%s" % (sub, f) for f in os.listdir(os.path.join(ROLE, "tasks", sub)))
    on_disk.update(f for f in os.listdir(os.path.join(ROLE, "tasks")) if f.endswith(".yml") and f != "main.yml")
    assert imported == on_disk


def test_every_login_mode_row_lists_variable_names():
    for mode, names in DEFAULTS["preflight_hub_auth_required_vars"].items():
        assert isinstance(names, list), mode
        assert all(re.match(r"^[a-z][a-z0-9_]*$", n) for n in names), (mode, names)
    assert set(DEFAULTS["preflight_hub_auth_test_only_modes"]) <= set(DEFAULTS["preflight_hub_auth_required_vars"])
