"""playbooks/audit_images.yml, the image audit operators run (issue 12 item 6), on the example
inventory and on an inventory with every feature on.

Real: ansible-playbook with the collection's playbooks and roles; every node's hardware read by
labhub.platform.hardware_facts from a hardware fixture tree (tests/unit/fixtures/hardware); the
validation pass; the roles' render modes; Helm 3 (built by tests/harness/kube) running
`helm template` on the real chart archives of ../shared/reference/charts.

SIMULATED: the bundle's image archives are empty placeholder files named as the manifest says (the
audit checks that each archive is there; playbooks/verify_bundle.yml checks its sha256, tested in
tests/integration/test_bundle.py).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import build
from sites import CHART_FILES, MANIFEST, REPO, VAULT, ansible_env, features_inventory

sys.path.insert(0, str(REPO / "tests" / "integration"))
import hardware_trees  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

HELM = build() / "bin" / "helm"
EXAMPLE_TREES = {**{h: "cpu-vm" for h in ("cp01", "cp02", "cp03", "cpu01", "cpu02")},
                 **{h: "dgx-h100" for h in ("gpu01", "gpu02", "gpu03", "gpu04")}}
FEATURES_TREES = {"cp01": "cpu-vm", "gpu01": "dgx-h100", "gpu04": "dgx-h100"}
AUDIT_TASK = "Image audit | every image the site will run, against the bundle"
AUDIT_PLAYBOOK = REPO / "playbooks" / "audit_images.yml"


def audit_only_playbook(dest: Path) -> Path:
    """playbooks/audit_images.yml without the stages that render the site (preflight, render.yml,
    the operators' render modes): its first play (the render directory) and its last (role
    image_audit, its variables and its always: step) as they are, for a site already rendered
    into image_audit_render_dir."""
    plays = yaml.safe_load(AUDIT_PLAYBOOK.read_text())
    first, last = plays[0], plays[-1]
    assert first["name"] == "Audit | a directory for the render, known to every host", first["name"]
    assert last["name"] == "Audit | every image against the bundle", last["name"]
    dest.write_text(yaml.safe_dump([first, last], sort_keys=False))
    return dest


def make_bundle(dest: Path, drop_files: tuple[str, ...] = (), drop_refs: tuple[str, ...] = ()) -> Path:
    """A bundle directory: the manifest (less ``drop_refs``), the real chart archives, and an
    empty placeholder per image archive (less those of ``drop_files``)."""
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["images"] = [i for i in manifest["images"] if i["ref"] not in drop_refs]
    dest.mkdir(parents=True)
    (dest / "bundle-manifest.yml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    for chart in manifest["charts"]:
        (dest / chart["file"]).parent.mkdir(parents=True, exist_ok=True)
        (dest / chart["file"]).symlink_to(CHART_FILES[chart["name"]])
    for image in manifest["images"]:
        if image["ref"] not in drop_files:
            (dest / image["file"]).parent.mkdir(parents=True, exist_ok=True)
            (dest / image["file"]).write_bytes(b"")
    return dest


def run_audit(root: Path, inventory: Path, trees: dict[str, str], bundle: Path,
              extra: dict[str, Any] | None = None,
              playbook: Path = AUDIT_PLAYBOOK) -> tuple[int, dict[str, Any] | None, str]:
    """Run the playbook on ``inventory`` with each host local on its fixture tree; return the
    return code, the image_audit module's result and the run's JSON output."""
    inv = root / "inventory"
    shutil.copytree(inventory, inv, ignore=shutil.ignore_patterns(".credentials", ".runs"))
    hosts = {}
    for host, tree in trees.items():
        path = root / "hw" / tree
        if not path.exists():
            hardware_trees.materialise(tree, str(path))
        hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "ansible_become": False, "microk8s_node_name": host, "preflight_hardware_root": str(path),
                       "preflight_hardware_nvidia_smi_path": str(path / "usr" / "bin" / "nvidia-smi")}
    (root / "test-hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    variables = {"labhub_bundle_dir": str(bundle), "image_audit_helm_binary": str(HELM),
                 "image_audit_render_dir": str(root / "render"), **VAULT, **(extra or {})}
    (root / "vars.json").write_text(json.dumps(variables))
    env = ansible_env()
    env.setdefault("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inv), "-i",
                           str(root / "test-hosts.yml"), str(playbook),
                           "-e", f"@{root / 'vars.json'}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    result = None
    try:
        run = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return proc.returncode, None, proc.stdout + proc.stderr
    for play in run["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(AUDIT_TASK):
                result = task["hosts"]["localhost"]
    return proc.returncode, result, proc.stdout


def refs(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["ref"]: i for i in result["images"]}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("audit-example")
    rc, result, out = run_audit(root, REPO / "inventories" / "example", EXAMPLE_TREES, make_bundle(root / "bundle"))
    return {"rc": rc, "result": result, "out": out, "root": root}


def features_with_driver(dest: Path) -> Path:
    """sites.features_inventory, and gpu04's driver from the GPU Operator (built on the node from
    the site's package mirror, whose ConfigMap the inventory names)."""
    inventory = features_inventory(dest)
    (inventory / "host_vars" / "gpu04").mkdir(parents=True, exist_ok=True)
    (inventory / "host_vars" / "gpu04" / "zz-driver.yml").write_text(yaml.safe_dump({"gpu_operator_driver_mode": "operator"}))
    (inventory / "group_vars" / "all" / "zz-driver.yml").write_text(yaml.safe_dump({
        "gpu_operator_extra_values": {"driver": {"repoConfig": {"configMapName": "site-apt-mirror"}}}}))
    return inventory


