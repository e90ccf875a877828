# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The FAKE Kubernetes API server (tests/simulator/labhub_kube.py) and the SIMULATED helm
(labhub_helm.py), driven by the real kubernetes Python client and by the real kubernetes.core
modules through `ansible-playbook`. Test doubles: no Kubernetes runs here; these tests pin the
API behaviour the roles rely on (status codes and Status bodies, patch types, simulated
controllers, PDB-aware eviction, helm's grammar/outputs/release records).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

SIM = Path(__file__).resolve().parents[1]
REPO = SIM.parents[1]
sys.path.insert(0, str(SIM))
import make_chart_fixture  # noqa: E402  pylint: disable=wrong-import-position

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as kclient  # noqa: E402  pylint: disable=wrong-import-position
from kubernetes import config as kconfig  # noqa: E402  pylint: disable=wrong-import-position
from kubernetes import dynamic  # noqa: E402  pylint: disable=wrong-import-position
from kubernetes.client.rest import ApiException  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.fake_api

Z2JH = Path(os.environ.get("LABHUB_SHARED_REFERENCE", "/work/shared/reference")) / "z2jh-4.4.0"


class Cluster:
    def __init__(self, tmp_path, nodes):
        self.nodes = nodes
        self.first = nodes[0]
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(self.first.microk8s("config").stdout)
        self.api = kconfig.new_client_from_config(str(self.kubeconfig))
        self.core = kclient.CoreV1Api(self.api)
        self.apps = kclient.AppsV1Api(self.api)
        self.dyn = dynamic.DynamicClient(self.api)
        self.faults_file = Path(nodes[0].env["LABHUB_SIM_CLUSTER_DIR"]) / "kube-faults.json"

    def faults(self, **knobs):
        self.faults_file.write_text(json.dumps(knobs))

    def res(self, api_version, kind):
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj):
        return self.res(obj["apiVersion"], obj["kind"]).create(body=obj, namespace=obj["metadata"].get("namespace"))


@pytest.fixture
def cluster(tmp_path, sim_nodes, sim_bundle):
    """Two control-plane nodes and a worker, joined (the API server runs on each control plane)."""
    cp1, cp2, worker = sim_nodes(3)
    for node in (cp1, cp2, worker):
        node.install_microk8s(sim_bundle)
    for node, extra in ((cp2, []), (worker, ["--worker"])):
        url = cp1.microk8s("add-node", "--format", "short").stdout.split()[-1]
        node.microk8s("join", url, *extra)
    return Cluster(tmp_path, [cp1, cp2, worker])


def raw(cluster, method, path, body=None, ctype="application/json"):
    """A plain HTTP call to the fake API: (status code, decoded JSON)."""
    server = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server + path, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # nosec - loopback test server
            return resp.status, json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def _status(exc):
    return exc.status, json.loads(exc.body)


def deployment(name, namespace="default", replicas=2, labels=None, pod_spec=None):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": pod_spec or {"containers": [{"name": name, "image": "busybox:1.36"}]}}}}


