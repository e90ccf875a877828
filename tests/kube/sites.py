"""Labhub sites for the real-Helm tests: an inventory rendered through the roles' own code paths,
and KWOK nodes made from the hardware fixture trees (issue 11).

``render_site()`` copies an inventory into a temporary directory, points each host at a hardware
fixture tree (tests/unit/fixtures/hardware) and runs ONE ansible-playbook that

1. gathers each host's hardware with the real ``labhub.platform.hardware_facts`` module on its tree
   (what roles/preflight does on a real node);
2. imports ``playbooks/render.yml``: the jupyterhub role's render path, the same templates and
   validation as the real install (values.yaml and manifests/, Secrets included);
3. runs ``labhub.platform.gpu_operator`` in render-only mode (gpu_operator_render_dir): the chart
   values and the node labels the role would apply;
4. runs ``labhub.platform.network_operator``'s validate and build tasks: the chart values and the
   NicClusterPolicy the role would apply (the role has no render mode; the unit tests read the
   same facts, tests/unit/test_calico_network_operator_render.py);
5. runs ``labhub.platform.nodes``' input step (its labels and taints per node) in check mode.

No cluster is contacted by the playbook. The tests then install the charts with real Helm.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import hardware_trees  # noqa: E402  pylint: disable=wrong-import-position

CHARTS = Path(os.environ.get("LABHUB_SHARED_REFERENCE", REPO.parent / "shared" / "reference")) / "charts"
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
BUNDLE_REFS = {image["ref"] for image in MANIFEST["images"]}
#: Chart archive of each chart entry of the bundle manifest, from the shared reference data
#: (the bundle holds the published archives under the same names).
CHART_FILES = {c["name"]: CHARTS / Path(c["file"]).name for c in MANIFEST["charts"]}

# Secrets an inventory keeps in its vault (inventories/example/group_vars/all/*.yml): test values.
VAULT = {
    "vault_jupyterhub_oidc_client_secret": "oidc-client-secret-for-the-kube-tests",
    "vault_portal_database_password": "Zq8rT2vLx9WcN4bKm7Hs",
    "vault_portal_token": "6f1c9e2ab7d34f08a1c5e9b2d7f3a6c4",
    "vault_portal_cookie_secret": "e7a2c5f9b1d84e3a96c0f2b7d5a8e1c3",
}

PLAYBOOK = """
- name: Hardware facts of every node from its fixture tree (as roles/preflight gathers them)
  hosts: labhub_cluster
  gather_facts: false
  tasks:
    - name: labhub.platform.hardware_facts on the tree
      labhub.platform.hardware_facts:
        root: "{{ kubetest_tree }}"
        nvidia_smi_path: "{{ kubetest_tree }}/usr/bin/nvidia-smi"
    - name: Keep them for the test
      ansible.builtin.copy:
        dest: "{{ kubetest_out }}/hardware.json"
        content: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'labhub_hardware'))) | to_json }}"
        mode: "0600"
      delegate_to: localhost
      run_once: true

- name: The hub, through playbooks/render.yml
  ansible.builtin.import_playbook: "@REPO@/playbooks/render.yml"

- name: GPU Operator values and node labels (the role in render-only mode)
  hosts: labhub_cluster
  gather_facts: false
  tasks:
    - name: GPU Operator
      ansible.builtin.include_role:
        name: labhub.platform.gpu_operator
        public: true
      when: gpu_operator_enabled | bool
    - name: What the role's wait step waits for (tasks/wait.yml) and its smoke-test Job (tasks/smoke.yml)
      ansible.builtin.copy:
        dest: "{{ kubetest_out }}/gpu_operator.json"
        mode: "0600"
        content: >-
          {{ {'namespace': gpu_operator_namespace, 'release': gpu_operator_release_name,
              'deployment': gpu_operator_deployment,
              'daemonsets': gpu_operator_daemonsets | selectattr('when') | map(attribute='name') | list,
              'runtime_class': gpu_operator_runtime_class,
              'smoke_job': lookup('ansible.builtin.template', '@REPO@/roles/gpu_operator/templates/smoke-job.yaml.j2')
                           | from_yaml} | to_json }}
      delegate_to: localhost
      run_once: true
      when: gpu_operator_enabled | bool and gpu_operator_run | default(false) | bool

