# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATOR glue: the simulated MicroK8s' Kubernetes is the harness's REAL control planes.

Real MicroK8s runs kube-apiserver, the controllers and the scheduler inside kubelite on every
control-plane node, and a kubelet on every node; a node that installs MicroK8s is a one-node
cluster with its own CA until it joins another. Here the test harness runs a broker
(``Broker`` in tests/harness/kube/controlplane.py) that starts ONE real control plane (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, KWOK for kubelets) per simulated
cluster, on demand, in the shared cluster directory (``$LABHUB_SIM_CLUSTER_DIR/kube/``):

* ``broker.json``  a broker serves this directory (without one, installing MicroK8s fails)
* ``bin/kubectl``, ``bin/helm``  the real binaries behind ``microk8s kubectl`` and ``microk8s helm3``
* ``planes/<cluster id>/``  one cluster's control plane. The simulator writes ``ca.crt``/``ca.key``
  (the CA the cluster's first node made at install, as MicroK8s' ``produce_certs``) and ``want``;
  the broker starts a control plane with that CA and writes ``admin.crt``/``admin.key`` (what
  ``microk8s config`` prints: ``system:masters``) and, last, ``control-plane.json``
  ``{"upstream": "host:port"}`` (or ``failed`` with the reason). ``serving.crt``/``serving.key`` is
  the API server's certificate, re-issued here from the certificates of the cluster's nodes
  (below). ``release`` (written when the cluster is gone) stops it.

What stays simulated (this file): a plain TCP forwarder on each control-plane node at
``<node address>:16443`` (like kubelite's API server port) to its cluster's API server, and the
Node objects: a node that joins gets a Node registered with MicroK8s' labels and the annotation
``kwok.x-k8s.io/node: fake`` so KWOK keeps it Ready (no annotation = no kubelet: NotReady).

TLS: the API server's certificate carries the union of the subject alternative names of every
control-plane node's ``$SNAP_DATA/certs/server.crt`` in the cluster (MicroK8s: one certificate per
node from ``certs/csr.conf``; here one listener, so one certificate with all of them). A name that
no node's certificate carries is refused by the real TLS handshake, as on a real cluster.
Standard library only (runs on the simulated nodes with their python3).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import labhub_sim as sim  # noqa: E402  pylint: disable=wrong-import-position

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
API_PORT = 16443
#: MicroK8s' certs/csr.conf.template names (certs/csr.conf.template at the pinned track).
DEFAULT_SANS = ["DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster", "DNS:kubernetes.default.svc.cluster.local",
                "IP:127.0.0.1", "IP:10.152.183.1"]


def kube_dir():
    return os.path.join(sim.cluster_dir(), "kube")


def kpath(*parts):
    return os.path.join(kube_dir(), *parts)


def real():
    """True when a broker serves the cluster directory (REAL control planes)."""
    return os.path.exists(kpath("broker.json"))


def require_broker():
    """Fail the MicroK8s install clearly when no broker serves the cluster directory."""
    if not real():
        raise sim.SimExit(1, "simulator: no control-plane broker serves %s (start one with "
                          "tests/harness/kube/controlplane.py up DIR --cluster-dir %s)"
                          % (sim.cluster_dir(), sim.cluster_dir()))


def ppath(cid, *parts):
    """A path in cluster ``cid``'s control-plane directory."""
    return kpath("planes", cid, *parts)


def plane_info(cid):
    """control-plane.json of cluster ``cid``, or None while it has no running control plane."""
    if cid is None or os.path.exists(ppath(cid, "release")):
        return None
    try:
        with open(ppath(cid, "control-plane.json")) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def register_plane(cid, certs):
    """Give the broker cluster ``cid``'s CA (from ``certs``) without starting anything (caller holds
    the cluster lock). Its control plane starts when something first needs its API (want_plane):
    most one-node clusters a `snap install` makes are joined into another cluster before anything
    asks theirs, and each real control plane costs seconds of CPU to start."""
    os.makedirs(ppath(cid), exist_ok=True)
    for name in ("ca.crt", "ca.key"):
        with open(os.path.join(certs, name), "rb") as src:
            data = src.read()
        with open(ppath(cid, name), "wb") as dst:
            dst.write(data)
        os.chmod(ppath(cid, name), 0o600 if name.endswith(".key") else 0o644)


def want_plane(cid):
    """Ask the broker for cluster ``cid``'s control plane (registered before); does not wait:
    ``wait_plane``."""
    if not os.path.exists(ppath(cid, "ca.crt")):
        raise sim.SimExit(1, "simulator: cluster %s was never registered with the broker" % cid)
    if not os.path.exists(ppath(cid, "want")):
        open(ppath(cid, "want"), "w").close()


