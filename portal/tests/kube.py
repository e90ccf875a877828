"""The REAL Kubernetes control plane under the portal tests (issue 11), and what the tests put in it.

* :class:`KubeCluster` starts ONE control plane per test session (``tests/harness/kube/controlplane.py``,
  imported by path: etcd, kube-apiserver with TLS/RBAC/admission, controller-manager, scheduler,
  KWOK playing the kubelets), adds KWOK nodes with GPU capacity and the labels GPU Feature Discovery
  and the ``gpu_operator`` role put on GPU nodes, and gives the portal its production identity:
  the ``portal`` role's objects (ServiceAccount, token Secret, Role, RoleBinding, node-reader
  ClusterRole/Binding) rendered with the role's defaults by Ansible's own template code
  (``render_portal_role.py`` in the collection's venv) and applied, the token filled in by the
  real token controller, and the kubeconfig rendered from the role's ``kubeconfig.j2``.
* :class:`Namespace`: each test gets its own hub namespace (unique name) in which the portal's
  ServiceAccount holds the role's Role (the rendered Role/RoleBinding, put in that namespace), so
  tests never see each other's pods. User pods are real Pod objects shaped like KubeSpawner's
  (:func:`singleuser_pod`), scheduled by the real scheduler and set Running by KWOK.
* :class:`FaultProxy`: a TEST FAULT INJECTOR, a TLS-terminating HTTP proxy in front of the REAL API
  server: it forwards every request and returns the real answer (``ok``), answers 500 itself
  (``error``), or holds the real answer back (``hang``) so the portal's timeouts fire.

Failures raise :class:`KubeTestError` with "Failed to <verb> <thing> '<name>' due to: <reason>";
tokens never appear in messages or reprs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import glob
import http.client
import importlib.util
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from servers import ThreadServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HARNESS = REPO / "tests" / "harness" / "kube" / "controlplane.py"
COLLECTION_PYTHON = Path(os.environ.get("LABHUB_COLLECTION_PYTHON", REPO / ".venv" / "bin" / "python"))
HUB_SITE_PACKAGES = REPO / "files" / "hub" / ".venv" / "lib"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


class KubeTestError(RuntimeError):
    """The test cluster could not be set up or did not reach the expected state."""


def _load_by_path(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise KubeTestError(f"Failed to load module '{name}' due to: no loader for {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def controlplane() -> ModuleType:
    """tests/harness/kube/controlplane.py (standard library + openssl only), loaded by path."""
    return _load_by_path("labhub_controlplane", HARNESS)


def _kubespawner_slugs() -> ModuleType:
    """KubeSpawner's own name/label escaping (kubespawner/slugs.py of the hub's venv, KubeSpawner
    7.0.0 as z2jh 4.4.0 ships it), loaded by path with the ``escapism`` module it imports."""
    found = sorted(glob.glob(str(HUB_SITE_PACKAGES / "python3*" / "site-packages" / "kubespawner" / "slugs.py")))
    if not found:
        raise KubeTestError(f"Failed to load KubeSpawner's slug rules due to: not found under {HUB_SITE_PACKAGES} "
                            "(run `make -C files/hub venv`; `make -C portal test` does)")
    site = Path(found[-1]).parents[1]
    _load_by_path("escapism", site / "escapism.py")
    return _load_by_path("labhub_kubespawner_slugs", Path(found[-1]))


# ------------------------------------------------------------------------------------------------
# a small client (standard library, keep-alive per thread)
class KubeClient:
    """HTTPS to the API server as the cluster admin (client certificate) or with a bearer token."""

    def __init__(self, server: str, ca: Path, *, cert: tuple[Path, Path] | None = None, token: str | None = None):
        parts = urlsplit(server)
        self.server = server
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 443
        self._ctx = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            self._ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self._token = token
        self._local = threading.local()

    def __repr__(self) -> str:  # never the token
        return f"KubeClient({self.server!r}, {'token' if self._token else 'client certificate'})"

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPSConnection(self._host, self._port, context=self._ctx,
                                                                      timeout=30)
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def must(self, method: str, path: str, body: Any = None, *, what: str, ok: Iterable[int] = (200, 201),
             content_type: str = "application/json") -> Any:
        """One request that must succeed; else KubeTestError("Failed to <what> due to: ...")."""
        status, data = self.request(method, path, body, content_type)
        if status not in tuple(ok):
            raise KubeTestError(f"Failed to {what} due to: HTTP {status} {_status_message(data)}")
        return data


def _status_message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or body)[:500]
    return str(body)[:500]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; KubeTestError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise KubeTestError(f"Failed to {what} due to: not reached within {timeout} s (last: {str(last)[:300]})")


# ------------------------------------------------------------------------------------------------
# nodes: KWOK nodes shaped like Labhub's GPU and CPU nodes
@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str
    memory: str
    gpus: int = 0
    product: str | None = None  # GPU Feature Discovery's nvidia.com/gpu.product
    family: str | None = None
    gpu_memory_mib: int | None = None
    compute: tuple[int, int] | None = None
    replicas: int = 1  # device plugin time-slicing: each GPU advertised this many times

    @property
    def gpu_capacity(self) -> int:
        return self.gpus * self.replicas

    def labels(self) -> dict[str, str]:
        if not self.gpus:
            return {"labhub.io/gpu": "false", "labhub.io/gpu.count": "0",
                    "nvidia.com/gpu.deploy.operands": "false"}
        assert self.product and self.family and self.gpu_memory_mib and self.compute
        return {
            # roles/gpu_operator (README "Node labels"): Labhub's record of the hardware and the operator's switches
            "labhub.io/gpu": "true", "labhub.io/gpu.count": str(self.gpus), "labhub.io/gpu.product": self.product,
            "nvidia.com/gpu.deploy.operands": "true", "nvidia.com/gpu.deploy.driver": "true",
            "nvidia.com/mig.config": "all-disabled",
            # GPU Feature Discovery (NVIDIA k8s-device-plugin v0.18, gpu-feature-discovery labels) and the
            # operator's NFD rule (gpu.present); driver 535.129.03 as in the dgx-h100 hardware fixture
            "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": self.product,
            "nvidia.com/gpu.count": str(self.gpus), "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
            "nvidia.com/gpu.family": self.family, "nvidia.com/gpu.compute.major": str(self.compute[0]),
            "nvidia.com/gpu.compute.minor": str(self.compute[1]), "nvidia.com/gpu.replicas": str(self.replicas),
            "nvidia.com/gpu.sharing-strategy": "time-slicing" if self.replicas > 1 else "none",
            "nvidia.com/mig.capable": "true",
            "nvidia.com/mig.strategy": "single", "nvidia.com/cuda.driver.major": "535",
            "nvidia.com/cuda.driver.minor": "129", "nvidia.com/cuda.driver.rev": "03",
        }


#: The KWOK nodes of the session: an A100 node, an H100 node (tests/unit/fixtures/hardware/dgx-h100:
#: 224 threads, 2 TB, 8x "NVIDIA H100 80GB HBM3" with 81559 MiB) and a CPU node.
NODES = (
    NodeSpec("gpu-a100-0", cpu="128", memory="1Ti", gpus=8, product="NVIDIA-A100-SXM4-80GB", family="ampere",
             gpu_memory_mib=81920, compute=(8, 0)),
    NodeSpec("gpu-h100-0", cpu="224", memory="2Ti", gpus=8, product="NVIDIA-H100-80GB-HBM3", family="hopper",
             gpu_memory_mib=81559, compute=(9, 0)),
    NodeSpec("cpu-0", cpu="64", memory="256Gi"),
)
#: GPU nodes carry this taint; GPU profiles tolerate it (files/hub/tests/test_profiles.py: the gpu profile).
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
A100 = NODES[0].product
H100 = NODES[1].product


# ------------------------------------------------------------------------------------------------
# single-user pods as KubeSpawner makes them
RELEASE = "labhub"  # roles/jupyterhub: jupyterhub_release_name
CHART = "jupyterhub-4.4.0"
KUBESPAWNER_VERSION = "7.0.0"
JUPYTERHUB_VERSION = "5.5.0"
DEFAULT_IMAGE = "quay.io/jupyter/scipy-notebook:2024-10-07"


def singleuser_pod(user: str, server_name: str = "", *, cpu_guarantee: str = "500m", cpu_limit: str = "1",
                   mem_guarantee: str = "1Gi", mem_limit: str = "2Gi", gpus: int = 0, gpu_product: str | None = None,
                   image: str = DEFAULT_IMAGE, profile: str | None = None, component: str = "singleuser-server",
                   extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A single-user pod as KubeSpawner 7.0.0 builds it under z2jh 4.4.0 with Labhub's profiles.

    Labels: KubeSpawner ``_build_pod_labels`` (spawner.py: escaped ``hub.jupyter.org/username`` and
    ``servername``, ``component``/``app.kubernetes.io/component``) plus z2jh's ``common_labels``
    (the chart's files/hub/jupyterhub_config.py, ../shared/reference/charts/jupyterhub-4.4.0.tgz: app,
    release, chart, ``app.kubernetes.io/*``) and the chart's
    default ``singleuser.extraLabels`` (``hub.jupyter.org/network-access-hub``). Annotations:
    ``_build_common_annotations`` (raw user and server names, versions). Name: the default
    ``pod_name_template`` ``jupyter-{user_server}``. Resources: ``cpu/mem_guarantee`` -> requests,
    ``cpu/mem_limit`` -> limits; a GPU profile sets ``nvidia.com/gpu`` as both (files/hub
    labhub_hub/profiles.py ``extra_resource_limits``/``guarantees``), a node selector on the GPU model
    and the GPU toleration. ``profile`` becomes the ``labhub.io/profile`` annotation the portal reads.
    Not scheduled by z2jh's user-scheduler (a kube-scheduler Deployment in a real cluster) but by the
    control plane's kube-scheduler.
    """
    slugs = _kubespawner_slugs()
    user_server = slugs.safe_slug(user, max_length=48)
    if server_name:
        user_server += "--" + slugs.safe_slug(server_name, max_length=48)
    labels = {"hub.jupyter.org/username": slugs.safe_slug(user, is_valid=slugs.is_valid_label),
              "hub.jupyter.org/network-access-hub": "true",
              "app": "jupyterhub", "app.kubernetes.io/name": "jupyterhub",
              "release": RELEASE, "app.kubernetes.io/instance": RELEASE,
              "chart": CHART, "helm.sh/chart": CHART, "app.kubernetes.io/managed-by": "kubespawner",
              "app.kubernetes.io/component": component, "component": component,
              "hub.jupyter.org/servername": slugs.safe_slug(server_name, is_valid=slugs.is_valid_label)}
    labels.update(extra_labels or {})
    annotations = {"hub.jupyter.org/username": user, "hub.jupyter.org/kubespawner-version": KUBESPAWNER_VERSION,
                   "hub.jupyter.org/jupyterhub-version": JUPYTERHUB_VERSION}
    if server_name:
        annotations["hub.jupyter.org/servername"] = server_name
    if profile:
        annotations["labhub.io/profile"] = profile
    requests = {"cpu": cpu_guarantee, "memory": mem_guarantee}
    limits = {"cpu": cpu_limit, "memory": mem_limit}
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {"fsGroup": 100},
        "containers": [{"name": "notebook", "image": image, "ports": [{"name": "notebook-port", "containerPort": 8888}],
                        "resources": {"requests": requests, "limits": limits}}],
    }
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
        spec["tolerations"] = [GPU_TOLERATION]
        if gpu_product:
            spec["nodeSelector"] = {"nvidia.com/gpu.product": gpu_product}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"jupyter-{user_server}", "labels": labels, "annotations": annotations},
            "spec": spec}


