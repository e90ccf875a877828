# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters kube_not_ready, kube_reasons, kube_nodes_without_ready_pod, kube_nodes_without_resource
and kube_resource_report: why Kubernetes objects are not ready, for the roles' failure messages.

The logic lives in plugins/module_utils/_kube_status.py (unit-tested as data); the roles read
the objects with kubernetes.core.k8s_info and pass them here.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.module_utils import _kube_status


def _objects(value, name):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise AnsibleFilterError("%s: input must be a list of Kubernetes objects (k8s_info resources), got %s"
                                 % (name, type(value).__name__))
    return value


def kube_not_ready(objects, kind):
    try:
        return _kube_status.not_ready(_objects(objects, "kube_not_ready"), kind)
    except ValueError as exc:
        raise AnsibleFilterError("kube_not_ready: %s" % exc)


def kube_reasons(pods, job=None):
    return _kube_status.job_reasons(job or {}, _objects(pods, "kube_reasons"))


def kube_nodes_without_ready_pod(nodes, pods, name_prefix=""):
    return _kube_status.nodes_without_ready_pod(_objects(nodes, "kube_nodes_without_ready_pod"),
                                                _objects(pods, "kube_nodes_without_ready_pod"), name_prefix)


def kube_nodes_without_resource(nodes, names, resource):
    return _kube_status.nodes_without_resource(_objects(nodes, "kube_nodes_without_resource"), list(names), resource)


def kube_resource_report(nodes, pods, hosts, resource, pod_prefix, label):
    if not isinstance(hosts, dict):
        raise AnsibleFilterError("kube_resource_report: hosts must map inventory host to node name")
    return _kube_status.resource_report(_objects(nodes, "kube_resource_report"), _objects(pods, "kube_resource_report"),
                                        hosts, resource, pod_prefix, label)


class FilterModule:
    def filters(self):
        return {
            "kube_not_ready": kube_not_ready,
            "kube_reasons": kube_reasons,
            "kube_nodes_without_ready_pod": kube_nodes_without_ready_pod,
            "kube_nodes_without_resource": kube_nodes_without_resource,
            "kube_resource_report": kube_resource_report,
        }
