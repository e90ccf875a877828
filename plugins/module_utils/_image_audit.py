# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The image audit (playbooks/audit_images.yml, module labhub.platform.image_audit).

Every image a Labhub cluster will run, found in what Labhub would apply and in what the pinned
operators create from it at run time, compared with the bundle:

- pod templates of every rendered chart and manifest (containers, init and ephemeral containers,
  hooks included), and the ``*_IMAGE`` environment variables of their containers (operators take
  their operands' images from there: the Network Operator's ``OFED_INIT_CONTAINER_IMAGE`` and the
  SR-IOV Network Operator's ``SRIOV_CNI_IMAGE`` ..., the GPU Operator's ``DRIVER_MANAGER_IMAGE``);
- the GPU Operator's ClusterPolicy (:func:`cluster_policy_images`) and the Network Operator's
  NicClusterPolicy (:func:`nic_cluster_policy_images`): the operands, with the driver tags the
  operators derive from each node's OS;
- the images the hub spawns (Labhub's hub configuration and the z2jh values);
- MicroK8s' own images for the addons the inventory enables (:data:`MICROK8S_IMAGES`).

An image is in the bundle when the bundle's manifest lists it and its archive file is there.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.labhub.platform.plugins.module_utils._bundle import normalize_image_name, split_image_ref
from ansible_collections.labhub.platform.plugins.module_utils._checks_accelerators import driver_image_ref

try:  # Ansible's own dependency; the audit runs on the controller
    import yaml
except ImportError:  # pragma: no cover - ansible-core requires PyYAML
    yaml = None

# Kinds whose pod template is at spec.template (apps/v1, batch/v1 Job) or spec.jobTemplate (CronJob).
_POD_TEMPLATE_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "ReplicationController")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

# MicroK8s 1.36 (the bundle manifest's snap channel 1.36/stable): the images of what MicroK8s
# applies itself. Sources, at the pinned track: canonical/microk8s v1.36
# upgrade-scripts/000-switch-to-calico/resources/calico.yaml (Calico v3.29.3, applied at install as
# $SNAP_DATA/args/cni-network/cni.yaml); canonical/microk8s-core-addons addons/dns/coredns.yaml,
# addons/hostpath-storage/storage.yaml (the provisioner and its BUSYBOX_IMAGE helper pod),
# addons/metrics-server/metrics-server.yaml. The sandbox (pause) image is containerd's
# sandbox_image, which the microk8s role sets (microk8s_sandbox_image). The same objects are
# imitated in tests/simulator/microk8s_objects.py, with these images.
MICROK8S_IMAGES = {
    "calico": ("docker.io/calico/cni:v3.29.3", "docker.io/calico/node:v3.29.3",
               "docker.io/calico/kube-controllers:v3.29.3"),
    "dns": ("docker.io/coredns/coredns:1.14.3",),
    "hostpath-storage": ("docker.io/cdkbot/hostpath-provisioner:1.6.0", "docker.io/library/busybox:1.28.4"),
    "metrics-server": ("registry.k8s.io/metrics-server/metrics-server:v0.8.1",),
}

# GPU Operator v25.10.1: the ClusterPolicy's components, the state that deploys each, and whether
# the state is on when `enabled` is absent (api/nvidia/v1/clusterpolicy_types.go IsEnabled; state
# gating in controllers/state_manager.go isStateEnabled: the sandbox states also need
# sandboxWorkloads.enabled). Images per state from controllers/object_controls.go Transform*:
# every state's validation init container runs the validator image; the driver DaemonSet also
# runs driver.manager (transformDriverManagerInitContainer) and, when on, the gds and gdrcopy
# containers, whose tags, like the driver's, get the node's OS (resolveDriverTag).
_GPU_COMPONENTS = (
    # (ClusterPolicy key, enabled when absent, sandbox-only, tag gets the node OS)
    ("driver", True, False, True),
    ("toolkit", True, False, False),
    ("devicePlugin", True, False, False),
    ("dcgm", True, False, False),
    ("dcgmExporter", True, False, False),
    ("migManager", True, False, False),
    ("gfd", True, False, False),
    ("nodeStatusExporter", False, False, False),
    ("sandboxDevicePlugin", False, True, False),
    ("kataManager", False, True, False),
    ("vfioManager", False, True, False),
    ("vgpuDeviceManager", False, True, False),
    ("vgpuManager", False, True, True),
    ("ccManager", False, True, False),
)


