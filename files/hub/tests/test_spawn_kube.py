"""A real JupyterHub running LabhubKubeSpawner against the REAL test control plane (issue 11).

The control plane is the harness's (tests/harness/kube/controlplane.py, imported by path: etcd,
kube-apiserver with TLS, RBAC and admission, controller-manager, scheduler; KWOK plays the
kubelets). Its nodes stand for a CPU node, a GPU node (``nvidia.com/gpu`` as the device plugin
reports it, GPU Feature Discovery's labels) and a cordoned node. The hub reaches the API as the
ServiceAccount ``hub`` holding the rules z2jh 4.4.0 gives its hub (templates/hub/rbac.yaml) and
Labhub's node reader (roles/jupyterhub/templates/50-clusterrole-nodes.yaml.j2), with a token
from the real TokenRequest API, so a rule Labhub's spawner needs and the chart does not grant
fails here.

What runs for real: the spawn form's node capacities (KubernetesCapacitySource listing the
nodes), KubeSpawner creating the pod, the real scheduler placing a GPU profile's pod on the GPU
node, KWOK setting it Running; KubeSpawner deleting it when the server is stopped. No notebook
server runs under KWOK.
"""

import importlib.util
import json
import re
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import form_login, xsrf_of
from labhub_hub.passwords import hash_password

REPO = Path(__file__).resolve().parents[3]
HARNESS = REPO / "tests" / "harness" / "kube" / "controlplane.py"

#: z2jh 4.4.0 templates/hub/rbac.yaml: the hub's Role in its namespace.
HUB_ROLE_RULES = [
    {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
     "verbs": ["get", "watch", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]
#: roles/jupyterhub/templates/50-clusterrole-nodes.yaml.j2: reading nodes for the spawn form.
NODE_READER_RULES = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]

CONFIG = {
    "auth": {
        "modes": ["local_groups"],
        "local_groups": {
            "groups": {"gpu-team": {"members": ["octo"], "password_hash": hash_password("gpu-pw", iterations=2000)}}
        },
    },
    "spawn": {
        "default_image": "quay.io/jupyter/base-notebook:2025-01-01",
        "gpu": {"enabled": True},
        "profiles": [
            {"slug": "small", "display_name": "Small CPU", "cpu_limit": 2, "mem_limit": "4Gi", "max_session_hours": 8},
            {"slug": "gpu", "display_name": "One GPU", "gpu": 1, "cpu_limit": 4, "mem_limit": "16Gi"},
        ],
        "dynamic": {"enabled": True, "capacity_source": "kubernetes", "max_cpu": 48, "max_gpu": 4,
                    "images": ["quay.io/jupyter/base-notebook:2025-01-01"]},
        "teams": {"gpu-team": ["small", "gpu", "custom"]},
    },
}


def hub_config(namespace):
    """What z2jh's jupyterhub_config.py sets that these tests need: the spawner's namespace (z2jh:
    ``c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", "default")``). The HTTP wait for a
    server that never comes (no notebook runs under KWOK) is cut to 10 s for the test."""
    return f"c.KubeSpawner.namespace = {namespace!r}\nc.KubeSpawner.http_timeout = 10\n"


def _load_harness():
    spec = importlib.util.spec_from_file_location("labhub_controlplane", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _ok(status, body, what):
    assert status in (200, 201), f"Failed to create {what} due to: {status} {body}"
    return body


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    """The control plane with three KWOK nodes, namespace ``hub`` and the hub's identity; yields
    (plane, namespace, kubeconfig of the hub's ServiceAccount)."""
    harness = _load_harness()
    plane = harness.ControlPlane(tmp_path_factory.mktemp("kube") / "plane")
    plane.start()
    try:
        plane.add_node("cpu-1", cpu="8", memory="32Gi")
        plane.add_node("gpu-1", cpu="64", memory="512Gi", extended={"nvidia.com/gpu": "8"},
                       labels={"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                               "nvidia.com/gpu.count": "8"})
        plane.add_node("cpu-cordoned", cpu="96", memory="768Gi")
        status, body = plane.request("PATCH", "/api/v1/nodes/cpu-cordoned", {"spec": {"unschedulable": True}},
                                     content_type="application/merge-patch+json")
        _ok(status, body, "cordon of node 'cpu-cordoned'")
        for name in ("cpu-1", "gpu-1", "cpu-cordoned"):
            plane.wait_node_ready(name)
        ns = "hub"
        _ok(*plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}), "namespace 'hub'")
        plane.wait_service_accounts()
        _ok(*plane.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "hub"}}),
            "ServiceAccount 'hub'")
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        subject = [{"kind": "ServiceAccount", "name": "hub", "namespace": ns}]
        _ok(*plane.request("POST", f"{rbac}/namespaces/{ns}/roles", {"metadata": {"name": "hub"}, "rules": HUB_ROLE_RULES}),
            "Role 'hub'")
        _ok(*plane.request("POST", f"{rbac}/namespaces/{ns}/rolebindings", {
            "metadata": {"name": "hub"}, "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"}}), "RoleBinding 'hub'")
        _ok(*plane.request("POST", f"{rbac}/clusterroles", {"metadata": {"name": "labhub-hub-nodes"}, "rules": NODE_READER_RULES}),
            "ClusterRole 'labhub-hub-nodes'")
        _ok(*plane.request("POST", f"{rbac}/clusterrolebindings", {
            "metadata": {"name": "labhub-hub-nodes"}, "subjects": subject,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "labhub-hub-nodes"}}),
            "ClusterRoleBinding 'labhub-hub-nodes'")
        token = _ok(*plane.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/hub/token",
                                   {"spec": {"expirationSeconds": 3600}}), "token of ServiceAccount 'hub'")["status"]["token"]
        kubeconfig = plane.workdir / "hub.kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "hub",
            "clusters": [{"name": "test", "cluster": {"server": plane.server, "certificate-authority": str(plane.pki / "ca.crt")}}],
            "users": [{"name": "hub", "user": {"token": token}}],
            "contexts": [{"name": "hub", "context": {"cluster": "test", "user": "hub", "namespace": ns}}],
        }))
        kubeconfig.chmod(0o600)
        yield plane, ns, kubeconfig
    finally:
        plane.stop()


