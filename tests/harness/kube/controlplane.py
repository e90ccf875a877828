"""A real Kubernetes control plane for the tests (issue 11), as plain processes.

etcd (embed), kube-apiserver, kube-controller-manager, kube-scheduler and KWOK, built by
``build.sh`` from the Go modules pinned in ``go.mod``, started with what a real cluster has on:
TLS, client-certificate and service-account authentication, RBAC (and the Node authorizer), the
default admission plugins plus NodeRestriction, controllers (service-account tokens, garbage
collector, workloads) and the scheduler. There are no kubelets: KWOK plays them for Nodes
annotated ``kwok.x-k8s.io/node: fake`` (Ready, lease heartbeats, pods Running, Job pods
Succeeded), so pods are really scheduled by the real scheduler.

Standard library and the ``openssl`` command only: the portal's and the hub's own venvs import
this file by path.

    python3 tests/harness/kube/controlplane.py up DIR [--address ADDR ...] [--node NAME ...]  # start, detach
    python3 tests/harness/kube/controlplane.py down DIR
    python3 tests/harness/kube/controlplane.py up DIR --cluster-dir C [--bind --address --upstream-host]

``up`` writes ``DIR/admin.kubeconfig`` (cluster admin, ``system:masters``) and ``DIR/state.json``.
With ``--cluster-dir`` it starts a :class:`Broker` instead (detached): one control plane per
simulated MicroK8s cluster in C, on demand (tests/simulator/labhub_sim_kube.py); ``down`` stops
it and every control plane it started.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
#: MicroK8s' service range and the kubernetes Service address in it (MicroK8s args/kube-apiserver).
SERVICE_CIDR = "10.152.183.0/24"
KUBERNETES_SERVICE_IP = "10.152.183.1"
#: What KWOK and the harness put on a fake node.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def build() -> Path:
    """Build (or reuse) the binaries; return the cache directory holding bin/ and kwok.yaml."""
    out = subprocess.run(
        [str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def kwok_stage_crd() -> Path:
    """KWOK's Stage CRD, from the pinned module in the Go module cache (the build downloaded it)."""
    version = next(line.split()[1] for line in (HERE / "go.mod").read_text().splitlines()
                   if line.strip().startswith("sigs.k8s.io/kwok "))
    cache = os.environ.get("GOMODCACHE") or subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True, cwd=HERE).stdout.strip()
    path = Path(cache) / f"sigs.k8s.io/kwok@{version}" / "kustomize/crd/bases/kwok.x-k8s.io_stages.yaml"
    if not path.exists():
        raise RuntimeError(f"KWOK's Stage CRD not found at {path} (run tests/harness/kube/build.sh)")
    return path


def fault_stage(name: str, match: list[dict[str, Any]], status_template: str, weight: int = 1) -> dict[str, Any]:
    """A KWOK Stage for pods matching ``match`` (KWOK selector expressions, e.g. on
    ``.metadata.labels["app"]``): with a positive weight it wins over the default stages (weight
    0; kwok v0.8.0 pkg/utils/lifecycle/lifecycle.go match), so those pods get ``status_template``
    instead of becoming Ready or Succeeded. Create it with POST /apis/kwok.x-k8s.io/v1alpha1/stages."""
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name},
            "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"}, "weight": weight,
                     "selector": {"matchExpressions": [
                         {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}, *match]},
                     "next": {"statusTemplate": status_template}}}


def _pod_not_ready_status(reason: str, started: bool, state: str, phase: str) -> str:
    """A KWOK status template: every container not ready in ``state`` (YAML under ``state:``),
    the pod's Ready and ContainersReady False with ``reason``, and ``phase``."""
    state_lines = "".join(f"    {line}\n" for line in state.splitlines())
    return ("{{ $now := Now }}\ncontainerStatuses:\n{{ range .spec.containers }}\n"
            "- image: {{ .image | Quote }}\n  name: {{ .name | Quote }}\n  ready: false\n  restartCount: 0\n"
            f"  started: {'true' if started else 'false'}\n  state:\n{state_lines}{{{{ end }}}}\n"
            "conditions:\n- lastTransitionTime: {{ $now | Quote }}\n  status: \"True\"\n  type: Initialized\n"
            + "".join(f"- lastTransitionTime: {{{{ $now | Quote }}}}\n  status: \"False\"\n  reason: {reason}\n"
                      f"  type: {kind}\n" for kind in ("Ready", "ContainersReady"))
            + f"phase: {phase}\n")


