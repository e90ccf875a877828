# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The validation rules as data: every case in validation_cases/*.yaml.

Each case is an inventory (groups, variables, optional hardware facts) and the rows the
validation phase must print for it. The runner builds the same view of the variables the
action plugin labhub.platform.validate builds in a play (every role's defaults under the
inventory's values, templated by Ansible's own Templar) and runs the playbook's checks.

Case keys:
  id:        unique name
  playbook:  entry playbook whose checks run (default site)
  checks:    only these checks (default: the playbook's)
  groups:    {group: [hosts]} replacing the base single-node inventory's groups
  vars:      variables of every host (over the base variables)
  hostvars:  {host: {variable: value}}
  hardware:  {host: preset name (see HARDWARE) or a facts dict}
  options:   playbook arguments given as extra vars ({node: w1}, {labhub_render_dir: /tmp/r})
  expect:    rows the case must produce: [{variable, host?, problem?}] ("problem" is a
             substring); [] means the inventory is valid (no row at all)
  exact:     true: no row beyond the expected ones (default: true when expect is [])
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import glob
import os

import pytest
import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.labhub.platform.plugins.action.validate import (
    _LazySite,
    load_known_names,
    load_role_defaults,
    load_role_specs,
)
from ansible_collections.labhub.platform.plugins.module_utils import _checks
from ansible_collections.labhub.platform.plugins.module_utils._validation import REDACTED, is_secret, truthy

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
CASE_FILES = sorted(glob.glob(os.path.join(HERE, "validation_cases", "*.yaml")))

# The base inventory every case starts from: one valid control-plane node.
BASE_GROUPS = {"all": ["cp1"], "labhub_cluster": ["cp1"], "labhub_control_plane": ["cp1"]}
BASE_VARS = {
    "ansible_host": "10.0.0.11",
    "labhub_bundle_dir": "/srv/labhub/bundle",
    # The portal is installed by default and needs its own secrets (distinct, strong).
    "portal_database_password": "4f1d0c9e8b7a6d5c4b3a29181706f5e4d3c2b1a0",
    "portal_token": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    "portal_cookie_secret": "1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c",
}

_DEBIAN = {"id": "debian", "version": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"}
HARDWARE = {
    "cpu": {"os": _DEBIAN, "arch": "x86_64", "memory_mb": 32000, "hostname": "{host}",
            "disk_free": [{"path": "/var", "free_mb": 500000, "exists": True},
                          {"path": "/tmp", "free_mb": 500000, "exists": True}],
            "gpus": {"count": 0, "driver_loaded": False, "nvidia_smi": {"present": False}},
            "infiniband": {"hcas": []}},
    "dgx": {"os": _DEBIAN, "arch": "x86_64", "memory_mb": 2063937, "hostname": "{host}",
            "disk_free": [{"path": "/var", "free_mb": 5000000, "exists": True},
                          {"path": "/tmp", "free_mb": 500000, "exists": True}],
            "gpus": {"count": 8, "driver_loaded": True, "nvidia_smi": {"present": True, "ok": True}},
            "infiniband": {"hcas": [{"name": "mlx5_%d" % i} for i in range(4)]}},
}


def _load_cases():
    cases = []
    for path in CASE_FILES:
        with open(path) as handle:
            for case in yaml.safe_load(handle) or []:
                case["_file"] = os.path.basename(path)
                cases.append(case)
    return cases


CASES = _load_cases()
_LOADER = DataLoader()
_DEFAULTS = load_role_defaults(_LOADER)
_SPECS = load_role_specs(_LOADER)
_KNOWN = load_known_names(_LOADER)


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def build_site(case, tmp_path):
    groups = copy.deepcopy(case.get("groups") or BASE_GROUPS)
    hosts = sorted(set(h for members in groups.values() for h in members))
    groups["all"] = list(groups.get("all") or hosts)
    for host in hosts:
        if host not in groups["all"]:
            groups["all"].append(host)
    raw = {}
    for index, host in enumerate(groups["all"]):
        values = dict(BASE_VARS)
        values["ansible_host"] = "10.0.0.%d" % (11 + index)
        values.update(copy.deepcopy(case.get("vars") or {}))
        values.update(copy.deepcopy((case.get("hostvars") or {}).get(host) or {}))
        values = _trusted(values)
        values.update({"inventory_hostname": host, "groups": groups, "inventory_dir": str(tmp_path),
                       "playbook_dir": os.path.join(REPO, "playbooks"), "omit": "__omit__",
                       "ansible_playbook_python": "/usr/bin/python3"})
        raw[host] = values
    hardware = {}
    for host, spec in (case.get("hardware") or {}).items():
        if isinstance(spec, str):
            facts = copy.deepcopy(HARDWARE[spec])
            facts["hostname"] = host.lower()
            hardware[host] = facts
        else:
            hardware[host] = spec
    loader = _LOADER
    explicit_names = set(BASE_VARS) | set(case.get("vars") or {})
    site = _LazySite(Templar(loader=loader), raw, _DEFAULTS, loader=loader,
                     groups=groups, hardware=hardware, scope=case.get("scope"),
                     playbook=case.get("playbook", "site"), options=case.get("options"))
    site.specs = _SPECS
    site.known_names = _KNOWN
    # Only variables the case (or the base) sets count as set by the inventory.
    site._raw_explicit = {h: explicit_names | set((case.get("hostvars") or {}).get(h) or {}) for h in raw}
    return site


def run_case(case, tmp_path):
    site = build_site(case, tmp_path)
    report = _checks.run(site, case.get("checks"))
    _checks.add_template_errors(report, site.template_errors)
    return report.rows


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, tmp_path):
    rows = run_case(case, tmp_path)
    expect = case.get("expect") or []
    shown = "\n".join("%s | %s | %s | %s" % (r.host, r.variable, r.value, r.problem) for r in rows)
    matched = set()
    for want in expect:
        hits = [i for i, r in enumerate(rows)
                if r.variable == want["variable"]
                and ("host" not in want or r.host == want["host"])
                and want.get("problem", "") in r.problem]
        assert hits, "case %s (%s): no row for %r; rows:\n%s" % (case["id"], case["_file"], want, shown)
        matched.update(hits)
    if case.get("exact", not expect):
        extra = [rows[i] for i in range(len(rows)) if i not in matched]
        assert not extra, "case %s: unexpected rows:\n%s" % (case["id"], "\n".join(map(repr, extra)))
    for row in rows:
        if is_secret(row.variable) and row.value:
            assert row.value == REDACTED, row


def test_case_ids_unique():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_playbook_lists_known_checks():
    for playbook, names in _checks.PLAYBOOKS.items():
        for name in names:
            assert name in _checks.CHECKS, (playbook, name)


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("yes", True), (" On ", True), ("TRUE", True), (1, True), ("1", True),
    ("no", False), ("false", False), ("", False), (0, False), (None, False), ("enabled", False),
])
def test_truthy_reads_booleans_as_ansible_does(value, expected):
    """One reading of on/off settings for every check (the `bool` filter's true words)."""
    assert truthy(value) is expected
