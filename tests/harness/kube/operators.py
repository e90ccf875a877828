"""SIMULATED: what the NVIDIA GPU Operator's and Network Operator's own controllers, and the node
agents they deploy, write into the Kubernetes API (issue 11).

The test control plane (controlplane.py) is real, Helm is real and the charts are the real
archives; but no operator image runs (KWOK plays the kubelets, so every pod is "Running" and does
nothing). Where an operator's code would act, this simulator writes ONLY what that code writes,
from the objects the real charts created (the ClusterPolicy and NicClusterPolicy specs, NFD's
worker configuration, the device plugins' ConfigMaps) and from each node's hardware fixture tree
(the sysfs an agent on the node would read) and hardware facts. Each behaviour names the upstream
file it imitates; facts were read from these tags, no code was copied:

    NVIDIA/gpu-operator                    v25.10.1 (8460187)   "gpu-operator/..."
    NVIDIA/k8s-device-plugin               v0.18.1 (the device plugin and GFD the bundle pins)
    kubernetes-sigs/node-feature-discovery v0.18.2 (the NFD the GPU Operator chart vendors)
    Mellanox/network-operator              v25.7.0 (e26ca2e)    "network-operator/..."
    Mellanox/k8s-rdma-shared-dev-plugin    network-operator-v25.7.0

Not simulated (the roles wait on none of it): driver/toolkit/validator/DCGM work on the host,
MIG device attribute labels (nvidia.com/gpu.slices.*, .engines.*, MIG memory), the mig-manager's
nvidia.com/mig.config.state, MPS, vGPU/sandbox workloads, OpenShift, NFD sources other than pci,
system and kernel, NodeFeatureRules other than pci.device In/Exists rules, the OFED driver and
every NicClusterPolicy component other than the RDMA shared device plugin (their states report
"ignore" only when their spec is absent, as upstream does). A node agent whose pod would crash on
real hardware (e.g. a broken driver) is not made to crash: KWOK keeps every pod Running.

Use: ``sim = OperatorSimulator(plane, hosts); sim.start()`` (a thread reconciling every 0.3 s) or
``sim.reconcile()`` for one pass; ``sim.stop()``. With ``hosts_dir`` the hosts are read from that
directory at every pass (``<node name>.json``: ``{"root": fixture tree or "", "facts": hardware
facts}``, see :func:`write_host`) and nothing is reconciled while it does not exist: the
control-plane broker runs one per plane that way, and a test opts in by registering its nodes.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml

NFD_NS = "feature.node.kubernetes.io"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Host:
    """One node's hardware as its node agents see it: the fixture tree (sysfs, /etc/os-release)
    and labhub.platform.hardware_facts' output for that tree."""

    node: str
    root: Path
    facts: dict[str, Any]

    def pci_devices(self) -> list[dict[str, str]]:
        """PCI devices as NFD's pci source reads them (node-feature-discovery source/pci/utils.go
        readSinglePciAttribute: the sysfs file, '0x' stripped, class cut to 4 hex digits). The
        fixture trees hold class, vendor and device only (upstream also reads subsystem_*)."""
        out: list[dict[str, str]] = []
        base = self.root / "sys" / "bus" / "pci" / "devices"
        if not base.is_dir():
            return out
        for dev in sorted(base.iterdir()):
            attrs = {"address": dev.name}
            for name in ("class", "vendor", "device"):
                path = dev / name
                if path.exists():
                    value = path.read_text().strip().removeprefix("0x")
                    attrs[name] = value[:4] if name == "class" else value
            if {"class", "vendor"} <= set(attrs):
                attrs["netdevs"] = ",".join(sorted(p.name for p in (dev / "net").iterdir())) if (dev / "net").is_dir() else ""
                out.append(attrs)
        return out

    def os_release(self) -> dict[str, str]:
        path = self.root / "etc" / "os-release"
        out: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    out[key.strip()] = value.strip().strip('"')
        return out


# ---------------------------------------------------------------------------------------------
# Facts from the upstream sources
# ---------------------------------------------------------------------------------------------
# gpu-operator/controllers/state_manager.go: gpuNodeLabels, commonGPULabelKey, gpuStateLabels
# ("container" workload config), migManagerLabelKey, migConfigLabelKey, hasMIGCapableGPU.
GPU_NODE_LABELS = {f"{NFD_NS}/pci-10de.present": "true", f"{NFD_NS}/pci-0302_10de.present": "true",
                   f"{NFD_NS}/pci-0300_10de.present": "true"}
GPU_PRESENT = "nvidia.com/gpu.present"
OPERANDS = "nvidia.com/gpu.deploy.operands"
STATE_LABELS = {f"nvidia.com/gpu.deploy.{name}": "true" for name in (
    "driver", "gpu-feature-discovery", "container-toolkit", "device-plugin", "dcgm", "dcgm-exporter",
    "node-status-exporter", "operator-validator")}
MIG_MANAGER_LABEL = "nvidia.com/gpu.deploy.mig-manager"
MIG_CONFIG = "nvidia.com/mig.config"
# gpu-operator/assets/state-*/0[4-8]00_daemonset.yaml (names, app labels, node selectors) and
# controllers/state_manager.go isStateEnabled (which ClusterPolicy field enables each), in the
# order of ClusterPolicyController.init's addState calls. Spec key -> image of the container.
OPERAND_STATES = [
    ("state-driver", "nvidia-driver-daemonset", "driver", {"nvidia.com/gpu.deploy.driver": "true"}),
    ("state-container-toolkit", "nvidia-container-toolkit-daemonset", "toolkit",
     {"nvidia.com/gpu.deploy.container-toolkit": "true"}),
    ("state-operator-validation", "nvidia-operator-validator", "validator",
     {"nvidia.com/gpu.deploy.operator-validator": "true"}),
    ("state-device-plugin", "nvidia-device-plugin-daemonset", "devicePlugin",
     {"nvidia.com/gpu.deploy.device-plugin": "true"}),
    ("state-mps-control-daemon", "nvidia-device-plugin-mps-control-daemon", "devicePlugin",
     {"nvidia.com/gpu.deploy.device-plugin": "true", "nvidia.com/mps.capable": "true"}),
    ("state-dcgm", "nvidia-dcgm", "dcgm", {"nvidia.com/gpu.deploy.dcgm": "true"}),
    ("state-dcgm-exporter", "nvidia-dcgm-exporter", "dcgmExporter", {"nvidia.com/gpu.deploy.dcgm-exporter": "true"}),
    ("gpu-feature-discovery", "gpu-feature-discovery", "gfd", {"nvidia.com/gpu.deploy.gpu-feature-discovery": "true"}),
    ("state-mig-manager", "nvidia-mig-manager", "migManager", {"nvidia.com/gpu.deploy.mig-manager": "true"}),
    ("state-node-status-exporter", "nvidia-node-status-exporter", "nodeStatusExporter",
     {"nvidia.com/gpu.deploy.node-status-exporter": "true"}),
]
# api/nvidia/v1/clusterpolicy_types.go IsEnabled(): the default when the field is absent.
ENABLED_BY_DEFAULT = {"driver": True, "toolkit": True, "validator": True, "devicePlugin": True, "dcgm": True,
                      "dcgmExporter": True, "gfd": True, "migManager": True, "nodeStatusExporter": False}
