"""The test control plane is a real Kubernetes: it refuses what a real API server refuses,
enforces RBAC on service accounts, and schedules pods onto KWOK nodes (issue 11)."""
from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from controlplane import ControlPlane

pytestmark = pytest.mark.kube


def ns(plane: ControlPlane) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    status, body = plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}], **spec}}


def wait_phase(plane: ControlPlane, namespace: str, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = plane.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        if status == 200 and body["status"].get("phase") == phase:
            return body
        time.sleep(0.3)
    raise AssertionError(f"pod {namespace}/{name} not {phase}: {body.get('status')}")


def test_invalid_objects_are_refused_with_422(control_plane: ControlPlane) -> None:
    namespace = ns(control_plane)
    base = f"/api/v1/namespaces/{namespace}/pods"
    no_containers = pod("empty")
    no_containers["spec"]["containers"] = []
    bad_label = pod("badlabel")
    bad_label["metadata"]["labels"] = {"bad key!": "x"}
    for obj in (no_containers, bad_label, pod("UPPER")):
        status, body = control_plane.request("POST", base, obj)
        assert status == 422, body
        assert body["reason"] == "Invalid"


def test_stale_resource_version_is_a_409_conflict(control_plane: ControlPlane) -> None:
    namespace = ns(control_plane)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, created = control_plane.request("POST", path, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert status == 201
    stale = dict(created)
    created["data"] = {"a": "2"}
    assert control_plane.request("PUT", f"{path}/cm", created)[0] == 200
    stale["data"] = {"a": "3"}
    status, body = control_plane.request("PUT", f"{path}/cm", stale)
    assert status == 409, body
    assert body["reason"] == "Conflict"


def test_immutable_field_and_duplicate_node_port_are_refused(control_plane: ControlPlane) -> None:
    namespace = ns(control_plane)
    svc = {"metadata": {"name": "a"}, "spec": {"type": "NodePort", "selector": {"app": "a"},
                                               "ports": [{"port": 80, "nodePort": 30999}]}}
    assert control_plane.request("POST", f"/api/v1/namespaces/{namespace}/services", svc)[0] == 201
    svc["metadata"]["name"] = "b"
    status, body = control_plane.request("POST", f"/api/v1/namespaces/{namespace}/services", svc)
    assert status == 422 and "provided port is already allocated" in body["message"], body
    status, body = control_plane.request(
        "PATCH", f"/api/v1/namespaces/{namespace}/services/a", {"spec": {"clusterIP": "10.152.183.99"}},
        content_type="application/merge-patch+json")
    assert status == 422 and "may not change once set" in body["message"], body


def test_service_account_is_denied_outside_its_role(control_plane: ControlPlane) -> None:
    namespace = ns(control_plane)
    api = f"/api/v1/namespaces/{namespace}"
    assert control_plane.request("POST", f"{api}/serviceaccounts", {"metadata": {"name": "reader"}})[0] == 201
    role = {"metadata": {"name": "pods-read"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    binding = {"metadata": {"name": "reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods-read"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]}
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    assert control_plane.request("POST", f"{rbac}/roles", role)[0] == 201
    assert control_plane.request("POST", f"{rbac}/rolebindings", binding)[0] == 201
    # A token from the TokenRequest API, signed by the API server's service-account key.
    status, tr = control_plane.request("POST", f"{api}/serviceaccounts/reader/token",
                                       {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                        "spec": {"expirationSeconds": 600}})
    assert status == 201, tr
    token = tr["status"]["token"]
    assert control_plane.request_as(token, "GET", f"{api}/pods")[0] == 200
    assert control_plane.request_as(token, "DELETE", f"{api}/pods/anything")[0] == 403
    assert control_plane.request_as(token, "GET", f"{api}/secrets")[0] == 403
    assert control_plane.request_as(token, "GET", "/api/v1/namespaces/kube-system/pods")[0] == 403
    assert control_plane.request_as("not-a-token", "GET", f"{api}/pods")[0] == 401


def test_pods_are_scheduled_by_resources_onto_kwok_nodes(control_plane: ControlPlane) -> None:
    node = f"gpu-{uuid.uuid4().hex[:6]}"
    control_plane.add_node(node, extended={"nvidia.com/gpu": "2"},
                           labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    control_plane.wait_node_ready(node)
    namespace = ns(control_plane)
    api = f"/api/v1/namespaces/{namespace}/pods"
    for i in range(3):
        spec = pod(f"gpu{i}", nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
        spec["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        assert control_plane.request("POST", api, spec)[0] == 201
    running = [wait_phase(control_plane, namespace, f"gpu{i}", "Running") for i in range(2)]
    assert {p["spec"]["nodeName"] for p in running} == {node}
    # Two GPUs on the only matching node: the scheduler leaves the third pod Pending.
    time.sleep(2)
    status, third = control_plane.request("GET", f"{api}/gpu2")
    assert third["status"]["phase"] == "Pending"
    reasons = [c.get("reason") for c in third["status"].get("conditions", [])]
    assert "Unschedulable" in reasons, third["status"]


def test_controllers_run_deployments_and_jobs(control_plane: ControlPlane) -> None:
    node = f"cpu-{uuid.uuid4().hex[:6]}"
    control_plane.add_node(node)
    control_plane.wait_node_ready(node)
    namespace = ns(control_plane)
    job = {"metadata": {"name": "once"}, "spec": {"backoffLimit": 0, "template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1"}]}}}}
    assert control_plane.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)[0] == 201
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = control_plane.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/once")
        if body.get("status", {}).get("succeeded") == 1:
            break
        time.sleep(0.5)
    assert body["status"].get("succeeded") == 1, body["status"]
