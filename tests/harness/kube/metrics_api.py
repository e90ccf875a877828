"""SIMULATED metrics-server behind the REAL API aggregation of the test control plane.

No kubelet runs under KWOK, so nothing could measure a pod; this TEST DOUBLE serves the resource
metrics API (``metrics.k8s.io/v1beta1``) with the usage a test sets per pod, and the real
kube-apiserver proxies to it exactly as it proxies to metrics-server: through an APIService, a
Service without selector and its Endpoints (``--enable-aggregator-routing``, the front-proxy
client certificate, the caller's identity in ``X-Remote-User``; RBAC on ``pods.metrics.k8s.io``
is the real API server's).

What it imitates, from upstream (facts only):

* the APIService ``v1beta1.metrics.k8s.io`` (group ``metrics.k8s.io``, version ``v1beta1``,
  ``groupPriorityMinimum: 100``, ``versionPriority: 100``, ``insecureSkipTLSVerify: true``,
  service ``kube-system/metrics-server`` port 443): kubernetes-sigs/metrics-server
  ``manifests/base/apiservice.yaml`` (v0.8.1, the image of MicroK8s 1.36's metrics-server addon,
  canonical/microk8s-core-addons ``addons/metrics-server/metrics-server.yaml``);
* the discovery document and the ``PodMetrics``/``PodMetricsList`` objects (``metadata`` with the
  pod's name, namespace, labels and a creationTimestamp, ``timestamp``, ``window``,
  ``containers[].usage`` with ``cpu`` and ``memory``): kubernetes/metrics
  ``pkg/apis/metrics/v1beta1/types.go``; resources ``pods`` (namespaced) and ``nodes``, verbs
  get and list;
* only pods it has a measurement for are listed (metrics-server lists the pods it scraped);
  ``labelSelector`` selects as the API server does (the real API server lists the pods for it).

Not imitated: node metrics values, field selectors, tables, protobuf.
"""
from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit


GROUP_VERSION = "metrics.k8s.io/v1beta1"
APISERVICE = "v1beta1.metrics.k8s.io"