# gpu-operator/assets/state-mig-manager/0400_configmap.yaml (default-mig-parted-config): the
# single-profile configurations of the 80 GB H100/H800/A100/A800 (device-filter 0x2330, 0x2331,
# 0x2322, 0x20b2, 0x20b5, 0x20f3, 0x20f5, 0x2324) and the 40 GB A100/A800 (0x20b0, 0x20b1, 0x20f1, 0x20f6).
MIG_80GB = {"2330", "2331", "2322", "20b2", "20b5", "20f3", "20f5", "2324"}
MIG_40GB = {"20b0", "20b1", "20f1", "20f6"}
MIG_PROFILES = {
    "all-1g.10gb": {**{d: ("1g.10gb", 7) for d in MIG_80GB}, **{d: ("1g.10gb", 4) for d in MIG_40GB}},
    "all-1g.20gb": {d: ("1g.20gb", 4) for d in MIG_80GB},
    "all-2g.20gb": {d: ("2g.20gb", 3) for d in MIG_80GB},
    "all-3g.40gb": {d: ("3g.40gb", 2) for d in MIG_80GB},
    "all-4g.40gb": {d: ("4g.40gb", 1) for d in MIG_80GB},
    "all-7g.80gb": {d: ("7g.80gb", 1) for d in MIG_80GB},
    "all-1g.5gb": {d: ("1g.5gb", 7) for d in MIG_40GB},
    "all-7g.40gb": {d: ("7g.40gb", 1) for d in MIG_40GB},
}
# CUDA compute capability by PCI device id (NVIDIA's published table, developer.nvidia.com/cuda-gpus):
# GFD reads it from NVML (k8s-device-plugin internal/lm/resource.go newArchitectureLabels).
COMPUTE_CAPABILITY = {"2330": (9, 0), "2331": (9, 0), "2322": (9, 0), "2324": (9, 0),
                      "20b0": (8, 0), "20b1": (8, 0), "20b2": (8, 0), "20b5": (8, 0), "20f1": (8, 0), "20f3": (8, 0)}
# MIG-capable products (gpu-operator/controllers/state_manager.go hasMIGCapableGPU: h100, a100, a30).
MIG_CAPABLE = re.compile(r"h100|a100|a30", re.I)
# The CUDA version a driver branch supports, for nodes whose driver the operator installs (no
# nvidia-smi output in their facts): CUDA toolkit release notes, table 3.
CUDA_OF_DRIVER = {"580": (13, 0), "575": (12, 9), "570": (12, 8), "560": (12, 6), "550": (12, 4), "535": (12, 2)}

# network-operator/pkg/nodeinfo/attributes.go, pkg/consts/consts.go, pkg/state/factory.go
# newNicClusterPolicyStates (order), pkg/state/state_*.go names.
MLNX_NIC = f"{NFD_NS}/pci-15b3.present"
WAIT_OFED = "network.nvidia.com/operator.mofed.wait"
NIC_POLICY_NAME = "nic-cluster-policy"
NIC_STATES = ["state-multus-cni", "state-container-networking-plugins", "state-ipoib-cni", "state-whereabouts-cni",
              "state-OFED", "state-SRIOV-device-plugin", "state-RDMA-device-plugin", "state-ib-kubernetes",
              "state-nv-ipam-cni", "state-nic-feature-discovery", "state-doca-telemetry-service",
              "state-nic-configuration-operator", "state-spectrum-x-operator"]


def sanitise(text: str) -> str:
    """k8s-device-plugin internal/lm/resource.go sanitise: drop [^A-Za-z0-9-_. ], join words with '-'."""
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", text).split())


class ApiError(RuntimeError):
    pass


def write_host(hosts_dir: Path, node: str, root: str | Path | None, facts: dict[str, Any]) -> Path:
    """Register one node's hardware for a broker-run simulator (atomically: it reads at any time)."""
    hosts_dir.mkdir(parents=True, exist_ok=True)
    path = hosts_dir / f"{node}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"root": str(root or ""), "facts": facts}))
    tmp.replace(path)
    return path


def read_hosts(hosts_dir: Path) -> dict[str, Host]:
    """The hosts registered in ``hosts_dir`` (a node without a tree reads as one with no devices)."""
    out = {}
    for path in sorted(hosts_dir.glob("*.json")):
        data = json.loads(path.read_text())
        root = Path(data["root"]) if data.get("root") else hosts_dir / "no-tree"
        out[path.stem] = Host(path.stem, root, data.get("facts") or {})
    return out