#: Status templates for fault_stage (KWOK's Go templates; cf. kwok v0.8.0
#: kustomize/stage/pod/chaos/pod-container-running-failed.yaml): the containers exit 1 ...
POD_FAILED = _pod_not_ready_status("PodFailed", False, "terminated:\n  exitCode: 1\n  finishedAt: {{ $now | Quote }}\n"
                                   "  reason: Error\n  startedAt: {{ $now | Quote }}", "Failed")
#: ... or run and never become ready.
POD_RUNNING_NOT_READY = _pod_not_ready_status("ContainersNotReady", True, "running:\n  startedAt: {{ $now | Quote }}",
                                              "Running")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, cwd=cwd, capture_output=True)


def write_cert(pki: Path, name: str, subject: str, *, sans: list[str] | None = None, client: bool = True) -> None:
    """A key and a certificate signed by pki/ca.crt (ECDSA P-256: fast to make, one year)."""
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    lines.append("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth,clientAuth"))
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
            "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "365", "-extfile", ext.name, "-out", f"{name}.crt", cwd=pki)


def san_entries(addresses: list[str]) -> list[str]:
    out = []
    for address in addresses:
        try:
            ipaddress.ip_address(address)
            out.append(f"IP:{address}")
        except ValueError:
            out.append(f"DNS:{address}")
    return out


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "labhub-test",
        "clusters": [{"name": "labhub-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "labhub-test", "context": {"cluster": "labhub-test", "user": user}}],
    }, indent=1)


