# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""add_node.yml, remove_node.yml and role labhub.platform.nodes run by the real ansible-playbook
against the SIMULATED snap/microk8s CLIs (tests/simulator/labhub_sim.py) and the REAL control
plane the harness' broker runs for each simulated cluster (tests/harness/kube; KWOK plays the
kubelets), one simulated node per inventory host (connection local, each host's paths under its
own LABHUB_SIM_ROOT). Not a real-cluster test: no kubelet or container runs.

Bundle verification, the OS packages and the image import are skipped (--skip-tags
bundle,packages,offline_images): the bundle here holds simulated snaps only, the "nodes" are this
machine (local connection), and all three have their own tests (test_bundle.py, molecule/portal
and molecule/site installing from the bundle with the network cut, molecule/offline_images with a
real containerd). Preflight runs against the cpu-vm hardware
fixture tree.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible_run import ansible_playbook  # tests/simulator/tests/ansible_run.py

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "unit" / "fixtures" / "hardware" / "cpu-vm"
SKIP = ["--skip-tags", "bundle,packages,offline_images"]
pytestmark = [pytest.mark.slow]

try:
    from kubernetes import client as k8s_client, config as k8s_config
except ImportError:  # pragma: no cover - the venv has it
    k8s_client = k8s_config = None


def host_vars(node, extra=None):
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "microk8s_node_name": node.name,
        "microk8s_bin_dir": str(node.root / "snap" / "bin"),
        "microk8s_snap_command": str(node.snap_cmd),
        "microk8s_snap_data_dir": str(node.root / "var/snap/microk8s/current"),
        "microk8s_snap_common_dir": str(node.root / "var/snap/microk8s/common"),
        "microk8s_snap_dir": str(node.root / "var/lib/labhub/snaps"),
        "microk8s_hostpath_storage_dir": str(node.root / "srv/volumes"),
        "preflight_hardware_root": str(FIXTURE),
        **(extra or {}),
    }


