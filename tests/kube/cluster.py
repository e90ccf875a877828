"""A rendered Labhub site (sites.py) on a real control plane: KWOK nodes from the hardware
fixtures, MicroK8s' hostpath storage class, the roles' objects applied and their charts installed
with real Helm through the same module the roles call (kubernetes.core.helm), and the SIMULATED
operator controllers (tests/harness/kube/operators.py) where an operator image would act."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controlplane import ControlPlane, build
from operators import Host, OperatorSimulator
from sites import CHART_FILES, REPO, Site, ansible_env, node_object

BIN = build() / "bin"


def helm_env(home: Path, plane: ControlPlane) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CONFIG", "CACHE", "DATA"):
        env[f"HELM_{name}_HOME"] = str(home / name.lower())
    env["KUBECONFIG"] = str(plane.admin_kubeconfig)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class SiteCluster:
    plane: ControlPlane
    site: Site
    home: Path
    sim: OperatorSimulator = field(init=False)
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        hosts = {self.site.node_names[h]: Host(self.site.node_names[h], self.site.trees[h], self.site.hardware[h])
                 for h in self.site.trees}
        self.sim = OperatorSimulator(self.plane, hosts)

    # -- commands --------------------------------------------------------------------------------
    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN / "helm"), *args], env=helm_env(self.home, self.plane),
                              capture_output=True, text=True, timeout=600, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run([str(BIN / "kubectl"), f"--kubeconfig={self.plane.admin_kubeconfig}", *args],
                              input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def helm_module(self, **params: Any) -> dict[str, Any]:
        """kubernetes.core.helm as the roles call it (binary_path, kubeconfig, chart_ref, values_files,
        wait/atomic/timeout), run by ansible-playbook on the controller."""
        return self.helm_modules([params])[0]

    def helm_modules(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several kubernetes.core.helm tasks, in order, in one ansible-playbook run."""
        tasks = [{"name": f"helm {i}", "kubernetes.core.helm": {
            "binary_path": str(BIN / "helm"), "kubeconfig": str(self.plane.admin_kubeconfig),
            "release_state": "present", **params}, "ignore_errors": True} for i, params in enumerate(calls)]
        play = self.home / f"helm-{time.monotonic_ns()}.yml"
        play.write_text(yaml.safe_dump([{"name": "helm", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
        env = {**ansible_env(), **{k: v for k, v in helm_env(self.home, self.plane).items() if k.startswith("HELM_")},
               "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
        proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                               "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
                              env=env, capture_output=True, text=True, timeout=900, check=False)
        try:
            report = json.loads(proc.stdout[proc.stdout.find("{"):])
            results = [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]
        except (ValueError, KeyError, IndexError) as err:
            raise AssertionError(f"kubernetes.core.helm gave no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from err
        assert len(results) == len(calls), results
        return results

    def get(self, path: str) -> dict[str, Any]:
        status, body = self.plane.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def items(self, path: str, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        return self.get(path + query).get("items") or []

    def wait(self, what: str, predicate: Any, timeout: float = 90, interval: float = 0.3) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; simulator: {self.sim.errors[-3:]} "
                             f"{self.sim.log[-5:]}")

    # -- the site's cluster ----------------------------------------------------------------------
    def create_nodes(self) -> None:
        """One KWOK node per host, with the labels and taints the roles give it (nodes,
        gpu_operator, network_operator; applied by the roles as Node patches after the join)."""
        for i, (host, name) in enumerate(sorted(self.site.node_names.items())):
            node = node_object(name, self.site.hardware[host], self.site.node_labels.get(name, {}),
                               self.site.node_taints.get(name, []), f"10.20.{i // 200}.{10 + i % 200}")
            status, body = self.plane.request("POST", "/api/v1/nodes", node)
            assert status == 201, body
        for name in self.site.node_names.values():
            self.plane.wait_node_ready(name)

    def hostpath_storage(self) -> None:
        """MicroK8s' hostpath-storage addon's StorageClass (canonical/microk8s-core-addons
        addons/hostpath-storage/storage.yaml: microk8s-hostpath, provisioner microk8s.io/hostpath,
        WaitForFirstConsumer) and, in place of its provisioner, pre-made volumes the real PV
        controller and scheduler bind."""
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
             "metadata": {"name": "microk8s-hostpath"}, "provisioner": "microk8s.io/hostpath",
             "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"},
            *[{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"hostpath-{i}"},
               "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "microk8s-hostpath", "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": f"/var/snap/microk8s/common/default-storage/test-{i}"}}}
              for i in range(3)]]))

    def apply_hub_objects(self) -> None:
        """roles/jupyterhub/tasks/apply.yml: the rendered manifests, in file order, before helm."""
        docs = [self.site.hub_manifests[name] for name in sorted(self.site.hub_manifests)]
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def install(self, chart: str, release: str, namespace: str, *, atomic: bool, timeout: str,
                create_namespace: bool) -> dict[str, Any]:
        start = time.monotonic()
        result = self.helm_module(name=release, chart_ref=str(CHART_FILES[chart]), release_namespace=namespace,
                                  create_namespace=create_namespace, values_files=[str(self.site.values_file(chart))],
                                  wait=True, atomic=atomic, timeout=timeout)
        self.timings[f"install {chart}"] = time.monotonic() - start
        assert not result.get("failed"), result.get("msg") or result
        return result

    def deployment_available(self, namespace: str, name: str) -> bool:
        status, body = self.plane.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        return status == 200 and any(c["type"] == "Available" and c["status"] == "True"
                                     for c in body.get("status", {}).get("conditions") or [])

    def daemonset_ready(self, namespace: str, name: str) -> bool:
        """What kubernetes.core.k8s_info wait: true checks for a DaemonSet (module_utils/k8s/waiter.py
        daemonset_ready): desired == current == numberReady == updated, observed generation."""
        status, ds = self.plane.request("GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}")
        if status != 200:
            return False
        st = ds.get("status") or {}
        return (st.get("observedGeneration") == ds["metadata"].get("generation")
                and st.get("desiredNumberScheduled", -1) == st.get("currentNumberScheduled")
                == st.get("numberReady") == st.get("updatedNumberScheduled", 0))

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        return self.items(f"/api/v1/namespaces/{namespace}/pods", selector)

    def node(self, name: str) -> dict[str, Any]:
        return self.get(f"/api/v1/nodes/{name}")

    def release_images(self, release: str, namespace: str) -> set[str]:
        """Every image of the release's manifests and hooks (helm get manifest / hooks)."""
        text = self.helm("get", "manifest", release, "-n", namespace).stdout
        text += "\n---\n" + self.helm("get", "hooks", release, "-n", namespace).stdout
        found: set[str] = set()

        def walk(obj: Any) -> None:  # the containers of every pod template (not CR fields named image)
            if isinstance(obj, dict):
                for key, value in obj.items():
                    if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(value, list):
                        found.update(c["image"] for c in value if isinstance(c, dict) and "image" in c)
                    walk(value)
            elif isinstance(obj, list):
                for value in obj:
                    walk(value)
        for doc in yaml.safe_load_all(text):
            walk(doc)
        return found

    def history(self, release: str, namespace: str) -> list[dict[str, Any]]:
        return json.loads(self.helm("history", release, "-n", namespace, "-o", "json").stdout)
