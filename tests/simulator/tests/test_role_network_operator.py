# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Role labhub.platform.network_operator run by the real ansible-playbook against the SIMULATED
snap/microk8s CLIs, a REAL Kubernetes control plane (tests/harness/kube; KWOK plays the kubelets),
REAL Helm (`microk8s helm3`) installing the REAL network-operator 25.7.0 chart archive
(../shared/reference/charts), the SIMULATED operator controllers (tests/harness/kube/operators.py,
run by the broker: NFD labels, the NicClusterPolicy status, the RDMA shared device plugin's
DaemonSet and rdma/ resources) and the FAKE modprobe (tests/simulator/modprobe). No operator,
device plugin or RDMA module runs; the fake modprobe only edits the fixture tree's proc/modules.

Cluster: n1 control plane (cpu-vm hardware fixture: no HCA), n2 worker (dgx-h100 fixture: four
ConnectX-7 InfiniBand HCAs, its RDMA modules removed from proc/modules so the role must load them).
The role reads the hardware itself with labhub.platform.hardware_facts on the fixture trees.
"""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml
from ansible_run import add_fault_stage, ansible_playbook, api_get, role_playbook  # tests/simulator/tests/ansible_run.py
from conftest import add_chart, register_hardware  # tests/simulator/tests/conftest.py
from controlplane import POD_RUNNING_NOT_READY, fault_stage  # tests/harness/kube/controlplane.py

REPO = Path(__file__).resolve().parents[3]
SIM = REPO / "tests" / "simulator"
sys.path.insert(0, str(SIM))
sys.path.insert(0, str(REPO / "tests" / "integration"))
import hardware_trees  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = [pytest.mark.slow]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
CHART = next(c for c in MANIFEST["charts"] if c["name"] == "network-operator")
RDMA = ("rdma_cm", "ib_umad", "ib_uverbs")
NS = "nvidia-network-operator"


def hardware_root(node, tree, strip_rdma=False):
    root = node.root / "hw"
    hardware_trees.materialise(tree, str(root))
    if strip_rdma:
        modules = root / "proc" / "modules"
        modules.write_text("".join(line for line in modules.read_text().splitlines(True)
                                   if line.split(" ", 1)[0] not in RDMA))
    wrapper = node.root / "usr/local/sbin/modprobe"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f"#!/bin/sh\nLABHUB_SIM_ROOT='{root}'; export LABHUB_SIM_ROOT\nexec {SIM / 'modprobe'} \"$@\"\n")
    wrapper.chmod(0o755)
    register_hardware(node, root)
    return root


@pytest.fixture
def cluster(tmp_path, sim_nodes, sim_bundle):
    nodes = sim_nodes(2)
    for node in nodes:
        node.install_microk8s(sim_bundle)
    info = json.loads(nodes[0].microk8s("add-node", "--format", "json").stdout)
    nodes[1].microk8s("join", info["urls"][0], "--worker")
    assert add_chart(sim_bundle, "network-operator") == sim_bundle / CHART["file"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(nodes[0].microk8s("config").stdout)
    kubeconfig.chmod(0o600)
    return nodes, sim_bundle, kubeconfig


def write_inventory(tmp_path, nodes, bundle, kubeconfig, ib_hosts, extra=None):
    first = nodes[0]

    def host(node):
        hw = node.root / "hw"
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "microk8s_node_name": node.name, "network_operator_host_root": str(hw),
                "network_operator_modprobe_command": str(node.root / "usr/local/sbin/modprobe"),
                "network_operator_modules_load_file": str(hw / "etc/modules-load.d/labhub-rdma.conf")}
    inv = {"all": {
        "vars": {"labhub_bundle_dir": str(bundle), "labhub_kubeconfig": str(kubeconfig), "network_operator_enabled": True,
                 "network_operator_helm_binary": str(first.root / "snap/bin/microk8s.helm3"),
                 "network_operator_node_kubeconfig": str(first.root / "var/snap/microk8s/current/credentials/client.config"),
                 "network_operator_state_dir": str(first.root / "var/lib/labhub/network-operator"),
                 "network_operator_ready_timeout": 6, "network_operator_ready_delay": 1, **(extra or {})},
        "children": {
            "labhub_cluster": {"children": {
                "labhub_control_plane": {"hosts": {nodes[0].name: host(nodes[0])}},
                "labhub_workers": {"hosts": {n.name: host(n) for n in nodes[1:]}}}},
            "labhub_ib_nodes": {"hosts": {name: None for name in ib_hosts}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def run_role(tmp_path, inventory, *args):
    return ansible_playbook(tmp_path, inventory, role_playbook(tmp_path, "Network Operator", "labhub.platform.network_operator"), *args, timeout=900)


def api(kubeconfig, path):
    return api_get(kubeconfig, path)


def loaded(root):
    return {line.split(" ", 1)[0] for line in (root / "proc/modules").read_text().splitlines() if line}


def test_converge_idempotent_and_check_mode_exact(tmp_path, cluster):
    nodes, bundle, kubeconfig = cluster
    hardware_root(nodes[0], "cpu-vm")
    hw = hardware_root(nodes[1], "dgx-h100", strip_rdma=True)
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, ["n2"])

    proc, recap = run_role(tmp_path, inv, "--check")
    assert proc.returncode == 0, proc.stdout[-5000:]
    predicted = {h: r["changed"] for h, r in recap.items()}
    check_changes = [line for line in proc.stdout.splitlines() if line.startswith(("changed:", "TASK"))]
    assert not set(RDMA) & loaded(hw) and not (hw / "var/lib/labhub-sim/modprobe.log").exists()
    assert not (nodes[0].root / "var/lib/labhub/network-operator").exists(), "check mode wrote on the node"
    assert api(kubeconfig, "/api/v1/namespaces")["items"] and \
        NS not in {n["metadata"]["name"] for n in api(kubeconfig, "/api/v1/namespaces")["items"]}

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert {h: r["changed"] for h, r in recap.items()} == predicted, (
        "\n".join(check_changes) + "\n----\n" + "\n".join(line for line in proc.stdout.splitlines() if line.startswith("changed:")))

    # modules: loaded by the (fake) modprobe, persisted for boot; nothing touched on the CPU node
    assert set(RDMA) <= loaded(hw)
    assert (hw / "var/lib/labhub-sim/modprobe.log").read_text().split("\n")[:3] == ["modprobe %s" % m for m in RDMA]
    assert (hw / "etc/modules-load.d/labhub-rdma.conf").read_text().splitlines()[1:] == list(RDMA)
    assert not (nodes[0].root / "hw/etc/modules-load.d").exists()

    # chart: values from the manifest's images, 0600 on the first control-plane node
    values_file = nodes[0].root / "var/lib/labhub/network-operator/values.yaml"
    assert stat.S_IMODE(values_file.stat().st_mode) == 0o600
    values = yaml.safe_load(nodes[0].microk8s("helm3", "get", "values", "network-operator", "-n", NS, "-o", "yaml").stdout)
    refs = {i["ref"] for i in MANIFEST["images"]}
    assert "%s/%s:%s" % (values["operator"]["repository"], values["operator"]["image"], values["operator"]["tag"]) in refs
    nfd = values["node-feature-discovery"]["image"]
    assert "%s:%s" % (nfd["repository"], nfd["tag"]) in refs
    assert values["sriovNetworkOperator"] == {"enabled": False} and values["nfd"]["enabled"] is True

    # policy: inbox drivers, RDMA shared device plugin from the manifest, config from the HCAs
    policy = api(kubeconfig, "/apis/mellanox.com/v1alpha1/nicclusterpolicies/nic-cluster-policy")
    assert "ofedDriver" not in policy["spec"]
    dp = policy["spec"]["rdmaSharedDevicePlugin"]
    assert "%s/%s:%s" % (dp["repository"], dp["image"], dp["version"]) in refs
    config = json.loads(dp["config"])
    assert config == {"configList": [{"resourcePrefix": "rdma", "resourceName": "hca_shared_devices_ib", "rdmaHcaMax": 63,
                                      "selectors": {"vendors": ["15b3"], "linkTypes": ["infiniband"]}}]}
    assert policy["status"]["state"] == "ready"

    # nodes: Labhub's label on the IB node, NFD/operator labels, the device plugin only there
    nodes_api = {n["metadata"]["name"]: n for n in api(kubeconfig, "/api/v1/nodes")["items"]}
    labels = nodes_api["n2"]["metadata"]["labels"]
    assert labels["labhub.io/infiniband"] == "true"
    assert labels["feature.node.kubernetes.io/pci-15b3.present"] == "true"
    assert labels["network.nvidia.com/operator.mofed.wait"] == "false"
    assert "labhub.io/infiniband" not in nodes_api["n1"]["metadata"]["labels"]
    assert nodes_api["n2"]["status"]["allocatable"]["rdma/hca_shared_devices_ib"] == "63"
    assert "rdma/hca_shared_devices_ib" not in nodes_api["n1"]["status"]["allocatable"]
    ds = api(kubeconfig, "/apis/apps/v1/namespaces/%s/daemonsets/rdma-shared-dp-ds" % NS)
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {
        "feature.node.kubernetes.io/pci-15b3.present": "true", "network.nvidia.com/operator.mofed.wait": "false"}
    assert ds["status"]["desiredNumberScheduled"] == 1 and ds["status"]["numberReady"] == 1

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h: r["changed"] for h, r in recap.items()} == {"n1": 0, "n2": 0}, proc.stdout[-5000:]
    proc, recap = run_role(tmp_path, inv, "--check")
    assert proc.returncode == 0 and {h: r["changed"] for h, r in recap.items()} == {"n1": 0, "n2": 0}, proc.stdout[-5000:]
    assert (hw / "var/lib/labhub-sim/modprobe.log").read_text().count("modprobe") == 3, "modules loaded twice"


def test_device_plugin_never_ready_fails_naming_the_node(tmp_path, cluster):
    nodes, bundle, kubeconfig = cluster
    hardware_root(nodes[0], "cpu-vm")
    hardware_root(nodes[1], "dgx-h100")
    # the device plugin's pods start but never become ready (a KWOK fault stage)
    add_fault_stage(kubeconfig, fault_stage("labhub-fault-rdma-dp-not-ready", [
        {"key": ".metadata.ownerReferences.[].name", "operator": "In", "values": ["rdma-shared-dp-ds"]},
        {"key": ".status.phase", "operator": "In", "values": ["Pending"]}], POD_RUNNING_NOT_READY))
    proc = run_role(tmp_path, write_inventory(tmp_path, nodes, bundle, kubeconfig, ["n2"]))[0]
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert "did not make RDMA available within 6s (network_operator_ready_timeout)" in out, out[-4000:]
    assert "n2 (node n2: rdma/hca_shared_devices_ib=0, device plugin pod not ready, pci-15b3 label true)" in out, out[-4000:]


def test_skipped_without_hcas_or_when_disabled(tmp_path, cluster):
    nodes, bundle, kubeconfig = cluster
    for node in nodes:
        hardware_root(node, "cpu-vm")
    for extra, reason in (({}, "no host of labhub_ib_nodes in this play has an InfiniBand/RoCE HCA"),
                          ({"network_operator_enabled": False}, "network_operator_enabled (network_operator_enabled) is false")):
        proc, recap = run_role(tmp_path, write_inventory(tmp_path, nodes, bundle, kubeconfig, [], extra))
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert {h: r["changed"] for h, r in recap.items()} == {"n1": 0, "n2": 0}
        assert proc.stdout.count("Network Operator skipped: %s; nothing was changed." % reason) == 1, proc.stdout[-3000:]
    assert NS not in {n["metadata"]["name"] for n in api(kubeconfig, "/api/v1/namespaces")["items"]}


def test_ib_settings_on_a_node_without_hca_fail_before_any_change(tmp_path, cluster, monkeypatch):
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(tmp_path / "report.json"))
    nodes, bundle, kubeconfig = cluster
    hardware_root(nodes[0], "cpu-vm")
    hw = hardware_root(nodes[1], "dgx-h100", strip_rdma=True)
    inv = write_inventory(tmp_path, nodes, bundle, kubeconfig, ["n1", "n2"], {"network_operator_hcas": ["mlx5_0", "mlx5_9"]})
    proc = run_role(tmp_path, inv)[0]
    assert proc.returncode != 0
    rows = {(r["host"], r["variable"], r["problem"]) for r in json.loads((tmp_path / "report.json").read_text())}
    assert ("n1", "groups.labhub_ib_nodes",
            "host is an InfiniBand node but no HCA was found (/sys/class/infiniband)") in rows, rows
    assert ("n1", "network_operator_hcas", "names HCA 'mlx5_0' but the node has no HCA") in rows, rows
    assert ("n2", "network_operator_hcas", "names HCA 'mlx5_9' but the node has HCAs: mlx5_0, mlx5_1, mlx5_2, mlx5_3") in rows, rows
    assert not set(RDMA) & loaded(hw), "modules loaded before the failure"
    assert not (nodes[0].root / "var/lib/labhub/network-operator").exists()
