# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""FAKE Kubernetes API server: a test double for Labhub's tests, NOT Kubernetes.

No Kubernetes API server can run on Labhub's CI machines. This module serves, over plain HTTP,
the part of the Kubernetes REST API that the kubernetes Python client (dynamic client) and the
kubernetes.core modules (k8s, k8s_info, k8s_drain, helm through the simulated helm) use:
discovery, GET/LIST/POST/PUT/PATCH/DELETE with Kubernetes' Status error bodies. Objects live in
the simulator's cluster state (``clusters/<id>.json``, the file labhub_sim.py keeps, under the
same flock), so `microk8s kubectl get nodes` and this API agree: Node objects are DERIVED from the
simulator's node records and patches to nodes write back into them. Everything else is a
generic object store.

Controllers are SIMULATED by ``reconcile()``, run under the lock before every request (and by
the simulated helm while it waits): Deployments (through ReplicaSets), StatefulSets, DaemonSets
and Jobs get Pods on schedulable Ready nodes and status numbers; evictions respect
PodDisruptionBudgets; Pods on removed nodes disappear; namespaced children of deleted owners
are garbage-collected. No container runs, no image is pulled, nothing is scheduled by affinity.

Run: ``python3 labhub_kube.py serve`` with the node's LABHUB_SIM_* environment (labhub_sim.py
spawns it, detached, when MicroK8s is installed on a node; see README.md "Fake API server").
Environment: LABHUB_SIM_API_PORT (default 16443; 0 = any free port, recorded in the state),
LABHUB_SIM_API_BIND (listen address, default 0.0.0.0), LABHUB_SIM_API_ADDRESS (address written
in kubeconfigs, default the node's address).
Fault knobs: ``$LABHUB_SIM_CLUSTER_DIR/kube-faults.json`` (see FAULTS_DOC).
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import http.server
import json
import os
import random
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import labhub_sim as sim  # noqa: E402  pylint: disable=wrong-import-position

K8S_VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "labhub-fake-api",
               "gitTreeState": "clean", "buildDate": "2024-04-17T00:00:00Z", "goVersion": "go1.22.2",
               "compiler": "gc", "platform": "linux/amd64"}
DEFAULT_PORT = 16443
FAULTS_DOC = """kube-faults.json (in LABHUB_SIM_CLUSTER_DIR, shared by every node):
  {"api_down": true}                      the API server refuses connections (listening socket closed)
  {"never_ready": ["DaemonSet/kube-system/calico-node", "Deployment/*/hub"]}
                                          pods of matching workloads run but never become Ready
                                          (Kind/namespace/name, fnmatch patterns)
  {"jobs_fail": ["gpu-operator/*"]}       matching Jobs (namespace/name patterns, or true for all) fail
"""

V = ["get", "list", "create", "update", "patch", "delete", "deletecollection", "watch"]
# (group, version, plural, kind, namespaced, shortNames)
BUILTIN = [
    ("", "v1", "namespaces", "Namespace", False, ["ns"]),
    ("", "v1", "nodes", "Node", False, ["no"]),
    ("", "v1", "pods", "Pod", True, ["po"]),
    ("", "v1", "services", "Service", True, ["svc"]),
    ("", "v1", "endpoints", "Endpoints", True, ["ep"]),
    ("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
    ("", "v1", "secrets", "Secret", True, []),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"]),
    ("", "v1", "persistentvolumes", "PersistentVolume", False, ["pv"]),
    ("", "v1", "resourcequotas", "ResourceQuota", True, ["quota"]),
    ("", "v1", "limitranges", "LimitRange", True, ["limits"]),
    ("", "v1", "events", "Event", True, ["ev"]),
    ("apps", "v1", "deployments", "Deployment", True, ["deploy"]),
    ("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"]),
    ("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"]),
    ("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"]),
    ("apps", "v1", "controllerrevisions", "ControllerRevision", True, []),
    ("batch", "v1", "jobs", "Job", True, []),
    ("batch", "v1", "cronjobs", "CronJob", True, ["cj"]),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"]),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, []),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, []),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, []),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, []),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ["netpol"]),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True, ["ing"]),
    ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, []),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"]),
    ("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False, []),
    ("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, []),
    ("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ["pc"]),
    ("coordination.k8s.io", "v1", "leases", "Lease", True, []),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
     "ValidatingWebhookConfiguration", False, []),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
     "MutatingWebhookConfiguration", False, []),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, ["crd", "crds"]),
]
SUBRESOURCES = {  # (group, plural) -> [(sub, kind, group, version, verbs)]
    ("", "pods"): [("eviction", "Eviction", "policy", "v1", ["create"]), ("status", "Pod", "", "v1", ["get", "patch", "update"]),
                   ("log", "Pod", "", "v1", ["get"])],
    ("", "nodes"): [("status", "Node", "", "v1", ["get", "patch", "update"])],
    ("apps", "deployments"): [("status", "Deployment", "apps", "v1", ["get", "patch", "update"]),
                              ("scale", "Scale", "autoscaling", "v1", ["get", "patch", "update"])],
    ("apps", "daemonsets"): [("status", "DaemonSet", "apps", "v1", ["get", "patch", "update"])],
    ("apps", "statefulsets"): [("status", "StatefulSet", "apps", "v1", ["get", "patch", "update"]),
                               ("scale", "Scale", "autoscaling", "v1", ["get", "patch", "update"])],
    ("batch", "jobs"): [("status", "Job", "batch", "v1", ["get", "patch", "update"])],
}
SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]


class ApiError(Exception):
    """A Kubernetes Status failure."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details, "code": self.code}


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short=(), crd=False):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short, self.crd = namespaced, list(short), crd

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def qualified(self):
        """`deployments.apps`, `pods`: how Kubernetes names the resource in messages."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    def not_found(self, name):
        return ApiError(404, "NotFound", '%s "%s" not found' % (self.qualified, name),
                        {"name": name, "group": self.group, "kind": self.plural})


def now_iso(ts=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def _suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _i in range(n))  # nosec - names only


def _hash(data, n=10):
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:n]


# =========================================================================================
# state
# =========================================================================================
def kube(cluster):
    """The API part of a cluster state dict (created on first use)."""
    k = cluster.setdefault("kube", {})
    k.setdefault("rv", 1)
    k.setdefault("objects", {})
    k.setdefault("apiservers", {})
    return k


def _key(res_or_group, plural=None, namespace=None, name=None):
    group = res_or_group.group if isinstance(res_or_group, Resource) else res_or_group
    plural = res_or_group.plural if isinstance(res_or_group, Resource) else plural
    return "%s|%s|%s|%s" % (group, plural, namespace or "", name)


def next_rv(cluster):
    k = kube(cluster)
    k["rv"] += 1
    return str(k["rv"])


def kube_faults():
    return sim._load(os.path.join(sim.cluster_dir(), "kube-faults.json"), {})


def resources(cluster):
    """Every served resource: built-in kinds plus the served versions of every CRD."""
    out = [Resource(*r) for r in BUILTIN]
    for key, obj in sorted(kube(cluster)["objects"].items()):
        if not key.startswith("apiextensions.k8s.io|customresourcedefinitions|"):
            continue
        spec = obj.get("spec", {})
        names = spec.get("names", {})
        for ver in spec.get("versions", []):
            if ver.get("served", True):
                out.append(Resource(spec.get("group", ""), ver["name"], names.get("plural"), names.get("kind"),
                                    spec.get("scope", "Namespaced") == "Namespaced", names.get("shortNames", []), True))
    return out


def find_resource(cluster, group, version, plural):
    for res in resources(cluster):
        if (res.group, res.version, res.plural) == (group, version, plural):
            return res
    return None


