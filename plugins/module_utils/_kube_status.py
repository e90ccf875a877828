# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Why Kubernetes objects are not ready, as short sentences for failure messages, in ONE place.

The roles wait for workloads, Jobs and nodes and, when the wait ends without success, read the
objects back (``kubernetes.core.k8s_info``) and fail naming what is not ready and why. The
decisions (which condition counts, what a DaemonSet's counters mean) live here, unit-tested as
data (tests/unit/plugins/module_utils/test_kube_status.py); the roles only call the filters of
plugins/filter/kube_status.py and put the result in their message.

What "ready" means follows the controllers' own status fields (Kubernetes API reference,
apps/v1 and batch/v1): a Deployment's ``availableReplicas`` and ``updatedReplicas`` against
``spec.replicas``; a DaemonSet's ``numberReady``/``updatedNumberScheduled`` against
``desiredNumberScheduled``; a StatefulSet's ``readyReplicas``; a Pod's ``Ready`` condition; a
Node's ``Ready`` condition.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _get(obj, *path, **kw):
    """obj[path[0]][path[1]]..., or ``default`` (None) when any step is missing or not a mapping."""
    default = kw.get("default")
    for key in path:
        if not isinstance(obj, dict) or key not in obj or obj[key] is None:
            return default
        obj = obj[key]
    return obj


def _condition_true(obj, kind):
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in _get(obj, "status", "conditions", default=[]) if isinstance(c, dict))


def _name(obj):
    return _get(obj, "metadata", "name", default="?")


def _qualified(obj):
    namespace = _get(obj, "metadata", "namespace")
    return "%s/%s" % (namespace, _name(obj)) if namespace else _name(obj)


def pod_ready(pod):
    return _condition_true(pod, "Ready")


def node_ready(node):
    return _condition_true(node, "Ready")


def pod_reason(pod):
    """``pod NAME PHASE (why, ...) on node N``: the conditions that are False with a reason or
    message, each container waiting, each container that ended with a non-zero exit code."""
    status = _get(pod, "status", default={})
    bits = []
    for c in status.get("conditions") or []:
        if c.get("status") == "False" and (c.get("reason") or c.get("message")):
            bits.append("%s %s%s" % (c.get("type", "?"), c.get("reason") or "",
                                     (": " + c["message"]) if c.get("message") else ""))
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = _get(cs, "state", "waiting")
        ended = _get(cs, "state", "terminated")
        if waiting is not None:
            bits.append("container %s waiting: %s%s" % (
                cs.get("name", "?"), waiting.get("reason") or "",
                (" " + waiting["message"]) if waiting.get("message") else ""))
        if ended is not None and (ended.get("exitCode") or 0) != 0:
            bits.append("container %s terminated: %s (exit code %s)%s" % (
                cs.get("name", "?"), ended.get("reason") or "", ended.get("exitCode"),
                (" " + ended["message"]) if ended.get("message") else ""))
    text = "pod %s %s" % (_name(pod), status.get("phase") or "Unknown")
    if bits:
        text += " (%s)" % ", ".join(bits)
    node = _get(pod, "spec", "nodeName")
    if node:
        text += " on node %s" % node
    return text


def job_reasons(job, pods):
    """The Job's Failed condition (reason: message), then one ``pod_reason`` per pod."""
    out = []
    for c in _get(job, "status", "conditions", default=[]):
        if c.get("type") == "Failed" and c.get("status") == "True":
            out.append("Job %s%s" % (c.get("reason") or "Failed", (": " + c["message"]) if c.get("message") else ""))
    out.extend(pod_reason(p) for p in pods or [])
    return out


#: kind -> (where its wanted count is: section, field, default), its ready counter, its updated
#: counter (None: not compared), how the counts read
_WORKLOADS = {
    "Deployment": (("spec", "replicas", 1), "availableReplicas", "updatedReplicas", "%d of %d available, %d updated"),
    "DaemonSet": (("status", "desiredNumberScheduled", 0), "numberReady", "updatedNumberScheduled",
                  "%d of %d scheduled pods ready, %d updated"),
    "StatefulSet": (("spec", "replicas", 1), "readyReplicas", None, "%d of %d ready"),
}


