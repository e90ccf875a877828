# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Role labhub.platform.gpu_operator run by the real ansible-playbook against the SIMULATED
snap/microk8s CLIs, a REAL Kubernetes control plane (tests/harness/kube: TLS, RBAC, admission,
controllers, scheduler; KWOK plays the kubelets), REAL Helm (`microk8s helm3`) installing the REAL
gpu-operator v25.10.1 chart archive (../shared/reference/charts), and the SIMULATED operator
controllers (tests/harness/kube/operators.py, run by the broker: NFD labels, operand DaemonSets,
the nvidia RuntimeClass, nvidia.com/gpu from the device plugin). No operator, driver or CUDA
program runs: KWOK completes the smoke-test pod once the real scheduler has placed it.

Cluster: n1 control plane and n3 worker (cpu-vm fixture tree, no GPU), n2 worker (dgx-h100
fixture tree: 8 H100, driver loaded, its recorded nvidia-smi), formed with the simulated
microk8s CLI. Hardware facts (labhub_hardware) are labhub.platform.hardware_facts on those trees.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible_run import (add_fault_stage, ansible_playbook, api_get,  # tests/simulator/tests/ansible_run.py
                         delete_fault_stage, role_playbook)
from conftest import add_chart, register_hardware  # tests/simulator/tests/conftest.py
from controlplane import POD_FAILED, fault_stage  # tests/harness/kube/controlplane.py

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import hardware_trees  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = [pytest.mark.slow]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
CHART = next(c for c in MANIFEST["charts"] if c["name"] == "gpu-operator")
TREES = {"n1": "cpu-vm", "n2": "dgx-h100", "n3": "cpu-vm"}


