"""Roles calico and network_operator without a cluster, through the real ansible-playbook.

calico: the in-place edit of MicroK8s' cni.yaml (the file the simulator writes from
tests/simulator/microk8s_objects.py, laid out like MicroK8s') for every IP autodetection
method, MTU and encapsulation, and every refused input (the message names the variable; the file is
untouched). network_operator: the chart values and NicClusterPolicy built from real
labhub.platform.hardware_facts output on the hardware fixture trees, and the refusals (HCA settings
that do not match the hardware, SR-IOV without its images in the bundle manifest).
No Kubernetes API, helm or modprobe runs here (see tests/simulator/tests/test_role_*.py for that).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "simulator"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
import hardware_trees  # noqa: E402  pylint: disable=wrong-import-position
import microk8s_objects  # noqa: E402  pylint: disable=wrong-import-position

MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
REFS = {image["ref"] for image in MANIFEST["images"]}


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".cache" / "ansible_collections"))
    env.update(ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false")
    return env


def _play(tmp_path, inventory, plays, *args):
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump(plays, sort_keys=False))
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(play), *args],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300, check=False)


def _host(**extra):
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **extra}


# ------------------------------------------------------------------------------- calico
def _calico(tmp_path, settings, *args):
    snap = tmp_path / "snap"
    cni = snap / "args" / "cni-network" / "cni.yaml"
    if not cni.exists():
        cni.parent.mkdir(parents=True)
        cni.write_text(microk8s_objects.cni_yaml())
    inventory = {"all": {"vars": settings, "children": {"labhub_control_plane": {"hosts": {
        "cp1": _host(calico_snap_data_dir=str(snap))}}}}}
    tasks = [{"name": "validate", "ansible.builtin.include_role": {"name": "labhub.platform.calico", "tasks_from": "validate"}},
             {"name": "cni.yaml", "ansible.builtin.include_role": {"name": "labhub.platform.calico", "tasks_from": "cni_yaml"}}]
    proc = _play(tmp_path, inventory, [{"name": "calico", "hosts": "all", "gather_facts": False, "tasks": tasks}], *args)
    return proc, cni


def _cni_values(cni):
    docs = [d for d in yaml.safe_load_all(cni.read_text()) if d]
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    env = {e["name"]: e.get("value") for e in next(d for d in docs if d["kind"] == "DaemonSet")
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    return data["veth_mtu"], env["IP_AUTODETECTION_METHOD"], env["CALICO_IPV4POOL_VXLAN"], docs


def _images(obj):
    """Every container image of a Kubernetes object (containers and initContainers, at any depth)."""
    if isinstance(obj, dict):
        out = [obj["image"]] if isinstance(obj.get("image"), str) and "name" in obj else []
        return out + [i for v in obj.values() for i in _images(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in _images(v)]
    return []


def test_simulated_microk8s_objects_run_the_images_of_the_pinned_track():
    """The simulator's models of MicroK8s' own objects (Calico's cni.yaml and the addons Labhub
    enables) name exactly the images the bundle manifest pins for the track (used_by microk8s,
    tests/simulator/README.md row 53), so a track bump that forgets either side fails here. The
    ingress model is left out: Labhub refuses the 1.36 ingress addon (it fetches Traefik online)."""
    objects = microk8s_objects.calico_objects() + microk8s_objects.install_objects()
    for addon in ("dns", "hostpath-storage", "metrics-server"):
        objects += microk8s_objects.addon_objects(addon)
    used = set(_images(objects))
    track = {i["ref"] for i in MANIFEST["images"] if "microk8s" in i["used_by"]}
    assert used and used <= track, sorted(used - track)
    # every image of the track but containerd's sandbox and the hostpath helper pods' busybox
    # (neither is a container of these objects) is used by one of them
    assert track - used == {"registry.k8s.io/pause:3.10", "docker.io/library/busybox:1.28.4"}, sorted(track - used)


@pytest.mark.parametrize("settings, expected", [
    ({}, ("0", "first-found", "Always")),
    ({"calico_ip_autodetection_method": "interface", "calico_ip_autodetection_interface": r"^(eno1|ens\d+)$",
      "calico_mtu": 8950, "calico_underlay_mtu": 9000}, ("8950", r"interface=^(eno1|ens\d+)$", "Always")),
    ({"calico_ip_autodetection_method": "cidr", "calico_ip_autodetection_cidrs": ["10.20.0.0/16", "fd00:20::/64"],
      "calico_encapsulation": "vxlan-crosssubnet"}, ("0", "cidr=10.20.0.0/16,fd00:20::/64", "CrossSubnet")),
    ({"calico_ip_autodetection_method": "can-reach", "calico_ip_autodetection_can_reach": "gw.lab.example.org",
      "calico_mtu": 1450}, ("1450", "can-reach=gw.lab.example.org", "Always")),
])
def test_calico_edits_only_the_three_values_of_cni_yaml(tmp_path, settings, expected):
    original = microk8s_objects.cni_yaml()
    proc, cni = _calico(tmp_path, settings, "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert cni.read_text() == original, "check mode wrote cni.yaml"
    proc, cni = _calico(tmp_path, settings)
    assert proc.returncode == 0, proc.stdout[-3000:]
    mtu, method, vxlan, docs = _cni_values(cni)
    assert (mtu, method, vxlan) == expected
    # every other object and field is MicroK8s' own
    originals = [d for d in yaml.safe_load_all(original) if d]
    assert len(docs) == len(originals)
    changed = [(a, b) for a, b in zip(original.splitlines(), cni.read_text().splitlines()) if a != b]
    assert len(changed) == sum(1 for got, default in zip(expected, ("0", "first-found", "Always")) if got != default)
    proc = _calico(tmp_path, settings)[0]
    assert proc.returncode == 0 and "changed=0" in proc.stdout, proc.stdout[-3000:]


def _rows(report):
    """(host, variable, problem, expected) of the validation table's rows (LABHUB_VALIDATE_REPORT)."""
    return [(r["host"], r["variable"], r["problem"], r["expected"]) for r in json.loads(report.read_text())]