def bootstrapped(cid):
    """True once cluster ``cid``'s control plane runs and holds the cluster's objects and Nodes
    (labhub_sim._real_bootstrap); until then, changes to the cluster stay in its state file and the
    bootstrap applies them."""
    return os.path.exists(ppath(cid, "bootstrapped")) and not os.path.exists(ppath(cid, "release"))


def wait_plane(cid, timeout=240.0):
    """control-plane.json of cluster ``cid`` once the broker published it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = plane_info(cid)
        if data is not None:
            return data
        if os.path.exists(ppath(cid, "failed")):
            with open(ppath(cid, "failed")) as handle:
                raise sim.SimExit(1, "simulator: %s" % handle.read().strip())
        if not os.path.exists(ppath(cid, "want")) or os.path.exists(ppath(cid, "release")):
            raise sim.SimExit(1, "simulator: cluster %s has no control plane" % cid)
        time.sleep(0.1)
    raise sim.SimExit(1, "simulator: the harness started no control plane for cluster %s in %d s" % (cid, timeout))


def release_plane(cid):
    """The cluster is gone (its nodes joined another or uninstalled): its control plane stops."""
    if os.path.isdir(ppath(cid)):
        open(ppath(cid, "release"), "w").close()


def sync_nodes(cluster):
    """The Node objects of ``cluster`` in its control plane: one per member (KWOK as its kubelet
    unless the node never became Ready), none for anything else; SANs only of its control-plane
    nodes."""
    cid = cluster["id"]
    names = {n["name"] for n in cluster["nodes"]}
    status, body = request(cid, "GET", "/api/v1/nodes")
    if status == 200:
        for item in body.get("items", []):
            if item["metadata"]["name"] not in names:
                delete_node(cid, item["metadata"]["name"])
    for node in cluster["nodes"]:
        register_node(cid, node, kubelet=node.get("ready_at") is not None and not node.get("left"))
    if os.path.isdir(ppath(cid, "sans")):
        keep = {n["name"] for n in cluster["nodes"] if n.get("control_plane") and not n.get("left")}
        for name in os.listdir(ppath(cid, "sans")):
            if name[:-len(".json")] not in keep:
                os.unlink(ppath(cid, "sans", name))


# -- certificates -------------------------------------------------------------------------------
def _openssl(*args, cwd=None):
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise sim.SimExit(1, "simulator: openssl %s failed: %s" % (args[0], proc.stderr.strip()))
    return proc.stdout


def node_certs(cid):
    """$SNAP_DATA/certs/ca.{crt,key} from the cluster (as a joining node receives them) and a
    server.crt for this node unless one exists (csr.conf names + the node's address)."""
    certs = os.path.join(sim.snap_data(), "certs")
    os.makedirs(certs, exist_ok=True)
    for name in ("ca.crt", "ca.key"):
        with open(ppath(cid, name)) as handle:
            sim.write_if_changed(os.path.join(certs, name), handle.read(), 0o600 if name.endswith(".key") else 0o644)
    if not os.path.exists(os.path.join(certs, "server.crt")):
        issue_cert(certs, "server", DEFAULT_SANS + ["IP:%s" % a for a in sim_addresses()])
    return certs


def sim_addresses():
    """The node's addresses (`hostname -I`): LABHUB_SIM_ADDRESSES (space separated) or the address."""
    extra = os.environ.get("LABHUB_SIM_ADDRESSES", "").split()
    return extra or [sim.address()]


def issue_cert(directory, name, sans, ca_dir=None):
    """<name>.key/.crt signed by the CA in ca_dir (default: directory), with these SANs."""
    ca_dir = ca_dir or directory
    with tempfile.TemporaryDirectory(dir=directory) as tmp:  # same file system: atomic renames
        ext = os.path.join(tmp, "ext")
        with open(ext, "w") as handle:
            handle.write("basicConstraints=CA:FALSE\nkeyUsage=keyEncipherment,dataEncipherment,digitalSignature\n"
                         "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n" % ",".join(sans))
        key, csr = os.path.join(tmp, "k"), os.path.join(tmp, "csr")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                 "-subj", "/CN=127.0.0.1",
                 "-out", csr)
        crt = os.path.join(tmp, "crt")
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(ca_dir, "ca.crt"), "-CAkey",
                 os.path.join(ca_dir, "ca.key"), "-CAcreateserial", "-CAserial", os.path.join(tmp, "srl"),
                 "-days", "365", "-extfile", ext, "-out", crt)
        os.replace(key, os.path.join(directory, name + ".key"))
        os.chmod(os.path.join(directory, name + ".key"), 0o600)
        os.replace(crt, os.path.join(directory, name + ".crt"))