@pytest.fixture
def cluster(tmp_path, sim_nodes, sim_bundle):
    """n1 (control plane), n2 (GPU worker), n3 (CPU worker), their hardware registered for the
    simulated operator controllers, the real chart in the bundle, a kubeconfig; and the hardware
    facts of each node."""
    nodes = sim_nodes(3)
    hw = {}
    for node in nodes:
        root = node.root / "hw"
        hardware_trees.materialise(TREES[node.name], str(root))
        hw[node.name] = register_hardware(node, root)
        node.install_microk8s(sim_bundle)
    for node in nodes[1:]:
        info = json.loads(nodes[0].microk8s("add-node", "--format", "json").stdout)
        node.microk8s("join", info["urls"][0], "--worker")
    assert add_chart(sim_bundle, "gpu-operator") == sim_bundle / CHART["file"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(nodes[0].microk8s("config").stdout)
    kubeconfig.chmod(0o600)
    return nodes, sim_bundle, kubeconfig, hw


def without_driver(facts):
    """The same node with the NVIDIA kernel driver not loaded (nvidia-smi fails)."""
    out = copy.deepcopy(facts)
    out["gpus"]["driver_loaded"] = False
    out["gpus"]["nvidia_smi"] = {"present": True, "ok": False}
    return out


def write_inventory(tmp_path, nodes, bundle, kubeconfig, hardware_of, extra=None, gpu_vars=None):
    first = nodes[0]

    def host(node):
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "microk8s_node_name": node.name, "labhub_hardware": hardware_of[node.name]}
    inv = {"all": {
        "vars": {"labhub_bundle_dir": str(bundle), "labhub_kubeconfig": str(kubeconfig), "gpu_operator_enabled": True,
                 "gpu_operator_helm_binary": str(first.root / "snap/bin/microk8s.helm3"),
                 "gpu_operator_node_kubeconfig": str(first.root / "var/snap/microk8s/current/credentials/client.config"),
                 "gpu_operator_state_dir": str(first.root / "etc/labhub/gpu-operator"),
                 "gpu_operator_wait_timeout": 20, "gpu_operator_smoke_test_timeout": 6, **(extra or {})},
        "children": {
            "labhub_cluster": {"children": {
                "labhub_control_plane": {"hosts": {nodes[0].name: host(nodes[0])}},
                "labhub_workers": {"hosts": {n.name: host(n) for n in nodes[1:]}}}},
            "labhub_gpu_nodes": {"hosts": {"n2": None}, "vars": {"gpu_operator_driver_mode": "host", **(gpu_vars or {})}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def run_role(tmp_path, inventory, *args):
    return ansible_playbook(tmp_path, inventory, role_playbook(tmp_path, "GPU Operator", "labhub.platform.gpu_operator"), *args, timeout=900)


def api_objects(kubeconfig, path):
    """The items of a collection of the control plane."""
    return api_get(kubeconfig, path)["items"]


def test_converge_idempotent_check_mode_exact_and_smoke_test(tmp_path, cluster):
    nodes, bundle, kubeconfig, hw = cluster
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, hw)

    proc, recap = run_role(tmp_path, inv, "--check")
    assert proc.returncode == 0, proc.stdout[-5000:]
    predicted = {h: r["changed"] for h, r in recap.items()}
    assert api_objects(kubeconfig, "/apis/apps/v1/namespaces/gpu-operator/daemonsets") == []
    assert not (nodes[0].root / "etc/labhub/gpu-operator").exists(), "check mode wrote on the node"

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert {h: r["changed"] for h, r in recap.items()} == predicted, (predicted, proc.stdout[-5000:])

    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in api_objects(kubeconfig, "/api/v1/nodes")}
    assert labels["n2"]["nvidia.com/gpu.deploy.operands"] == "true"
    assert labels["n2"]["nvidia.com/gpu.deploy.driver"] == "false"
    assert labels["n2"]["labhub.io/gpu.count"] == "8"
    for cpu in ("n1", "n3"):
        assert labels[cpu]["nvidia.com/gpu.deploy.operands"] == "false"
        assert labels[cpu]["labhub.io/gpu"] == "false"
    alloc = {n["metadata"]["name"]: n["status"]["allocatable"] for n in api_objects(kubeconfig, "/api/v1/nodes")}
    assert alloc["n2"]["nvidia.com/gpu"] == "8" and "nvidia.com/gpu" not in alloc["n1"]

    ds = {d["metadata"]["name"]: d for d in api_objects(kubeconfig, "/apis/apps/v1/namespaces/gpu-operator/daemonsets")}
    assert "nvidia-driver-daemonset" not in ds, "host driver mode must not deploy the driver container"
    assert ds["nvidia-device-plugin-daemonset"]["status"]["numberReady"] == 1
    assert ds["gpu-operator-node-feature-discovery-worker"]["status"]["desiredNumberScheduled"] == 3
    jobs = api_objects(kubeconfig, "/apis/batch/v1/namespaces/gpu-operator/jobs")
    assert len(jobs) == 1 and jobs[0]["status"]["succeeded"] == 1
    job = jobs[0]
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["runtimeClassName"] == "nvidia"
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert pod_spec["containers"][0]["image"] in {i["ref"] for i in MANIFEST["images"]}
    pods = api_objects(kubeconfig, "/api/v1/namespaces/gpu-operator/pods?labelSelector=job-name%3D" + job["metadata"]["name"])
    assert [p["spec"]["nodeName"] for p in pods] == ["n2"]
    values = yaml.safe_load((nodes[0].root / "etc/labhub/gpu-operator/values.yaml").read_text())
    assert values["toolkit"]["env"][0] == {"name": "CONTAINERD_CONFIG",
                                           "value": "/var/snap/microk8s/current/args/containerd-template.toml"}
    assert oct((nodes[0].root / "etc/labhub/gpu-operator/values.yaml").stat().st_mode & 0o777) == "0o600"

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h: r["changed"] for h, r in recap.items()} == {n.name: 0 for n in nodes}, proc.stdout[-5000:]
    proc, recap = run_role(tmp_path, inv, "--check")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h: r["changed"] for h, r in recap.items()} == {n.name: 0 for n in nodes}, proc.stdout[-5000:]

    # time-slicing: new values -> upgrade, a new smoke-test Job, 8 x 4 GPUs advertised
    proc, recap = run_role(tmp_path, inv, "-e", json.dumps({"gpu_operator_time_slicing_enabled": True}))
    assert proc.returncode == 0, proc.stdout[-5000:]
    alloc = {n["metadata"]["name"]: n["status"]["allocatable"] for n in api_objects(kubeconfig, "/api/v1/nodes")}
    assert alloc["n2"]["nvidia.com/gpu"] == "32"
    assert len(api_objects(kubeconfig, "/apis/batch/v1/namespaces/gpu-operator/jobs")) == 2


