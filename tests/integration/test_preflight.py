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
SMI_ERROR = ("nvidia-smi exited 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.")

# Portal secrets of the good inventory: none may show up in any output.
PORTAL_SECRETS = {"database": "pw-3c9a1f7e5d2b8046-db", "token": "tk-8e2d4b6f0a1c3957-api",
                  "cookie": "ck-5f7a9c1e3b2d4068-web"}
PORTAL_WHEELS = os.path.join(REPO, "tests", "unit", "plugins", "module_utils", "validation_cases", "fixtures",
                             "portal-wheels")
SECRET_VALUES = ["s3cr3t-value"] + sorted(PORTAL_SECRETS.values())

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
            # the fixture trees share host names: every node gets its own Kubernetes node name
            "microk8s_node_name": "{{ inventory_hostname }}",
            "labhub_bundle_dir": "/srv/labhub/bundle",
            "gpu_operator_enabled": True,
            "network_operator_enabled": True,
            "jupyterhub_auth_modes": ["native", "github"],
            "jupyterhub_github_client_id": "labhub-ci",
            "jupyterhub_github_client_secret": "{{ vault_github_client_secret }}",
            "jupyterhub_auth_settings": {"github": {"allowed_organizations": ["labhub-lab"]}},
            "vault_github_client_secret": "s3cr3t-value",
            "jupyterhub_profiles": [{"name": "cpu", "gpus": 0}, {"name": "gpu-1", "gpus": 1}],
            "preflight_min_memory_mb": 16384,
            # gpu2 builds its driver on the node: kernel headers from the site's package mirror
            "gpu_operator_extra_values": {"driver": {"repoConfig": {"configMapName": "site-apt-mirror"}}},
            "preflight_min_disk_free": [{"path": "/var", "free_mb": 64}],
            # the usage portal (installed by default): its secrets, distinct and strong, and its
            # wheel on the controller (a fixture instead of a bundle)
            "portal_database_password": "{{ vault_portal_database_password }}",
            "portal_token": "{{ vault_portal_token }}",
            "portal_cookie_secret": "{{ vault_portal_cookie_secret }}",
            "vault_portal_database_password": PORTAL_SECRETS["database"],
            "vault_portal_token": PORTAL_SECRETS["token"],
            "vault_portal_cookie_secret": PORTAL_SECRETS["cookie"],
            "portal_wheels_src_dir": PORTAL_WHEELS,
        },
        "children": {
            "labhub_cluster": {"children": {
                "labhub_control_plane": {"hosts": {
                    "cp1": node(trees, "cpu-vm"), "cp2": node(trees, "cpu-vm"), "cp3": node(trees, "cpu-vm")}},
                "labhub_workers": {"hosts": {
                    "gpu1": node(trees, "dgx-h100", gpu_operator_driver_mode="host",
                                 network_operator_hcas=["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]),
                    "gpu2": node(trees, "gpu-smi-broken", gpu_operator_driver_mode="operator",
                                 gpu_operator_mig_profile="all-1g.10gb", network_operator_hcas=["mlx5_0", "mlx5_1"]),
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


REPORT_ENV = "LABHUB_VALIDATE_REPORT"


def run(tmp_path, inv, playbook="playbooks/preflight.yml", extra=()):
    """Run a playbook with the JSON callback; return (rc, parsed output, raw stdout, rows).

    ``rows`` are the validation table's rows as labhub.platform.validate writes them to
    LABHUB_VALIDATE_REPORT ({host, variable, value, problem, expected}), or None when no
    validation ran."""
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    report = tmp_path / "validation.json"
    if report.exists():
        report.unlink()
    env = dict(os.environ)
    env.update({
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".cache", "ansible_collections"),
        "ANSIBLE_ROLES_PATH": os.path.join(REPO, "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_FORKS": "6",
        REPORT_ENV: str(report),
    })
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", str(path), playbook] + list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)
    # labhub.platform.validate prints its table on stdout, before the callback's JSON document
    start = 0 if proc.stdout.startswith("{") else proc.stdout.find("\n{\n") + 1
    try:
        out = json.loads(proc.stdout[start:]) if start >= 0 else None
    except ValueError:
        out = None
    if out is None:
        raise AssertionError("no JSON from ansible-playbook (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    rows = None
    if report.exists():
        with open(str(report)) as handle:
            rows = json.load(handle)
    return proc.returncode, out, proc.stdout + proc.stderr, rows


def task_results(out, suffix):
    """{host: result} of the (last) task whose name ends with ``suffix``."""
    found = None
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(suffix):
                found = task["hosts"]
    assert found is not None, "task %r did not run" % suffix
    return found


def report_rows(rows):
    """(host, variable, problem) of every row of the validation table, in table order."""
    assert rows is not None, "the validation did not run (no %s file)" % REPORT_ENV
    return [(r["host"], r["variable"], r["problem"]) for r in rows]


VALIDATE_TASK = "Validate everything the playbook will use (one table of every problem)"
HARDWARE_TASK = "Hardware | read the node's hardware with labhub.platform.hardware_facts"


def validation(out):
    """The result of the validation task (labhub.platform.validate, on localhost)."""
    return task_results(out, VALIDATE_TASK)["localhost"]


# -- the good inventory passes -------------------------------------------------------
def test_good_inventory_passes(tmp_path, trees):
    rc, out, raw, rows = run(tmp_path, good_inventory(trees))
    assert rc == 0, raw
    assert rows == []
    result = validation(out)
    assert result["problem_count"] == 0 and result["problems"] == []
    assert result["msg"].startswith("Validation passed: ") and result["msg"].endswith(" on 6 host(s)")
    assert "Labhub validation (" not in raw      # no table when there is no problem
    facts = task_results(out, HARDWARE_TASK)
    assert sorted(facts) == ["cp1", "cp2", "cp3", "cpu1", "gpu1", "gpu2"]
    assert facts["gpu1"]["ansible_facts"]["labhub_hardware"]["gpus"]["count"] == 8
    assert facts["gpu2"]["ansible_facts"]["labhub_hardware"]["gpus"]["nvidia_smi"]["ok"] is False
    assert facts["cpu1"]["ansible_facts"]["labhub_hardware"]["infiniband"]["hcas"] == []
    # the secrets (hub login, portal) never show up, not even with the JSON callback
    for secret in SECRET_VALUES:
        assert secret not in raw


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
    inv["all"]["vars"]["jupyterhub_auth_settings"]["oidc"] = {"allowed_groups": ["lab"]}


def unknown_and_test_only_modes(inv, trees):
    inv["all"]["vars"]["jupyterhub_auth_modes"] = ["native", "ldap", "dummy"]


def auth_modes_not_a_list(inv, trees):
    inv["all"]["vars"]["jupyterhub_auth_modes"] = "native"


def gpu_profile_with_gpu_support_off(inv, trees):
    inv["all"]["vars"]["gpu_operator_enabled"] = False
    inv["all"]["vars"]["jupyterhub_profiles"].append({"name": "half", "gpus": 0.5})


def portal_secrets_weak_or_shared(inv, trees):
    inv["all"]["vars"]["portal_database_password"] = "{{ vault_portal_cookie_secret }}"
    inv["all"]["vars"]["vault_portal_token"] = "password"


def portal_secret_missing(inv, trees):
    del inv["all"]["vars"]["portal_token"]


def unsupported_os_and_small_node(inv, trees):
    host(inv, "cpu1").update(node(trees, "cpu-debian11"), preflight_min_memory_mb=65536)


CASES = [
    ("even number of control-plane nodes", even_control_plane, [
        ("(inventory)", "groups.labhub_control_plane", "has 2 hosts (cp1, cp2): " + CP_RULE)]),
    ("host in conflicting groups", conflicting_groups, [
        ("cpu1", "groups.labhub_control_plane + groups.labhub_workers",
         "host is in both labhub_control_plane and labhub_workers")]),
    ("host outside the cluster groups", not_in_cluster, [
        ("stray", "groups.labhub_cluster", "host is in the inventory but not in labhub_cluster"),
        ("stray", "groups.labhub_cluster", "host is in labhub_gpu_nodes but not in labhub_cluster")]),
    ("non-boolean flags", non_boolean_host_flag, [
        ("gpu1", "network_operator_sriov", "is a string, not a boolean"),
        ("gpu2", "network_operator_sriov", "is an integer, not a boolean")]),
    ("GPU profile on a CPU-only node", gpu_profile_on_cpu_node, [
        ("cpu1", "groups.labhub_gpu_nodes", "host is a GPU node but no NVIDIA GPU was found (PCI vendor 0x10de)"),
        ("cpu1", "gpu_operator_mig_profile", "sets a MIG profile but the node has no NVIDIA GPU")]),
    ("host driver mode without a working driver", host_driver_mode_without_driver, [
        ("gpu1", "gpu_operator_driver_mode", "is 'host' but the NVIDIA kernel driver is not loaded "
                                             "(no /proc/driver/nvidia/version)"),
        ("gpu2", "gpu_operator_driver_mode", "is 'host' but nvidia-smi fails: " + SMI_ERROR)]),
    ("unknown GPU driver mode", unknown_driver_mode, [
        ("gpu2", "gpu_operator_driver_mode", "is not a driver mode")]),
    ("IB settings without HCAs", ib_settings_without_hcas, [
        ("cpu1", "groups.labhub_ib_nodes", "host is an InfiniBand node but no HCA was found (/sys/class/infiniband)"),
        ("cpu1", "network_operator_hcas", "names HCA 'mlx5_0' but the node has no HCA"),
        ("cpu1", "network_operator_sriov", "is true but the node has no HCA"),
        ("gpu2", "network_operator_hcas", "names HCA 'mlx5_9' but the node has HCAs: mlx5_0, mlx5_1")]),
    ("missing secrets for the chosen login modes", missing_secret, [
        ("cp1", "jupyterhub_github_client_secret", "is required by login mode 'github' but is not set or empty"),
        ("cp1", "jupyterhub_oidc_client_id", "is required by login mode 'oidc' but is not set or empty"),
        ("cp1", "jupyterhub_oidc_client_secret", "is required by login mode 'oidc' but is not set or empty")]),
    ("unknown and test-only login modes", unknown_and_test_only_modes, [
        ("cp1", "jupyterhub_auth_modes", 'unknown login mode "ldap"'),
        ("cp1", "jupyterhub_auth_modes", "login mode 'dummy' accepts any password and is for tests only")]),
    ("login modes not a list", auth_modes_not_a_list, [
        ("cp1", "jupyterhub_auth_modes", "is a string, not a list of login modes")]),
    ("GPU profile when GPU support is off", gpu_profile_with_gpu_support_off, [
        ("cp1", "jupyterhub_profiles[gpu-1].gpus", "requests 1 GPU(s) but GPU support is off (gpu_operator_enabled: false)"),
        ("cp1", "jupyterhub_profiles[half].gpus", "is not a whole number of GPUs")]),
    ("unsupported OS and too little memory", unsupported_os_and_small_node, [
        ("cpu1", "preflight_supported_os", "Debian GNU/Linux 11 (bullseye) (debian 11) is not supported"),
        ("cpu1", "preflight_min_memory_mb", "node has 32093 MiB of memory")]),
    ("portal secrets weak or shared", portal_secrets_weak_or_shared, [
        ("cp1", "portal_token", "is 8 characters long; is a well-known default"),
        ("cp1", "portal_cookie_secret", "is the same value as portal_database_password")]),
    ("portal secret missing", portal_secret_missing, [
        ("cp1", "portal_token", "is not set (the role has no default for it)")]),
]


def assert_refused(out, raw, rows, expected, playbook="preflight"):
    """The run failed in the validation, before any change, with exactly the expected rows."""
    assert report_rows(rows) == expected
    result = validation(out)
    assert result["failed"] is True and result["problem_count"] == len(expected)
    assert [(r["host"], r["variable"], r["problem"]) for r in result["problems"]] == expected
    hosts = sorted(set(r[0] for r in expected), key=lambda h: (not h.startswith("("), h))
    assert result["msg"].startswith("Validation found %d problem(s) on %s (table above)."
                                    % (len(expected), ", ".join(hosts)))
    # ONE table, printed once, with its header
    assert raw.count("Labhub validation (") == 1
    assert "Labhub validation (%s): %d problem(s)" % (playbook, len(expected)) in raw
    header = [line for line in raw.splitlines() if line.startswith("HOST ")]
    assert len(header) == 1 and [c.strip() for c in header[0].split("|")] == [
        "HOST", "VARIABLE", "VALUE", "PROBLEM", "EXPECTED"]
    # nothing after the validation ran: preflight's plays are the last ones
    assert out["plays"][-1]["play"]["name"].startswith("Preflight | validate")
    for secret in SECRET_VALUES:
        assert secret not in raw


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_with_variable_and_host(tmp_path, trees, mutate, expected):
    inv = good_inventory(trees)
    mutate(inv, trees)
    rc, out, raw, rows = run(tmp_path, inv)
    assert rc != 0, raw
    assert_refused(out, raw, rows, expected)


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
    inv["all"]["vars"]["jupyterhub_auth_settings"]["azuread"] = {"allowed_groups": ["lab"]}
    rc, out, raw, rows = run(tmp_path, inv)
    assert rc != 0, raw
    assert_refused(out, raw, rows, [
        ("(inventory)", "groups.labhub_control_plane", "has 2 hosts (cp1, cp2): " + CP_RULE),
        ("cp1", "jupyterhub_azuread_client_secret", "is required by login mode 'azuread' but is not set or empty"),
        ("cpu1", "groups.labhub_gpu_nodes", "host is a GPU node but no NVIDIA GPU was found (PCI vendor 0x10de)"),
        ("cpu1", "gpu_operator_mig_profile", "sets a MIG profile but the node has no NVIDIA GPU"),
        ("gpu1", "network_operator_sriov", "is a string, not a boolean"),
        ("gpu2", "network_operator_sriov", "is an integer, not a boolean"),
        ("gpu2", "gpu_operator_driver_mode", "is 'host' but nvidia-smi fails: " + SMI_ERROR),
    ])
    # the table's cells: host, variable, value (the secret redacted), problem, expected
    by_var = dict(((r["host"], r["variable"]), r) for r in rows)
    assert by_var[("gpu1", "network_operator_sriov")]["value"] == '"yes"'
    assert by_var[("gpu1", "network_operator_sriov")]["expected"] == "true or false (unquoted YAML)"
    assert by_var[("cpu1", "gpu_operator_mig_profile")]["value"] == '"all-1g.10gb"'
    assert by_var[("cp1", "jupyterhub_azuread_client_secret")]["value"] in ("", "<secret>")
    # the play stopped at preflight: no host got past the validation
    assert all(play["play"]["name"].startswith("Preflight") for play in out["plays"])


def test_portal_secrets_not_needed_without_the_portal(tmp_path, trees):
    """portal_enabled: false: site.yml installs no portal, so its secrets are not required."""
    inv = good_inventory(trees)
    portal_secret_missing(inv, trees)
    inv["all"]["vars"]["portal_enabled"] = False
    rc, out, raw, rows = run(tmp_path, inv)
    assert rc == 0, raw
    assert rows == []


def test_extra_var_string_boolean_is_one_row(tmp_path, trees):
    """`-e gpu_operator_enabled=false` is the string "false" on every host: one row for all."""
    rc, out, raw, rows = run(tmp_path, good_inventory(trees), extra=["-e", "gpu_operator_enabled=false"])
    assert rc != 0, raw
    assert_refused(out, raw, rows, [("(all hosts)", "gpu_operator_enabled", "is a string, not a boolean")])


def test_unreadable_node_is_a_row_not_a_crash(tmp_path, trees):
    inv = good_inventory(trees)
    host(inv, "cpu1")["preflight_hardware_root"] = str(tmp_path / "missing")
    host(inv, "gpu2").update(ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=1,
                             ansible_ssh_common_args="-o ConnectTimeout=5 -o StrictHostKeyChecking=no")
    rc, out, raw, rows = run(tmp_path, inv)
    assert rc != 0, raw
    rows = report_rows(rows)
    assert [r[:2] for r in rows] == [("cpu1", "preflight_hardware_root"), ("gpu2", "ansible_host")]
    assert rows[0][2] == ("labhub.platform.hardware_facts failed: Failed to gather hardware facts from root '%s' "
                          "due to: not a directory" % (tmp_path / "missing"))
    assert rows[1][2].startswith("host is unreachable: ")


def test_role_arguments_are_type_checked(tmp_path, trees):
    inv = good_inventory(trees)
    inv["all"]["vars"]["preflight_min_memory_mb"] = "lots"
    rc, out, raw, rows = run(tmp_path, inv)
    assert rc != 0
    assert_refused(out, raw, rows, [("(all hosts)", "preflight_min_memory_mb", "is not a whole number of MiB (0 or more)")])


def single_node(trees):
    """The good inventory with one control-plane node (cp1) only."""
    inv = good_inventory(trees)
    group(inv, "labhub_control_plane").pop("cp2")
    group(inv, "labhub_control_plane").pop("cp3")
    return inv


@pytest.mark.parametrize("playbook", ["add_node.yml", "remove_node.yml"])
def test_node_playbooks_refuse_unknown_node(tmp_path, trees, playbook):
    """-e node= not naming an inventory host, or missing: a row of the one table, before any change,
    with the inventory's own problems in the same table."""
    inv = good_inventory(trees)
    host(inv, "cp1")["network_operator_sriov"] = "yes"
    hosts = "cp1, cp2, cp3, cpu1, gpu1, gpu2"
    sriov = ("cp1", "network_operator_sriov", "is a string, not a boolean")
    rc, out, raw, rows = run(tmp_path, inv, playbook=playbook, extra=["-e", "node=gpu9"])
    assert rc != 0, raw
    assert_refused(out, raw, rows, [("(inventory)", "node", "is not a host of the inventory"), sriov],
                   playbook=playbook[:-4])
    assert rows[0]["value"] == '"gpu9"' and rows[0]["expected"] == "one of: " + hosts
    rc, out, raw, rows = run(tmp_path, inv, playbook=playbook)
    assert rc != 0, raw
    assert_refused(out, raw, rows, [("(inventory)", "node", "is not set"), sriov], playbook=playbook[:-4])
    assert rows[0]["expected"].endswith(hosts)


def test_remove_node_on_a_single_node_inventory_runs_the_validation(tmp_path, trees):
    """node=cp1 on a one-node inventory: no other control-plane node to read hardware on, but the
    validation still runs (and refuses the inventory's problems)."""
    inv = single_node(trees)
    host(inv, "gpu1")["network_operator_sriov"] = "yes"
    rc, out, raw, rows = run(tmp_path, inv, playbook="remove_node.yml", extra=["-e", "node=cp1"])
    assert rc != 0, raw
    assert_refused(out, raw, rows, [("gpu1", "network_operator_sriov", "is a string, not a boolean")],
                   playbook="remove_node")
    # no hardware was read: the departing node is the only control-plane node
    assert all(not task["hosts"] for play in out["plays"] for task in play["tasks"]
               if task["task"]["name"].endswith(HARDWARE_TASK))


def test_remove_node_checks_its_arguments_alone_when_preflight_is_skipped(tmp_path, trees):
    inv = good_inventory(trees)
    rc, out, raw, rows = run(tmp_path, inv, playbook="remove_node.yml",
                             extra=["-e", "node=gpu9", "--skip-tags", "preflight"])
    assert rc != 0, raw
    assert report_rows(rows) == [("(inventory)", "node", "is not a host of the inventory")]
    assert not any(play["play"]["name"].startswith("Preflight") for play in out["plays"])


# add_node.yml only: remove_node.yml preflights the OTHER control-plane nodes (the departing node
# may be dead) and then probes the cluster; tests/simulator/tests/test_playbooks_nodes.py covers it.
@pytest.mark.parametrize("playbook", ["add_node.yml"])
def test_node_playbooks_run_preflight_on_that_node_only(tmp_path, trees, playbook):
    inv = good_inventory(trees)
    host(inv, "cpu1")["network_operator_hcas"] = ["mlx5_0"]   # a problem on another node is not reported
    rc, out, raw, rows = run(tmp_path, inv, playbook=playbook, extra=["-e", "node=gpu1", "--tags", "preflight"])
    assert rc == 0, raw
    assert rows == []
    hw = task_results(out, HARDWARE_TASK)
    assert sorted(hw) == ["gpu1"]
    even_control_plane(inv, trees)     # inventory-wide problems still are
    rc, out, raw, rows = run(tmp_path, inv, playbook=playbook, extra=["-e", "node=gpu1", "--tags", "preflight"])
    assert rc != 0
    assert_refused(out, raw, rows, [("(inventory)", "groups.labhub_control_plane", "has 2 hosts (cp1, cp2): " + CP_RULE)],
                   playbook="add_node")


# -- the shipped inventories -------------------------------------------------------
def example_overlay(trees):
    """inventories/example's hosts on fixture hardware (connection local)."""
    overlay = {"all": {"vars": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                                # a fixture wheel instead of the bundle at /srv/labhub/bundle
                                "portal_wheels_src_dir": PORTAL_WHEELS,
                                # the fixture trees share host names
                                "microk8s_node_name": "{{ inventory_hostname }}"},
                       "hosts": {}}}
    hosts = overlay["all"]["hosts"]
    # the fixture tree's /var is measured on the test host's disk: do not ask for 200 GB
    for name in ("cp01", "cp02", "cp03", "cpu01", "cpu02"):
        hosts[name] = node(trees, "cpu-vm", preflight_min_disk_free=[{"path": "/var", "free_mb": 64}])
    for name in ("gpu01", "gpu02", "gpu03", "gpu04"):
        hosts[name] = node(trees, "dgx-h100", preflight_min_disk_free=[{"path": "/var", "free_mb": 64}])
    return overlay


# The site's vault (group_vars/all/vault.yml) as the example inventory expects it.
EXAMPLE_VAULT = {
    "vault_jupyterhub_oidc_client_secret": "oidc-from-vault-7d41c2",
    "vault_portal_database_password": "pw-from-vault-9e3b51a7c2",
    "vault_portal_token": "tk-from-vault-4f8a62d0e1",
    "vault_portal_cookie_secret": "ck-from-vault-1c7e93b5a4",
}


def test_example_inventory_on_example_hardware(tmp_path, trees):
    """inventories/example with each host's hardware from a fixture tree: only the vault's
    secrets are missing (each one row, no value shown); with them, preflight passes."""
    overlay = example_overlay(trees)
    example = ["-i", os.path.join(REPO, "inventories", "example")]
    rc, out, raw, rows = run(tmp_path, overlay, extra=example)
    assert rc != 0, raw
    assert sorted(report_rows(rows)) == sorted([
        ("cp01", "jupyterhub_oidc_client_secret", "is required by login mode 'oidc' but is not set or empty"),
        ("cp01", "portal_database_password", "cannot be resolved: AnsibleUndefinedVariable"),
        ("cp01", "portal_token", "cannot be resolved: AnsibleUndefinedVariable"),
        ("cp01", "portal_cookie_secret", "cannot be resolved: AnsibleUndefinedVariable"),
    ])
    rc, out, raw, rows = run(tmp_path, overlay, extra=example + ["-e", json.dumps(EXAMPLE_VAULT)])
    assert rc == 0, raw
    assert rows == []
    for secret in EXAMPLE_VAULT.values():
        assert secret not in raw
    hw = task_results(out, HARDWARE_TASK)
    assert sorted(hw) == ["cp01", "cp02", "cp03", "cpu01", "cpu02", "gpu01", "gpu02", "gpu03", "gpu04"]


def test_local_inventory_on_this_host(tmp_path):
    """inventories/local for real: hardware_facts reads this machine (root=/)."""
    inv = {"all": {"hosts": {}}}   # nothing added; the real inventory is passed with -i
    rc, out, raw, rows = run(tmp_path, inv, extra=[
        "-i", os.path.join(REPO, "inventories", "local"),
        "-e", json.dumps({"preflight_min_disk_free": [{"path": "/var", "free_mb": 64}],
                          "preflight_min_memory_mb": 1024,
                          "portal_wheels_src_dir": PORTAL_WHEELS})])
    assert rc == 0, raw
    assert rows == []
    hw = task_results(out, HARDWARE_TASK)
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
    rc, out, raw, rows = run(tmp_path, inv, playbook=str(playbook))
    assert rc != 0, raw
    assert report_rows(rows) == [("cpu1", "network_operator_hcas", "names HCA 'mlx5_0' but the node has no HCA")]
    assert sorted(os.listdir(str(marker_dir))) == []
    # and with the problem fixed, the next play does run everywhere
    del host(inv, "cpu1")["network_operator_hcas"]
    rc, out, raw, rows = run(tmp_path, inv, playbook=str(playbook))
    assert rc == 0, raw
    assert sorted(os.listdir(str(marker_dir))) == ["cp1", "cp2", "cp3", "cpu1", "gpu1", "gpu2"]