def test_example_inventory_every_image_in_the_bundle(example: dict[str, Any]) -> None:
    assert example["rc"] == 0, example["out"][-6000:]
    result = example["result"]
    images = refs(result)
    assert result["missing"] == [] and all(i["status"] == "in bundle" for i in images.values())
    assert result["kube_version"] == "1.36.0"
    # Each part of the site is seen, with where it is used:
    expect = {
        # the hub chart (helm template of the bundle's archive) and Labhub's hub configuration
        "quay.io/jupyterhub/k8s-hub:4.4.0": "chart jupyterhub: Deployment hub",
        "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0": "hub configuration",
        # role ingress' Traefik (jupyterhub_expose: ingress)
        "docker.io/library/traefik:v3.6.13": "ingress role: DaemonSet",
        # the ClusterPolicy's operands, created by the GPU Operator at run time
        "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.2-4.7.0-distroless": "ClusterPolicy cluster-policy: dcgmExporter",
        "nvcr.io/nvidia/k8s/container-toolkit:v1.18.1": "ClusterPolicy cluster-policy: toolkit",
        # an operator's *_IMAGE variable
        "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.9.1": "env DRIVER_MANAGER_IMAGE",
        # the NicClusterPolicy's operand, created by the Network Operator
        "nvcr.io/nvidia/mellanox/k8s-rdma-shared-dev-plugin:network-operator-v25.7.0": "NicClusterPolicy",
        # role monitoring (on by default)
        "quay.io/prometheus/prometheus:v3.5.0": "monitoring role: Deployment monitoring/prometheus",
        "quay.io/prometheus/node-exporter:v1.9.1": "monitoring role: DaemonSet monitoring/node-exporter",
        # MicroK8s' own
        "docker.io/calico/node:v3.29.3": "MicroK8s: calico",
        "docker.io/coredns/coredns:1.14.3": "MicroK8s: addon dns",
        "registry.k8s.io/pause:3.10": "MicroK8s: containerd sandbox_image",
        # the role's smoke-test Job
        "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04": "smoke-test Job",
    }
    for ref, source in expect.items():
        assert ref in images, (ref, sorted(images))
        assert any(source in s for s in images[ref]["sources"]), (ref, images[ref]["sources"])
    # Every node of the example keeps the host driver: no driver image is needed; the bundle's
    # driver images are reported as unused (information, not a failure).
    assert not [r for r in images if "/driver:" in r]
    assert "nvcr.io/nvidia/driver:580.105.08-ubuntu22.04" in result["unused"]
    table = result["table"]
    assert table[0].split("|")[0].strip() == "STATUS" and len(table) == len(images) + 1
    # The render directory kept for review holds what the audit read.
    render = example["root"] / "render"
    for path in ("jupyterhub/values.yaml", "gpu_operator/plan.yaml", "network_operator/nicclusterpolicy.yaml",
                 "ingress/manifests.yml", "monitoring/manifests.yml"):
        assert (render / path).is_file(), path