def workload_problem(obj):
    """None when the Deployment, DaemonSet or StatefulSet is ready, else ``Kind ns/name: why``."""
    kind = obj.get("kind") or "?"
    if kind not in _WORKLOADS:
        return None
    (section, field, default), ready_field, updated_field, text = _WORKLOADS[kind]
    status = obj.get("status") or {}
    want = (obj.get(section) or {}).get(field, default) or 0
    ready = status.get(ready_field) or 0
    counts = (ready, want)
    if updated_field is not None:
        counts += (status.get(updated_field) or 0,)
    if min((ready,) + counts[2:]) >= want:
        return None
    return "%s %s: %s" % (kind, _qualified(obj), text % counts)


def not_ready(objects, kind):
    """The objects of ``kind`` that are not ready: ``Kind ns/name: why`` for a Deployment,
    DaemonSet or StatefulSet; ``pod_reason`` for a Pod neither Ready nor Succeeded; the name of
    a Node whose Ready condition is not True."""
    if kind == "Node":
        return nodes_not_ready(objects)
    if kind == "Pod":
        return [pod_reason(p) for p in objects or []
                if not (_get(p, "status", "phase") == "Succeeded" or pod_ready(p))]
    if kind not in ("Deployment", "DaemonSet", "StatefulSet"):
        raise ValueError("not a kind whose readiness is known: %r (Deployment, DaemonSet, StatefulSet, Pod, Node)" % (kind,))
    out = []
    for obj in objects or []:
        problem = workload_problem(dict(obj, kind=kind))
        if problem:
            out.append(problem)
    return out


def nodes_not_ready(nodes):
    return [_name(n) for n in nodes or [] if not node_ready(n)]


def nodes_without_ready_pod(nodes, pods, name_prefix=""):
    """Names of the nodes on which no pod (whose name starts with ``name_prefix``) is Ready."""
    ready_on = set()
    for pod in pods or []:
        if _name(pod).startswith(name_prefix) and pod_ready(pod):
            ready_on.add(_get(pod, "spec", "nodeName"))
    return [_name(n) for n in nodes or [] if _name(n) not in ready_on]


def allocatable(node, resource):
    """The node's allocatable count of ``resource`` as an int (0 when absent or not a count)."""
    value = _get(node, "status", "allocatable", resource, default="0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def nodes_without_resource(nodes, names, resource):
    """Those of ``names`` whose node does not advertise at least one ``resource``."""
    by_name = dict((_name(n), n) for n in nodes or [])
    return [name for name in names if allocatable(by_name.get(name, {}), resource) < 1]


def resource_report(nodes, pods, hosts, resource, pod_prefix, label):
    """For each inventory host (``hosts`` maps it to its node name) whose node lacks ``resource``
    or a Ready pod named ``pod_prefix``*: ``HOST (node NAME: RESOURCE=N, device plugin pod
    ready|not ready|absent, LABEL label VALUE|absent)``."""
    by_name = dict((_name(n), n) for n in nodes or [])
    out = []
    for host, name in hosts.items():
        node = by_name.get(name, {})
        count = allocatable(node, resource)
        mine = [p for p in pods or [] if _get(p, "spec", "nodeName") == name and _name(p).startswith(pod_prefix)]
        ready = any(pod_ready(p) for p in mine)
        if count >= 1 and ready:
            continue
        out.append("%s (node %s: %s=%d, device plugin pod %s, %s label %s)" % (
            host, name, resource, count, "ready" if ready else ("not ready" if mine else "absent"), label,
            _get(node, "metadata", "labels", "feature.node.kubernetes.io/%s.present" % label, default="absent")))
    return out
