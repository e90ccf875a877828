# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Checks of the nodes role: each node's labels and taints (nodes_labels / nodes_taints).

They run in the validation phase of site.yml and add_node.yml, so a bad label key is refused
before add_node.yml joins the node, not after.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    a_type_name,
    is_list,
    is_str,
    label_key_error,
    label_value_error,
)
from ansible_collections.labhub.platform.plugins.module_utils._checks_cluster import (
    cluster_scope,
    pos_int,
    user_var,
)

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TAINT_FIELDS = ("key", "value", "effect")
# Prefixes Kubernetes keeps for itself (kubelet refuses to set them); node-role.kubernetes.io/ is allowed.
_RESERVED_RE = re.compile(r"^([^/]*\.)?(kubernetes\.io|k8s\.io)/")
_ALLOWED_RESERVED = ("node-role.kubernetes.io/",)


def _value_error(value, what="label"):
    if not is_str(value):
        return "value %s must be a string (quote it in YAML)" % _show(value)
    error = label_value_error(value)
    return error.replace("label value", "%s value" % what) if error else None


def _show(value):
    import json

    return json.dumps(value, default=str)


def _check_labels(site, report, host):
    labels = site.get(host, "nodes_labels", {})
    var = user_var(site, host, "nodes_labels")
    if not isinstance(labels, dict):
        report.add(host, var, "is %s, not a mapping (nodes_labels)" % a_type_name(labels),
                   "a mapping of label key -> string value, e.g. {labhub.io/rack: r12}", value=labels)
        return
    for key, value in labels.items():
        error = label_key_error(key) if is_str(key) else "label key must be a string"
        if error is None and _RESERVED_RE.match(key) and not key.startswith(_ALLOWED_RESERVED):
            error = "label key %s uses a prefix reserved for Kubernetes" % key
        if error:
            report.add(host, "%s.%s" % (var, key), error,
                       "[prefix/]name: a DNS subdomain prefix (not kubernetes.io / k8s.io) and a name of at most 63 "
                       "letters, digits, '-', '_', '.'", value=key)
        error = _value_error(value)
        if error:
            report.add(host, "%s.%s" % (var, key), error,
                       "'' or at most 63 letters, digits, '-', '_', '.' starting and ending with a letter or digit",
                       value=value)
    for role_var in ("nodes_gpu_label", "nodes_ib_label"):
        key = site.get(host, role_var, "")
        if key and (not is_str(key) or label_key_error(key)):
            report.add(host, role_var, label_key_error(key) if is_str(key) else "is not a string",
                       "a label key, e.g. labhub.io/gpu, or '' for none", value=key)


def _check_taints(site, report, host):
    taints = site.get(host, "nodes_taints", [])
    var = user_var(site, host, "nodes_taints")
    expected = "a list of {key, value, effect} with effect NoSchedule, PreferNoSchedule or NoExecute"
    if not is_list(taints):
        report.add(host, var, "is %s, not a list (nodes_taints)" % a_type_name(taints), expected, value=taints)
        return
    seen = set()
    for index, taint in enumerate(taints):
        row = "%s[%d]" % (var, index)
        if not isinstance(taint, dict) or "key" not in taint or "effect" not in taint:
            report.add(host, row, "needs key and effect", expected, value=taint)
            continue
        extra = sorted(str(k) for k in taint if k not in TAINT_FIELDS)
        if extra:
            report.add(host, row, "has unknown fields: %s" % ", ".join(extra), "only key, value and effect", value=taint)
        key = taint["key"]
        error = label_key_error(key) if is_str(key) else "taint key must be a string"
        if error:
            report.add(host, row + ".key", error.replace("label key", "taint key"),
                       "[prefix/]name as a label key, e.g. labhub.io/dedicated", value=key)
        if "value" in taint and taint["value"] is not None:
            error = _value_error(taint["value"], "taint")
            if error:
                report.add(host, row + ".value", error, "'' or a label-like value (quoted)", value=taint["value"])
        if taint["effect"] not in TAINT_EFFECTS:
            report.add(host, row + ".effect", "is not a taint effect", "one of: " + ", ".join(TAINT_EFFECTS),
                       value=taint["effect"])
        ident = "%s:%s" % (key, taint["effect"])
        if ident in seen:
            report.add(host, row, "taint %s is listed twice" % ident, "each key:effect once", value=taint)
        seen.add(ident)


def check_nodes(site, report):
    """Labels, taints and the readiness settings of every node of the scope (nodes role)."""
    hosts = cluster_scope(site)
    for host in hosts:
        _check_labels(site, report, host)
        _check_taints(site, report, host)
        kubeconfig = site.get(host, "nodes_kubeconfig", "")
        if not is_str(kubeconfig) or not kubeconfig:
            report.add(host, user_var(site, host, "nodes_kubeconfig"), "is empty",
                       "the admin kubeconfig on the controller written by the microk8s role", value=kubeconfig)
        for var in ("nodes_ready_timeout", "nodes_ready_delay"):
            if not pos_int(site.get(host, var, 1)):
                report.add(host, var, "is not a positive number of seconds", "e.g. 600", value=site.get(host, var))


def check_nodes_kubeconfig(site, report):
    """The admin kubeconfig the microk8s role wrote exists (the nodes role talks to the cluster)."""
    for host in cluster_scope(site):
        kubeconfig = site.get(host, "nodes_kubeconfig", "")
        if is_str(kubeconfig) and kubeconfig and not os.path.isfile(kubeconfig):
            report.add(host, user_var(site, host, "nodes_kubeconfig"), "no such file on the controller",
                       "the admin kubeconfig written by the microk8s role (run site.yml first)", value=kubeconfig)


def desired_labels(labels, gpu_label="", gpu=False, ib_label="", ib=False):
    """The labels a node must carry: the GPU / InfiniBand markers, then the user's labels over them."""
    out = {}
    if gpu_label and gpu:
        out[gpu_label] = "true"
    if ib_label and ib:
        out[ib_label] = "true"
    out.update(labels if isinstance(labels, dict) else {})
    return out