def write_inventory(tmp_path, cps, workers, bundle, per_host=None, extra=None):
    per_host = per_host or {}
    inv = {"all": {
        "vars": {"microk8s_bundle_dir": str(bundle), "labhub_bundle_dir": str(bundle),
                 "labhub_kubeconfig": str(tmp_path / "kubeconfig"),
                 "microk8s_join_ready_delay": 1, "microk8s_wait_ready_timeout": 10,
                 "microk8s_join_ready_timeout": 20, "nodes_ready_timeout": 20, "nodes_ready_delay": 1,
                 "preflight_min_memory_mb": 256, "preflight_min_disk_free": [{"path": "/", "free_mb": 1}],
                 "remove_node_drain_timeout": 6, "remove_node_drain_delay": 1, "jupyterhub_auth_modes": ["native"],
                 **(extra or {})},
        "children": {"labhub_cluster": {"children": {
            "labhub_control_plane": {"hosts": {n.name: host_vars(n, per_host.get(n.name)) for n in cps}},
            "labhub_workers": {"hosts": {n.name: host_vars(n, per_host.get(n.name)) for n in workers}},
        }}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def run(tmp_path, inventory, playbook, *args):
    return ansible_playbook(tmp_path, inventory, playbook, *args, env={"ANSIBLE_TIMEOUT": "3"})


def text(proc):
    return " ".join(proc.stdout.split())


def form_cluster(tmp_path, inventory, hosts):
    """The cluster of `hosts` through role microk8s, and the admin kubeconfig on the controller."""
    play = tmp_path / "cluster.yml"
    play.write_text(yaml.safe_dump([{"name": "MicroK8s", "hosts": "labhub_cluster", "gather_facts": False,
                                     "roles": ["labhub.platform.microk8s"]}]))
    proc, _recap = run(tmp_path, inventory, play, "--limit", ",".join(h.name for h in hosts))
    assert proc.returncode == 0, proc.stdout[-5000:]
    kubeconfig = tmp_path / "kubeconfig"
    if not kubeconfig.exists():  # the microk8s role writes it once it follows the access contract
        kubeconfig.write_text(hosts[0].microk8s("config").stdout)
        kubeconfig.chmod(0o600)
    return kubeconfig


def api(kubeconfig):
    return k8s_client.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))


def make_unreachable(inventory, group, host):
    """Point `host` of inventory `group` at a closed SSH port: Ansible finds it unreachable."""
    inv = yaml.safe_load(inventory.read_text())
    inv["all"]["children"]["labhub_cluster"]["children"][group]["hosts"][host].update(
        {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "nobody"})
    inventory.write_text(yaml.safe_dump(inv))


def kubeconfig_server(kubeconfig):
    """The API server URL the admin kubeconfig names."""
    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def node_names(cp):
    return sorted(n["metadata"]["name"] for n in cp.nodes())


def sim_node(cp, name):
    return next(n for n in cp.nodes() if n["metadata"]["name"] == name)


@pytest.fixture
def three(tmp_path, sim_nodes, sim_bundle):
    """n1 control plane, n2 and n3 workers (n3 labelled and tainted in its host vars)."""
    nodes = sim_nodes(3)
    per_host = {"n3": {"nodes_labels": {"labhub.io/course": "hpc101", "team": "ml"},
                       "nodes_taints": [{"key": "labhub.io/reserved", "value": "hpc101", "effect": "NoSchedule"}]}}
    inv = write_inventory(tmp_path, nodes[:1], nodes[1:], sim_bundle, per_host=per_host)
    return nodes, inv


# ------------------------------------------------------------------------------------------ add
def test_add_node_joins_labels_is_idempotent_and_check_mode_exact(tmp_path, three):
    nodes, inv = three
    n1, _n2, n3 = nodes
    form_cluster(tmp_path, inv, nodes[:2])
    assert node_names(n1) == ["n1", "n2"]
    playbook = REPO / "add_node.yml"

    proc, recap = run(tmp_path, inv, playbook, "-e", "node=n3", "--check", *SKIP)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert recap["n3"]["changed"] > 0
    assert n3.node_state() is None or not n3.node_state()["snaps"], "check mode installed something"
    assert node_names(n1) == ["n1", "n2"]

    proc, recap = run(tmp_path, inv, playbook, "-e", "node=n3", *SKIP)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert recap["n3"]["changed"] > 0
    assert node_names(n1) == ["n1", "n2", "n3"]
    obj = sim_node(n1, "n3")
    assert [c["status"] for c in obj["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    labels = obj["metadata"]["labels"]
    assert labels["labhub.io/course"] == "hpc101" and labels["team"] == "ml"
    assert "node.kubernetes.io/microk8s-worker" in labels
    assert obj["spec"]["taints"] == [{"key": "labhub.io/reserved", "value": "hpc101", "effect": "NoSchedule"}]

    proc, recap = run(tmp_path, inv, playbook, "-e", "node=n3", *SKIP)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert all(r["changed"] == 0 for r in recap.values()), recap

    # A foreign label and taint stay; Labhub's own change or go; --check on the converged cluster
    # predicts exactly the patch (one change on n3, none elsewhere: so with the old values it
    # would predict nothing, which the real run above already showed).
    n1.microk8s("kubectl", "label", "node", "n3", "owner=ops")
    n1.microk8s("kubectl", "taint", "node", "n3", "maintenance=soon:PreferNoSchedule")
    changed = {"nodes_labels": {"labhub.io/course": "hpc102"},
               "nodes_taints": [{"key": "labhub.io/gpu-only", "effect": "NoExecute"}]}
    proc, recap = run(tmp_path, inv, playbook, "-e", "node=n3", "-e", json.dumps(changed), "--check", *SKIP)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert {h: r["changed"] for h, r in recap.items() if r["changed"]} == {"n3": 1}, proc.stdout[-5000:]
    assert sim_node(n1, "n3")["metadata"]["labels"]["labhub.io/course"] == "hpc101"
    proc, recap = run(tmp_path, inv, playbook, "-e", "node=n3", "-e", json.dumps(changed), *SKIP)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert recap["n3"]["changed"] == 1, proc.stdout[-5000:]
    obj = sim_node(n1, "n3")
    labels = obj["metadata"]["labels"]
    assert labels["labhub.io/course"] == "hpc102" and labels["owner"] == "ops" and "team" not in labels
    assert obj["spec"]["taints"] == [{"key": "maintenance", "value": "soon", "effect": "PreferNoSchedule"},
                                     {"key": "labhub.io/gpu-only", "effect": "NoExecute"}]


def _rows(path):
    return [(r["host"], r["variable"], r["value"], r["problem"]) for r in json.loads(path.read_text())]


def test_add_node_refusals_name_the_node(tmp_path, three, sim_bundle, monkeypatch):
    report = tmp_path / "report.json"
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(report))
    nodes, inv = three
    proc, _recap = run(tmp_path, inv, REPO / "add_node.yml", "-e", "node=nope", *SKIP)
    assert proc.returncode != 0
    assert ("(inventory)", "node", '"nope"', "is not a host of the inventory") in _rows(report), _rows(report)

    even = write_inventory(tmp_path, nodes[:2], nodes[2:], sim_bundle)
    proc, _recap = run(tmp_path, even, REPO / "add_node.yml", "-e", "node=n2", *SKIP)
    assert proc.returncode != 0
    assert ("n2", "node", '"n2"', "would make 2 control-plane nodes (n1, n2)") in _rows(report), _rows(report)
    assert all(n.node_state() is None for n in nodes)


@pytest.mark.parametrize("labels, taints, expected", [
    ({"a b": "c", "kubernetes.io/arch": "x", "ok": 1}, [],
     [("nodes_labels.a b", "label key name 'a b' must be 1-63 characters"),
      ("nodes_labels.kubernetes.io/arch", "label key kubernetes.io/arch uses a prefix reserved for Kubernetes"),
      ("nodes_labels.ok", "")]),
    ({"node-role.kubernetes.io/gpu": ""}, [{"key": "x", "effect": "NoSchedul"}, {"key": "y", "value": "a b", "effect": "NoExecute"},
                                           {"key": "y", "effect": "NoExecute"}],
     [("nodes_taints[0].effect", "is not a taint effect"), ("nodes_taints[1].value", ""),
      ("nodes_taints[2]", "taint y:NoExecute is listed twice")]),
])
def test_nodes_role_preflight_names_variable_and_host(tmp_path, labels, taints, expected, monkeypatch):
    report = tmp_path / "report.json"
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(report))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": "Preflight of role nodes", "hosts": "localhost", "gather_facts": False,
                                     "vars": {"nodes_labels": labels, "nodes_taints": taints,
                                              "nodes_kubeconfig": str(kubeconfig), "nodes_node_name": "n1"},
                                     "tasks": [{"name": "Preflight", "ansible.builtin.import_role": {
                                         "name": "labhub.platform.nodes", "tasks_from": "preflight"}}]}]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    proc, _recap = run(tmp_path, inventory, play)
    assert proc.returncode != 0
    rows = _rows(report)
    for variable, problem in expected:
        assert any(h == "localhost" and v == variable and p.startswith(problem) for h, v, _val, p in rows), rows


