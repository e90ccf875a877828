# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Role labhub.platform.gpu_operator in render-only mode (gpu_operator_render_dir), run by the real
ansible-playbook on local hosts whose hardware facts (labhub_hardware) come from the inventory:
the chart values and node labels for host/operator driver modes, MIG and time-slicing, every
image pinned in the bundle manifest, and the input checks that fail before any change.
No cluster is involved (the cluster path is tested against the simulator in
tests/simulator/tests/test_role_gpu_operator.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((REPO / "files" / "bundle-manifest.yml").read_text())
MANIFEST_REFS = {i["ref"] for i in MANIFEST["images"]}


def hardware(gpus=0, driver=True, os_id="ubuntu", os_version="22.04", name="NVIDIA H100 80GB HBM3"):
    return {"os": {"id": os_id, "version": os_version},
            "gpus": {"count": gpus,
                     "devices": [{"pci_address": "0000:%02x:00.0" % (0x18 + i), "vendor_id": "0x10de", "device_id": "0x2330",
                                  "name": name, "memory_mb": 81559, "mig_mode": "Disabled"} for i in range(gpus)],
                     "driver_loaded": driver and gpus > 0, "driver_version": "535.129.03" if driver and gpus else None,
                     "nvidia_smi": {"present": driver and gpus > 0, "ok": driver and gpus > 0}}}


# a package mirror for drivers built on the node (gpu_operator_driver_mode: operator, not precompiled)
MIRROR = {"driver": {"repoConfig": {"configMapName": "site-apt-mirror"}}}


def run_render(tmp_path: Path, hosts: dict, gpu_hosts, extra=None, cluster_vars=None, args=()):
    """hosts: name -> host vars (labhub_hardware, gpu_operator_driver_mode, ...)."""
    tmp_path.mkdir(parents=True, exist_ok=True)

    def host(name):
        return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "microk8s_node_name": name, **hosts[name]}
    inv = {"all": {
        "vars": {"labhub_render_dir": str(tmp_path / "render"), **(cluster_vars or {})},
        "children": {
            "labhub_cluster": {"children": {
                "labhub_control_plane": {"hosts": {n: host(n) for n in list(hosts)[:1]}},
                "labhub_workers": {"hosts": {n: host(n) for n in list(hosts)[1:]}}}},
            "labhub_gpu_nodes": {"hosts": {n: {} for n in gpu_hosts}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": "GPU Operator", "hosts": "labhub_cluster", "gather_facts": False,
                                     "roles": ["labhub.platform.gpu_operator"]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache" / "ansible_collections"),
               ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(play), *args]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = tmp_path / "render" / "gpu_operator"
    values = yaml.safe_load((out / "values.yaml").read_text()) if (out / "values.yaml").exists() else None
    plan = yaml.safe_load((out / "plan.yaml").read_text()) if (out / "plan.yaml").exists() else None
    return proc, values, plan


def image_refs(values):
    """Every image the values name: {repository, image, version} blocks and the NFD subchart's."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if {"repository", "image", "version"} <= set(node):
                found.append((path, "%s/%s:%s" % (node["repository"], node["image"], node["version"])))
            if {"repository", "tag"} <= set(node):
                found.append((path, "%s:%s" % (node["repository"], node["tag"])))
            for key, value in node.items():
                walk(value, "%s.%s" % (path, key) if path else key)
    walk(values, "")
    return found


def env_of(values, section):
    return {e["name"]: e["value"] for e in values[section].get("env", [])}


HOST_MODE = {"cp1": {"labhub_hardware": hardware(0)},
             "gpu1": {"labhub_hardware": hardware(8), "gpu_operator_driver_mode": "host"},
             "gpu2": {"labhub_hardware": hardware(8), "gpu_operator_driver_mode": "host"}}


def test_host_mode_values_labels_and_images(tmp_path):
    proc, values, plan = run_render(tmp_path, HOST_MODE, ["gpu1", "gpu2"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert values["driver"]["enabled"] is False
    assert "defaultRuntime" not in values["operator"]  # not a value of the v25.10 chart
    assert values["operator"]["runtimeClass"] == "nvidia"
    assert env_of(values, "toolkit") == {
        "CONTAINERD_CONFIG": "/var/snap/microk8s/current/args/containerd-template.toml",
        "CONTAINERD_SOCKET": "/var/snap/microk8s/common/run/containerd.sock",
        "RUNTIME_CONFIG_SOURCE": "file", "CONTAINERD_RUNTIME_CLASS": "nvidia", "NVIDIA_RUNTIME_SET_AS_DEFAULT": "false"}
    assert values["mig"]["strategy"] == "none" and values["migManager"]["enabled"] is False
    assert "config" not in values["devicePlugin"]
    assert values["validator"]["image"] == "gpu-operator"
    assert values["dcgmExporter"]["enabled"] is True and values["nfd"]["enabled"] is True
    for off in ("sandboxWorkloads", "vgpuManager", "vfioManager", "kataManager", "ccManager", "gds", "gdrcopy"):
        assert values[off]["enabled"] is False, off
    refs = image_refs(values)
    assert {path for path, ref in refs} >= {
        "operator", "operator.initContainer", "validator", "driver", "driver.manager", "toolkit",
        "devicePlugin", "gfd", "migManager", "dcgm", "dcgmExporter", "node-feature-discovery.image"}
    missing = [(p, r) for p, r in refs if r not in MANIFEST_REFS and p != "driver"]
    assert not missing, missing
    labels = plan["node_labels"]
    assert labels["gpu1"] == {"labhub.io/gpu": "true", "labhub.io/gpu.count": "8", "labhub.io/gpu.product": "NVIDIA-H100-80GB-HBM3",
                              "nvidia.com/gpu.deploy.operands": "true", "nvidia.com/gpu.deploy.driver": "false",
                              "nvidia.com/mig.config": "all-disabled"}
    assert labels["cp1"] == {"labhub.io/gpu": "false", "labhub.io/gpu.count": "0", "nvidia.com/gpu.deploy.operands": "false"}
    assert plan["smoke_test_job"].startswith("labhub-gpu-smoke-") and len(plan["smoke_test_job"]) == 27


def test_operator_mode_enables_the_driver_from_the_bundle(tmp_path):
    hosts = {"cp1": {"labhub_hardware": hardware(0)},
             "gpu1": {"labhub_hardware": hardware(2, driver=False, os_version="24.04"), "gpu_operator_driver_mode": "operator"},
             "gpu2": {"labhub_hardware": hardware(8), "gpu_operator_driver_mode": "host"}}
    proc, values, plan = run_render(tmp_path, hosts, ["gpu1", "gpu2"], cluster_vars={"gpu_operator_extra_values": MIRROR})
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert values["driver"]["enabled"] is True and values["driver"]["usePrecompiled"] is False
    # built on the node: the kernel headers come from the site's package mirror
    assert values["driver"]["repoConfig"] == {"configMapName": "site-apt-mirror"}
    driver = "%s/%s:%s" % (values["driver"]["repository"], values["driver"]["image"], values["driver"]["version"])
    assert driver + "-ubuntu24.04" in MANIFEST_REFS
    assert plan["node_labels"]["gpu1"]["nvidia.com/gpu.deploy.driver"] == "true"
    assert plan["node_labels"]["gpu2"]["nvidia.com/gpu.deploy.driver"] == "false"


def test_mig_profile_sets_single_strategy_and_node_config(tmp_path):
    hosts = dict(HOST_MODE, gpu2={"labhub_hardware": hardware(8), "gpu_operator_mig_profile": "all-1g.10gb"})
    proc, values, plan = run_render(tmp_path, hosts, ["gpu1", "gpu2"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert values["mig"]["strategy"] == "single" and values["migManager"]["enabled"] is True
    assert plan["node_labels"]["gpu2"]["nvidia.com/mig.config"] == "all-1g.10gb"
    assert plan["node_labels"]["gpu1"]["nvidia.com/mig.config"] == "all-disabled"
    proc, values, _plan = run_render(tmp_path, hosts, ["gpu1", "gpu2"], extra={"gpu_operator_mig_strategy": "mixed"})
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert values["mig"]["strategy"] == "mixed"


def test_time_slicing_configmap_and_a_new_job_name(tmp_path):
    _proc, _values, plain = run_render(tmp_path, HOST_MODE, ["gpu1", "gpu2"])
    proc, values, plan = run_render(tmp_path, HOST_MODE, ["gpu1", "gpu2"],
                                    extra={"gpu_operator_time_slicing_enabled": True, "gpu_operator_time_slicing_replicas": 3})
    assert proc.returncode == 0, proc.stdout[-4000:]
    config = values["devicePlugin"]["config"]
    assert config["create"] is True and config["name"] == "labhub-time-slicing" and config["default"] == "any"
    data = yaml.safe_load(config["data"]["any"])
    assert data == {"version": "v1", "flags": {"migStrategy": "none"},
                    "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 3}]}}}
    assert plan["smoke_test_job"] != plain["smoke_test_job"], "changed values must give a new smoke-test Job"
    assert plan["values_sha256"] != plain["values_sha256"]


def test_same_inventory_gives_the_same_values_whatever_the_play_hosts(tmp_path):
    """add_node.yml runs the role for one node: the values (so the release and the smoke-test Job)
    must not change, and only that node is labelled."""
    hosts = dict(HOST_MODE, gpu1={"labhub_hardware": hardware(8), "gpu_operator_driver_mode": "operator"})
    mirror = {"gpu_operator_extra_values": MIRROR}
    _p, values, full = run_render(tmp_path / "a", hosts, ["gpu1", "gpu2"], cluster_vars=mirror)
    proc, part_values, part = run_render(tmp_path / "b", hosts, ["gpu1", "gpu2"], cluster_vars=mirror,
                                         args=["--limit", "gpu2"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert values["driver"]["enabled"] is True and part_values == values
    assert full["smoke_test_job"] == part["smoke_test_job"]
    assert set(part["node_labels"]) == {"gpu2"} and set(full["node_labels"]) == {"cp1", "gpu1", "gpu2"}


@pytest.mark.parametrize("case", ["host_without_driver", "replicas_zero", "image_not_in_bundle", "driver_image_for_os",
                                  "mig_with_strategy_none", "bad_mode"])
def test_bad_input_fails_naming_the_variable_and_host(tmp_path, case, monkeypatch):
    """Refused by the role's validation task (labhub.platform.validate) before anything is written:
    the rows of its table (LABHUB_VALIDATE_REPORT) name the host, the variable and the problem."""
    report = tmp_path / "report.json"
    monkeypatch.setenv("LABHUB_VALIDATE_REPORT", str(report))
    hosts = json.loads(json.dumps(HOST_MODE))
    extra = {}
    expected = []  # (host, variable, start of the problem)
    if case == "host_without_driver":
        hosts["gpu2"]["labhub_hardware"] = hardware(2, driver=False)
        expected = [("gpu2", "gpu_operator_driver_mode", "is 'host' but the NVIDIA kernel driver is not loaded")]
    elif case == "replicas_zero":
        extra = {"gpu_operator_time_slicing_enabled": True, "gpu_operator_time_slicing_replicas": 0}
        expected = [("cp1", "gpu_operator_time_slicing_replicas", "is not a whole number of at least 1")]
    elif case == "image_not_in_bundle":
        extra = {"gpu_operator_images": {**yaml.safe_load((REPO / "roles/gpu_operator/defaults/main.yml").read_text())[
            "gpu_operator_images"], "toolkit": "nvcr.io/nvidia/k8s/container-toolkit:v9.9.9"}}
        expected = [("cp1", "gpu_operator_images.toolkit", "is not in the bundle manifest")]
    elif case == "driver_image_for_os":
        hosts["gpu1"] = {"labhub_hardware": hardware(8, os_id="debian", os_version="12"), "gpu_operator_driver_mode": "operator"}
        expected = [("gpu1", "gpu_operator_driver_mode", "is 'operator' but the driver image for debian12 "
                     "(nvcr.io/nvidia/driver:580.105.08-debian12) is not in")]
    elif case == "mig_with_strategy_none":
        hosts["gpu1"]["gpu_operator_mig_profile"] = "all-1g.10gb"
        extra = {"gpu_operator_mig_strategy": "none"}
        expected = [("gpu1", "gpu_operator_mig_profile", "sets a MIG profile but gpu_operator_mig_strategy is none")]
    elif case == "bad_mode":
        hosts["gpu1"]["gpu_operator_driver_mode"] = "container"
        expected = [("gpu1", "gpu_operator_driver_mode", "is not a driver mode")]
    proc, values, _plan = run_render(tmp_path, hosts, ["gpu1", "gpu2"], extra=extra)
    assert proc.returncode != 0
    assert "Labhub validation (site): " in proc.stdout, proc.stdout[-3000:]
    rows = json.loads(report.read_text())
    for host, variable, problem in expected:
        assert any(r["host"] in (host, "(all hosts)") and r["variable"] == variable and r["problem"].startswith(problem)
                   for r in rows), rows
    assert values is None, "nothing may be written when the input is invalid"


def test_bad_mig_strategy_is_refused_by_the_argument_spec(tmp_path):
    proc, values, _plan = run_render(tmp_path, HOST_MODE, ["gpu1", "gpu2"], extra={"gpu_operator_mig_strategy": "all"})
    assert proc.returncode != 0
    assert "gpu_operator_mig_strategy" in proc.stdout and values is None


@pytest.mark.parametrize("case", ["disabled", "no_gpus"])
def test_skips_cleanly_with_one_message(tmp_path, case):
    hosts = json.loads(json.dumps(HOST_MODE))
    cluster_vars = {}
    if case == "disabled":
        cluster_vars = {"gpu_operator_enabled": False}
        reason = "gpu_operator_enabled (gpu_operator_enabled) is false"
    else:
        for name in ("gpu1", "gpu2"):
            hosts[name]["labhub_hardware"] = hardware(0)
        reason = "no host of labhub_gpu_nodes has an NVIDIA GPU"
    proc, values, _plan = run_render(tmp_path, hosts, ["gpu1", "gpu2"], cluster_vars=cluster_vars)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "GPU Operator skipped: " + reason in " ".join(proc.stdout.split())
    assert values is None


def test_every_default_is_specified_with_the_same_value_and_documented():
    role = REPO / "roles" / "gpu_operator"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    readme = (role / "README.md").read_text()
    for name, value in defaults.items():
        assert name.startswith("gpu_operator_"), name
        assert options[name].get("description"), name
        if isinstance(value, str) and "{{" in value:
            # Derived defaults live only in defaults/main.yml: ansible-core templates the spec and
            # prints it resolved when validation fails. The spec says the expression in words.
            assert "default" not in options[name], name
            assert re.sub(r"\{\{\s*(.*?)\s*\}\}", r"<\1>", value) in " ".join(options[name]["description"]), name
        else:
            assert options[name].get("default") == value, name
    for name in ("gpu_operator_enabled", "gpu_operator_mig_strategy", "gpu_operator_time_slicing_enabled",
                 "gpu_operator_smoke_test_timeout", "gpu_operator_wait_timeout"):
        assert name in readme, name
    assert all(ref in MANIFEST_REFS for key, ref in defaults["gpu_operator_images"].items() if key != "driver")
    assert defaults["gpu_operator_smoke_test_image"] in MANIFEST_REFS


def test_containerd_set_as_default_reaches_the_toolkit_through_the_variable_it_reads_first(tmp_path):
    """gpu_operator_containerd_set_as_default: true makes nvidia containerd's default runtime. The
    toolkit reads NVIDIA_RUNTIME_SET_AS_DEFAULT before CONTAINERD_SET_AS_DEFAULT, and with cdi.enabled
    (the chart default) the operator sets it to "false" unless toolkit.env sets it, so only that name
    has an effect."""
    proc, values, _plan = run_render(tmp_path, HOST_MODE, ["gpu1", "gpu2"],
                                     extra={"gpu_operator_containerd_set_as_default": True})
    assert proc.returncode == 0, proc.stdout[-4000:]
    env = env_of(values, "toolkit")
    assert env["NVIDIA_RUNTIME_SET_AS_DEFAULT"] == "true" and "CONTAINERD_SET_AS_DEFAULT" not in env
    assert values.get("cdi", {}).get("enabled", True) is True  # the case the operator overrides