def normalize(ref):
    """A reference as containerd names it: Docker's short names ('traefik' ->
    'docker.io/library/traefik', _bundle.normalize_image_name) and the implicit ':latest' of an
    untagged reference."""
    name, _at, digest = str(ref).strip().partition("@")
    name, tag = split_image_ref(name)
    name = normalize_image_name(name)
    if digest:
        return "%s%s@%s" % (name, ":" + tag if tag else "", digest)
    return "%s:%s" % (name, tag or "latest")


def image_path(spec):
    """``repository/image:version`` as both operators build it (gpu-operator internal/image/image.go
    ImagePath, network-operator pkg/render/render.go imagePath): ``@`` before a sha256 version;
    only ``image`` when repository and version are empty. None when there is no image."""
    repository, image, version = (str(spec.get(k) or "") for k in ("repository", "image", "version"))
    if not repository and not version:
        return image or None
    if version.startswith("sha256:"):
        return "%s/%s@%s" % (repository, image, version)
    return "%s/%s:%s" % (repository, image, version)


def _is_image_spec(value):
    return isinstance(value, dict) and isinstance(value.get("image"), str) and ("repository" in value or "version" in value)


def pod_specs(obj):
    """(where, pod spec) of a Kubernetes object: a Pod, a workload's template, a CronJob's job template."""
    if not isinstance(obj, dict):
        return []
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [("", spec)]
    if kind in _POD_TEMPLATE_KINDS:
        return [("", (spec.get("template") or {}).get("spec") or {})]
    if kind == "CronJob":
        return [("", (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})]
    return []


def object_name(obj):
    meta = obj.get("metadata") or {}
    name = meta.get("name") or "?"
    return "%s %s/%s" % (obj.get("kind"), meta["namespace"], name) if meta.get("namespace") else "%s %s" % (obj.get("kind"), name)


# Environment images an operator reads only for a feature that is off unless a custom resource
# turns it on: the SR-IOV Network Operator (the Network Operator's sub-chart) applies its metrics
# exporter, with METRICS_EXPORTER_IMAGE and METRICS_EXPORTER_KUBE_RBAC_PROXY_IMAGE, only when the
# SriovOperatorConfig's featureGates.metricsExporter is true (k8snetworkplumbingwg/sriov-network-operator
# controllers/sriovoperatorconfig_controller.go syncMetricsExporter; pkg/featuregate/featuregate.go:
# default false).
SRIOV_METRICS_EXPORTER_ENV = ("METRICS_EXPORTER_IMAGE", "METRICS_EXPORTER_KUBE_RBAC_PROXY_IMAGE")


def feature_gated_env(docs):
    """The ``*_IMAGE`` variables no operator will use, given the custom resources in ``docs``."""
    gates = {}
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "SriovOperatorConfig":
            gates.update(((doc.get("spec") or {}).get("featureGates")) or {})
    return () if gates.get("metricsExporter") is True else SRIOV_METRICS_EXPORTER_ENV


def object_images(obj, origin, skip_env=()):
    """(ref, source) of every image an object runs or hands to an operator through a ``*_IMAGE``
    environment variable (but those of ``skip_env``)."""
    out = []
    for _where, spec in pod_specs(obj):
        for key in _CONTAINER_LISTS:
            for container in spec.get(key) or []:
                if not isinstance(container, dict):
                    continue
                where = "%s: %s, %s %s" % (origin, object_name(obj), key[:-1], container.get("name"))
                if container.get("image"):
                    out.append((normalize(container["image"]), where))
                for env in container.get("env") or []:
                    if (isinstance(env, dict) and str(env.get("name", "")).endswith("_IMAGE")
                            and env.get("name") not in skip_env
                            and isinstance(env.get("value"), str) and env["value"].strip()):
                        out.append((normalize(env["value"]), "%s, env %s" % (where, env["name"])))
    return out


def _enabled(component, default):
    value = component.get("enabled") if isinstance(component, dict) else None
    return default if value is None else bool(value)


_K8S_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def k8s_arch(arch):
    """uname -m as Kubernetes names it (the kubernetes.io/arch label): x86_64 -> amd64."""
    return _K8S_ARCH.get(str(arch or ""), str(arch or "") or "amd64")


def os_tag(node):
    """The OS part of an operator's driver tag: os-release ID + VERSION_ID, e.g. ubuntu22.04 (the
    feature.node.kubernetes.io/system-os_release labels NFD sets from the same file)."""
    return "%s%s" % (node.get("os_id") or "", node.get("os_version") or "")


