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
from ansible_collections.labhub.platform.plugins.module_utils import _checks_hub as hub
from ansible_collections.labhub.platform.plugins.module_utils import _checks_cluster as cluster
from ansible_collections.labhub.platform.plugins.module_utils import _checks_nodes as nodes
from ansible_collections.labhub.platform.plugins.module_utils import _checks_accelerators as accelerators
from ansible_collections.labhub.platform.plugins.module_utils import _checks_specs as specs
from ansible_collections.labhub.platform.plugins.module_utils import _checks_portal as portal
from ansible_collections.labhub.platform.plugins.module_utils import _renamed as renamed

# name -> function(site, report)
CHECKS = {
    "renamed": renamed.check_renamed,
    "unknown": renamed.check_unknown,
    "topology": inventory.check_topology,
    "booleans": inventory.check_booleans,
    "node_names": inventory.check_node_names,
    "features": inventory.check_features,
    "hardware": hardware.check_hardware,
    "hub": hub.check_hub,
    "add_node_args": inventory.check_add_node_args,
    "render_args": inventory.check_render_args,
    "uninstall": inventory.check_uninstall,
    "argument_specs": specs.check_argument_specs,
    # cluster roles (the *_bundle / *_kubeconfig ones read files only the roles need; the roles run them)
    "microk8s": cluster.check_microk8s,
    "microk8s_bundle": cluster.check_microk8s_bundle,
    "calico": cluster.check_calico,
    "ingress": cluster.check_ingress,
    "offline_images": cluster.check_offline_images,
    "offline_images_bundle": cluster.check_offline_images_bundle,
    "packages": cluster.check_packages_nodes,
    "nodes": nodes.check_nodes,
    "nodes_kubeconfig": nodes.check_nodes_kubeconfig,
    "gpu_operator": accelerators.check_gpu_operator,
    "gpu_operator_bundle": accelerators.check_gpu_operator_bundle,
    "network_operator": accelerators.check_network_operator,
    "bundle": cluster.check_bundle,
    "bundle_verify": cluster.check_bundle_verify,
    "image_audit": cluster.check_image_audit,
    "monitoring": cluster.check_monitoring,
    "remove_node": cluster.check_remove_node,
    # role portal: on its hosts for site/preflight, on the render host for render (see _checks_portal)
    "portal": portal.check_portal,
}

_CLUSTER = ("renamed", "unknown", "topology", "booleans", "node_names", "features")
_ROLES = ("bundle_verify", "packages", "microk8s", "offline_images", "calico", "nodes", "gpu_operator",
          "network_operator", "monitoring", "ingress")
# add_node.yml runs every role but calico (its DaemonSet covers the new node).
_ADD_NODE = ("bundle_verify", "packages", "microk8s", "offline_images", "nodes", "gpu_operator", "network_operator")

# playbook -> the checks it needs (everything it will use, nothing it will not).
PLAYBOOKS = {
    "preflight": _CLUSTER + ("hardware",) + _ROLES + ("portal", "hub"),
    "site": _CLUSTER + ("hardware",) + _ROLES + ("portal", "hub"),
    "add_node": ("add_node_args",) + _CLUSTER + ("hardware",) + _ADD_NODE,
    "remove_node": ("remove_node",) + _CLUSTER,
    "render": ("renamed", "unknown", "render_args", "booleans", "portal", "hub", "ingress", "monitoring"),
    "uninstall": ("renamed", "booleans", "uninstall"),
    "bundle": ("renamed", "bundle"),
    "verify_bundle": ("renamed", "bundle_verify"),
    # what audit_images.yml renders (render.yml's hub, ingress and portal; the GPU and Network
    # Operators' render modes, which read each node's hardware) and the audit's own inputs
    "audit_images": _CLUSTER + ("portal", "hub", "ingress", "gpu_operator", "network_operator",
                                "monitoring", "image_audit"),
    # role portal alone (its tasks/preflight.yml and tasks/render.yml): the hosts the role runs on
    "portal": ("portal",),
    "portal_render": ("portal",),
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


def add_template_errors(report, errors):
    """A row for each variable whose template cannot be resolved ((host, name, reason) triples),
    unless a check already has a row naming the variable on that host (e.g. a login mode's secret
    whose vault variable is undefined is "required ... but is not set", not a second row)."""
    for host, name, reason in errors:
        if report.has(host, name):
            continue
        report.add(host, name, "cannot be resolved: " + reason, "a value whose template resolves")
