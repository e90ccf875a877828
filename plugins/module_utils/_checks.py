# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Which checks each entry playbook runs, and the one function that runs them.

A concern's checks live in ``_checks_<concern>.py`` as ``check_<name>(site, report)``;
register each here under its name, and list the name under every playbook that uses what
it checks. ``labhub.platform.validate`` (action plugin) calls :func:`run`.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.labhub.platform.plugins.module_utils._validation import Report
from ansible_collections.labhub.platform.plugins.module_utils import _checks_inventory as inventory
from ansible_collections.labhub.platform.plugins.module_utils import _checks_hardware as hardware
from ansible_collections.labhub.platform.plugins.module_utils import _checks_specs as specs

# name -> function(site, report)
CHECKS = {
    "topology": inventory.check_topology,
    "booleans": inventory.check_booleans,
    "node_names": inventory.check_node_names,
    "features": inventory.check_features,
    "hardware": hardware.check_hardware,
    "add_node_args": inventory.check_add_node_args,
    "render_args": inventory.check_render_args,
    "argument_specs": specs.check_argument_specs,
}

_CLUSTER = ("topology", "booleans", "node_names", "features")

# playbook -> the checks it needs (everything it will use, nothing it will not).
PLAYBOOKS = {
    "preflight": _CLUSTER + ("hardware",),
    "site": _CLUSTER + ("hardware",),
    "add_node": ("add_node_args",) + _CLUSTER + ("hardware",),
    "remove_node": _CLUSTER,
    "render": ("render_args", "booleans"),
    "uninstall": ("booleans",),
    "bundle": (),
    "verify_bundle": (),
}


def run(site, names=None):
    """Run the named checks (default: the playbook's) on a site; return the Report.

    The generic argument-spec check of every role the playbook runs comes last, so that the
    concern checks name a problem first and it only adds what they do not cover.
    """
    report = Report()
    for name in names if names is not None else PLAYBOOKS[site.playbook]:
        CHECKS[name](site, report)
    if names is None:
        specs.check_argument_specs(site, report)
    report.merge_same_on_all_hosts(site.hosts)
    return report