def cluster_policy_images(policy, driver_nodes, origin="ClusterPolicy"):
    """The operand images the GPU Operator v25.10.1 runs for a ClusterPolicy: every enabled state's
    image, its validator, and the driver per node OS. ``driver_nodes``: the nodes the driver
    DaemonSet runs on (label nvidia.com/gpu.deploy.driver=true), each {name, os_id, os_version,
    kernel}. The driver tag is ``<version>-<os tag>``, with usePrecompiled
    ``<version>-<kernel>-<os tag>`` (controllers/object_controls.go resolveDriverTag)."""
    spec = (policy or {}).get("spec") or {}
    name = "%s %s" % (origin, ((policy or {}).get("metadata") or {}).get("name", ""))
    sandbox = _enabled(spec.get("sandboxWorkloads") or {}, False)
    out = []
    validator = image_path(spec.get("validator") or {})
    for key, default, sandbox_only, os_tagged in _GPU_COMPONENTS:
        component = spec.get(key) or {}
        if not _enabled(component, default) or (sandbox_only and not sandbox):
            continue
        ref = image_path(component)
        if key == "driver":
            for sub in ("gds", "gdrcopy"):
                extra = spec.get(sub) or {}
                if _enabled(extra, False) and image_path(extra):
                    out.extend(_per_node(image_path(extra), driver_nodes, None, "%s: %s (%s)" % (name, sub, "%s")))
            manager = image_path(component.get("manager") or {})
            if manager:
                out.append((normalize(manager), "%s: driver.manager" % name))
            precompiled = bool(component.get("usePrecompiled"))
            if ref:
                out.extend(_per_node(ref, driver_nodes, precompiled, "%s: driver (%s)" % (name, "%s")))
            continue
        if ref and os_tagged:
            out.extend(_per_node(ref, driver_nodes, None, "%s: %s (%s)" % (name, key, "%s")))
        elif ref:
            out.append((normalize(ref), "%s: %s" % (name, key)))
    if validator:
        # state-operator-validation always runs (isStateEnabled), and every state's
        # validation init container runs this image (TransformValidatorComponent).
        out.append((normalize(validator), "%s: validator" % name))
    return out


def _per_node(ref, nodes, precompiled, where):
    out = []
    if "sha256:" in ref:
        return [(normalize(ref), where % "digest, every node")]
    for node in nodes:
        full = driver_image_ref(ref, os_tag(node), (node.get("kernel") or "?") if precompiled else None)
        out.append((normalize(full), where % ("node %s" % node.get("name"))))
    return out


def nic_cluster_policy_images(policy, ib_nodes, origin="NicClusterPolicy"):
    """The operand images the Network Operator 25.7.0 runs for a NicClusterPolicy: every component
    present in the spec (api/v1alpha1/nicclusterpolicy_types.go: a component is deployed when its
    field is set), nested image specs included (secondaryNetwork.multus ...). The OFED/DOCA driver
    tag is ``<version>-<OS ID><VERSION_ID>-<arch>`` per node (pkg/state/state_ofed.go
    mofedImageFormat; the precompiled form, with the kernel, is used only when the operator finds
    such a tag in the registry, which an offline site does not have)."""
    spec = (policy or {}).get("spec") or {}
    name = "%s %s" % (origin, ((policy or {}).get("metadata") or {}).get("name", ""))
    out = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if _is_image_spec(node):
            ref = image_path(node)
            if ref and path == "ofedDriver":
                for ib in ib_nodes:
                    full = "%s-%s-%s" % (ref, os_tag(ib), k8s_arch(ib.get("arch")))
                    out.append((normalize(full), "%s: ofedDriver (node %s)" % (name, ib.get("name"))))
            elif ref:
                out.append((normalize(ref), "%s: %s" % (name, path)))
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, "%s.%s" % (path, key) if path else key)

    walk(spec, "")
    return out


def _keyed_images(tree, origin, image_of):
    """(ref, 'origin: path') for every mapping entry of ``tree`` (nested mappings and lists)
    for which ``image_of(key, value)`` gives a reference; other entries are searched further."""
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                sub = "%s.%s" % (path, key) if path else str(key)
                ref = image_of(key, value)
                if ref:
                    out.append((normalize(ref), "%s: %s" % (origin, sub)))
                else:
                    walk(value, sub)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, "%s[%d]" % (path, index))

    walk(tree, "")
    return out


def _values_image(key, value):
    if key != "image":
        return None
    if isinstance(value, dict) and value.get("name"):
        return "%s:%s" % (value["name"], value["tag"]) if value.get("tag") else value["name"]
    return value if isinstance(value, str) and value.strip() else None


