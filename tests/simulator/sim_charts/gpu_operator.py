# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATED model of the NVIDIA gpu-operator chart (v25.10.x) for the simulated helm and the fake
API (tests/simulator). Not the chart, not the operator: no container runs and no GPU exists.

What the real chart installs: the ClusterPolicy CRD (and NVIDIADriver CRD), the operator Deployment
`gpu-operator`, a ClusterPolicy `cluster-policy` whose spec is taken from the values, the device
plugin ConfigMap when devicePlugin.config.create, and the Node Feature Discovery subchart
(`<release>-node-feature-discovery-{master,gc}` Deployments, `-worker` DaemonSet on every node).
What the real OPERATOR then creates from the ClusterPolicy is folded into the release here, since
the fake API has no controller hooks for chart models: the RuntimeClass `nvidia` (operator.runtimeClass)
and the operand DaemonSets (names as the operator gives them: nvidia-driver-daemonset,
nvidia-container-toolkit-daemonset, nvidia-device-plugin-daemonset, gpu-feature-discovery,
nvidia-operator-validator, nvidia-dcgm-exporter, nvidia-mig-manager, nvidia-dcgm), each only when
its component is enabled in the values.

DIFFERENCE from the real operator: the operator labels
GPU nodes itself (nvidia.com/gpu.present from NFD's PCI vendor 10de label, then
nvidia.com/gpu.deploy.<operand>=true unless nvidia.com/gpu.deploy.operands=false) and operand
DaemonSets select nodes by those labels. The fake API cannot run that controller, so the operand
DaemonSets here select `labhub.io/gpu=true` (Labhub's record that hardware_facts found NVIDIA PCI
GPUs, i.e. what NFD would find) plus `nvidia.com/gpu.deploy.operands=true`; the driver DaemonSet
also `nvidia.com/gpu.deploy.driver=true`.

