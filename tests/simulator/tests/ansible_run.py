# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""How the simulator-backed role and playbook tests run Ansible: the real `ansible-playbook` of
this venv with the checkout as labhub.platform, its PLAY RECAP parsed per host, and plain
requests to the Kubernetes API server a simulated cluster's kubeconfig points at (the harness'
real one, over TLS with the kubeconfig's client certificate)."""
from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def role_playbook(tmp_path: Path, name: str, role: str, hosts: str = "labhub_cluster") -> Path:
    """A one-play playbook applying `role` to `hosts`, written into tmp_path."""
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": name, "hosts": hosts, "gather_facts": False, "roles": [role]}]))
    return play


def ansible_playbook(tmp_path: Path, inventory: Path, playbook: Path, *args: str, timeout: int = 900,
                     env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ansible-playbook; return the process and {host: {"changed": n, "failed": n}} from its recap."""
    bindir = Path(sys.executable).parent
    full_env = dict(os.environ,
                    ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "ansible_collections"),
                    ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
                    ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_HOST_KEY_CHECKING="False",
                    **(env or {}))
    full_env["PATH"] = f"{bindir}:{full_env['PATH']}"
    proc = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(inventory), str(playbook), *args],
                          env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    recap = {}
    for line in proc.stdout.splitlines():
        match = RECAP.match(line)
        if match:
            recap[match.group(1)] = {"changed": int(match.group(3)), "failed": int(match.group(5))}
    return proc, recap


def api_request(kubeconfig: Path, method: str, path: str, body: dict | None = None) -> dict:
    """One request to the API server of the kubeconfig, as its user; the decoded answer."""
    config = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    context = None
    if server.startswith("https://"):
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "crt"), Path(tmp, "key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(str(cert), str(key))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30, context=context) as resp:  # noqa: S310 - test server
        return json.loads(resp.read())


def api_get(kubeconfig: Path, path: str) -> dict:
    """GET `path` from the API server of the kubeconfig, as its user."""
    return api_request(kubeconfig, "GET", path)


def add_fault_stage(kubeconfig: Path, stage: dict) -> dict:
    """A KWOK fault Stage (tests/harness/kube/controlplane.py fault_stage) in the cluster."""
    return api_request(kubeconfig, "POST", "/apis/kwok.x-k8s.io/v1alpha1/stages", stage)


def delete_fault_stage(kubeconfig: Path, name: str) -> dict:
    return api_request(kubeconfig, "DELETE", f"/apis/kwok.x-k8s.io/v1alpha1/stages/{name}")