# ------------------------------------------------------------------------------------------------
# the portal role, rendered by Ansible in the collection's venv
class RoleRenderer:
    """``render_portal_role.py`` in the collection's venv, one process per session (JSON lines)."""

    def __init__(self, log: Path) -> None:
        if not COLLECTION_PYTHON.exists():
            raise KubeTestError(f"Failed to start the portal role renderer due to: {COLLECTION_PYTHON} is missing "
                                "(the collection's venv: run `make venv` at the repository root; "
                                "`make -C portal test` does)")
        self.log = log
        with open(log, "wb") as stderr:  # Ansible's warnings go there, not into a pipe nobody reads
            self.proc = subprocess.Popen([str(COLLECTION_PYTHON), str(HERE / "render_portal_role.py")],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                         text=True, cwd=REPO)
        self._lock = threading.Lock()

    def _stderr(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def wait_ready(self) -> RoleRenderer:
        """Read the banner the renderer prints once Ansible is imported."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise KubeTestError(f"Failed to start the portal role renderer due to: {line[:200]!r} {self._stderr()}")
        return self

    def _call(self, request: dict[str, Any], what: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        if not answer:
            raise KubeTestError(f"Failed to {what} due to: the renderer exited: {self._stderr()}")
        data = json.loads(answer)
        if "error" in data:
            raise KubeTestError(f"Failed to {what} due to: {data['error']}")
        return dict(data)

    def manifests(self, extra_vars: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._call({"op": "manifests", "vars": extra_vars}, "render the portal role's objects")["objects"])

    def kubeconfig(self, extra_vars: dict[str, Any], admin_kubeconfig: Path, token_secret: dict[str, Any]) -> str:
        return str(self._call({"op": "kubeconfig", "vars": extra_vars, "admin_kubeconfig": str(admin_kubeconfig),
                               "token_secret": token_secret}, "render the portal role's kubeconfig")["kubeconfig"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _path(obj: dict[str, Any]) -> str:
    """Collection path of an object (the kinds the portal role renders)."""
    kind, ns = obj["kind"], obj["metadata"].get("namespace")
    plural = {"ServiceAccount": "serviceaccounts", "Secret": "secrets", "Role": "roles", "RoleBinding": "rolebindings",
              "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[kind]
    base = "/api/v1" if kind in ("ServiceAccount", "Secret") else RBAC
    return f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"


def _retarget(obj: dict[str, Any], namespace: str, *, subjects: bool) -> dict[str, Any]:
    """The same object in another namespace (what the role renders with that portal_hub_namespace);
    ``subjects=False`` keeps a binding's subjects (the ServiceAccount stays where it lives)."""
    out = copy.deepcopy(obj)
    out["metadata"]["namespace"] = namespace
    if subjects:
        for subject in out.get("subjects", []):
            subject["namespace"] = namespace
    return out


@dataclass
class PortalIdentity:
    """The portal's ServiceAccount and the kubeconfig the portal runs with (token never in repr)."""

    namespace: str
    service_account: str
    kubeconfig: Path
    role: dict[str, Any]
    rolebinding: dict[str, Any]
    token: str = field(repr=False)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


# ------------------------------------------------------------------------------------------------
class KubeCluster:
    """One control plane per session with the portal's identity and the GPU/CPU nodes."""

    HUB_NAMESPACE = "jhub"  # portal_hub_namespace's default (jupyterhub_namespace | default('jhub'))

    def __init__(self, workdir: Path, nodes: Iterable[NodeSpec] = NODES, pods_per_node: int = 1000) -> None:
        self.workdir = workdir
        self.nodes = tuple(nodes)
        self.pods_per_node = pods_per_node
        self.plane = controlplane().ControlPlane(workdir / "plane")
        self.admin: KubeClient
        self.portal: PortalIdentity
        self.portal_objects: list[dict[str, Any]] = []  # the role's rendered objects, in apply order
        self.timings: dict[str, float] = {}
        self._proxy_cert: tuple[Path, Path] | None = None

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> KubeCluster:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(1) as pool:  # Ansible's import overlaps the control plane's start
            renderer_future = pool.submit(lambda: RoleRenderer(self.workdir / "renderer.log").wait_ready())
            try:
                self.plane.start()
            finally:
                renderer = renderer_future.result()
        self.timings["control plane"] = time.monotonic() - started
        try:
            self.admin = KubeClient(self.plane.server, self.plane.pki / "ca.crt",
                                    cert=(self.plane.pki / "admin.crt", self.plane.pki / "admin.key"))
            for node in self.nodes:
                self._add_node(node)
            self.admin.must("POST", "/api/v1/namespaces", {"metadata": {"name": self.HUB_NAMESPACE}},
                            what=f"create namespace '{self.HUB_NAMESPACE}'")
            self.portal = self._apply_portal_role(renderer)
            for node in self.nodes:
                self.plane.wait_node_ready(node.name)
        finally:
            renderer.close()
        self.timings["total"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        self.plane.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _add_node(self, node: NodeSpec) -> None:
        extended = {"pods": str(self.pods_per_node)}
        if node.gpus:
            extended["nvidia.com/gpu"] = str(node.gpu_capacity)  # what the device plugin reports
        self.plane.add_node(node.name, cpu=node.cpu, memory=node.memory, labels=node.labels(), extended=extended,
                            taints=[GPU_TAINT] if node.gpus else None)

    def _apply_portal_role(self, renderer: RoleRenderer) -> PortalIdentity:
        """What roles/portal/tasks/kubernetes.yml does: apply the objects in order, wait for the token
        controller to fill the token Secret, write the kubeconfig from kubeconfig.j2 (0600)."""
        objects = renderer.manifests({})
        self.portal_objects = objects
        for obj in objects:
            self.admin.must("POST", _path(obj), obj,
                            what=f"create {obj['kind']} '{obj['metadata']['name']}' of the portal role")
        sa = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]
        secret_name = next(o for o in objects if o["kind"] == "Secret")["metadata"]["name"]
        secret = self._wait_token(sa["namespace"], secret_name)
        text = renderer.kubeconfig({}, self.plane.admin_kubeconfig, secret)
        path = self.workdir / "portal-kubeconfig"
        _write_private(path, text)
        return PortalIdentity(namespace=sa["namespace"], service_account=sa["name"], kubeconfig=path,
                              role=next(o for o in objects if o["kind"] == "Role"),
                              rolebinding=next(o for o in objects if o["kind"] == "RoleBinding"),
                              token=base64.b64decode(secret["data"]["token"]).decode())

    def _wait_token(self, namespace: str, name: str) -> dict[str, Any]:
        def filled() -> dict[str, Any] | None:
            status, body = self.admin.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
            return body if status == 200 and (body.get("data") or {}).get("token") else None

        return dict(wait_until(filled, 30, f"fill token Secret '{namespace}/{name}'"))

    # -- namespaces -----------------------------------------------------------------------------
    def namespace(self, prefix: str = "jhub") -> Namespace:
        """A fresh hub namespace where the portal's ServiceAccount holds the role's Role."""
        ns = Namespace(self, f"{prefix}-{uuid.uuid4().hex[:8]}")
        ns.create()
        ns.grant(self.portal)
        return ns

    def client_for(self, identity: PortalIdentity) -> KubeClient:
        return KubeClient(self.plane.server, self.plane.pki / "ca.crt", token=identity.token)

    def node_labels(self) -> dict[str, dict[str, str]]:
        nodes = self.admin.must("GET", "/api/v1/nodes", what="list nodes")
        return {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes["items"]}

    # -- the fault injector's certificate -------------------------------------------------------
    def proxy_cert(self) -> tuple[Path, Path]:
        """A serving certificate for 127.0.0.1 signed by the cluster CA (the portal's kubeconfig trusts it)."""
        if self._proxy_cert is None:
            controlplane().write_cert(self.plane.pki, "fault-injector", "/CN=labhub-test-fault-injector",
                                      sans=["IP:127.0.0.1", "DNS:localhost"], client=False)
            self._proxy_cert = (self.plane.pki / "fault-injector.crt", self.plane.pki / "fault-injector.key")
        return self._proxy_cert


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def kubeconfig_with(source: Path, dest: Path, *, server: str | None = None, token: str | None = None) -> Path:
    """A copy of a kubeconfig with another server URL and/or token (0600)."""
    config = yaml.safe_load(source.read_text())
    if server is not None:
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
    if token is not None:
        for user in config["users"]:
            user["user"]["token"] = token
    _write_private(dest, yaml.safe_dump(config, sort_keys=False))
    return dest


# ------------------------------------------------------------------------------------------------
class Namespace:
    """One test's hub namespace, its pods and the objects to remove afterwards."""

    def __init__(self, cluster: KubeCluster, name: str) -> None:
        self.cluster = cluster
        self.admin = cluster.admin
        self.name = name
        self.identity = cluster.portal
        self._cleanup: list[tuple[str, str]] = []  # (path, what) deleted at the end, newest first
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cluster.workdir))

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    @property
    def kubeconfig(self) -> str:
        return str(self.identity.kubeconfig)

    @property
    def api(self) -> str:
        return f"/api/v1/namespaces/{self.name}"

    def create(self, name: str | None = None) -> str:
        """Create this namespace (or another one, removed with this one) and wait for its default
        ServiceAccount (pod admission refuses pods until the controller has made it)."""
        name = name or self.name
        body = {"metadata": {"name": name, "labels": {"labhub.test/portal": "true"}}}
        self.admin.must("POST", "/api/v1/namespaces", body, what=f"create namespace '{name}'")
        # Only the pods go at the end (they hold node capacity); the empty namespace stays until the
        # session's cluster is discarded (deleting it costs the namespace controller a sweep of every type).
        self._cleanup.append((f"/api/v1/namespaces/{name}/pods?gracePeriodSeconds=0", f"pods of namespace '{name}'"))
        wait_until(lambda: self.admin.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
                   30, f"create ServiceAccount '{name}/default'")
        return name

    def other_namespace(self, suffix: str = "other") -> str:
        """Another namespace, where the portal has no Role (removed with this one)."""
        return self.create(f"{self.name}-{suffix}")

    def grant(self, identity: PortalIdentity) -> None:
        """The role's Role and RoleBinding for ``identity``'s ServiceAccount, in this namespace."""
        role = _retarget(identity.role, self.name, subjects=False)
        binding = _retarget(identity.rolebinding, self.name, subjects=False)
        self.admin.must("POST", _path(role), role, what=f"create Role '{self.name}/{role['metadata']['name']}'")
        self.admin.must("POST", _path(binding), binding,
                        what=f"create RoleBinding '{self.name}/{binding['metadata']['name']}'")
        client = self.cluster.client_for(identity)
        wait_until(lambda: client.request("GET", f"{self.api}/pods?limit=1")[0] == 200, 30,
                   f"grant '{identity.username}' the portal Role in namespace '{self.name}'")

    def own_identity(self, *, check_access: bool = True) -> PortalIdentity:
        """The portal identity the role makes for ``portal_hub_namespace=<this namespace>`` with
        ``portal_kube_node_access: false``: its ServiceAccount and token Secret here, the Role bound to
        it (the binding's subject moves from the session's ServiceAccount to this one), its token from
        the token controller, its kubeconfig the session's with that token. For tests that revoke the
        token or need an identity without the node reader. ``check_access=False``: the token is not
        used here (the API server caches a successful authentication for 10 s)."""
        base = self.cluster.portal
        objects = {o["kind"]: o for o in self.cluster.portal_objects}
        sa = _retarget(objects["ServiceAccount"], self.name, subjects=True)
        secret = _retarget(objects["Secret"], self.name, subjects=True)
        secret_name = secret["metadata"]["name"]
        for obj in (sa, secret):
            self.admin.must("POST", _path(obj), obj,
                            what=f"create {obj['kind']} '{self.name}/{obj['metadata']['name']}'")
        token = base64.b64decode(self.cluster._wait_token(self.name, secret_name)["data"]["token"]).decode()
        binding = _retarget(base.rolebinding, self.name, subjects=True)
        self.admin.must("PUT", f"{_path(binding)}/{binding['metadata']['name']}", binding,
                        what=f"bind Role '{self.name}/{binding['roleRef']['name']}' to ServiceAccount "
                             f"'{self.name}/{base.service_account}'")
        identity = PortalIdentity(namespace=self.name, service_account=base.service_account,
                                  kubeconfig=kubeconfig_with(base.kubeconfig, self._tmp / "kubeconfig", token=token),
                                  role=_retarget(base.role, self.name, subjects=True), rolebinding=binding, token=token)
        if check_access:
            client = self.cluster.client_for(identity)
            wait_until(lambda: client.request("GET", f"{self.api}/pods?limit=1")[0] == 200, 30,
                       f"grant '{identity.username}' the portal Role in namespace '{self.name}'")
        self.identity = identity
        return identity

    # -- pods -----------------------------------------------------------------------------------
    def create_pod(self, pod: dict[str, Any], namespace: str | None = None) -> str:
        ns = namespace or self.name
        body = self.admin.must("POST", f"/api/v1/namespaces/{ns}/pods", pod,
                               what=f"create pod '{ns}/{pod['metadata']['name']}'")
        if ns != self.name and not ns.startswith(self.name):
            self._cleanup.append((f"/api/v1/namespaces/{ns}/pods/{body['metadata']['name']}?gracePeriodSeconds=0",
                                  f"pod '{ns}/{body['metadata']['name']}'"))
        return str(body["metadata"]["name"])

    def create_pods(self, pods: list[dict[str, Any]], workers: int = 6) -> list[str]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self.create_pod, pods))

    def start(self, *pods: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Create the pods and wait until the scheduler placed them and KWOK runs them."""
        names = [self.create_pod(p) for p in pods]
        return self.wait_running(*names)

    def pod(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        status, body = self.admin.request("GET", f"/api/v1/namespaces/{namespace or self.name}/pods/{name}")
        if status == 404:
            return None
        if status != 200:
            raise KubeTestError(f"Failed to read pod '{namespace or self.name}/{name}' due to: "
                                f"HTTP {status} {_status_message(body)}")
        return dict(body)

    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        path = f"{self.api}/pods" + (f"?labelSelector={quote(selector)}" if selector else "")
        return list(self.admin.must("GET", path, what=f"list pods of namespace '{self.name}'")["items"])

    def wait_running(self, *names: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
        wanted = set(names)

        def running() -> dict[str, dict[str, Any]] | None:
            pods = {p["metadata"]["name"]: p for p in self.pods() if p["metadata"]["name"] in wanted}
            ok = {n: p for n, p in pods.items() if p["status"].get("phase") == "Running"
                  and p["status"].get("startTime")}
            return ok if len(ok) == len(wanted) else None

        return dict(wait_until(running, timeout, f"run pods {sorted(wanted)[:5]} in namespace '{self.name}'",
                               interval=0.1))

    def wait_count(self, count: int, phase: str = "Running", timeout: float = 120) -> None:
        def reached() -> bool:
            return sum(p["status"].get("phase") == phase for p in self.pods()) == count

        wait_until(reached, timeout, f"have {count} pods {phase} in namespace '{self.name}'", interval=0.3)

    def stop_server(self, name: str, grace_seconds: int = 1) -> None:
        """Delete a pod as KubeSpawner stops a server (grace period ``delete_grace_period`` = 1 s) and
        wait until it is gone from the API (KWOK finishes the deletion as a kubelet would)."""
        self.admin.must("DELETE", f"{self.api}/pods/{name}?gracePeriodSeconds={grace_seconds}",
                        what=f"delete pod '{self.name}/{name}'")
        wait_until(lambda: self.pod(name) is None, 30, f"remove pod '{self.name}/{name}'")

    def stop_servers(self, names: Iterable[str]) -> None:
        names = list(names)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda n: self.admin.must("DELETE", f"{self.api}/pods/{n}?gracePeriodSeconds=0",
                                                    what=f"delete pod '{self.name}/{n}'"), names))
        gone = set(names)
        wait_until(lambda: not gone & {p["metadata"]["name"] for p in self.pods()}, 60,
                   f"remove {len(names)} pods of namespace '{self.name}'", interval=0.2)

    def cleanup(self) -> None:
        for path, what in reversed(self._cleanup):
            status, body = self.admin.request("DELETE", path)
            if status not in (200, 202, 404):
                raise KubeTestError(f"Failed to delete {what} due to: HTTP {status} {_status_message(body)}")
        self._cleanup.clear()


# ------------------------------------------------------------------------------------------------
class FaultProxy(ThreadServer):
    """TEST FAULT INJECTOR (not a fake API): an HTTPS proxy in front of the REAL API server.

    ``mode = "ok"``: every request (method, path and query, body, the caller's own bearer token) is
    forwarded to the API server and its answer returned unchanged. ``"error"``: answers HTTP 500
    with an InternalError Status (the shape kube-apiserver uses) without forwarding. ``"hang"``:
    forwards, then holds the real answer back for ``hang_seconds`` (or until the mode changes), so
    the client's timeout fires first. Its serving certificate is signed by the cluster CA.
    """

    def __init__(self, cluster: KubeCluster, identity: PortalIdentity, workdir: Path) -> None:
        super().__init__()
        cert, key = cluster.proxy_cert()
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.load_cert_chain(str(cert), str(key))
        self._upstream_ssl = ssl.create_default_context(cafile=str(cluster.plane.pki / "ca.crt"))
        self.upstream = cluster.plane.server
        self._mode = "ok"
        self.hang_seconds = 5.0
        self.requests: list[tuple[str, str, str]] = []  # (mode, method, path)
        self._release: asyncio.Event | None = None
        self._session: ClientSession | None = None
        self._stopping = False  # open watch streams end (checked every 0.2 s) before the loop stops
        self.kubeconfig = str(kubeconfig_with(identity.kubeconfig, workdir / "fault-kubeconfig", server=self.url))

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        assert value in ("ok", "error", "hang"), value
        self._mode = value
        if value != "hang" and self._release is not None:
            self.loop.call_soon_threadsafe(self._release.set)  # let held answers go

    def build(self) -> web.Application:
        app = web.Application()

        async def startup(_app: web.Application) -> None:
            self._release = asyncio.Event()
            self._session = ClientSession(timeout=ClientTimeout(total=30))

        async def cleanup(_app: web.Application) -> None:
            if self._session is not None:
                await self._session.close()

        async def forward(request: web.Request) -> web.StreamResponse:
            mode = self._mode
            self.requests.append((mode, request.method, request.path_qs))
            if mode == "error":
                return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                          "message": "Internal error occurred: injected by the test fault injector",
                                          "reason": "InternalError", "code": 500}, status=500)
            assert self._session is not None and self._release is not None
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() in ("authorization", "accept", "content-type", "user-agent")}
            body = await request.read()
            if request.query.get("watch") in ("true", "1"):
                return await stream(request, headers)
            async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                             data=body or None, ssl=self._upstream_ssl) as upstream:
                payload = await upstream.read()
                status, ctype = upstream.status, upstream.headers.get("Content-Type", "application/json")
            if mode == "hang":
                self._release.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._release.wait(), self.hang_seconds)
            return web.Response(status=status, body=payload, headers={"Content-Type": ctype})

        async def stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
            """A watch: the API server's events passed on as they come, for as long as the mode
            stays "ok" (any other mode drops the stream, as a broken connection would)."""
            assert self._session is not None
            async with self._session.get(self.upstream + request.path_qs, headers=headers, ssl=self._upstream_ssl,
                                         timeout=ClientTimeout(total=None, sock_read=None)) as upstream:
                response = web.StreamResponse(status=upstream.status, headers={
                    "Content-Type": upstream.headers.get("Content-Type", "application/json")})
                await response.prepare(request)
                pending: asyncio.Task[bytes] | None = None
                try:  # the client may go away, or the proxy stop, while the stream is open
                    while self._mode == "ok" and not self._stopping:
                        if pending is None:
                            pending = asyncio.ensure_future(upstream.content.readany())
                        done, _ = await asyncio.wait({pending}, timeout=0.2)
                        if not done:
                            continue
                        chunk, pending = pending.result(), None
                        if not chunk:
                            break
                        await response.write(chunk)
                except (ClientError, ConnectionError, RuntimeError):
                    return response
                finally:
                    if pending is not None:
                        pending.cancel()
                if self._mode != "ok":  # dropped: the client sees the connection end mid-stream
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write_eof()
                return response

        app.on_startup.append(startup)
        app.on_cleanup.append(cleanup)
        app.router.add_route("*", "/{tail:.*}", forward)
        return app

    def stop(self) -> None:
        self.mode = "ok"
        self._stopping = True
        time.sleep(0.5)
        super().stop()