def _san_entries(names):
    out = []
    for name in names:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
            entry = "IP:" + name
        except OSError:
            entry = "DNS:" + name
        if entry not in DEFAULT_SANS:
            out.append(entry)
    return out


def cert_sans(path):
    text = _openssl("x509", "-in", path, "-noout", "-ext", "subjectAltName")
    sans = []
    for line in text.splitlines()[1:]:
        for item in line.split(","):
            item = item.strip()
            if item.startswith("IP Address:"):
                sans.append("IP:" + item.split(":", 1)[1])
            elif item.startswith("DNS:"):
                sans.append(item)
    return sans


def publish_node_cert(cid):
    """Record this control-plane node's server.crt names and re-issue the API server's
    certificate with the union of the names of the cluster's nodes; wait until it is served."""
    certs = node_certs(cid)
    sans = cert_sans(os.path.join(certs, "server.crt"))
    os.makedirs(ppath(cid, "sans"), exist_ok=True)
    path = ppath(cid, "sans", sim.hostname() + ".json")
    old = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        with open(path) as handle:
            old = json.load(handle)
    if old != sans:
        with open(path, "w") as handle:
            json.dump(sans, handle)
    sync_serving_cert(cid)


def sync_serving_cert(cid):
    host, _port = upstream(cid)
    union = list(DEFAULT_SANS) + _san_entries([host])
    if os.path.isdir(ppath(cid, "sans")):
        for name in sorted(os.listdir(ppath(cid, "sans"))):
            with open(ppath(cid, "sans", name)) as handle:
                for san in json.load(handle):
                    if san not in union:
                        union.append(san)
    current = cert_sans(ppath(cid, "serving.crt")) if os.path.exists(ppath(cid, "serving.crt")) else []
    if sorted(current) == sorted(union):
        return
    with tempfile.TemporaryDirectory(dir=ppath(cid)) as tmp:
        issue_cert(tmp, "serving", union, ca_dir=ppath(cid))
        os.replace(os.path.join(tmp, "serving.key"), ppath(cid, "serving.key"))
        os.replace(os.path.join(tmp, "serving.crt"), ppath(cid, "serving.crt"))
    _wait_served(cid, union)


def _wait_served(cid, sans, timeout=90.0):
    """kube-apiserver reloads its serving certificate from disk on its own: wait for it."""
    host, port = upstream(cid)
    want = sorted(sans)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError, ssl.SSLError):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection((host, port), timeout=2) as raw:
                with ctx.wrap_socket(raw) as tls:
                    der = tls.getpeercert(binary_form=True)
            with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
                pem.write(ssl.DER_cert_to_PEM_cert(der))
                pem.flush()
                if sorted(cert_sans(pem.name)) == want:
                    return
        time.sleep(0.5)
    raise sim.SimExit(1, "simulator: the API server did not load its new certificate in %d s" % timeout)


# -- the per-node forwarder (kubelite's API port) -----------------------------------------------
def upstream(cid):
    data = plane_info(cid) or {}
    host, _sep, port = str(data.get("upstream", "")).rpartition(":")
    return host, int(port or 0)


def _forward_state_path():
    return os.path.join(sim.node_dir(), "apiserver.json")