@pytest.mark.parametrize("settings, variable, problem", [
    ({"calico_ip_autodetection_method": "first_found"},
     "calico_ip_autodetection_method", "is not an autodetection method"),
    ({"calico_ip_autodetection_method": "interface"},
     "calico_ip_autodetection_interface", "is empty but calico_ip_autodetection_method is 'interface'"),
    ({"calico_ip_autodetection_method": "interface", "calico_ip_autodetection_interface": "eth0 eth1"},
     "calico_ip_autodetection_interface", "contains spaces or quotes"),
    ({"calico_ip_autodetection_method": "cidr", "calico_ip_autodetection_cidrs": ["10.20.0.0/16", "10.20.0.0"]},
     "calico_ip_autodetection_cidrs", '"10.20.0.0" is not a CIDR'),
    ({"calico_ip_autodetection_method": "cidr", "calico_ip_autodetection_cidrs": ["256.1.1.0/24"]},
     "calico_ip_autodetection_cidrs", '"256.1.1.0/24" is not a CIDR'),
    ({"calico_ip_autodetection_method": "cidr"},
     "calico_ip_autodetection_cidrs", "is not a non-empty list but calico_ip_autodetection_method is 'cidr'"),
    ({"calico_ip_autodetection_method": "can-reach", "calico_ip_autodetection_can_reach": "not a host"},
     "calico_ip_autodetection_can_reach", "is not an IP address or host name but calico_ip_autodetection_method is 'can-reach'"),
    ({"calico_mtu": 900}, "calico_mtu", "is not 0 or a number between 1000 and 9000"),
    ({"calico_mtu": 9001}, "calico_mtu", "is not 0 or a number between 1000 and 9000"),
    ({"calico_encapsulation": "ipip"}, "calico_encapsulation", "ipip is refused: IP-in-IP needs BGP (BIRD)"),
    ({"calico_encapsulation": "none"}, "calico_encapsulation", "none is refused: unencapsulated routing needs BGP"),
    ({"calico_encapsulation": "geneve"}, "calico_encapsulation", "is not an encapsulation"),
    ({"calico_mtu": 1500, "calico_underlay_mtu": 1500},
     "calico_mtu", "1500 plus the 50 bytes VXLAN adds exceeds calico_underlay_mtu 1500"),
    ({"calico_ready_timeout": 0}, "calico_ready_timeout", "is not a positive number of seconds"),
])
def test_calico_refuses_bad_settings_naming_the_variable(tmp_path, settings, variable, problem, monkeypatch):
    report = tmp_path / "report.json"
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(report))
    proc, cni = _calico(tmp_path, settings)
    assert proc.returncode != 0
    assert "Labhub validation (site): " in proc.stdout, proc.stdout[-3000:]
    rows = _rows(report)
    assert any(v == variable and p.startswith(problem) for _h, v, p, _e in rows), rows
    if variable == "calico_mtu" and "underlay" in problem:
        assert ("cp1", "calico_mtu", problem, "at most 1450") in rows, rows
    assert cni.read_text() == microk8s_objects.cni_yaml()


