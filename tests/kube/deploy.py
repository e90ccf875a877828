"""Deploy a rendered site the way playbooks/site.yml does, against a real control plane: node
labels and taints (roles nodes, gpu_operator, network_operator), the GPU Operator chart, the
Network Operator chart and its NicClusterPolicy, the monitoring stack (role monitoring), the ingress
controller (role ingress), then the hub's objects and the z2jh chart, each
chart with the role's own kubernetes.core.helm parameters. Records what the tests assert on."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ansible_collections.labhub.platform.plugins.module_utils._monitoring import admin_secret as monitoring_admin_secret
from cluster import SiteCluster
from sites import finish_render

#: Grafana's admin password of the test sites (the role applies the same Secret with no_log).
MONITORING_PASSWORD = "grafana-admin-for-the-kube-tests"

#: A pod asking for one GPU, created before any operator runs (what a user's GPU server is).
GPU_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-early", "namespace": "default"},
    "spec": {"restartPolicy": "Never",
             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
             "containers": [{"name": "cuda", "image": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04",
                             "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
}


def pod_state(cluster: SiteCluster, namespace: str, name: str) -> dict[str, Any]:
    pod = cluster.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    cond = next((c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"), {})
    return {"phase": pod["status"].get("phase"), "node": pod["spec"].get("nodeName"),
            "scheduled": cond.get("status"), "reason": cond.get("reason"), "message": cond.get("message", "")}


def deploy(cluster: SiteCluster) -> dict[str, Any]:
    """Run the site; returns the record (timings, results of each helm call, early observations)."""
    site = cluster.site
    record: dict[str, Any] = {"helm": {}}
    t0 = time.monotonic()
    cluster.create_nodes()
    cluster.hostpath_storage()
    record["nodes_s"] = time.monotonic() - t0

    gpu = site.gpu_role
    if gpu:
        status, body = cluster.plane.request("POST", "/api/v1/namespaces/default/pods", GPU_POD)
        assert status == 201, body
        # roles/gpu_operator/tasks/install.yml: wait, no atomic, create_namespace.
        record["helm"]["gpu-operator"] = cluster.install("gpu-operator", gpu["release"], gpu["namespace"],
                                                         atomic=False, timeout="10m", create_namespace=True)
        # Helm returned (operator and NFD Deployments available): no operator controller has
        # acted yet, so no node advertises a GPU and the pod waits.
        cluster.wait("the scheduler's verdict on the early GPU pod",
                     lambda: pod_state(cluster, "default", "gpu-early")["reason"] == "Unschedulable", timeout=30)
        record["gpu_pod_before_operator"] = pod_state(cluster, "default", "gpu-early")
    cluster.sim.start()

    net = site.network
    if net.get("values"):
        # roles/network_operator/tasks/chart.yml: atomic, wait, create_namespace; then policy.yml.
        record["helm"]["network-operator"] = cluster.install("network-operator", net["release"], net["namespace"],
                                                             atomic=True, timeout="10m", create_namespace=True)
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(net["policy"]))

    # roles/monitoring/tasks/apply.yml (site.yml runs it after the operators): its objects and the
    # admin Secret (built by the same Python, plugins/module_utils/_monitoring.py), when on.
    if site.monitoring:
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(
            site.monitoring + [monitoring_admin_secret(site.monitoring[0]["metadata"]["name"], MONITORING_PASSWORD)]))

    # roles/ingress/tasks/apply.yml (site.yml runs it before the hub): its objects, when on.
    if site.ingress:
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(site.ingress))

    # roles/jupyterhub/tasks/apply.yml: the objects, then helm (atomic, wait, no create_namespace).
    cluster.apply_hub_objects()
    release = site.hub_manifests["00-namespace.yaml"]["metadata"]["labels"]["app.kubernetes.io/instance"]
    record["hub_release"] = release
    record["helm"]["jupyterhub"] = cluster.install("jupyterhub", release, site.hub_namespace,
                                                   atomic=True, timeout="15m", create_namespace=False)
    record["deploy_s"] = time.monotonic() - t0
    return record


#: Seconds per step of each site, printed at the end of the run (tests/kube/conftest.py).
TIMINGS: dict[str, dict[str, float]] = {}


def site_cluster(name: str, request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteCluster]:
    """A module's site: its render, its control plane (started by the session, conftest.py),
    nodes and the deployed charts; the control plane stops when the module ends."""
    renders = request.getfixturevalue("site_renders")
    plane, thread, errors = request.getfixturevalue("site_planes")[name]
    cluster = None
    times = TIMINGS.setdefault(name, {})
    try:
        start = time.monotonic()
        thread.join()
        if errors:
            raise errors[0]
        times["control plane start (wait)"] = time.monotonic() - start
        start = time.monotonic()
        site = finish_render(*renders[name])
        times["render (wait)" + (" [cached]" if site.cached else "")] = time.monotonic() - start
        cluster = SiteCluster(plane, site, tmp_path_factory.mktemp(f"home-{name}"))
        cluster.notes["record"] = deploy(cluster)
        times.update({"nodes + storage": cluster.notes["record"]["nodes_s"], **cluster.timings,
                      "deploy total": cluster.notes["record"]["deploy_s"]})
        yield cluster
    finally:
        if cluster is not None:
            cluster.sim.stop()
        plane.stop()
