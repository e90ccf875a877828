"""inventories/example on a real control plane: 3 control-plane nodes and 2 CPU workers
(hardware fixture cpu-vm), 4 DGX H100 nodes on InfiniBand (dgx-h100; gpu04 with its MIG profile
and its reserved taint). The roles' values (rendered through the roles, tests/kube/sites.py) are
installed with real Helm from the real chart archives in site.yml's order; the operators' own
controllers are SIMULATED (tests/harness/kube/operators.py)."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.labhub.platform.plugins.module_utils import _monitoring

from checks import (assert_second_run_changes_nothing, check_gpu_release, check_hub, check_ingress, check_monitoring,
                    gpu_resources,
                    object_when,
                    rdma_resource, rerun, run_smoke_job, wait_gpu_converged, wait_network_converged)
import monitoring_live as live
from cluster import SiteCluster
from deploy import site_cluster

pytestmark = pytest.mark.kube

GPU_HOSTS = ["gpu01", "gpu02", "gpu03", "gpu04"]


@pytest.fixture(scope="module")
def example(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteCluster]:
    yield from site_cluster("example", request, tmp_path_factory)


def test_a_gpu_pod_waits_until_the_device_plugin_advertises_gpus(example: SiteCluster) -> None:
    before = example.notes["record"]["gpu_pod_before_operator"]
    assert before["phase"] == "Pending" and before["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in before["message"], before
    pod = object_when(example, "/api/v1/namespaces/default/pods/gpu-early",
                      lambda p: p["status"].get("phase") == "Running", "the early GPU pod Running")
    node = pod["spec"]["nodeName"]
    assert node in GPU_HOSTS
    assert int(gpu_resources(example, node)["nvidia.com/gpu"]) >= 1


def test_gpu_operator_release_carries_the_role_values(example: SiteCluster) -> None:
    found = check_gpu_release(example)
    assert found["policy"]["spec"]["driver"]["enabled"] is False  # driver mode host
    assert found["policy"]["spec"]["mig"]["strategy"] == "single"  # gpu04 has a MIG profile
    # gpu04's reserved taint (host_vars/gpu04, role nodes) is tolerated by the operands and NFD.
    reserved = {"key": "labhub.io/reserved", "operator": "Equal", "value": "hpc101", "effect": "NoSchedule"}
    assert reserved in found["policy"]["spec"]["daemonsets"]["tolerations"]
    assert reserved in found["worker"]["spec"]["template"]["spec"]["tolerations"]
    assert found["worker"]["status"]["desiredNumberScheduled"] == len(example.site.node_names)


def test_every_gpu_node_gets_operands_gpus_and_gfd_labels(example: SiteCluster) -> None:
    wait_gpu_converged(example)
    policy = object_when(example, "/apis/nvidia.com/v1/clusterpolicies/cluster-policy",
                         lambda p: p.get("status", {}).get("state") == "ready", "ClusterPolicy ready")
    conditions = {c["type"]: c for c in policy["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["reason"] == "Reconciled"
    assert conditions["Error"]["status"] == "False"
    assert policy["status"]["namespace"] == example.site.gpu_role["namespace"]
    expected = {"gpu01": "8", "gpu02": "8", "gpu03": "8", "gpu04": "56"}  # gpu04: all-1g.10gb = 7 per H100
    got = {}
    for host in GPU_HOSTS:
        try:
            example.wait(f"nvidia.com/gpu on {host}", lambda host=host: gpu_resources(example, host).get(
                "nvidia.com/gpu") == expected[host], timeout=60)
        except AssertionError:
            pass
        got[host] = gpu_resources(example, host).get("nvidia.com/gpu")
    assert got == expected, f"GPUs advertised per node {got}; taints: {example.site.node_taints}"
    labels = example.node("gpu01")["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == labels["labhub.io/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "8" and labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["nvidia.com/mig.strategy"] == "single" and labels["nvidia.com/gpu.present"] == "true"
    assert labels["nvidia.com/gpu.deploy.driver"] == "false"  # the role's label is honoured
    cpu = example.node("cpu01")["metadata"]["labels"]
    assert "nvidia.com/gpu.present" not in cpu and not gpu_resources(example, "cpu01")


def test_the_role_smoke_test_job_runs_on_a_gpu(example: SiteCluster) -> None:
    wait_gpu_converged(example)
    result = run_smoke_job(example)
    assert result["status"].get("succeeded") == 1, result
    assert result["nodes"][0] in GPU_HOSTS


def test_network_operator_release_policy_and_rdma_resources(example: SiteCluster) -> None:
    net = example.site.network
    ns = net["namespace"]
    operator = example.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{net['release']}")
    env = {e["name"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "OFED_INIT_CONTAINER_IMAGE" not in env  # operator.ofedDriver.initContainer.enable: false
    assert example.get("/apis/nfd.k8s-sigs.io/v1alpha1/nodefeaturerules/nvidia-nics-rules")  # nfd.deployNodeFeatureRules
    # one Node Feature Discovery: the GPU Operator's (its worker labels the NICs, its master runs the rule above)
    workers = example.get("/apis/apps/v1/daemonsets?labelSelector=app.kubernetes.io%2Fname%3Dnode-feature-discovery")
    assert [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in workers["items"]] == [
        (example.site.gpu_role["namespace"], f"{example.site.gpu_role['release']}-node-feature-discovery-worker")], workers["items"]
    assert example.site.network["values"]["nfd"] == {"enabled": False, "deployNodeFeatureRules": True}
    assert example.plane.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/sriov-network-operator")[0] == 404
    wait_network_converged(example)
    policy = object_when(example, "/apis/mellanox.com/v1alpha1/nicclusterpolicies/nic-cluster-policy",
                         lambda p: p.get("status", {}).get("state") == "ready", "NicClusterPolicy ready")
    states = {s["name"]: s["state"] for s in policy["status"]["appliedStates"]}
    assert states.pop("state-RDMA-device-plugin") == "ready" and set(states.values()) == {"ignore"}
    resource, count = rdma_resource(example)
    assert resource == "rdma/hca_shared_devices_ib" and count == "63"
    for host in GPU_HOSTS:
        assert example.node(host)["status"]["allocatable"].get(resource) == count, host
    assert resource not in example.node("cpu01")["status"]["allocatable"]
    assert {"key": "labhub.io/reserved", "operator": "Equal", "value": "hpc101", "effect": "NoSchedule"} in \
        policy["spec"]["tolerations"]
    ds = example.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/rdma-shared-dp-ds")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] in {
        "nvcr.io/nvidia/mellanox/k8s-rdma-shared-dev-plugin:network-operator-v25.7.0"}


def test_a_second_policy_is_left_alone_as_upstream_does(example: SiteCluster) -> None:
    """gpu-operator clusterpolicy_controller.go: a second ClusterPolicy is ignored and its status
    never written; network-operator nicclusterpolicy_controller.go handleUnsupportedInstance: a
    NicClusterPolicy not named nic-cluster-policy gets state "ignore" and a reason."""
    spec = example.get("/apis/nvidia.com/v1/clusterpolicies/cluster-policy")["spec"]
    status, body = example.plane.request("POST", "/apis/nvidia.com/v1/clusterpolicies", {
        "apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "metadata": {"name": "second"}, "spec": spec})
    assert status == 201, body
    policy = dict(example.site.network["policy"], metadata={"name": "second"})
    status, body = example.plane.request("POST", "/apis/mellanox.com/v1alpha1/nicclusterpolicies", policy)
    assert status == 201, body
    nic = object_when(example, "/apis/mellanox.com/v1alpha1/nicclusterpolicies/second",
                      lambda p: p.get("status", {}).get("state") == "ignore", "the second NicClusterPolicy ignored")
    assert nic["status"]["reason"] == ("Unsupported NicClusterPolicy instance second. Only instance with name "
                                       "nic-cluster-policy is supported")
    assert "status" not in example.get("/apis/nvidia.com/v1/clusterpolicies/second")
    assert example.get("/apis/nvidia.com/v1/clusterpolicies/cluster-policy")["status"]["state"] == "ready"
    for path in ("/apis/nvidia.com/v1/clusterpolicies/second", "/apis/mellanox.com/v1alpha1/nicclusterpolicies/second"):
        assert example.plane.request("DELETE", path)[0] == 200


def test_hub_on_the_example_site(example: SiteCluster) -> None:
    placed = check_hub(example)
    assert placed["hub"] != "gpu04" and placed["proxy"] != "gpu04"  # reserved: labhub.io/reserved taint


def test_monitoring_stack_runs_offline_on_every_node(example: SiteCluster) -> None:
    """Role monitoring (on by default): Prometheus, Alertmanager, Grafana, kube-state-metrics and
    node exporter on all 9 nodes (gpu04's reserved taint tolerated), from the bundle's images."""
    found = check_monitoring(example)
    config = next(o for o in example.site.monitoring if o["metadata"]["name"] == "prometheus-config")
    assert "dcgm-exporter" in config["data"]["prometheus.yml"]  # the example runs the GPU Operator
    # the example's hub is behind the Ingress (https://hub.example.org, TLS ended in front): so is
    # Grafana, at /grafana/ on the hub's host, with no NodePort around it
    ns = found["namespace"]
    assert found["grafana"]["type"] == "ClusterIP"
    ingress = example.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/grafana")["spec"]
    assert ingress["ingressClassName"] == "public" and "tls" not in ingress
    assert ingress["rules"] == [{"host": "hub.example.org", "http": {"paths": [{
        "path": "/grafana", "pathType": "Prefix", "backend": {"service": {"name": "grafana", "port": {"name": "http"}}}}]}}]
    # Grafana signs in through the hub: both roles' renders agree on the client, and the hub's
    # NetworkPolicy as the real chart made it lets Grafana's pods reach the hub's API
    deployment = next(o for o in example.site.monitoring if o["kind"] == "Deployment" and o["metadata"]["name"] == "grafana")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    hub = example.site.hub_values["hub"]
    client = hub["services"]["labhub-grafana"]
    assert env["GF_SERVER_ROOT_URL"] == "https://hub.example.org/grafana/" and env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_ID"] == client["oauth_client_id"] == "service-labhub-grafana"
    assert client["oauth_redirect_uri"] == env["GF_SERVER_ROOT_URL"] + "login/generic_oauth"
    assert env["GF_AUTH_GENERIC_OAUTH_AUTH_URL"] == "https://hub.example.org/hub/api/oauth2/authorize"
    assert env["GF_AUTH_GENERIC_OAUTH_TOKEN_URL"] == f"http://hub.{example.site.hub_namespace}.svc:8081/hub/api/oauth2/token"
    assert env["GF_AUTH_GENERIC_OAUTH_SCOPES"].split() == client["oauth_client_allowed_scopes"]
    assert hub["loadRoles"]["user"] == {"scopes": ["self", "access:services!service=labhub-grafana"]}
    policy = example.get(f"/apis/networking.k8s.io/v1/namespaces/{example.site.hub_namespace}/networkpolicies/hub")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}} in peers, peers


def test_rules_and_every_dashboard_query_on_a_real_prometheus(example: SiteCluster, tmp_path: Path) -> None:
    """Issue 14 item 6 (tests/kube/monitoring_live.py says what is real): the site's own scrape jobs,
    rules and provisioned dashboards on Debian's Prometheus, scraping kube-state-metrics on this
    control plane, node exporter, the portal, a real JupyterHub with its read:metrics token and the
    DCGM exporter stand-in. Every query of every dashboard returns data; every rule evaluates; the
    alerts the data calls for fire (or wait out their `for`), the others stay quiet."""
    objs = {(o["kind"], o["metadata"]["name"]): o for o in example.site.monitoring}
    namespace = next(o["metadata"]["name"] for o in example.site.monitoring if o["kind"] == "Namespace")
    boards = {name: json.loads(text) for name, text in objs[("ConfigMap", "grafana-dashboards")]["data"].items()}
    assert sorted(boards) == ["labhub-cluster.json", "labhub-gpus.json", "labhub-hub.json", "labhub-portal.json"]
    procs = live.Processes(tmp_path)
    exporter = live.Exporter(live.dcgm_text(example.site.hub_namespace))
    try:
        ksm = live.start_kube_state_metrics(procs, example.plane, namespace)
        node = live.start_node_exporter(procs)
        portal = live.start_portal(procs)
        hub = live.Hub(procs)
        config = yaml.safe_load(objs[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"])
        assert "labhub-portal" not in {j["job_name"] for j in config["scrape_configs"]}
        # the example's portal listens on loopback only: its job is the one monitoring_portal_target adds
        config["scrape_configs"] += [j for j in _monitoring.scrape_config(_monitoring.settings_from_vars(
            {"monitoring_portal_target": f"127.0.0.1:{portal}"}, {}))["scrape_configs"] if j["job_name"] == "labhub-portal"]
        prom = live.Prometheus(
            procs, yaml.safe_dump(config),
            objs[("ConfigMap", "prometheus-rules")]["data"]["labhub.yml"],
            targets={"kube-state-metrics": f"127.0.0.1:{ksm}", "node-exporter": f"127.0.0.1:{node}",
                     "labhub-portal": f"127.0.0.1:{portal}", "jupyterhub": f"127.0.0.1:{hub.hub_port}",
                     "dcgm-exporter": f"127.0.0.1:{exporter.port}"},
            tokens={"jupyterhub": hub.metrics_token})
        for job in ("kube-state-metrics", "node-exporter", "labhub-portal", "jupyterhub", "dcgm-exporter"):
            prom.wait_for(f'up{{job="{job}"}} == 1')
        # the metrics token reads /hub/metrics and nothing else
        assert hub.api("GET", "/users", token=hub.metrics_token)[0] == 403
        # three starts that fail and one that succeeds, after Prometheus has seen the hub once
        assert [hub.spawn(user) for user in ("broken-1", "broken-2", "broken-3", "alice")][-1] in (201, 202)
        prom.wait_for('sum(jupyterhub_server_spawn_duration_seconds_count{status="failure"}) >= 3')
        prom.wait_for('jupyterhub_running_servers >= 1')
        prom.wait_for('portal_report_sync_runs_total{result="ok"} >= 1')
        prom.wait_for('rate(portal_recorder_cycles_total{result="ok"}[1m]) > 0')
        prom.wait_for(f'kube_deployment_status_replicas_available{{namespace="{example.site.hub_namespace}",'
                      f'deployment="proxy"}} >= 1')

        queries = live.dashboard_queries(boards)
        assert len(queries) >= 40
        empty = []
        for board, panel, expr in queries:
            values = [float(r["value"][1]) for r in prom.query(expr)]
            if not values or all(math.isnan(v) for v in values):
                empty.append((board, panel, expr))
        assert not empty, "dashboard queries without data: " + json.dumps(empty, indent=1)

        # every rule evaluated without error; the alerts the data calls for
        groups = prom.get("rules")["groups"]
        assert [(g["name"], g["interval"]) for g in groups] == [("labhub-gpu.records", 1), ("labhub.alerts", 1)]
        rules = [r for g in groups for r in g["rules"]]
        unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert len(rules) == 14 and not unhealthy, unhealthy
        # the alerts the data calls for (rules are evaluated every second; poll until the last spawn counted)
        expected = {("LabhubGpuXidError", "firing", "gpu02"),         # XID 79, no `for`
                    ("LabhubSpawnFailures", "firing", ""),            # 3 of 4 starts failed
                    ("LabhubGpuHeldIdle", "pending", "jupyter-bob")}  # 0 %, waits out its 2h
        deadline = time.monotonic() + 60
        while True:
            alerts = {(a["labels"]["alertname"], a["state"], a["labels"].get("pod") or a["labels"].get("Hostname", ""))
                      for a in prom.get("alerts")["alerts"]}
            if expected <= alerts or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        spawns = next(r["query"] for r in rules if r["name"] == "LabhubSpawnFailures")
        assert expected <= alerts, (alerts, spawns, prom.query(spawns))
        quiet = {"LabhubGpuNodeNotReady", "LabhubHubDown", "LabhubProxyDown", "LabhubPortalRecorderStale",
                 "LabhubReportSyncFailing", "LabhubGpuMemoryError"}
        assert not {a for a in alerts if a[0] in quiet}, alerts
        assert not {a for a in alerts if a[0] == "LabhubGpuHeldIdle" and a[2] != "jupyter-bob"}, alerts
        example.notes["monitoring"] = {"queries": len(queries), "rules": len(rules), "alerts": sorted(alerts)}
    finally:
        procs.stop()
        exporter.stop()


def test_ingress_controller_serves_the_hub_ingress_offline(example: SiteCluster) -> None:
    """jupyterhub_expose: ingress turns role ingress on (ingress_enabled's default)."""
    placed = check_ingress(example)
    assert "gpu04" not in placed["nodes"]  # reserved: labhub.io/reserved taint, and no toleration


def test_a_second_run_with_the_same_values_changes_nothing(example: SiteCluster) -> None:
    record: dict[str, Any] = example.notes["record"]
    policy_gen = example.get("/apis/nvidia.com/v1/clusterpolicies/cluster-policy")["metadata"]["generation"]
    nic_gen = example.get("/apis/mellanox.com/v1alpha1/nicclusterpolicies/nic-cluster-policy")["metadata"]["generation"]
    releases = [("gpu-operator", example.site.gpu_role["release"], example.site.gpu_role["namespace"]),
                ("network-operator", example.site.network["release"], example.site.network["namespace"]),
                ("jupyterhub", record["hub_release"], example.site.hub_namespace)]
    # one plain upgrade for the operators; two for z2jh (its first upgrade rolls hub and proxy once)
    results = rerun(example, releases, {"gpu-operator": 1, "network-operator": 1, "jupyterhub": 2})
    report = {chart: assert_second_run_changes_nothing(results[chart], chart) for chart in results}
    assert example.get("/apis/nvidia.com/v1/clusterpolicies/cluster-policy")["metadata"]["generation"] == policy_gen
    assert example.get("/apis/mellanox.com/v1alpha1/nicclusterpolicies/nic-cluster-policy")["metadata"]["generation"] == nic_gen
    example.notes["rerun"] = report
