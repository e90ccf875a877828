# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Role labhub.platform.calico run by the real ansible-playbook against the SIMULATED snap/microk8s
CLIs (labhub_sim.py), the harness' REAL control plane per simulated cluster (labhub_sim_kube.py)
and MicroK8s' built-in Calico objects as the simulator models them (tests/simulator/microk8s_objects.py:
the cni.yaml file on the node, the calico-config ConfigMap, calico-node DaemonSet and
default-ipv4-ippool applied to the API). Not a real-cluster test: no Calico runs; the real
DaemonSet controller rolls calico-node pods when the pod template changes and KWOK marks them
Running (a KWOK fault stage keeps them not ready in test_calico_never_ready_fails_naming_the_nodes).

Cluster: n1 control plane, n2 worker, formed with the simulated microk8s CLI.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible_run import add_fault_stage, ansible_playbook, api_get, role_playbook  # tests/simulator/tests/ansible_run.py
from controlplane import POD_RUNNING_NOT_READY, fault_stage  # tests/harness/kube/controlplane.py

REPO = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.slow]
CNI = "var/snap/microk8s/current/args/cni-network/cni.yaml"
SETTINGS = {"calico_ip_autodetection_method": "cidr", "calico_ip_autodetection_cidrs": ["10.77.0.0/24"],
            "calico_mtu": 1450, "calico_underlay_mtu": 1500, "calico_encapsulation": "vxlan-crosssubnet"}


@pytest.fixture
def cluster(tmp_path, sim_nodes, sim_bundle):
    nodes = sim_nodes(2)
    for node in nodes:
        node.install_microk8s(sim_bundle)
    info = json.loads(nodes[0].microk8s("add-node", "--format", "json").stdout)
    nodes[1].microk8s("join", info["urls"][0], "--worker")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(nodes[0].microk8s("config").stdout)
    kubeconfig.chmod(0o600)
    # as on a converged MicroK8s: calico-node ready on both nodes before the role rolls it
    deadline = time.time() + 120
    while True:
        status = api_get(kubeconfig, "/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node").get("status", {})
        if status.get("desiredNumberScheduled") == 2 and status.get("numberReady") == 2:
            break
        assert time.time() < deadline, f"calico-node never became ready on both nodes: {status}"
        time.sleep(0.5)
    return nodes, kubeconfig


