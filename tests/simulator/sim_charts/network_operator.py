# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATED model of the NVIDIA network-operator chart (25.7.x) and of the operator itself, for the
simulated helm and the fake API (tests/simulator). Not the chart, not the operator: no container
runs, no RDMA device exists.

Chart (objects()): the operator's CRDs (mellanox.com/v1alpha1 NicClusterPolicy, NicNodePolicy,
MacvlanNetwork, HostDeviceNetwork, IPoIBNetwork), the operator Deployment `<fullname>` (image
operator.repository/operator.image:operator.tag or the chart's appVersion), the Node Feature
Discovery subchart when nfd.enabled (`<release>-node-feature-discovery-{master,gc}` Deployments,
`-worker` DaemonSet) and, when sriovNetworkOperator.enabled, the SR-IOV Network Operator Deployment
with its SriovOperatorConfig `default`. Since 24.10 the chart no longer creates a NicClusterPolicy
from values (deployCR is gone): the policy is a separate object, applied by the role.

Operator (controller(), run by the fake API's reconcile loop), from the NicClusterPolicy
`nic-cluster-policy`, as the operator's state-rdma-shared-device-plugin manifests do
(Mellanox/network-operator manifests/state-rdma-shared-device-plugin): ConfigMap `rdma-devices`
(key config.json = spec.rdmaSharedDevicePlugin.config) and DaemonSet `rdma-shared-dp-ds` in the
operator's namespace, image <repository>/<image>:<version>, nodeSelector
feature.node.kubernetes.io/pci-15b3.present=true and network.nvidia.com/operator.mofed.wait=false,
affinity = spec.nodeAffinity, tolerations = spec.tolerations + nvidia.com/gpu. The policy's status
says ready when that DaemonSet has a Ready pod on every node it selects. Node labels: the operator
sets network.nvidia.com/operator.mofed.wait=false on NVIDIA-NIC nodes when the policy has no
ofedDriver (inbox drivers); with an ofedDriver it stays "true" here (no driver container runs).

DIFFERENCES from the real components (also in tests/simulator/README.md):
- NFD: the real worker reads PCI devices from the node's sysfs and labels
  feature.node.kubernetes.io/pci-15b3.present=true where NVIDIA (Mellanox) NICs are. The fake API
  cannot see a node's hardware, so the simulated NFD labels nodes that carry Labhub's
  `labhub.io/infiniband=true` (the role's record that hardware_facts found HCAs, i.e. what NFD
  would find) -- and only while an NFD worker DaemonSet exists.
- The fake API ignores affinity: the device plugin runs where the nodeSelector above matches.
- node_status(): the device plugin advertises `<resourcePrefix>/<resourceName>` = rdmaHcaMax for
  each configList entry whose selectors could match an NVIDIA NIC (no `vendors`, or `vendors`
  containing 15b3) on a node where its pod is Ready; linkTypes/ifNames/deviceIDs are not checked.
"""
from __future__ import annotations

import copy
import json

GROUP = "mellanox.com"
POLICY_NAME = "nic-cluster-policy"
DP_DS = "rdma-shared-dp-ds"
DP_CONFIGMAP = "rdma-devices"
NFD_LABEL = "feature.node.kubernetes.io/pci-15b3.present"
MOFED_WAIT = "network.nvidia.com/operator.mofed.wait"
LABHUB_IB = "labhub.io/infiniband"
VENDOR = "15b3"
OPERATOR_LABEL = ("app.kubernetes.io/component", "network-operator")
NFD_WORKER_SUFFIX = "-node-feature-discovery-worker"


# ------------------------------------------------------------------------------------ chart
def _fullname(release, chart):
    name = (chart or {}).get("name") or "network-operator"
    return release if name in release else "%s-%s" % (release, name)


def _labels(release, component):
    return {"app.kubernetes.io/name": "network-operator", "app.kubernetes.io/instance": release,
            OPERATOR_LABEL[0]: component}


def _workload(kind, name, namespace, labels, image, tolerations=None, replicas=None):
    spec = {"containers": [{"name": name.rsplit("-", 1)[-1] if kind == "DaemonSet" else name, "image": image,
                            "imagePullPolicy": "IfNotPresent"}]}
    if tolerations:
        spec["tolerations"] = copy.deepcopy(tolerations)
    body = {"selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}
    if replicas is not None:
        body["replicas"] = replicas
    meta = {"name": name, "namespace": namespace, "labels": dict(labels)}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": body}


def _crd(group, plural, kind, version, scope="Cluster"):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "%s.%s" % (plural, group)},
            "spec": {"group": group, "scope": scope,
                     "names": {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def objects(release, namespace, values, chart):
    values = values or {}
    op = values.get("operator") or {}
    objs = [_crd(GROUP, plural, kind, "v1alpha1") for plural, kind in (
        ("nicclusterpolicies", "NicClusterPolicy"), ("nicnodepolicies", "NicNodePolicy"),
        ("macvlannetworks", "MacvlanNetwork"), ("hostdevicenetworks", "HostDeviceNetwork"),
        ("ipoibnetworks", "IPoIBNetwork"))]
    fullname = _fullname(release, chart)
    tag = op.get("tag") or (chart or {}).get("appVersion") or (chart or {}).get("version")
    image = "%s/%s:%s" % (op.get("repository", "nvcr.io/nvidia/cloud-native"), op.get("image", "network-operator"), tag)
    objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": fullname, "namespace": namespace}})
    objs.append(_workload("Deployment", fullname, namespace, _labels(release, "network-operator"), image,
                          tolerations=op.get("tolerations"), replicas=1))
    if (values.get("nfd") or {}).get("enabled", True):
        nfd = values.get("node-feature-discovery") or {}
        img = nfd.get("image") or {}
        nfd_image = "%s:%s" % (img.get("repository", "nvcr.io/nvidia/mellanox/node-feature-discovery"),
                               img.get("tag", "network-operator-v25.7.0"))
        objs += [_crd("nfd.k8s-sigs.io", "nodefeatures", "NodeFeature", "v1alpha1", "Namespaced"),
                 _crd("nfd.k8s-sigs.io", "nodefeaturerules", "NodeFeatureRule", "v1alpha1")]
        base = "%s-node-feature-discovery" % release
        for suffix, kind in (("-master", "Deployment"), ("-gc", "Deployment"), ("-worker", "DaemonSet")):
            objs.append(_workload(kind, base + suffix, namespace, {"app.kubernetes.io/name": "node-feature-discovery",
                                                                   "app.kubernetes.io/instance": release,
                                                                   "role": suffix[1:]},
                                  nfd_image, tolerations=(nfd.get(suffix[1:]) or {}).get("tolerations"),
                                  replicas=None if kind == "DaemonSet" else 1))
    if (values.get("sriovNetworkOperator") or {}).get("enabled"):
        sriov = values.get("sriov-network-operator") or {}
        images = sriov.get("images") or {}
        for plural, kind in (("sriovnetworknodepolicies", "SriovNetworkNodePolicy"), ("sriovnetworks", "SriovNetwork"),
                             ("sriovibnetworks", "SriovIBNetwork"), ("sriovnetworknodestates", "SriovNetworkNodeState"),
                             ("sriovoperatorconfigs", "SriovOperatorConfig")):
            objs.append(_crd("sriovnetwork.openshift.io", plural, kind, "v1", "Namespaced"))
        objs.append(_workload("Deployment", "sriov-network-operator", namespace,
                              {"app.kubernetes.io/name": "sriov-network-operator", "app.kubernetes.io/instance": release},
                              images.get("operator", "sriov-network-operator:unset"), replicas=1))
        if (sriov.get("sriovOperatorConfig") or {}).get("deploy", True):
            objs.append({"apiVersion": "sriovnetwork.openshift.io/v1", "kind": "SriovOperatorConfig",
                         "metadata": {"name": "default", "namespace": namespace},
                         "spec": {"enableInjector": False, "enableOperatorWebhook": False,
                                  "configDaemonNodeSelector": dict((sriov.get("sriovOperatorConfig") or {}).get(
                                      "configDaemonNodeSelector") or {MOFED_WAIT: "false"})}})
    return objs


def notes(release, namespace, chart):
    return "NVIDIA Network Operator (SIMULATED model of chart %s) installed as %s in %s.\n" % (
        (chart or {}).get("version"), release, namespace)


# ------------------------------------------------------------------------------- operator
def _ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _operator_namespace(store):
    for dep in store.list_kind("apps", "deployments"):
        if (dep["metadata"].get("labels") or {}).get(OPERATOR_LABEL[0]) == OPERATOR_LABEL[1] and \
                (dep["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "network-operator":
            return dep["metadata"]["namespace"]
    return None


def _set_node_label(store, node, key, value):
    labels = node.setdefault("labels", {})
    if value is None and key in labels:
        del labels[key]
    elif value is not None and labels.get(key) != value:
        labels[key] = value
    else:
        return
    node["rv"] = int(_next_rv(store))
    store.dirty = True


def _next_rv(store):
    kube = store.k
    kube["rv"] += 1
    return str(kube["rv"])


def _dp_objects(policy, namespace):
    dp = policy["spec"]["rdmaSharedDevicePlugin"]
    image = "%s/%s:%s" % (dp.get("repository"), dp.get("image"), dp.get("version"))
    labels = {"app": "rdma-shared-dp", "ds-owner": POLICY_NAME}
    pod_spec = {
        "priorityClassName": "system-node-critical", "hostNetwork": True,
        "tolerations": copy.deepcopy(policy["spec"].get("tolerations") or [])
        + [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "rdma-shared-dp", "image": image, "command": ["/bin/k8s-rdma-shared-dp"],
                        "imagePullPolicy": "IfNotPresent", "securityContext": {"privileged": True},
                        "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"},
                                         {"name": "config", "mountPath": "/k8s-rdma-shared-dev-plugin"},
                                         {"name": "devs", "mountPath": "/dev/"}]}],
        "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}},
                    {"name": "config", "configMap": {"name": DP_CONFIGMAP,
                                                     "items": [{"key": "config.json", "path": "config.json"}]}},
                    {"name": "devs", "hostPath": {"path": "/dev/"}}],
        "nodeSelector": {NFD_LABEL: "true", MOFED_WAIT: "false"},
    }
    if policy["spec"].get("nodeAffinity"):
        pod_spec["affinity"] = {"nodeAffinity": copy.deepcopy(policy["spec"]["nodeAffinity"])}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": DP_CONFIGMAP, "namespace": namespace},
         "data": {"config.json": dp.get("config") or "{}"}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": DP_DS, "namespace": namespace, "labels": {"ds-owner": POLICY_NAME}},
         "spec": {"selector": {"matchLabels": {"app": "rdma-shared-dp"}},
                  "template": {"metadata": {"labels": labels}, "spec": pod_spec}}},
    ]


def controller(store):
    """SIMULATED NFD worker + Network Operator reconcile (see the module doc)."""
    namespace = _operator_namespace(store)
    nfd_running = any(ds["metadata"]["name"].endswith(NFD_WORKER_SUFFIX) for ds in store.list_kind("apps", "daemonsets"))
    for node in store.cluster["nodes"]:
        has_nic = (node.get("labels") or {}).get(LABHUB_IB) == "true"
        _set_node_label(store, node, NFD_LABEL, "true" if (nfd_running and has_nic) else None)
    policies = [p for p in store.list_kind(GROUP, "nicclusterpolicies") if p["metadata"]["name"] == POLICY_NAME]
    policy = policies[0] if policies and namespace else None
    for node in store.cluster["nodes"]:
        nic = (node.get("labels") or {}).get(NFD_LABEL) == "true"
        wait = None
        if policy is not None and nic:
            wait = "true" if policy["spec"].get("ofedDriver") else "false"
        _set_node_label(store, node, MOFED_WAIT, wait)
    if namespace is None:
        return
    wanted = _dp_objects(policy, namespace) if policy is not None and policy["spec"].get("rdmaSharedDevicePlugin") else []
    for obj in wanted:
        store.apply(obj)
    if not wanted:
        for obj in list(store.list_kind("apps", "daemonsets", namespace)) + list(store.list_kind("", "configmaps", namespace)):
            if obj["metadata"]["name"] in (DP_DS, DP_CONFIGMAP):
                store.delete_obj(obj)
    if policy is not None:
        ds = next((d for d in store.list_kind("apps", "daemonsets", namespace) if d["metadata"]["name"] == DP_DS), None)
        status = (ds or {}).get("status") or {}
        ready = bool(ds) and status.get("desiredNumberScheduled", 0) > 0 and \
            status.get("numberReady") == status.get("desiredNumberScheduled")
        applied = [{"name": "state-RDMA-device-plugin", "state": "ready" if ready else "notReady"}] if wanted else []
        new = {"state": "ready" if (ready or not wanted) else "notReady", "appliedStates": applied}
        if policy.get("status") != new:
            policy["status"] = new
            policy["metadata"]["resourceVersion"] = _next_rv(store)
            store.dirty = True


# ---------------------------------------------------------------------------- node status
def _objects(cluster, group, plural):
    prefix = "%s|%s|" % (group, plural)
    return [o for k, o in (cluster.get("kube") or {}).get("objects", {}).items() if k.startswith(prefix)]


def node_status(node, cluster):
    """rdma/<resource> the RDMA shared device plugin advertises on this node (see the module doc)."""
    policies = [p for p in _objects(cluster, GROUP, "nicclusterpolicies") if p["metadata"]["name"] == POLICY_NAME]
    if not policies or not policies[0]["spec"].get("rdmaSharedDevicePlugin"):
        return {}
    pods = [p for p in _objects(cluster, "", "pods")
            if p["spec"].get("nodeName") == node["name"]
            and any(o.get("kind") == "DaemonSet" and o.get("name") == DP_DS for o in p["metadata"].get("ownerReferences") or [])]
    if not any(_ready(p) for p in pods):
        return {}
    try:
        config = json.loads(policies[0]["spec"]["rdmaSharedDevicePlugin"].get("config") or "{}")
    except ValueError:
        return {}  # the real plugin exits on a bad config: nothing advertised
    alloc = {}
    for entry in config.get("configList") or []:
        vendors = (entry.get("selectors") or {}).get("vendors")
        if vendors and VENDOR not in vendors:
            continue
        alloc["%s/%s" % (entry.get("resourcePrefix") or "rdma", entry.get("resourceName"))] = str(entry.get("rdmaHcaMax", 0))
    return {"allocatable": alloc}