def resource_for_kind(cluster, api_version, kind):
    group, _s, version = api_version.rpartition("/")
    for res in resources(cluster):
        if res.group == group and res.version == version and res.kind == kind:
            return res
    return None


# -- nodes: derived from the simulator's node records --------------------------------------
def _node_status_extras(cluster, node):
    """capacity/allocatable, with what chart models add (e.g. a device plugin's nvidia.com/gpu)."""
    res = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    res.update(node.get("resources", {}))
    for mod in chart_models_with_node_status():
        try:
            extra = mod.node_status(node, cluster) or {}
        except Exception:  # pylint: disable=broad-except  # a model bug must not break the API
            extra = {}
        res.update(extra.get("allocatable", {}))
    return res


def node_object(cluster, node):
    obj = sim._node_json(node)
    meta = obj["metadata"]
    meta["annotations"].update(node.get("annotations", {}))
    meta["resourceVersion"] = str(node.get("rv", 1))
    alloc = _node_status_extras(cluster, node)
    obj["status"]["allocatable"] = dict(alloc)
    obj["status"]["capacity"] = dict(alloc)
    # stable timestamps (a GET must not differ from the next one when nothing changed)
    stamp = now_iso(node.get("ready_at") or node["joined_at"])
    for cond in obj["status"]["conditions"]:
        cond["lastHeartbeatTime"] = cond["lastTransitionTime"] = stamp
    return obj


def _write_back_node(cluster, node, obj):
    meta = obj.get("metadata", {})
    spec = obj.get("spec", {}) or {}
    before = json.dumps([node.get("labels"), node.get("taints"), node.get("unschedulable"), node.get("annotations")],
                        sort_keys=True)
    node["labels"] = dict(meta.get("labels") or {})
    node["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                           if k != "node.alpha.kubernetes.io/ttl"}
    node["taints"] = [dict(t) for t in spec.get("taints") or []]
    node["unschedulable"] = bool(spec.get("unschedulable"))
    after = json.dumps([node["labels"], node["taints"], node["unschedulable"], node["annotations"]], sort_keys=True)
    if before != after:
        node["rv"] = int(next_rv(cluster))


def _nodes(cluster):
    return [n for n in cluster["nodes"] if not n.get("left")] + [n for n in cluster["nodes"] if n.get("left")]


# =========================================================================================
# selectors
# =========================================================================================
def _split_selector(text):
    parts, depth, cur = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += char
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def label_match(selector, labels):
    """labelSelector string: a=b, a==b, a!=b, a, !a, a in (x,y), a notin (x,y)."""
    labels = labels or {}
    for req in _split_selector(selector or ""):
        match = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$", req)
        if match:
            key, op, vals = match.group(1), match.group(2), [v.strip() for v in match.group(3).split(",")]
            if op == "in" and labels.get(key) not in vals:
                return False
            if op == "notin" and key in labels and labels[key] in vals:
                return False
            continue
        if req.startswith("!"):
            if req[1:] in labels:
                return False
            continue
        match = re.match(r"^([^\s!=]+)\s*(==|=|!=)\s*(.*)$", req)
        if match:
            key, op, val = match.groups()
            if op == "!=":
                if labels.get(key) == val:
                    return False
            elif labels.get(key) != val:
                return False
            continue
        if req not in labels:
            return False
    return True


def selector_match(sel, labels):
    """A LabelSelector object (matchLabels + matchExpressions)."""
    if sel is None:
        return False
    labels = labels or {}
    for key, val in (sel.get("matchLabels") or {}).items():
        if labels.get(key) != val:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, vals = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _field(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def field_match(selector, obj):
    for req in _split_selector(selector or ""):
        match = re.match(r"^([^!=]+)(==|=|!=)(.*)$", req)
        if not match:
            raise ApiError(400, "BadRequest", 'invalid selector: "%s"' % selector)
        path, op, val = match.groups()
        if path not in ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "spec.unschedulable",
                        "type", "involvedObject.name", "involvedObject.kind", "spec.schedulerName"):
            raise ApiError(400, "BadRequest", 'field label not supported: %s' % path)
        cur = _field(obj, path)
        cur = "" if cur is None else (str(cur).lower() if isinstance(cur, bool) else str(cur))
        if (op == "!=") == (cur == val):
            return False
    return True


# =========================================================================================
# patches
# =========================================================================================
def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, val in patch.items():
        if val is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), val)
    return result


# list field -> merge key (the patchMergeKey of the Kubernetes types Labhub touches); lists of
# objects not named here are merged by "name" when every item has one, else replaced.
MERGE_KEYS = {"conditions": "type", "ports": None, "volumeMounts": "mountPath", "volumeDevices": "devicePath",
              "hostAliases": "ip", "imagePullSecrets": "name", "tolerations": None, "taints": None,
              "addresses": None, "args": None, "command": None, "finalizers": None}