def _pods(plane, ns):
    status, body = plane.request("GET", f"/api/v1/namespaces/{ns}/pods")
    assert status == 200, body
    return body["items"]


def _wait(what, check, timeout, hub=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    log = ("; the hub's log ends:\n" + hub.log_text()[-6000:]) if hub is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{log}")


def test_spawn_form_lists_real_nodes_and_a_gpu_pod_is_scheduled_on_the_gpu_node(start_hub, kube):
    plane, ns, kubeconfig = kube
    hub = start_hub(CONFIG, with_spawner=True, env={"KUBECONFIG": str(kubeconfig)}, extra_config=hub_config(ns))
    octo = hub.client()
    assert form_login(octo, "/hub/local_groups/login", "octo", "gpu-pw").status_code == 302

    page = octo.get("/hub/spawn")
    assert page.status_code == 200, page.text
    nodes = dict(re.findall(r'<option value="([^"]+)" data-max-cpu="(\d+)"', page.text))
    # allocatable of the schedulable nodes as the API server reports them; the cordoned node is
    # left out; gpu-1's 64 CPUs capped at max_cpu 48 and its 8 GPUs at max_gpu 4
    assert nodes == {"cpu-1": "8", "gpu-1": "48"}, page.text
    assert "gpu-1 (up to 48 CPU, 512 GiB, 4 GPU)" in page.text and "cpu-1 (up to 8 CPU, 32 GiB, 0 GPU)" in page.text

    response = octo.post("/hub/spawn", data={"profile": "gpu", "session_hours": "1", "_xsrf": xsrf_of(octo)})
    assert response.status_code in (200, 302), response.text

    def running_pod():
        for pod in _pods(plane, ns):
            if pod["metadata"].get("labels", {}).get("hub.jupyter.org/username") == "octo" \
                    and pod["status"].get("phase") == "Running":
                return pod
        return None

    pod = _wait("octo's pod Running (scheduled by the real scheduler, started by KWOK)", running_pod, 90, hub)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeName"] == "gpu-1"  # the only node with a free nvidia.com/gpu
    assert pod["spec"]["activeDeadlineSeconds"] == 3600
    # No notebook server runs under KWOK: the spawn either ends in the hub's HTTP timeout (the
    # hub then stops the spawner) or, where something answers on the pod's address, is taken as
    # up; either way, once it is no longer pending, stopping octo's server (as the portal's Stop
    # does, through the hub API) makes KubeSpawner delete the pod through the same identity.
    _wait("octo's spawn no longer pending", lambda: hub.api("GET", "/users/octo").json()["pending"] is None, 60, hub)
    if hub.api("GET", "/users/octo").json()["server"] is not None:
        assert hub.api("DELETE", "/users/octo/server").status_code in (202, 204)
    _wait("octo's pod deleted", lambda: not [
        p for p in _pods(plane, ns) if p["metadata"].get("labels", {}).get("hub.jupyter.org/username") == "octo"], 90, hub)
    _wait("octo's server stopped", lambda: hub.api("GET", "/users/octo").json()["server"] is None, 30, hub)
    # every API call the spawner and the capacity source made was allowed by the chart's rules
    assert "Forbidden" not in hub.log_text(), hub.log_text()[-4000:]


def test_a_profile_no_node_can_hold_fails_the_spawn_with_the_scheduler_reason(start_hub, kube):
    plane, ns, kubeconfig = kube
    config = json.loads(json.dumps(CONFIG))
    config["spawn"]["profiles"][1]["gpu"] = 16  # more GPUs than any node has
    config["spawn"]["dynamic"]["enabled"] = False
    config["spawn"]["teams"] = {"gpu-team": ["small", "gpu"]}
    hub = start_hub(config, with_spawner=True, name=f"hub-{uuid.uuid4().hex[:6]}",
                    env={"KUBECONFIG": str(kubeconfig)}, extra_config=hub_config(ns))
    octo = hub.client()
    assert form_login(octo, "/hub/local_groups/login", "octo", "gpu-pw").status_code == 302
    octo.get("/hub/spawn")
    octo.post("/hub/spawn", data={"profile": "gpu", "session_hours": "1", "_xsrf": xsrf_of(octo)})

    def pending_unschedulable():
        for pod in _pods(plane, ns):
            for cond in pod["status"].get("conditions", []):
                if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return cond["message"]
        return None

    message = _wait("the real scheduler refusing octo's pod", pending_unschedulable, 60, hub)
    assert "Insufficient nvidia.com/gpu" in message, message
    # what octo's spawn-pending page shows: KubeSpawner relays the pod's events (the scheduler's
    # FailedScheduling among them) to the hub's progress stream
    assert "Insufficient nvidia.com/gpu" in progress_until(hub, "octo", "Insufficient nvidia.com/gpu", 60)
    # the hub gives up at the spawner's start timeout and KubeSpawner deletes the pod
    _wait("octo's pod deleted after the start timeout", lambda: not _pods(plane, ns), 150, hub)
    _wait("octo's spawn over", lambda: hub.api("GET", "/users/octo").json()["pending"] is None, 30, hub)
    assert hub.api("GET", "/users/octo").json()["server"] is None
    assert "octo's server failed to start" in hub.log_text()


def progress_until(hub, user, text, timeout):
    """The first message of the user's spawn progress (the hub's event stream, the one the
    spawn-pending page reads) that contains ``text``."""
    seen = []
    with httpx.stream("GET", f"{hub.url}/hub/api/users/{user}/server/progress",
                      headers={"Authorization": f"token {hub.token}"}, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:]).get("message", "")
                seen.append(message)
                if text in message:
                    return message
    raise AssertionError(f"the progress stream ended without {text!r}: {seen}")