# =========================================================================================
# the API through the kubernetes Python client
# =========================================================================================
def test_servers_lifecycle_and_kubeconfig(cluster, sim_nodes):
    cp1, cp2, worker = cluster.nodes
    text = cp1.microk8s("config").stdout
    conf = yaml.safe_load(text)
    info = cp1.api_server()
    assert conf["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:%d" % info["port"]
    # every control-plane node serves the same cluster; the worker runs no API server
    assert cp2.api_server() is not None and worker.api_server() is None
    with socket.create_connection(("127.0.0.1", cp2.api_server()["port"]), timeout=5):
        pass
    other = kclient.CoreV1Api(kconfig.new_client_from_config_dict(yaml.safe_load(cp2.microk8s("config").stdout)))
    assert sorted(n.metadata.name for n in other.list_node().items) == ["n1", "n2", "n3"]
    # the node's own client.config (what kubernetes.core.helm uses on the node) points at it too
    client_config = yaml.safe_load((cp1.root / "var/snap/microk8s/current/credentials/client.config").read_text())
    assert client_config["clusters"][0]["cluster"]["server"].endswith(":%d" % info["port"])
    assert raw(cluster, "GET", "/version")[1]["gitVersion"] == "v1.30.0"
    # snap remove stops the server
    pid = cp2.api_server()["pid"]
    cp2.snap("remove", "microk8s")
    assert cp2.api_server() is None
    stat = Path("/proc/%d/stat" % pid)

    def gone():
        try:
            return stat.read_text().split(") ")[1].startswith("Z")
        except OSError:
            return True
    deadline = time.time() + 15  # the server notices within its 0.2 s poll; the CI machine can be slow
    while not gone() and time.time() < deadline:
        time.sleep(0.2)
    assert gone(), "the server still runs"


def test_builtin_objects_like_a_fresh_microk8s(cluster):
    names = sorted(ns.metadata.name for ns in cluster.core.list_namespace().items)
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    ds = cluster.apps.read_namespaced_daemon_set("calico-node", "kube-system")
    env = {e.name: e.value for e in ds.spec.template.spec.containers[0].env}
    assert env["CALICO_IPV4POOL_VXLAN"] == "Always" and env["IP_AUTODETECTION_METHOD"] == "first-found"
    assert ds.status.desired_number_scheduled == 3 == ds.status.number_ready
    cm = cluster.core.read_namespaced_config_map("calico-config", "kube-system")
    assert cm.data["veth_mtu"] == "0"
    pool = cluster.res("crd.projectcalico.org/v1", "IPPool").get(name="default-ipv4-ippool")
    assert pool.spec.cidr == "10.1.0.0/16" and pool.spec.vxlanMode == "Always"
    cni = list(yaml.safe_load_all((cluster.first.root / "var/snap/microk8s/current/args/cni-network/cni.yaml")
                                  .read_text()))
    cni_ds = [d for d in cni if d and d.get("kind") == "DaemonSet"][0]
    assert {"name": "CALICO_IPV4POOL_VXLAN", "value": "Always"} in cni_ds["spec"]["template"]["spec"][
        "containers"][0]["env"]
    # enabling an addon adds its objects, disabling removes them
    cluster.first.microk8s("enable", "dns")
    assert cluster.apps.read_namespaced_deployment("coredns", "kube-system").status.ready_replicas == 1
    assert cluster.core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip == "10.152.183.10"
    cluster.first.microk8s("enable", "hostpath-storage")
    sc = kclient.StorageV1Api(cluster.api).read_storage_class("microk8s-hostpath")
    assert sc.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    cluster.first.microk8s("disable", "dns")
    with pytest.raises(ApiException) as err:
        cluster.apps.read_namespaced_deployment("coredns", "kube-system")
    assert err.value.status == 404


def test_errors_are_kubernetes_status_bodies(cluster):
    with pytest.raises(ApiException) as err:
        cluster.core.read_namespaced_config_map("nope", "default")
    code, body = _status(err.value)
    assert (code, body["reason"], body["message"]) == (404, "NotFound", 'configmaps "nope" not found')
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}}
    cluster.core.create_namespaced_config_map("default", cm)
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map("default", cm)
    assert _status(err.value)[1]["reason"] == "AlreadyExists" and err.value.status == 409
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_config_map("missing", dict(cm, metadata={"name": "a"}))
    assert _status(err.value)[1]["message"] == 'namespaces "missing" not found'
    code, body = raw(cluster, "POST", "/api/v1/namespaces/default/configmaps",
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    assert (code, body["reason"]) == (422, "Invalid") and "metadata.name: Required value" in body["message"]
    code, body = raw(cluster, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "k"}})
    assert (code, body["reason"]) == (400, "BadRequest") and body["message"].startswith("Object 'Kind' is missing")
    with pytest.raises(ApiException) as err:
        cluster.apps.read_namespaced_deployment("nope", "default")
    assert _status(err.value)[1]["message"] == 'deployments.apps "nope" not found'
    # a stale resourceVersion on PUT is a Conflict
    stale = cluster.core.read_namespaced_config_map("a", "default").metadata.resource_version
    cluster.core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}})
    code, body = raw(cluster, "PUT", "/api/v1/namespaces/default/configmaps/a",
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": stale},
                      "data": {"y": "2"}})
    assert (code, body["reason"]) == (409, "Conflict")