- name: Network Operator values and NicClusterPolicy (the role's validate and build steps)
  hosts: labhub_cluster
  gather_facts: false
  tasks:
    - name: Validate
      ansible.builtin.include_role:
        name: labhub.platform.network_operator
        tasks_from: validate
        public: true
    - name: Node names (as tasks/main.yml names them)
      ansible.builtin.set_fact:
        __network_operator_node: >-
          {{ network_operator_node_name if network_operator_node_name | length > 0
             else ((labhub_hardware | default({})).hostname | default(inventory_hostname, true) | lower) }}
      when: __network_operator_ib_hosts | length > 0
    - name: Build
      ansible.builtin.include_role:
        name: labhub.platform.network_operator
        tasks_from: build
      when: __network_operator_ib_hosts | length > 0
    - name: Keep them for the test
      ansible.builtin.copy:
        dest: "{{ kubetest_out }}/network_operator.json"
        mode: "0600"
        content: >-
          {{ {'ib_hosts': __network_operator_ib_hosts,
              'nodes': dict(__network_operator_ib_hosts | zip(__network_operator_ib_hosts
                            | map('extract', hostvars, '__network_operator_node'))),
              'labels': network_operator_node_labels,
              'namespace': network_operator_namespace, 'release': network_operator_release_name,
              'values': __network_operator_values | default(none),
              'policy': __network_operator_policy | default(none)} | to_json }}
      delegate_to: localhost
      run_once: true

- name: Node labels and taints (labhub.platform.nodes, its input step, no cluster)
  hosts: labhub_cluster
  gather_facts: false
  tasks:
    - name: Nodes
      ansible.builtin.import_role:
        name: labhub.platform.nodes
        tasks_from: preflight
    - name: This node's name, labels and taints
      ansible.builtin.set_fact:
        kubetest_node: ["{{ __nodes_name }}", "{{ __nodes_desired_labels }}", "{{ nodes_taints }}"]
    - name: Keep them for the test
      ansible.builtin.copy:
        dest: "{{ kubetest_out }}/nodes.json"
        mode: "0600"
        content: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'kubetest_node'))) | to_json }}"
      delegate_to: localhost
      run_once: true