node_status(): the device plugin advertises `nvidia.com/gpu` allocatable on a node while a
ClusterPolicy with the device plugin enabled exists and its device-plugin pod on that node is Ready:
`labhub.io/gpu.count` GPUs, times the time-slicing replicas of the plugin's ConfigMap; with a MIG
profile `all-<n>g.<m>gb` in nvidia.com/mig.config, 7 // n slices per GPU (strategy single:
as nvidia.com/gpu; mixed: as nvidia.com/mig-<n>g.<m>gb).
"""
from __future__ import annotations

import copy
import re

import yaml

GROUP = "nvidia.com"
POLICY_NAME = "cluster-policy"
DEVICE_PLUGIN_DS = "nvidia-device-plugin-daemonset"
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
CP_TOLERATIONS = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Equal", "value": "", "effect": "NoSchedule"},
                  {"key": "node-role.kubernetes.io/master", "operator": "Equal", "value": "", "effect": "NoSchedule"}]
# chart defaults that matter here (deployments/gpu-operator/values.yaml); the values passed in win
DEFAULTS = {
    "operator": {"repository": "nvcr.io/nvidia", "image": "gpu-operator", "runtimeClass": "nvidia"},
    "validator": {"repository": "nvcr.io/nvidia", "image": "gpu-operator"},
    "driver": {"enabled": True, "repository": "nvcr.io/nvidia", "image": "driver"},
    "toolkit": {"enabled": True, "repository": "nvcr.io/nvidia/k8s", "image": "container-toolkit"},
    "devicePlugin": {"enabled": True, "repository": "nvcr.io/nvidia", "image": "k8s-device-plugin"},
    "gfd": {"enabled": True, "repository": "nvcr.io/nvidia", "image": "k8s-device-plugin"},
    "dcgm": {"enabled": False, "repository": "nvcr.io/nvidia/cloud-native", "image": "dcgm"},
    "dcgmExporter": {"enabled": True, "repository": "nvcr.io/nvidia/k8s", "image": "dcgm-exporter"},
    "migManager": {"enabled": True, "repository": "nvcr.io/nvidia/cloud-native", "image": "k8s-mig-manager"},
    "mig": {"strategy": "single"},
    "nfd": {"enabled": True},
    "daemonsets": {"tolerations": DEFAULT_TOLERATIONS},
}
# operand DaemonSet -> (values section, extra node selector)
OPERANDS = [
    ("nvidia-driver-daemonset", "driver", {"nvidia.com/gpu.deploy.driver": "true"}),
    ("nvidia-container-toolkit-daemonset", "toolkit", {}),
    (DEVICE_PLUGIN_DS, "devicePlugin", {}),
    ("gpu-feature-discovery", "gfd", {}),
    ("nvidia-dcgm", "dcgm", {}),
    ("nvidia-dcgm-exporter", "dcgmExporter", {}),
    ("nvidia-mig-manager", "migManager", {}),
    ("nvidia-operator-validator", "validator", {}),
]
GPU_NODE_SELECTOR = {"labhub.io/gpu": "true", "nvidia.com/gpu.deploy.operands": "true"}


def _merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _image(section, chart):
    version = section.get("version") or (chart or {}).get("appVersion") or (chart or {}).get("version") or "latest"
    return "%s/%s:%s" % (section.get("repository"), section.get("image"), version)


def _labels(app, release):
    return {"app": app, "app.kubernetes.io/part-of": "gpu-operator", "helm.sh/chart": "gpu-operator",
            "app.kubernetes.io/instance": release}


def _workload(kind, name, namespace, release, image, node_selector=None, tolerations=None, replicas=None):
    selector = {"app": name}
    spec = {"containers": [{"name": name, "image": image}], "tolerations": copy.deepcopy(tolerations or [])}
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    obj = {"apiVersion": "apps/v1", "kind": kind,
           "metadata": {"name": name, "namespace": namespace, "labels": _labels(name, release)},
           "spec": {"selector": {"matchLabels": selector},
                    "template": {"metadata": {"labels": dict(_labels(name, release), **selector)}, "spec": spec}}}
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    return obj


def _crd(plural, kind, version, scope="Cluster"):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "%s.%s" % (plural, GROUP)},
            "spec": {"group": GROUP, "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": kind + "List"},
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def objects(release, namespace, values, chart):
    """The chart's objects, plus what the operator creates from the ClusterPolicy (see module doc)."""
    v = _merge(DEFAULTS, values or {})
    objs = [_crd("clusterpolicies", "ClusterPolicy", "v1"), _crd("nvidiadrivers", "NVIDIADriver", "v1alpha1")]
    objs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "gpu-operator", "namespace": namespace, "labels": _labels("gpu-operator", release)}})
    objs.append(_workload("Deployment", "gpu-operator", namespace, release, _image(v["operator"], chart),
                          tolerations=CP_TOLERATIONS, replicas=1))
    policy_spec = {key: copy.deepcopy(v[key]) for key in
                   ("operator", "validator", "driver", "toolkit", "devicePlugin", "gfd", "dcgm", "dcgmExporter",
                    "migManager", "mig", "daemonsets") if key in v}
    objs.append({"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
                 "metadata": {"name": POLICY_NAME, "labels": _labels("gpu-operator", release)},
                 "spec": policy_spec})
    config = v["devicePlugin"].get("config") or {}
    if config.get("create") and config.get("name"):
        objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": config["name"], "namespace": namespace, "labels": _labels("gpu-operator", release)},
                     "data": {str(k): str(d) for k, d in (config.get("data") or {}).items()}})
    if v.get("nfd", {}).get("enabled", True):
        nfd = v.get("node-feature-discovery") or {}
        image = "%s:%s" % ((nfd.get("image") or {}).get("repository", "registry.k8s.io/nfd/node-feature-discovery"),
                           (nfd.get("image") or {}).get("tag", "v0.18.2"))
        prefix = "%s-node-feature-discovery" % release
        objs.append(_workload("Deployment", prefix + "-master", namespace, release, image, tolerations=CP_TOLERATIONS, replicas=1))
        objs.append(_workload("Deployment", prefix + "-gc", namespace, release, image, replicas=1))
        objs.append(_workload("DaemonSet", prefix + "-worker", namespace, release, image,
                              tolerations=CP_TOLERATIONS + DEFAULT_TOLERATIONS))
    # --- created by the operator from the ClusterPolicy (folded in, see module doc) ---
    objs.append({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                 "metadata": {"name": v["operator"].get("runtimeClass") or "nvidia",
                              "labels": _labels("gpu-operator", release)},
                 "handler": v["operator"].get("runtimeClass") or "nvidia"})
    tolerations = (v.get("daemonsets") or {}).get("tolerations") or DEFAULT_TOLERATIONS
    for name, section, extra in OPERANDS:
        if not v.get(section, {}).get("enabled", True if section == "validator" else False):
            continue
        if section == "migManager" and v["mig"].get("strategy", "single") == "none":
            continue
        objs.append(_workload("DaemonSet", name, namespace, release, _image(v[section], chart),
                              node_selector=dict(GPU_NODE_SELECTOR, **extra), tolerations=tolerations))
    return objs


