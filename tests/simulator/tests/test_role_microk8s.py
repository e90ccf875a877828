# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Role labhub.platform.microk8s run by the real ansible-playbook against the SIMULATED snap and
microk8s CLIs (tests/simulator), one simulated node per inventory host (connection local, each
host's paths under its own LABHUB_SIM_ROOT). Not a real-cluster test.

Covers what a Molecule run would be slow for: the failure paths (even control plane, a node
that never becomes Ready, an expired join token) and check mode / idempotence.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible_run import ansible_playbook, role_playbook  # tests/simulator/tests/ansible_run.py

REPO = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.slow]


def write_inventory(path: Path, cps, workers, bundle: Path, extra=None):
    def host(node):
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
        }
    inv = {"all": {
        "vars": {"microk8s_bundle_dir": str(bundle), "microk8s_join_ready_delay": 1,
                 "microk8s_wait_ready_timeout": 10, "microk8s_dns_upstream_servers": ["10.77.0.254"],
                 "microk8s_registry_mirrors": [{"registry": "docker.io", "override_path": True,
                                                "endpoints": ["https://harbor.example.org/v2/dockerhub"]}],
                 **(extra or {})},
        "children": {"labhub_cluster": {"children": {
            "labhub_control_plane": {"hosts": {n.name: host(n) for n in cps}},
            "labhub_workers": {"hosts": {n.name: host(n) for n in workers}},
        }}}}}
    path.write_text(yaml.safe_dump(inv))
    return path


def run_role(tmp_path: Path, inventory: Path, *extra_args):
    return ansible_playbook(tmp_path, inventory, role_playbook(tmp_path, "MicroK8s", "labhub.platform.microk8s"),
                            *extra_args, timeout=600)


RESTART_DOWNTIME = 3


def assert_restarts_rolled(nodes, since):
    """containerd/kubelite restarts since `since` never overlap: each node's restarts start only
    after the previous node's API server answered again (the simulator keeps a restarted kubelite's
    API down for `restart_downtime` seconds and logs every restart with its time in node.json)."""
    spans = []
    for node in nodes:
        times = [e["time"] for e in node.node_state()["restart_log"] if e["time"] >= since]
        if times:
            spans.append((min(times), max(times), node.name))
    spans.sort()
    assert [s[2] for s in spans] == [n.name for n in nodes], spans
    for (_first, last, name), (nxt, _l, other) in zip(spans, spans[1:]):
        assert nxt >= last + RESTART_DOWNTIME, "%s restarted %.1fs after %s, before its API was back" % (
            other, nxt - last, name)