def _merge_key(field, items):
    if field == "ports":
        if all(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        if all(isinstance(i, dict) and "port" in i for i in items):
            return "port"
        return None
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if items and all(isinstance(i, dict) and "name" in i for i in items):
        return "name"
    return None


def strategic_merge(target, patch, field=None):
    """Strategic merge patch, approximated: dicts merge, null deletes, lists of objects merge by their
    merge key (name, type, containerPort, mountPath...), `$patch: replace|delete` and
    `$deleteFromPrimitiveList/...` honoured, `$setElementOrder/...` and `$retainKeys` ignored."""
    if isinstance(patch, list):
        key = _merge_key(field, patch) if patch else None
        if key is None or not isinstance(target, list):
            return [strategic_merge(None, p) if isinstance(p, dict) else copy.deepcopy(p) for p in patch
                    if not (isinstance(p, dict) and p.get("$patch") == "delete")]
        if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
            return [_clean(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
        result = copy.deepcopy(target)
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                result.append(copy.deepcopy(item))
                continue
            idx = next((i for i, t in enumerate(result) if isinstance(t, dict) and t.get(key) == item[key]), None)
            if item.get("$patch") == "delete":
                if idx is not None:
                    result.pop(idx)
                continue
            if idx is None:
                result.append(_clean(item))
            else:
                result[idx] = strategic_merge(result[idx], item)
        return result
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _clean(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, val in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            real = key.split("/", 1)[1]
            result[real] = [x for x in result.get(real, []) if x not in val]
            continue
        if val is None:
            result.pop(key, None)
        elif isinstance(val, (dict, list)):
            result[key] = strategic_merge(result.get(key), val, key)
        else:
            result[key] = val
    return result


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not k.startswith("$")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: "
                       "invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)

    def parent(parts):
        cur = doc
        for part in parts[:-1]:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        return cur

    def get(parts):
        cur = doc
        for part in parts:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        return cur

    def remove(parts):
        par = parent(parts)
        if isinstance(par, list):
            return par.pop(int(parts[-1]))
        return par.pop(parts[-1])

    def add(parts, value):
        nonlocal doc
        if not parts:
            doc = value
            return
        par = parent(parts)
        if isinstance(par, list):
            if parts[-1] == "-":
                par.append(value)
            else:
                par.insert(int(parts[-1]), value)
        else:
            par[parts[-1]] = value

    for op in ops if isinstance(ops, list) else []:
        try:
            kind, parts = op["op"], _pointer(op["path"])
            if kind == "add":
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(parts)
            elif kind == "replace":
                get(parts)
                if parts:
                    remove(parts)
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "move":
                value = remove(_pointer(op["from"]))
                add(parts, value)
            elif kind == "copy":
                add(parts, copy.deepcopy(get(_pointer(op["from"]))))
            elif kind == "test":
                if get(parts) != op["value"]:
                    raise ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                                   "request: testing value %s failed" % op["path"])
            else:
                raise KeyError(kind)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            if isinstance(exc, ApiError):
                raise
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request: "
                           "jsonpatch %s operation does not apply: doc is missing path: %s"
                           % (op.get("op") if isinstance(op, dict) else op,
                              op.get("path") if isinstance(op, dict) else ""))
    return doc


# =========================================================================================
# the store
# =========================================================================================
def _defaults(res, obj):
    """The API server's defaulting for the fields the modules' waiters read."""
    _quantities(obj.get("spec"))
    spec = obj.get("spec")
    if res.kind in ("Deployment", "StatefulSet", "ReplicaSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    if res.kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
    if res.kind in ("StatefulSet", "DaemonSet") and isinstance(spec, dict):
        spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        spec.setdefault("revisionHistoryLimit", 10)
    if res.kind == "Job" and isinstance(spec, dict):
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
    if res.kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") is None and spec["type"] != "ExternalName":
            spec["clusterIP"] = "10.152.183.%d" % random.randint(11, 250)
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
                port["nodePort"] = random.randint(30000, 32767)
    if res.kind == "Secret":
        if "stringData" in obj:
            obj.setdefault("data", {})
            for key, val in (obj.pop("stringData") or {}).items():
                obj["data"][key] = base64.b64encode(str(val).encode()).decode()
        obj.setdefault("type", "Opaque")
    if res.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    if res.kind == "CustomResourceDefinition":
        names = (spec or {}).get("names", {})
        names.setdefault("singular", (names.get("kind") or "").lower())
        names.setdefault("listKind", "%sList" % names.get("kind", ""))
        obj["status"] = {"acceptedNames": copy.deepcopy(names), "storedVersions":
                         [v["name"] for v in (spec or {}).get("versions", []) if v.get("storage")],
                         "conditions": [{"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                                         "message": "no conflicts found", "lastTransitionTime": now_iso()},
                                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                                         "message": "the initial names have been accepted",
                                         "lastTransitionTime": now_iso()}]}


def _quantities(obj):
    """Quantities (resources limits/requests, PVC storage, ResourceQuota hard) are strings in the API."""
    if isinstance(obj, dict):
        for key, val in obj.items():
            if key in ("limits", "requests", "hard", "capacity", "allocatable") and isinstance(val, dict):
                for name, qty in val.items():
                    if isinstance(qty, (int, float)) and not isinstance(qty, bool):
                        val[name] = str(qty)
            else:
                _quantities(val)
    elif isinstance(obj, list):
        for item in obj:
            _quantities(item)


def _validate(res, obj, name_expected=None):
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        obj["metadata"] = meta = {}
    if not obj.get("kind"):
        raise ApiError(400, "BadRequest", "Object 'Kind' is missing in '%s'" % json.dumps(obj)[:200])
    if obj["kind"] != res.kind:
        raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match the expected API version "
                       "(%s)" % (obj.get("apiVersion"), res.api_version) if obj.get("apiVersion") != res.api_version
                       else "%s in version \"%s\" cannot be handled as a %s" % (obj["kind"], res.version, res.kind))
    if not meta.get("name") and not meta.get("generateName"):
        raise ApiError(422, "Invalid", '%s.%s "" is invalid: metadata.name: Required value: name or generateName is '
                       "required" % (res.kind, res.group) if res.group else
                       '%s "" is invalid: metadata.name: Required value: name or generateName is required' % res.kind,
                       {"kind": res.kind, "group": res.group,
                        "causes": [{"reason": "FieldValueRequired", "message": "Required value: name or "
                                    "generateName is required", "field": "metadata.name"}]})
    name = meta.get("name") or ""
    rbac = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")  # these allow ':' and more
    if name and not re.match(r"^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$", name) and res.kind not in rbac:
        raise ApiError(422, "Invalid", '%s "%s" is invalid: metadata.name: Invalid value: "%s": a lowercase RFC 1123 '
                       "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
                       "and end with an alphanumeric character" % (res.kind, name, name),
                       {"name": name, "kind": res.kind})
    if name_expected is not None and name and name != name_expected:
        raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                       % (name, name_expected))


def _spec_part(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    """Operations on one cluster state dict. The caller holds the cluster lock and saves."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.k = kube(cluster)
        self.objects = self.k["objects"]
        self.dirty = False

    # -- helpers ---------------------------------------------------------------------------
    def res(self, api_version, kind):
        res = resource_for_kind(self.cluster, api_version, kind)
        if res is None:
            raise ApiError(404, "NotFound", 'the server could not find the requested resource (no kind "%s" in %s)'
                           % (kind, api_version))
        return res

    def namespace_exists(self, name):
        return _key("", "namespaces", None, name) in self.objects

    def raw(self, res, namespace, name):
        if res.kind == "Node":
            node = next((n for n in self.cluster["nodes"] if n["name"] == name), None)
            return None if node is None else node_object(self.cluster, node)
        obj = self.objects.get(_key(res, namespace=namespace if res.namespaced else None, name=name))
        if obj is not None and res.crd and obj.get("apiVersion") != res.api_version:
            obj = dict(obj, apiVersion=res.api_version)
        return obj

    def get(self, res, namespace, name):
        obj = self.raw(res, namespace, name)
        if obj is None:
            raise res.not_found(name)
        return copy.deepcopy(obj)

    def list(self, res, namespace=None, label_selector=None, field_selector=None):
        if res.kind == "Node":
            objs = [node_object(self.cluster, n) for n in self.cluster["nodes"]]
        else:
            prefix = "%s|%s|" % (res.group, res.plural)
            objs = [o for k, o in sorted(self.objects.items()) if k.startswith(prefix)]
            if namespace and res.namespaced:
                objs = [o for o in objs if o["metadata"].get("namespace") == namespace]
        out = []
        for obj in objs:
            if label_selector and not label_match(label_selector, obj["metadata"].get("labels")):
                continue
            if field_selector and not field_match(field_selector, obj):
                continue
            item = copy.deepcopy(obj)
            if res.crd:
                item["apiVersion"] = res.api_version
            out.append(item)
        return out

    def list_kind(self, group, plural, namespace=None):
        prefix = "%s|%s|" % (group, plural)
        return [o for k, o in sorted(self.objects.items()) if k.startswith(prefix)
                and (namespace is None or o["metadata"].get("namespace") == namespace)]

    # -- writes ----------------------------------------------------------------------------
    def create(self, res, namespace, body, dry_run=False):
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        _validate(res, obj)
        meta = obj["metadata"]
        if res.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            if not self.namespace_exists(namespace):
                raise ApiError(404, "NotFound", 'namespaces "%s" not found' % namespace,
                               {"name": namespace, "kind": "namespaces"})
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            meta["name"] = meta["generateName"] + _suffix()
        if res.kind == "Node":
            raise ApiError(405, "MethodNotAllowed", "the labhub fake API derives nodes from the simulator: join a "
                           "node with `microk8s join` instead of creating a Node object")
        key = _key(res, namespace=meta.get("namespace"), name=meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.qualified, meta["name"]),
                           {"name": meta["name"], "group": res.group, "kind": res.plural})
        if res.kind == "Namespace" and self.k.get("terminating", {}).get(meta["name"]):
            self.k["terminating"].pop(meta["name"], None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        if "spec" in obj or res.kind in ("Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet"):
            meta["generation"] = 1
        if res.kind != "Pod":
            obj.pop("status", None)  # status is the controllers' (Namespace and CRD get theirs below)
        _defaults(res, obj)
        if dry_run:
            meta["resourceVersion"] = str(self.k["rv"])
            return obj
        meta["resourceVersion"] = next_rv(self.cluster)
        self.objects[key] = obj
        self.dirty = True
        return copy.deepcopy(obj)

    def _store_update(self, res, old, new, dry_run=False):
        """Write `new` over `old` keeping server-owned metadata; exact no-op when nothing changed."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for field in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old.get("apiVersion", res.api_version), res.kind
        if res.kind == "Node":
            if json.dumps(new, sort_keys=True) != json.dumps(old, sort_keys=True) and not dry_run:
                node = next(n for n in self.cluster["nodes"] if n["name"] == old_meta["name"])
                _write_back_node(self.cluster, node, new)
                self.dirty = True
                return node_object(self.cluster, node)
            return new if dry_run else old  # a dry run answers with what the write would give
        if res.kind == "Service":  # allocated addresses and node ports stay, as in Kubernetes
            old_spec, new_spec = old.get("spec") or {}, new.setdefault("spec", {})
            if not new_spec.get("clusterIP") and old_spec.get("clusterIP"):
                new_spec["clusterIP"] = old_spec["clusterIP"]
            for port in new_spec.get("ports") or []:
                prev = next((p for p in old_spec.get("ports") or [] if p.get("port") == port.get("port")
                             and p.get("protocol", "TCP") == port.get("protocol", "TCP")), None)
                if prev and prev.get("nodePort") and not port.get("nodePort") and \
                        new_spec.get("type") in ("NodePort", "LoadBalancer"):
                    port["nodePort"] = prev["nodePort"]
        _defaults(res, new)
        if "status" in old and "status" not in new:
            new["status"] = copy.deepcopy(old["status"])
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        if json.dumps(new, sort_keys=True) == json.dumps(old, sort_keys=True):
            return copy.deepcopy(old)
        if json.dumps(_spec_part(new), sort_keys=True) != json.dumps(_spec_part(old), sort_keys=True) \
                and "generation" in old_meta:
            meta["generation"] = old_meta["generation"] + 1
        if dry_run:
            return new
        meta["resourceVersion"] = next_rv(self.cluster)
        self.objects[_key(res, namespace=old_meta.get("namespace") if res.namespaced else None,
                          name=old_meta["name"])] = new
        self.dirty = True
        return copy.deepcopy(new)

    def replace(self, res, namespace, name, body, dry_run=False, subresource=None):
        old = self.get(res, namespace, name)
        new = copy.deepcopy(body)
        new.setdefault("kind", res.kind)
        new.setdefault("apiVersion", res.api_version)
        _validate(res, new, name_expected=name)
        rv = new.get("metadata", {}).get("resourceVersion")
        if rv and rv != old["metadata"].get("resourceVersion"):
            raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                           "please apply your changes to the latest version and try again" % (res.qualified, name),
                           {"name": name, "group": res.group, "kind": res.plural})
        if subresource == "status":
            new = dict(old, status=new.get("status"))
        elif "status" in old and res.kind not in ("Namespace",):
            new["status"] = old["status"]
        return self._store_update(res, old, new, dry_run)

    def patch(self, res, namespace, name, patch, content_type, dry_run=False, subresource=None, create_apply=True):
        try:
            old = self.get(res, namespace, name)
        except ApiError:
            if content_type.startswith("application/apply-patch") and create_apply:
                body = copy.deepcopy(patch)
                body.setdefault("metadata", {})["name"] = name
                return self.create(res, namespace, body, dry_run)
            raise
        if content_type.startswith("application/json-patch"):
            new = json_patch(old, patch)
        elif content_type.startswith("application/merge-patch"):
            new = merge_patch(old, patch)
        elif content_type.startswith("application/strategic-merge-patch") or \
                content_type.startswith("application/apply-patch"):
            if res.crd and content_type.startswith("application/strategic"):
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml")
            new = strategic_merge(old, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                           "media types include: application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml")
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patch did not produce an object")
        if subresource == "status":
            new = dict(old, status=new.get("status"))
        elif subresource is None and "status" in old and res.kind not in ("Node",):
            new["status"] = old["status"]
        meta = new.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                           % (meta["name"], name))
        return self._store_update(res, old, new, dry_run)

    def delete(self, res, namespace, name, dry_run=False):
        obj = self.get(res, namespace, name)
        if dry_run:
            return obj
        if res.kind == "Node":
            self.cluster["nodes"] = [n for n in self.cluster["nodes"] if n["name"] != name]
        else:
            del self.objects[_key(res, namespace=namespace if res.namespaced else None, name=name)]
            if res.kind == "Namespace":
                for key in [k for k, o in self.objects.items() if o["metadata"].get("namespace") == name]:
                    del self.objects[key]
        self.dirty = True
        next_rv(self.cluster)
        return obj

    def evict(self, namespace, name):
        pod_res = Resource("", "v1", "pods", "Pod", True)
        pod = self.get(pod_res, namespace, name)
        for pdb in self.list_kind("policy", "poddisruptionbudgets", namespace):
            spec = pdb.get("spec", {})
            if not selector_match(spec.get("selector"), pod["metadata"].get("labels")):
                continue
            matching = [p for p in self.list_kind("", "pods", namespace)
                        if selector_match(spec.get("selector"), p["metadata"].get("labels"))]
            healthy = len([p for p in matching if _pod_ready(p)])
            total = _expected_pods(self, matching) or len(matching)
            if "minAvailable" in spec:
                allowed = healthy - _int_or_percent(spec["minAvailable"], total, up=True)
            else:
                allowed = healthy - (total - _int_or_percent(spec.get("maxUnavailable", 1), total, up=True))
            if _pod_ready(pod) and allowed <= 0:
                raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption "
                               "budget.", {"causes": [{"reason": "DisruptionBudget", "message":
                                                       "The disruption budget %s needs %d healthy pods and has %d "
                                                       "currently" % (pdb["metadata"]["name"], healthy - allowed,
                                                                      healthy)}]})
        self.delete(pod_res, namespace, name)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # -- used by the simulator (built-ins, helm) -------------------------------------------
    def apply(self, obj, manager="labhub-sim"):
        """Create or update (merge) an object the way `kubectl apply` would; returns (obj, changed)."""
        res = self.res(obj.get("apiVersion", "v1"), obj.get("kind"))
        ns = obj.get("metadata", {}).get("namespace") if res.namespaced else None
        if res.namespaced and not ns:
            ns = "default"
        existing = self.raw(res, ns, obj["metadata"]["name"])
        if existing is None:
            return self.create(res, ns, obj), True
        new = copy.deepcopy(obj)
        if "status" in existing:
            new["status"] = existing["status"]
        before = existing.get("metadata", {}).get("resourceVersion")
        result = self._store_update(res, copy.deepcopy(existing), new)
        return result, result["metadata"].get("resourceVersion") != before

    def delete_obj(self, obj):
        res = resource_for_kind(self.cluster, obj.get("apiVersion", "v1"), obj.get("kind"))
        if res is None:
            return False
        ns = obj["metadata"].get("namespace") or ("default" if res.namespaced else None)
        try:
            self.delete(res, ns, obj["metadata"]["name"])
            return True
        except ApiError:
            return False