def notes(release, namespace, chart):
    return "NVIDIA GPU Operator (SIMULATED model of chart %s) installed as %s in %s.\n" % (
        (chart or {}).get("version"), release, namespace)


# ------------------------------------------------------------------------------- node status
def _objects(cluster, group, plural):
    prefix = "%s|%s|" % (group, plural)
    return [o for k, o in (cluster.get("kube") or {}).get("objects", {}).items() if k.startswith(prefix)]


def _ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _replicas(policy, namespace, cluster):
    config = (policy.get("spec", {}).get("devicePlugin") or {}).get("config") or {}
    if not config.get("name"):
        return 1
    for cm in _objects(cluster, "", "configmaps"):
        if cm["metadata"]["name"] == config["name"] and cm["metadata"].get("namespace") == namespace:
            text = (cm.get("data") or {}).get(config.get("default") or "any")
            try:
                data = yaml.safe_load(text or "") or {}
            except yaml.YAMLError:
                return 1
            for res in ((data.get("sharing") or {}).get("timeSlicing") or {}).get("resources") or []:
                if res.get("name") == "nvidia.com/gpu":
                    return max(1, int(res.get("replicas", 1)))
    return 1


def node_status(node, cluster):
    """Allocatable the device plugin adds to this node (see module doc)."""
    policies = _objects(cluster, GROUP, "clusterpolicies")
    if not policies:
        return {}
    policy = policies[0]
    if not (policy.get("spec", {}).get("devicePlugin") or {}).get("enabled", True):
        return {}
    labels = node.get("labels") or {}
    if labels.get("labhub.io/gpu") != "true" or labels.get("nvidia.com/gpu.deploy.operands") == "false":
        return {}
    plugin_pods = [p for p in _objects(cluster, "", "pods")
                   if (p["spec"].get("nodeName") == node["name"]
                       and any(o.get("kind") == "DaemonSet" and o.get("name") == DEVICE_PLUGIN_DS
                               for o in p["metadata"].get("ownerReferences") or []))]
    if not any(_ready(p) for p in plugin_pods):
        return {}
    namespace = plugin_pods[0]["metadata"]["namespace"]
    try:
        gpus = int(labels.get("labhub.io/gpu.count", "0"))
    except ValueError:
        gpus = 0
    strategy = (policy.get("spec", {}).get("mig") or {}).get("strategy", "single")
    mig = re.match(r"^all-([1-7])g\.(\d+gb)$", labels.get("nvidia.com/mig.config", ""))
    if mig and strategy in ("single", "mixed"):
        slices = gpus * (7 // int(mig.group(1)))
        name = "nvidia.com/gpu" if strategy == "single" else "nvidia.com/mig-%sg.%s" % (mig.group(1), mig.group(2))
        return {"allocatable": {name: str(slices)}}
    return {"allocatable": {"nvidia.com/gpu": str(gpus * _replicas(policy, namespace, cluster))}}