def test_patch_types_generation_and_selectors(cluster):
    dep = cluster.apply(deployment("web", replicas=2))
    assert dep.metadata.generation == 1 and dep.metadata.uid and dep.metadata.creationTimestamp
    rv = dep.metadata.resourceVersion
    res = cluster.res("apps/v1", "Deployment")
    # strategic merge: containers merged by name, env by name
    patched = res.patch(name="web", namespace="default", content_type="application/strategic-merge-patch+json",
                        body={"spec": {"template": {"spec": {"containers": [
                            {"name": "web", "env": [{"name": "A", "value": "1"}]}]}}}})
    container = patched.spec.template.spec.containers[0]
    assert (container.image, container.env[0].name) == ("busybox:1.36", "A")
    assert patched.metadata.generation == 2 and patched.metadata.resourceVersion != rv
    # the same patch again changes nothing (no new resourceVersion, no new generation)
    again = res.patch(name="web", namespace="default", content_type="application/strategic-merge-patch+json",
                      body={"spec": {"template": {"spec": {"containers": [
                          {"name": "web", "env": [{"name": "A", "value": "1"}]}]}}}})
    assert (again.metadata.generation, again.metadata.resourceVersion) == (2, res.get(
        name="web", namespace="default").metadata.resourceVersion)
    # merge patch replaces lists; json patch edits by pointer; metadata-only changes keep generation
    merged = res.patch(name="web", namespace="default", content_type="application/merge-patch+json",
                       body={"metadata": {"labels": {"tier": "front"}}})
    assert merged.metadata.generation == 2 and merged.metadata.labels["tier"] == "front"
    jp = res.patch(name="web", namespace="default", content_type="application/json-patch+json",
                   body=[{"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert jp.spec.replicas == 3 and jp.metadata.generation == 3
    assert len(cluster.core.list_namespaced_pod("default", label_selector="app=web").items) == 3
    assert cluster.core.list_namespaced_pod("default", label_selector="app in (web,x),!nope").items
    assert not cluster.core.list_namespaced_pod("default", label_selector="app!=web").items
    on_n1 = cluster.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1").items
    assert on_n1 and all(p.spec.node_name == "n1" for p in on_n1)
    # server-side apply (approximated as create-or-merge)
    code, applied = raw(cluster, "PATCH", "/api/v1/namespaces/default/configmaps/applied?fieldManager=test",
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "v"}},
                        "application/apply-patch+yaml")
    assert (code, applied["data"]) == (201, {"k": "v"})
    code, applied = raw(cluster, "PATCH", "/api/v1/namespaces/default/configmaps/applied?fieldManager=test",
                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"j": "w"}},
                        "application/apply-patch+yaml")
    assert (code, applied["data"]) == (200, {"k": "v", "j": "w"})
    # deployment status as kubernetes.core's waiter reads it
    live = cluster.apps.read_namespaced_deployment("web", "default")
    assert (live.status.ready_replicas, live.status.observed_generation) == (3, live.metadata.generation)


def test_crds_become_discoverable(cluster):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.org"},
           "spec": {"group": "example.org", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    created = cluster.apply(crd)
    assert [c.type for c in created.status.conditions] == ["NamesAccepted", "Established"]
    groups = raw(cluster, "GET", "/apis")[1]
    assert "example.org" in [g["name"] for g in groups["groups"]]
    widgets = dynamic.DynamicClient(cluster.api).resources.get(api_version="example.org/v1", kind="Widget")
    widgets.create(body={"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"},
                         "spec": {"size": 1}}, namespace="default")
    assert widgets.get(name="w", namespace="default").spec.size == 1