@dataclass
class OperatorSimulator:
    """Reconciles the simulated controllers against one control plane (see the module docstring)."""

    plane: Any
    hosts: dict[str, Host]
    interval: float = 0.3
    #: While a pass writes nothing, the wait between passes grows up to this (an idle plane then
    #: costs the API server a few requests a second at most); any write brings it back to interval.
    idle_interval: float = 2.0
    hosts_dir: Path | None = None
    log: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _errors: list[str] = field(default_factory=list)
    _wrote: bool = False

    # -- API helpers ---------------------------------------------------------------------------
    def _req(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             ok: tuple[int, ...] = (200, 201)) -> Any:
        status, data = self.plane.request(method, path, body, content_type)
        if method != "GET":
            self._wrote = True
        if status not in ok:
            raise ApiError(f"{method} {path}: {status} {data}")
        return data

    def _get(self, path: str) -> dict[str, Any] | None:
        status, data = self.plane.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ApiError(f"GET {path}: {status} {data}")
        return data

    def _list(self, path: str, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        status, data = self.plane.request("GET", path + query)
        if status == 404:
            return []
        if status != 200:
            raise ApiError(f"GET {path}: {status} {data}")
        return data.get("items") or []

    def _merge(self, path: str, patch: dict[str, Any]) -> Any:
        return self._req("PATCH", path, patch, "application/merge-patch+json")

    def _label_node(self, node: dict[str, Any], wanted: Mapping[str, str | None], who: str) -> None:
        labels = node["metadata"].get("labels") or {}
        diff = {k: v for k, v in wanted.items() if labels.get(k) != v and not (v is None and k not in labels)}
        if diff:
            self._merge(f"/api/v1/nodes/{node['metadata']['name']}", {"metadata": {"labels": diff}})
            node["metadata"]["labels"] = {**labels, **{k: v for k, v in diff.items() if v is not None}}
            for key in [k for k, v in diff.items() if v is None]:
                node["metadata"]["labels"].pop(key, None)
            self.log.append(f"{who}: node {node['metadata']['name']} labels {diff}")

    def _node_resources(self, node: dict[str, Any], resources: dict[str, str | None], who: str) -> None:
        """What the kubelet's device manager reports once a device plugin registers (capacity =
        allocatable = the plugin's device count); None removes a resource."""
        status = node.get("status") or {}
        cap, alloc = status.get("capacity") or {}, status.get("allocatable") or {}
        diff = {k: v for k, v in resources.items() if cap.get(k) != v or alloc.get(k) != v}
        diff = {k: v for k, v in diff.items() if not (v is None and k not in cap and k not in alloc)}
        if diff:
            self._merge(f"/api/v1/nodes/{node['metadata']['name']}/status",
                        {"status": {"capacity": diff, "allocatable": diff}})
            for key, value in diff.items():
                for part in (cap, alloc):
                    if value is None:
                        part.pop(key, None)
                    else:
                        part[key] = value
            self.log.append(f"{who}: node {node['metadata']['name']} resources {diff}")

    @staticmethod
    def _available(deploy: dict[str, Any] | None) -> bool:
        conds = (deploy or {}).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conds)

    def _running_pods(self) -> dict[tuple[str, str], set[str]]:
        """(namespace, DaemonSet name) -> nodes where one of its pods is Running and Ready."""
        out: dict[tuple[str, str], set[str]] = {}
        for pod in self._list("/api/v1/pods"):
            status = pod.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if status.get("phase") != "Running" or not ready or not pod["spec"].get("nodeName"):
                continue
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "DaemonSet":
                    out.setdefault((pod["metadata"]["namespace"], ref["name"]), set()).add(pod["spec"]["nodeName"])
        return out

    # -- the loop ------------------------------------------------------------------------------
    def reconcile(self) -> None:
        self._hostpath_provisioner()
        if self.hosts_dir is not None:
            if not self.hosts_dir.is_dir():
                return
            self.hosts = read_hosts(self.hosts_dir)
        nodes = {n["metadata"]["name"]: n for n in self._list("/api/v1/nodes")}
        pods = self._running_pods()
        self._nfd(nodes, pods)
        self._gpu_operator(nodes, pods)
        self._network_operator(nodes, pods)

    def start(self) -> "OperatorSimulator":
        self._stop.clear()

        def loop() -> None:
            wait = self.interval
            while not self._stop.is_set():
                self._wrote = False
                try:
                    self.reconcile()
                except Exception as err:  # noqa: BLE001 - reported by stop() / errors
                    self._errors.append(repr(err))
                    self._wrote = True  # retried soon, as a controller requeues an error
                wait = self.interval if self._wrote else min(wait * 1.5, max(self.idle_interval, self.interval))
                self._stop.wait(wait)

        self._thread = threading.Thread(target=loop, name="operator-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def errors(self) -> list[str]:
        """Errors of the reconcile loop other than conflicts and the API server's "storage is
        (re)initializing" right after a CRD appears (a controller retries both)."""
        return [e for e in self._errors if " 409 " not in e and " 429 " not in e]

    def wait_for(self, what: str, predicate: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; simulator errors: "
                             f"{self.errors[-3:]}; last log: {self.log[-5:]}")

    # -- MicroK8s' hostpath-storage addon ------------------------------------------------------
    def _hostpath_provisioner(self) -> None:
        """The hostpath-provisioner of MicroK8s' hostpath-storage addon (canonical/hostpath-provisioner
        hostpath-provisioner.go Provision, over sig-storage-lib-external-provisioner v7): while its
        Deployment in kube-system is available, every PVC the PV controller handed to
        ``microk8s.io/hostpath`` (annotation volume.kubernetes.io/storage-provisioner) and, for
        WaitForFirstConsumer, whose node the scheduler selected, gets a PV ``pvc-<PVC uid>`` with
        hostPath ``/var/snap/microk8s/common/default-storage/<ns>-<pvc>-<pv>``, the claim's access
        modes and requested size, the class' reclaim policy, node affinity to the selected node and
        a claimRef the real PV controller binds. Not simulated: the busybox pod that makes the
        directory, and deleting released volumes."""
        deploy = self._get("/apis/apps/v1/namespaces/kube-system/deployments/hostpath-provisioner")
        if not self._available(deploy):
            return
        classes: dict[str, dict[str, Any]] = {}
        for pvc in self._list("/api/v1/persistentvolumeclaims"):
            meta, spec = pvc["metadata"], pvc.get("spec") or {}
            ann = meta.get("annotations") or {}
            if spec.get("volumeName") or ann.get("volume.kubernetes.io/storage-provisioner") != "microk8s.io/hostpath":
                continue
            cls_name = spec.get("storageClassName") or ""
            if cls_name not in classes:
                classes[cls_name] = self._get(f"/apis/storage.k8s.io/v1/storageclasses/{cls_name}") or {}
            cls = classes[cls_name]
            node = ann.get("volume.kubernetes.io/selected-node", "")
            if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and not node:
                continue
            name = f"pvc-{meta['uid']}"
            pv_spec: dict[str, Any] = {
                "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
                "hostPath": {"path": f"/var/snap/microk8s/common/default-storage/{meta['namespace']}-{meta['name']}-{name}",
                             "type": "DirectoryOrCreate"},
                "storageClassName": cls_name,
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                             "name": meta["name"], "uid": meta["uid"]}}
            if node:
                pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
            pv = {"apiVersion": "v1", "kind": "PersistentVolume",
                  "metadata": {"name": name, "annotations": {"hostPathProvisionerIdentity": node or "hostpath-provisioner",
                                                             "pv.kubernetes.io/provisioned-by": "microk8s.io/hostpath"}},
                  "spec": pv_spec}
            self._req("POST", "/api/v1/persistentvolumes", pv, ok=(201, 409))
            self.log.append(f"hostpath-provisioner: {name} for {meta['namespace']}/{meta['name']}")

    # -- Node Feature Discovery ----------------------------------------------------------------
    def _nfd(self, nodes: dict[str, dict[str, Any]], pods: dict[tuple[str, str], set[str]]) -> None:
        """nfd-worker (pci, system and kernel sources) + nfd-master (labels from NodeFeatures and
        NodeFeatureRules): node-feature-discovery pkg/nfd-worker/nfd-worker.go (label name
        feature.node.kubernetes.io/<source>-<name>), source/pci/pci.go GetLabels (deviceClassWhitelist
        prefix match, deviceLabelFields joined by '_', '<fields>.present'; default whitelist 03, 0b40,
        12 and fields class, vendor), source/system/system.go (os_release.ID, VERSION_ID, .major,
        .minor), source/kernel/kernel.go (version.full, .major, .minor, .revision)."""
        workers = self._list("/apis/apps/v1/daemonsets", "app.kubernetes.io/name=node-feature-discovery,role=worker")
        rules = self._list("/apis/nfd.k8s-sigs.io/v1alpha1/nodefeaturerules") if workers else []
        for ds in workers:
            ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
            masters = self._list(f"/apis/apps/v1/namespaces/{ns}/deployments",
                                 "app.kubernetes.io/name=node-feature-discovery,role=master")
            if not any(self._available(m) for m in masters):
                continue
            config = self._nfd_worker_config(ds)
            for node_name in pods.get((ns, name), set()):
                host = self.hosts.get(node_name)
                if host is None or node_name not in nodes:
                    continue
                self._label_node(nodes[node_name], self._nfd_labels(host, config, rules), f"nfd ({ns})")

    def _nfd_worker_config(self, ds: dict[str, Any]) -> dict[str, Any]:
        for vol in ds["spec"]["template"]["spec"].get("volumes") or []:
            cm = (vol.get("configMap") or {}).get("name")
            if cm and vol.get("name") == "nfd-worker-conf":
                obj = self._get(f"/api/v1/namespaces/{ds['metadata']['namespace']}/configmaps/{cm}")
                return yaml.safe_load(((obj or {}).get("data") or {}).get("nfd-worker.conf") or "") or {}
        return {}

    def _nfd_labels(self, host: Host, config: dict[str, Any], rules: list[dict[str, Any]]) -> dict[str, str]:
        pci = ((config.get("sources") or {}).get("pci") or {})
        whitelist = [w.lower() for w in pci.get("deviceClassWhitelist") or ["03", "0b40", "12"]]
        fields = [f for f in ("class", "vendor", "device", "subsystem_vendor", "subsystem_device")
                  if f in (pci.get("deviceLabelFields") or [])] or ["class", "vendor"]
        labels: dict[str, str] = {}
        devices = host.pci_devices()
        for dev in devices:
            if any(dev["class"].startswith(w) for w in whitelist) and all(f in dev for f in fields):
                labels[f"{NFD_NS}/pci-" + "_".join(dev[f] for f in fields) + ".present"] = "true"
        release = host.os_release()
        if release.get("ID"):
            labels[f"{NFD_NS}/system-os_release.ID"] = release["ID"]
        if release.get("VERSION_ID"):
            labels[f"{NFD_NS}/system-os_release.VERSION_ID"] = release["VERSION_ID"]
            match = re.match(r"^(\d+)(\.(\d+))?", release["VERSION_ID"])
            if match:
                labels[f"{NFD_NS}/system-os_release.VERSION_ID.major"] = match.group(1)
                if match.group(3):
                    labels[f"{NFD_NS}/system-os_release.VERSION_ID.minor"] = match.group(3)
        kernel = host.facts.get("kernel") or ""
        match = re.match(r"^(\d+)\.(\d+)\.(\d+)", kernel)
        if kernel:
            labels[f"{NFD_NS}/kernel-version.full"] = kernel
        if match:
            for part, value in zip(("major", "minor", "revision"), match.groups()):
                labels[f"{NFD_NS}/kernel-version.{part}"] = value
        # nfd-master applies NodeFeatureRules (pkg/apis/nfd/nodefeaturerule/rule.go): only rules
        # matching pci.device attributes with In/Exists are evaluated here.
        for rule_obj in rules:
            for rule in (rule_obj.get("spec") or {}).get("rules") or []:
                if self._rule_matches(rule, devices):
                    for key, value in (rule.get("labels") or {}).items():
                        labels[key if "/" in key else f"{NFD_NS}/{key}"] = str(value)
        return labels

    @staticmethod
    def _rule_matches(rule: dict[str, Any], devices: list[dict[str, str]]) -> bool:
        terms = rule.get("matchFeatures") or []
        if not terms or rule.get("matchAny") or any(t.get("feature") != "pci.device" for t in terms):
            return False
        for term in terms:
            exprs = term.get("matchExpressions") or {}
            if any((e or {}).get("op") not in ("In", "Exists") for e in exprs.values()):
                return False

            def hit(dev: dict[str, str]) -> bool:
                return all(attr in dev and (e.get("op") == "Exists" or dev[attr] in [str(v) for v in e.get("value") or []])
                           for attr, e in exprs.items())
            if not any(hit(d) for d in devices):
                return False
        return True

    # -- GPU Operator --------------------------------------------------------------------------
    def _gpu_operator(self, nodes: dict[str, dict[str, Any]], pods: dict[tuple[str, str], set[str]]) -> None:
        policies = sorted(self._list("/apis/nvidia.com/v1/clusterpolicies"),
                          key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
        if not policies:
            return
        operators = [d for d in self._list("/apis/apps/v1/deployments", "app.kubernetes.io/component=gpu-operator")
                     if self._available(d)]
        if not operators:
            return
        namespace = operators[0]["metadata"]["namespace"]
        # controllers/clusterpolicy_controller.go Reconcile: only the first ClusterPolicy is
        # reconciled; another one gets SetStatus(Ignored) in memory, never written to the API
        # (no Status().Update on that path), so it keeps no status at all.
        policy = policies[0]
        spec = policy.get("spec") or {}

        def enabled(key: str) -> bool:
            value = (spec.get(key) or {}).get("enabled")
            return ENABLED_BY_DEFAULT.get(key, True) if value is None else bool(value)

        # state_manager.go labelGPUNodes (+ updateGPUStateLabels, addGPUStateLabels).
        has_nfd, gpu_nodes = False, []
        for node in nodes.values():
            labels = dict(node["metadata"].get("labels") or {})
            has_nfd = has_nfd or any(k.startswith(NFD_NS + "/") for k in labels)
            has_gpu = any(labels.get(k) == v for k, v in GPU_NODE_LABELS.items())
            wanted: dict[str, str | None] = {}
            if labels.get(GPU_PRESENT) != "true" and has_gpu:
                wanted[GPU_PRESENT] = "true"
            elif labels.get(GPU_PRESENT) == "true" and not has_gpu:
                wanted[GPU_PRESENT] = "false"
                wanted.update({k: None for k in [*STATE_LABELS, MIG_MANAGER_LABEL] if k in labels})
            if has_gpu:
                if labels.get(OPERANDS) == "false":
                    wanted.update({k: None for k in [*STATE_LABELS, MIG_MANAGER_LABEL] if k in labels})
                else:
                    wanted.update({k: v for k, v in STATE_LABELS.items() if k not in labels})
                    if self._mig_capable(labels) and MIG_MANAGER_LABEL not in labels:
                        wanted[MIG_MANAGER_LABEL] = "true"
                mig_manager = spec.get("migManager") or {}
                if (enabled("migManager") and self._mig_capable(labels) and not labels.get(MIG_CONFIG)
                        and (mig_manager.get("config") or {}).get("default") == "all-disabled"):
                    wanted[MIG_CONFIG] = "all-disabled"
            if has_gpu:
                gpu_nodes.append(node["metadata"]["name"])
            self._label_node(node, wanted, "gpu-operator")

        # RuntimeClasses (assets/pre-requisites/02x0_runtime_class*.yaml, object_controls.go
        # RuntimeClasses/transformRuntimeClass: name = handler = operator.runtimeClass or "nvidia";
        # nvidia-cdi and nvidia-legacy only when cdi.enabled, which defaults to true).
        owner = {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "name": policy["metadata"]["name"],
                 "uid": policy["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        runtime_class = (spec.get("operator") or {}).get("runtimeClass") or "nvidia"
        classes = {runtime_class: runtime_class}
        cdi = (spec.get("cdi") or {}).get("enabled")
        if cdi is None or cdi:
            classes.update({"nvidia-cdi": "nvidia-cdi", "nvidia-legacy": "nvidia-legacy"})
        for name, handler in classes.items():
            if self._get(f"/apis/node.k8s.io/v1/runtimeclasses/{name}") is None:
                self._req("POST", "/apis/node.k8s.io/v1/runtimeclasses", {
                    "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "handler": handler,
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/component": "gpu-operator"},
                                 "ownerReferences": [owner]}}, ok=(201, 409))
                self.log.append(f"gpu-operator: RuntimeClass {name}")

        # Operand DaemonSets (object_controls.go DaemonSet: none while the cluster has no GPU
        # node; a disabled state's DaemonSet is deleted) and their readiness (isDaemonSetReady).
        not_ready = []
        daemonsets = spec.get("daemonsets") or {}
        for state, ds_name, key, selector in OPERAND_STATES:
            path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{ds_name}"
            existing = self._get(path)
            if not enabled(key):
                if existing is not None:
                    self._req("DELETE", path, ok=(200, 202, 404))
                continue
            if not gpu_nodes:
                continue
            if existing is None:
                self._req("POST", f"/apis/apps/v1/namespaces/{namespace}/daemonsets",
                          self._operand_daemonset(ds_name, namespace, key, selector, spec, daemonsets, owner, nodes),
                          ok=(201, 409))
                self.log.append(f"gpu-operator: DaemonSet {ds_name}")
                not_ready.append(state)
                continue
            # isDaemonSetReady: no desired pods = ready, unavailable pods = not ready. Deviation:
            # upstream reads the DaemonSet right after creating it (empty status: "ready" for a
            # moment); here a DaemonSet the DaemonSet controller has not counted yet is not ready.
            st = existing.get("status") or {}
            if "observedGeneration" not in st or st.get("numberUnavailable", 0):
                not_ready.append(state)

        # clusterpolicy_controller.go Reconcile/updateCRState and internal/conditions/clusterpolicy.go.
        if not_ready:
            state, conds = "notReady", [
                {"type": "Ready", "status": "False", "reason": "Error", "message": ""},
                {"type": "Error", "status": "True", "reason": "OperandNotReady",
                 "message": f"ClusterPolicy is not ready, states not ready: [{' '.join(not_ready)}]"}]
        else:
            reason, message = ("NFDLabelsMissing", "No NFD labels found") if not has_nfd else (
                ("Reconciled", "ClusterPolicy is ready as all resources have been successfully reconciled") if gpu_nodes
                else ("NoGPUNodes", "No GPU node found, watching for new nodes to join the cluster."))
            state, conds = "ready", [{"type": "Ready", "status": "True", "reason": reason, "message": message},
                                     {"type": "Error", "status": "False", "reason": "Ready", "message": ""}]
        self._set_conditions(f"/apis/nvidia.com/v1/clusterpolicies/{policy['metadata']['name']}", policy,
                             {"state": state, "namespace": namespace}, conds)

        # Node agents of the operands, on the nodes where their pods run.
        for node_name in gpu_nodes:
            host = self.hosts.get(node_name)
            if host is None:
                continue
            self._mig_manager(nodes[node_name], host, spec, pods.get((namespace, "nvidia-mig-manager"), set()))
            if node_name in pods.get((namespace, "nvidia-device-plugin-daemonset"), set()):
                self._device_plugin(nodes[node_name], host, spec, namespace, pods)
            if node_name in pods.get((namespace, "gpu-feature-discovery"), set()):
                self._gfd(nodes[node_name], host, spec, namespace, pods)

    @staticmethod
    def _mig_capable(labels: dict[str, str]) -> bool:
        if labels.get("nvidia.com/vgpu.host-driver-version"):
            return False
        if "nvidia.com/mig.capable" in labels:
            return labels["nvidia.com/mig.capable"] == "true"
        return bool(MIG_CAPABLE.search(labels.get("nvidia.com/gpu.product", "")))

    def _operand_daemonset(self, name: str, namespace: str, key: str, selector: dict[str, str], spec: dict[str, Any],
                           daemonsets: dict[str, Any], owner: dict[str, Any], nodes: dict[str, Any]) -> dict[str, Any]:
        """The parts of assets/<state>/*_daemonset.yaml the API sees (name, app label, node
        selector, nvidia.com/gpu toleration, priority class) with the ClusterPolicy's image and
        spec.daemonsets labels/tolerations/priorityClassName (object_controls.go preProcessDaemonSet)."""
        component = spec.get(key) or {}
        version = str(component.get("version") or "")
        if key == "driver":
            # transformDriver appends the GPU nodes' OS (NFD system-os_release labels) to the tag.
            oses = {(n["metadata"].get("labels") or {}).get(f"{NFD_NS}/system-os_release.ID", "") +
                    (n["metadata"].get("labels") or {}).get(f"{NFD_NS}/system-os_release.VERSION_ID", "")
                    for n in nodes.values() if (n["metadata"].get("labels") or {}).get(GPU_PRESENT) == "true"}
            if len(oses) == 1 and next(iter(oses)):
                version = f"{version}-{next(iter(oses))}"
        image = f"{component.get('repository')}/{component.get('image')}:{version}"
        tolerations = daemonsets.get("tolerations") or [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        return {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner],
                         "labels": {"app": name, **(daemonsets.get("labels") or {})}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"nodeSelector": dict(selector), "tolerations": tolerations,
                                           "priorityClassName": daemonsets.get("priorityClassName") or "system-node-critical",
                                           "containers": [{"name": name, "image": image,
                                                           "imagePullPolicy": component.get("imagePullPolicy") or "IfNotPresent"}]}}},
        }

    def _set_conditions(self, path: str, obj: dict[str, Any], fields: dict[str, Any], conds: list[dict[str, str]]) -> None:
        """meta.SetStatusCondition: lastTransitionTime changes only when the status changes."""
        status = obj.get("status") or {}
        old = {c["type"]: c for c in status.get("conditions") or []}
        new = []
        for cond in conds:
            prev = old.get(cond["type"])
            if prev and all(prev.get(k, "") == cond.get(k, "") for k in ("status", "reason", "message")):
                new.append(prev)
                continue
            stamp = prev["lastTransitionTime"] if prev and prev.get("status") == cond["status"] else _now()
            new.append({**cond, "lastTransitionTime": stamp})
        if all(status.get(k) == v for k, v in fields.items()) and status.get("conditions") == new:
            return
        self._merge(f"{path}/status", {"status": {**fields, "conditions": new}})
        self.log.append(f"status {path}: {fields}")

    def _mig_state(self, node: dict[str, Any], host: Host, mig_manager_runs: bool) -> list[tuple[dict[str, Any], str, int]]:
        """Per GPU (device, MIG profile or '', count): the node's nvidia.com/mig.config applied by
        the mig-manager when its pod runs (profiles from default-mig-parted-config), else the MIG
        mode the hardware facts report (enabled without instances: profile '' count 0)."""
        profile = (node["metadata"].get("labels") or {}).get(MIG_CONFIG, "")
        out = []
        for dev in (host.facts.get("gpus") or {}).get("devices") or []:
            device_id = (dev.get("device_id") or "").lower().removeprefix("0x")
            mig = MIG_PROFILES.get(profile, {}).get(device_id)
            if mig_manager_runs and profile == "all-disabled":
                out.append((dev, "", -1))
            elif mig_manager_runs and mig:
                out.append((dev, mig[0], mig[1]))
            else:  # no mig-manager, or a configuration it cannot apply to this GPU: as found
                out.append((dev, "", 0) if dev.get("mig_mode") == "Enabled" else (dev, "", -1))
        return out  # count -1: MIG disabled (a full GPU); 0: MIG enabled without instances

    def _mig_manager(self, node: dict[str, Any], host: Host, spec: dict[str, Any], runs_on: set[str]) -> None:
        """Nothing in the API besides the MIG layout _mig_state reads (mig-parted applies the
        label's configuration on the host)."""
        return None

    def _plugin_config(self, spec: dict[str, Any], namespace: str, node: dict[str, Any]) -> dict[str, Any]:
        """The device plugin's / GFD's config: spec.devicePlugin.config (ConfigMap name, default
        key; a node's nvidia.com/device-plugin.config label picks another key), else the flags
        from the ClusterPolicy (MIG_STRATEGY = spec.mig.strategy)."""
        ref = (spec.get("devicePlugin") or {}).get("config") or {}
        config: dict[str, Any] = {}
        if ref.get("name"):
            cm = self._get(f"/api/v1/namespaces/{namespace}/configmaps/{ref['name']}")
            key = (node["metadata"].get("labels") or {}).get("nvidia.com/device-plugin.config") or ref.get("default")
            if cm and key in (cm.get("data") or {}):
                config = yaml.safe_load(cm["data"][key]) or {}
        flags = config.setdefault("flags", {})
        flags.setdefault("migStrategy", (spec.get("mig") or {}).get("strategy") or "single")
        return config

    @staticmethod
    def _replicas(config: dict[str, Any], resource: str) -> int:
        for res in ((config.get("sharing") or {}).get("timeSlicing") or {}).get("resources") or []:
            if res.get("name") == resource and int(res.get("replicas") or 0) > 0:
                return int(res["replicas"])
        return 1

    def _device_plugin(self, node: dict[str, Any], host: Host, spec: dict[str, Any], namespace: str,
                       pods: dict[tuple[str, str], set[str]]) -> None:
        """k8s-device-plugin: nvidia.com/gpu = full GPUs x time-slicing replicas (strategy none, or
        single without MIG); mig-strategy single: the MIG devices as nvidia.com/gpu; mixed:
        nvidia.com/mig-<profile>. The plugin needs a working driver (NVML): the host's (its
        nvidia-smi works) or the driver container's (nvidia.com/gpu.deploy.driver=true)."""
        labels = node["metadata"].get("labels") or {}
        node_name = node["metadata"]["name"]
        gpus = (host.facts.get("gpus") or {})
        operator_driver = labels.get("nvidia.com/gpu.deploy.driver") == "true" and node_name in pods.get(
            (namespace, "nvidia-driver-daemonset"), set())
        if not operator_driver and not (gpus.get("nvidia_smi") or {}).get("ok"):
            return
        config = self._plugin_config(spec, namespace, node)
        strategy = config["flags"]["migStrategy"]
        layout = self._mig_state(node, host, node_name in pods.get((namespace, "nvidia-mig-manager"), set()))
        full = sum(1 for _d, _p, count in layout if count == -1)
        migs: dict[str, int] = {}
        for _d, profile, count in layout:
            if profile:
                migs[profile] = migs.get(profile, 0) + count
        resources: dict[str, str | None] = {}
        replicas = self._replicas(config, "nvidia.com/gpu")
        if strategy == "none":
            resources["nvidia.com/gpu"] = str(len(layout) * replicas)
        elif strategy == "single":
            if migs and full == 0 and len(migs) == 1 and all(c for _d, p, c in layout):
                resources["nvidia.com/gpu"] = str(sum(migs.values()))
            elif not migs and all(c == -1 for _d, _p, c in layout):
                resources["nvidia.com/gpu"] = str(full * replicas)
            else:
                resources["nvidia.com/gpu"] = "0"
        else:
            resources["nvidia.com/gpu"] = str(full * replicas)
            for profile, count in migs.items():
                resources[f"nvidia.com/mig-{profile}"] = str(count)
        self._node_resources(node, resources, "device-plugin")

    def _gfd(self, node: dict[str, Any], host: Host, spec: dict[str, Any], namespace: str,
             pods: dict[tuple[str, str], set[str]]) -> None:
        """GPU Feature Discovery labels (k8s-device-plugin internal/lm): nvml.go newVersionLabeler
        (cuda.driver.*, cuda.driver-version.*, cuda.runtime.*, cuda.runtime-version.*),
        newMigCapabilityLabeler (mig.capable), newSharingLabeler (mps.capable), newGPUModeLabeler
        (gpu.mode from the PCI class), resource.go baseLabeler (gpu.product sanitised [+ -SHARED],
        gpu.count, gpu.replicas, gpu.sharing-strategy), gpu.memory (MiB), newArchitectureLabels
        (gpu.family, gpu.compute.major/minor), mig-strategy.go (mig.strategy when not none; single:
        '<model>-MIG-<profile>' and the MIG device count), machine-type.go (gpu.machine: the DMI
        product name, 'unknown' without one), timestamp.go (gfd.timestamp)."""
        node_name = node["metadata"]["name"]
        gpus = host.facts.get("gpus") or {}
        devices = gpus.get("devices") or []
        if not devices:
            return
        labels = node["metadata"].get("labels") or {}
        operator_driver = labels.get("nvidia.com/gpu.deploy.driver") == "true" and node_name in pods.get(
            (namespace, "nvidia-driver-daemonset"), set())
        smi = gpus.get("nvidia_smi") or {}
        if operator_driver:
            driver = str((spec.get("driver") or {}).get("version") or "")
            cuda = CUDA_OF_DRIVER.get(driver.split(".", maxsplit=1)[0])
        elif smi.get("ok"):
            driver = str(gpus.get("driver_version") or smi.get("driver_version") or "")
            parts = str(smi.get("cuda_version") or "").split(".")
            cuda = (int(parts[0]), int(parts[1])) if len(parts) >= 2 and parts[0].isdigit() else None
        else:
            return  # no NVML: GFD fails on the node
        config = self._plugin_config(spec, namespace, node)
        strategy = config["flags"]["migStrategy"]
        first = devices[0]
        model = first.get("name") or ""
        device_id = (first.get("device_id") or "").lower().removeprefix("0x")
        out: dict[str, str | None] = {}
        dparts = driver.split(".")
        if 2 <= len(dparts) <= 3:
            rev = dparts[2] if len(dparts) > 2 else ""
            out.update({"nvidia.com/cuda.driver.major": dparts[0], "nvidia.com/cuda.driver.minor": dparts[1],
                        "nvidia.com/cuda.driver.rev": rev, "nvidia.com/cuda.driver-version.major": dparts[0],
                        "nvidia.com/cuda.driver-version.minor": dparts[1],
                        "nvidia.com/cuda.driver-version.revision": rev, "nvidia.com/cuda.driver-version.full": driver})
        if cuda:
            out.update({"nvidia.com/cuda.runtime.major": str(cuda[0]), "nvidia.com/cuda.runtime.minor": str(cuda[1]),
                        "nvidia.com/cuda.runtime-version.major": str(cuda[0]),
                        "nvidia.com/cuda.runtime-version.minor": str(cuda[1]),
                        "nvidia.com/cuda.runtime-version.full": f"{cuda[0]}.{cuda[1]}"})
        out["nvidia.com/mig.capable"] = str(any(MIG_CAPABLE.search(d.get("name") or "") for d in devices)).lower()
        out["nvidia.com/mps.capable"] = "false"
        classes = {d["class"] for d in host.pci_devices() if d.get("vendor") == "10de" and d["class"] in ("0300", "0302")}
        out["nvidia.com/gpu.mode"] = {"0300": "graphics", "0302": "compute"}.get(next(iter(classes)), "unknown") \
            if len(classes) == 1 else "unknown"
        dmi = host.root / "sys" / "class" / "dmi" / "id" / "product_name"
        out["nvidia.com/gpu.machine"] = sanitise(dmi.read_text().strip()) if dmi.exists() else "unknown"
        replicas = self._replicas(config, "nvidia.com/gpu")
        layout = self._mig_state(node, host, node_name in pods.get((namespace, "nvidia-mig-manager"), set()))
        migs = {p for _d, p, c in layout if p}
        if strategy == "single" and migs and len(migs) == 1 and all(c > 0 for _d, _p, c in layout):
            profile = next(iter(migs))
            out.update({"nvidia.com/gpu.product": f"{sanitise(model)}-MIG-{profile}",
                        "nvidia.com/gpu.count": str(sum(c for _d, _p, c in layout)),
                        "nvidia.com/gpu.replicas": "1", "nvidia.com/gpu.sharing-strategy": "none",
                        "nvidia.com/gpu.memory": None})
        else:
            shared = replicas > 1
            out.update({"nvidia.com/gpu.product": sanitise(model) + ("-SHARED" if shared else ""),
                        "nvidia.com/gpu.count": str(len(devices)), "nvidia.com/gpu.replicas": str(replicas),
                        "nvidia.com/gpu.sharing-strategy": "time-slicing" if shared else "none"})
            if first.get("memory_mb"):
                out["nvidia.com/gpu.memory"] = str(int(first["memory_mb"]))
            if device_id in COMPUTE_CAPABILITY:
                major, minor = COMPUTE_CAPABILITY[device_id]
                family = {9: "hopper", 8: "ampere" if minor < 9 else "ada-lovelace"}.get(major, "undefined")
                out.update({"nvidia.com/gpu.family": family, "nvidia.com/gpu.compute.major": str(major),
                            "nvidia.com/gpu.compute.minor": str(minor)})
        if strategy != "none":
            out["nvidia.com/mig.strategy"] = strategy
        if any(labels.get(k) != v for k, v in out.items() if not (v is None and k not in labels)):
            out["nvidia.com/gfd.timestamp"] = str(int(time.time()))
        self._label_node(node, out, "gfd")

    # -- Network Operator ----------------------------------------------------------------------
    def _network_operator(self, nodes: dict[str, dict[str, Any]], pods: dict[tuple[str, str], set[str]]) -> None:
        operators = [d for d in self._list("/apis/apps/v1/deployments", "app.kubernetes.io/name=network-operator")
                     if self._available(d)]
        if not operators:
            return
        namespace = operators[0]["metadata"]["namespace"]
        policies = self._list("/apis/mellanox.com/v1alpha1/nicclusterpolicies")
        # controllers/nicclusterpolicy_controller.go handleMOFEDWaitLabelsNoConfig (no ofedDriver in
        # the policy, or no policy): wait label "false" on nodes with NVIDIA NICs, removed elsewhere.
        policy = next((p for p in policies if p["metadata"]["name"] == NIC_POLICY_NAME), None)
        if policy is None or not (policy.get("spec") or {}).get("ofedDriver"):
            for node in nodes.values():
                labels = node["metadata"].get("labels") or {}
                self._label_node(node, {WAIT_OFED: "false" if labels.get(MLNX_NIC) == "true" else None}, "network-operator")
        for other in policies:
            if other["metadata"]["name"] != NIC_POLICY_NAME and (other.get("status") or {}).get("state") != "ignore":
                # handleUnsupportedInstance
                self._merge(f"/apis/mellanox.com/v1alpha1/nicclusterpolicies/{other['metadata']['name']}/status",
                            {"status": {"state": "ignore", "reason": (
                                f"Unsupported NicClusterPolicy instance {other['metadata']['name']}. Only instance "
                                f"with name {NIC_POLICY_NAME} is supported")}})
        if policy is None:
            return
        spec = policy.get("spec") or {}
        owner = {"apiVersion": "mellanox.com/v1alpha1", "kind": "NicClusterPolicy", "name": NIC_POLICY_NAME,
                 "uid": policy["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        results = {state: "ignore" for state in NIC_STATES}
        dp = spec.get("rdmaSharedDevicePlugin")
        ds_path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/rdma-shared-dp-ds"
        if dp:
            results["state-RDMA-device-plugin"] = self._rdma_state(namespace, spec, dp, owner, ds_path)
        elif self._get(ds_path) is not None:
            self._req("DELETE", ds_path, ok=(200, 202, 404))
            results["state-RDMA-device-plugin"] = "notReady"
        unsupported = [k for k in ("ofedDriver", "sriovDevicePlugin", "secondaryNetwork", "ibKubernetes", "nvIpam",
                                   "nicFeatureDiscovery", "docaTelemetryService", "nicConfigurationOperator",
                                   "spectrumXOperator") if spec.get(k)]
        applied = [{"name": s, "state": results[s]} for s in NIC_STATES]
        # manager.go SyncState: ready when no state is notReady/error (components this simulator
        # does not run stay notReady).
        overall = "ready" if not unsupported and all(r in ("ready", "ignore") for r in results.values()) else "notReady"
        status = policy.get("status") or {}
        if status.get("state") != overall or status.get("appliedStates") != applied:
            self._merge(f"/apis/mellanox.com/v1alpha1/nicclusterpolicies/{NIC_POLICY_NAME}/status",
                        {"status": {"state": overall, "appliedStates": applied}})
            self.log.append(f"network-operator: NicClusterPolicy {overall}")
        if dp:
            for node_name in pods.get((namespace, "rdma-shared-dp-ds"), set()):
                host = self.hosts.get(node_name)
                if host is not None and node_name in nodes:
                    self._rdma_device_plugin(nodes[node_name], host, namespace)

    def _rdma_state(self, namespace: str, spec: dict[str, Any], dp: dict[str, Any], owner: dict[str, Any],
                    ds_path: str) -> str:
        """pkg/state/state_rdma_shared_device_plugin.go with manifests/state-rdma-shared-device-plugin
        (ConfigMap rdma-devices with config.json; DaemonSet rdma-shared-dp-ds, app=rdma-shared-dp,
        nodeSelector pci-15b3.present + mofed.wait=false, the policy's nodeAffinity and tolerations)
        and state_skel.go isDaemonSetReady (desired != 0 and desired == available == updated)."""
        if dp.get("config") and self._get(f"/api/v1/namespaces/{namespace}/configmaps/rdma-devices") is None:
            self._req("POST", f"/api/v1/namespaces/{namespace}/configmaps", {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "rdma-devices", "namespace": namespace, "ownerReferences": [owner]},
                "data": {"config.json": dp["config"]}}, ok=(201, 409))
        existing = self._get(ds_path)
        if existing is None:
            pod_spec: dict[str, Any] = {
                "priorityClassName": "system-node-critical", "hostNetwork": True,
                "tolerations": [*(spec.get("tolerations") or []),
                                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {MLNX_NIC: "true", WAIT_OFED: "false"},
                "containers": [{"name": "rdma-shared-dp", "image": f"{dp['repository']}/{dp['image']}:{dp['version']}",
                                "command": ["/bin/k8s-rdma-shared-dp"], "imagePullPolicy": "IfNotPresent",
                                "securityContext": {"privileged": True}}],
            }
            if spec.get("nodeAffinity"):
                pod_spec["affinity"] = {"nodeAffinity": spec["nodeAffinity"]}
            daemonset = {
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "rdma-shared-dp-ds", "namespace": namespace, "ownerReferences": [owner]},
                "spec": {"selector": {"matchLabels": {"app": "rdma-shared-dp"}},
                         "template": {"metadata": {"labels": {"app": "rdma-shared-dp"}}, "spec": pod_spec}}}
            self._req("POST", f"/apis/apps/v1/namespaces/{namespace}/daemonsets", daemonset, ok=(201, 409))
            self.log.append("network-operator: DaemonSet rdma-shared-dp-ds")
            return "notReady"
        st = existing.get("status") or {}
        desired = st.get("desiredNumberScheduled", 0)
        ready = desired != 0 and desired == st.get("numberAvailable", 0) == st.get("updatedNumberScheduled", 0)
        return "ready" if ready else "notReady"

    def _rdma_device_plugin(self, node: dict[str, Any], host: Host, namespace: str) -> None:
        """k8s-rdma-shared-dev-plugin pkg/resources/resources_manager.go: PCI devices of class 0x02
        (network controller) filtered by the config's selectors (vendors, deviceIDs, ifNames,
        linkTypes); server.go: rdmaHcaMax devices when any device matches, an empty resource (0)
        otherwise; resource '<resourcePrefix or rdma>/<resourceName>'. Link type of a device = the
        link layer of its RDMA ports (InfiniBand -> infiniband, Ethernet -> ether)."""
        cm = self._get(f"/api/v1/namespaces/{namespace}/configmaps/rdma-devices")
        if cm is None:
            return
        config = json.loads((cm.get("data") or {}).get("config.json") or "{}")
        hcas = {h.get("pci_address"): h for h in ((host.facts.get("infiniband") or {}).get("hcas") or [])}
        devices = []
        for dev in host.pci_devices():
            if not dev["class"].startswith("02"):
                continue
            hca = hcas.get(dev["address"])
            if hca is None:
                continue  # no RDMA device: NewPciNetDevice gives no RDMA spec, nothing to expose
            link = {"InfiniBand": "infiniband", "Ethernet": "ether"}.get(
                ((hca.get("ports") or [{}])[0]).get("link_layer", ""), "")
            devices.append({**dev, "link": link, "ifnames": [n for n in dev["netdevs"].split(",") if n]})
        resources: dict[str, str | None] = {}
        for entry in config.get("configList") or []:
            sel = entry.get("selectors") or {}
            found = [d for d in devices
                     if (not sel.get("vendors") or d["vendor"] in sel["vendors"])
                     and (not sel.get("deviceIDs") or d.get("device") in sel["deviceIDs"])
                     and (not sel.get("ifNames") or any(n in sel["ifNames"] for n in d["ifnames"]))
                     and (not sel.get("linkTypes") or d["link"] in sel["linkTypes"])]
            name = f"{entry.get('resourcePrefix') or 'rdma'}/{entry['resourceName']}"
            resources[name] = str(int(entry.get("rdmaHcaMax") or 0)) if found else "0"
        self._node_resources(node, resources, "rdma-shared-dp")