def test_calico_refuses_a_cni_yaml_laid_out_differently(tmp_path):
    snap = tmp_path / "snap" / "args" / "cni-network"
    snap.mkdir(parents=True)
    text = microk8s_objects.cni_yaml().replace("veth_mtu", "mtu_of_veth")
    (snap / "cni.yaml").write_text(text)
    proc, cni = _calico(tmp_path, {"calico_mtu": 1450})
    assert proc.returncode != 0
    assert "has no veth_mtu entry where MicroK8s puts it" in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert cni.read_text() == text


# ---------------------------------------------------------------------- network_operator
def _network_operator(tmp_path, trees, ib_hosts, extra=None, host_extra=None):
    hosts = {}
    for name, tree in trees.items():
        root = tmp_path / "hw" / name
        if not root.exists():
            hardware_trees.materialise(tree, str(root))
        hosts[name] = _host(network_operator_host_root=str(root), **(host_extra or {}).get(name, {}))
    out = tmp_path / "built.json"
    inventory = {"all": {"vars": {"network_operator_enabled": True, **(extra or {})}, "children": {
        "labhub_control_plane": {"hosts": {name: hosts[name] for name in list(trees)[:1]}},
        "labhub_workers": {"hosts": {name: hosts[name] for name in list(trees)[1:]}},
        "labhub_ib_nodes": {"hosts": {name: None for name in ib_hosts}}}}}
    role = "labhub.platform.network_operator"
    tasks = [{"name": "validate", "ansible.builtin.include_role": {"name": role, "tasks_from": "validate"}},
             {"name": "build", "ansible.builtin.include_role": {"name": role, "tasks_from": "build"},
              "when": "__network_operator_ib_hosts | length > 0"},
             {"name": "dump", "ansible.builtin.copy": {
                 "dest": str(out), "mode": "0600",
                 "content": "{{ {'hosts': __network_operator_ib_hosts, 'values': __network_operator_values | default(none),"
                            " 'policy': __network_operator_policy | default(none)} | to_json }}"},
              "delegate_to": "localhost", "run_once": True}]
    proc = _play(tmp_path, inventory, [{"name": "no", "hosts": "all", "gather_facts": False, "tasks": tasks}])
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_values_and_policy_from_infiniband_hcas(tmp_path):
    proc, built = _network_operator(tmp_path, {"cp1": "cpu-vm", "gpu1": "dgx-h100"}, ["gpu1"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert built["hosts"] == ["gpu1"]
    values, policy = built["values"], built["policy"]
    op = values["operator"]
    assert "%s/%s:%s" % (op["repository"], op["image"], op["tag"]) == "nvcr.io/nvidia/cloud-native/network-operator:v25.7.0"
    init = op["ofedDriver"]["initContainer"]
    assert "%s/%s:%s" % (init["repository"], init["image"], init["version"]) in REFS
    nfd = values["node-feature-discovery"]["image"]
    assert "%s:%s" % (nfd["repository"], nfd["tag"]) in REFS
    assert values["nfd"] == {"enabled": True, "deployNodeFeatureRules": True}
    assert values["sriovNetworkOperator"] == {"enabled": False}
    assert values["sriov-network-operator"]["sriovOperatorConfig"] == {"featureGates": {"metricsExporter": False}}
    spec = policy["spec"]
    assert policy["kind"] == "NicClusterPolicy" and policy["apiVersion"] == "mellanox.com/v1alpha1"
    assert "ofedDriver" not in spec, "inbox drivers: the policy must not deploy the DOCA-OFED container"
    dp = spec["rdmaSharedDevicePlugin"]
    assert "%s/%s:%s" % (dp["repository"], dp["image"], dp["version"]) in REFS
    assert json.loads(dp["config"]) == {"configList": [{
        "resourcePrefix": "rdma", "resourceName": "hca_shared_devices_ib", "rdmaHcaMax": 63,
        "selectors": {"vendors": ["15b3"], "linkTypes": ["infiniband"]}}]}
    assert spec["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "labhub.io/infiniband", "operator": "In", "values": ["true"]}]}]


def test_roce_hcas_select_ethernet_and_if_names(tmp_path):
    proc, built = _network_operator(tmp_path, {"cp1": "cpu-vm", "gpu1": "gpu-smi-broken"}, ["gpu1"],
                                    {"network_operator_rdma_if_names": ["ens1f0np0"], "network_operator_rdma_hca_max": 16,
                                     "network_operator_rdma_resource_name": "roce"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    config = json.loads(built["policy"]["spec"]["rdmaSharedDevicePlugin"]["config"])
    assert config["configList"] == [{"resourcePrefix": "rdma", "resourceName": "roce", "rdmaHcaMax": 16,
                                     "selectors": {"vendors": ["15b3"], "linkTypes": ["ether"], "ifNames": ["ens1f0np0"]}}]


def test_nothing_to_do_without_hcas(tmp_path):
    proc, built = _network_operator(tmp_path, {"cp1": "cpu-vm", "cpu1": "cpu-vm"}, [])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert built == {"hosts": [], "values": None, "policy": None}


@pytest.mark.parametrize("ib_hosts, extra, host_extra, expected", [
    (["cp1", "gpu1"], {}, {},
     [("cp1", "groups.labhub_ib_nodes", "host is an InfiniBand node but no HCA was found (/sys/class/infiniband)")]),
    (["gpu1"], {}, {"gpu1": {"network_operator_hcas": ["mlx5_0", "mlx5_7"]}, "cp1": {"network_operator_sriov": True}},
     [("gpu1", "network_operator_hcas", "names HCA 'mlx5_7' but the node has HCAs: mlx5_0, mlx5_1, mlx5_2, mlx5_3"),
      ("cp1", "network_operator_sriov", "is true but the node has no HCA")]),
    (["gpu1"], {}, {"gpu1": {"network_operator_hcas": ["mlx5_0", "mlx5_1"]}},
     [("gpu1", "network_operator_hcas", "names mlx5_0, mlx5_1 of the HCAs mlx5_0, mlx5_1, mlx5_2, mlx5_3, but the RDMA "
       "shared device plugin selects by vendor, link type or netdevice, not by RDMA device name")]),
    (["gpu1"], {"network_operator_sriov": "yes"}, {},
     [("(all hosts)", "network_operator_sriov", "is a string, not a boolean")]),
    (["gpu1"], {"network_operator_rdma_resource_name": "rdma/ib", "network_operator_rdma_hca_max": 0}, {},
     [("cp1", "network_operator_rdma_resource_name", "is not a resource name (pods request rdma/<name>)"),
      ("cp1", "network_operator_rdma_hca_max", "is not a positive number of pods per node")]),
])
def test_network_operator_refuses_settings_the_hardware_contradicts(tmp_path, ib_hosts, extra, host_extra, expected,
                                                                    monkeypatch):
    report = tmp_path / "report.json"
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(report))
    proc, built = _network_operator(tmp_path, {"cp1": "cpu-vm", "gpu1": "dgx-h100"}, ib_hosts, extra, host_extra)
    assert proc.returncode != 0 and built is None, proc.stdout[-3000:]
    assert "Labhub validation (site): " in proc.stdout, proc.stdout[-3000:]
    rows = [(h, v, p) for h, v, p, _e in _rows(report)]
    for row in expected:
        assert row in rows, rows


def test_sriov_needs_its_images_in_the_manifest(tmp_path):
    manifest = tmp_path / "manifest.yml"
    trimmed = dict(MANIFEST, images=[i for i in MANIFEST["images"] if "sriov-network-operator" not in i["ref"]])
    manifest.write_text(yaml.safe_dump(trimmed))
    proc, built = _network_operator(tmp_path, {"cp1": "cpu-vm", "gpu1": "dgx-h100"}, ["gpu1"],
                                    {"network_operator_bundle_manifest_file": str(manifest)},
                                    {"gpu1": {"network_operator_sriov": True}})
    assert proc.returncode != 0 and built is None
    out = " ".join(proc.stdout.split())
    assert "images used_by network-operator missing: sriov-network-operator, sriov-network-operator-config-daemon" in out, out[-3000:]
    assert "(network_operator_sriov needs the SR-IOV Network Operator images)" in out


def test_sriov_deploys_the_sriov_operator_from_the_manifest(tmp_path):
    proc, built = _network_operator(tmp_path, {"cp1": "cpu-vm", "gpu1": "dgx-h100"}, ["gpu1"], {},
                                    {"gpu1": {"network_operator_sriov": True}})
    assert proc.returncode == 0, proc.stdout[-3000:]
    values = built["values"]
    assert values["sriovNetworkOperator"] == {"enabled": True}
    images = values["sriov-network-operator"]["images"]
    assert set(images) == {"operator", "sriovConfigDaemon", "webhook", "sriovCni", "ibSriovCni", "sriovDevicePlugin",
                           "ovsCni", "rdmaCni", "resourcesInjector"}
    assert set(images.values()) <= REFS