def test_node_patches_write_back_to_the_simulator(cluster):
    cluster.core.patch_node("n3", {"metadata": {"labels": {"nvidia.com/gpu.present": "true"}},
                                   "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}})
    node = [n for n in cluster.first.nodes() if n["metadata"]["name"] == "n3"][0]
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["spec"]["taints"] == [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]
    cluster.first.microk8s("kubectl", "cordon", "n2")
    assert cluster.core.read_node("n2").spec.unschedulable is True
    # a DaemonSet selecting GPU nodes without the toleration has nothing to run on; with it, one pod
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "gpu-agent", "namespace": "default"},
          "spec": {"selector": {"matchLabels": {"app": "gpu-agent"}},
                   "template": {"metadata": {"labels": {"app": "gpu-agent"}},
                                "spec": {"nodeSelector": {"nvidia.com/gpu.present": "true"},
                                         "containers": [{"name": "a", "image": "x"}]}}}}
    cluster.apply(ds)
    assert cluster.apps.read_namespaced_daemon_set("gpu-agent", "default").status.desired_number_scheduled == 0
    cluster.res("apps/v1", "DaemonSet").patch(
        name="gpu-agent", namespace="default", content_type="application/strategic-merge-patch+json",
        body={"spec": {"template": {"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}}})
    status = cluster.apps.read_namespaced_daemon_set("gpu-agent", "default").status
    assert (status.desired_number_scheduled, status.number_ready, status.observed_generation) == (1, 1, 2)
    # the node goes: its pods go too
    cluster.first.microk8s("remove-node", "n3")
    assert not cluster.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n3").items
    assert cluster.apps.read_namespaced_daemon_set("gpu-agent", "default").status.desired_number_scheduled == 0


def test_jobs_resources_and_fault_knobs(cluster):
    batch = kclient.BatchV1Api(cluster.api)

    def job(name, gpu=False):
        container = {"name": "c", "image": "cuda"}
        if gpu:
            container["resources"] = {"limits": {"nvidia.com/gpu": 1}}
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}}
    cluster.apply(job("plain"))
    done = batch.read_namespaced_job("plain", "default").status
    assert done.succeeded == 1 and done.conditions[0].type == "Complete"
    cluster.apply(job("needs-gpu", gpu=True))
    pending = batch.read_namespaced_job("needs-gpu", "default").status
    assert pending.succeeded is None and pending.active == 1
    pod = cluster.core.list_namespaced_pod("default", label_selector="job-name=needs-gpu").items[0]
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    cluster.faults(jobs_fail=["default/doomed"])
    cluster.apply(job("doomed"))
    failed = batch.read_namespaced_job("doomed", "default").status
    assert failed.failed == 1 and failed.conditions[0].type == "Failed"
    cluster.faults(never_ready=["Deployment/default/stuck"])
    cluster.apply(deployment("stuck", replicas=1))
    status = cluster.apps.read_namespaced_deployment("stuck", "default").status
    assert status.ready_replicas is None and status.unavailable_replicas == 1
    cluster.faults(api_down=True)
    deadline = time.time() + 5
    refused = False
    while time.time() < deadline and not refused:
        try:
            with socket.create_connection(("127.0.0.1", cluster.first.api_server()["port"]), timeout=1):
                time.sleep(0.1)
        except ConnectionRefusedError:
            refused = True
        except ConnectionResetError:  # a connection caught in the backlog while the socket closes
            time.sleep(0.1)
    assert refused, "api_down must close the listening socket"
    proc = cluster.first.microk8s("helm3", "list", check=False)
    assert proc.returncode == 1 and "Kubernetes cluster unreachable" in proc.stderr
    cluster.faults()
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            cluster.core.list_node()
            break
        except Exception:  # pylint: disable=broad-except
            time.sleep(0.2)
    assert len(cluster.core.list_node().items) == 3


def test_eviction_respects_pod_disruption_budgets(cluster):
    cluster.apply(deployment("db", replicas=1))
    cluster.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "db", "namespace": "default"},
                   "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    pod = cluster.core.list_namespaced_pod("default", label_selector="app=db").items[0]
    body = kclient.V1Eviction(metadata=kclient.V1ObjectMeta(name=pod.metadata.name, namespace="default"))
    with pytest.raises(ApiException) as err:
        cluster.core.create_namespaced_pod_eviction(pod.metadata.name, "default", body)
    assert err.value.status == 429
    assert _status(err.value)[1]["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    cluster.res("policy/v1", "PodDisruptionBudget").patch(
        name="db", namespace="default", content_type="application/merge-patch+json",
        body={"spec": {"minAvailable": None, "maxUnavailable": 1}})
    cluster.core.create_namespaced_pod_eviction(pod.metadata.name, "default", body)
    pods = cluster.core.list_namespaced_pod("default", label_selector="app=db").items
    assert len(pods) == 1 and pods[0].metadata.name != pod.metadata.name, "the ReplicaSet recreates the pod"


# =========================================================================================
# kubernetes.core modules through ansible-playbook
# =========================================================================================
def run_play(tmp_path, tasks, hostvars=None, check=False):
    play = tmp_path / ("play-%d.yml" % time.time_ns())
    play.write_text(yaml.safe_dump([{"name": "FAKE API", "hosts": "localhost", "gather_facts": False,
                                     "vars": hostvars or {}, "tasks": tasks}]))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "ansible_collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_DEPRECATION_WARNINGS="False")
    env["PATH"] = f"{bindir}:{env['PATH']}"
    args = [str(bindir / "ansible-playbook"), str(play)] + (["--check"] if check else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_k8s_modules(tmp_path, cluster):
    kc = str(cluster.kubeconfig)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
          "data": {"a": "1"}}
    env_patch = {"apiVersion": "apps/v1", "kind": "DaemonSet",
                 "metadata": {"name": "calico-node", "namespace": "kube-system"},
                 "spec": {"template": {"spec": {"containers": [{"name": "calico-node", "env": [
                     {"name": "IP_AUTODETECTION_METHOD", "value": "can-reach=10.77.0.254"}]}]}}}}
    tasks = [
        {"name": "create", "kubernetes.core.k8s": {"kubeconfig": kc, "definition": cm}, "register": "r1"},
        {"name": "again", "kubernetes.core.k8s": {"kubeconfig": kc, "definition": cm}, "register": "r2"},
        {"name": "env", "kubernetes.core.k8s": {"kubeconfig": kc, "definition": env_patch}, "register": "r3"},
        {"name": "env again", "kubernetes.core.k8s": {"kubeconfig": kc, "definition": env_patch}, "register": "r4"},
        {"name": "wait", "kubernetes.core.k8s_info": {"kubeconfig": kc, "kind": "DaemonSet",
                                                      "namespace": "kube-system", "name": "calico-node",
                                                      "wait": True, "wait_timeout": 30}, "register": "r5"},
        {"name": "nodes", "kubernetes.core.k8s_info": {"kubeconfig": kc, "kind": "Node",
                                                       "label_selectors": ["node.kubernetes.io/microk8s-worker"]},
         "register": "r6"},
        {"name": "save", "ansible.builtin.copy": {
            "dest": str(tmp_path / "out.json"),
            "content": "{{ {'r1': r1.changed, 'r2': r2.changed, 'r3': r3.changed, 'r4': r4.changed, "
                       "'env': r5.resources[0].spec.template.spec.containers[0].env, "
                       "'ready': r5.resources[0].status.numberReady, "
                       "'workers': r6.resources | map(attribute='metadata.name') | list} | to_json }}"}},
    ]
    proc = run_play(tmp_path, tasks)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert (out["r1"], out["r2"], out["r3"], out["r4"]) == (True, False, True, False)
    env = {e["name"]: e.get("value") for e in out["env"]}
    assert env["IP_AUTODETECTION_METHOD"] == "can-reach=10.77.0.254" and env["CALICO_IPV4POOL_VXLAN"] == "Always"
    assert out["ready"] == 3 and out["workers"] == ["n3"]


def test_k8s_drain_with_and_without_a_blocking_pdb(tmp_path, cluster):
    kc = str(cluster.kubeconfig)
    cluster.apply(deployment("api", replicas=1))
    node = cluster.core.list_namespaced_pod("default", label_selector="app=api").items[0].spec.node_name
    cluster.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "api", "namespace": "default"},
                   "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}})
    drain = {"name": "drain", "kubernetes.core.k8s_drain": {
        "kubeconfig": kc, "name": node, "state": "drain",
        "delete_options": {"ignore_daemonsets": True, "wait_timeout": 10, "wait_sleep": 1}}}
    proc = run_play(tmp_path, [drain])
    assert proc.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in proc.stdout, proc.stdout[-3000:]
    cluster.res("policy/v1", "PodDisruptionBudget").delete(name="api", namespace="default")
    proc = run_play(tmp_path, [drain, {"name": "uncordon", "kubernetes.core.k8s_drain": {
        "kubeconfig": kc, "name": node, "state": "uncordon"}}])
    assert proc.returncode == 0, proc.stdout[-3000:]
    pods = cluster.core.list_namespaced_pod("default", label_selector="app=api").items
    assert len(pods) == 1 and pods[0].spec.node_name != node, "the pod was recreated on another node"
    assert not cluster.core.read_node(node).spec.unschedulable