def test_role_forms_ha_cluster_idempotent_check_mode_exact_and_restarts_roll(tmp_path, sim_nodes, sim_bundle):
    """Three control-plane nodes and a worker: check mode on fresh nodes, the real run, a second run
    changing nothing, check mode predicting a kubelet change exactly, that change applied with the
    restarts rolling one node at a time (also on the first run), an API address change."""
    nodes = sim_nodes(4)
    for node in nodes:
        node.set_faults(restart_downtime=RESTART_DOWNTIME)
    cps, workers = nodes[:3], nodes[3:]
    inv = write_inventory(tmp_path / "hosts.yml", cps, workers, sim_bundle, extra={"microk8s_wait_ready_timeout": 60})

    proc, recap = run_role(tmp_path, inv, "--check")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert all(n.node_state() is None or not n.node_state()["snaps"] for n in nodes), "check mode changed a node"

    started = time.time()
    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert all(recap[n.name]["changed"] > 0 for n in nodes)
    assert_restarts_rolled(nodes, started)

    status = cps[0].status()
    voters = [n for n in status["high-availability"]["nodes"] if n["role"] == "voter"]
    assert len(voters) == 3
    assert {a["name"] for a in status["addons"] if a["status"] == "enabled"} >= {
        "dns", "hostpath-storage", "rbac", "helm3", "metrics-server"}
    assert "ingress" in {a["name"] for a in status["addons"] if a["status"] == "disabled"}
    items = {n["metadata"]["name"]: n for n in cps[1].nodes()}
    assert set(items) == {"n1", "n2", "n3", "n4"}
    assert "node.kubernetes.io/microk8s-worker" in items["n4"]["metadata"]["labels"]
    for node in nodes:
        listed = node.snap("list").stdout
        assert re.search(r"^microk8s\s+v1\.36\.3\s+9310\s.*held", listed, re.M), listed
        kubelet = (node.root / "var/snap/microk8s/current/args/kubelet").read_text()
        assert "--max-pods=110\n" in kubelet
        template = (node.root / "var/snap/microk8s/current/args/containerd-template.toml").read_text()
        assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in template
        hosts_toml = (node.root / "var/snap/microk8s/current/args/certs.d/docker.io/hosts.toml").read_text()
        assert '[host."https://harbor.example.org/v2/dockerhub"]' in hosts_toml
        assert (node.root / "var/snap/microk8s/common/default-storage").resolve() == node.root / "srv/volumes"
        restarts = node.node_state()["restarts"]
        assert restarts == {"microk8s.daemon-containerd": 1, "microk8s.daemon-kubelite": 1}

    # the controller's kubeconfig (labhub_kubeconfig default: next to the inventory, hidden dir)
    kubeconfig = tmp_path / ".credentials" / "kubeconfig"
    assert (kubeconfig.stat().st_mode & 0o777, kubeconfig.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert server == "https://127.0.0.1:%d" % cps[0].api_server()["port"]
    assert "SIMULATED" not in proc.stdout and "client-key-data" not in proc.stdout, "no_log"
    from kubernetes import client as kclient, config as kconfig  # pylint: disable=import-outside-toplevel
    api = kclient.CoreV1Api(kconfig.new_client_from_config(str(kubeconfig)))
    assert sorted(n.metadata.name for n in api.list_node().items) == ["n1", "n2", "n3", "n4"]
    # dns is enabled at install; microk8s_dns_upstream_servers went into CoreDNS' forward line
    corefile = api.read_namespaced_config_map("coredns", "kube-system").data["Corefile"]
    assert re.search(r"(?m)^\s*forward \. 10\.77\.0\.254$", corefile), corefile

    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h: r["changed"] for h, r in recap.items()} == {n.name: 0 for n in nodes}, proc.stdout[-4000:]

    max_pods = ["-e", json.dumps({"microk8s_kubelet_max_pods": 200})]
    proc, recap = run_role(tmp_path, inv, "--check", *max_pods)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert all(recap[n.name]["changed"] == 1 for n in nodes), proc.stdout[-4000:]
    assert "--max-pods=110\n" in (nodes[0].root / "var/snap/microk8s/current/args/kubelet").read_text()

    started = time.time()
    proc, recap = run_role(tmp_path, inv, *max_pods)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert_restarts_rolled(nodes, started)
    for node in nodes:
        assert "--max-pods=200\n" in (node.root / "var/snap/microk8s/current/args/kubelet").read_text()
        assert node.node_state()["restarts"]["microk8s.daemon-kubelite"] == 2

    proc, recap = run_role(tmp_path, inv, *max_pods, "-e", "microk8s_api_address=localhost")
    assert proc.returncode == 0, proc.stdout[-4000:]
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert server == "https://localhost:%d" % cps[0].api_server()["port"]
    # a DNS name in microk8s_api_address: in every control-plane node's csr.conf.template and
    # server.crt (refresh-certs), so TLS verification of that name succeeds against the API server
    for node in cps:
        certs = node.root / "var/snap/microk8s/current/certs"
        assert "DNS.6 = localhost\n#MOREIPS" in (certs / "csr.conf.template").read_text()
        sans = subprocess.run(["openssl", "x509", "-in", str(certs / "server.crt"), "-noout", "-ext",
                               "subjectAltName"], capture_output=True, text=True, check=True).stdout
        assert "DNS:localhost" in sans
        assert [e["service"] for e in node.node_state()["restart_log"]][-2:] == [
            "microk8s.daemon-kubelite", "microk8s.daemon-cluster-agent"]
    api = kclient.CoreV1Api(kconfig.new_client_from_config(str(kubeconfig)))
    assert len(api.list_node().items) == 4
    proc, recap = run_role(tmp_path, inv, *max_pods, "-e", "microk8s_api_address=localhost")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {h: r["changed"] for h, r in recap.items()} == {n.name: 0 for n in nodes}, proc.stdout[-4000:]


def test_even_number_of_control_plane_nodes_fails_before_any_change(tmp_path, sim_nodes, sim_bundle, monkeypatch):
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(tmp_path / "report.json"))
    nodes = sim_nodes(3)
    inv = write_inventory(tmp_path / "hosts.yml", nodes[:2], nodes[2:], sim_bundle)
    proc, _recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    rows = json.loads((tmp_path / "report.json").read_text())
    assert any(r["variable"] == "groups.labhub_control_plane" and r["problem"].startswith("has 2 hosts (n1, n2)")
               and "odd number" in r["problem"] for r in rows), rows
    assert all(n.node_state() is None for n in nodes)


