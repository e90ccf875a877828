# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The shipped inventories (inventories/local, inventories/example) and the entry playbooks.

The inventories are read by the real ``ansible-inventory`` and validated by the real
``labhub.platform.validate`` with the checks playbooks/preflight.yml runs (everything but the
nodes' hardware, which needs the machines), so a broken example fails here, before anyone copies
it; every group and ``labhub_*`` variable they use is documented in inventories/README.md; and
every entry playbook passes ``ansible-playbook --syntax-check`` on both inventories.
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

from ansible_collections.labhub.platform.plugins.module_utils._checks_hub import MODE_REQUIRED
from ansible_collections.labhub.platform.plugins.module_utils._checks_inventory import (
    BOOLEAN_VARS,
    CONFLICTING_GROUPS,
    GROUP_WITHIN,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
INVENTORIES = ["local", "example"]
PLAYBOOKS = ["site.yml", "add_node.yml", "remove_node.yml", "playbooks/preflight.yml"]
GROUPS = ["labhub_cluster", "labhub_control_plane", "labhub_workers", "labhub_gpu_nodes", "labhub_ib_nodes"]

PORTAL_WHEELS = os.path.join(REPO, "tests", "unit", "plugins", "module_utils", "validation_cases", "fixtures",
                             "portal-wheels")
# The site's vault (group_vars/all/vault.yml, created by each site) as inventories/example expects it.
EXAMPLE_VAULT = {
    "vault_jupyterhub_oidc_client_secret": "oidc-client-secret-from-the-vault",
    "vault_portal_database_password": "3f9c1a7e5d2b80464c2e",
    "vault_portal_token": "8e2d4b6f0a1c39575b1d",
    "vault_portal_cookie_secret": "5f7a9c1e3b2d40687a3f",
}
# Extra vars standing in for what only a real site has: its vault, and the bundle's portal wheel.
SITE = {"example": dict(EXAMPLE_VAULT, portal_wheels_src_dir=PORTAL_WHEELS),
        "local": {"portal_wheels_src_dir": PORTAL_WHEELS}}
VALIDATE_PLAY = """---
- name: The checks of playbooks/preflight.yml (no hardware read)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Validate
      labhub.platform.validate:
        playbook: preflight
        scope: "{{ groups['all'] }}"
"""


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
    groups = dict((g, hosts(g)) for g in GROUPS + ["labhub_portal", "all"])
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
    for first, second in CONFLICTING_GROUPS:
        assert not set(groups[first]) & set(groups[second]), (first, second)
    for group, within in GROUP_WITHIN:
        assert set(groups[group]) <= set(groups[within]), (group, within)


def validate(tmp_path, name, extra=None):
    """Rows of labhub.platform.validate (playbook preflight) on inventories/<name>."""
    play = tmp_path / "validate.yml"
    play.write_text(VALIDATE_PLAY)
    report = tmp_path / "rows.json"
    args = ["ansible-playbook", "-i", "inventories/%s" % name, str(play)]
    if extra:
        args += ["-e", json.dumps(extra)]
    proc = subprocess.run([os.path.join(BIN, args[0])] + args[1:], cwd=REPO,
                          env=dict(env(), LABHUB_VALIDATE_REPORT=str(report)), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    assert report.exists(), proc.stdout
    with open(str(report)) as handle:
        rows = json.load(handle)
    return proc, rows


@pytest.mark.parametrize("name", INVENTORIES)
def test_inventory_passes_the_preflight_validation(tmp_path, name):
    """Every check of playbooks/preflight.yml but the hardware: no row, given the site's vault."""
    proc, rows = validate(tmp_path, name, SITE[name])
    assert rows == [], proc.stdout
    assert proc.returncode == 0, proc.stdout
    for secret in EXAMPLE_VAULT.values():
        assert secret not in proc.stdout
    # the validation writes nothing: local's generated secrets are created by the run that uses them
    assert not os.path.exists(os.path.join(REPO, "inventories", name, ".credentials", "portal"))


def test_example_without_its_vault_names_each_secret(tmp_path):
    """Without the site's vault file, the example names exactly the secrets it keeps there."""
    proc, rows = validate(tmp_path, "example", {"portal_wheels_src_dir": PORTAL_WHEELS})
    assert proc.returncode != 0
    assert sorted((r["host"], r["variable"]) for r in rows) == [
        ("cp01", "jupyterhub_oidc_client_secret"), ("cp01", "portal_cookie_secret"),
        ("cp01", "portal_database_password"), ("cp01", "portal_token")]
    assert all(r["value"] in ("", "<secret>") for r in rows)


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
def test_secrets_are_vault_references(name):
    """A secret in a shipped inventory is a reference to a vault variable (vault_<its name>), or
    (local, a one-machine install without a vault) generated on the controller by
    labhub.platform.secret_file into the inventory's .credentials/; never a value."""
    found = 0
    for var, value in _group_vars(name).items():
        if re.search(r"(secret|password|token|_key)$", var) and not isinstance(value, bool):
            found += 1
            text = str(value).strip()
            vault = re.match(r"^\{\{ *vault_%s *\}\}$" % var, text)
            generated = re.match(r"^\{\{ *lookup\('labhub\.platform\.secret_file', *inventory_dir ~ "
                                 r"'/\.credentials/[a-z_/]+'", text)
            assert vault or (name == "local" and generated), "%s=%r" % (var, value)
    assert found >= 3, "the portal's secrets are not set"


def test_readme_documents_every_group_and_variable():
    with open(os.path.join(REPO, "inventories", "README.md")) as handle:
        readme = handle.read()
    names = set(GROUPS)
    for name in INVENTORIES:
        names.update(v for v in _group_vars(name) if v.startswith("labhub_"))
    names.update(BOOLEAN_VARS)
    for pairs in MODE_REQUIRED.values():
        names.update(inventory_name for _role_var, inventory_name in pairs)
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
        hardware = names.index("Preflight | read every node's hardware (read-only)")
        validation = names.index("Preflight | validate everything the playbook will use, before any change")
        assert validation == hardware + 1, names
        assert plays[validation][0] == "localhost"
        # the plays before it only run on the controller (start time, remove_node's argument check
        # when preflight is skipped)
        assert hardware <= 1 and all(p[0] == "localhost" for p in plays[:hardware]), names