def write_inventory(tmp_path, nodes, kubeconfig, extra=None):
    def host(node):
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "calico_snap_data_dir": str(node.root / "var/snap/microk8s/current")}
    inv = {"all": {
        "vars": {"labhub_kubeconfig": str(kubeconfig), "calico_ready_timeout": 4, "calico_ready_delay": 1, **(extra or {})},
        "children": {"labhub_cluster": {"children": {
            "labhub_control_plane": {"hosts": {nodes[0].name: host(nodes[0])}},
            "labhub_workers": {"hosts": {n.name: host(n) for n in nodes[1:]}}}}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def run_role(tmp_path, inventory, *args, env=None):
    return ansible_playbook(tmp_path, inventory, role_playbook(tmp_path, "Calico", "labhub.platform.calico"), *args,
                            timeout=600, env=env)


def api(kubeconfig, path):
    return api_get(kubeconfig, path)


def calico_state(kubeconfig):
    ds = api(kubeconfig, "/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node")
    env = {e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    cm = api(kubeconfig, "/api/v1/namespaces/kube-system/configmaps/calico-config")
    pool = api(kubeconfig, "/apis/crd.projectcalico.org/v1/ippools/default-ipv4-ippool")
    pods = api(kubeconfig, "/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dcalico-node")["items"]
    return ds, env, cm["data"], pool["spec"], pods


def cni_values(node):
    docs = [d for d in yaml.safe_load_all((node.root / CNI).read_text()) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    env = {e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    return cm["data"]["veth_mtu"], env["IP_AUTODETECTION_METHOD"], env["CALICO_IPV4POOL_VXLAN"]


def test_converge_idempotent_and_check_mode_exact(tmp_path, cluster):
    nodes, kubeconfig = cluster
    inv = write_inventory(tmp_path, nodes, kubeconfig, SETTINGS)
    before_cni = (nodes[0].root / CNI).read_text()
    env0, data0, pool0, pods0 = calico_state(kubeconfig)[1:]
    assert (env0["IP_AUTODETECTION_METHOD"], data0["veth_mtu"], pool0["vxlanMode"]) == ("first-found", "0", "Always")

    proc, recap = run_role(tmp_path, inv, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-5000:]
    predicted = {h: r["changed"] for h, r in recap.items()}
    assert (nodes[0].root / CNI).read_text() == before_cni, "check mode changed cni.yaml"
    env, data, pool = calico_state(kubeconfig)[1:4]
    assert (env, data, pool) == (env0, data0, pool0), "check mode changed the cluster"

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert {h: r["changed"] for h, r in recap.items()} == predicted, (predicted, proc.stdout[-5000:])
    assert predicted["n1"] >= 4  # cni.yaml + ConfigMap + DaemonSet + IPPool

    assert cni_values(nodes[0]) == ("1450", "cidr=10.77.0.0/24", "CrossSubnet")
    # only the three values changed in MicroK8s' file
    changed = [(a, b) for a, b in zip(before_cni.splitlines(), (nodes[0].root / CNI).read_text().splitlines()) if a != b]
    assert len(changed) == 3, changed
    ds, env, data, pool, pods = calico_state(kubeconfig)
    assert env["IP_AUTODETECTION_METHOD"] == "cidr=10.77.0.0/24"
    assert env["CALICO_IPV4POOL_VXLAN"] == "CrossSubnet"
    assert env["FELIX_VXLANMTU"] is None and env["CALICO_IPV4POOL_CIDR"] == "10.1.0.0/16"  # merged, not replaced
    assert data["veth_mtu"] == "1450" and data["calico_backend"] == "vxlan"
    assert pool["vxlanMode"] == "CrossSubnet" and pool["ipipMode"] == "Never" and pool["cidr"] == "10.1.0.0/16"
    assert "labhub.io/calico-settings" in ds["spec"]["template"]["metadata"]["annotations"]
    assert {p["spec"]["nodeName"] for p in pods} == {"n1", "n2"}
    assert not {p["metadata"]["name"] for p in pods} & {p["metadata"]["name"] for p in pods0}, "pods were not rolled"
    assert ds["status"]["numberReady"] == 2

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h: r["changed"] for h, r in recap.items()} == {"n1": 0, "n2": 0}, proc.stdout[-4000:]
    proc, recap = run_role(tmp_path, inv, "--check")
    assert proc.returncode == 0 and {h: r["changed"] for h, r in recap.items()} == {"n1": 0, "n2": 0}, proc.stdout[-4000:]

    # back to MicroK8s' defaults: the interface method with a backslash survives YAML and re.sub
    proc, recap = run_role(tmp_path, write_inventory(tmp_path, nodes, kubeconfig, {
        "calico_ip_autodetection_method": "interface", "calico_ip_autodetection_interface": r"ens\d+|eth0"}))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert cni_values(nodes[0]) == ("0", r"interface=ens\d+|eth0", "Always")
    env, data, pool = calico_state(kubeconfig)[1:4]
    assert (env["IP_AUTODETECTION_METHOD"], data["veth_mtu"], pool["vxlanMode"]) == (r"interface=ens\d+|eth0", "0", "Always")


def test_calico_never_ready_fails_naming_the_nodes(tmp_path, cluster):
    nodes, kubeconfig = cluster
    # the rolled calico-node pods start but never become ready (a KWOK fault stage)
    add_fault_stage(kubeconfig, fault_stage("labhub-fault-calico-not-ready", [
        {"key": ".metadata.ownerReferences.[].name", "operator": "In", "values": ["calico-node"]},
        {"key": ".status.phase", "operator": "In", "values": ["Pending"]}], POD_RUNNING_NOT_READY))
    proc = run_role(tmp_path, write_inventory(tmp_path, nodes, kubeconfig, SETTINGS))[0]
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert "Calico did not become ready within 4s (calico_ready_timeout)" in out, proc.stdout[-4000:]
    # the real DaemonSet controller rolls one node at a time (maxUnavailable 1): the rollout stops
    # at the first node whose new pod never becomes ready; the other keeps its old, ready pod
    assert re.search(r"Nodes without a ready calico-node pod: (n1|n2);", out), proc.stdout[-4000:]
    assert "nodes not Ready: none" in out


def test_bad_settings_fail_before_any_change(tmp_path, cluster):
    nodes, kubeconfig = cluster
    before_cni = (nodes[0].root / CNI).read_text()
    env0, data0, pool0 = calico_state(kubeconfig)[1:4]
    proc = run_role(tmp_path, write_inventory(tmp_path, nodes, kubeconfig, {
        "calico_ip_autodetection_method": "cidr", "calico_ip_autodetection_cidrs": ["10.77.0.0/24", "10.300.0.0/16"],
        "calico_encapsulation": "ipip", "calico_mtu": 9000, "calico_underlay_mtu": 1500}),
        env={"LABHUB_VALIDATE_REPORT": str(tmp_path / "report.json")})[0]
    assert proc.returncode != 0
    assert "Labhub validation (site): " in proc.stdout, proc.stdout[-3000:]
    rows = {(r["variable"], r["problem"]) for r in json.loads((tmp_path / "report.json").read_text())}
    assert ("calico_ip_autodetection_cidrs", '"10.300.0.0/16" is not a CIDR') in rows, rows
    assert any(v == "calico_encapsulation" and p.startswith("ipip is refused") for v, p in rows), rows
    assert (nodes[0].root / CNI).read_text() == before_cni
    env, data, pool = calico_state(kubeconfig)[1:4]
    assert (env, data, pool) == (env0, data0, pool0)