"""


@dataclass
class Site:
    """One rendered inventory: what the roles would apply, and the hardware of each host."""

    name: str
    root: Path
    trees: dict[str, Path]                     # host -> materialised hardware tree
    hardware: dict[str, dict[str, Any]]        # host -> labhub_hardware (hardware_facts)
    node_names: dict[str, str]                 # host -> Kubernetes node name
    node_labels: dict[str, dict[str, str]]     # node -> labels the roles set (nodes, gpu_operator, network_operator)
    node_taints: dict[str, list[dict[str, str]]]
    control_plane: list[str]                   # hosts of labhub_control_plane
    hub_values: dict[str, Any]
    hub_manifests: dict[str, dict[str, Any]]   # file name -> object
    gpu_values: dict[str, Any] | None
    gpu_plan: dict[str, Any] | None
    gpu_role: dict[str, Any] | None                # what roles/gpu_operator waits for, its smoke-test Job
    network: dict[str, Any] = field(default_factory=dict)
    ingress: list[dict[str, Any]] = field(default_factory=list)  # role ingress' objects (when on)
    monitoring: list[dict[str, Any]] = field(default_factory=list)  # role monitoring's objects (when on)
    cached: bool = False

    @property
    def hub_namespace(self) -> str:
        return self.hub_manifests["00-namespace.yaml"]["metadata"]["name"]

    def values_file(self, chart: str) -> Path:
        """The values file as the role writes it on the node (to_nice_yaml, sorted keys)."""
        values = {"jupyterhub": self.hub_values, "gpu-operator": self.gpu_values,
                  "network-operator": self.network.get("values")}[chart]
        path = self.root / f"{chart}-values.yaml"
        path.write_text("---\n" + yaml.safe_dump(values, sort_keys=True, width=120))
        return path

    def node_of(self, host: str) -> str:
        return self.node_names[host]


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = REPO / ".venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env.setdefault("ANSIBLE_ROLES_PATH", str(REPO / "roles"))
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="false",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_FORKS="10", ANSIBLE_PIPELINING="True")
    return env


#: Rendered sites are kept here by a digest of everything the render reads (as build.sh keeps the
#: binaries by go.sum): the collection's roles, plugins, playbooks and files, the inventory, the
#: hardware trees, this file, the variables and the Ansible version. LABHUB_KUBE_SITES_CACHE=0
#: renders every time. The cache is the machine's (LABHUB_CACHE_DIR, default
#: ${XDG_CACHE_HOME:-~/.cache}/labhub, as build.sh's), so a fresh clone on a warm machine reuses it.
CACHE = Path(os.environ.get("LABHUB_CACHE_DIR")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labhub") / "kube-sites"
SKIP_DIRS = {".venv", "__pycache__", "node_modules", ".pytest_cache", ".credentials", ".runs"}


def _digest(paths: list[Path], extra: Any) -> str:
    sha = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for base in paths:
        files = [base] if base.is_file() else []
        for top, dirs, names in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            files.extend(Path(top) / n for n in sorted(names))
        for f in files:
            sha.update(str(f.relative_to(REPO) if f.is_relative_to(REPO) else f.relative_to(base)).encode())
            sha.update(f.read_bytes())
    return sha.hexdigest()[:16]


def start_render(name: str, root: Path, inventory: Path, trees: dict[str, str],
                 extra_vars: dict[str, Any] | None = None,
                 host_vars: dict[str, dict[str, Any]] | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start rendering ``inventory`` (copied under ``root``); ``trees`` maps every host of
    labhub_cluster to a hardware fixture tree name. Returns the process and what finish_render needs."""
    root.mkdir(parents=True, exist_ok=True)
    inv = root / "inventory"
    shutil.copytree(inventory, inv, ignore=shutil.ignore_patterns(".credentials", ".runs"))
    out = root / "out"
    (out / "render").mkdir(parents=True, exist_ok=True)
    hw_root = root / "hw"
    materialised: dict[str, Path] = {}
    for tree in sorted(set(trees.values())):
        materialised[tree] = Path(hardware_trees.materialise(tree, str(hw_root / tree)))
    # A second inventory source: each host runs locally on its fixture tree, with its own node name
    # (the fixtures' hostnames repeat: every DGX tree is dgx-01).
    hosts = {}
    for host, tree in trees.items():
        node = host if host != "localhost" else (materialised[tree] / "etc" / "hostname").read_text().strip()
        hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "ansible_become": False, "microk8s_node_name": node,
                       "kubetest_tree": str(materialised[tree]), **(host_vars or {}).get(host, {})}
    (root / "test-hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    play = root / "render-site.yml"
    play.write_text(PLAYBOOK.replace("@REPO@", str(REPO)))
    # The nodes role's input step checks that the admin kubeconfig exists; nothing reads it here.
    kubeconfig = root / "kubeconfig.placeholder"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                                          "contexts": []}))
    variables = {"labhub_render_dir": str(out / "render"), "labhub_render_portal": False,
                 "labhub_kubeconfig": str(kubeconfig),
                 "kubetest_out": str(out), "labhub_bundle_dir": str(root / "bundle"),
                 "jupyterhub_render_secrets": True, **VAULT, **(extra_vars or {})}
    (root / "extra-vars.json").write_text(json.dumps(variables))
    ansible_version = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "--version"],
                                     capture_output=True, text=True, check=False).stdout.splitlines()[:1]
    key = _digest([REPO / d for d in ("roles", "plugins", "playbooks", "files")]
                  + [inventory, Path(__file__), Path(hardware_trees.__file__)]
                  + [Path(hardware_trees.FIXTURES) / t for t in sorted(set(trees.values()))],
                  {"trees": trees, "host_vars": host_vars,
                   "vars": {k: v for k, v in variables.items() if not str(v).startswith(str(root))},
                   "ansible": ansible_version})
    cached = CACHE / f"{name}-{key}"
    state = {"name": name, "root": root, "trees": {h: materialised[t] for h, t in trees.items()}, "log": None,
             "cache": cached}
    if os.environ.get("LABHUB_KUBE_SITES_CACHE", "1") != "0" and (cached / "out").is_dir():
        shutil.rmtree(out)
        shutil.copytree(cached / "out", out)
        shutil.copytree(cached / "inventory-hosts", root / "inventory-hosts", dirs_exist_ok=True)
        state["cached"] = True
        return None, state
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inv), "-i", str(root / "test-hosts.yml"),
           str(play), "-e", f"@{root / 'extra-vars.json'}"]
    log = open(root / "ansible.log", "w")  # noqa: SIM115 - closed in finish_render
    state["log"] = log
    proc = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    return proc, state


