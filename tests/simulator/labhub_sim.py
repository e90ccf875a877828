# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""SIMULATOR of the `snap` and `microk8s` command lines, for tests only.

snapd cannot run on the Labhub CI machines, so tests and Molecule scenarios run the roles against
this simulator. It is NOT MicroK8s: each cluster the simulated nodes form is served by a REAL
Kubernetes control plane that the harness' broker starts on demand (tests/harness/kube,
labhub_sim_kube.py: a control-plane node's :16443 forwards to it, Node objects for its members,
KWOK as their kubelets), and `microk8s kubectl` / `microk8s helm3` run the real kubectl and helm
against it. Without a broker serving LABHUB_SIM_CLUSTER_DIR, installing MicroK8s fails.
What it reproduces (see README.md next to this file for the details and the sources):

* the argument grammar of the commands Labhub uses (unknown flags fail like argparse /
  go-flags do, with the same exit codes),
* the output formats of MicroK8s' scripts/wrappers (status, add_token, join, leave,
  remove_node) and of snapd's `snap ack/install/list/refresh --hold/info/remove`,
* state kept across calls: node-local state under <root>/var/lib/labhub-sim/ and cluster-wide
  state in a directory shared by every node (LABHUB_SIM_CLUSTER_DIR, a podman volume in
  Molecule), guarded by a file lock,
* failures: unacknowledged snaps, classic snaps without --classic, expired or used join
  tokens, nodes that never become Ready (fault knob), `status --wait-ready --timeout`,
  removing the last control-plane voter, commands run on a worker node.