# --------------------------------------------------------------------------------------- remove
def test_remove_node_refusals_change_nothing(tmp_path, three):
    nodes, inv = three
    n1, n2, _n3 = nodes
    form_cluster(tmp_path, inv, nodes[:2])
    playbook = REPO / "remove_node.yml"
    before = n1.nodes()

    report = tmp_path / "rows.json"
    proc, _recap = ansible_playbook(tmp_path, inv, playbook, "-e", "node=ghost", *SKIP,
                                    env={"ANSIBLE_TIMEOUT": "3", "LABHUB_VALIDATE_REPORT": str(report)})
    assert proc.returncode != 0
    rows = json.loads(report.read_text())
    assert [(r["host"], r["variable"], r["value"], r["problem"]) for r in rows] == [
        ("(inventory)", "node", '"ghost"', "is not a host of the inventory")], rows

    proc, _recap = run(tmp_path, inv, playbook, "-e", "node=n3", *SKIP)
    assert proc.returncode != 0
    assert "Node n3 (host n3) is not in the cluster (nodes: n1, n2). Nothing was changed." in text(proc)

    proc, _recap = run(tmp_path, inv, playbook, "-e", "node=n1", *SKIP)
    assert proc.returncode != 0
    assert ("Refusing to remove node n1 (host n1): it is the last control-plane node (the last dqlite voter) "
            "of the cluster. Nothing was changed.") in text(proc)

    assert n1.nodes() == before or [n["spec"] for n in n1.nodes()] == [n["spec"] for n in before]
    assert not sim_node(n1, "n2")["spec"].get("unschedulable")
    assert n2.node_state()["microk8s"]["role"] == "worker"