def finish_render(proc: subprocess.Popen[str] | None, state: dict[str, Any], timeout: float = 600) -> Site:
    root: Path = state["root"]
    out = root / "out"
    if proc is not None:
        rc = proc.wait(timeout=timeout)
        state["log"].close()
        if rc != 0:
            text = (root / "ansible.log").read_text()
            raise AssertionError(f"rendering site {state['name']} failed ({rc}):\n{text[-6000:]}")
        cached: Path = state["cache"]
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(out, tmp / "out")
        (tmp / "inventory-hosts").mkdir(parents=True)
        shutil.copy2(root / "inventory" / "hosts.yml", tmp / "inventory-hosts" / "hosts.yml")
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
        for old in CACHE.glob(f"{state['name']}-*"):
            if old != cached and re.fullmatch(r"[0-9a-f]{16}(\.tmp)?", old.name[len(state["name"]) + 1:]):
                shutil.rmtree(old, ignore_errors=True)
    hardware = json.loads((out / "hardware.json").read_text())
    nodes = json.loads((out / "nodes.json").read_text())  # host -> [name, labels, taints]
    node_names = {host: name for host, (name, _labels, _taints) in nodes.items()}
    labels = {name: dict(node_labels) for name, node_labels, _taints in nodes.values()}
    taints = {name: list(node_taints) for name, _labels, node_taints in nodes.values()}
    hub = out / "render" / "jupyterhub"
    ingress_file = out / "render" / "ingress" / "manifests.yml"
    ingress = [d for d in yaml.safe_load_all(ingress_file.read_text()) if d] if ingress_file.exists() else []
    monitoring_file = out / "render" / "monitoring" / "manifests.yml"
    monitoring = [d for d in yaml.safe_load_all(monitoring_file.read_text()) if d] if monitoring_file.exists() else []
    manifests = {p.name: yaml.safe_load(p.read_text()) for p in sorted((hub / "manifests").glob("*.yaml"))}
    gpu_dir = out / "render" / "gpu_operator"
    gpu_values = yaml.safe_load((gpu_dir / "values.yaml").read_text()) if (gpu_dir / "values.yaml").exists() else None
    gpu_plan = yaml.safe_load((gpu_dir / "plan.yaml").read_text()) if (gpu_dir / "plan.yaml").exists() else None
    for node, node_labels in ((gpu_plan or {}).get("node_labels") or {}).items():
        labels.setdefault(node, {}).update(node_labels)
    gpu_role = json.loads((out / "gpu_operator.json").read_text()) if (out / "gpu_operator.json").exists() else None
    network = json.loads((out / "network_operator.json").read_text())
    for host in network["ib_hosts"]:
        labels.setdefault(network["nodes"][host], {}).update(network["labels"])
    inventory = yaml.safe_load((root / "inventory-hosts" / "hosts.yml").read_text() if state.get("cached")
                               else (root / "inventory" / "hosts.yml").read_text())
    cp = list(((inventory["all"]["children"]["labhub_cluster"]["children"]["labhub_control_plane"]).get("hosts") or {}))
    return Site(name=state["name"], root=root, trees=state["trees"], hardware=hardware, node_names=node_names,
                node_labels=labels, node_taints=taints, control_plane=cp,
                hub_values=yaml.safe_load((hub / "values.yaml").read_text()), hub_manifests=manifests,
                gpu_values=gpu_values, gpu_plan=gpu_plan, gpu_role=gpu_role, network=network,
                ingress=ingress, monitoring=monitoring, cached=bool(state.get("cached")))