Environment:
  LABHUB_SIM_ROOT         prefix for every path the simulator touches (default "/")
  LABHUB_SIM_CLUSTER_DIR  shared cluster state (default <root>/var/lib/labhub-sim/cluster)
  LABHUB_SIM_HOSTNAME     node name (default: the hostname, lower-cased)
  LABHUB_SIM_ADDRESS      node address (default: the hostname's address, else 127.0.0.1)
  LABHUB_SIM_TIME_SCALE   multiply sleeps by this (default 1; tests may speed up)
Fault knobs: <root>/var/lib/labhub-sim/faults.json, read when the node installs MicroK8s or
joins a cluster: {"never_ready": true} (the node is never Ready), {"never_ready_after_join": true}
(Ready alone, never Ready once joined), {"ready_delay": 5} (Ready 5 s after install or join),
{"restart_downtime": 3} (a restarted kubelite's API answers again 3 s later).
Node networks: <root>/var/lib/labhub-sim/network.json {"addresses": [...], "default": ...}
(`hostname -I` and the default-route address; LABHUB_SIM_ADDRESSES also sets the addresses).
Conformance with MicroK8s 1.36, row by row with its sources: README.md next to this file.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

SIM_DIR = os.path.dirname(os.path.realpath(__file__))
# labhub_sim_kube.py imports this module as `labhub_sim`: make that the running one.
sys.modules.setdefault("labhub_sim", sys.modules[__name__])
if SIM_DIR not in sys.path:
    sys.path.insert(0, SIM_DIR)
# The MicroK8s track Labhub pins (files/bundle-manifest.yml: channel 1.36/stable) and the
# Kubernetes release the simulated snap reports (the harness' real control plane runs the same).
MICROK8S_TRACK = "1.36"
MICROK8S_VERSION = "v1.36.3"
MICROK8S_VERSION_FALLBACK = MICROK8S_VERSION
# build-scripts/components/containerd/version.sh at v1.36
CONTAINERD_VERSION = "v2.2.3"

# What the simulator knows about snaps it can install from a file: what snapd would read from
# meta/snap.yaml inside the squashfs (which the simulator cannot open).
SNAP_CATALOG = {
    # snap/snapcraft.yaml at v1.36: confinement classic, base core22
    "microk8s": {"version": MICROK8S_VERSION, "confinement": "classic", "type": "app",
                 "summary": "Kubernetes for workstations and appliances",
                 "publisher": "canonical", "license": "Apache-2.0", "base": "core22"},
    "core20": {"version": "20240227", "confinement": "strict", "type": "base",
               "summary": "Runtime environment based on Ubuntu 20.04",
               "publisher": "canonical", "license": "unset", "base": None},
    "core22": {"version": "20260225", "confinement": "strict", "type": "base",
               "summary": "Runtime environment based on Ubuntu 22.04",
               "publisher": "canonical", "license": "unset", "base": None},
}

# The core addons of the 1.36 track as `microk8s status` lists them: canonical/microk8s-core-addons
# addons.yaml (name, description, version) at the commit the v1.36 snap was built from (the
# snap clones the repository's main branch: build-scripts/addons/repositories.sh), sorted by
# repository then name like get_available_addons (scripts/wrappers/common/utils.py).
ADDONS = [
    ("cert-manager", "Cloud native certificate management", "1.19.1"),
    ("cis-hardening", "Apply CIS K8s hardening", "1.0.0"),
    ("community", "The community addons repository", ""),
    ("dns", "CoreDNS", "1.13.1"),
    ("gpu", "Alias to nvidia add-on", "25.10.0"),
    ("ha-cluster", "Configure high availability on the current node", "0.1.0"),
    ("helm", "Helm - the package manager for Kubernetes", "3.18.6"),
    ("helm3", "Helm 3 - the package manager for Kubernetes", "3.18.6"),
    ("host-access", "Allow Pods connecting to Host services smoothly", "1.0.0"),
    ("hostpath-storage", "Storage class; allocates storage from host directory", "1.5.0"),
    ("ingress", "Ingress controller for external access", "3.6.2"),
    ("kube-ovn", "An advanced network fabric for Kubernetes", "1.13.8"),
    ("mayastor", "OpenEBS MayaStor", "2.0.0-microk8s-1"),
    ("metallb", "Loadbalancer for your Kubernetes cluster", "0.15.2"),
    ("metrics-server", "K8s Metrics Server for API access to service metrics", "0.8.0"),
    ("minio", "MinIO object storage (DEPRECATED). This addon is deprecated and will be completely removed "
              "in the upcoming versions", "v7.1.1"),
    ("nvidia", "NVIDIA hardware (GPU and network) support", "gpu=25.10.0/network=25.7.0/microk8s-1"),
    ("observability", "A lightweight observability stack for logs, traces and metrics", "77.6.2"),
    ("prometheus", "Prometheus operator for monitoring and logging", "v0.8.0"),
    ("rbac", "Role-Based Access Control for authorisation", ""),
    ("registry", "Private image registry exposed on localhost:32000", "2.8.3"),
    ("rook-ceph", "Distributed Ceph storage using Rook", "1.18.7"),
    ("storage", "Alias to hostpath-storage add-on, deprecated", "1.5.0"),
]
ADDON_NAMES = [a[0] for a in ADDONS]
ADDON_REPOSITORY = "core"
# Enabled right after `snap install`: dns by the default launch configuration
# (microk8s-resources/microk8s.default.yaml), ha-cluster by its lock file, helm/helm3 because
# their check_status is the helm binary the snap ships.
DEFAULT_ENABLED = ["dns", "ha-cluster", "helm", "helm3"]
NOT_RUNNING = "microk8s is not running. Use microk8s inspect for a deeper inspection."
STOPPED_MSG = "microk8s is not running, try microk8s start"
WORKER_MSG = ("This MicroK8s deployment is acting as a node in a cluster.\n"
              "Please use the master node.")
MAX_VOTERS = 3
MAX_STANDBY = 2
CLUSTER_AGENT_PORT = 25000
DQLITE_PORT = 19001


class SimExit(Exception):
    def __init__(self, rc, msg=None):
        super().__init__(msg)
        self.rc = rc
        self.msg = msg


# -- paths and state -----------------------------------------------------------------------
def root():
    return os.environ.get("LABHUB_SIM_ROOT", "/")


def rpath(*parts):
    return os.path.join(root(), *[p.lstrip("/") for p in parts])


def node_dir():
    return rpath("var/lib/labhub-sim")


def cluster_dir():
    return os.environ.get("LABHUB_SIM_CLUSTER_DIR") or rpath("var/lib/labhub-sim/cluster")


def hostname():
    return (os.environ.get("LABHUB_SIM_HOSTNAME") or socket.gethostname()).lower()


def address():
    env = os.environ.get("LABHUB_SIM_ADDRESS")
    if env:
        return env
    try:
        addr = socket.gethostbyname(socket.gethostname())
        if not addr.startswith("127."):
            return addr
    except OSError:
        pass
    return "127.0.0.1"


def network_config():
    """Knob <root>/var/lib/labhub-sim/network.json: {"addresses": ["192.168.100.1/24", "10.77.0.1/24"],
    "default": "10.77.0.1"}: the node's `hostname -I` (in that order, optional prefix length) and
    the address of its default-route interface."""
    return _load(os.path.join(node_dir(), "network.json"), {})


def _with_prefix(item):
    text = str(item)
    if "/" in text:
        return text
    return text + ("/64" if ":" in text else "/24")


def host_networks():
    """Every address of the node as ip/prefix, in `hostname -I` order: network.json "addresses",
    else LABHUB_SIM_ADDRESSES (space separated), else the node's address (prefix /24 when none)."""
    raw = network_config().get("addresses") or os.environ.get("LABHUB_SIM_ADDRESSES", "").split() or [address()]
    return [_with_prefix(a) for a in raw]


def host_ips():
    """get_ips (microk8s-resources/actions/common/utils.sh): `hostname -I` without link-local."""
    return [n.split("/")[0] for n in host_networks() if not n.startswith("169.254.")]


def default_ip():
    """get_default_ip (actions/common/utils.sh): the default-route interface's address."""
    return network_config().get("default") or address()


def reachable(networks, target):
    """Whether a node with these ip/prefix networks can reach `target` (an address on one of them)."""
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        return False
    for net in networks:
        with contextlib.suppress(ValueError):
            if ip in ipaddress.ip_network(net, strict=False):
                return True
    return False


def sleep(seconds):
    time.sleep(seconds * float(os.environ.get("LABHUB_SIM_TIME_SCALE", "1")))


def _load(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def _save(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.%s.tmp" % (path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


_HELD: dict = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def locked(directory):
    """The cluster-wide flock; re-entrant within a thread (an inner `locked` is a no-op)."""
    key = (os.path.realpath(directory), threading.get_ident())
    with _HELD_GUARD:
        depth = _HELD.get(key, 0)
        _HELD[key] = depth + 1
    try:
        if depth:
            yield
            return
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        with _HELD_GUARD:
            _HELD[key] -= 1


def node_state():
    return _load(os.path.join(node_dir(), "node.json"),
                 {"assertions": [], "snaps": {}, "restarts": {}, "microk8s": None})


def save_node_state(state):
    _save(os.path.join(node_dir(), "node.json"), state)


def faults():
    return _load(os.path.join(node_dir(), "faults.json"), {})


def cluster_path(cid):
    return os.path.join(cluster_dir(), "clusters", "%s.json" % cid)


def load_cluster(cid):
    return _load(cluster_path(cid), None)


def save_cluster(cluster):
    _save(cluster_path(cluster["id"]), cluster)


def all_clusters():
    out = []
    folder = os.path.join(cluster_dir(), "clusters")
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                data = _load(os.path.join(folder, name), None)
                if data:
                    out.append(data)
    return out


def out(text=""):
    sys.stdout.write(text + "\n")


def err(text):
    sys.stderr.write(text + "\n")


# =========================================================================================
# snap
# =========================================================================================
def _parse_assertions(text):
    """Split an .assert file into assertions (header dicts). Bodies and signatures are kept out."""
    found = []
    for block in re.split(r"\n\s*\n", text.strip()):
        headers = {}
        for line in block.splitlines():
            match = re.match(r"^([a-z0-9-]+):\s?(.*)$", line)
            if match and not line.startswith(" "):
                headers[match.group(1)] = match.group(2)
        if "type" in headers:
            found.append(headers)
    return found


def sha3_384_b64(path):
    digest = hashlib.sha3_384()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


class SnapArgParser(argparse.ArgumentParser):
    """go-flags style errors: `error: unknown flag `x'` with exit code 1."""

    def error(self, message):
        match = re.search(r"unrecognized arguments: (\S+)", message)
        if match:
            flag = match.group(1).lstrip("-")
            raise SimExit(1, "error: unknown flag `%s'" % flag)
        raise SimExit(1, "error: %s" % message)


def snap_main(argv):
    if not argv:
        raise SimExit(1, "error: Please specify a command (try `snap help`)")
    cmd, rest = argv[0], argv[1:]
    handlers = {"ack": snap_ack, "install": snap_install, "list": snap_list, "refresh": snap_refresh,
                "info": snap_info, "remove": snap_remove, "restart": snap_restart,
                "services": snap_services, "version": snap_version}
    if cmd not in handlers:
        raise SimExit(1, 'error: unknown command "%s", see \'snap help\'.' % cmd)
    return handlers[cmd](rest)


def snap_version(argv):
    out("snap    2.63+sim\nsnapd   2.63+sim\nseries  16")
    return 0


def snap_ack(argv):
    parser = SnapArgParser(prog="snap ack", add_help=False)
    parser.add_argument("file")
    args = parser.parse_args(argv)
    try:
        with open(args.file) as handle:
            found = _parse_assertions(handle.read())
    except FileNotFoundError:
        raise SimExit(1, "error: cannot read assertion input: open %s: no such file or directory" % args.file)
    if not found:
        raise SimExit(1, "error: cannot assert: cannot decode assertion: assertion content/signature separator not found")
    state = node_state()
    have = {json.dumps(a, sort_keys=True) for a in state["assertions"]}
    for item in found:
        if json.dumps(item, sort_keys=True) not in have:
            state["assertions"].append(item)
    save_node_state(state)
    return 0


def _revision_for(state, digest):
    for item in state["assertions"]:
        if item.get("type") == "snap-revision" and item.get("snap-sha3-384") == digest:
            for decl in state["assertions"]:
                if decl.get("type") == "snap-declaration" and decl.get("snap-id") == item.get("snap-id"):
                    return item, decl
            return item, None
    return None, None


def _write_snap_wrapper(path, target_args):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # The node's identity (LABHUB_SIM_*) at install time is kept in the wrapper, like the real
    # snap's wrapper pins $SNAP and $SNAP_DATA, so `microk8s` works from any environment.
    exports = "".join("%s=%s; export %s\n" % (k, shlex.quote(v), k) for k, v in sorted(os.environ.items())
                      if k.startswith("LABHUB_SIM_"))
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n# SIMULATOR wrapper written by `snap install` (labhub tests)\n%s"
                     "exec %s \"$@\"\n" % (exports, " ".join(shlex.quote(a) for a in target_args)))
    os.chmod(path, 0o755)


def snap_install(argv):
    parser = SnapArgParser(prog="snap install", add_help=False)
    parser.add_argument("--classic", action="store_true")
    parser.add_argument("--dangerous", action="store_true")
    parser.add_argument("--channel")
    parser.add_argument("--revision")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    state = node_state()
    for name in args.names:
        if "/" not in name and not name.endswith(".snap"):
            # A store install: the simulated machine is offline like the air-gapped sites.
            raise SimExit(1, 'error: cannot install "%s": Post "https://api.snapcraft.io/v2/snaps/refresh": '
                          "dial tcp: lookup api.snapcraft.io: Temporary failure in name resolution" % name)
        if not os.path.isfile(name):
            raise SimExit(1, 'error: cannot open "%s": open %s: no such file or directory' % (name, name))
        digest = sha3_384_b64(name)
        rev, decl = _revision_for(state, digest)
        if rev is None or decl is None:
            if not args.dangerous:
                raise SimExit(1, 'error: cannot find signatures with metadata for snap "%s"' % name)
            snap_name = os.path.basename(name).split("_")[0]
            revision = "x1"
        else:
            snap_name = decl.get("snap-name")
            revision = rev.get("snap-revision")
        meta = SNAP_CATALOG.get(snap_name)
        if meta is None:
            raise SimExit(1, 'error: cannot install snap file: simulator has no metadata for snap "%s"' % snap_name)
        if meta["confinement"] == "classic" and not args.classic:
            raise SimExit(1, (
                "error: This revision of snap \"%s\" was published using classic confinement and thus may\n"
                "       perform arbitrary system changes outside of the security sandbox that snaps are\n"
                "       usually confined to, which may put your system at risk.\n\n"
                "       If you understand and want to proceed repeat the command including --classic.") % snap_name)
        if meta["base"] and meta["base"] not in state["snaps"]:
            raise SimExit(1, 'error: cannot perform the following tasks:\n- Ensure prerequisites for "%s" are '
                          'available (cannot install snap base "%s": Post "https://api.snapcraft.io/v2/snaps/refresh": '
                          "dial tcp: lookup api.snapcraft.io: Temporary failure in name resolution)"
                          % (snap_name, meta["base"]))
        prev = state["snaps"].get(snap_name)
        state["snaps"][snap_name] = {
            "revision": revision, "version": meta["version"], "type": meta["type"],
            "confinement": meta["confinement"], "sha3_384": digest,
            "held": bool(prev and prev.get("held")), "installed_at": time.time(),
            "tracking": "-", "publisher": meta["publisher"] if decl else "-",
        }
        save_node_state(state)
        if snap_name == "microk8s":
            m_install(state["snaps"][snap_name], prev)
        publisher = (" from Canonical**" if decl else "")
        out("%s %s%s installed" % (snap_name, meta["version"], publisher))
    return 0


def snap_list(argv):
    parser = SnapArgParser(prog="snap list", add_help=False)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    snaps = node_state()["snaps"]
    names = sorted(snaps)
    if args.names:
        missing = [n for n in args.names if n not in snaps]
        if missing:
            raise SimExit(1, "error: no matching snaps installed")
        names = [n for n in names if n in args.names]
    if not names:
        err("No snaps are installed yet. Try 'snap install hello-world'.")
        return 0
    rows = [("Name", "Version", "Rev", "Tracking", "Publisher", "Notes")]
    for name in names:
        info = snaps[name]
        notes = []
        if info["type"] == "base":
            notes.append("base")
        if info["confinement"] == "classic":
            notes.append("classic")
        if info.get("held"):
            notes.append("held")
        publisher = "canonical**" if info.get("publisher") == "canonical" else "-"
        rows.append((name, info["version"], str(info["revision"]), info.get("tracking", "-"), publisher,
                     ",".join(notes) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        out("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return 0


def snap_refresh(argv):
    parser = SnapArgParser(prog="snap refresh", add_help=False)
    parser.add_argument("--hold", nargs="?", const="forever")
    parser.add_argument("--unhold", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--channel")
    parser.add_argument("names", nargs="*")
    # go-flags: --hold takes an optional value only as --hold=VALUE.
    fixed = []
    for item in argv:
        fixed.append(item)
    if "--hold" in fixed:
        idx = fixed.index("--hold")
        fixed[idx] = "--hold=forever"
    args = parser.parse_args(fixed)
    state = node_state()
    if args.list:
        out("All snaps up to date.")
        return 0
    if args.hold is None and not args.unhold:
        raise SimExit(1, 'error: cannot refresh: Post "https://api.snapcraft.io/v2/snaps/refresh": dial tcp: '
                      "lookup api.snapcraft.io: Temporary failure in name resolution")
    if not args.names:
        raise SimExit(1, "error: the simulator only supports holding named snaps")
    for name in args.names:
        if name not in state["snaps"]:
            raise SimExit(1, 'error: snap "%s" is not installed' % name)
    for name in args.names:
        if args.unhold:
            state["snaps"][name]["held"] = False
            out('Removed general refresh hold of "%s"' % name)
        else:
            state["snaps"][name]["held"] = args.hold
            if args.hold == "forever":
                out('General refreshes of "%s" held indefinitely' % name)
            else:
                out('General refreshes of "%s" held until %s' % (name, args.hold))
    save_node_state(state)
    return 0


def snap_info(argv):
    parser = SnapArgParser(prog="snap info", add_help=False)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    snaps = node_state()["snaps"]
    for i, name in enumerate(args.names):
        if i:
            out("---")
        if name not in snaps:
            raise SimExit(1, 'error: no snap found for "%s"' % name)
        info = snaps[name]
        meta = SNAP_CATALOG[name]
        out("name:      %s" % name)
        out("summary:   %s" % meta["summary"])
        out("publisher: Canonical**")
        out("license:   %s" % meta["license"])
        out("description: |\n  %s" % meta["summary"])
        if name == "microk8s":
            out("commands:\n  - microk8s.add-node\n  - microk8s.config\n  - microk8s.ctr\n  - microk8s.disable\n"
                "  - microk8s.enable\n  - microk8s.join\n  - microk8s.kubectl\n  - microk8s.leave\n"
                "  - microk8s\n  - microk8s.remove-node\n  - microk8s.status")
        if info.get("held"):
            out("hold:      %s" % info["held"])
        out("refresh-date: %s" % time.strftime("%Y-%m-%d", time.gmtime(info["installed_at"])))
        kind = "classic" if info["confinement"] == "classic" else info["type"]
        out("installed:    %s (%s) 1MB %s" % (info["version"], info["revision"], kind))
    return 0


def snap_remove(argv):
    parser = SnapArgParser(prog="snap remove", add_help=False)
    parser.add_argument("--purge", action="store_true")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    state = node_state()
    for name in args.names:
        if name not in state["snaps"]:
            err('snap "%s" is not installed' % name)
            continue
        dependants = [n for n, i in state["snaps"].items() if SNAP_CATALOG.get(n, {}).get("base") == name]
        if dependants:
            raise SimExit(1, 'error: cannot remove "%s": snap "%s" is not removable: snap is being used by snap %s.'
                          % (name, name, ", ".join(dependants)))
        del state["snaps"][name]
        save_node_state(state)
        if name == "microk8s":
            m_uninstall()
            state = node_state()
        out("%s removed" % name)
    return 0


def snap_restart(argv):
    parser = SnapArgParser(prog="snap restart", add_help=False)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("services", nargs="+")
    args = parser.parse_args(argv)
    state = node_state()
    for svc in args.services:
        snap = svc.split(".")[0]
        if snap not in state["snaps"]:
            raise SimExit(1, 'error: snap "%s" not found' % snap)
        if snap == "microk8s" and svc != "microk8s" and svc not in MICROK8S_SERVICES:
            raise SimExit(1, 'error: snap "microk8s" has no service "%s"' % svc.split(".", 1)[1])
    for svc in args.services:
        record_restart(state, svc)
    save_node_state(state)
    out("Restarted.")
    return 0


def record_restart(state, svc):
    """Count a service restart and log it with its time in node.json ("restart_log"). A restart of
    kubelite (the API server on a control-plane node) makes this node's API unavailable for
    faults.json "restart_downtime" seconds (default 0), so callers must wait for it."""
    state["restarts"][svc] = state["restarts"].get(svc, 0) + 1
    state.setdefault("restart_log", []).append({"service": svc, "time": time.time()})
    downtime = float(faults().get("restart_downtime", 0))
    m = state.get("microk8s")
    if downtime > 0 and m and svc in ("microk8s", "microk8s.daemon-kubelite"):
        with locked(cluster_dir()):
            cluster = load_cluster(m["cluster_id"])
            me = _me(cluster) if cluster else None
            if me is not None:
                me["api_down_until"] = time.time() + downtime
                save_cluster(cluster)


MICROK8S_SERVICES = ["microk8s.daemon-apiserver-kicker", "microk8s.daemon-apiserver-proxy",
                     "microk8s.daemon-cluster-agent", "microk8s.daemon-containerd",
                     "microk8s.daemon-k8s-dqlite", "microk8s.daemon-kubelite"]


def snap_services(argv):
    state = node_state()
    if "microk8s" not in state["snaps"]:
        raise SimExit(1, 'error: snap "microk8s" not found')
    out("Service                               Startup  Current  Notes")
    for svc in MICROK8S_SERVICES:
        out("%-37s enabled  active   -" % svc)
    return 0


# =========================================================================================
# microk8s: files the snap lays down
# =========================================================================================
DEFAULT_ARGS = {
    "kubelet": ("--kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n"
                "--cert-dir=${SNAP_DATA}/certs\n"
                "--client-ca-file=${SNAP_DATA}/certs/ca.crt\n"
                "--anonymous-auth=false\n"
                "--root-dir=${SNAP_COMMON}/var/lib/kubelet\n"
                "--fail-swap-on=false\n"
                "--eviction-hard=\"memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi\"\n"
                "--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock\n"
                "--containerd=${SNAP_COMMON}/run/containerd.sock\n"
                "--node-labels=\"microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane\"\n"
                "--authentication-token-webhook=true\n"
                "--read-only-port=0\n"
                "--cluster-domain=cluster.local\n"
                "--cluster-dns=10.152.183.10\n"),
    "containerd": ("--config ${SNAP_DATA}/args/containerd.toml\n"
                   "--root ${SNAP_COMMON}/var/lib/containerd\n"
                   "--state ${SNAP_COMMON}/run/containerd\n"
                   "--address ${SNAP_COMMON}/run/containerd.sock\n"),
    "containerd-template.toml": (
        "# Use config version 2 to enable new configuration fields.\n"
        "version = 2\n"
        "oom_score = 0\n\n"
        "[grpc]\n  uid = 0\n  gid = 0\n  max_recv_message_size = 16777216\n  max_send_message_size = 16777216\n\n"
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n\n"
        "  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n"
        "  enable_selinux = false\n"
        "  sandbox_image = \"registry.k8s.io/pause:3.10\"\n"
        "  stats_collect_period = 10\n  enable_tls_streaming = false\n  max_container_log_line_size = 16384\n\n"
        "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
        "    snapshotter = \"${SNAPSHOTTER}\"\n    no_pivot = false\n"
        "    default_runtime_name = \"${RUNTIME}\"\n\n"
        "  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
        "    config_path = \"${SNAP_DATA}/args/certs.d\"\n"),
    "kube-apiserver": ("--cert-dir=${SNAP_DATA}/certs\n--service-cluster-ip-range=10.152.183.0/24\n"
                       "--authorization-mode=AlwaysAllow\n"
                       "--client-ca-file=${SNAP_DATA}/certs/ca.crt\n"
                       "--tls-cert-file=${SNAP_DATA}/certs/server.crt\n"
                       "--tls-private-key-file=${SNAP_DATA}/certs/server.key\n--secure-port=16443\n"),
    "kube-proxy": "--kubeconfig=${SNAP_DATA}/credentials/proxy.config\n--cluster-cidr=10.1.0.0/16\n",
    "certs.d/docker.io/hosts.toml": ("server = \"https://docker.io\"\n\n[host.\"https://registry-1.docker.io\"]\n"
                                     "  capabilities = [\"pull\", \"resolve\"]\n"),
    "certs.d/localhost:32000/hosts.toml": ("server = \"http://localhost:32000\"\n\n[host.\"http://localhost:32000\"]\n"
                                           "  capabilities = [\"pull\", \"resolve\"]\n"),
}


def snap_data():
    return rpath("var/snap/microk8s/current")


def lock_file(name):
    return os.path.join(snap_data(), "var", "lock", name)


# -- certificates (microk8s-resources/actions/common/utils.sh, certs/csr.conf.template) -------
# MicroK8s' certs/csr.conf.template at the 1.36 track: the API server certificate names
# kubernetes.* and 127.0.0.1/10.152.183.1; render_csr_conf replaces #MOREIPS with the node's
# addresses (IP.3, IP.4, ... skipping ids the template already uses).
CSR_CONF_TEMPLATE = """[ req ]
default_bits = 2048
prompt = no
default_md = sha256
req_extensions = req_ext
distinguished_name = dn

[ dn ]
C = GB
ST = Canonical
L = Canonical
O = Canonical
OU = Canonical
CN = 127.0.0.1

[ req_ext ]
subjectAltName = @alt_names

[ alt_names ]
DNS.1 = kubernetes
DNS.2 = kubernetes.default
DNS.3 = kubernetes.default.svc
DNS.4 = kubernetes.default.svc.cluster
DNS.5 = kubernetes.default.svc.cluster.local
IP.1 = 127.0.0.1
IP.2 = 10.152.183.1
#MOREIPS

[ v3_ext ]
authorityKeyIdentifier=keyid,issuer:always
basicConstraints=CA:FALSE
keyUsage=keyEncipherment,dataEncipherment,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=@alt_names
"""


def certs_dir():
    return os.path.join(snap_data(), "certs")


def openssl(*args):
    """Run the real openssl (MicroK8s runs $SNAP/openssl.wrapper); stdout as bytes."""
    binary = shutil.which("openssl")
    if not binary:
        raise SimExit(1, "simulator: the simulated MicroK8s needs the openssl command on this node")
    proc = subprocess.run([binary] + list(args), capture_output=True, check=False)
    if proc.returncode != 0:
        raise SimExit(1, "simulator: openssl %s failed: %s" % (args[0], proc.stderr.decode(errors="replace").strip()))
    return proc.stdout


def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return default


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.%s.tmp" % (path, os.getpid())
    with open(tmp, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_if_changed(path, text, mode=0o644):
    """_write ``text`` to ``path`` unless it already holds exactly that; True when written."""
    if _read(path) == text:
        return False
    _write(path, text, mode)
    return True


def render_csr_conf():
    """render_csr_conf: csr.conf.template with #MOREIPS replaced by one IP.<n> line per address."""
    template = _read(os.path.join(certs_dir(), "csr.conf.template"), CSR_CONF_TEMPLATE)
    ips = host_ips()
    if not ips or ips == ["127.0.0.1"]:
        return template.replace("#MOREIPS", "")
    used = set(re.findall(r"(?m)^IP\.(\d+)", template))
    lines, i = [], 3
    for ip in ips:
        while str(i) in used:
            i += 1
        lines.append("IP.%d = %s" % (i, ip))
        i += 1
    return template.replace("#MOREIPS", "\n".join(lines))


def gen_server_cert():
    """gen_server_cert: server.crt from server.key and csr.conf (req_ext/v3_ext names), signed by
    ca.crt/ca.key, 365 days."""
    d = certs_dir()

    def path(name):
        return os.path.join(d, name)
    openssl("req", "-new", "-sha256", "-key", path("server.key"), "-out", path("server.csr"),
            "-config", path("csr.conf"))
    openssl("x509", "-req", "-sha256", "-in", path("server.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
            "-CAcreateserial", "-out", path("server.crt"), "-days", "365", "-extensions", "v3_ext",
            "-extfile", path("csr.conf"))


def server_cert_check():
    """server_cert_check: the first 12 hex digits of the SHA-256 of server.crt in DER (the join
    URL's fingerprint)."""
    der = openssl("x509", "-in", os.path.join(certs_dir(), "server.crt"), "-outform", "der")
    return hashlib.sha256(der).hexdigest()[:12]


def produce_certs():
    """produce_certs at install: keys, a new self-signed CA (with a real control plane, the harness
    starts the cluster's API server with it), csr.conf rendered from the template and server.crt
    whenever csr.conf changes."""
    d = certs_dir()
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "csr.conf.template")):
        _write(os.path.join(d, "csr.conf.template"), CSR_CONF_TEMPLATE)
    for key in ("ca.key", "server.key"):
        if not os.path.exists(os.path.join(d, key)):
            openssl("genrsa", "-out", os.path.join(d, key), "2048")
    if not os.path.exists(os.path.join(d, "ca.crt")):
        openssl("req", "-x509", "-new", "-sha256", "-nodes", "-days", "3650", "-key", os.path.join(d, "ca.key"),
                "-subj", "/CN=10.152.183.1", "-out", os.path.join(d, "ca.crt"))
    rendered = render_csr_conf()
    _write(os.path.join(d, "csr.conf.rendered"), rendered)
    if _read(os.path.join(d, "csr.conf")) != rendered or not os.path.exists(os.path.join(d, "server.crt")):
        _write(os.path.join(d, "csr.conf"), rendered)
        gen_server_cert()


def ensure_server_ca():
    """ensure_server_ca (the apiserver-kicker on joined nodes): re-issue server.crt from csr.conf
    when it is not signed by the current ca.crt."""
    d = certs_dir()
    proc = subprocess.run([shutil.which("openssl") or "openssl", "verify", "-no-CAfile", "-no-CApath", "-partial_chain",
                           "-trusted", os.path.join(d, "ca.crt"), os.path.join(d, "server.crt")],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        gen_server_cert()
        return True
    return False


def _store_cert_check(cluster):
    me = _me(cluster) if cluster else None
    if me is not None and os.path.exists(os.path.join(certs_dir(), "server.crt")):
        me["cert_check"] = server_cert_check()
    return me


def m_install(info, prev):
    """What the microk8s snap's install hook does that Labhub depends on."""
    rev = str(info["revision"])
    data = rpath("var/snap/microk8s", rev)
    if not os.path.isdir(data):
        for rel, content in DEFAULT_ARGS.items():
            path = os.path.join(data, "args", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                handle.write(content)
        os.makedirs(os.path.join(data, "var", "lock"), exist_ok=True)
        os.makedirs(os.path.join(data, "var", "kubernetes", "backend"), exist_ok=True)
        os.makedirs(os.path.join(data, "credentials"), exist_ok=True)
    os.makedirs(rpath("var/snap/microk8s/common/run"), exist_ok=True)
    current = rpath("var/snap/microk8s/current")
    if os.path.islink(current):
        os.unlink(current)
    os.symlink(rev, current)
    for cmd in ["microk8s"] + ["microk8s.%s" % c for c in
                               ("kubectl", "status", "enable", "disable", "add-node", "join", "leave",
                                "remove-node", "config", "ctr", "helm3", "helm", "start", "stop", "inspect",
                                "refresh-certs", "version")]:
        target = [os.path.join(SIM_DIR, "microk8s")]
        if cmd != "microk8s":
            target.append(cmd.split(".", 1)[1])
        _write_snap_wrapper(rpath("snap/bin", cmd), target)
    cni = os.path.join(data, "args", "cni-network", "cni.yaml")
    if not os.path.exists(cni):
        import microk8s_objects as builtin  # pylint: disable=import-outside-toplevel
        os.makedirs(os.path.dirname(cni), exist_ok=True)
        with open(cni, "w") as handle:
            handle.write(builtin.cni_yaml())
    produce_certs()
    if prev is None:
        with locked(cluster_dir()):
            _new_standalone_cluster()
        _ready_delay_from_now()


def m_uninstall():
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    kube.forward_down()
    with locked(cluster_dir()):
        state = node_state()
        m = state.get("microk8s")
        if m:
            _drop_from_cluster(m["cluster_id"], hostname())
        state["microk8s"] = None
        save_node_state(state)
    shutil.rmtree(rpath("var/snap/microk8s"), ignore_errors=True)
    for name in os.listdir(rpath("snap/bin")) if os.path.isdir(rpath("snap/bin")) else []:
        if name == "microk8s" or name.startswith("microk8s."):
            os.unlink(rpath("snap/bin", name))


def _new_node_entry(control_plane, joining=False):
    f = faults()
    now = time.time()
    if f.get("never_ready") or (joining and f.get("never_ready_after_join")):
        ready_at = None
    else:
        ready_at = now + float(f.get("ready_delay", 0))
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": hostname(), "kubernetes.io/os": "linux",
        "microk8s.io/cluster": "true",
    }
    if control_plane:
        labels["node.kubernetes.io/microk8s-controlplane"] = "microk8s-controlplane"
    else:
        labels["node.kubernetes.io/microk8s-worker"] = "microk8s-worker"
    entry = {"name": hostname(), "address": address(), "control_plane": control_plane, "ready_at": ready_at,
             "joined_at": now, "dqlite": control_plane, "labels": labels, "taints": [],
             "unschedulable": False, "uid": str(uuid.uuid4()),
             # every address of the node (`hostname -I`) with its network, for joins and reachability
             "addresses": host_ips(), "networks": host_networks()}
    if os.path.exists(os.path.join(certs_dir(), "server.crt")):
        entry["cert_check"] = server_cert_check()
        entry["ca"] = {"crt": _read(os.path.join(certs_dir(), "ca.crt")),
                       "key": _read(os.path.join(certs_dir(), "ca.key"))}
    return entry


def _ready_delay_from_now():
    """The ready_delay fault counts from the end of the install (a real control plane may take a
    while to start; the node must still be not ready for ready_delay seconds afterwards)."""
    delay = faults().get("ready_delay")
    if not delay:
        return
    with locked(cluster_dir()):
        m = node_state().get("microk8s") or {}
        cluster = load_cluster(m.get("cluster_id"))
        me = _me(cluster) if cluster else None
        if me is not None and me.get("ready_at") is not None:
            me["ready_at"] = time.time() + float(delay)
            save_cluster(cluster)


def _new_standalone_cluster():
    cid = "%s-%s" % (hostname(), uuid.uuid4().hex[:8])
    cluster = {"id": cid, "cert_hash": secrets.token_hex(6), "tokens": [],
               "addons": {name: {"enabled": True, "args": []} for name in DEFAULT_ENABLED},
               "nodes": [_new_node_entry(True)], "created_at": time.time()}
    _kube_bootstrap(cluster)
    save_cluster(cluster)
    state = node_state()
    state["microk8s"] = {"cluster_id": cid, "role": "control-plane"}
    save_node_state(state)
    _write_backend(cluster)
    return cluster


# -- Kubernetes: the cluster's REAL control plane (labhub_sim_kube.py) -------------------------
def _kube_bootstrap(cluster):
    """Register the new cluster with the broker. Its REAL control plane starts when something first
    needs the cluster's API (_api_server_up), which then applies what a fresh MicroK8s holds
    (microk8s_objects.py): a node that joins another cluster first never starts one.
    Not like MicroK8s, whose kubelite starts at install; what a client sees is the same, since every
    way to reach the API (kubectl, config, helm3, the forwarder a config names) starts it first."""
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    kube.require_broker()
    kube.register_plane(cluster["id"], certs_dir())


def _real_bootstrap(cluster):
    """Start ``cluster``'s REAL control plane and serve the cluster from it: Node objects for its
    members, MicroK8s' own objects and its enabled addons applied (caller holds the lock)."""
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    import microk8s_objects as builtin  # pylint: disable=import-outside-toplevel
    cid = cluster["id"]
    kube.want_plane(cid)
    kube.wait_plane(cid)
    kube.sync_nodes(cluster)
    # what the real API server and controllers make themselves: the system namespaces, each
    # namespace's 'default' ServiceAccount, the 'kubernetes' Service
    own = {("Namespace", None, n) for n in ("default", "kube-system", "kube-public", "kube-node-lease")}
    own |= {("ServiceAccount", "default", "default"), ("Service", "default", "kubernetes")}
    objs = [o for o in builtin.install_objects()
            if (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) not in own]
    for name, entry in sorted(cluster["addons"].items()):
        if entry.get("enabled"):
            objs += builtin.addon_objects(name, entry.get("args"))
    kube.apply_objects(cid, objs)
    open(kube.ppath(cid, "bootstrapped"), "w").close()


def _api_server_up():
    """Like kubelite on a control-plane node, the API server runs while MicroK8s does: its
    cluster's real control plane (waited for, and bootstrapped once), the node's forwarder on
    :16443 and its client.config."""
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    m = node_state().get("microk8s") or {}
    cid = m.get("cluster_id")
    if m.get("role") == "worker" or cid is None:
        return None
    if not kube.bootstrapped(cid):
        with locked(cluster_dir()):
            cluster = load_cluster(cid)
            if cluster is not None and not kube.bootstrapped(cid):
                _real_bootstrap(cluster)
    kube.wait_plane(cid)
    kube.publish_node_cert(cid)
    info = kube.forward_up(cid)
    kube.write_client_config(info)
    return info


def _kube_addon(cluster, name, args, enable):
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    import microk8s_objects as builtin  # pylint: disable=import-outside-toplevel
    if not kube.bootstrapped(cluster["id"]):
        return  # the bootstrap applies the enabled addons
    kube.apply_objects(cluster["id"], builtin.addon_objects(name, args), delete=not enable)


def _drop_from_cluster(cid, name):
    cluster = load_cluster(cid)
    if cluster is None:
        return
    cluster["nodes"] = [n for n in cluster["nodes"] if n["name"] != name]
    if cluster["nodes"]:
        save_cluster(cluster)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cluster_path(cid))
        import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
        kube.release_plane(cid)


def dqlite_roles(cluster):
    """(address:19001, role) for every control-plane node still in dqlite, in join order."""
    result = []
    voters = standby = 0
    for node in cluster["nodes"]:
        if not node.get("dqlite"):
            continue
        if voters < MAX_VOTERS:
            role, voters = "voter", voters + 1
        elif standby < MAX_STANDBY:
            role, standby = "standby", standby + 1
        else:
            role = "spare"
        result.append(("%s:%d" % (node["address"], DQLITE_PORT), role, node))
    return result


def _write_backend(cluster):
    """${SNAP_DATA}/var/kubernetes/backend/cluster.yaml as dqlite keeps it (ID, Address, Role)."""
    path = os.path.join(snap_data(), "var", "kubernetes", "backend", "cluster.yaml")
    if not os.path.isdir(os.path.dirname(path)):
        return
    codes = {"voter": 0, "standby": 1, "spare": 2}
    lines = []
    for i, (addr, role, _node) in enumerate(dqlite_roles(cluster)):
        lines.append("- Address: %s\n  ID: %d\n  Role: %d" % (addr, 3297041220608546238 + i, codes[role]))
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def node_ready(node):
    return node.get("ready_at") is not None and node["ready_at"] <= time.time() and not node.get("left")


# =========================================================================================
# microk8s
# =========================================================================================
class MArgParser(argparse.ArgumentParser):
    """argparse as MicroK8s' wrappers use it: usage + error on stderr, exit code 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        raise SimExit(2, "%s: error: %s" % (self.prog, message))


def _current():
    """(state, microk8s node info, cluster) or SimExit when MicroK8s is not installed."""
    state = node_state()
    if "microk8s" not in state["snaps"] or not state.get("microk8s"):
        raise SimExit(127, "microk8s: command not found")
    m = state["microk8s"]
    cluster = load_cluster(m["cluster_id"])
    if cluster is None:
        raise SimExit(1, "simulator: cluster state %s is missing from %s" % (m["cluster_id"], cluster_dir()))
    if m["role"] != "worker":
        _write_backend(cluster)
    return state, m, cluster


def _me(cluster):
    for node in cluster["nodes"]:
        if node["name"] == hostname():
            return node
    return None


# What each command's wrapper prints on a worker (clustered.lock), and its exit code
# (microk8s-resources/wrappers/microk8s-<command>.wrapper); status, enable and disable use
# common/utils.py is_cluster_locked (WORKER_MSG, exit 1).
WORKER_WRAPPERS = {"add-node": ("Please use the microk8s add-node on the master.", 1),
                   "config": ("Please use the microk8s config on the master.", 0),
                   "kubectl": ("Please use the microk8s kubectl on the master.", 0),
                   "remove-node": ("Please use microk8s leave.", 1)}


def _exit_if_worker(m, command=None):
    if m["role"] == "worker":
        if command in WORKER_WRAPPERS:
            text, rc = WORKER_WRAPPERS[command]
            raise SimExit(rc, "This MicroK8s deployment is acting as a node in a cluster. " + text)
        raise SimExit(1, WORKER_MSG)


def microk8s_main(argv):
    if not argv:
        out("Available subcommands are:\n\tadd-node\n\tconfig\n\tctr\n\tdisable\n\tenable\n\thelm3\n\tjoin\n"
            "\tkubectl\n\tleave\n\tremove-node\n\tstatus\n\tversion")
        return 0
    cmd, rest = argv[0], argv[1:]
    handlers = {"status": m_status, "enable": m_enable, "disable": m_disable, "add-node": m_add_node,
                "join": m_join, "leave": m_leave, "remove-node": m_remove_node, "config": m_config,
                "kubectl": m_kubectl, "ctr": m_ctr, "version": m_version, "helm3": m_helm3, "helm": m_helm3,
                "refresh-certs": m_refresh_certs, "stop": m_stop, "start": m_start}
    if cmd not in handlers:
        raise SimExit(1, "'%s' is not a valid MicroK8s subcommand.\nAvailable subcommands are:\n\t%s"
                      % (cmd, "\n\t".join(sorted(handlers))))
    return handlers[cmd](rest)


def m_helm3(argv):
    """`microk8s helm3`: the real helm (built by the harness) against this cluster's control plane."""
    _state, m, cluster = _current()
    _exit_if_worker(m)
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    if _api_server_up() is None or kube.plane_info(cluster["id"]) is None:
        raise SimExit(1, "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:16443/version\": "
                      "dial tcp 127.0.0.1:16443: connect: connection refused")
    kube.exec_helm(argv)
    return 1  # not reached


def m_version(argv):
    state = node_state()
    info = state["snaps"].get("microk8s")
    if not info:
        raise SimExit(127, "microk8s: command not found")
    out("MicroK8s %s revision %s" % (info["version"], info["revision"]))
    return 0


def _stopped():
    """microk8s stop leaves $SNAP_DATA/var/lock/stopped.lock (microk8s-stop.wrapper)."""
    return os.path.exists(lock_file("stopped.lock"))


def _api_down(node):
    return float(node.get("api_down_until") or 0) > time.time()


def _is_ready(cluster):
    """is_cluster_ready (scripts/wrappers/common/utils.py): this node's API server answers
    (`kubectl get all` lists service/kubernetes) and some node of the cluster is Ready."""
    me = _me(cluster)
    if me is None or me.get("left") or _stopped() or _api_down(me):
        return False
    return any(node_ready(n) for n in cluster["nodes"])


def _addon_status(cluster, ready, only=None):
    """get_status: (enabled, disabled) addons, both empty while the cluster is not ready."""
    if not ready:
        return [], []
    selected = ADDONS
    if only is not None:  # get_addon_by_name: NAME or REPOSITORY/NAME
        repo, _sep, name = only.rpartition("/")
        selected = [a for a in ADDONS if a[0] == name and repo in ("", ADDON_REPOSITORY)]
    enabled = [a for a in selected if cluster["addons"].get(a[0], {}).get("enabled")]
    return enabled, [a for a in selected if a not in enabled]


def m_status(argv):
    """scripts/wrappers/status.py: the report, then exit 1 while the cluster is not ready."""
    parser = MArgParser(prog="microk8s status", description="Microk8s cluster status check.")
    parser.add_argument("--format", default="pretty", choices=["pretty", "yaml", "short"])
    parser.add_argument("-w", "--wait-ready", action="store_true")
    parser.add_argument("-t", "--timeout", type=int, default=0)
    parser.add_argument("-a", "--addon", default="all")
    parser.add_argument("--yaml", action="store_true")
    args = parser.parse_args(argv)
    state, m, cluster = _current()
    if _stopped():
        out(STOPPED_MSG)
        return 0
    _exit_if_worker(m)
    ready = _is_ready(cluster)
    if args.wait_ready and not ready:
        start = time.time()
        while True:
            cluster = load_cluster(m["cluster_id"])
            if _is_ready(cluster):
                ready = True
                break
            if args.timeout > 0 and time.time() - start >= args.timeout:
                break
            sleep(1)
    rc = 0 if ready else 1
    if args.addon != "all":
        enabled, _disabled = _addon_status(cluster, ready, args.addon)
        out("enabled" if enabled else "disabled")
        return rc
    enabled, disabled = _addon_status(cluster, ready)
    ha_enabled = bool(cluster["addons"].get("ha-cluster", {}).get("enabled"))
    roles = dqlite_roles(cluster)
    if args.format == "yaml":
        out("microk8s:")
        out("  running: %s" % ready)
        out("high-availability:")
        out("  enabled: %s" % ha_enabled)
        if ha_enabled:
            out("  nodes:")
            for addr, role, _n in roles:
                out("    - address: %s" % addr)
                out("      role: %s" % role)
        if ready:
            out("addons:")
            for group, status in ((enabled, "enabled"), (disabled, "disabled")):
                for name, desc, version in group:
                    out("  - name: %s" % name)
                    out("    repository: %s" % ADDON_REPOSITORY)
                    out("    description: %s" % desc)
                    out("    version: %s" % version)
                    out("    status: %s" % status)
        else:
            out("  message: %s" % NOT_RUNNING)
    elif args.format == "short":
        if not ready:
            out(NOT_RUNNING)
            return rc
        out("microk8s is running")
        out("addons:")
        for group, status in ((enabled, "enabled"), (disabled, "disabled")):
            for name, _d, _v in group:
                out("%s/%s: %s" % (ADDON_REPOSITORY, name, status))
    elif args.yaml:
        out("microk8s:\n  running: %s" % ready)
        if not ready:
            out("  message: " + NOT_RUNNING)
            return rc
        out("addons:")
        for group, status in ((enabled, "enabled"), (disabled, "disabled")):
            for name, _d, _v in group:
                out("  %s/%s: %s" % (ADDON_REPOSITORY, name, status))
    else:
        if not ready:
            out(NOT_RUNNING)
            return rc
        out("microk8s is running")
        voters = [a for a, r, _n in roles if r == "voter"]
        standby = [a for a, r, _n in roles if r == "standby"]
        if not ha_enabled:
            out("high-availability: no")
        else:
            out("high-availability: %s" % ("yes" if len(voters) > 2 else "no"))
            out("  datastore master nodes: %s" % (" ".join(voters) or "none"))
            out("  datastore standby nodes: %s" % (" ".join(standby) or "none"))
        out("addons:")
        if enabled:
            out("  enabled:")
            for name, desc, _v in enabled:
                out("    %-20s # (%s) %s" % (name, ADDON_REPOSITORY, desc))
        if disabled:
            out("  disabled:")
            for name, desc, _v in disabled:
                out("    %-20s # (%s) %s" % (name, ADDON_REPOSITORY, desc))
    return rc


def _parse_addon_specs(args):
    """`enable a b` or `enable a:arg1,arg2` or `enable a --flag x` (args only with one addon)."""
    specs = []
    i = 0
    while i < len(args):
        item = args[i]
        if item.startswith("-"):
            if not specs:
                raise SimExit(2, "Usage: microk8s enable [OPTIONS] ADDONS...\n"
                              "Try 'microk8s enable -h' for help.\n\nError: No such option: %s" % item)
            specs[-1][2].extend(args[i:])
            break
        name, _sep, colon_args = item.partition(":")
        specs.append([name, colon_args, []])
        i += 1
    if not specs:
        raise SimExit(2, "Usage: microk8s enable [OPTIONS] ADDONS...\nTry 'microk8s enable -h' for help.\n\n"
                      "Error: Missing argument 'ADDONS...'.")
    if any(s[2] for s in specs) and len(specs) > 1:
        raise SimExit(1, "Addon arguments are only allowed when enabling a single addon.")
    return specs


def _validate_addon_args(name, colon_args, flags):
    if name == "dns":
        # addons/dns/enable: $1 holds the comma-separated nameservers; each must be an address
        # `ip route get` accepts, else "Your input value (...) is not a valid and reachable IP address".
        servers = (colon_args or " ".join(flags[:1])).replace(",", " ").split()
        for server in servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise SimExit(1, "Enabling DNS\nYour input value (%s) is not a valid and reachable IP address"
                              % server)
        return servers
    if name == "hostpath-storage":
        if colon_args:
            raise SimExit(1, "invalid option -- %s" % colon_args)
        policy, default_class = "Delete", "true"
        i = 0
        while i < len(flags):
            flag = flags[i]
            key, eq, value = flag.partition("=")
            if not eq:
                if i + 1 >= len(flags):
                    raise SimExit(1, "getopt: option '%s' requires an argument" % flag)
                value = flags[i + 1]
                i += 1
            if key in ("-r", "--reclaim-policy"):
                policy = value
            elif key in ("-d", "--default-class"):
                default_class = value
            else:
                raise SimExit(1, "invalid option -- %s" % key)
            i += 1
        if policy not in ("Delete", "Retain"):
            raise SimExit(1, "\nPlease check submitted arguments.\nYou can use '--reclaim-policy' to set the "
                          "reclaim policy. Allowed values: Delete Retain. Defaults to 'Delete'.")
        if default_class not in ("true", "false"):
            raise SimExit(1, "\nPlease check submitted arguments.\nYou can use '--default-class' to set the "
                          "storage class as default. Allowed values: true false. Defaults to 'true'.")
        return ["--reclaim-policy=%s" % policy, "--default-class=%s" % default_class]
    if colon_args or flags:
        raise SimExit(1, "Addon %s does not take arguments (simulator)" % name)
    return []


ENABLE_TEXT = {
    "dns": lambda a: ("Enabling DNS\n%s\n"
                      "Applying manifest\nserviceaccount/coredns created\nconfigmap/coredns created\n"
                      "deployment.apps/coredns created\nservice/kube-dns created\n"
                      "clusterrole.rbac.authorization.k8s.io/coredns created\n"
                      "clusterrolebinding.rbac.authorization.k8s.io/coredns created\n"
                      "CoreDNS service deployed with IP address 10.152.183.10\nDNS is enabled"
                      % ("Will use %s as upstream nameservers" % "".join(" " + s for s in a) if a
                         else "Using host configuration from /etc/resolv.conf")),
    "hostpath-storage": lambda a: ("Enabling default storage class.\n"
                                   "WARNING: Hostpath storage is not suitable for production environments.\n"
                                   "         A hostpath volume can grow beyond the size limit set in the volume "
                                   "claim manifest.\n\ndeployment.apps/hostpath-provisioner created\n"
                                   "storageclass.storage.k8s.io/microk8s-hostpath created\n"
                                   "serviceaccount/microk8s-hostpath created\nStorage will be available soon."),
    "rbac": lambda a: "Enabling RBAC\nReconfiguring apiserver\nRestarting apiserver\nRBAC is enabled",
    "metrics-server": lambda a: ("Enabling Metrics-Server\nclusterrole.rbac.authorization.k8s.io/"
                                 "system:aggregated-metrics-reader created\ndeployment.apps/metrics-server created\n"
                                 "Metrics-Server is enabled"),
    "ingress": lambda a: ("Enabling Ingress\ningressclass.networking.k8s.io/public created\n"
                          "daemonset.apps/nginx-ingress-microk8s-controller created\nIngress is enabled"),
}


def m_enable(argv, enable=True):
    """scripts/wrappers/enable.py / disable.py and xable (common/utils.py)."""
    verb = "enable" if enable else "disable"
    if argv and argv[0] in ("-h", "--help"):
        out("Usage: microk8s %s [OPTIONS] ADDONS...\n\n  %s one or more addons." % (verb, verb.capitalize()))
        return 0
    specs = _parse_addon_specs(argv)
    with locked(cluster_dir()):
        state, m, cluster = _current()
        _exit_if_worker(m)
        if _stopped():
            err(STOPPED_MSG)
            return 1
        if not _is_ready(cluster):
            # MicroK8s waits 30 s (wait_for_ready) and runs the addon script anyway
            raise SimExit(1, NOT_RUNNING)
        for name, _c, _f in specs:
            if name not in ADDON_NAMES:
                err("Addon %s was not found in any repository" % name)
                return 1
        if len(specs) > 1:
            out("WARNING: Do not enable or disable multiple addons in one command.\n"
                "         This form of chained operations on addons will be DEPRECATED in the future.\n"
                "         Please, %s one addon at a time: 'microk8s %s <addon>'" % (verb, verb))
        for name, colon_args, flags in specs:
            entry = cluster["addons"].setdefault(name, {"enabled": False, "args": []})
            err("Infer repository %s for addon %s" % (ADDON_REPOSITORY, name))
            if bool(entry["enabled"]) == enable:
                # xable skips an addon already in the wanted state before running its script,
                # so arguments given with it are not applied
                out("Addon %s/%s is already %sd" % (ADDON_REPOSITORY, name, verb))
                continue
            if enable:
                resolved = _validate_addon_args(name, colon_args, flags)
                entry.update(enabled=True, args=resolved)
                if name == "storage":
                    cluster["addons"].setdefault("hostpath-storage", {})["enabled"] = True
                _kube_addon(cluster, name, resolved, True)
                text = ENABLE_TEXT.get(name)
                out(text(resolved if name == "dns" else []) if text else "Addon %s is enabled" % name)
            else:
                if colon_args or flags:
                    raise SimExit(1, "Addon arguments are not supported when disabling (simulator)")
                if name == "ha-cluster" and len([n for n in cluster["nodes"] if n.get("dqlite")]) > 1:
                    raise SimExit(1, "The node is part of a cluster. Please leave the cluster before disabling "
                                  "ha-cluster.")
                _kube_addon(cluster, name, entry.get("args"), False)
                entry.update(enabled=False, args=[])
                out("Disabling %s\n%s is disabled" % (name, name))
        save_cluster(cluster)
    return 0


def m_disable(argv):
    return m_enable(argv, enable=False)


def m_add_node(argv):
    """scripts/wrappers/add_token.py: one join line per address of `hostname -I` (get_ips), the
    default-route address first in the pretty and short formats; the fingerprint is the start of
    the SHA-256 of this node's server.crt (server_cert_check)."""
    parser = MArgParser(prog="microk8s add-node",
                        description="Produce a connection string for a node to join the cluster.")
    parser.add_argument("--token-ttl", "-l", type=int, default=-1)
    parser.add_argument("--token", "-t")
    parser.add_argument("--format", default="pretty",
                        choices=["pretty", "short", "token", "token-check", "json", "yaml"])
    args = parser.parse_args(argv)
    token = args.token if args.token is not None else secrets.token_hex(16)
    if len(token) < 32:
        out("Invalid token size.  It must be 32 characters long.")
        return 1
    with locked(cluster_dir()):
        state, m, cluster = _current()
        _exit_if_worker(m, "add-node")
        expiry = None if args.token_ttl == -1 else int(round(time.time())) + args.token_ttl
        cluster["tokens"].append({"token": token, "expiry": expiry, "used": False})
        me = _store_cert_check(cluster)
        if me is not None:
            me["addresses"], me["networks"] = host_ips(), host_networks()
        save_cluster(cluster)
    check = server_cert_check()
    ips, default = host_ips(), default_ip()
    port = CLUSTER_AGENT_PORT

    def line(ip):
        return "microk8s join %s:%d/%s/%s" % (ip, port, token, check)
    if args.format == "pretty":
        out("From the node you wish to join to this cluster, run the following:")
        out(line(default) + "\n")
        out("Use the '--worker' flag to join a node as a worker not running the control plane, eg:")
        out(line(default) + " --worker\n")
        out("If the node you are adding is not reachable through the default interface you can use one of the "
            "following:")
        for ip in ips:
            out(line(ip))
    elif args.format == "short":
        out(line(default))
        for ip in ips:
            if ip != default:
                out(line(ip))
    elif args.format == "token-check":
        out("%s/%s" % (token, check))
    elif args.format == "token":
        out(token)
    else:
        urls = ["%s:%d/%s/%s" % (ip, port, token, check) for ip in ips]
        if args.format == "json":
            out(json.dumps({"token": "%s/%s" % (token, check), "urls": urls}, indent=2))
        else:
            out("token: %s/%s\nurls:\n%s\n" % (token, check, "".join("- %s\n" % u for u in urls).rstrip("\n")))
    return 0


def _find_node_by_address(host):
    """(cluster, node) of the control-plane node with address `host` among its addresses."""
    for cluster in all_clusters():
        for node in cluster["nodes"]:
            if node.get("dqlite") and not node.get("left") and host in (node.get("addresses") or [node["address"]]):
                return cluster, node
    return None, None


def _connection_parts(connection):
    """get_valid_connection_parts (scripts/wrappers/common/cluster/utils.py)."""
    parts = connection.split("/")
    expected = "Expected format: <master_IP>:<master_PORT>/<token>[/<fingerprint>]"
    if len(parts) not in (2, 3) or len(parts[0].split(":")) != 2:
        raise ValueError(expected)
    host, port = parts[0].split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("Invalid master IP")
    if not port.isdigit():
        raise ValueError("Master PORT not a number")
    if not 1 <= int(port) <= 65535:
        raise ValueError("Master PORT not in range 1:65535")
    if len(parts[1]) < 32:
        raise ValueError("Cluster token size should be at least 32 bytes")
    if len(parts) == 3 and len(parts[2]) < 12:
        raise ValueError("Fingerprint should be at least 12 bytes")
    return host, port, parts[1], parts[2] if len(parts) == 3 else None


def m_join(argv):
    """scripts/wrappers/join.py (and the cluster agent's POST /v2/join, canonical/microk8s-cluster-agent
    pkg/api/v2/join.go)."""
    parser = MArgParser(prog="microk8s join", description="Join the node to a cluster")
    parser.add_argument("connection", help="<master>:<port>/<token>/<hash>")
    parser.add_argument("--worker", action="store_true", default=False)
    parser.add_argument("--controlplane", action="store_true", default=False)
    parser.add_argument("--skip-verify", action="store_true", default=False)
    parser.add_argument("--disable-low-memory-guard", action="store_true", default=False)
    args = parser.parse_args(argv)
    try:
        host, port, token, check = _connection_parts(args.connection)
    except ValueError as exc:
        out("Invalid connection: %s" % exc)
        return 1
    with locked(cluster_dir()):
        state, m, own = _current()
        if m["role"] == "worker" or len([n for n in own["nodes"] if n.get("dqlite")]) > 1:
            out("The node is already part of a cluster. Use 'microk8s leave' to leave the cluster.")
            return 1
        out("Contacting cluster at %s" % host)
        sys.stdout.flush()
        if not reachable(host_networks(), host):
            # http.client's connect() raises; join.py catches only HTTPException and SSLError
            sleep(1)
            err("OSError: [Errno 113] No route to host")
            return 1
        target, contacted = _find_node_by_address(host) if port == str(CLUSTER_AGENT_PORT) else (None, None)
        if target is None or target["id"] == own["id"]:
            err("ConnectionRefusedError: [Errno 111] Connection refused")
            return 1
        if check is not None and not args.skip_verify and check != contacted.get("cert_check", target.get("cert_hash")):
            out("Joining cluster failed. Could not verify the identity of %s. Use '--skip-verify' to skip server "
                "certificate check." % host)
            return 4
        now = time.time()
        match = None
        for item in target["tokens"]:
            if item["token"] != token:
                continue
            if item["expiry"] is None and item["used"]:
                continue
            if item["expiry"] is not None and item["expiry"] < now:
                continue
            match = item
            break
        if match is None:
            out("Connection failed. invalid token (500).")
            return 6
        if any(n["name"] == hostname() for n in target["nodes"]):
            out("Connection failed. The hostname (%s) of the joining node is already known to the cluster (500)."
                % hostname())
            return 6
        match["used"] = True
        if not args.worker and contacted.get("ca"):
            # join_dqlite_master_node stores the cluster's ca.crt/ca.key; the apiserver-kicker then
            # re-issues server.crt from csr.conf (ensure_server_ca)
            for name in ("crt", "key"):
                _write(os.path.join(certs_dir(), "ca." + name), contacted["ca"][name], 0o600 if name == "key" else 0o644)
            ensure_server_ca()
        entry = _new_node_entry(not args.worker, joining=True)
        target["nodes"].append(entry)
        save_cluster(target)
        import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
        # this node's API server now serves the cluster it joins (a worker runs none); its Node
        # object appears now if that cluster's control plane runs, else at its start
        kube.forward_down()
        if kube.bootstrapped(target["id"]):
            kube.sync_nodes(target)
            if not args.worker:
                kube.publish_node_cert(target["id"])
        # the node's own single-node cluster goes away
        _drop_from_cluster(own["id"], hostname())
        state["microk8s"] = {"cluster_id": target["id"], "role": "worker" if args.worker else "control-plane"}
        save_node_state(state)
        if args.worker:
            os.makedirs(os.path.dirname(lock_file("clustered.lock")), exist_ok=True)
            open(lock_file("clustered.lock"), "w").close()
            kube.forward_down()
        else:
            for cl in all_clusters():
                if cl["id"] == target["id"]:
                    _write_backend(cl)
    if args.worker:
        out("\nThe node has joined the cluster and will appear in the nodes list in a few seconds.\n\n"
            "This worker node gets automatically configured with the API server endpoints.\n"
            "If the API servers are behind a loadbalancer please set the '--refresh-interval' to '0s' in:\n"
            "    /var/snap/microk8s/current/args/apiserver-proxy\n"
            "and replace the API server endpoints with the one provided by the loadbalancer in:\n"
            "    /var/snap/microk8s/current/args/traefik/provider.yaml\n")
    else:
        out("Waiting for this node to finish joining the cluster. .. .. .. .  ")
        sleep(1)
    out("Successfully joined the cluster.")
    return 0


def m_leave(argv):
    parser = MArgParser(prog="microk8s leave")
    parser.parse_args(argv)
    with locked(cluster_dir()):
        state, m, cluster = _current()
        members = [n for n in cluster["nodes"] if not n.get("left")]
        if m["role"] != "worker" and len(members) <= 1:
            out("This MicroK8s deployment is not part of a cluster.")
            return 1
        me = _me(cluster)
        if me is not None:
            me["left"] = True
            me["dqlite"] = False
            me["ready_at"] = None
            import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
            kube.forward_down()
            if kube.bootstrapped(cluster["id"]):
                kube.kubelet_stopped(cluster["id"], me["name"])
        save_cluster(cluster)
        for cl in all_clusters():
            if cl["id"] == cluster["id"]:
                _write_backend(cl)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_file("clustered.lock"))
        _new_standalone_cluster()
    out("Generating new cluster certificates.\nWaiting for node to start. .\n"
        "Configuring services.\nStopping services.\nStarting services.")
    return 0


REFRESH_CERTS = {"ca.crt": "CA", "server.crt": "server", "front-proxy-client.crt": "front proxy client"}
REFRESH_USAGE = "Usage: microk8s refresh-certs [OPTIONS] [CA_DIR]\nTry 'microk8s refresh-certs -h' for help.\n\n"


def _refresh_args(argv):
    """click's grammar of refresh-certs: [CA_DIR] -u/--undo -c/--check -e/--cert CHOICE -h."""
    opts = {"ca_dir": None, "undo": False, "check": False, "cert": None, "help": False}
    i = 0
    while i < len(argv):
        item = argv[i]
        if item in ("-h", "--help"):
            opts["help"] = True
        elif item in ("-u", "--undo"):
            opts["undo"] = True
        elif item in ("-c", "--check"):
            opts["check"] = True
        elif item in ("-e", "--cert") or item.startswith("--cert="):
            if "=" in item:
                value = item.split("=", 1)[1]
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            else:
                raise SimExit(2, REFRESH_USAGE + "Error: Option '%s' requires an argument." % item)
            if value not in REFRESH_CERTS:
                raise SimExit(2, REFRESH_USAGE + "Error: Invalid value for '-e' / '--cert': '%s' is not one of %s."
                              % (value, ", ".join("'%s'" % c for c in REFRESH_CERTS)))
            opts["cert"] = value
        elif item.startswith("-"):
            raise SimExit(2, REFRESH_USAGE + "Error: No such option: %s" % item)
        elif opts["ca_dir"] is None:
            if not os.path.exists(item):
                raise SimExit(2, REFRESH_USAGE + "Error: Invalid value for '[CA_DIR]': Path '%s' does not exist." % item)
            opts["ca_dir"] = item
        else:
            raise SimExit(2, REFRESH_USAGE + "Error: Got unexpected extra argument (%s)" % item)
        i += 1
    return opts


def _days_left(path):
    text = openssl("x509", "-enddate", "-noout", "-in", path).decode().strip()
    end = time.mktime(time.strptime(text.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")) - time.timezone
    return int((end - time.time()) // 86400)


def m_refresh_certs(argv):
    """scripts/wrappers/refresh_certs.py: `--cert server.crt` backs up certs/ and credentials/,
    renders csr.conf from csr.conf.template (refresh_csr_conf), re-issues server.crt from it
    (gen_server_cert) and restarts kubelite and the cluster agent."""
    opts = _refresh_args(argv)
    if opts["help"]:
        out("Usage: microk8s refresh-certs [OPTIONS] [CA_DIR]\n\n  Replace the CA certificates with the ca.crt and "
            "ca.key found in CA_DIR.\n  Omit the CA_DIR argument and use the '--cert' flag to auto-generate a new CA"
            "\n  or any other certificate.\n\nOptions:\n  -c, --check  Check the expiration time of the installed "
            "certificates\n  -e, --cert   The certificate to be autogenerated, must be one of %s\n  -u, --undo   "
            "Revert the last refresh performed\n  -h, --help       Show this message and exit." % list(REFRESH_CERTS))
        return 0
    if opts["ca_dir"] is not None and (opts["undo"] or opts["check"] or opts["cert"]):
        out("Please do not set any options in combination with the CA_DIR.")
        return 1
    if sum(1 for k in ("undo", "check", "cert") if opts[k]) > 1:
        out("Please select only one of the options -c, -u or -e.")
        return 2
    state, m, cluster = _current()
    d = certs_dir()
    backup = os.path.join(os.path.realpath(snap_data()), "certs-backup") + "/"
    if opts["check"]:
        for name in ("ca.crt", "server.crt"):  # the simulator issues no front-proxy-client.crt
            out("The %s certificate will expire in %d days." % (REFRESH_CERTS[name], _days_left(os.path.join(d, name))))
        return 0
    if opts["undo"]:
        if not os.path.isdir(backup):
            out("No previous backup found")
            return 1
        shutil.rmtree(d)
        shutil.copytree(os.path.join(backup, "certs"), d)
        out("Restarting, please wait.")
    elif opts["ca_dir"] is not None or opts["cert"] not in (None, "server.crt"):
        raise SimExit(1, "simulator: refresh-certs %s is not simulated (only --cert server.crt, -c and -u)"
                      % (opts["ca_dir"] or "--cert " + opts["cert"]))
    elif opts["cert"] is None:
        out("Please use the '--cert' flag to select the certificate you need refreshed.\n\n"
            "Available certificate options:\n'server.crt': refreshes the server certificate\n"
            "'front-proxy-client.crt': refreshes the front proxy client certificate\n"
            "'ca.crt': refreshes the root CA and all certificates created from it.\n"
            "            Warning: refreshing the root CA requires nodes to leave and re-join the cluster")
        return 3
    else:
        out("Taking a backup of the current certificates under %s" % backup)
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(d, os.path.join(backup, "certs"))
        out("Creating new certificates")
        rendered = render_csr_conf()
        _write(os.path.join(d, "csr.conf.rendered"), rendered)
        _write(os.path.join(d, "csr.conf"), rendered)
        gen_server_cert()
    with locked(cluster_dir()):
        cluster = load_cluster(m["cluster_id"])
        if cluster is not None and _store_cert_check(cluster) is not None:
            save_cluster(cluster)
    state = node_state()
    for svc in ("kubelite", "cluster-agent"):
        if not opts["undo"]:
            out("Restarting service %s." % svc)
        record_restart(state, "microk8s.daemon-%s" % svc)
        save_node_state(state)
    if m["role"] != "worker":
        _api_server_up()  # the API server serves the new certificate
    return 0


def m_stop(argv):
    """microk8s-stop.wrapper: stops the services and leaves var/lock/stopped.lock."""
    if os.path.exists(lock_file("clustered.lock")):
        out("This MicroK8s deployment is acting as a node in a cluster.\nUse 'snap stop microk8s' to stop services "
            "on this node.")
        return 0
    _current()
    open(lock_file("stopped.lock"), "a").close()
    return 0


def m_start(argv):
    """microk8s-start.wrapper: removes var/lock/stopped.lock and starts the services."""
    if os.path.exists(lock_file("clustered.lock")):
        out("This MicroK8s deployment is acting as a node in a cluster.\nUse 'snap start microk8s' to start "
            "services on this node.")
        return 0
    _current()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock_file("stopped.lock"))
    return 0


def m_remove_node(argv):
    parser = MArgParser(prog="microk8s remove-node", description="Remove a node from the cluster")
    parser.add_argument("node", help="Name or IP of the node to remove")
    parser.add_argument("--force", action="store_true", default=False,
                        help="Force the node removal operation. (default: False)")
    args = parser.parse_args(argv)
    with locked(cluster_dir()):
        state, m, cluster = _current()
        _exit_if_worker(m, "remove-node")
        target = None
        for node in cluster["nodes"]:
            if args.node in (node["name"], node["address"]):
                target = node
        if target is None:
            out("Node %s does not exist in Kubernetes." % args.node)
            return 1
        if target["name"] == hostname():
            out("Removal failed. You cannot remove the node you are running the command from.")
            return 1
        remaining = [n for n in cluster["nodes"] if n.get("dqlite") and n is not target]
        if target.get("dqlite") and not remaining:
            out("Removal failed. Node %s is the last voter of the cluster datastore." % args.node)
            return 1
        if target.get("dqlite") and not args.force:
            out("Removal failed. Node %s is registered with dqlite. Please, run first 'microk8s leave' on the "
                "departing node. \nIf the node is not available anymore and will never attempt to join the "
                "cluster in the future use the '--force' flag \nto unregister the node while removing it."
                % args.node)
            return 1
        cluster["nodes"] = [n for n in cluster["nodes"] if n is not target]
        save_cluster(cluster)
        _write_backend(cluster)
        import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
        if kube.bootstrapped(cluster["id"]):
            kube.delete_node(cluster["id"], target["name"])
    return 0


def m_config(argv):
    parser = MArgParser(prog="microk8s config")
    parser.add_argument("-l", "--use-loopback", action="store_true")
    args = parser.parse_args(argv)
    _state, m, cluster = _current()
    _exit_if_worker(m, "config")
    info = _api_server_up() or {}
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    if not info:
        raise SimExit(1, "simulator: this node's cluster has no API server")
    server = "127.0.0.1" if args.use_loopback else info.get("address", address())
    out(kube.kubeconfig_text(cluster["id"], server, info["port"]).rstrip("\n"))
    return 0


def m_ctr(argv):
    real = shutil.which("ctr", path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    if not real:
        raise SimExit(1, "simulator: `microk8s ctr` needs a real ctr binary on this node (none in PATH)")
    sock = rpath("var/snap/microk8s/common/run/containerd.sock")
    os.execv(real, [real, "--address", sock, "--namespace", "k8s.io"] + list(argv))
    return 1  # not reached


# -- kubectl: the real kubectl against the cluster's control plane ------------------------------
def m_kubectl(argv):
    _state, m, cluster = _current()
    _exit_if_worker(m, "kubectl")
    import labhub_sim_kube as kube  # pylint: disable=import-outside-toplevel
    if _api_server_up() is None or kube.plane_info(cluster["id"]) is None:
        raise SimExit(1, "The connection to the server 127.0.0.1:16443 was refused - did you specify the "
                      "right host or port?")
    kube.exec_kubectl(argv)
    return 1  # not reached


def run(prog, argv):
    try:
        if prog == "snap":
            return snap_main(argv)
        if prog.startswith("microk8s."):
            return microk8s_main([prog.split(".", 1)[1]] + argv)
        return microk8s_main(argv)
    except BrokenPipeError:
        return 141
    except SimExit as exc:
        if exc.msg:
            kubectl = prog == "microk8s.kubectl" or (argv[:1] == ["kubectl"])
            # errors of snap and kubectl go to stderr; a wrapper's notice that exits 0 (e.g. kubectl
            # on a worker, microk8s-kubectl.wrapper) is an echo to stdout
            stream = sys.stderr if (prog == "snap" or kubectl or exc.rc in (2, 127)) and exc.rc != 0 else sys.stdout
            stream.write(exc.msg + "\n")
        return exc.rc


def main(argv=None):
    """``labhub_sim.py PROG [ARGS...]``: PROG is snap, microk8s or microk8s.<command>."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write("usage: labhub_sim.py snap|microk8s[.<command>] [ARGS...]\n")
        return 2
    return run(os.path.basename(argv[0]), argv[1:])


if __name__ == "__main__":
    sys.exit(main())
