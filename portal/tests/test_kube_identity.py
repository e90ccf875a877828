"""The portal's Kubernetes identity, as the portal role makes it, against the real API server.

The session's cluster applied the role's objects (rendered by Ansible from roles/portal with its
defaults) and wrote the role's kubeconfig with the token the token controller filled in. Here: that
kubeconfig authenticates as the role's ServiceAccount; it lists and deletes pods where the Role is
bound and gets 403 everywhere else and for every verb the Role lacks; the portal turns 403 and 401
into clear errors (never a 500, never the token).
"""

from __future__ import annotations

import base64
import os
import stat

import pytest
import yaml

from kube import A100, H100, NODES, KubeCluster, singleuser_pod, wait_until
from labhub_portal.cluster import ClusterError, KubernetesClusterClient, PodNotFound
from testlib import AUTH, running_app

ROLE_LABELS = {"app.kubernetes.io/name": "labhub-portal", "app.kubernetes.io/component": "usage-portal",
               "app.kubernetes.io/part-of": "labhub", "app.kubernetes.io/managed-by": "labhub.platform"}


def test_the_roles_kubeconfig_authenticates_as_the_roles_service_account(kube_cluster: KubeCluster):
    portal = kube_cluster.portal
    assert (portal.namespace, portal.service_account) == ("jhub", "labhub-portal")  # the role's defaults
    assert stat.S_IMODE(os.stat(portal.kubeconfig).st_mode) == 0o600
    text = portal.kubeconfig.read_text()
    assert text.startswith("#\n# Ansible managed\n#\n")  # kubeconfig.j2, rendered by Ansible
    config = yaml.safe_load(text)
    assert config["current-context"] == "labhub-portal"
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == kube_cluster.plane.server  # from the admin kubeconfig, as the role reads it
    ca = (kube_cluster.plane.pki / "ca.crt").read_bytes()
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == ca  # the token Secret's ca.crt
    (user,) = config["users"]
    assert user["user"]["token"] == portal.token and set(user["user"]) == {"token"}
    # the API server says who this is
    client = kube_cluster.client_for(portal)
    status, review = client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                     {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert status == 201, review
    info = review["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:jhub:labhub-portal"
    assert {"system:serviceaccounts", "system:serviceaccounts:jhub", "system:authenticated"} <= set(info["groups"])
    # the role's objects, as the role labels them, with exactly the role's rules
    admin = kube_cluster.admin
    role = admin.must("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/jhub/roles/labhub-portal", what="read Role")
    assert role["metadata"]["labels"] == ROLE_LABELS
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
                             {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]}]
    nodes = admin.must("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/labhub-portal-jhub-node-reader",
                       what="read ClusterRole")
    assert nodes["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]


async def test_the_portal_lists_and_deletes_pods_as_its_service_account(kube, kube_cluster):
    running = kube.start(singleuser_pod("alice", gpus=1, gpu_product=H100), singleuser_pod("bob"))
    cluster = KubernetesClusterClient(kube.name, kubeconfig=kube.kubeconfig, timeout=10)
    try:
        pods = {p["metadata"]["name"]: p for p in await cluster.list_singleuser_pods()}
        assert set(pods) == {"jupyter-alice", "jupyter-bob"}
        assert pods["jupyter-alice"]["metadata"]["uid"] == running["jupyter-alice"]["metadata"]["uid"]
        assert pods["jupyter-alice"]["spec"]["nodeName"] == "gpu-h100-0"
        labels = await cluster.node_labels()  # the node reader ClusterRole
        assert set(labels) == {n.name for n in NODES}
        assert labels["gpu-h100-0"]["nvidia.com/gpu.product"] == H100
        assert labels["gpu-a100-0"]["nvidia.com/gpu.product"] == A100
        await cluster.delete_pod("jupyter-bob")
        wait_until(lambda: kube.pod("jupyter-bob") is None, 30, "remove pod 'jupyter-bob'")
        with pytest.raises(PodNotFound):
            await cluster.delete_pod("jupyter-bob")
        assert [p["metadata"]["name"] for p in await cluster.list_singleuser_pods()] == ["jupyter-alice"]
    finally:
        await cluster.close()


async def test_the_service_account_is_denied_outside_its_namespace_and_role(kube, kube_cluster):
    portal = kube_cluster.portal
    other = kube.other_namespace()
    victim = kube.create_pod(singleuser_pod("mallory"), namespace=other)
    kube.start(singleuser_pod("alice"))
    client = kube_cluster.client_for(portal)
    own = f"/api/v1/namespaces/{kube.name}"
    allowed = [("GET", f"{own}/pods"), ("GET", f"{own}/pods/jupyter-alice"), ("GET", "/api/v1/nodes")]
    for method, path in allowed:
        assert client.request(method, path)[0] == 200, (method, path)
    denied = [
        ("GET", f"/api/v1/namespaces/{other}/pods"),                # a namespace without the Role
        ("DELETE", f"/api/v1/namespaces/{other}/pods/{victim}"),
        ("GET", "/api/v1/namespaces/kube-system/pods"),
        ("GET", "/api/v1/pods"),                                      # all namespaces
        ("POST", f"{own}/pods"),                                      # verbs the Role lacks
        ("PATCH", f"{own}/pods/jupyter-alice"),
        ("DELETE", f"{own}/pods"),                                    # deletecollection
        ("GET", f"{own}/secrets"),                                    # resources the Role lacks
        ("GET", f"/api/v1/namespaces/{portal.namespace}/secrets"),    # not even its own token Secret
        ("GET", f"{own}/configmaps"),
        ("DELETE", "/api/v1/nodes/cpu-0"),                            # the node reader only reads
        ("PATCH", "/api/v1/nodes/cpu-0"),
    ]
    for method, path in denied:
        body = {"metadata": {"labels": {"x": "y"}}} if method in ("POST", "PATCH") else None
        status, answer = client.request(method, path, body, content_type="application/merge-patch+json"
                                        if method == "PATCH" else "application/json")
        assert status == 403, (method, path, status, answer)
        assert answer["reason"] == "Forbidden" and portal.username in answer["message"], answer
    assert kube.pod(victim, other) is not None  # still there

    # the portal's own client says so clearly, naming the namespace and the missing permission
    cluster = KubernetesClusterClient(other, kubeconfig=kube.kubeconfig, timeout=10)
    try:
        with pytest.raises(ClusterError) as listing:
            await cluster.list_singleuser_pods()
        with pytest.raises(ClusterError) as deletion:
            await cluster.delete_pod(victim)
    finally:
        await cluster.close()
    assert listing.value.status == 403 and deletion.value.status == 403
    assert str(listing.value).startswith(f"Failed to list pods of namespace '{other}' due to: HTTP 403 Forbidden: ")
    assert f'cannot list resource "pods" in API group "" in the namespace "{other}"' in str(listing.value)
    assert str(deletion.value).startswith(f"Failed to delete pod '{other}/{victim}' due to: HTTP 403 Forbidden: ")
    assert portal.token not in str(listing.value) + str(deletion.value)


async def test_forbidden_is_a_clear_503_not_a_500(kube, settings_factory, tx_sessionmaker):
    other = kube.other_namespace()  # the portal's Role is not bound there
    kube.create_pod(singleuser_pod("alice"), namespace=other)
    settings = settings_factory(hub_namespace=other)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, client):
        pods = await client.get("/api/pods", headers=AUTH)
        assert pods.status_code == 503, pods.text
        detail = pods.json()["detail"]
        assert detail.startswith(f"cluster unavailable: Failed to list pods of namespace '{other}' due to: "
                                 "HTTP 403 Forbidden: pods is forbidden: User "
                                 '"system:serviceaccount:jhub:labhub-portal" cannot list resource "pods"'), detail
        assert "the portal role's Role/ClusterRole" in detail
        stop = await client.post("/api/pods/stop", json={"pods": ["jupyter-alice"]}, headers=AUTH)
        assert stop.status_code == 503 and "HTTP 403 Forbidden" in stop.json()["detail"]
        status = await app.state.recorder.run_once()
        assert status["state"] == "error" and "HTTP 403 Forbidden" in status["last_error"], status
        readyz = await client.get("/readyz")  # unauthenticated: the status only, not the API's message
        assert readyz.status_code == 503 and readyz.json()["checks"]["cluster"] == "error: ClusterError (HTTP 403)"