def _config_image(key, value):
    named = key == "image" or str(key).endswith("_image")
    return value if named and isinstance(value, str) and value.strip() else None


def values_images(values, origin):
    """Images named in chart values: ``image: {name, tag}`` (z2jh) and ``image: ref`` strings
    (kubespawner_override, init and extra containers). Returns (ref, source)."""
    return _keyed_images(values, origin, _values_image)


def config_images(config, origin):
    """Images in a configuration mapping: string values of keys named ``image`` or ending in
    ``_image`` (Labhub's hub configuration: spawn.default_image, spawn.profiles[].image ...)."""
    return _keyed_images(config, origin, _config_image)


def kube_version(manifest):
    """The Kubernetes version of the bundle's MicroK8s track: channel '1.36/stable' -> '1.36.0'."""
    for snap in (manifest or {}).get("snaps") or []:
        if isinstance(snap, dict) and snap.get("name") == "microk8s":
            track = str(snap.get("channel") or "").split("/", 1)[0]
            parts = track.split(".")
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                return "%s.0" % track
    return ""


def microk8s_images(addons, sandbox_image):
    """MicroK8s' own images: Calico (always: MicroK8s' CNI), the enabled addons', the sandbox."""
    out = [(normalize(ref), "MicroK8s: calico") for ref in MICROK8S_IMAGES["calico"]]
    for addon in addons:
        for ref in MICROK8S_IMAGES.get(addon, ()):
            out.append((normalize(ref), "MicroK8s: addon %s" % addon))
    if sandbox_image:
        out.append((normalize(sandbox_image), "MicroK8s: containerd sandbox_image"))
    return out


def bundle_images(manifest, bundle_dir):
    """ref -> {file, present} of the manifest's images; a digest-pinned entry also answers to
    ``name@digest``."""
    out = {}
    for entry in (manifest or {}).get("images") or []:
        if not isinstance(entry, dict) or not entry.get("ref"):
            continue
        present = bool(entry.get("file")) and os.path.isfile(os.path.join(bundle_dir, str(entry["file"])))
        info = {"file": entry.get("file"), "present": present}
        ref = normalize(entry["ref"])
        out[ref] = info
        if entry.get("digest"):
            digest = str(entry["digest"])
            digest = digest if digest.startswith("sha256:") else "sha256:" + digest
            out["%s@%s" % (ref.rsplit(":", 1)[0], digest)] = info
            out["%s@%s" % (ref, digest)] = info
    return out


def audit(uses, bundle):
    """Group (ref, source) pairs by image and say where each stands: 'in bundle', 'not in the
    manifest' or 'archive missing'. Returns (images, missing), both sorted by ref."""
    by_ref = {}
    for ref, source in uses:
        sources = by_ref.setdefault(ref, [])
        if source not in sources:
            sources.append(source)
    images = []
    for ref in sorted(by_ref):
        entry = bundle.get(ref)
        status = "in bundle" if entry and entry["present"] else ("archive missing" if entry else "not in the manifest")
        images.append({"ref": ref, "status": status, "file": entry["file"] if entry else None,
                       "sources": sorted(by_ref[ref])})
    missing = [i for i in images if i["status"] != "in bundle"]
    return images, missing


def table(images):
    """Text lines: STATUS | IMAGE | USED BY (first source, and how many more)."""
    headers = ("STATUS", "IMAGE", "USED BY")
    rows = []
    for image in images:
        more = len(image["sources"]) - 1
        rows.append((image["status"], image["ref"], image["sources"][0] + (" (+%d more)" % more if more else "")))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:2])]
    fmt = "%%-%ds | %%-%ds | %%s" % tuple(widths)
    return [fmt % headers] + [fmt % r for r in rows]


class AuditError(Exception):
    """A render output or chart the audit needs cannot be read."""


def load_yaml_docs(path):
    """Every non-empty YAML document of a file, or of every *.yaml / *.yml file of a directory."""
    if yaml is None:
        raise AuditError("PyYAML is not installed on the controller")
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith((".yaml", ".yml")))
    docs = []
    for name in files:
        try:
            with open(name) as handle:
                docs.extend((name, d) for d in yaml.safe_load_all(handle) if d)
        except (IOError, OSError, yaml.YAMLError) as exc:
            raise AuditError("cannot read %s: %s" % (name, exc))
    return docs