def host_address() -> str:
    """A non-loopback IPv4 address of this machine: Endpoints may not point at loopback (the API
    server refuses 127.0.0.0/8 in Endpoints), and the API server on 127.0.0.1 reaches it locally."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.123", 9))  # TEST-NET-1: picks the outgoing interface, sends nothing
            address = str(sock.getsockname()[0])
        except OSError:
            address = ""
    if address and not address.startswith("127."):
        return address
    for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        candidate = str(info[4][0])
        if not candidate.startswith("127."):
            return candidate
    raise RuntimeError("Failed to find a non-loopback IPv4 address due to: none configured "
                       "(the aggregated metrics API needs one for its Endpoints)")


class MetricsServer:
    """The simulated backend; ``set_usage(ns, pod, {container: (cpu, memory)})`` sets what it
    reports, ``install()`` registers it with the control plane and waits until it is Available."""

    def __init__(self, plane: Any) -> None:
        """``plane``: a started ``controlplane.ControlPlane`` (however its module was imported: the
        portal's tests load it by path under another name)."""
        self.plane = plane
        self.address = host_address()
        self.usage: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
        self.window = "15s"
        self.requests: list[tuple[str, str]] = []  # (X-Remote-User, path) of each proxied request
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- what it reports -------------------------------------------------------------------
    def set_usage(self, namespace: str, pod: str, containers: dict[str, tuple[str, str]]) -> None:
        with self._lock:
            self.usage[(namespace, pod)] = dict(containers)

    def clear(self, namespace: str, pod: str) -> None:
        with self._lock:
            self.usage.pop((namespace, pod), None)

    def _pod_metrics(self, pod: dict[str, Any], containers: dict[str, tuple[str, str]]) -> dict[str, Any]:
        meta = pod["metadata"]
        return {
            "kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels") or {},
                         "creationTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window": self.window,
            "containers": [{"name": name, "usage": {"cpu": cpu, "memory": memory}}
                           for name, (cpu, memory) in sorted(containers.items())],
        }

    def _list(self, namespace: str, selector: str | None) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{namespace}/pods" + (f"?labelSelector={quote(selector)}" if selector else "")
        status, body = self.plane.request("GET", path)
        if status != 200:
            raise RuntimeError(f"Failed to list pods of namespace '{namespace}' due to: {status}")
        with self._lock:
            items = [self._pod_metrics(p, self.usage[(namespace, p["metadata"]["name"])]) for p in body["items"]
                     if (namespace, p["metadata"]["name"]) in self.usage]
        return {"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}

    # -- serving -------------------------------------------------------------------------------
    def start(self) -> None:
        pki = self.plane.pki
        if not (pki / "metrics-server.crt").exists():
            write_cert = sys.modules[type(self.plane).__module__].write_cert
            write_cert(pki, "metrics-server", "/CN=metrics-server", sans=[f"IP:{self.address}"], client=False)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlsplit(self.path)
                owner.requests.append((self.headers.get("X-Remote-User", ""), url.path))
                parts = [p for p in url.path.split("/") if p]
                selectors = parse_qs(url.query).get("labelSelector") or []
                selector = selectors[0] if selectors else None
                if parts == ["apis", "metrics.k8s.io", "v1beta1"]:
                    self._send(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
                                     "resources": [
                                         {"name": "nodes", "singularName": "", "namespaced": False,
                                          "kind": "NodeMetrics", "verbs": ["get", "list"]},
                                         {"name": "pods", "singularName": "", "namespaced": True,
                                          "kind": "PodMetrics", "verbs": ["get", "list"]}]})
                elif parts[:4] == ["apis", "metrics.k8s.io", "v1beta1", "namespaces"] and len(parts) in (6, 7) \
                        and parts[5] == "pods":
                    listing = owner._list(parts[4], selector)
                    if len(parts) == 6:
                        self._send(200, listing)
                        return
                    match = [i for i in listing["items"] if i["metadata"]["name"] == parts[6]]
                    if match:
                        self._send(200, match[0])
                    else:
                        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                         "reason": "NotFound", "code": 404,
                                         "message": f'podmetrics.metrics.k8s.io "{parts[6]}" not found'})
                else:
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "NotFound", "code": 404, "message": "the server could not find "
                                                                                     "the requested resource"})

        server = ThreadingHTTPServer((self.address, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "metrics-server.crt", pki / "metrics-server.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="simulated-metrics-server", daemon=True).start()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def install(self, timeout: float = 60) -> None:
        """Service, Endpoints and APIService as metrics-server's manifests lay them out, pointing at
        this backend; returns once the API server reports the APIService Available."""
        if self._server is None:
            self.start()
        plane = self.plane
        service = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "metrics-server", "namespace": "kube-system",
                                "labels": {"k8s-app": "metrics-server"}},
                   "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}]}}
        endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": "metrics-server", "namespace": "kube-system"},
                     "subsets": [{"addresses": [{"ip": self.address}],
                                  "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]}]}
        apiservice = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                      "metadata": {"name": APISERVICE, "labels": {"k8s-app": "metrics-server"}},
                      "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                               "versionPriority": 100, "insecureSkipTLSVerify": True,
                               "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443}}}
        objects: list[tuple[str, dict[str, Any]]] = [
            ("/api/v1/namespaces/kube-system/services", service),
            ("/api/v1/namespaces/kube-system/endpoints", endpoints),
            ("/apis/apiregistration.k8s.io/v1/apiservices", apiservice)]
        for path, obj in objects:  # replaced when there (an earlier backend's port)
            plane.request("DELETE", f"{path}/{obj['metadata']['name']}")
            status, body = plane.request("POST", path, obj)
            if status not in (200, 201):
                raise RuntimeError(f"Failed to create {obj['kind']} '{obj['metadata']['name']}' due to: {status} {body}")
        deadline = time.monotonic() + timeout
        conditions: list[Any] = []
        while time.monotonic() < deadline:
            status, body = plane.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}")
            conditions = (body.get("status") or {}).get("conditions") or [] if status == 200 else []
            if any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Failed to make APIService '{APISERVICE}' available due to: {conditions}")

    def uninstall(self) -> None:
        """Remove the APIService, its Service and Endpoints (the API is then not served: 404); the
        backend keeps running until ``stop()``."""
        self.plane.request("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}")
        for kind in ("services", "endpoints"):
            self.plane.request("DELETE", f"/api/v1/namespaces/kube-system/{kind}/metrics-server")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _body = self.plane.request("GET", f"/apis/{GROUP_VERSION}")
            if status == 404:
                return
            time.sleep(0.3)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