def quantity_mib(memory_mb: int) -> str:
    return f"{int(memory_mb)}Mi"


def node_object(name: str, facts: dict[str, Any], labels: dict[str, str], taints: list[dict[str, str]],
                address: str) -> dict[str, Any]:
    """A Node KWOK keeps Ready, made from a host's hardware facts as a kubelet would report it:
    capacity cpu = logical CPUs, memory = MemTotal, 110 pods (the kubelet default); kernel and OS
    from the tree. No extended resources: the device plugins (tests/harness/kube/operators.py,
    simulated) add nvidia.com/gpu and rdma/* once their pods run on the node."""
    capacity = {"cpu": str(facts["cpu"]["cores"]), "memory": quantity_mib(facts["memory_mb"]), "pods": "110"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", **labels}},
        "spec": {"taints": list(taints)},
        "status": {
            "capacity": capacity, "allocatable": dict(capacity),
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            # MicroK8s' kubelet reports its containerd as containerd://<version>; the GPU Operator
            # parses only the prefix (controllers/state_manager.go getRuntimeString). The version
            # here is a placeholder.
            "nodeInfo": {"containerRuntimeVersion": "containerd://1.7.0-labhub-test",
                         "kernelVersion": facts.get("kernel") or "",
                         "osImage": (facts.get("os") or {}).get("pretty_name") or "",
                         "operatingSystem": "linux", "architecture": "amd64"},
        },
    }


def features_inventory(dest: Path) -> Path:
    """A small site with every optional GPU / InfiniBand / hub feature on, derived from
    inventories/example: one control-plane node and two DGX nodes on InfiniBand (gpu04 keeps its
    MIG profile and its reserved taint), GPU time-slicing, MIG strategy mixed, SR-IOV, the hub as
    a NodePort with TLS from files, GPU profiles, the dynamic profile (node reader ClusterRole),
    no image pre-pulling."""
    shutil.copytree(REPO / "inventories" / "example", dest, ignore=shutil.ignore_patterns(".credentials", ".runs"))
    (dest / "hosts.yml").write_text(yaml.safe_dump({"all": {"vars": {"ansible_user": "labhub"}, "children": {
        "labhub_cluster": {"children": {"labhub_control_plane": {"hosts": {"cp01": None}},
                                        "labhub_workers": {"hosts": {"gpu01": None, "gpu04": None}}}},
        "labhub_gpu_nodes": {"hosts": {"gpu01": None, "gpu04": None}},
        "labhub_ib_nodes": {"hosts": {"gpu01": None, "gpu04": None}}}}}, sort_keys=False))
    # One test certificate, kept with the render cache so the inventory (and its digest) is stable.
    tls_cache = CACHE / "tls-for-features"
    if not (tls_cache / "hub.crt").exists():
        tls_cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
                        "/CN=hub.example.org", "-keyout", str(tls_cache / "hub.key"), "-out", str(tls_cache / "hub.crt")],
                       check=True, capture_output=True)
    shutil.copytree(tls_cache, dest / "tls")
    # zz-: loaded after the example's own files of the group (group_vars files load in name order)
    (dest / "group_vars" / "all" / "zz-features.yml").write_text(yaml.safe_dump({
        "gpu_operator_time_slicing_enabled": True,
        "gpu_operator_time_slicing_replicas": 4,
        "gpu_operator_mig_strategy": "mixed",
        "jupyterhub_expose": "nodeport",
        "jupyterhub_nodeport_http": 30080,
        "jupyterhub_nodeport_https": 30443,
        "jupyterhub_tls_mode": "files",
        "jupyterhub_tls_cert_file": "{{ inventory_dir }}/tls/hub.crt",
        "jupyterhub_tls_key_file": "{{ inventory_dir }}/tls/hub.key",
        "jupyterhub_prepull_images": False,
        "jupyterhub_dynamic_profile": {"enabled": True, "max_gpu": 2},
    }, sort_keys=False))
    (dest / "group_vars" / "labhub_ib_nodes" / "zz-features.yml").write_text(yaml.safe_dump({
        "network_operator_sriov": True}))
    return dest
