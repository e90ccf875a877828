# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Fixtures for tests that run against the SIMULATED snap/microk8s CLIs (tests/simulator).

A "node" here is a directory (LABHUB_SIM_ROOT) with its own node-local state; all nodes of a
test share one cluster directory, like the Molecule containers share a podman volume.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SIM = Path(__file__).resolve().parent.parent
REPO = SIM.parent.parent
MANIFEST = REPO / "files" / "bundle-manifest.yml"
sys.path.insert(0, str(REPO / "tests" / "harness" / "kube"))
from controlplane import Broker  # noqa: E402  pylint: disable=wrong-import-position
from operators import write_host  # noqa: E402  pylint: disable=wrong-import-position

#: The real chart archives (../shared/reference/charts, see its README): test data, never committed.
CHARTS = Path(os.environ.get("LABHUB_SHARED_REFERENCE", REPO.parent / "shared" / "reference")) / "charts"


class SimNode:
    def __init__(self, base: Path, name: str, address: str, cluster_dir: Path):
        self.name = name
        self.address = address
        self.root = base / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster_dir = cluster_dir
        self.env = {
            "LABHUB_SIM_ROOT": str(self.root),
            "LABHUB_SIM_HOSTNAME": name,
            "LABHUB_SIM_ADDRESS": address,
            "LABHUB_SIM_CLUSTER_DIR": str(cluster_dir),
            # each control-plane node's API port (the forwarder to its cluster's real API server):
            # any free port on loopback
            "LABHUB_SIM_API_PORT": "0",
            "LABHUB_SIM_API_BIND": "127.0.0.1",
            "LABHUB_SIM_API_ADDRESS": "127.0.0.1",
        }
        # A `snap` for this node: the simulator with the node's identity baked in.
        self.snap_cmd = self.root / "usr" / "local" / "bin" / "snap"
        self.snap_cmd.parent.mkdir(parents=True, exist_ok=True)
        exports = "".join(f"{k}='{v}'; export {k}\n" for k, v in self.env.items())
        self.snap_cmd.write_text(f"#!/bin/sh\n{exports}exec {SIM / 'snap'} \"$@\"\n")
        self.snap_cmd.chmod(0o755)

    @property
    def microk8s_cmd(self) -> Path:
        return self.root / "snap" / "bin" / "microk8s"

    def run(self, prog: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, **self.env)
        proc = subprocess.run([str(SIM / prog), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{prog} {' '.join(args)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc

    def snap(self, *args, **kw):
        return self.run("snap", *args, **kw)

    def microk8s(self, *args, **kw):
        return self.run("microk8s", *args, **kw)

    def status(self):
        return yaml.safe_load(self.microk8s("status", "--format", "yaml").stdout)

    def nodes(self):
        return json.loads(self.microk8s("kubectl", "get", "nodes", "-o", "json").stdout)["items"]

    def set_faults(self, **faults):
        path = self.root / "var" / "lib" / "labhub-sim" / "faults.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(faults))

    def node_state(self):
        path = self.root / "var" / "lib" / "labhub-sim" / "node.json"
        return json.loads(path.read_text()) if path.exists() else None

    def api_server(self):
        """{"pid", "port", "address", ...} of this node's API server port (the forwarder to its
        cluster's control plane, labhub_sim_kube.py), or None."""
        path = self.root / "var" / "lib" / "labhub-sim" / "apiserver.json"
        return json.loads(path.read_text()) if path.exists() else None

    def stop_api_server(self):
        info = self.api_server()
        if info:
            with contextlib.suppress(OSError):
                os.kill(int(info["pid"]), signal.SIGTERM)

    def install_microk8s(self, bundle: Path):
        """ack + install the manifest's snaps (base snap first, then microk8s --classic)."""
        snaps = yaml.safe_load(MANIFEST.read_text())["snaps"]
        snaps = [s for s in snaps if s["name"] != "microk8s"] + [s for s in snaps if s["name"] == "microk8s"]
        for snap in snaps:
            self.snap("ack", str(bundle / snap["assert"]))
        for snap in snaps:
            self.snap("install", str(bundle / snap["file"]), *(["--classic"] if snap["classic"] else []))

    def set_network(self, addresses, default=None):
        """The node's `hostname -I` (ip or ip/prefix, in order) and default-route address
        (labhub_sim.network_config)."""
        path = self.root / "var" / "lib" / "labhub-sim" / "network.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"addresses": list(addresses), "default": default or self.address}))


def hardware_facts(root: Path, nvidia_smi_path: Path | None = None) -> dict:
    """labhub.platform.hardware_facts on a fixture tree (the module run directly, as Ansible would)."""
    args = {"ANSIBLE_MODULE_ARGS": {"root": str(root), "nvidia_smi_path": str(nvidia_smi_path) if nvidia_smi_path else None}}
    args_file = root.parent / f"{root.name}-facts-args.json"
    args_file.write_text(json.dumps(args))
    proc = subprocess.run([sys.executable, str(REPO / "plugins" / "modules" / "hardware_facts.py"), str(args_file)],
                          env=dict(os.environ, PYTHONPATH=str(REPO / ".cache")), capture_output=True, text=True,
                          check=False, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"hardware_facts on {root} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["ansible_facts"]["labhub_hardware"]


def register_hardware(node: SimNode, root: Path, facts: dict | None = None) -> dict:
    """Tell the SIMULATED operator controllers the broker runs for this node's cluster
    (tests/harness/kube/operators.py) what hardware the node has: its fixture tree and the facts
    read from it. Returns the facts."""
    if facts is None:
        smi = root / "usr" / "bin" / "nvidia-smi"
        facts = hardware_facts(root, smi if smi.exists() else None)
    write_host(node.cluster_dir / "kube" / "hosts", node.name, root, facts)
    return facts


def add_chart(bundle: Path, name: str) -> Path:
    """The REAL chart archive ``name`` (../shared/reference/charts) where the bundle manifest puts it."""
    entry = next(c for c in yaml.safe_load(MANIFEST.read_text())["charts"] if c["name"] == name)
    dest = bundle / entry["file"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CHARTS / Path(entry["file"]).name, dest)
    return dest


def make_bundle(dest: Path) -> Path:
    """A bundle directory with SIMULATED snaps named as files/bundle-manifest.yml says."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    for snap in manifest["snaps"]:
        subprocess.run([sys.executable, str(SIM / "make_snap_fixture.py"), str(dest / "snaps"), snap["name"],
                        str(snap["revision"]), "--snap-file", str(dest / snap["file"]),
                        "--assert-file", str(dest / snap["assert"])], check=True, capture_output=True)
    return dest


@pytest.fixture
def sim_bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def sim_control_plane(tmp_path):
    """The REAL control planes (tests/harness/kube) the simulated MicroK8s serves as its Kubernetes
    (tests/simulator/labhub_sim_kube.py): a broker that starts one per simulated cluster, in the
    test's cluster directory."""
    with Broker(tmp_path / "cluster", tmp_path / "kube") as broker:
        yield broker


@pytest.fixture
def sim_nodes(tmp_path, sim_control_plane):
    """Factory: sim_nodes(n) -> [SimNode] sharing one cluster directory (and the real control plane)."""
    cluster_dir = tmp_path / "cluster"

    made = []

    def make(count, prefix="n"):
        nodes = [SimNode(tmp_path / "nodes", f"{prefix}{i + 1}", f"10.77.0.{i + 1}", cluster_dir)
                 for i in range(count)]
        made.extend(nodes)
        return nodes
    yield make
    for node in made:  # the forwarders are detached processes: stop them
        node.stop_api_server()