def _int_or_percent(value, total, up=True):
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100.0
        return int(-(-frac // 1)) if up else int(frac)
    return int(value)


def _pod_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions", []))


def _expected_pods(store, pods):
    """The number of pods the owners of `pods` want (the PDB controller's expectedPods)."""
    total, seen = 0, set()
    for pod in pods:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref["uid"] in seen:
                continue
            seen.add(ref["uid"])
            owner = next((o for o in store.objects.values() if o["metadata"].get("uid") == ref["uid"]), None)
            if owner is None:
                continue
            if ref["kind"] == "DaemonSet":
                total += owner.get("status", {}).get("desiredNumberScheduled", 0)
            else:
                total += owner.get("spec", {}).get("replicas", 1)
    return total


# =========================================================================================
# simulated controllers
# =========================================================================================
def _faulty(kind, namespace, name):
    for pattern in kube_faults().get("never_ready") or []:
        if fnmatch.fnmatch("%s/%s/%s" % (kind, namespace, name), pattern):
            return True
    return False


def _job_fails(namespace, name):
    knob = kube_faults().get("jobs_fail")
    if knob is True:
        return True
    return any(fnmatch.fnmatch("%s/%s" % (namespace, name), p) for p in knob or [])


def _tolerates(tolerations, taint):
    for tol in tolerations or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and not tol.get("key"):
            return True
        if tol.get("key") != taint.get("key"):
            continue
        if tol.get("operator") == "Exists" or tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _requests(pod_spec):
    total = {}
    for container in pod_spec.get("containers") or []:
        resources_ = container.get("resources") or {}
        for source in (resources_.get("limits") or {}, resources_.get("requests") or {}):
            for name, qty in source.items():
                if "/" in name:  # extended resources (nvidia.com/gpu, rdma/...) are what can block scheduling
                    try:
                        total[name] = max(total.get(name, 0), int(qty))
                    except (TypeError, ValueError):
                        pass
    return total


def _node_fits(store, node, pod_spec, daemon=False, ignore_pod=None):
    """Would the scheduler (or the DaemonSet controller) put this pod on this node?"""
    if not sim.node_ready(node):
        return False
    if node.get("unschedulable") and not daemon:
        return False
    tolerations = list(pod_spec.get("tolerations") or [])
    if daemon:  # the DaemonSet controller adds these tolerations
        tolerations += [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]
    for taint in node.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
            return False
    for key, val in (pod_spec.get("nodeSelector") or {}).items():
        if node["labels"].get(key) != val:
            return False
    wants = _requests(pod_spec)
    if wants:
        alloc = _node_status_extras(store.cluster, node)
        used = {}
        for pod in store.list_kind("", "pods"):
            if pod["spec"].get("nodeName") == node["name"] and pod is not ignore_pod \
                    and pod.get("status", {}).get("phase") in ("Running", "Pending"):
                for name, qty in _requests(pod["spec"]).items():
                    used[name] = used.get(name, 0) + qty
        for name, qty in wants.items():
            try:
                have = int(alloc.get(name, 0))
            except (TypeError, ValueError):
                have = 0
            if have - used.get(name, 0) < qty:
                return False
    return True


def _owner_ref(owner, kind, api_version):
    return {"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


class Reconciler:
    """SIMULATED controllers (deployment, replicaset, statefulset, daemonset, job, disruption, GC)."""

    def __init__(self, store):
        self.s = store
        self.pod_res = Resource("", "v1", "pods", "Pod", True)

    def run(self):
        before = json.dumps(self.s.objects, sort_keys=True)
        for _round in range(3):
            # chart models may SIMULATE their operator (def controller(store), e.g. network_operator.py)
            for mod in chart_models_with_node_status("controller"):
                mod.controller(self.s)
            self._gc()
            for dep in self.s.list_kind("apps", "deployments"):
                self._deployment(dep)
            for rs in self.s.list_kind("apps", "replicasets"):
                self._replicated(rs, "ReplicaSet", "apps/v1")
            for sts in self.s.list_kind("apps", "statefulsets"):
                self._replicated(sts, "StatefulSet", "apps/v1")
            for ds in self.s.list_kind("apps", "daemonsets"):
                self._daemonset(ds)
            for job in self.s.list_kind("batch", "jobs"):
                self._job(job)
            self._pods()
            for pdb in self.s.list_kind("policy", "poddisruptionbudgets"):
                self._pdb(pdb)
            for dep in self.s.list_kind("apps", "deployments"):
                self._deployment_status(dep)
        if json.dumps(self.s.objects, sort_keys=True) != before:
            self.s.dirty = True

    def _set_status(self, obj, status):
        if obj.get("status") != status:
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = next_rv(self.s.cluster)

    def _gc(self):
        uids = {o["metadata"]["uid"] for o in self.s.objects.values()}
        nodes = {n["name"] for n in self.s.cluster["nodes"]}
        for key, obj in list(self.s.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if refs and not any(r.get("uid") in uids for r in refs):
                del self.s.objects[key]
            elif obj.get("kind") == "Pod" and obj["spec"].get("nodeName") and obj["spec"]["nodeName"] not in nodes:
                del self.s.objects[key]  # the node was removed: its pods go with it

    def _new_pod(self, owner, kind, api_version, name, node, hash_label):
        template = copy.deepcopy(owner["spec"].get("template") or {})
        meta = template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels.update(hash_label)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": owner["metadata"]["namespace"], "labels": labels,
                            "annotations": dict(meta.get("annotations") or {}),
                            "ownerReferences": [_owner_ref(owner, kind, api_version)]},
               "spec": dict(template.get("spec") or {}, nodeName=node["name"] if node else None)}
        if not node:
            pod["spec"].pop("nodeName")
        pod = self.s.create(self.pod_res, owner["metadata"]["namespace"], pod)
        return self.s.objects[_key("", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"])]

    def _pods_of(self, owner):
        uid = owner["metadata"]["uid"]
        return [p for p in self.s.list_kind("", "pods", owner["metadata"]["namespace"])
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    def _delete_pod(self, pod):
        self.s.objects.pop(_key("", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"]), None)

    def _pods(self):
        """Kubelet + scheduler: bind pending pods, set phase and readiness."""
        nodes = {n["name"]: n for n in self.s.cluster["nodes"]}
        for pod in self.s.list_kind("", "pods"):
            spec, meta = pod["spec"], pod["metadata"]
            owner = (meta.get("ownerReferences") or [{}])[0]
            if not spec.get("nodeName"):
                for node in sorted(nodes.values(), key=lambda n: self._load(n["name"])):
                    if _node_fits(self.s, node, spec, ignore_pod=pod):
                        spec["nodeName"] = node["name"]
                        meta["resourceVersion"] = next_rv(self.s.cluster)
                        break
            node = nodes.get(spec.get("nodeName"))
            old = pod.get("status", {})
            if old.get("phase") in ("Succeeded", "Failed"):
                continue
            if node is None or not sim.node_ready(node):
                status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False" if node is None
                                                              else "True", "reason": "Unschedulable" if node is None
                                                              else None}],
                          "qosClass": "BestEffort"}
                if node is None:
                    status["conditions"][0]["message"] = "0/%d nodes are available: no node matches the pod's " \
                        "node selector, tolerations or resource requests (simulated scheduler)." % len(nodes)
                status["conditions"][0] = {k: v for k, v in status["conditions"][0].items() if v is not None}
                self._set_status(pod, status)
                continue
            workload = self._workload_of(pod)
            if owner.get("kind") == "Job":
                job = workload
                fails = job is not None and _job_fails(meta["namespace"], job["metadata"]["name"])
                phase = "Failed" if fails else "Succeeded"
                self._set_status(pod, {"phase": phase, "hostIP": node["address"], "podIP": self._pod_ip(pod),
                                       "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                                       "containerStatuses": [
                                           {"name": c.get("name"), "image": c.get("image"), "ready": False,
                                            "imageID": "sha256:" + _hash(c.get("image"), 64),
                                            "restartCount": 0, "state": {"terminated": {
                                                "exitCode": 1 if fails else 0,
                                                "reason": "Error" if fails else "Completed"}}}
                                           for c in spec.get("containers") or []],
                                       "startTime": meta["creationTimestamp"]})
                continue
            ready = not (workload is not None and _faulty(workload["kind"], meta["namespace"],
                                                          workload["metadata"]["name"]))
            word = "True" if ready else "False"
            self._set_status(pod, {
                "phase": "Running", "hostIP": node["address"], "podIP": self._pod_ip(pod),
                "startTime": meta["creationTimestamp"], "qosClass": "BestEffort",
                "conditions": [{"type": t, "status": word if t in ("Ready", "ContainersReady") else "True"}
                               for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                "containerStatuses": [{"name": c.get("name"), "image": c.get("image"), "ready": ready,
                                       "imageID": "sha256:" + _hash(c.get("image"), 64),
                                       "started": True, "restartCount": 0,
                                       "state": {"running": {"startedAt": meta["creationTimestamp"]}}}
                                      for c in spec.get("containers") or []]})

    def _pod_ip(self, pod):
        if pod["spec"].get("hostNetwork"):
            node = next((n for n in self.s.cluster["nodes"] if n["name"] == pod["spec"]["nodeName"]), None)
            return node["address"] if node else None
        digest = int(hashlib.md5(pod["metadata"]["uid"].encode()).hexdigest()[:4], 16)  # nosec - not security
        return "10.1.%d.%d" % (digest // 256 % 256, digest % 254 + 1)

    def _load(self, node_name):
        return len([p for p in self.s.list_kind("", "pods") if p["spec"].get("nodeName") == node_name])

    def _workload_of(self, pod):
        """The Deployment/StatefulSet/DaemonSet/Job a pod belongs to (through its ReplicaSet)."""
        for ref in pod["metadata"].get("ownerReferences") or []:
            owner = next((o for o in self.s.objects.values() if o["metadata"].get("uid") == ref.get("uid")), None)
            if owner is None:
                return None
            if owner["kind"] == "ReplicaSet":
                for ref2 in owner["metadata"].get("ownerReferences") or []:
                    dep = next((o for o in self.s.objects.values() if o["metadata"].get("uid") == ref2.get("uid")),
                               None)
                    if dep is not None:
                        return dep
            return owner
        return None

    def _deployment(self, dep):
        template = dep["spec"].get("template") or {}
        tmpl_hash = _hash(template)
        rs_name = "%s-%s" % (dep["metadata"]["name"], tmpl_hash)
        ns = dep["metadata"]["namespace"]
        mine = [rs for rs in self.s.list_kind("apps", "replicasets", ns)
                if any(r.get("uid") == dep["metadata"]["uid"] for r in rs["metadata"].get("ownerReferences") or [])]
        for rs in mine:
            if rs["metadata"]["name"] != rs_name:  # simulated instant rollout: old ReplicaSets go
                del self.s.objects[_key("apps", "replicasets", ns, rs["metadata"]["name"])]
        current = self.s.objects.get(_key("apps", "replicasets", ns, rs_name))
        replicas = dep["spec"].get("replicas", 1)
        if current is None:
            labels = dict((template.get("metadata") or {}).get("labels") or {}, **{"pod-template-hash": tmpl_hash})
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {})["labels"] = labels
            self.s.create(Resource("apps", "v1", "replicasets", "ReplicaSet", True), ns, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                             "ownerReferences": [_owner_ref(dep, "Deployment", "apps/v1")]},
                "spec": {"replicas": replicas, "selector": dep["spec"].get("selector"), "template": tmpl}})
        elif current["spec"].get("replicas") != replicas:
            current["spec"]["replicas"] = replicas
            current["metadata"]["resourceVersion"] = next_rv(self.s.cluster)

    def _deployment_status(self, dep):
        ns = dep["metadata"]["namespace"]
        pods = [p for rs in self.s.list_kind("apps", "replicasets", ns)
                if any(r.get("uid") == dep["metadata"]["uid"] for r in rs["metadata"].get("ownerReferences") or [])
                for p in self._pods_of(rs)]
        want = dep["spec"].get("replicas", 1)
        ready = len([p for p in pods if _pod_ready(p)])
        status = {"observedGeneration": dep["metadata"].get("generation", 1)}
        if pods:
            status.update(replicas=len(pods), updatedReplicas=len(pods))
        if ready:
            status.update(readyReplicas=ready, availableReplicas=ready)
        if len(pods) - ready > 0 or want - ready > 0:
            status["unavailableReplicas"] = max(want, len(pods)) - ready
        available = ready >= want
        status["conditions"] = [
            {"type": "Available", "status": "True" if available else "False",
             "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if available else
             "Deployment does not have minimum availability."},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" if available
             else "ReplicaSetUpdated", "message": 'ReplicaSet "%s-%s" has %s.' % (
                 dep["metadata"]["name"], _hash(dep["spec"].get("template") or {}),
                 "successfully progressed" if available else "is progressing")}]
        self._set_status(dep, status)

    def _replicated(self, owner, kind, api_version):
        """ReplicaSet and StatefulSet: keep spec.replicas pods, replace pods of an old template."""
        want = owner["spec"].get("replicas", 1)
        tmpl_hash = _hash(owner["spec"].get("template") or {})
        pods = self._pods_of(owner)
        label = "controller-revision-hash" if kind == "StatefulSet" else "pod-template-hash"
        revision = "%s-%s" % (owner["metadata"]["name"], tmpl_hash) if kind == "StatefulSet" else tmpl_hash
        for pod in pods:
            if kind == "StatefulSet" and pod["metadata"]["labels"].get(label) != revision:
                self._delete_pod(pod)
        pods = self._pods_of(owner)
        for pod in pods[want:] if len(pods) > want else []:
            self._delete_pod(pod)
        pods = self._pods_of(owner)
        names = {p["metadata"]["name"] for p in pods}
        for i in range(want - len(pods)):
            if kind == "StatefulSet":
                name = next("%s-%d" % (owner["metadata"]["name"], j) for j in range(want + 1)
                            if "%s-%d" % (owner["metadata"]["name"], j) not in names)
                names.add(name)
            else:
                name = "%s-%s" % (owner["metadata"]["name"], _suffix())
            self._new_pod(owner, kind, api_version, name, None, {label: revision})
        pods = self._pods_of(owner)
        ready = len([p for p in pods if _pod_ready(p)])
        status = {"replicas": len(pods), "observedGeneration": owner["metadata"].get("generation", 1)}
        if ready:
            status.update(readyReplicas=ready, availableReplicas=ready)
        if kind == "StatefulSet":
            status.update(currentReplicas=len(pods), updatedReplicas=len(pods), currentRevision=revision,
                          updateRevision=revision, availableReplicas=ready)
        else:
            status["fullyLabeledReplicas"] = len(pods)
        self._set_status(owner, status)

    def _daemonset(self, ds):
        spec = (ds["spec"].get("template") or {}).get("spec") or {}
        tmpl_hash = _hash(ds["spec"].get("template") or {})
        eligible = [n for n in self.s.cluster["nodes"] if _node_fits(self.s, n, spec, daemon=True)]
        names = {n["name"] for n in eligible}
        for pod in self._pods_of(ds):
            node = pod["spec"].get("nodeName")
            if node not in names or pod["metadata"]["labels"].get("controller-revision-hash") != tmpl_hash:
                self._delete_pod(pod)
        have = {p["spec"].get("nodeName") for p in self._pods_of(ds)}
        for node in eligible:
            if node["name"] not in have:
                self._new_pod(ds, "DaemonSet", "apps/v1", "%s-%s" % (ds["metadata"]["name"], _suffix()), node,
                              {"controller-revision-hash": tmpl_hash,
                               "pod-template-generation": str(ds["metadata"].get("generation", 1))})
        pods = self._pods_of(ds)
        ready = len([p for p in pods if _pod_ready(p)])
        status = {"desiredNumberScheduled": len(eligible), "currentNumberScheduled": len(pods),
                  "numberMisscheduled": 0, "numberReady": ready, "updatedNumberScheduled": len(pods),
                  "numberAvailable": ready, "observedGeneration": ds["metadata"].get("generation", 1)}
        if len(eligible) - ready > 0:
            status["numberUnavailable"] = len(eligible) - ready
        self._set_status(ds, status)

    def _job(self, job):
        pods = self._pods_of(job)
        if not pods and not job.get("status", {}).get("completionTime") and \
                not any(c.get("type") == "Failed" for c in job.get("status", {}).get("conditions", [])):
            self._new_pod(job, "Job", "batch/v1", "%s-%s" % (job["metadata"]["name"], _suffix()), None,
                          {"batch.kubernetes.io/job-name": job["metadata"]["name"], "job-name": job["metadata"]["name"]})
            pods = self._pods_of(job)
        status = dict(job.get("status") or {})
        succeeded = len([p for p in pods if p.get("status", {}).get("phase") == "Succeeded"])
        failed = len([p for p in pods if p.get("status", {}).get("phase") == "Failed"])
        active = len(pods) - succeeded - failed
        new = {"startTime": status.get("startTime") or job["metadata"]["creationTimestamp"]}
        if active:
            new["active"] = active
        if succeeded:
            new["succeeded"] = succeeded
            new["completionTime"] = status.get("completionTime") or now_iso()
            new["conditions"] = [{"type": "Complete", "status": "True"}]
        elif failed:
            new["failed"] = failed
            new["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                  "message": "Job has reached the specified backoff limit"}]
        new["ready"] = 0
        if status.get("conditions") and "conditions" in new:
            new["conditions"] = status["conditions"]  # keep the first transition time
        self._set_status(job, new)

    def _pdb(self, pdb):
        spec = pdb.get("spec", {})
        ns = pdb["metadata"]["namespace"]
        pods = [p for p in self.s.list_kind("", "pods", ns)
                if selector_match(spec.get("selector"), p["metadata"].get("labels"))]
        healthy = len([p for p in pods if _pod_ready(p)])
        expected = _expected_pods(self.s, pods) or len(pods)
        if "minAvailable" in spec:
            desired = _int_or_percent(spec["minAvailable"], expected)
        else:
            desired = expected - _int_or_percent(spec.get("maxUnavailable", 1), expected)
        self._set_status(pdb, {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                               "disruptionsAllowed": max(0, healthy - desired),
                               "observedGeneration": pdb["metadata"].get("generation", 1)})


def reconcile(cluster):
    store = Store(cluster)
    Reconciler(store).run()
    return store


# =========================================================================================
# chart models (sim_charts/*.py) that add node status (e.g. a GPU device plugin)
# =========================================================================================
_MODEL_CACHE = {}


def chart_model(name):
    """sim_charts/<chart name with _>.py, or None."""
    mod_name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if mod_name in _MODEL_CACHE:
        return _MODEL_CACHE[mod_name]
    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "sim_charts", "%s.py" % mod_name)
    mod = None
    if os.path.isfile(path):
        import importlib.util  # pylint: disable=import-outside-toplevel
        spec = importlib.util.spec_from_file_location("sim_charts_%s" % mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    _MODEL_CACHE[mod_name] = mod
    return mod


def chart_models_with_node_status(hook="node_status"):
    """Chart models defining `hook` (node_status, or controller for a simulated operator)."""
    folder = os.path.join(os.path.dirname(os.path.realpath(__file__)), "sim_charts")
    found = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py") and not name.startswith("_"):
                mod = chart_model(name[:-3])
                if mod is not None and hasattr(mod, hook):
                    found.append(mod)
    return found


# =========================================================================================
# HTTP
# =========================================================================================
def discovery_core(cluster):
    res_list = []
    for res in resources(cluster):
        if res.group == "" and res.version == "v1":
            res_list.append(_api_resource(res))
            for sub, kind, group, version, verbs in SUBRESOURCES.get(("", res.plural), []):
                item = {"name": "%s/%s" % (res.plural, sub), "singularName": "", "namespaced": res.namespaced,
                        "kind": kind, "verbs": verbs}
                if group != "" or version != "v1":
                    item.update(group=group, version=version)
                res_list.append(item)
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": res_list}


def _api_resource(res):
    item = {"name": res.plural, "singularName": res.kind.lower(), "namespaced": res.namespaced, "kind": res.kind,
            "verbs": V if res.kind != "Event" else V, "storageVersionHash": _hash([res.group, res.kind], 11)}
    if res.short:
        item["shortNames"] = res.short
    return item


def discovery_groups(cluster):
    groups = {}
    for res in resources(cluster):
        if res.group == "":
            continue
        groups.setdefault(res.group, [])
        if res.version not in groups[res.group]:
            groups[res.group].append(res.version)
    out = []
    for group, versions in groups.items():
        vers = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in versions]
        out.append({"name": group, "versions": vers, "preferredVersion": vers[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


def discovery_group_version(cluster, group, version):
    items = []
    for res in resources(cluster):
        if res.group == group and res.version == version:
            items.append(_api_resource(res))
            for sub, kind, sgroup, sversion, verbs in SUBRESOURCES.get((group, res.plural), []):
                item = {"name": "%s/%s" % (res.plural, sub), "singularName": "", "namespaced": res.namespaced,
                        "kind": kind, "verbs": verbs}
                if (sgroup, sversion) != (group, version):
                    item.update(group=sgroup, version=sversion)
                items.append(item)
    if not items:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "%s/%s" % (group, version),
            "resources": items}


def own_cluster_id():
    """The cluster this node currently belongs to (it changes on join/leave, like MicroK8s)."""
    m = sim.node_state().get("microk8s")
    return m["cluster_id"] if m else None


def handle(method, path, query, headers, body):
    """One API request -> (status code, JSON-able body). Runs reconcile and saves under the lock."""
    with sim.locked(sim.cluster_dir()):
        cid = own_cluster_id()
        cluster = sim.load_cluster(cid) if cid else None
        if cluster is None:
            return 503, ApiError(503, "ServiceUnavailable", "the labhub simulated node has no cluster").status()
        store = reconcile(cluster)
        try:
            code, result = route(store, method, path, query, headers, body)
        except ApiError as exc:
            code, result = exc.code, exc.status()
        if store.dirty:
            Reconciler(store).run()
            sim.save_cluster(cluster)
        return code, result


def _list_body(store, res, items):
    return {"kind": "%sList" % res.kind, "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(store.k["rv"])}, "items": items}


def route(store, method, path, query, headers, body):
    cluster = store.cluster
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    if parts == ["version"]:
        return 200, K8S_VERSION
    if parts in (["healthz"], ["readyz"], ["livez"]):
        return 200, "ok"
    if parts == ["api"]:
        return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs":
                     [{"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%s" % (sim.address(), DEFAULT_PORT)}]}
    if parts == ["apis"]:
        return 200, discovery_groups(cluster)
    if parts == ["api", "v1"]:
        return 200, discovery_core(cluster)
    if len(parts) == 3 and parts[0] == "apis":
        found = discovery_group_version(cluster, parts[1], parts[2])
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return 200, found
    if len(parts) == 2 and parts[0] == "apis":
        groups = [g for g in discovery_groups(cluster)["groups"] if g["name"] == parts[1]]
        if not groups:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return 200, dict(groups[0], kind="APIGroup", apiVersion="v1")
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    res = find_resource(cluster, group, version, plural)
    if res is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if namespace is not None and not res.namespaced:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if watch_requested(query):
        raise ApiError(405, "MethodNotAllowed", "the labhub fake API does not implement watch; poll with GET")
    dry_run = "All" in query.get("dryRun", [])
    label_sel = (query.get("labelSelector") or [None])[0]
    field_sel = (query.get("fieldSelector") or [None])[0]
    ctype = (headers.get("Content-Type") or "application/json").split(";")[0].strip()
    if name is None:
        if method == "GET":
            return 200, _list_body(store, res, store.list(res, namespace, label_sel, field_sel))
        if method == "POST":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the request body must be a JSON object")
            if not body.get("kind"):  # the API server's decoder: 400, not 422
                raise ApiError(400, "BadRequest", "Object 'Kind' is missing in '%s'" % json.dumps(body)[:300])
            return 201, store.create(res, namespace, body, dry_run)
        if method == "DELETE":
            items = store.list(res, namespace, label_sel, field_sel)
            if not dry_run:
                for item in items:
                    store.delete(res, item["metadata"].get("namespace"), item["metadata"]["name"])
            return 200, _list_body(store, res, items)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    if sub == "eviction":
        if method != "POST":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if dry_run:
            store.get(res, namespace, name)
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        return 201, store.evict(namespace, name)
    if sub not in (None, "status", "scale"):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if sub == "scale":
        obj = store.get(res, namespace, name)
        if method in ("PATCH", "PUT"):
            replicas = (body or {}).get("spec", {}).get("replicas")
            if replicas is not None:
                obj = store.patch(res, namespace, name, {"spec": {"replicas": int(replicas)}},
                                  "application/merge-patch+json", dry_run)
        return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion")
                                  if k in obj["metadata"]},
                     "spec": {"replicas": obj["spec"].get("replicas", 1)},
                     "status": {"replicas": obj.get("status", {}).get("replicas", 0)}}
    if method == "GET":
        return 200, store.get(res, namespace, name)
    if method == "PUT":
        return 200, store.replace(res, namespace, name, body or {}, dry_run, sub)
    if method == "PATCH":
        created_before = store.raw(res, namespace, name) is None
        result = store.patch(res, namespace, name, body, ctype, dry_run, sub)
        return (201 if created_before else 200), result
    if method == "DELETE":
        obj = store.delete(res, namespace, name, dry_run)
        if res.kind in ("Namespace",):
            obj.setdefault("status", {})["phase"] = "Terminating"
        return 200, obj
    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def watch_requested(query):
    return (query.get("watch") or ["false"])[0] in ("true", "1")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "labhub-fake-kube-apiserver"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if os.environ.get("LABHUB_SIM_API_LOG"):
            sys.stderr.write("%s %s\n" % (self.address_string(), format % args))

    def _serve(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode() or "null") if raw else None
        except ValueError:
            code, result = 400, ApiError(400, "BadRequest", "the labhub fake API only reads JSON bodies "
                                         "(YAML is not parsed)").status()
        else:
            try:
                code, result = handle(self.command, url.path, query, self.headers, body)
            except Exception as exc:  # pylint: disable=broad-except  # a simulator bug -> 500, not a dead server
                code, result = 500, ApiError(500, "InternalError", "labhub fake API error: %r" % exc).status()
        data = (json.dumps(result) if not isinstance(result, str) else result).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if not isinstance(result, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


# =========================================================================================
# process management (used by labhub_sim.py)
# =========================================================================================
def api_port_wanted():
    return int(os.environ.get("LABHUB_SIM_API_PORT", str(DEFAULT_PORT)))


def api_address():
    return os.environ.get("LABHUB_SIM_API_ADDRESS") or sim.address()


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            return b"labhub_" in handle.read()  # labhub_kube.py, or labhub_sim.py before its exec
    except OSError:
        return True


def server_info():
    """{"pid", "port", "address"} of this node's API server as recorded, or None."""
    info = sim._load(os.path.join(sim.node_dir(), "apiserver.json"), None)
    return info


def ensure_running():
    """Start this node's API server unless it runs (MicroK8s' kubelite starts with the snap)."""
    if os.environ.get("LABHUB_SIM_API", "on") == "off":
        return None
    info = server_info()
    if info and _pid_alive(info.get("pid")):
        return info
    return spawn()


def spawn():
    """Double-fork a detached `labhub_kube.py serve` and record {pid, port, address} at once.

    The port is chosen here (LABHUB_SIM_API_PORT, or a free one for 0) so nothing waits for the
    server's start-up; `wait_listening()` is the synchronisation point for HTTP clients."""
    path = os.path.join(sim.node_dir(), "apiserver.json")
    os.makedirs(sim.node_dir(), exist_ok=True)
    bind = os.environ.get("LABHUB_SIM_API_BIND", "0.0.0.0")  # nosec - a test double on a test network
    port = api_port_wanted()
    if port == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((bind, 0))
            port = probe.getsockname()[1]
    info = {"port": port, "address": api_address(), "bind": bind, "url": "http://%s:%d" % (api_address(), port)}
    log = os.path.join(sim.node_dir(), "apiserver.log")
    env = dict(os.environ, LABHUB_SIM_API_PORT=str(port))
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setsid()
            grandchild = os.fork()
            if grandchild != 0:
                sim._save(path, dict(info, pid=grandchild))
                os._exit(0)  # pylint: disable=protected-access
            devnull = os.open(os.devnull, os.O_RDONLY)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(devnull, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.execve(sys.executable, [sys.executable, os.path.realpath(__file__), "serve"], env)
        finally:
            os._exit(1)  # pylint: disable=protected-access
    os.waitpid(pid, 0)
    info = server_info()
    if not info or not info.get("pid"):
        raise sim.SimExit(1, "simulator: the fake API server did not start (see %s)" % log)
    return info


def wait_listening(info, timeout=15.0):
    """Wait until the API server accepts connections (it starts in the background)."""
    deadline = time.time() + timeout
    host = "127.0.0.1" if info.get("bind") in (None, "0.0.0.0") else info["bind"]  # nosec - loopback probe
    while time.time() < deadline:
        try:
            with socket.create_connection((host, int(info["port"])), timeout=1):
                return True
        except OSError:
            if not _pid_alive(info.get("pid")):
                return False
            time.sleep(0.05)
    return False


def stop():
    info = server_info()
    if info and _pid_alive(info.get("pid")):
        try:
            os.kill(int(info["pid"]), signal.SIGTERM)
        except OSError:
            pass
        for _i in range(50):
            if not _pid_alive(info["pid"]):
                break
            time.sleep(0.05)
    try:
        os.unlink(os.path.join(sim.node_dir(), "apiserver.json"))
    except FileNotFoundError:
        pass


def record_in_cluster(cluster, info):
    """Cluster state: which node serves the API where (kubeconfigs and tests read it)."""
    servers = kube(cluster)["apiservers"]
    if info:
        servers[sim.hostname()] = {"address": info["address"], "port": info["port"], "pid": info["pid"]}
    else:
        servers.pop(sim.hostname(), None)


def serve():
    bind = os.environ.get("LABHUB_SIM_API_BIND", "0.0.0.0")  # nosec - a test double on a test network
    port = api_port_wanted()
    httpd = Server((bind, port), Handler)
    port = httpd.server_address[1]
    info = {"pid": os.getpid(), "port": port, "address": api_address(), "bind": bind,
            "url": "http://%s:%d" % (api_address(), port)}
    sim._save(os.path.join(sim.node_dir(), "apiserver.json"), info)
    stopping = threading.Event()

    def on_term(_signum, _frame):
        stopping.set()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    state = {"httpd": httpd, "thread": None}

    def start():
        thread = threading.Thread(target=state["httpd"].serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        state["thread"] = thread
    start()
    while not stopping.is_set():
        if not os.path.isdir(sim.node_dir()):
            break  # the simulated node is gone (a test's temporary directory was removed)
        down = bool(kube_faults().get("api_down"))
        if down and state["httpd"] is not None:
            state["httpd"].shutdown()
            state["httpd"].server_close()
            state["httpd"] = None
        elif not down and state["httpd"] is None:
            try:
                state["httpd"] = Server((bind, port), Handler)
                start()
            except OSError:
                pass
        stopping.wait(0.2)
    if state["httpd"] is not None:
        state["httpd"].shutdown()
        state["httpd"].server_close()
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve()
    sys.stderr.write("usage: labhub_kube.py serve   (FAKE Kubernetes API server for tests; see README.md)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
