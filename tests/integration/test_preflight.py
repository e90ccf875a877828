# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""The preflight role against a table of bad inputs.

Each case writes a small inventory of local-connection hosts whose hardware comes from the
hardware fixture trees (a DGX H100 with 4 IB HCAs, a 2x A100 node whose nvidia-smi fails,
a CPU-only VM; tests/unit/fixtures/hardware), runs the real ``ansible-playbook
playbooks/preflight.yml`` (and add_node.yml / remove_node.yml), and asserts the exact rows
of the one problem table: host, variable, problem. Nothing is mocked: the real
labhub.platform.hardware_facts reads the trees.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardware_trees import materialise  # noqa: E402  pylint: disable=wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CP_RULE = "an HA control plane needs an odd number of nodes (1, 3, 5, ...) to keep quorum"
SUPPORTED = "supported: ubuntu 22.04, ubuntu 24.04, debian 12"

pytestmark = pytest.mark.slow


# -- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Materialised hardware trees, plus variants derived from them for single facts."""
    top = tmp_path_factory.mktemp("hardware")
    out = {}
    for tree in ("dgx-h100", "gpu-smi-broken", "cpu-vm"):
        out[tree] = materialise(tree, str(top / tree))
    # A DGX whose NVIDIA kernel driver is not loaded (GPUs on the PCI bus, no /proc/driver/nvidia).
    out["dgx-no-driver"] = materialise("dgx-h100", str(top / "dgx-no-driver"))
    shutil.rmtree(os.path.join(out["dgx-no-driver"], "proc", "driver", "nvidia"))
    # A VM still on Debian 11.
    out["cpu-debian11"] = materialise("cpu-vm", str(top / "cpu-debian11"))
    with open(os.path.join(out["cpu-debian11"], "etc", "os-release"), "w") as handle:
        handle.write('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\n'
                     'VERSION_ID="11"\nVERSION_CODENAME=bullseye\nID=debian\n')
    return out


def node(trees, tree, **extra):
    hostvars = {"preflight_hardware_root": trees[tree]}
    smi = os.path.join(trees[tree], "usr", "bin", "nvidia-smi")
    if os.access(smi, os.X_OK):
        hostvars["preflight_hardware_nvidia_smi_path"] = smi
    hostvars.update(extra)
    return hostvars