def test_smoke_test_fails_with_the_pod_reason_when_no_node_advertises_gpus(tmp_path, cluster):
    nodes, bundle, kubeconfig, hw = cluster
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, hw,
                          extra={"gpu_operator_extra_values": {"devicePlugin": {"enabled": False}}})
    proc, _recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert re.search(r"Failed to run GPU smoke test Job 'gpu-operator/labhub-gpu-smoke-[0-9a-f]{10}' due to: pod "
                     r"labhub-gpu-smoke-\S+ Pending \(PodScheduled Unschedulable: 0/3 nodes are available", text), text[-3000:]
    alloc = {n["metadata"]["name"]: n["status"]["allocatable"] for n in api_objects(kubeconfig, "/api/v1/nodes")}
    assert all("nvidia.com/gpu" not in a for a in alloc.values())


def test_helm_failure_names_each_workload_and_pod_that_is_not_ready(tmp_path, cluster):
    """helm's --wait ends (gpu_operator_helm_timeout) while the operator's pod cannot be scheduled
    (a nodeSelector no node matches, through gpu_operator_extra_values): the role fails with
    helm's own error, then names the Deployment that is not available and its pod with the real
    scheduler's reason."""
    nodes, bundle, kubeconfig, hw = cluster
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, hw, extra={
        "gpu_operator_helm_timeout": "15s",
        "gpu_operator_extra_values": {"operator": {"nodeSelector": {"labhub.test/no-such-node": "true"}}}})
    proc, _recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert re.search(r"Failed to install chart 'gpu-operator-v25\.10\.1\.tgz' as release 'gpu-operator/\S+' due to: .*"
                     r"context deadline exceeded", text), text[-3000:]
    assert re.search(r"Not ready: .*Deployment gpu-operator/gpu-operator: 0 of 1 available, \d updated", text), text[-3000:]
    assert re.search(r"pod gpu-operator-\S+ Pending \(PodScheduled Unschedulable: 0/3 nodes are available: "
                     r"3 node\(s\) didn't match Pod's node affinity/selector", text), text[-3000:]


def test_smoke_test_failure_is_reported_and_retried(tmp_path, cluster):
    """The CUDA program fails (a KWOK fault stage ends the smoke-test pod with exit code 1, as a
    kubelet reports a container that exited 1): the role fails with the Job's and the container's
    reason; once the fault is gone the next run deletes the failed Job and passes."""
    nodes, bundle, kubeconfig, hw = cluster
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, hw)
    add_fault_stage(kubeconfig, fault_stage("labhub-fault-cuda-fails", [
        {"key": '.metadata.labels["app.kubernetes.io/name"]', "operator": "In", "values": ["labhub-gpu-smoke-test"]},
        {"key": ".status.phase", "operator": "In", "values": ["Running"]}], POD_FAILED))
    proc, _recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert "Job BackoffLimitExceeded: Job has reached the specified backoff limit" in text, text[-3000:]
    assert "container cuda-vectoradd terminated: Error (exit code 1)" in text
    delete_fault_stage(kubeconfig, "labhub-fault-cuda-fails")
    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs = api_objects(kubeconfig, "/apis/batch/v1/namespaces/gpu-operator/jobs")
    assert len(jobs) == 1 and jobs[0]["status"]["succeeded"] == 1


def test_host_mode_without_driver_is_refused_before_any_change(tmp_path, cluster, monkeypatch):
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(tmp_path / "report.json"))
    nodes, bundle, kubeconfig, hw = cluster
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, dict(hw, n2=without_driver(hw["n2"])))
    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    rows = json.loads((tmp_path / "report.json").read_text())
    assert any(r["host"] == "n2" and r["variable"] == "gpu_operator_driver_mode"
               and "is 'host' but the NVIDIA kernel driver is not loaded" in r["problem"] for r in rows), rows
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in api_objects(kubeconfig, "/api/v1/nodes")}
    assert not any(k.startswith(("nvidia.com/", "labhub.io/gpu")) for lab in labels.values() for k in lab)
    assert not (nodes[0].root / "etc/labhub/gpu-operator").exists()