def collect(render_dir, template, microk8s_addons=(), sandbox_image="", hub_release="jupyterhub"):
    """Every (ref, source) a site would run, from what playbooks/audit_images.yml rendered into
    ``render_dir``:

    - ``jupyterhub/values.yaml`` and ``jupyterhub/manifests/``: the hub chart (rendered with
      ``template``), its values and Labhub's hub configuration (ConfigMap key config.yaml);
    - ``gpu_operator/values.yaml`` and ``plan.yaml`` (node labels, each node's OS and kernel,
      smoke-test image), when present;
    - ``network_operator/values.yaml``, ``nicclusterpolicy.yaml`` and ``plan.yaml`` (the
      InfiniBand nodes and their OS), when present;
    - ``ingress/manifests.yml``, ``monitoring/manifests.yml`` and ``portal/``, when present.

    ``template(chart, release, namespace, values_file)`` returns the rendered documents of a chart
    of the bundle."""
    uses = []

    def docs_of(origin, docs):
        skip_env = feature_gated_env([d for _n, d in docs])
        for _name, doc in docs:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind == "ClusterPolicy":
                uses.extend(cluster_policy_images(doc, driver_nodes))
            elif kind == "NicClusterPolicy":
                uses.extend(nic_cluster_policy_images(doc, ib_nodes))
            elif isinstance(doc, dict):
                uses.extend(object_images(doc, origin, skip_env))

    def plan(path):
        docs = load_yaml_docs(path) if os.path.isfile(path) else []
        return docs[0][1] if docs else {}

    gpu_dir = os.path.join(render_dir, "gpu_operator")
    gpu_plan = plan(os.path.join(gpu_dir, "plan.yaml"))
    driver_nodes = [dict((gpu_plan.get("node_os") or {}).get(n) or {}, name=n) for n, labels in sorted((gpu_plan.get("node_labels") or {}).items())
                    if str((labels or {}).get("nvidia.com/gpu.deploy.driver")) == "true"]
    net_dir = os.path.join(render_dir, "network_operator")
    net_plan = plan(os.path.join(net_dir, "plan.yaml"))
    ib_nodes = [dict((net_plan.get("node_os") or {}).get(n) or {}, name=n)
                for n in sorted(set((net_plan.get("nodes") or {}).values()))]

    hub_dir = os.path.join(render_dir, "jupyterhub")
    hub_values = os.path.join(hub_dir, "values.yaml")
    if not os.path.isfile(hub_values):
        raise AuditError("%s does not exist (the hub's render)" % hub_values)
    manifests = load_yaml_docs(os.path.join(hub_dir, "manifests"))
    namespace = next((d["metadata"]["name"] for _n, d in manifests if d.get("kind") == "Namespace"), "default")
    docs_of("chart jupyterhub", template("jupyterhub", hub_release, namespace, hub_values))
    docs_of("hub manifests", manifests)
    uses.extend(values_images(plan(hub_values), "jupyterhub values"))
    for _name, doc in manifests:
        if doc.get("kind") == "ConfigMap" and "config.yaml" in (doc.get("data") or {}):
            uses.extend(config_images(yaml.safe_load(doc["data"]["config.yaml"]) or {},
                                      "hub configuration (%s)" % object_name(doc)))
    if gpu_plan:
        docs_of("chart gpu-operator", template("gpu-operator", gpu_plan.get("release", "gpu-operator"),
                                               gpu_plan.get("namespace", "gpu-operator"),
                                               os.path.join(gpu_dir, "values.yaml")))
        if gpu_plan.get("smoke_test_image"):
            uses.append((normalize(gpu_plan["smoke_test_image"]), "GPU Operator role: smoke-test Job"))
    if net_plan:
        docs_of("chart network-operator", template("network-operator", net_plan.get("release", "network-operator"),
                                                   net_plan.get("namespace", "nvidia-network-operator"),
                                                   os.path.join(net_dir, "values.yaml")))
        docs_of("network_operator role", load_yaml_docs(os.path.join(net_dir, "nicclusterpolicy.yaml")))
    for extra, origin in (("ingress", "ingress role"), ("monitoring", "monitoring role"), ("portal", "portal role")):
        path = os.path.join(render_dir, extra)
        if os.path.isdir(path):
            docs_of(origin, [d for sub in sorted(os.listdir(path)) if sub.endswith((".yaml", ".yml"))
                             for d in load_yaml_docs(os.path.join(path, sub))])
    uses.extend(microk8s_images(microk8s_addons, sandbox_image))
    return uses
