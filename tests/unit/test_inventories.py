# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The shipped inventories (inventories/local, inventories/example) and the entry playbooks.

The inventories are read by the real ``ansible-inventory`` and checked against the rules the
preflight role enforces (so a broken example fails here, before anyone copies it); every group
and ``labhub_*`` variable they use is documented in inventories/README.md; and every entry
playbook passes ``ansible-playbook --syntax-check`` on both inventories.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
INVENTORIES = ["local", "example"]
PLAYBOOKS = ["site.yml", "add_node.yml", "remove_node.yml", "playbooks/preflight.yml"]
GROUPS = ["labhub_cluster", "labhub_control_plane", "labhub_workers", "labhub_gpu_nodes", "labhub_ib_nodes"]

with open(os.path.join(REPO, "roles", "preflight", "defaults", "main.yml")) as _handle:
    DEFAULTS = yaml.safe_load(_handle)


def env():
    out = dict(os.environ)
    out.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".cache", "ansible_collections"),
        "ANSIBLE_ROLES_PATH": os.path.join(REPO, "roles"),
        "ANSIBLE_NOCOLOR": "1",
    })
    return out


def ansible(*args):
    proc = subprocess.run([os.path.join(BIN, args[0])] + list(args[1:]), cwd=REPO, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                          check=False)
    return proc


@pytest.fixture(scope="module", params=INVENTORIES)
def inventory(request):
    """(name, {'groups': {group: [hosts]}, 'hostvars': {host: vars}}) as Ansible reads it."""
    proc = ansible("ansible-inventory", "-i", "inventories/%s" % request.param, "--list", "--export")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)

    def hosts(group):
        node = data.get(group, {})
        found = list(node.get("hosts", []))
        for child in node.get("children", []):
            found += [h for h in hosts(child) if h not in found]
        return found
    groups = dict((g, hosts(g)) for g in GROUPS + ["all"])
    return request.param, {"groups": groups, "hostvars": data["_meta"]["hostvars"]}


def test_every_group_is_defined(inventory):
    name, inv = inventory
    proc = ansible("ansible-inventory", "-i", "inventories/%s" % name, "--graph")
    for group in GROUPS:
        assert "@%s:" % group in proc.stdout, "%s does not define group %s" % (name, group)


def test_control_plane_is_odd_and_groups_do_not_conflict(inventory):
    name, inv = inventory
    groups = inv["groups"]
    assert len(groups["labhub_control_plane"]) % 2 == 1
    for pair in DEFAULTS["preflight_conflicting_groups"]:
        assert not set(groups[pair[0]]) & set(groups[pair[1]]), pair
    for rule in DEFAULTS["preflight_group_within"]:
        assert set(groups[rule["group"]]) <= set(groups[rule["within"]]), rule


def test_example_is_an_ha_cluster_with_gpu_and_ib_nodes(inventory):
    name, inv = inventory
    groups = inv["groups"]
    if name == "local":
        assert groups["all"] == ["localhost"] and groups["labhub_control_plane"] == ["localhost"]
        assert groups["labhub_gpu_nodes"] == [] and groups["labhub_ib_nodes"] == []
    else:
        assert len(groups["labhub_control_plane"]) == 3
        assert groups["labhub_gpu_nodes"] and set(groups["labhub_gpu_nodes"]) <= set(groups["labhub_workers"])
        assert groups["labhub_ib_nodes"]
        assert set(groups["labhub_workers"]) - set(groups["labhub_gpu_nodes"]), "no CPU-only worker"


def _group_vars(name):
    """{variable: value} of every group_vars/host_vars file of inventory ``name``."""
    found = {}
    top = os.path.join(REPO, "inventories", name)
    for sub in ("group_vars", "host_vars"):
        for dirpath, _dirs, files in os.walk(os.path.join(top, sub)):
            for fname in files:
                with open(os.path.join(dirpath, fname)) as handle:
                    found.update(yaml.safe_load(handle) or {})
    return found


@pytest.mark.parametrize("name", INVENTORIES)
def test_variables_follow_the_preflight_rules(name):
    variables = _group_vars(name)
    for var in DEFAULTS["preflight_boolean_vars"]:
        if var in variables:
            assert isinstance(variables[var], bool), var
    modes = variables["jupyterhub_auth_modes"]
    table = DEFAULTS["preflight_hub_auth_required_vars"]
    assert modes and all(m in table and m not in DEFAULTS["preflight_hub_auth_test_only_modes"] for m in modes)
    for mode in modes:
        for var in table[mode]:
            assert variables.get(var), "%s needs %s" % (mode, var)
    if "gpu_operator_driver_mode" in variables:
        assert variables["gpu_operator_driver_mode"] in DEFAULTS["preflight_gpu_driver_modes"]


@pytest.mark.parametrize("name", INVENTORIES)
def test_secrets_are_vault_references(name):
    """A secret in a shipped inventory is a reference to a vault variable, never a value."""
    for var, value in _group_vars(name).items():
        if re.search(r"(secret|password|token|_key)$", var) and not isinstance(value, bool):
            assert re.match(r"^\{\{ *vault_%s *\}\}$" % var, str(value)), "%s=%r" % (var, value)


def test_readme_documents_every_group_and_variable():
    with open(os.path.join(REPO, "inventories", "README.md")) as handle:
        readme = handle.read()
    names = set(GROUPS)
    for name in INVENTORIES:
        names.update(v for v in _group_vars(name) if v.startswith("labhub_"))
    names.update(DEFAULTS["preflight_boolean_vars"])
    for mode_vars in DEFAULTS["preflight_hub_auth_required_vars"].values():
        names.update(mode_vars)
    missing = sorted(n for n in names if "`%s`" % n not in readme)
    assert not missing, "inventories/README.md does not document: %s" % ", ".join(missing)


@pytest.mark.parametrize("name", INVENTORIES)
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbooks_pass_syntax_check(name, playbook):
    proc = ansible("ansible-playbook", playbook, "-i", "inventories/%s" % name, "--syntax-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("wrapper", ["site.yml", "add_node.yml", "remove_node.yml"])
def test_root_playbooks_are_thin_wrappers(wrapper):
    with open(os.path.join(REPO, wrapper)) as handle:
        plays = yaml.safe_load(handle)
    assert plays == [{"name": "Labhub %s" % wrapper[:-4], "ansible.builtin.import_playbook": "playbooks/%s" % wrapper}]


def test_preflight_is_the_first_play_of_every_entry_playbook():
    for playbook in ("site.yml", "add_node.yml", "remove_node.yml"):
        proc = ansible("ansible-playbook", playbook, "-i", "inventories/example", "--list-tasks", "-e", "node=gpu01")
        assert proc.returncode == 0, proc.stderr
        plays = re.findall(r"^  play #\d+ \(([^)]*)\): (.*?)\tTAGS", proc.stdout, re.M)
        names = [p[1] for p in plays]
        preflight = names.index("Preflight | validate the inventory and every node before any change")
        assert preflight == 1, names
        # the plays before it only check arguments on the controller
        assert all(p[0] == "localhost" for p in plays[:preflight])