def test_remove_node_drain_respects_pdb_and_force_removes_an_unreachable_node(tmp_path, three):
    nodes, inv = three
    n1, n2, n3 = nodes
    kubeconfig = form_cluster(tmp_path, inv, nodes)
    core = api(kubeconfig)
    apps = k8s_client.AppsV1Api(core.api_client)
    policy = k8s_client.PolicyV1Api(core.api_client)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    apps.create_namespaced_deployment("demo", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeSelector": {"kubernetes.io/hostname": "n2"},
                                       "containers": [{"name": "web", "image": "nginx"}]}}}})
    policy.create_namespaced_pod_disruption_budget("demo", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
    deadline = time.time() + 30
    while not [p for p in core.list_namespaced_pod("demo").items if p.spec.node_name == "n2"]:
        assert time.time() < deadline, "the scheduler did not place the pod on n2"
        time.sleep(1)
    playbook = REPO / "remove_node.yml"

    # 1. The PDB forbids the eviction: the drain retries for remove_node_drain_timeout, then fails.
    started = time.time()
    proc, _recap = run(tmp_path, inv, playbook, "-e", "node=n2", *SKIP)
    assert proc.returncode != 0
    assert "Failed to drain node n2 (host n2) within 6s (remove_node_drain_timeout)" in text(proc), proc.stdout[-4000:]
    assert "disruption budget" in text(proc)
    assert time.time() - started >= 6
    assert node_names(n1) == ["n1", "n2", "n3"]
    assert sim_node(n1, "n2")["spec"].get("unschedulable") is True
    assert n2.node_state()["microk8s"]["role"] == "worker" and "microk8s" in n2.node_state()["snaps"]

    # 2. Without the PDB the drain evicts the pod; leave, remove-node and snap removal follow.
    policy.delete_namespaced_pod_disruption_budget("web", "demo")
    proc, recap = run(tmp_path, inv, playbook, "-e", "node=n2", *SKIP)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert node_names(n1) == ["n1", "n3"]
    assert not [p for p in core.list_namespaced_pod("demo").items if p.spec.node_name == "n2"]
    assert "microk8s" not in n2.node_state()["snaps"] and not n2.microk8s_cmd.exists()
    assert recap["n2"]["changed"] == 2  # leave + snap remove

    # 3. n3 stops answering: refused without force=true, removed (remote steps skipped) with it.
    make_unreachable(inv, "labhub_workers", "n3")
    proc, _recap = run(tmp_path, inv, playbook, "-e", "node=n3", *SKIP)
    assert proc.returncode != 0
    assert "Host n3 is unreachable: `microk8s leave` and the snap removal cannot run on it." in text(proc)
    assert node_names(n1) == ["n1", "n3"]
    proc, _recap = run(tmp_path, inv, playbook, "-e", "node=n3", "-e", "force=true", *SKIP)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Host n3 is unreachable and force=true: skipping `microk8s leave` and the snap removal on it." in text(proc)
    assert node_names(n1) == ["n1"]
    assert n3.node_state()["microk8s"]["role"] == "worker"  # the dead node itself was not touched


def test_a_dead_first_control_plane_node_is_worked_around_then_removed(tmp_path, sim_nodes, sim_bundle):
    """Three control-plane nodes and a worker to add (one cluster for both node playbooks: forming it
    is most of the time). Removing a control-plane node is refused while two voters would be left
    (unless force=true). When n1 dies (API stopped, SSH refused; the admin kubeconfig names its API),
    add_node.yml issues the join token on n2, joins n4 through it and points the kubeconfig at n2;
    remove_node.yml removes n1 through n2 with force=true, rewriting the kubeconfig from the remover
    before the drain."""
    nodes = sim_nodes(4)
    n1, n2, n3, n4 = nodes
    inv = write_inventory(tmp_path, nodes[:3], nodes[3:], sim_bundle)
    kubeconfig = form_cluster(tmp_path, inv, nodes[:3])
    assert node_names(n1) == ["n1", "n2", "n3"]
    first_server = kubeconfig_server(kubeconfig)
    assert first_server.endswith(":%d" % n1.api_server()["port"]), first_server

    # 1. n3 answers, but two control-plane nodes would be left: refused, nothing changed.
    proc, _recap = run(tmp_path, inv, REPO / "remove_node.yml", "-e", "node=n3", *SKIP)
    assert proc.returncode != 0
    assert ("Refusing to remove control-plane node n3 (host n3): it would leave 2 control-plane nodes (n1, n2), "
            "an even number of dqlite voters") in text(proc), proc.stdout[-4000:]
    assert node_names(n1) == ["n1", "n2", "n3"] and not sim_node(n1, "n3")["spec"].get("unschedulable")
    assert kubeconfig_server(kubeconfig) == first_server

    # 2. n1 dies: add_node.yml joins n4 through n2 and points the kubeconfig at n2.
    n1.stop_api_server()
    make_unreachable(inv, "labhub_control_plane", "n1")
    proc, _recap = run(tmp_path, inv, REPO / "add_node.yml", "-e", "node=n4", *SKIP)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert node_names(n2) == ["n1", "n2", "n3", "n4"]
    assert n4.node_state()["microk8s"]["role"] == "worker"
    server = kubeconfig_server(kubeconfig)
    assert server.endswith(":%d" % n2.api_server()["port"]), server
    ready = {n.metadata.name: [c.status for c in n.status.conditions if c.type == "Ready"]
             for n in api(kubeconfig).list_node().items}
    assert ready["n4"] == ["True"], ready

    # 3. The admin kubeconfig names the dead n1 again (an older copy put back): remove_node.yml
    # removes n1 with force=true through n2 and rewrites the kubeconfig first.
    kubeconfig.write_text(kubeconfig.read_text().replace(server, first_server))
    kubeconfig.chmod(0o644)
    proc, recap = run(tmp_path, inv, REPO / "remove_node.yml", "-e", "node=n1", "-e", "force=true", *SKIP)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Removing node n1 (host n1, unreachable) through n2, forced." in text(proc)
    assert node_names(n2) == ["n2", "n3", "n4"]
    server = kubeconfig_server(kubeconfig)
    assert server.endswith(":%d" % n2.api_server()["port"]), server
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert [n.metadata.name for n in api(kubeconfig).list_node().items] == ["n2", "n3", "n4"]
    assert recap["localhost"]["changed"] >= 1  # the kubeconfig (+ drain, remove-node)
    assert n3.node_state()["microk8s"]["role"] == "control-plane"
