"""TEST FAKES (not product code): a fake Kubernetes API server and a fake JupyterHub API.

* FakeKubernetes serves real-shaped Pod/Node JSON built from kubernetes_asyncio client models
  (V1Pod, V1Node ...) over HTTP on loopback, so the portal's real KubernetesClusterClient talks to
  it through a kubeconfig.  It can answer 500s (mode="error") or hang (mode="hang") to exercise
  timeouts.
* FakeHub implements the few JupyterHub REST endpoints the portal calls (server DELETE, OAuth token
  exchange, /user) and records the calls.  tests/integration/test_hub_oauth_real.py runs the same
  flows against a REAL JupyterHub (files/hub/.venv) instead.

Both run in their own thread + event loop so sync tests (schemathesis, uvicorn in a thread) and
async tests can use them alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import uuid

from aiohttp import web
from kubernetes_asyncio.client import (V1Container, V1Node, V1NodeStatus, V1ObjectMeta, V1Pod, V1PodCondition,
                                       V1PodSpec, V1PodStatus, V1ResourceRequirements)

TEST_PORT_RANGE = (18000, 18299)


def free_port(lo: int = TEST_PORT_RANGE[0], hi: int = TEST_PORT_RANGE[1]) -> int:
    import random

    for port in random.sample(range(lo, hi + 1), hi - lo + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the test range")


def to_json(obj):
    """Serialise kubernetes client models the way the API server does (camelCase keys)."""
    if obj is None:
        return None
    if isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, list):
        return [to_json(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_json(value) for key, value in obj.items()}
    return {obj.attribute_map[attr]: to_json(getattr(obj, attr)) for attr in obj.openapi_types
            if getattr(obj, attr) is not None}


def make_pod(name: str, user: str, *, namespace: str = "jhub", component: str = "singleuser-server",
             uid: str | None = None, node: str = "node-a", cpu: str = "1", memory: str = "2Gi", gpu: int = 0,
             server_name: str = "", started: dt.datetime | None = None, phase: str = "Running",
             image: str = "quay.io/jupyter/scipy-notebook:2024-10-07", profile: str | None = None) -> dict:
    started = started or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    requests = {"cpu": cpu, "memory": memory}
    limits = {"cpu": str(int(float(cpu.rstrip("m")) * (0.001 if cpu.endswith("m") else 1) * 2) or 1),
              "memory": memory}
    if gpu:
        requests["nvidia.com/gpu"] = str(gpu)
        limits["nvidia.com/gpu"] = str(gpu)
    labels = {"component": component, "app": "jupyterhub", "hub.jupyter.org/username": user}
    annotations = {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": server_name}
    if profile:
        annotations["labhub.io/profile"] = profile
    pod = V1Pod(
        api_version="v1", kind="Pod",
        metadata=V1ObjectMeta(name=name, namespace=namespace, uid=uid or str(uuid.uuid4()), labels=labels,
                              annotations=annotations, creation_timestamp=started),
        spec=V1PodSpec(node_name=node, containers=[
            V1Container(name="notebook", image=image,
                        resources=V1ResourceRequirements(requests=requests, limits=limits))]),
        status=V1PodStatus(phase=phase, start_time=started, pod_ip="10.1.0.7", conditions=[
            V1PodCondition(type="Ready", status="True" if phase == "Running" else "False")]))
    return to_json(pod)


def make_node(name: str, gpu_product: str | None = None) -> dict:
    labels = {"kubernetes.io/hostname": name}
    if gpu_product:
        labels["nvidia.com/gpu.product"] = gpu_product
    return to_json(V1Node(api_version="v1", kind="Node", metadata=V1ObjectMeta(name=name, labels=labels),
                          status=V1NodeStatus(capacity={"cpu": "32"})))


def _selector_matches(selector: str, labels: dict) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif labels.get(term) is None:
            return False
    return True


class _ThreadServer:
    """Runs an aiohttp app on loopback in a private thread/event loop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def build(self) -> web.Application:
        raise NotImplementedError

    def start(self):
        self._thread.start()

        async def _start():
            self._runner = web.AppRunner(self.build(), shutdown_timeout=2.0)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(_start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(15)
            except Exception:  # a handler still hanging: the thread is a daemon, drop it
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class FakeKubernetes(_ThreadServer):
    """TEST FAKE of the Kubernetes API (pods, nodes, pod deletion)."""

    TOKEN = "fake-kube-token"

    def __init__(self) -> None:
        super().__init__()
        self.pods: list[dict] = []
        self.nodes: list[dict] = []
        self.mode = "ok"  # ok | error | hang
        self.hang_seconds = 5.0
        self.nodes_forbidden = False
        self.deleted: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []

    def reset(self) -> None:
        self.pods, self.nodes, self.mode, self.nodes_forbidden = [], [], "ok", False
        self.deleted.clear()
        self.requests.clear()

    def write_kubeconfig(self, path) -> str:
        path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {self.url}
users:
- name: portal
  user:
    token: {self.TOKEN}
contexts:
- name: fake
  context:
    cluster: fake
    user: portal
    namespace: jhub
current-context: fake
""")
        return str(path)

    async def _gate(self, request: web.Request):
        self.requests.append((request.method, request.path_qs))
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        if self.mode == "error":
            return web.json_response({"kind": "Status", "code": 500, "reason": "InternalError"}, status=500)
        if self.mode == "hang":
            await asyncio.sleep(self.hang_seconds)  # longer than any client timeout used in the tests
        return None

    def build(self) -> web.Application:
        app = web.Application()

        async def list_pods(request: web.Request):
            if (gate := await self._gate(request)) is not None:
                return gate
            ns = request.match_info["ns"]
            selector = request.query.get("labelSelector", "")
            items = [p for p in self.pods if p["metadata"]["namespace"] == ns
                     and _selector_matches(selector, p["metadata"].get("labels") or {})]
            if "limit" in request.query:
                items = items[: int(request.query["limit"])]
            return web.json_response({"kind": "PodList", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": "4711"}, "items": items})

        async def list_nodes(request: web.Request):
            if (gate := await self._gate(request)) is not None:
                return gate
            if self.nodes_forbidden:
                return web.json_response({"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403)
            return web.json_response({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": self.nodes})

        async def delete_pod(request: web.Request):
            if (gate := await self._gate(request)) is not None:
                return gate
            ns, name = request.match_info["ns"], request.match_info["name"]
            for pod in self.pods:
                if pod["metadata"]["namespace"] == ns and pod["metadata"]["name"] == name:
                    self.pods.remove(pod)
                    self.deleted.append((ns, name))
                    return web.json_response(pod)
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)

        app.router.add_get("/api/v1/namespaces/{ns}/pods", list_pods)
        app.router.add_get("/api/v1/nodes", list_nodes)
        app.router.add_delete("/api/v1/namespaces/{ns}/pods/{name}", delete_pod)
        return app


class FakeHub(_ThreadServer):
    """TEST FAKE of the JupyterHub REST API used by the portal."""

    API_TOKEN = "hub-service-token-for-the-portal"

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[dict] = []
        self.delete_status = 202
        self.users: dict[str, dict] = {}
        self.codes: dict[str, str] = {}  # oauth code -> user name
        self.kube: FakeKubernetes | None = None  # when set, a 202 stop also removes the pod (like the hub would)

    def reset(self) -> None:
        self.deletes.clear()
        self.delete_status = 202
        self.users.clear()
        self.codes.clear()

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    def build(self) -> web.Application:
        app = web.Application()

        async def delete_server(request: web.Request):
            self.deletes.append({"path": request.path, "authorization": request.headers.get("Authorization")})
            if request.headers.get("Authorization") != f"token {self.API_TOKEN}":
                return web.json_response({"status": 403, "message": "forbidden"}, status=403)
            if self.delete_status == 202 and self.kube is not None:
                user = request.match_info["name"]
                self.kube.pods = [p for p in self.kube.pods
                                  if p["metadata"]["annotations"].get("hub.jupyter.org/username") != user]
            return web.Response(status=self.delete_status)

        async def token(request: web.Request):
            form = await request.post()
            if form.get("client_secret") != self.API_TOKEN or form.get("grant_type") != "authorization_code":
                return web.json_response({"error": "invalid_client"}, status=400)
            user = self.codes.pop(form.get("code", ""), None)
            if user is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            return web.json_response({"access_token": f"user-token-{user}", "token_type": "Bearer"})

        async def current_user(request: web.Request):
            auth = request.headers.get("Authorization", "")
            name = auth.removeprefix("token user-token-")
            if not auth.startswith("token user-token-") or name not in self.users:
                return web.json_response({"status": 403}, status=403)
            return web.json_response({"kind": "user", "name": name, **self.users[name]})

        app.router.add_delete("/hub/api/users/{name}/server", delete_server)
        app.router.add_delete("/hub/api/users/{name}/servers/{server}", delete_server)
        app.router.add_post("/hub/api/oauth2/token", token)
        app.router.add_get("/hub/api/user", current_user)
        return app