async def test_revoked_token_is_a_clear_401_error_without_the_token(kube, kube_cluster, settings_factory,
                                                                      tx_sessionmaker):
    """The role's identity for this namespace alone; deleting its token Secret revokes the token."""
    kube.start(singleuser_pod("alice"))
    identity = kube.own_identity(check_access=False)  # never used before the revocation (no auth cache)
    secret = f"/api/v1/namespaces/{kube.name}/secrets/{identity.service_account}-token"
    kube.admin.must("DELETE", secret, what="delete the token Secret")
    wait_until(lambda: kube.admin.request("GET", secret)[0] == 404, 30, "delete the token Secret")
    client = kube_cluster.client_for(identity)
    wait_until(lambda: client.request("GET", f"/api/v1/namespaces/{kube.name}/pods")[0] == 401, 30,
               "revoke the token")
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, api):
        assert app.state.settings.kubeconfig == str(identity.kubeconfig)
        pods = await api.get("/api/pods", headers=AUTH)
        assert pods.status_code == 503, pods.text
        detail = pods.json()["detail"]
        assert detail.startswith(f"cluster unavailable: Failed to list pods of namespace '{kube.name}' due to: "
                                 "HTTP 401 Unauthorized"), detail
        assert "ServiceAccount token revoked or expired?" in detail
        status = await app.state.recorder.run_once()
        assert status["state"] == "error" and "HTTP 401 Unauthorized" in status["last_error"]
        shown = detail + str(status) + (await api.get("/api/status", headers=AUTH)).text
        assert identity.token not in shown and identity.token[:40] not in shown