@pytest.fixture
def z2jh_charts(tmp_path):
    values = (Z2JH / "values.yaml").read_text() if (Z2JH / "values.yaml").exists() else "proxy: {}\n"
    chart_yaml = (Z2JH / "Chart.yaml").read_text() if (Z2JH / "Chart.yaml").exists() else None
    return [make_chart_fixture.make(str(tmp_path / "charts"), "jupyterhub", v, "5.5.0", values, chart_yaml)
            for v in ("4.4.0", "4.4.1")]


def test_helm_modules_install_upgrade_atomic_uninstall(tmp_path, cluster, z2jh_charts):
    node = cluster.first
    helm = str(node.root / "snap/bin/microk8s.helm3")
    client_config = str(node.root / "var/snap/microk8s/current/credentials/client.config")
    base = {"binary_path": helm, "kubeconfig": client_config, "release_name": "jhub",
            "release_namespace": "jhub", "create_namespace": True, "wait": True, "wait_timeout": "30s"}
    values = {"proxy": {"service": {"type": "NodePort", "nodePorts": {"http": 30080}}},
              "scheduling": {"userScheduler": {"enabled": False}}}

    def helm_task(name, chart, vals, **extra):
        return {"name": name, "kubernetes.core.helm": dict(base, chart_ref=chart, values=vals, **extra),
                "register": name}
    tasks = [
        helm_task("install", z2jh_charts[0], values),
        helm_task("same", z2jh_charts[0], values),
        helm_task("upgrade", z2jh_charts[1], values),
        {"name": "info", "register": "info", "kubernetes.core.helm_info": {
            "binary_path": helm, "kubeconfig": client_config, "release_name": "jhub", "release_namespace": "jhub"}},
        {"name": "save", "ansible.builtin.copy": {"dest": str(tmp_path / "helm.json"), "content": (
            "{{ {'install': install.changed, 'same': same.changed, 'upgrade': upgrade.changed, "
            "'status': info.status.status, 'chart': info.status.chart, 'revision': info.status.revision, "
            "'values': info.status['values']} | to_json }}")}},
    ]
    proc = run_play(tmp_path, tasks)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    out = json.loads((tmp_path / "helm.json").read_text())
    assert (out["install"], out["same"], out["upgrade"]) == (True, False, True)
    assert (out["status"], out["chart"], out["revision"]) == ("deployed", "jupyterhub-4.4.1", "2")
    assert out["values"] == values
    svc = cluster.core.read_namespaced_service("proxy-public", "jhub")
    assert svc.spec.type == "NodePort" and svc.spec.ports[0].node_port == 30080
    hub = cluster.apps.read_namespaced_deployment("hub", "jhub")
    assert hub.status.ready_replicas == 1 and hub.metadata.annotations["meta.helm.sh/release-name"] == "jhub"
    assert not cluster.apps.list_namespaced_deployment("jhub", label_selector="component=user-scheduler").items
    secrets = sorted(s.metadata.name for s in cluster.core.list_namespaced_secret(
        "jhub", field_selector="type=helm.sh/release.v1").items)
    assert secrets == ["sh.helm.release.v1.jhub.v1", "sh.helm.release.v1.jhub.v2"]

    # an upgrade whose hub never becomes Ready: --atomic rolls back to the previous revision
    cluster.faults(never_ready=["Deployment/jhub/user-scheduler"])
    enabled = {"proxy": values["proxy"], "scheduling": {"userScheduler": {"enabled": True}}}
    proc = run_play(tmp_path, [helm_task("broken", z2jh_charts[1], enabled, atomic=True, wait_timeout="3s")])
    assert proc.returncode != 0
    assert ("UPGRADE FAILED: release jhub failed, and has been rolled back due to atomic being set: "
            "context deadline exceeded") in proc.stdout, proc.stdout[-3000:]
    listed = yaml.safe_load(node.microk8s("helm3", "list", "-n", "jhub", "-o", "yaml").stdout)
    assert [(r["revision"], r["status"]) for r in listed] == [("4", "deployed")]
    assert not cluster.apps.list_namespaced_deployment("jhub", label_selector="component=user-scheduler").items
    history = yaml.safe_load(node.microk8s("helm3", "history", "jhub", "-n", "jhub", "-o", "yaml").stdout)
    assert [h["status"] for h in history] == ["superseded", "superseded", "failed", "deployed"]
    cluster.faults()

    proc = run_play(tmp_path, [{"name": "remove", "kubernetes.core.helm": {
        "binary_path": helm, "kubeconfig": client_config, "release_name": "jhub", "release_namespace": "jhub",
        "state": "absent"}, "register": "removed"}])
    assert proc.returncode == 0 and "changed=1" in proc.stdout, proc.stdout[-3000:]
    assert not cluster.apps.list_namespaced_deployment("jhub").items
    assert not cluster.core.list_namespaced_secret("jhub", field_selector="type=helm.sh/release.v1").items


