"""Actual CPU and memory of the running servers (issue 13, item 5), from the resource metrics API.

The REAL API server of the session's control plane aggregates ``metrics.k8s.io`` (APIService,
Service, Endpoints, front-proxy certificate) to a SIMULATED metrics-server
(tests/harness/kube/metrics_api.py: no kubelet under KWOK could measure a pod; it reports the
usage each test sets). The portal reads it as the portal role's ServiceAccount, so the Role's
``pods.metrics.k8s.io`` rule and the real RBAC are what let it through.
"""

from __future__ import annotations

import pytest

from kube import HARNESS, _load_by_path, singleuser_pod
from testlib import AUTH, async_wait_for, pod_listing, running_app

GIB, MIB = 2**30, 2**20


@pytest.fixture
def metrics_server(kube_cluster):
    module = _load_by_path("labhub_metrics_api", HARNESS.with_name("metrics_api.py"))
    server = module.MetricsServer(kube_cluster.plane)
    yield server
    server.uninstall()
    server.stop()


async def _pods(client):
    return await pod_listing(client, "usage")


async def test_usage_per_server_through_the_real_aggregation_and_rbac(kube, metrics_server, settings_factory,
                                                                       tx_sessionmaker):
    kube.start(singleuser_pod("alice", cpu_limit="2", mem_limit="4Gi"), singleuser_pod("bob"))
    settings = settings_factory(usage_metrics_ttl=0.01)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (_app, client):
        # no metrics.k8s.io in the cluster yet: said so, pods listed as before
        usage, pods = await _pods(client)
        assert usage["state"] == "not served" and "metrics-server addon" in usage["detail"], usage
        assert pods["jupyter-alice"]["cpu_usage"] is None and pods["jupyter-alice"]["memory_usage"] is None
        page = await client.get("/pods", headers={**AUTH, "Accept": "text/html"})
        assert "Actual CPU and memory use not shown (not served)" in page.text

        metrics_server.install()
        # two containers (the notebook and a sidecar): the pod's use is their sum
        metrics_server.set_usage(kube.name, "jupyter-alice", {"notebook": ("250m", "512Mi"),
                                                              "sidecar": ("50000000n", "65536Ki")})
        usage, pods = await _pods(client)
        assert usage["state"] == "ok" and usage["read_at"], usage
        assert pods["jupyter-alice"]["cpu_usage"] == pytest.approx(0.3)
        assert pods["jupyter-alice"]["memory_usage"] == 512 * MIB + 64 * MIB
        assert pods["jupyter-bob"]["cpu_usage"] is None  # not measured (yet): null, not 0
        # the request reached the backend through the API server as the portal's ServiceAccount
        users = {user for user, path in metrics_server.requests if path.endswith(f"/namespaces/{kube.name}/pods")}
        assert users == {f"system:serviceaccount:{kube.identity.namespace}:{kube.identity.service_account}"}, users
        page = await client.get("/pods", headers={**AUTH, "Accept": "text/html"})
        assert "0.30 cores (15 % of 2)" in page.text and "0.56 GiB (14 % of 4)" in page.text
        assert "Actual CPU and memory use not shown" not in page.text

        # the backend goes away while its APIService stays: the API server answers 503
        metrics_server.stop()
        usage, pods = await _pods(client)
        assert usage["state"] == "unavailable" and "503" in usage["detail"], usage
        assert pods["jupyter-alice"]["cpu_usage"] is None and len(pods) == 2


async def test_a_role_without_the_metrics_rule_is_named_not_a_failure(kube, metrics_server, settings_factory,
                                                                      tx_sessionmaker):
    kube.start(singleuser_pod("carol"))
    metrics_server.install()
    metrics_server.set_usage(kube.name, "jupyter-carol", {"notebook": ("1", "1Gi")})
    roles = kube.admin.must("GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube.name}/roles",
                            what="list Roles")["items"]
    role = next(r for r in roles if any("metrics.k8s.io" in rule.get("apiGroups", []) for rule in r["rules"]))
    rules = [rule for rule in role["rules"] if "metrics.k8s.io" not in rule.get("apiGroups", [])]
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube.name}/roles/{role['metadata']['name']}"
    kube.admin.must("PATCH", path, {"rules": rules}, what="drop the metrics rule",
                    content_type="application/merge-patch+json")
    settings = settings_factory(usage_metrics_ttl=0.01)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (_app, client):
        seen = {}

        async def forbidden():
            seen["usage"], seen["pods"] = await _pods(client)
            return seen["usage"]["state"] == "forbidden"

        assert await async_wait_for(forbidden, 30), seen.get("usage")
        usage, pods = seen["usage"], seen["pods"]
        assert "HTTP 403 Forbidden" in usage["detail"] and "pods.metrics.k8s.io" in usage["detail"], usage
        assert pods["jupyter-carol"]["cpu_usage"] is None and pods["jupyter-carol"]["phase"] == "Running"