def test_every_feature_inventory_every_image_in_the_bundle(tmp_path: Path) -> None:
    """Time-slicing, MIG mixed, SR-IOV, the dynamic profile, TLS, and one node with the driver
    from the GPU Operator: its image tag carries the node's OS (ubuntu22.04 on the DGX tree)."""
    inventory = features_with_driver(tmp_path / "features-inventory")
    rc, result, out = run_audit(tmp_path, inventory, FEATURES_TREES, make_bundle(tmp_path / "bundle"))
    assert rc == 0, out[-6000:]
    assert result is not None and result["missing"] == []
    images = refs(result)
    driver = images["nvcr.io/nvidia/driver:580.105.08-ubuntu22.04"]
    assert driver["sources"] == ["ClusterPolicy cluster-policy: driver (node gpu04)"], driver
    # SR-IOV: the SR-IOV Network Operator's operands, from its Deployment's *_IMAGE variables,
    # but not the metrics exporter's (its feature gate is off)
    assert any("env SRIOV_CNI_IMAGE" in s
               for s in images["nvcr.io/nvidia/mellanox/sriov-cni:network-operator-v25.7.0"]["sources"])
    assert not [r for r in images if "metrics-exporter" in r or "kube-rbac-proxy" in r]
    assert "nvcr.io/nvidia/cloud-native/k8s-mig-manager:v0.13.1" in images


def test_missing_images_are_named_with_where_they_are_used(example: dict[str, Any], tmp_path: Path) -> None:
    """An archive absent from the bundle and an image the bundle's manifest lacks: the run fails,
    naming both and where each is used; nothing else is reported missing.

    The audit runs on the example's render (the ``example`` fixture's run of the whole playbook on
    the same inventory and trees: no stage before the audit reads the bundle's images), through
    the playbook's own audit play, instead of rendering the site a second time."""
    assert example["rc"] == 0, example["out"][-6000:]
    absent = "quay.io/jupyterhub/k8s-hub:4.4.0"
    unlisted = "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.2-4.7.0-distroless"
    bundle = make_bundle(tmp_path / "bundle", drop_files=(absent,), drop_refs=(unlisted,))
    rc, result, out = run_audit(tmp_path, REPO / "inventories" / "example", EXAMPLE_TREES, bundle,
                                extra={"image_audit_render_dir": str(example["root"] / "render")},
                                playbook=audit_only_playbook(tmp_path / "audit_only.yml"))
    assert rc != 0
    assert result is not None
    missing = {m["ref"]: m for m in result["missing"]}
    assert set(missing) == {absent, unlisted}, missing
    assert missing[absent]["status"] == "archive missing"
    assert missing[unlisted]["status"] == "not in the manifest"
    assert "2 of the" in out and absent in out and unlisted in out
    assert "ClusterPolicy cluster-policy: dcgmExporter" in missing[unlisted]["sources"]


def test_bad_inputs_one_table_before_anything_is_rendered(tmp_path: Path) -> None:
    """No Helm and a relative render directory: the validation's one table names both variables,
    and nothing is rendered."""
    inv = REPO / "inventories" / "example"
    rc, result, out = run_audit(tmp_path, inv, EXAMPLE_TREES, make_bundle(tmp_path / "bundle"),
                                extra={"image_audit_helm_binary": "/nonexistent/helm",
                                       "image_audit_kube_version": "latest"})
    assert rc != 0 and result is None
    assert "image_audit_helm_binary" in out and "image_audit_kube_version" in out
    assert not (tmp_path / "render" / "jupyterhub").exists()