def test_helm_grammar_outputs_and_first_install_atomic(tmp_path, cluster, z2jh_charts):
    node = cluster.first

    def helm(*args):
        return node.microk8s("helm3", *args, check=False)
    assert helm("version").stdout.startswith('version.BuildInfo{Version:"v3.')
    proc = helm("list", "--bogus")
    assert (proc.returncode, proc.stderr) == (1, "Error: unknown flag: --bogus\n")
    proc = helm("frobnicate")
    assert proc.returncode == 1 and 'unknown command "frobnicate" for "helm"' in proc.stderr
    chart = yaml.safe_load(helm("show", "chart", z2jh_charts[0]).stdout)
    assert (chart["name"], chart["version"], chart["appVersion"]) == ("jupyterhub", "4.4.0", "5.5.0")
    assert helm("get", "values", "--output=yaml", "nothing").stderr == "Error: release: not found\n"
    proc = helm("install", "hub", z2jh_charts[0], "-n", "absent-ns")
    assert proc.returncode == 1 and 'namespaces "absent-ns" not found' in proc.stderr
    values = tmp_path / "values.yaml"
    values.write_text("hub:\n  config:\n    JupyterHub:\n      admin_access: false\n")
    proc = helm("upgrade", "-i", "hub", z2jh_charts[0], "-n", "default", "-f", str(values), "--set",
                "proxy.service.type=ClusterIP")
    assert proc.returncode == 0 and proc.stdout.startswith('Release "hub" does not exist. Installing it now.')
    assert yaml.safe_load(helm("get", "values", "hub", "-n", "default", "-o", "yaml").stdout) == {
        "hub": {"config": {"JupyterHub": {"admin_access": False}}}, "proxy": {"service": {"type": "ClusterIP"}}}
    computed = yaml.safe_load(helm("get", "values", "hub", "-n", "default", "-o", "yaml", "-a").stdout)
    assert computed["proxy"]["service"]["type"] == "ClusterIP" and "singleuser" in computed
    # a first install that never becomes ready with --atomic is uninstalled
    cluster.faults(never_ready=["Deployment/*/proxy"])
    proc = helm("upgrade", "--install", "bad", z2jh_charts[0], "-n", "kube-public", "--atomic", "--timeout", "2s")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == ("Error: INSTALLATION FAILED: release bad failed, and has been "
                                            "uninstalled due to atomic being set: context deadline exceeded")
    assert yaml.safe_load(helm("list", "-n", "kube-public", "-o", "yaml", "--all").stdout) == []
    proc = helm("upgrade", "--install", "bad", z2jh_charts[0], "-n", "kube-public", "--wait", "--timeout", "1s")
    assert proc.stderr.splitlines()[-1] == "Error: INSTALLATION FAILED: context deadline exceeded"
    listed = yaml.safe_load(helm("list", "-n", "kube-public", "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("bad", "failed")]
    proc = helm("uninstall", "bad", "-n", "kube-public")
    assert proc.stdout == 'release "bad" uninstalled\n'
    assert helm("uninstall", "bad", "-n", "kube-public").stderr == (
        "Error: uninstall: Release not loaded: bad: release: not found\n")


# =========================================================================================
# the store and the patch helpers without a server
# =========================================================================================
def _bare_cluster():
    import labhub_kube as kube  # pylint: disable=import-outside-toplevel
    cluster = {"id": "unit", "nodes": [], "addons": {}}
    store = kube.Store(cluster)
    store.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    return kube, store


def test_store_keeps_service_allocations_and_reports_no_op_writes():
    kube, store = _bare_cluster()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    first, changed = store.apply(svc)
    assert changed and first["spec"]["ports"][0]["nodePort"] >= 30000 and first["spec"]["clusterIP"]
    again, changed = store.apply(svc)
    assert not changed and again["spec"] == first["spec"]
    res = kube.find_resource(store.cluster, "", "v1", "services")
    with pytest.raises(kube.ApiError) as err:
        store.create(res, "default", svc)
    assert (err.value.code, err.value.reason) == (409, "AlreadyExists")


def test_patch_helpers():
    import labhub_kube as kube  # pylint: disable=import-outside-toplevel
    target = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}],
                                       "ports": [{"containerPort": 80}]}],
                       "tolerations": [{"key": "a"}]}}
    merged = kube.strategic_merge(target, {"spec": {"containers": [
        {"name": "a", "env": [{"name": "J", "value": "2"}, {"name": "K", "$patch": "delete"}],
         "ports": [{"containerPort": 81}]},
        {"name": "b", "image": "y"}], "tolerations": [{"key": "b"}]}})
    assert merged["spec"]["containers"][0]["env"] == [{"name": "J", "value": "2"}]
    assert [p["containerPort"] for p in merged["spec"]["containers"][0]["ports"]] == [80, 81]
    assert [c["name"] for c in merged["spec"]["containers"]] == ["a", "b"]
    assert merged["spec"]["tolerations"] == [{"key": "b"}], "tolerations are replaced, not merged"
    assert kube.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}
    assert kube.json_patch({"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3},
                                           {"op": "replace", "path": "/a/0", "value": 0}]) == {"a": [0, 2, 3]}
    with pytest.raises(kube.ApiError) as err:
        kube.json_patch({"a": 1}, [{"op": "remove", "path": "/b"}])
    assert err.value.code == 422
    assert kube.label_match("app=web,tier in (a,b),!canary", {"app": "web", "tier": "a"})
    assert not kube.label_match("app=web,tier notin (a)", {"app": "web", "tier": "a"})
    assert kube.selector_match({"matchExpressions": [{"key": "k", "operator": "Exists"}]}, {"k": ""})
