# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The SIMULATED `snap` and `microk8s` CLIs (tests/simulator): grammar, outputs, state, failures.

These pin the behaviour the roles and modules rely on, and check that the modules' parsers
(plugins/module_utils/_microk8s.py) read the simulator's live output the same way PyYAML does.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import subprocess
import time

import pytest
import yaml

from ansible_collections.labhub.platform.plugins.module_utils import _microk8s as mk


def test_snap_grammar_errors(sim_nodes):
    (node,) = sim_nodes(1)
    proc = node.snap("install", "--bogus", "x.snap", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: unknown flag `bogus'\n")
    proc = node.snap("frobnicate", check=False)
    assert proc.returncode == 1 and 'unknown command "frobnicate"' in proc.stderr
    proc = node.snap("ack", "/nonexistent.assert", check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("error: cannot read assertion input: open /nonexistent.assert: "
                           "no such file or directory\n")
    proc = node.snap("install", "microk8s", "--classic", check=False)
    assert proc.returncode == 1 and "api.snapcraft.io" in proc.stderr, "store installs must fail offline"


MICROK8S_SNAP = "microk8s_9310"  # files/bundle-manifest.yml: 1.36/stable
BASE_SNAP = "core22_2411"


def test_offline_install_needs_ack_base_and_classic(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    snaps = sim_bundle / "snaps"
    proc = node.snap("install", str(snaps / f"{MICROK8S_SNAP}.snap"), "--classic", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith('error: cannot find signatures with metadata for snap')
    node.snap("ack", str(snaps / f"{MICROK8S_SNAP}.assert"))
    node.snap("ack", str(snaps / f"{BASE_SNAP}.assert"))
    proc = node.snap("install", str(snaps / f"{MICROK8S_SNAP}.snap"), check=False)
    assert proc.returncode == 1 and "published using classic confinement" in proc.stderr
    proc = node.snap("install", str(snaps / f"{MICROK8S_SNAP}.snap"), "--classic", check=False)
    assert proc.returncode == 1 and 'cannot install snap base "core22"' in proc.stderr
    assert node.snap("install", str(snaps / f"{BASE_SNAP}.snap")).stdout == "core22 20260225 from Canonical** installed\n"
    assert node.snap("install", str(snaps / f"{MICROK8S_SNAP}.snap"), "--classic").stdout == \
        "microk8s v1.36.3 from Canonical** installed\n"
    assert node.microk8s_cmd.exists() and (node.root / "snap/bin/microk8s.kubectl").exists()
    # a tampered file no longer matches its acknowledged snap-revision assertion
    tampered = snaps / f"{MICROK8S_SNAP}.snap"
    tampered.write_bytes(tampered.read_bytes() + b"x")
    proc = node.snap("install", str(tampered), "--classic", check=False)
    assert proc.returncode == 1 and "cannot find signatures" in proc.stderr


def test_snap_list_hold_and_remove(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    node.install_microk8s(sim_bundle)
    listed = mk.parse_snap_list(node.snap("list").stdout)
    assert listed["microk8s"] == {"version": "v1.36.3", "revision": "9310", "tracking": "-",
                                  "publisher": "canonical**", "notes": ["classic"], "held": False}
    assert node.snap("refresh", "--hold", "microk8s").stdout == 'General refreshes of "microk8s" held indefinitely\n'
    assert mk.parse_snap_list(node.snap("list", "microk8s").stdout)["microk8s"]["held"] is True
    assert "hold:      forever" in node.snap("info", "microk8s").stdout
    proc = node.snap("refresh", "microk8s", check=False)
    assert proc.returncode == 1, "a refresh needs the store"
    proc = node.snap("remove", "core22", check=False)
    assert proc.returncode == 1 and "is being used by snap microk8s" in proc.stderr
    assert node.snap("remove", "microk8s").stdout == "microk8s removed\n"
    assert not node.microk8s_cmd.exists()
    proc = node.snap("list", "microk8s", check=False)
    assert (proc.returncode, proc.stderr) == (1, "error: no matching snaps installed\n")


def test_status_formats_match_status_py_and_parse(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    node.install_microk8s(sim_bundle)
    text = node.microk8s("status", "--format", "yaml").stdout
    # dns is enabled at install (microk8s.default.yaml); enabled addons first, each group by name
    assert text.startswith("microk8s:\n  running: True\nhigh-availability:\n  enabled: True\n  nodes:\n"
                           "    - address: 10.77.0.1:19001\n      role: voter\naddons:\n  - name: dns\n"
                           "    repository: core\n    description: CoreDNS\n    version: 1.13.1\n    status: enabled\n"
                           "  - name: ha-cluster\n")
    loaded = yaml.safe_load(text)
    parsed = mk.parse_status_yaml(text)
    assert parsed["running"] is True and parsed["voters"] == ["10.77.0.1:19001"]
    assert {a["name"]: a["status"] for a in loaded["addons"]} == {k: v["status"] for k, v in parsed["addons"].items()}
    pretty = node.microk8s("status").stdout.splitlines()
    assert pretty[:4] == ["microk8s is running", "high-availability: no",
                          "  datastore master nodes: 10.77.0.1:19001", "  datastore standby nodes: none"]
    assert "    dns                  # (core) CoreDNS" in pretty
    assert node.microk8s("status", "--format", "short").stdout.splitlines()[:3] == [
        "microk8s is running", "addons:", "core/dns: enabled"]
    assert node.microk8s("status", "--yaml").stdout.splitlines()[:4] == [
        "microk8s:", "  running: True", "addons:", "  core/dns: enabled"]
    assert node.microk8s("status", "-a", "dns").stdout == "enabled\n"
    assert node.microk8s("status", "-a", "core/ingress").stdout == "disabled\n"
    assert node.microk8s("status", "-a", "nosuch").stdout == "disabled\n"
    proc = node.microk8s("status", "--format", "json", check=False)
    assert proc.returncode == 2 and "argument --format: invalid choice: 'json'" in proc.stderr
    proc = node.microk8s("frob", check=False)
    assert proc.returncode == 1 and "'frob' is not a valid MicroK8s subcommand." in proc.stdout


def test_wait_ready_timeout_and_ready_delay(sim_nodes, sim_bundle):
    slow, never = sim_nodes(2)
    slow.set_faults(ready_delay=5)  # generous: the machine may be loaded
    never.set_faults(never_ready=True)
    never.install_microk8s(sim_bundle)
    slow.install_microk8s(sim_bundle)
    # status.py prints its report, then exits 1 while the cluster is not ready
    proc = slow.microk8s("status", "--format", "yaml", check=False)
    assert proc.returncode == 1 and mk.parse_status_yaml(proc.stdout)["running"] is False
    assert mk.parse_status_yaml(slow.microk8s("status", "--format", "yaml", "--wait-ready",
                                              "--timeout", "10").stdout)["running"] is True
    start = time.time()
    proc = never.microk8s("status", "--format", "yaml", "--wait-ready", "--timeout", "2", check=False)
    assert time.time() - start >= 2 and proc.returncode == 1
    parsed = mk.parse_status_yaml(proc.stdout)
    assert parsed["running"] is False and parsed["message"].startswith("microk8s is not running.")
    proc = never.microk8s("enable", "rbac", check=False)
    assert proc.returncode == 1 and "not running" in proc.stdout
    assert (never.microk8s("status", check=False).returncode, never.microk8s("status", "-a", "dns", check=False).stdout) \
        == (1, "disabled\n")


def test_status_of_a_stopped_node_exits_0(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    node.install_microk8s(sim_bundle)
    node.microk8s("stop")
    proc = node.microk8s("status", "--format", "yaml", check=False)
    assert (proc.returncode, proc.stdout) == (0, "microk8s is not running, try microk8s start\n")
    proc = node.microk8s("enable", "rbac", check=False)
    assert (proc.returncode, proc.stderr) == (1, "microk8s is not running, try microk8s start\n")
    node.microk8s("start")
    assert node.microk8s("status", "--format", "yaml").returncode == 0


def test_addons_grammar_and_idempotence(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    node.install_microk8s(sim_bundle)
    # dns is already enabled: xable skips it before its script runs, so the servers are ignored
    proc = node.microk8s("enable", "dns:1.1.1.1,8.8.8.8")
    assert (proc.stdout, proc.stderr) == ("Addon core/dns is already enabled\n", "Infer repository core for addon dns\n")
    node.microk8s("disable", "dns")
    proc = node.microk8s("enable", "dns:1.1.1.x", check=False)
    assert proc.returncode == 1
    assert "Your input value (1.1.1.x) is not a valid and reachable IP address" in proc.stdout
    out = node.microk8s("enable", "dns:1.1.1.1,8.8.8.8").stdout
    assert "Will use  1.1.1.1 8.8.8.8 as upstream nameservers" in out
    assert node.microk8s("enable", "dns").stdout.endswith("Addon core/dns is already enabled\n")
    proc = node.microk8s("enable", "hostpath-storage", "--reclaim-policy=Keep", check=False)
    assert proc.returncode == 1 and "Allowed values: Delete Retain" in proc.stdout
    node.microk8s("enable", "hostpath-storage", "--reclaim-policy", "Retain")
    proc = node.microk8s("enable", "nosuch", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "Addon nosuch was not found in any repository\n")
    proc = node.microk8s("enable", "--frob", check=False)
    assert proc.returncode == 2
    node.microk8s("disable", "dns")
    assert node.microk8s("disable", "dns").stdout.endswith("Addon core/dns is already disabled\n")


def join_cluster(cps, workers, bundle):
    for node in cps + workers:
        node.install_microk8s(bundle)
    first = cps[0]
    for node in cps[1:] + workers:
        info = json.loads(first.microk8s("add-node", "--format", "json").stdout)
        args = ["join", info["urls"][0]] + (["--worker"] if node in workers else [])
        node.microk8s(*args)
    return first


def test_ha_cluster_voters_standby_and_workers(sim_nodes, sim_bundle):
    nodes = sim_nodes(6)
    first = join_cluster(nodes[:5], nodes[5:], sim_bundle)
    parsed = mk.parse_status_yaml(nodes[2].microk8s("status", "--format", "yaml").stdout)
    assert [n["role"] for n in parsed["ha_nodes"]] == ["voter", "voter", "voter", "standby", "standby"]
    assert "high-availability: yes" in first.microk8s("status").stdout
    backend = (first.root / "var/snap/microk8s/current/var/kubernetes/backend/cluster.yaml").read_text()
    assert backend.count("Role: 0") == 3 and backend.count("Role: 1") == 2
    worker = nodes[5]
    proc = worker.microk8s("status", check=False)
    assert proc.returncode == 1 and "acting as a node in a cluster" in proc.stdout
    assert (worker.root / "var/snap/microk8s/current/var/lock/clustered.lock").exists()
    names = [n["name"] for n in mk.parse_nodes_json(first.microk8s("kubectl", "get", "nodes", "-o", "json").stdout)]
    assert names == ["n1", "n2", "n3", "n4", "n5", "n6"]
    table = first.microk8s("kubectl", "get", "nodes").stdout.splitlines()
    assert re.match(r"^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION$", table[0]) and "Ready" in table[6]
    proc = nodes[1].microk8s("join", "10.77.0.1:25000/" + "a" * 32, check=False)
    assert proc.returncode == 1 and "already part of a cluster" in proc.stdout


def test_tokens_single_use_expiry_and_hash(sim_nodes, sim_bundle):
    first, a, b, c = sim_nodes(4)
    for node in (first, a, b, c):
        node.install_microk8s(sim_bundle)
    url = first.microk8s("add-node", "--format", "short", "--token", "f" * 32).stdout.split()[2]
    assert re.match(r"^10\.77\.0\.1:25000/f{32}/[0-9a-f]{12}$", url)
    a.microk8s("join", url)
    proc = b.microk8s("join", url, check=False)
    # join.py: "Connection failed. <cluster agent error> (<status>)." and exit 6
    assert proc.returncode == 6
    assert proc.stdout == "Contacting cluster at 10.77.0.1\nConnection failed. invalid token (500).\n"
    first.microk8s("add-node", "--token", "e" * 32, "--token-ttl", "1")
    time.sleep(1.5)
    proc = b.microk8s("join", url.replace("f" * 32, "e" * 32), check=False)
    assert proc.returncode == 6 and "invalid token (500)" in proc.stdout
    first.microk8s("add-node", "--token", "d" * 32, "--token-ttl", "60")
    wrong_hash = url.replace("f" * 32, "d" * 32).rsplit("/", 1)[0] + "/000000000000"
    proc = b.microk8s("join", wrong_hash, check=False)
    assert proc.returncode == 4 and "Could not verify the identity of 10.77.0.1" in proc.stdout
    b.microk8s("join", wrong_hash, "--skip-verify")
    proc = c.microk8s("join", "10.77.9.9:25000/" + "d" * 32, check=False)
    assert proc.returncode == 1 and "No route to host" in proc.stderr
    proc = c.microk8s("join", "10.77.0.99:25000/" + "d" * 32, check=False)
    assert proc.returncode == 1 and "Connection refused" in proc.stderr
    proc = c.microk8s("join", "10.77.0.1:25000/" + "d" * 8, check=False)
    assert (proc.returncode, proc.stdout) == (1, "Invalid connection: Cluster token size should be at least 32 bytes\n")
    proc = first.microk8s("add-node", "--token", "short", check=False)
    assert (proc.returncode, proc.stdout) == (1, "Invalid token size.  It must be 32 characters long.\n")
    proc = c.microk8s("join", check=False)
    assert proc.returncode == 2 and "the following arguments are required: connection" in proc.stderr


def test_never_ready_after_join(sim_nodes, sim_bundle):
    first, late = sim_nodes(2)
    late.set_faults(never_ready_after_join=True)
    first.install_microk8s(sim_bundle)
    late.install_microk8s(sim_bundle)
    assert mk.parse_status_yaml(late.microk8s("status", "--format", "yaml").stdout)["running"] is True
    info = json.loads(first.microk8s("add-node", "--format", "json").stdout)
    late.microk8s("join", info["urls"][0], "--worker")
    ready = {n["name"]: n["ready"] for n in mk.parse_nodes_json(
        first.microk8s("kubectl", "get", "nodes", "-o", "json").stdout)}
    assert ready == {"n1": True, "n2": False}


def test_leave_remove_node_and_last_voter(sim_nodes, sim_bundle):
    nodes = sim_nodes(3)
    first = join_cluster(nodes[:2], nodes[2:], sim_bundle)
    second = nodes[1]
    proc = first.microk8s("remove-node", "n2", check=False)
    assert proc.returncode == 1 and "is registered with dqlite" in proc.stdout
    proc = first.microk8s("remove-node", "nosuch", check=False)
    assert (proc.returncode, proc.stdout) == (1, "Node nosuch does not exist in Kubernetes.\n")
    proc = second.microk8s("remove-node", "n1", "--force", "--bogus", check=False)
    assert proc.returncode == 2
    proc = first.microk8s("remove-node", "n1", check=False)
    assert proc.returncode == 1 and "cannot remove the node you are running the command from" in proc.stdout
    second.microk8s("leave")
    assert mk.parse_status_yaml(second.microk8s("status", "--format", "yaml").stdout)["voters"] == ["10.77.0.2:19001"]
    # n2's kubelet left: the real node lifecycle controller marks it NotReady once its lease runs
    # out (node-monitor-grace-period: 120 s in the test harness, tests/harness/kube/controlplane.py)
    deadline = time.monotonic() + 300
    while True:
        ready = {n["name"]: n["ready"] for n in mk.parse_nodes_json(
            first.microk8s("kubectl", "get", "nodes", "-o", "json").stdout)}
        if ready["n2"] is False or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert ready == {"n1": True, "n2": False, "n3": True}
    first.microk8s("remove-node", "n2")
    first.microk8s("remove-node", "n3")
    assert [n["name"] for n in mk.parse_nodes_json(first.microk8s("kubectl", "get", "nodes", "-o", "json").stdout)] \
        == ["n1"]
    # n1 is the last voter: a second control plane node asks to remove it with --force
    third = sim_nodes(4)[3]
    third.install_microk8s(sim_bundle)
    info = json.loads(first.microk8s("add-node", "--format", "json").stdout)
    third.microk8s("join", info["urls"][0])
    first.microk8s("leave")
    proc = third.microk8s("remove-node", "n1", "--force")
    assert proc.returncode == 0
    proc = third.microk8s("remove-node", "n4", "--force", check=False)
    assert proc.returncode == 1


def test_last_voter_refused(sim_nodes, sim_bundle):
    first, worker = sim_nodes(2)
    join_cluster([first], [worker], sim_bundle)
    # only control-plane node is the one dqlite member: a worker cannot run remove-node at all
    proc = worker.microk8s("remove-node", "n1", "--force", check=False)
    assert proc.returncode == 1 and "acting as a node" in proc.stdout


def test_config_and_kubectl_on_a_worker_print_the_wrappers_notice_and_exit_0(sim_nodes, sim_bundle):
    """microk8s-resources/wrappers/microk8s-config.wrapper and microk8s-kubectl.wrapper at the
    pinned track: on a worker they echo a notice and exit 0 (README conformance row 50)."""
    cp, worker = sim_nodes(2)
    for node in (cp, worker):
        node.install_microk8s(sim_bundle)
    info = json.loads(cp.microk8s("add-node", "--format", "json").stdout)
    worker.microk8s("join", info["urls"][0], "--worker")
    for cmd, args in (("config", []), ("kubectl", ["get", "nodes"])):
        proc = worker.microk8s(cmd, *args, check=False)
        assert (proc.returncode, proc.stdout) == (0, "This MicroK8s deployment is acting as a node in a cluster. "
                                                  "Please use the microk8s %s on the master.\n" % cmd), proc


def test_kubectl_label_taint_cordon(sim_nodes, sim_bundle):
    first, worker = sim_nodes(2)
    join_cluster([first], [worker], sim_bundle)
    first.microk8s("kubectl", "label", "node", "n2", "labhub.io/gpu=true")
    proc = first.microk8s("kubectl", "label", "node", "n2", "labhub.io/gpu=false", check=False)
    assert proc.returncode == 1 and "--overwrite is false" in proc.stderr
    first.microk8s("kubectl", "taint", "nodes", "n2", "nvidia.com/gpu=present:NoSchedule")
    assert first.microk8s("kubectl", "cordon", "n2").stdout == "node/n2 cordoned\n"
    node = mk.parse_nodes_json(first.microk8s("kubectl", "get", "node", "n2", "-o", "json").stdout)[0]
    assert node["labels"]["labhub.io/gpu"] == "true" and node["unschedulable"] is True
    # the real node lifecycle controller adds node.kubernetes.io/unschedulable to a cordoned node
    assert [t for t in node["taints"] if not t["key"].startswith("node.kubernetes.io/")] \
        == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert "SchedulingDisabled" in first.microk8s("kubectl", "get", "nodes").stdout
    # `microk8s kubectl` is the real kubectl against the real API server
    proc = first.microk8s("kubectl", "apply", "-f", "x.yaml", check=False)
    assert proc.returncode == 1 and 'the path "x.yaml" does not exist' in proc.stderr


def test_ctr_delegates_or_fails_clearly(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    node.install_microk8s(sim_bundle)
    proc = node.microk8s("ctr", "version", check=False)
    # Debian's containerd is installed on the CI machines: delegation reaches the real ctr, which
    # cannot reach MicroK8s' (absent) socket; without ctr the simulator says so.
    assert proc.returncode != 0
    assert ("needs a real ctr" in proc.stdout) or ("containerd.sock" in proc.stderr)


def test_add_node_prints_one_line_per_address_and_joins_need_a_reachable_one(sim_nodes, sim_bundle):
    first, joiner = sim_nodes(2)
    # an InfiniBand address first in `hostname -I`, the default route on the cluster network
    first.set_network(["192.168.100.1/24", "10.77.0.1/24"], default="10.77.0.1")
    for node in (first, joiner):
        node.install_microk8s(sim_bundle)
    short = first.microk8s("add-node", "--format", "short", "--token", "a" * 32).stdout.splitlines()
    assert [line.split()[2].split("/")[0] for line in short] == ["10.77.0.1:25000", "192.168.100.1:25000"]
    info = json.loads(first.microk8s("add-node", "--format", "json", "--token", "b" * 32).stdout)
    assert [u.split("/")[0] for u in info["urls"]] == ["192.168.100.1:25000", "10.77.0.1:25000"]
    pretty = first.microk8s("add-node", "--token", "c" * 32).stdout
    assert pretty.splitlines()[1].startswith("microk8s join 10.77.0.1:25000/")
    assert pretty.rstrip("\n").splitlines()[-2:] == [
        "microk8s join %s:25000/%s/%s" % (ip, "c" * 32, info["token"].split("/")[1]) for ip in ("192.168.100.1", "10.77.0.1")]
    check = info["token"].split("/")[1]
    # the joiner is on 10.77.0.0/24 only: the InfiniBand address does not route
    proc = joiner.microk8s("join", info["urls"][0], check=False)
    assert proc.returncode == 1 and proc.stderr.strip().endswith("No route to host")
    joiner.microk8s("join", "10.77.0.1:25000/%s/%s" % ("b" * 32, check))
    assert [n["name"] for n in mk.parse_nodes_json(first.microk8s("kubectl", "get", "nodes", "-o", "json").stdout)] \
        == ["n1", "n2"]


def _openssl(*args):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_server_cert_from_csr_template_signed_by_the_ca_and_refresh_certs(sim_nodes, sim_bundle):
    first, joiner = sim_nodes(2)
    for node in (first, joiner):
        node.install_microk8s(sim_bundle)
    certs = first.root / "var/snap/microk8s/current/certs"
    assert "#MOREIPS" in (certs / "csr.conf.template").read_text()
    assert "IP.3 = 10.77.0.1" in (certs / "csr.conf").read_text()
    _openssl("verify", "-CAfile", str(certs / "ca.crt"), str(certs / "server.crt"))
    sans = _openssl("x509", "-in", str(certs / "server.crt"), "-noout", "-ext", "subjectAltName")
    assert "DNS:kubernetes.default.svc.cluster.local" in sans and "IP Address:10.77.0.1" in sans
    assert "k8s.lab.example.org" not in sans
    # the join fingerprint is the start of the SHA-256 of server.crt (server_cert_check)
    der = subprocess.run(["openssl", "x509", "-in", str(certs / "server.crt"), "-outform", "der"],
                         capture_output=True, check=True).stdout
    old_url = first.microk8s("add-node", "--format", "short", "--token", "a" * 32).stdout.split()[2]
    assert old_url.endswith("/" + hashlib.sha256(der).hexdigest()[:12])
    template = (certs / "csr.conf.template").read_text()
    (certs / "csr.conf.template").write_text(
        template.replace("#MOREIPS", "DNS.6 = k8s.lab.example.org\nIP.3 = 10.77.0.100\n#MOREIPS"))
    before = time.time()
    out = first.microk8s("refresh-certs", "--cert", "server.crt").stdout
    assert out.splitlines()[1:] == ["Creating new certificates", "Restarting service kubelite.",
                                    "Restarting service cluster-agent."]
    _openssl("verify", "-CAfile", str(certs / "ca.crt"), str(certs / "server.crt"))
    sans = _openssl("x509", "-in", str(certs / "server.crt"), "-noout", "-ext", "subjectAltName")
    assert "DNS:k8s.lab.example.org" in sans and "IP Address:10.77.0.100" in sans and "IP Address:10.77.0.1" in sans
    assert "IP.4 = 10.77.0.1" in (certs / "csr.conf").read_text(), "node addresses numbered after the template's"
    # the harness' real API server now serves the name: TLS verification of it succeeds, of a name
    # no node's certificate carries it fails
    port = int(first.api_server()["port"])
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="k8s.lab.example.org") as tls:
            assert tls.version()
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            ctx.wrap_socket(raw, server_hostname="elsewhere.lab.example.org")
    log = first.node_state()["restart_log"]
    assert [e["service"] for e in log] == ["microk8s.daemon-kubelite", "microk8s.daemon-cluster-agent"]
    assert all(e["time"] >= before for e in log)
    # a URL with the old fingerprint no longer verifies
    proc = joiner.microk8s("join", old_url, check=False)
    assert proc.returncode == 4 and "Could not verify the identity of 10.77.0.1" in proc.stdout
    assert first.microk8s("refresh-certs", check=False).returncode == 3
    proc = first.microk8s("refresh-certs", "--cert", "nope.crt", check=False)
    assert proc.returncode == 2 and "'nope.crt' is not one of" in proc.stderr
    assert "The server certificate will expire in 364 days." in first.microk8s("refresh-certs", "-c").stdout


def test_restart_downtime_keeps_status_not_ready(sim_nodes, sim_bundle):
    (node,) = sim_nodes(1)
    node.install_microk8s(sim_bundle)
    node.set_faults(restart_downtime=3)
    node.snap("restart", "microk8s.daemon-kubelite")
    assert node.microk8s("status", check=False).returncode == 1
    start = time.time()
    node.microk8s("status", "--wait-ready", "--timeout", "20")
    assert time.time() - start >= 1.5
    state = node.node_state()
    assert state["restarts"] == {"microk8s.daemon-kubelite": 1}
    assert [e["service"] for e in state["restart_log"]] == ["microk8s.daemon-kubelite"]
