# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Inventory-wide checks: topology, booleans, node names and addresses, feature switches."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    a_type_name,
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    HOSTNAME_RE,
    INVENTORY,
    is_bool,
    MISSING,
)

CONTROL_PLANE = "labhub_control_plane"
WORKERS = "labhub_workers"
CLUSTER = "labhub_cluster"
GPU_NODES = "labhub_gpu_nodes"
IB_NODES = "labhub_ib_nodes"

# Pairs of groups a host is never in at once; groups whose hosts must also be in another.
CONFLICTING_GROUPS = ((CONTROL_PLANE, WORKERS),)
GROUP_WITHIN = (("all", CLUSTER), (GPU_NODES, CLUSTER), (IB_NODES, CLUSTER), ("labhub_portal", CLUSTER))

# Site-wide switches that must be real booleans ("false" from an INI inventory or `-e flag=false`
# is a truthy string). Role-specific booleans are checked by their concern.
BOOLEAN_VARS = (
    "gpu_operator_enabled",
    "network_operator_enabled",
    "network_operator_sriov",
    "labhub_test_inventory",
    "portal_enabled",
    "portal_hub_service",
    "labhub_purge",
)


def check_quorum(report, group, members):
    """The control-plane group has 1, 3, 5, ... hosts (dqlite keeps quorum with an odd number)."""
    var = "groups." + group
    if not members:
        report.add(INVENTORY, var, "has no host", "1 control-plane node, or 3, 5, 7 for high availability")
    elif len(members) % 2 == 0:
        report.add(INVENTORY, var, "has %d hosts (%s): an HA control plane needs an odd number of nodes "
                   "(1, 3, 5, ...) to keep quorum" % (len(members), ", ".join(members)), "an odd number of hosts")


def check_topology(site, report):
    """Control-plane quorum, conflicting groups, group nesting."""
    check_quorum(report, CONTROL_PLANE, site.control_plane)
    for first, second in CONFLICTING_GROUPS:
        for host in site.hosts:
            if host in site.group(first) and host in site.group(second):
                report.add(host, "groups.%s + groups.%s" % (first, second),
                           "host is in both %s and %s" % (first, second), "the host in only one of them")
    for group, within in GROUP_WITHIN:
        members = site.hosts if group == "all" else site.group(group)
        for host in members:
            if host not in site.group(within):
                where = "the inventory" if group == "all" else group
                report.add(host, "groups." + within, "host is in %s but not in %s" % (where, within),
                           "every host of %s also in %s" % (where, within))


def check_booleans(site, report):
    """Site-wide switches hold true or false wherever they are set."""
    for var in BOOLEAN_VARS:
        for host in site.hosts:
            if not site.has(host, var):
                continue
            value = site.get(host, var, MISSING)
            if value is MISSING or value is None or is_bool(value):
                continue
            report.add(host, var, "is %s, not a boolean" % a_type_name(value), "true or false (unquoted YAML)",
                       value=value)


def _address(site, host):
    value = site.get(host, "ansible_host")
    return str(value) if value not in (None, "") else None


def _node_name(site, host):
    """The Kubernetes node name of a host, or None when it is only known from the node itself."""
    for var in ("microk8s_node_name", "nodes_node_name"):
        value = site.get(host, var)
        if isinstance(value, str) and value:
            return var, value
    hw = site.hardware.get(host)
    if isinstance(hw, dict) and hw.get("hostname"):
        return "(node host name)", str(hw["hostname"]).lower()
    return None, None