def good_inventory(trees):
    """3 control-plane VMs, a DGX (host driver), an A100 node (operator driver), a CPU worker."""
    return {"all": {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "gpu_operator_enabled": True,
            "network_operator_enabled": True,
            "jupyterhub_auth_modes": ["native", "github"],
            "jupyterhub_github_client_id": "labhub-ci",
            "jupyterhub_github_client_secret": "{{ vault_github_client_secret }}",
            "vault_github_client_secret": "s3cr3t-value",
            "jupyterhub_profiles": [{"name": "cpu", "gpus": 0}, {"name": "gpu-1", "gpus": 1}],
            "preflight_min_memory_mb": 16384,
            "preflight_min_disk_free": [{"path": "/var", "free_mb": 64}],
        },
        "children": {
            "labhub_cluster": {"children": {
                "labhub_control_plane": {"hosts": {
                    "cp1": node(trees, "cpu-vm"), "cp2": node(trees, "cpu-vm"), "cp3": node(trees, "cpu-vm")}},
                "labhub_workers": {"hosts": {
                    "gpu1": node(trees, "dgx-h100", gpu_operator_driver_mode="host",
                                 network_operator_hcas=["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]),
                    "gpu2": node(trees, "gpu-smi-broken", gpu_operator_driver_mode="operator",
                                 gpu_operator_mig_profile="all-1g.10gb", network_operator_hcas=["mlx5_0"]),
                    "cpu1": node(trees, "cpu-vm")}},
            }},
            "labhub_gpu_nodes": {"hosts": {"gpu1": None, "gpu2": None}},
            "labhub_ib_nodes": {"hosts": {"gpu1": None, "gpu2": None}},
        },
    }}


def host(inv, name):
    """The hostvars dict of ``name`` in ``inv``."""
    for group in ("labhub_control_plane", "labhub_workers"):
        hosts = inv["all"]["children"]["labhub_cluster"]["children"][group]["hosts"]
        if name in hosts:
            return hosts[name]
    raise KeyError(name)


def group(inv, name):
    children = inv["all"]["children"]
    if name in children:
        return children[name].setdefault("hosts", {})
    return children["labhub_cluster"]["children"][name].setdefault("hosts", {})


def run(tmp_path, inv, playbook="playbooks/preflight.yml", extra=()):
    """Run a playbook with the JSON callback; return (rc, parsed output, raw stdout)."""
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    env = dict(os.environ)
    env.update({
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".cache", "ansible_collections"),
        "ANSIBLE_ROLES_PATH": os.path.join(REPO, "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_FORKS": "6",
    })
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", str(path), playbook] + list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("no JSON from ansible-playbook (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, out, proc.stdout


def task_results(out, suffix):
    """{host: result} of the (last) task whose name ends with ``suffix``."""
    found = None
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(suffix):
                found = task["hosts"]
    assert found is not None, "task %r did not run" % suffix
    return found


def report_rows(out):
    results = task_results(out, "Report | collect the problems of the inventory and of every node")
    first = list(results.values())[0]
    return [(r["host"], r["variable"], r["problem"]) for r in first["ansible_facts"]["preflight_report"]]


def table(out):
    results = task_results(out, "Report | print the problem table")
    return list(results.values())[0]["msg"]


# -- the good inventory passes -------------------------------------------------------
def test_good_inventory_passes(tmp_path, trees):
    rc, out, raw = run(tmp_path, good_inventory(trees))
    assert rc == 0, raw
    assert report_rows(out) == []
    passed = task_results(out, "Report | all checks passed")
    assert list(passed.values())[0]["msg"] == "Preflight passed on 6 node(s): cp1, cp2, cp3, cpu1, gpu1, gpu2"
    facts = task_results(out, "Hardware | read the node's hardware with labhub.platform.hardware_facts")
    assert facts["gpu1"]["ansible_facts"]["labhub_hardware"]["gpus"]["count"] == 8
    assert facts["gpu2"]["ansible_facts"]["labhub_hardware"]["gpus"]["nvidia_smi"]["ok"] is False
    assert facts["cpu1"]["ansible_facts"]["labhub_hardware"]["infiniband"]["hcas"] == []
    # the secret behind the github mode never shows up, not even with the JSON callback
    assert "s3cr3t-value" not in raw


# -- bad inputs: one case per row of the "Bad input" lists ----------------------
def even_control_plane(inv, trees):
    group(inv, "labhub_control_plane").pop("cp3")
    group(inv, "labhub_workers")["cp3"] = node(trees, "cpu-vm")


def conflicting_groups(inv, trees):
    group(inv, "labhub_control_plane").pop("cp3")
    group(inv, "labhub_control_plane")["cpu1"] = None


def not_in_cluster(inv, trees):
    group(inv, "labhub_gpu_nodes")["stray"] = node(trees, "dgx-h100", gpu_operator_driver_mode="operator")


def non_boolean_host_flag(inv, trees):
    host(inv, "gpu1")["network_operator_sriov"] = "yes"
    host(inv, "gpu2")["network_operator_sriov"] = 1


def gpu_profile_on_cpu_node(inv, trees):
    host(inv, "cpu1")["gpu_operator_mig_profile"] = "all-1g.10gb"
    group(inv, "labhub_gpu_nodes")["cpu1"] = None


def host_driver_mode_without_driver(inv, trees):
    host(inv, "gpu1").update(node(trees, "dgx-no-driver"))
    host(inv, "gpu2")["gpu_operator_driver_mode"] = "host"


def unknown_driver_mode(inv, trees):
    host(inv, "gpu2")["gpu_operator_driver_mode"] = "precompiled"


def ib_settings_without_hcas(inv, trees):
    host(inv, "cpu1").update(network_operator_hcas=["mlx5_0"], network_operator_sriov=True)
    group(inv, "labhub_ib_nodes")["cpu1"] = None
    host(inv, "gpu2")["network_operator_hcas"] = ["mlx5_0", "mlx5_9"]


def missing_secret(inv, trees):
    del inv["all"]["vars"]["vault_github_client_secret"]
    inv["all"]["vars"]["jupyterhub_auth_modes"] = ["native", "github", "oidc"]
    inv["all"]["vars"]["jupyterhub_oidc_issuer_url"] = "https://sso.example.org/realms/lab"
    inv["all"]["vars"]["jupyterhub_oidc_client_id"] = ""


def unknown_and_test_only_modes(inv, trees):
    inv["all"]["vars"]["jupyterhub_auth_modes"] = ["native", "ldap", "dummy"]


def auth_modes_not_a_list(inv, trees):
    inv["all"]["vars"]["jupyterhub_auth_modes"] = "native"


def gpu_profile_with_gpu_support_off(inv, trees):
    inv["all"]["vars"]["gpu_operator_enabled"] = False
    inv["all"]["vars"]["jupyterhub_profiles"].append({"name": "half", "gpus": 0.5})


def unsupported_os_and_small_node(inv, trees):
    host(inv, "cpu1").update(node(trees, "cpu-debian11"), preflight_min_memory_mb=65536)


CASES = [
    ("even number of control-plane nodes", even_control_plane, [
        ("(inventory)", "groups.labhub_control_plane", "has 2 hosts (cp1, cp2): " + CP_RULE)]),
    ("host in conflicting groups", conflicting_groups, [
        ("cpu1", "groups.labhub_control_plane + groups.labhub_workers",
         "host is in both labhub_control_plane and labhub_workers; it may be in only one of them")]),
    ("host outside the cluster groups", not_in_cluster, [
        ("stray", "groups.labhub_cluster", "host is in the inventory but not in labhub_cluster"),
        ("stray", "groups.labhub_cluster", "host is in labhub_gpu_nodes but not in labhub_cluster")]),
    ("non-boolean flags", non_boolean_host_flag, [
        ("gpu1", "network_operator_sriov", "must be a boolean (true or false), got string 'yes'"),
        ("gpu2", "network_operator_sriov", "must be a boolean (true or false), got int 1")]),
    ("GPU profile on a CPU-only node", gpu_profile_on_cpu_node, [
        ("cpu1", "groups.labhub_gpu_nodes", "host is a GPU node but no NVIDIA GPU was found (PCI vendor 0x10de)"),
        ("cpu1", "gpu_operator_mig_profile", "sets GPU profile 'all-1g.10gb' but the node has no NVIDIA GPU")]),
    ("host driver mode without a working driver", host_driver_mode_without_driver, [
        ("gpu1", "gpu_operator_driver_mode", "is 'host' but the NVIDIA kernel driver is not loaded "
                                           "(no /proc/driver/nvidia/version); install it or use 'operator'"),
        ("gpu2", "gpu_operator_driver_mode", "is 'host' but nvidia-smi fails: nvidia-smi exited 9: NVIDIA-SMI has failed "
                                           "because it couldn't communicate with the NVIDIA driver. Make sure that the "
                                           "latest NVIDIA driver is installed and running.")]),
    ("unknown GPU driver mode", unknown_driver_mode, [
        ("gpu2", "gpu_operator_driver_mode", 'must be one of host, operator, got "precompiled"')]),
    ("IB settings without HCAs", ib_settings_without_hcas, [
        ("cpu1", "groups.labhub_ib_nodes", "host is an InfiniBand node but no HCA was found (/sys/class/infiniband)"),
        ("cpu1", "network_operator_hcas", "names HCA 'mlx5_0' but the node has no HCA"),
        ("cpu1", "network_operator_sriov", "is true but the node has no HCA"),
        ("gpu2", "network_operator_hcas", "names HCA 'mlx5_9' but the node has HCAs: mlx5_0, mlx5_1")]),
    ("missing secrets for the chosen login modes", missing_secret, [
        ("cp1", "jupyterhub_github_client_secret", "is required by login mode 'github' but is not set or empty "
                                                   "(keep secrets in a vault-encrypted file)"),
        ("cp1", "jupyterhub_oidc_client_id", "is required by login mode 'oidc' but is not set or empty "
                                             "(keep secrets in a vault-encrypted file)"),
        ("cp1", "jupyterhub_oidc_client_secret", "is required by login mode 'oidc' but is not set or empty "
                                                 "(keep secrets in a vault-encrypted file)")]),
    ("unknown and test-only login modes", unknown_and_test_only_modes, [
        ("cp1", "jupyterhub_auth_modes", 'unknown login mode "ldap"; known modes: '
                                         "native, github, azuread, auth0, oidc, cookie_sso, local_groups, dummy"),
        ("cp1", "jupyterhub_auth_modes", "login mode 'dummy' is for tests only (allowed when labhub_test_inventory: true)")]),
    ("login modes not a list", auth_modes_not_a_list, [
        ("cp1", "jupyterhub_auth_modes", 'must be a list of login modes (e.g. [native]), got "native"')]),
    ("GPU profile when GPU support is off", gpu_profile_with_gpu_support_off, [
        ("cp1", "jupyterhub_profiles[gpu-1].gpus", "requests 1 GPU(s) but GPU support is off (gpu_operator_enabled: false)"),
        ("cp1", "jupyterhub_profiles[half].gpus", "must be a whole number of GPUs (0 or more), got 0.5")]),
    ("unsupported OS and too little memory", unsupported_os_and_small_node, [
        ("cpu1", "preflight_supported_os", "Debian GNU/Linux 11 (bullseye) (debian 11) is not supported; " + SUPPORTED),
        ("cpu1", "preflight_min_memory_mb", "node has 32093 MiB of memory, needs at least 65536 MiB")]),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_with_variable_and_host(tmp_path, trees, mutate, expected):
    inv = good_inventory(trees)
    mutate(inv, trees)
    rc, out, raw = run(tmp_path, inv)
    assert rc != 0, raw
    assert report_rows(out) == expected
    failed = task_results(out, "Report | fail before any change when there is a problem")
    msg = [r for r in failed.values() if r.get("failed")][0]["msg"]
    assert msg.startswith("Preflight found %d problem(s) on " % len(expected))
    assert "s3cr3t-value" not in raw


def test_one_table_for_every_problem_on_every_node(tmp_path, trees):
    """Problems of the inventory and of several nodes end up in one table, sorted by host."""
    inv = good_inventory(trees)
    even_control_plane(inv, trees)
    non_boolean_host_flag(inv, trees)
    gpu_profile_on_cpu_node(inv, trees)
    host(inv, "gpu2")["gpu_operator_driver_mode"] = "host"
    inv["all"]["vars"]["jupyterhub_auth_modes"] = ["github", "azuread"]
    inv["all"]["vars"]["jupyterhub_azuread_tenant_id"] = "0000-1111"
    inv["all"]["vars"]["jupyterhub_azuread_client_id"] = "labhub"
    rc, out, raw = run(tmp_path, inv)
    assert rc != 0, raw
    assert table(out) == [
        "HOST         VARIABLE                          PROBLEM",
        "-----------  --------------------------------  -------",
        "(inventory)  groups.labhub_control_plane       has 2 hosts (cp1, cp2): " + CP_RULE,
        "cp1          jupyterhub_azuread_client_secret  is required by login mode 'azuread' but is not set or empty "
        "(keep secrets in a vault-encrypted file)",
        "cpu1         groups.labhub_gpu_nodes           host is a GPU node but no NVIDIA GPU was found (PCI vendor 0x10de)",
        "cpu1         gpu_operator_mig_profile            sets GPU profile 'all-1g.10gb' but the node has no NVIDIA GPU",
        "gpu1         network_operator_sriov                   must be a boolean (true or false), got string 'yes'",
        "gpu2         network_operator_sriov                   must be a boolean (true or false), got int 1",
        "gpu2         gpu_operator_driver_mode            is 'host' but nvidia-smi fails: nvidia-smi exited 9: NVIDIA-SMI has "
        "failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is "
        "installed and running.",
    ]
    # the play stopped at preflight: no host got past the report
    assert all(play["play"]["name"].startswith("Preflight") for play in out["plays"])


def test_extra_var_string_boolean_is_one_row(tmp_path, trees):
    """`-e gpu_operator_enabled=false` is the string "false" on every host: one row for all."""
    rc, out, raw = run(tmp_path, good_inventory(trees), extra=["-e", "gpu_operator_enabled=false"])
    assert rc != 0, raw
    assert report_rows(out) == [
        ("(all hosts)", "gpu_operator_enabled", "must be a boolean (true or false), got string 'false'")]


def test_unreadable_node_is_a_row_not_a_crash(tmp_path, trees):
    inv = good_inventory(trees)
    host(inv, "cpu1")["preflight_hardware_root"] = str(tmp_path / "missing")
    host(inv, "gpu2").update(ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=1,
                             ansible_ssh_common_args="-o ConnectTimeout=5 -o StrictHostKeyChecking=no")
    rc, out, raw = run(tmp_path, inv)
    assert rc != 0, raw
    rows = report_rows(out)
    assert [r[:2] for r in rows] == [("cpu1", "preflight_hardware_root"), ("gpu2", "ansible_host")]
    assert rows[0][2] == ("labhub.platform.hardware_facts failed: Failed to gather hardware facts from root '%s' "
                          "due to: not a directory" % (tmp_path / "missing"))
    assert rows[1][2].startswith("host is unreachable: ")


def test_role_arguments_are_type_checked(tmp_path, trees):
    inv = good_inventory(trees)
    inv["all"]["vars"]["preflight_min_memory_mb"] = "lots"
    rc, out, raw = run(tmp_path, inv)
    assert rc != 0
    assert "preflight_min_memory_mb" in raw and "int" in raw


@pytest.mark.parametrize("playbook", ["add_node.yml", "remove_node.yml"])
def test_node_playbooks_refuse_unknown_node(tmp_path, trees, playbook):
    rc, out, raw = run(tmp_path, good_inventory(trees), playbook=playbook, extra=["-e", "node=gpu9"])
    assert rc != 0
    res = task_results(out, "node names one host of the inventory")["localhost"]
    assert res["failed"] is True
    assert res["msg"] == ("Variable 'node' must name one host of the inventory (-e node=<host>), got \"gpu9\". "
                          "Inventory hosts: cp1, cp2, cp3, cpu1, gpu1, gpu2.")
    rc, out, raw = run(tmp_path, good_inventory(trees), playbook=playbook)
    assert rc != 0
    assert "got nothing" in task_results(out, "node names one host of the inventory")["localhost"]["msg"]


# add_node.yml only: remove_node.yml preflights the OTHER control-plane nodes (the departing node
# may be dead) and then probes the cluster; tests/simulator/tests/test_playbooks_nodes.py covers it.
@pytest.mark.parametrize("playbook", ["add_node.yml"])
def test_node_playbooks_run_preflight_on_that_node_only(tmp_path, trees, playbook):
    inv = good_inventory(trees)
    host(inv, "cpu1")["network_operator_hcas"] = ["mlx5_0"]   # a problem on another node is not reported
    rc, out, raw = run(tmp_path, inv, playbook=playbook, extra=["-e", "node=gpu1", "--tags", "preflight"])
    assert rc == 0, raw
    hw = task_results(out, "Hardware | read the node's hardware with labhub.platform.hardware_facts")
    assert sorted(hw) == ["gpu1"]
    inv["all"]["vars"]["jupyterhub_auth_modes"] = []     # inventory-wide problems still are
    rc, out, raw = run(tmp_path, inv, playbook=playbook, extra=["-e", "node=gpu1", "--tags", "preflight"])
    assert rc != 0
    assert report_rows(out) == [("cp1", "jupyterhub_auth_modes", "is empty; choose one or more of: "
                                 "native, github, azuread, auth0, oidc, cookie_sso, local_groups, dummy")]


# -- the shipped inventories -------------------------------------------------------
def test_example_inventory_on_example_hardware(tmp_path, trees):
    """inventories/example with each host's hardware from a fixture tree: only the vault
    secret is missing; with it, preflight passes."""
    overlay = {"all": {"vars": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                       "hosts": {}}}
    hosts = overlay["all"]["hosts"]
    for name in ("cp01", "cp02", "cp03", "cpu01", "cpu02"):
        hosts[name] = node(trees, "cpu-vm")
    for name in ("gpu01", "gpu02", "gpu03", "gpu04"):
        # the fixture tree's /var is measured on the test host's disk: do not ask for 200 GB
        hosts[name] = node(trees, "dgx-h100", preflight_min_disk_free=[{"path": "/var", "free_mb": 64}])
    for name in ("cp01", "cp02", "cp03", "cpu01", "cpu02"):
        hosts[name]["preflight_min_disk_free"] = [{"path": "/var", "free_mb": 64}]
    example = ["-i", os.path.join(REPO, "inventories", "example")]
    rc, out, raw = run(tmp_path, overlay, extra=example)
    assert rc != 0, raw
    assert report_rows(out) == [
        ("cp01", "jupyterhub_oidc_client_secret", "is required by login mode 'oidc' but is not set or empty "
                                                  "(keep secrets in a vault-encrypted file)")]
    rc, out, raw = run(tmp_path, overlay, extra=example + ["-e", "vault_labhub_hub_oidc_client_secret=from-vault"])
    assert rc == 0, raw
    assert "from-vault" not in raw
    hw = task_results(out, "Hardware | read the node's hardware with labhub.platform.hardware_facts")
    assert sorted(hw) == ["cp01", "cp02", "cp03", "cpu01", "cpu02", "gpu01", "gpu02", "gpu03", "gpu04"]


def test_local_inventory_on_this_host(tmp_path):
    """inventories/local for real: hardware_facts reads this machine (root=/)."""
    inv = {"all": {"hosts": {}}}   # nothing added; the real inventory is passed with -i
    rc, out, raw = run(tmp_path, inv, extra=[
        "-i", os.path.join(REPO, "inventories", "local"),
        "-e", json.dumps({"preflight_min_disk_free": [{"path": "/var", "free_mb": 64}]})])
    assert rc == 0, raw
    hw = task_results(out, "Hardware | read the node's hardware with labhub.platform.hardware_facts")
    facts = hw["localhost"]["ansible_facts"]["labhub_hardware"]
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    assert facts["memory_mb"] == mem_kb // 1024
    assert facts["disk_free"][0]["path"] == "/var"


def test_nothing_after_preflight_runs_when_it_fails(tmp_path, trees):
    """A play after preflight (as in site.yml) never starts on any host when preflight fails."""
    marker_dir = tmp_path / "changed"
    playbook = tmp_path / "site.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "Preflight", "ansible.builtin.import_playbook": os.path.join(REPO, "playbooks", "preflight.yml")},
        {"name": "A change", "hosts": "all", "gather_facts": False, "tasks": [
            {"name": "Touch a marker", "ansible.builtin.file": {
                "path": str(marker_dir / "{{ inventory_hostname }}"), "state": "touch", "mode": "0644"}}]},
    ]))
    marker_dir.mkdir()
    inv = good_inventory(trees)
    host(inv, "cpu1")["network_operator_hcas"] = ["mlx5_0"]     # one problem on one node
    rc, out, raw = run(tmp_path, inv, playbook=str(playbook))
    assert rc != 0, raw
    assert report_rows(out) == [("cpu1", "network_operator_hcas", "names HCA 'mlx5_0' but the node has no HCA")]
    assert sorted(os.listdir(str(marker_dir))) == []
    # and with the problem fixed, the next play does run everywhere
    del host(inv, "cpu1")["network_operator_hcas"]
    rc, out, raw = run(tmp_path, inv, playbook=str(playbook))
    assert rc == 0, raw
    assert sorted(os.listdir(str(marker_dir))) == ["cp1", "cp2", "cp3", "cpu1", "gpu1", "gpu2"]