def forward_info():
    try:
        with open(_forward_state_path()) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def _pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    try:  # a zombie child of this process is not alive
        done, _status = os.waitpid(int(pid), os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def forward_up(cid):
    """Start this node's forwarder to cluster ``cid``'s API server unless it runs;
    {pid, port, address, bind, cluster}."""
    current = forward_info()
    if current and _pid_alive(current.get("pid")):
        if current.get("cluster") == cid:
            return current
        forward_down()
    bind_addr = os.environ.get("LABHUB_SIM_API_BIND", "0.0.0.0")  # nosec - a test network
    port = int(os.environ.get("LABHUB_SIM_API_PORT", str(API_PORT)))
    if port == 0:
        with socket.socket() as probe:
            probe.bind((bind_addr, 0))
            port = probe.getsockname()[1]
    address = os.environ.get("LABHUB_SIM_API_ADDRESS") or sim.address()
    state = {"port": port, "address": address, "bind": bind_addr, "url": "https://%s:%d" % (address, port),
             "cluster": cid}
    os.makedirs(sim.node_dir(), exist_ok=True)
    log = os.path.join(sim.node_dir(), "apiserver-forward.log")
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            grandchild = os.fork()
            if grandchild != 0:
                sim._save(_forward_state_path(), dict(state, pid=grandchild))  # pylint: disable=protected-access
                os._exit(0)  # pylint: disable=protected-access
            devnull = os.open(os.devnull, os.O_RDONLY)
            logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(devnull, 0)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            os.execv(sys.executable, [sys.executable, os.path.realpath(__file__), "forward",
                                      "%s:%d" % (bind_addr, port), ppath(cid, "control-plane.json")])
        finally:
            os._exit(1)  # pylint: disable=protected-access
    os.waitpid(pid, 0)
    state = forward_info()
    _wait_listening(state)
    return state


def _wait_listening(state, timeout=10.0):
    host = "127.0.0.1" if state.get("bind") in (None, "0.0.0.0") else state["bind"]  # nosec - loopback probe
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            with socket.create_connection((host, int(state["port"])), timeout=1):
                return
        time.sleep(0.05)
    raise sim.SimExit(1, "simulator: the API forwarder did not listen on %s:%s" % (host, state["port"]))


def forward_down():
    state = forward_info()
    if state and state.get("pid"):
        with contextlib.suppress(OSError):
            os.kill(int(state["pid"]), signal.SIGTERM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_forward_state_path())


def serve_forward(listen, info_path):
    """Accept on ``listen`` and pipe each connection to the real API server (plain TCP: TLS and
    client authentication happen end to end with the real kube-apiserver)."""
    host, _sep, port = listen.rpartition(":")
    with open(info_path) as handle:
        up_host, _s, up_port = json.load(handle)["upstream"].rpartition(":")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(64)

    def pipe(client):
        try:
            upstream_sock = socket.create_connection((up_host, int(up_port)), timeout=10)
        except OSError:
            client.close()
            return
        upstream_sock.settimeout(None)
        socks = [client, upstream_sock]
        try:
            while True:
                readable, _w, _x = select.select(socks, [], [])
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream_sock if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream_sock.close()

    while True:
        client, _addr = server.accept()
        threading.Thread(target=pipe, args=(client,), daemon=True).start()


# -- kubeconfig, requests ---------------------------------------------------------------------
def _b64(path):
    with open(path, "rb") as handle:
        return base64.b64encode(handle.read()).decode()


def kubeconfig_text(cid, server_host, port):
    """What `microk8s config` prints: the cluster CA, the server, the admin client certificate."""
    return ("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: %s\n"
            "    server: https://%s:%s\n  name: microk8s-cluster\ncontexts:\n- context:\n"
            "    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\ncurrent-context: microk8s\n"
            "kind: Config\npreferences: {}\nusers:\n- name: admin\n  user:\n"
            "    client-certificate-data: %s\n    client-key-data: %s\n"
            % (_b64(ppath(cid, "ca.crt")), server_host, port, _b64(ppath(cid, "admin.crt")),
               _b64(ppath(cid, "admin.key"))))


def client_config_path():
    return os.path.join(sim.snap_data(), "credentials", "client.config")


def write_client_config(state):
    sim.write_if_changed(client_config_path(), kubeconfig_text(state["cluster"], "127.0.0.1", state["port"]), 0o600)


def request(cid, method, path, body=None, content_type="application/json"):
    """One admin request straight to cluster ``cid``'s API server: (status, decoded body)."""
    host, port = upstream(cid)
    ctx = ssl.create_default_context(cafile=ppath(cid, "ca.crt"))
    ctx.check_hostname = False  # the upstream address may be one the nodes' certificates lack
    ctx.load_cert_chain(ppath(cid, "admin.crt"), ppath(cid, "admin.key"))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("https://%s:%d%s" % (host, port, path), data=data, method=method,
                                 headers={"Content-Type": content_type, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:  # nosec - test API
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# -- nodes ------------------------------------------------------------------------------------
def register_node(cid, entry, capacity=None, kubelet=True):
    """The Node object a joining node's kubelet registers (MicroK8s' labels; KWOK is its kubelet)."""
    caps = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    caps.update(capacity or {})
    annotations = {KWOK_ANNOTATION: "fake"} if kubelet else {}
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": entry["name"], "labels": dict(entry["labels"]), "annotations": annotations},
            "spec": {},
            "status": {"capacity": caps, "allocatable": caps,
                       "addresses": [{"type": "InternalIP", "address": entry["address"]},
                                     {"type": "Hostname", "address": entry["name"]}]}}
    if not kubelet:
        # a kubelet that registers while its node is not ready (the fault knobs: e.g. no CNI yet)
        # posts Ready=False; nothing renews it, so the real node lifecycle controller turns it
        # Unknown after the grace period
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        node["status"]["conditions"] = [{
            "type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now}]
    status, body = request(cid, "POST", "/api/v1/nodes", node)
    if status == 409:
        status, body = request(cid, "PATCH", "/api/v1/nodes/%s" % entry["name"],
                               {"metadata": {"labels": dict(entry["labels"]),
                                             "annotations": {KWOK_ANNOTATION: "fake" if kubelet else None}}},
                               "application/merge-patch+json")
    if status not in (200, 201):
        raise sim.SimExit(1, "simulator: could not register node %s: %s %s" % (entry["name"], status, body))


def kubelet_stopped(cid, name):
    """The node's kubelet stops (leave): nothing renews its lease any more, so the real node
    lifecycle controller marks it NotReady after the grace period. KWOK keeps renewing the lease
    of every node it once managed until that Node is deleted (kwok v0.8.0
    pkg/kwok/controllers/node_controller.go watchResources: only a Deleted event releases it), so
    the Node is re-created as it was, without the KWOK annotation."""
    status, node = request(cid, "GET", "/api/v1/nodes/%s" % name)
    if status != 200:
        return
    meta = node["metadata"]
    meta.get("annotations", {}).pop(KWOK_ANNOTATION, None)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        meta.pop(key, None)
    delete_node(cid, name)
    for _attempt in range(50):
        status, body = request(cid, "POST", "/api/v1/nodes", node)
        if status != 409:  # 409 while the old object is still being deleted
            break
        time.sleep(0.1)
    if status not in (200, 201):
        raise sim.SimExit(1, "simulator: could not re-create node %s: %s %s" % (name, status, body))


def delete_node(cid, name):
    status, body = request(cid, "DELETE", "/api/v1/nodes/%s" % name)
    if status not in (200, 404):
        raise sim.SimExit(1, "simulator: could not delete node %s: %s %s" % (name, status, body))


# -- objects MicroK8s applies, the real kubectl and helm -----------------------------------------
def kubectl_bin():
    return kpath("bin", "kubectl")


def helm_bin():
    return kpath("bin", "helm")


def apply_objects(cid, objs, delete=False):
    """Apply (server side) or delete MicroK8s' own manifests with the real kubectl."""
    if not objs:
        return
    host, port = upstream(cid)
    admin = ppath(cid, "admin.kubeconfig")
    if not os.path.exists(admin):
        with open(admin + ".tmp", "w") as handle:
            handle.write(kubeconfig_text(cid, host, port))
        os.chmod(admin + ".tmp", 0o600)
        os.replace(admin + ".tmp", admin)
    argv = [kubectl_bin(), "--kubeconfig", admin]
    if delete:
        argv += ["delete", "--ignore-not-found", "--wait=false", "-f", "-"]
    else:
        argv += ["apply", "--server-side", "--force-conflicts", "--field-manager=microk8s", "-f", "-"]
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    rest = [o for o in objs if o["kind"] != "CustomResourceDefinition"]
    batches = [crds, rest] if not delete else [rest, crds]
    for batch in batches:
        if not batch:
            continue
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": batch})
        proc = subprocess.run(argv, input=doc, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise sim.SimExit(1, "simulator: kubectl %s of MicroK8s' objects failed: %s"
                              % ("delete" if delete else "apply", proc.stderr.strip()))
        if batch is crds and not delete:
            names = ["crd/%s" % o["metadata"]["name"] for o in crds]
            subprocess.run([kubectl_bin(), "--kubeconfig", admin, "wait", "--for=condition=Established",
                            "--timeout=60s"] + names, capture_output=True, text=True, check=True)


def exec_kubectl(argv):
    os.execv(kubectl_bin(), [kubectl_bin(), "--kubeconfig", client_config_path()] + list(argv))


def exec_helm(argv):
    env = dict(os.environ, KUBECONFIG=client_config_path(), HELM_CACHE_HOME=os.path.join(sim.node_dir(), "helm", "cache"),
               HELM_CONFIG_HOME=os.path.join(sim.node_dir(), "helm", "config"),
               HELM_DATA_HOME=os.path.join(sim.node_dir(), "helm", "data"))
    os.execve(helm_bin(), [helm_bin()] + list(argv), env)


def main(argv):
    if len(argv) == 3 and argv[0] == "forward":
        signal.signal(signal.SIGTERM, lambda *args: os._exit(0))  # pylint: disable=protected-access
        serve_forward(argv[1], argv[2])
        return 0
    sys.stderr.write("usage: labhub_sim_kube.py forward HOST:PORT CONTROL_PLANE_JSON\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