def check_node_names(site, report):
    """Unique addresses and Kubernetes node names, names Kubernetes accepts."""
    cluster = site.group(CLUSTER)
    seen_addr = {}
    for host in cluster:
        address = _address(site, host)
        if address is None:
            continue
        if address in seen_addr and address not in ("localhost", "127.0.0.1", "::1"):
            report.add(host, "ansible_host", "is the same address as host %s" % seen_addr[address],
                       "a distinct address for every node", value=address)
        seen_addr.setdefault(address, host)
    seen_name = {}
    for host in cluster:
        var, name = _node_name(site, host)
        if name is None:
            continue
        if not DNS_SUBDOMAIN_RE.match(name):
            shown = var if var != "(node host name)" else "microk8s_node_name"
            problem = ("is not a valid Kubernetes node name" if var != "(node host name)"
                       else "is empty and the node's host name %r is not a valid Kubernetes node name" % name)
            report.add(host, shown, problem,
                       "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit "
                       "(RFC 1123), e.g. gpu-node1",
                       value=name if var != "(node host name)" else "")
        elif name in seen_name:
            report.add(host, var if var != "(node host name)" else "microk8s_node_name",
                       "gives node name %r, already the name of host %s" % (name, seen_name[name]),
                       "a distinct node name for every host", value=name)
        seen_name.setdefault(name, host)
    for host in site.hosts:
        address = _address(site, host)
        if address is None or host not in cluster:
            continue
        try:
            ipaddress.ip_address(address)
        except ValueError:
            if not HOSTNAME_RE.match(address):
                report.add(host, "ansible_host", "is neither an IP address nor a host name",
                           "an IP address or a DNS name", value=address)


def check_features(site, report):
    """GPU and InfiniBand switches have nodes to act on."""
    host = site.hub_host
    for var, group in (("gpu_operator_enabled", GPU_NODES), ("network_operator_enabled", IB_NODES)):
        if site.get(host, var) is True and not site.group(group):
            report.add(host, var, "is true but group %s has no host" % group,
                       "hosts in %s, or %s: false" % (group, var), value=True)


def check_add_node_args(site, report):
    """add_node.yml -e node=<host>: one host of the inventory, a control-plane node or a worker,
    keeping an odd number of control-plane nodes."""
    node = site.options.get("node", MISSING)
    hosts = ", ".join(sorted(site.hosts))
    cp, workers = site.control_plane, site.group(WORKERS)
    if node is MISSING or node in (None, ""):
        report.add(INVENTORY, "node", "is not set", "-e node=<host>, one of: " + hosts)
    elif not isinstance(node, str) or node not in site.hosts:
        report.add(INVENTORY, "node", "is not a host of the inventory", "one of: " + hosts, value=node)
    elif node not in cp + workers:
        report.add(node, "node", "host is in neither %s nor %s" % (CONTROL_PLANE, WORKERS),
                   "the host added to one of them in the inventory first", value=node)
    elif node in cp and len(cp) % 2 == 0:
        report.add(node, "node", "would make %d control-plane nodes (%s)" % (len(cp), ", ".join(cp)),
                   "an odd number of control-plane nodes (dqlite voters): add them two at a time, "
                   "or this one as a worker", value=node)


def check_render_args(site, report):
    """render.yml -e labhub_render_dir=DIR: an absolute directory on the controller, for every
    host that renders (labhub_render_hosts render side by side, each into its own directory)."""
    for host in site.scope or [site.hub_host]:
        value = site.get(host, "labhub_render_dir", site.options.get("labhub_render_dir", MISSING))
        if value is MISSING or value in (None, ""):
            report.add(host, "labhub_render_dir", "is not set", "-e labhub_render_dir=/absolute/dir")
        elif not isinstance(value, str) or not value.startswith("/"):
            report.add(host, "labhub_render_dir", "is not an absolute directory", "-e labhub_render_dir=/absolute/dir",
                       value=value)


def check_uninstall(site, report):
    """uninstall.yml: its switches and the names it deletes by (role uninstall, on the hub host)."""
    host = site.hub_host
    purge_var = "labhub_purge" if site.has(host, "labhub_purge") else "uninstall_purge"
    for var in (purge_var, "uninstall_portal"):
        value = site.get(host, var, False)
        if not is_bool(value):
            report.add(host, var, "is %s, not a boolean" % a_type_name(value),
                       "true or false (YAML booleans: -e '{\"labhub_purge\": true}')", value=value)
    render_dir = site.get(host, "uninstall_render_dir", "")
    if render_dir and (not isinstance(render_dir, str) or not render_dir.startswith("/")):
        report.add(host, "labhub_render_dir", "is not an absolute directory", "-e labhub_render_dir=/absolute/dir",
                   value=render_dir)
    namespace = site.get(host, "uninstall_hub_namespace", "")
    if not isinstance(namespace, str) or not DNS_LABEL_RE.match(namespace):
        report.add(host, "jupyterhub_namespace", "is not a Kubernetes namespace name",
                   "lower-case letters, digits and '-' (RFC 1123 label), e.g. jhub", value=namespace)