def test_node_that_never_becomes_ready_fails_naming_the_host(tmp_path, sim_nodes, sim_bundle):
    nodes = sim_nodes(2)
    nodes[1].set_faults(never_ready_after_join=True)
    inv = write_inventory(tmp_path / "hosts.yml", nodes[:1], nodes[1:], sim_bundle,
                          extra={"microk8s_join_ready_timeout": 3})
    proc, recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert "Node n2 (n2) joined the cluster but did not become Ready within 3s (microk8s_join_ready_timeout)" in text
    ready = {n["metadata"]["name"]: [c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready"][0]
             for n in nodes[0].nodes()}
    # n2's kubelet posted Ready=False; after the node-monitor grace period the real node
    # lifecycle controller turns a node that stopped posting Unknown (both: not Ready)
    assert ready["n1"] == "True" and ready["n2"] in ("False", "Unknown"), ready


def test_expired_join_token_fails_clearly(tmp_path, sim_nodes, sim_bundle):
    first, joiner = sim_nodes(2)
    for node in (first, joiner):
        node.install_microk8s(sim_bundle)
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {
        n.name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "mk": str(n.microk8s_cmd), "sd": str(n.root / "var/snap/microk8s/current")}
        for n in (first, joiner)}}}))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": "Expired token", "hosts": "n2", "gather_facts": False, "tasks": [
        {"name": "Token valid for 1s", "labhub.platform.microk8s_token": {
            "token": "0123456789abcdef0123456789abcdef", "ttl": 1, "microk8s_path": "{{ hostvars.n1.mk }}"},
         "delegate_to": "n1", "register": "issued"},
        {"name": "Let it expire", "ansible.builtin.pause": {"seconds": 2}},
        {"name": "Join", "labhub.platform.microk8s_join": {
            "url": "{{ issued.address }}/0123456789abcdef0123456789abcdef/{{ issued.check }}",
            "microk8s_path": "{{ mk }}", "snap_data": "{{ sd }}"}},
    ]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "ansible_collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(play)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert ("Failed to join MicroK8s cluster '10.77.0.1:25000' due to: Connection failed. invalid token (500)."
            in proc.stdout), proc.stdout[-3000:]
    assert "0123456789abcdef0123456789abcdef" not in proc.stdout.split("TASK [Let it expire]")[1]
    assert [n["metadata"]["name"] for n in first.nodes()] == ["n1"]


def test_join_uses_the_first_control_planes_cluster_address(tmp_path, sim_nodes, sim_bundle):
    """add-node prints a join URL per address (`hostname -I`); on a multi-NIC node whose default
    route and first address are on an InfiniBand network the joiner cannot reach, the role joins
    through the address on the cluster network (ansible_host) and fails clearly when none matches."""
    first, worker = sim_nodes(2)
    first.set_network(["192.168.100.1/24", "10.77.0.1/24"], default="192.168.100.1")
    inv = write_inventory(tmp_path / "hosts.yml", [first], [worker], sim_bundle)
    data = yaml.safe_load(inv.read_text())
    cp_hosts = data["all"]["children"]["labhub_cluster"]["children"]["labhub_control_plane"]["hosts"]
    cp_hosts["n1"]["microk8s_cluster_address"] = "10.77.9.1"
    inv.write_text(yaml.safe_dump(data))
    proc, _recap = run_role(tmp_path, inv)
    assert proc.returncode != 0
    text = " ".join(proc.stdout.split())
    assert ("add-node printed no join address on 10.77.9.1, the node's address on the cluster network; it printed "
            "192.168.100.1:25000, 10.77.0.1:25000") in text, text[-3000:]
    # the address as the inventory gives it (ansible_host); the controller reaches the API at
    # microk8s_api_address (the simulated 10.77.0.x addresses exist only in the simulator)
    del cp_hosts["n1"]["microk8s_cluster_address"]
    cp_hosts["n1"]["ansible_host"] = "10.77.0.1"
    data["all"]["vars"]["microk8s_api_address"] = "127.0.0.1"
    inv.write_text(yaml.safe_dump(data))
    proc, _recap = run_role(tmp_path, inv)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "join address 10.77.0.1" in proc.stdout
    names = {n["metadata"]["name"] for n in first.nodes()}
    assert names == {"n1", "n2"}