@dataclass
class ControlPlane:
    """One control plane in ``workdir``; ``start()`` then ``stop()`` (or use as a context manager)."""

    workdir: Path
    #: Extra names/addresses for the API server certificate (e.g. the podman gateway).
    addresses: list[str] = field(default_factory=list)
    bind: str = "127.0.0.1"
    #: Serve the API server certificate from this directory's serving.crt/serving.key (the MicroK8s
    #: simulator re-issues it there with its nodes' names; kube-apiserver reloads it by itself).
    serving_dir: Path | None = None
    #: Use the CA (ca.crt, ca.key) in this directory instead of making one (a simulated MicroK8s
    #: cluster's CA: the first node makes it, as MicroK8s does at install).
    ca_dir: Path | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = 0
    server: str = ""
    bin_dir: Path = Path()
    #: request(): one admin TLS context, and one kept-alive connection per thread (the simulated
    #: operator controllers poll several times a second: a new TLS handshake and client
    #: certificate check per request cost the API server and the test process more CPU than
    #: the requests themselves)
    _ctx: ssl.SSLContext | None = field(default=None, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- PKI ---------------------------------------------------------------------------------
    def make_pki(self) -> None:
        pki = self.pki
        if (pki / "ca.crt").exists():
            if not (pki / "front-proxy-client.crt").exists():  # a PKI made before aggregation was on
                write_cert(pki, "front-proxy-client", "/CN=front-proxy-client")
            return
        pki.mkdir(parents=True, exist_ok=True)
        os.chmod(pki, 0o700)
        if self.ca_dir is not None:
            for name in ("ca.key", "ca.crt"):
                shutil.copyfile(self.ca_dir / name, pki / name)
            os.chmod(pki / "ca.key", 0o600)
        else:
            openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "ca.key",
                    "-subj", "/CN=labhub-test-ca", "-days", "365", "-out", "ca.crt", cwd=pki)
        sans = ["DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster", "DNS:kubernetes.default.svc.cluster.local",
                "DNS:localhost", "IP:127.0.0.1", f"IP:{KUBERNETES_SERVICE_IP}"]
        sans += san_entries(self.addresses)
        write_cert(pki, "apiserver", "/CN=kube-apiserver", sans=sans, client=False)
        write_cert(pki, "admin", "/O=system:masters/CN=admin")
        write_cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
        write_cert(pki, "scheduler", "/CN=system:kube-scheduler")
        write_cert(pki, "kwok", "/O=system:masters/CN=kwok")
        write_cert(pki, "front-proxy-client", "/CN=front-proxy-client")
        openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", "sa.key", cwd=pki)
        openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)

    # -- processes ---------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self, wait_controllers: bool = True) -> None:
        """Start everything; return once the API server is ready and (``wait_controllers``) the
        controllers made the 'default' ServiceAccount (pods can be created in new namespaces)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cache = build()
        bin_dir = self.bin_dir = cache / "bin"
        self.make_pki()
        pki = self.pki
        etcd_port, peer_port = free_port(), free_port()
        self.port = free_port()
        host = "127.0.0.1" if self.bind in ("127.0.0.1", "0.0.0.0") else self.bind
        self.server = f"https://{host}:{self.port}"
        self.spawn("etcd", [str(bin_dir / "etcd"), f"--data-dir={self.workdir / 'etcd'}",
                            f"--listen-client-url=http://127.0.0.1:{etcd_port}",
                            f"--listen-peer-url=http://127.0.0.1:{peer_port}"])
        wait_port(etcd_port, "etcd", self)
        cert, key = pki / "apiserver.crt", pki / "apiserver.key"
        if self.serving_dir is not None:
            self.serving_dir.mkdir(parents=True, exist_ok=True)
            for src, name in ((cert, "serving.crt"), (key, "serving.key")):
                if not (self.serving_dir / name).exists():
                    shutil.copyfile(src, self.serving_dir / name)
            os.chmod(self.serving_dir / "serving.key", 0o600)
            cert, key = self.serving_dir / "serving.crt", self.serving_dir / "serving.key"
        self.spawn("kube-apiserver", [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--bind-address={self.bind}", f"--secure-port={self.port}",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--anonymous-auth=false",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
            # API aggregation (an APIService such as metrics.k8s.io, tests/harness/kube/metrics_api.py):
            # the API server proxies to the backend with the front-proxy client certificate and the
            # caller's identity in X-Remote-* headers, to the Service's endpoint (no kube-proxy here)
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
        ])
        self.write_kubeconfigs()
        self.wait_ready()
        self.spawn("kube-controller-manager", [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            # Pods on KWOK nodes are never evicted for a missing kubelet heartbeat: KWOK renews leases.
            "--controllers=*,-nodeipam",
            # A node turns NotReady after 120 s without a lease renewal (Kubernetes: 40 s). Under the
            # full suite's load (a load average near 28 on 2 cores, these processes at niceness 10)
            # KWOK's renewals were seen to starve past 40 s: nodes went NotReady while a playbook
            # waited for them. Tests of a kubelet that stopped wait for the longer grace.
            "--node-monitor-grace-period=120s",
        ])
        self.spawn("kube-scheduler", [
            str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
        ])
        # KWOK's stages as Stage objects in the API (its Stage CRD enabled), so a test can add a
        # fault for its own pods (fault_stage) while KWOK runs; kwok.yaml holds the default set.
        self.kubectl("apply", "--server-side", "-f", str(kwok_stage_crd()))
        self.wait_crd_established("stages.kwok.x-k8s.io")
        # right after Established, discovery may not serve the kind yet: retried
        self.kubectl("apply", "--server-side", "-f", str(cache / "kwok.yaml"), attempts=20)
        # An empty configuration: KWOK's defaults (a KwokConfiguration given here would not be
        # defaulted, kwok v0.8.0 pkg/config/vars.go GetKwokConfiguration), and no stages in it.
        (self.workdir / "kwok-config.yaml").write_text("")
        self.spawn("kwok", [
            str(bin_dir / "kwok"), f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
            f"--config={self.workdir / 'kwok-config.yaml'}", "--enable-crds=Stage",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--cidr=10.1.0.0/16", "--node-ip=10.0.0.1", "--node-lease-duration-seconds=40",
        ])
        if wait_controllers:
            self.wait_service_accounts()
        (self.workdir / "state.json").write_text(json.dumps({
            "server": self.server, "port": self.port, "bin": str(bin_dir),
            "pids": {n: p.pid for n, p in self.procs.items()},
            "kubeconfig": str(self.admin_kubeconfig),
        }, indent=1))

    def kubectl(self, *argv: str, attempts: int = 1) -> str:
        """The real kubectl as cluster admin; fails with its message after ``attempts`` tries 0.5 s apart."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.admin_kubeconfig}", *argv]
        for attempt in range(attempts):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=90)
            if proc.returncode == 0:
                return proc.stdout
            if attempt + 1 < attempts:
                time.sleep(0.5)
        raise RuntimeError(f"kubectl {' '.join(argv)}: {proc.stderr.strip()}")

    def wait_crd_established(self, name: str, timeout: float = 60) -> None:
        """Until the CRD's Established condition is True (``kubectl wait`` fails instead of waiting
        while the CRD has no status yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = ((body or {}).get("status") or {}).get("conditions") or [] if status == 200 else []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                return
            time.sleep(0.2)
        raise RuntimeError(f"Failed to establish CRD '{name}' due to: not Established within {timeout} s")

    def write_kubeconfigs(self) -> None:
        pki = self.pki
        for name, user in (("admin", "admin"), ("controller-manager", "system:kube-controller-manager"),
                           ("scheduler", "system:kube-scheduler"), ("kwok", "kwok")):
            (self.workdir / f"{name}.kubeconfig").write_text(
                kubeconfig(self.server, pki / "ca.crt", pki / f"{name}.crt", pki / f"{name}.key", user))
            os.chmod(self.workdir / f"{name}.kubeconfig", 0o600)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _connection(self) -> http.client.HTTPSConnection:
        """This thread's connection to the API server (a new one after a failure or a restart)."""
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.server != self.server:
            conn.close()
            conn = None
        if conn is None:
            if self._ctx is None:
                self._ctx = self.ssl_context()
            host, port = self.server.removeprefix("https://").rsplit(":", 1)
            conn = http.client.HTTPSConnection(host, int(port), context=self._ctx, timeout=30)
            self._local.conn, self._local.server = conn, self.server
        return conn

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        """One admin request; returns (status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw, status = resp.read(), resp.status
                break
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                self._local.conn = None
                # a kept-alive connection the server closed while idle: once more on a new one
                stale = isinstance(err, (http.client.RemoteDisconnected, http.client.CannotSendRequest,
                                         BrokenPipeError, ConnectionResetError))
                if not stale or attempt == 2:
                    raise
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def request_as(self, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request with a bearer token (no client certificate): what a pod's service account sends."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, body = self.request("GET", "/readyz")
                if status == 200:
                    return
                last = body
            except (OSError, ssl.SSLError) as err:
                last = err
            time.sleep(0.5)
        raise RuntimeError(f"Failed to start kube-apiserver '{self.server}' due to: not ready after {timeout} s ({last})")

    def wait_service_accounts(self, timeout: float = 90) -> None:
        """The controllers are up once the 'default' ServiceAccount exists in 'default'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            status = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0]
            if status == 200:
                return
            time.sleep(0.5)
        raise RuntimeError("Failed to start kube-controller-manager due to: no default ServiceAccount "
                           f"after {timeout} s (see {self.workdir / 'kube-controller-manager.log'})")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Failed to run {name} due to: exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def publish(self, plane_dir: Path, upstream: str) -> None:
        """Hand this control plane to the MicroK8s simulator (tests/simulator/labhub_sim_kube.py):
        ``plane_dir`` gets the admin client certificate and, last, ``control-plane.json`` with
        ``upstream`` (host:port the simulated nodes reach the API server at)."""
        for name in ("admin.crt", "admin.key"):
            shutil.copyfile(self.pki / name, plane_dir / name)
            os.chmod(plane_dir / name, 0o600 if name.endswith(".key") else 0o644)
        tmp = plane_dir / "control-plane.json.tmp"
        tmp.write_text(json.dumps({"upstream": upstream, "workdir": str(self.workdir)}, indent=1))
        os.replace(tmp, plane_dir / "control-plane.json")

    # -- nodes -------------------------------------------------------------------------------
    def add_node(self, name: str, *, cpu: str = "8", memory: str = "32Gi", labels: dict[str, str] | None = None,
                 extended: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
                 address: str | None = None) -> dict[str, Any]:
        """Create a Node KWOK keeps Ready, with the given capacity (extended resources such as
        ``nvidia.com/gpu`` included, as a device plugin would report them)."""
        capacity = {"cpu": cpu, "memory": memory, "pods": "110", **(extended or {})}
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: "fake"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok", **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"capacity": capacity, "allocatable": capacity,
                       "addresses": [{"type": "InternalIP", "address": address or "10.0.0.1"},
                                     {"type": "Hostname", "address": name}]},
        }
        status, body = self.request("POST", "/api/v1/nodes", node)
        if status not in (200, 201):
            raise RuntimeError(f"Failed to create node '{name}' due to: {status} {body}")
        return dict(body)

    def wait_node_ready(self, name: str, timeout: float = 180) -> None:
        """Until KWOK marks the node Ready. 180 s: a clean-clone CI run (6525ed2's, both cores busy
        from its first minute) saw a freshly started KWOK take over 60 s; a ready node returns at
        once. A timeout shows KWOK's own log and whether it is still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.request("GET", f"/api/v1/nodes/{name}")
            if status == 200:
                for cond in body.get("status", {}).get("conditions", []):
                    if cond.get("type") == "Ready" and cond.get("status") == "True":
                        return
            time.sleep(0.3)
        proc = self.procs.get("kwok")
        state = "not started by this process" if proc is None else (
            "running" if proc.poll() is None else f"exited {proc.returncode}")
        log = self.workdir / "kwok.log"
        tail = log.read_text(errors="replace")[-1500:] if log.is_file() else "(no kwok.log)"
        raise RuntimeError(f"Failed to ready node '{name}' due to: KWOK ({state}) did not mark it Ready in "
                           f"{timeout} s; kwok.log ends: {tail}")


def wait_port(port: int, name: str, plane: ControlPlane, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plane.check_alive()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"Failed to start {name} due to: port {port} not open after {timeout} s")


class Broker:
    """One real control plane per simulated MicroK8s cluster, on demand.

    Real MicroK8s runs an API server on every control-plane node: each node that installs it is a
    one-node cluster with its own CA until it joins another. The simulator
    (tests/simulator/labhub_sim_kube.py) asks for a cluster's control plane by creating
    ``<cluster_dir>/kube/planes/<cluster id>/want`` next to the cluster's ca.crt/ca.key; this
    starts one with that CA and publishes it there (``control-plane.json`` last, or ``failed``
    with the reason). ``release`` in the same directory (the cluster is gone: its nodes joined
    another or uninstalled) stops it. ``<cluster_dir>/kube/broker.json`` says a broker serves the
    directory; ``kube/bin`` holds the real kubectl and helm.

    Every plane also gets the SIMULATED operator controllers (operators.py), idle until a test
    registers its nodes' hardware in ``<cluster_dir>/kube/hosts/<node>.json``
    (``operators.write_host``): then what the GPU and Network Operators' controllers and node
    agents would write appears once the real charts' objects are there. Their errors (other than
    conflicts) go to ``<workdir>/<cluster id>/operators.log`` when the plane stops.
    """

    def __init__(self, cluster_dir: Path, workdir: Path, *, addresses: list[str] | None = None,
                 bind: str = "127.0.0.1", upstream_host: str = "127.0.0.1", poll: float = 0.1) -> None:
        self.kube = cluster_dir / "kube"
        self.workdir = workdir
        self.addresses = list(addresses or [])
        self.bind = bind
        self.upstream_host = upstream_host
        self.poll = poll
        self.planes: dict[str, ControlPlane | None] = {}  # None while starting
        self.operators: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        (self.kube / "planes").mkdir(parents=True, exist_ok=True)
        os.chmod(self.kube, 0o700)
        self.workdir.mkdir(parents=True, exist_ok=True)
        bin_dir = build() / "bin"
        (self.kube / "bin").mkdir(exist_ok=True)
        for name in ("kubectl", "helm"):
            target = self.kube / "bin" / name
            if target.exists():
                target.unlink()
            try:
                os.link(bin_dir / name, target)
            except OSError:
                shutil.copy2(bin_dir / name, target)
        (self.kube / "broker.json").write_text(json.dumps({"pid": os.getpid(), "workdir": str(self.workdir)}))
        self.thread = threading.Thread(target=self.run, name="kube-broker", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.done.wait(self.poll):
            self.scan()

    def scan(self) -> None:
        """Start the planes asked for, stop the released ones."""
        planes = self.kube / "planes"
        for plane_dir in sorted(planes.iterdir()) if planes.is_dir() else []:
            cid = plane_dir.name
            with self.lock:
                known = cid in self.planes
                plane = self.planes.get(cid)
            if (plane_dir / "release").exists():
                if plane is not None:
                    with self.lock:
                        self.planes[cid] = None
                    self.stop_operators(cid)
                    plane.stop()
                    (plane_dir / "stopped").write_text("")
                continue
            if not known and (plane_dir / "want").exists():
                with self.lock:
                    self.planes[cid] = None
                threading.Thread(target=self.start_plane, args=(cid, plane_dir), daemon=True).start()

    def start_plane(self, cid: str, plane_dir: Path) -> None:
        plane = ControlPlane(self.workdir / cid, addresses=self.addresses, bind=self.bind,
                             serving_dir=plane_dir, ca_dir=plane_dir)
        try:
            plane.start(wait_controllers=False)
            with self.lock:
                self.planes[cid] = plane
            plane.publish(plane_dir, f"{self.upstream_host}:{plane.port}")
            sys.path.insert(0, str(HERE))
            from operators import OperatorSimulator  # pylint: disable=import-outside-toplevel  # needs PyYAML, unlike the rest of this file
            with self.lock:
                self.operators[cid] = OperatorSimulator(plane, {}, interval=0.5, hosts_dir=self.kube / "hosts").start()
        except Exception as exc:  # noqa: BLE001 - reported to the simulator, which fails with it
            plane.stop()
            (plane_dir / "failed").write_text(f"Failed to start control plane '{cid}' due to: {exc}")

    def stop_operators(self, cid: str) -> None:
        with self.lock:
            sim = self.operators.pop(cid, None)
        if sim is not None:
            sim.stop()
            if sim.errors:
                (self.workdir / cid / "operators.log").write_text("\n".join(sim.errors) + "\n")

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        for cid in list(self.operators):
            self.stop_operators(cid)
        with self.lock:
            planes = [p for p in self.planes.values() if p is not None]
            self.planes.clear()
        for plane in planes:
            plane.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.kube / "broker.json").unlink()

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_broker(args: argparse.Namespace) -> int:
    """The detached broker process (``up --cluster-dir``): serve until SIGTERM."""
    broker = Broker(args.cluster_dir.resolve(), args.dir.resolve(), addresses=args.address, bind=args.bind,
                    upstream_host=args.upstream_host)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    broker.start()
    try:
        stop.wait()
    finally:
        broker.stop()
    return 0


def start_broker(args: argparse.Namespace) -> int:
    """Start the broker detached (DIR/broker.pid, DIR/broker.log); return once it serves."""
    args.dir.mkdir(parents=True, exist_ok=True)
    build()  # here, so a build failure is reported by `up`, not in the broker's log
    marker = args.cluster_dir / "kube" / "broker.json"
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    argv = [sys.executable, str(Path(__file__).resolve()), "broker", str(args.dir), "--cluster-dir",
            str(args.cluster_dir), "--bind", args.bind, "--upstream-host", args.upstream_host]
    for address in args.address:
        argv += ["--address", address]
    with open(args.dir / "broker.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (args.dir / "broker.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (args.dir / "broker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Failed to start control-plane broker '{args.dir}' due to: {tail}")
        time.sleep(0.1)
    print(marker)
    return 0


def stop_pid(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "broker"):  # broker: the detached process `up --cluster-dir` starts
        cmd = sub.add_parser(name, help="start a control plane in DIR and detach" if name == "up" else None)
        cmd.add_argument("dir", type=Path)
        cmd.add_argument("--address", action="append", default=[], help="extra certificate name/address")
        cmd.add_argument("--bind", default="127.0.0.1")
        cmd.add_argument("--node", action="append", default=[],
                         help="a KWOK node to add, Ready before `up` returns (without --cluster-dir)")
        cmd.add_argument("--cluster-dir", type=Path, help="start a broker instead: a control plane per "
                         "simulated MicroK8s cluster in this directory")
        cmd.add_argument("--upstream-host", default="127.0.0.1",
                         help="address the simulated nodes reach the API servers at (with --cluster-dir)")
    down = sub.add_parser("down", help="stop the control plane in DIR")
    down.add_argument("dir", type=Path)
    sub.add_parser("build", help="build (or reuse) the binaries; print their directory")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(build())
        return 0
    if args.cmd == "broker":
        return run_broker(args)
    if args.cmd == "up" and args.cluster_dir:
        return start_broker(args)
    if args.cmd == "up":
        plane = ControlPlane(args.dir.resolve(), addresses=args.address, bind=args.bind)
        try:
            plane.start()
            for node in args.node:
                plane.add_node(node)
            for node in args.node:
                plane.wait_node_ready(node)
        except Exception:
            plane.stop()
            raise
        print(plane.admin_kubeconfig)
        return 0
    pid_file = args.dir / "broker.pid"
    if pid_file.exists():
        stop_pid(int(pid_file.read_text()), timeout=60)
        pid_file.unlink()
    state = args.dir / "state.json"
    if not state.exists():
        return 0
    # One at a time, last started first, each killed when it outlives its grace period: SIGTERM to
    # all at once left kube-apiserver running for good once etcd was gone (leaked on CI machines).
    for pid in reversed(list(json.loads(state.read_text())["pids"].values())):
        stop_pid(pid, timeout=15)
    state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["POD_FAILED", "POD_RUNNING_NOT_READY", "Broker", "ControlPlane", "build", "fault_stage"]
