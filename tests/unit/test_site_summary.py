# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The install summary and JSON run record of site.yml (playbooks/summary.yml), run through the real
``ansible-playbook`` on a temporary inventory of three local hosts.

The hardware facts are real: labhub.platform.hardware_facts reads the hardware fixture trees
(tests/unit/fixtures/hardware: DGX H100 with 8 GPUs and 4 HCAs, CPU VM), materialised by
tests/integration/hardware_trees.py, exactly as preflight leaves them for later plays. No cluster
is reachable here (no kubeconfig, or one pointing at a closed port), so the summary must fall back
to the configured NodePort and say why. The inventory carries secrets with distinctive values;
none may appear in the printed summary or in the record.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import hardware_trees  # noqa: E402  pylint: disable=wrong-import-position

SECRETS = {
    "portal_token": "tok-9f8e7d6c5b4a-portal",
    "portal_database_password": "pw-1a2b3c4d5e6f-database",
    "portal_hub_api_token": "tok-0a9b8c7d6e5f-hubapi",
    "portal_cookie_secret": "sec-aa11bb22cc33-cookie",
    "jupyterhub_github_client_secret": "sec-77gg88hh99ii-github",
    "vault_jupyterhub_github_client_secret": "sec-77gg88hh99ii-github",
    "jupyterhub_cookie_secret": "ab" * 32,
    "site_ssh_private_key": "key-zz99yy88xx77-ssh",
    "registry_password": "pw-qq55ww44ee33-registry",
}


def write_yaml(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)


@pytest.fixture(scope="module")
def hardware(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("hardware"))
    for tree in ("dgx-h100", "cpu-vm"):
        hardware_trees.materialise(tree, os.path.join(dest, tree))
    return dest


def make_inventory(base, hardware, extra_all=None):
    inv = os.path.join(base, "inventory")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    write_yaml(os.path.join(inv, "hosts.yml"), {"all": {"children": {
        "labhub_cluster": {"children": {
            "labhub_control_plane": {"hosts": {"cp1": dict(local, ansible_host="10.9.0.11")}},
            "labhub_workers": {"hosts": {"gpu1": dict(local, ansible_host="10.9.0.21"),
                                         "cpu1": dict(local, ansible_host="10.9.0.31")}}}},
        "labhub_gpu_nodes": {"hosts": {"gpu1": None}},
        "labhub_ib_nodes": {"hosts": {"gpu1": None}}}}})
    all_vars = {
        "labhub_bundle_dir": os.path.join(base, "bundle"),
        "gpu_operator_enabled": True,
        "network_operator_enabled": True,
        "jupyterhub_auth_modes": ["native", "github"],
        "jupyterhub_github_client_id": "labhub-test-client",
        "jupyterhub_profiles": [{"name": "cpu-small", "cpu": 1, "memory": "2G", "gpus": 0},
                                {"name": "gpu-1", "cpu": 8, "memory": "64G", "gpus": 1}],
        "jupyterhub_admin_users": ["alice", "bob"],
        "jupyterhub_storage_kind": "nfs",
        "jupyterhub_storage_nfs_server": "nfs.lab.test",
        "jupyterhub_storage_nfs_path": "/export/home",
        "jupyterhub_nodeport_http": 30111,
        "portal_bind_host": "0.0.0.0",
        "portal_bind_port": 8799,
        "hardware_root": hardware,
    }
    all_vars.update(SECRETS)
    all_vars.update(extra_all or {})
    write_yaml(os.path.join(inv, "group_vars", "all", "main.yml"), all_vars)
    os.makedirs(os.path.join(base, "bundle"), exist_ok=True)
    with open(os.path.join(base, "bundle", "SHA256SUMS"), "w") as handle:
        handle.write("0" * 64 + "  charts/jupyterhub-4.4.0.tgz\n")
    return inv


PLAYBOOK = """---
# Facts as preflight leaves them: hardware_facts over the fixture trees.
- name: Hardware facts as preflight gathers them
  hosts: labhub_cluster
  gather_facts: false
  tasks:
    - name: Read the fixture hardware
      labhub.platform.hardware_facts:
        root: "{{ hardware_root }}/{{ 'dgx-h100' if inventory_hostname == 'gpu1' else 'cpu-vm' }}"
        nvidia_smi_path: "{{ hardware_root ~ '/dgx-h100/usr/bin/nvidia-smi' if inventory_hostname == 'gpu1' else omit }}"

- name: Summary
  ansible.builtin.import_playbook: %s/playbooks/summary.yml
""" % REPO


def run(base, inv, *args):
    play = os.path.join(base, "site-test.yml")
    with open(play, "w") as handle:
        handle.write(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".cache", "ansible_collections"),
               ANSIBLE_ROLES_PATH=os.path.join(REPO, "roles"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inv, play] + list(args), cwd=base, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def records(inv):
    return sorted(glob.glob(os.path.join(inv, ".runs", "site-*.json")))


def recap_changed(out):
    return {line.split()[0]: int(line.split("changed=")[1].split()[0]) for line in out.splitlines() if "changed=" in line}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, hardware):
    base = str(tmp_path_factory.mktemp("site"))
    inv = make_inventory(base, hardware)
    out = run(base, inv)
    return base, inv, out


def test_summary_printed_with_hub_storage_portal_and_nodes(first_run):
    out = first_run[2]
    assert "Labhub install summary" in out
    # No kubeconfig: configured NodePort, and the reason is printed.
    assert "http://10.9.0.11:30111/" in out
    assert "configured value" in out
    assert "no admin kubeconfig at " in out
    assert "alice, bob" in out
    assert "native, github" in out
    assert "nfs.lab.test:/export/home/<user>" in out
    assert "http://0.0.0.0:8799/ on cp1" in out
    # Grafana as role monitoring exposes it: the hub's host (the control-plane node) on its NodePort
    assert "Grafana:        http://10.9.0.11:30300/ (sign in with JupyterHub: hub admins are admins, every user a viewer)" \
        in out, out
    # Hardware from the real module over the fixture trees: the DGX has 8 H100 and 4 HCAs.
    gpu_line = [line for line in out.splitlines() if "gpu1 (10.9.0.21)" in line][0]
    assert "worker, gpu, infiniband" in gpu_line
    assert "8 GPU(s)" in gpu_line and "H100" in gpu_line
    assert "mlx5_0" in gpu_line and "mlx5_3" in gpu_line
    cp_line = [line for line in out.splitlines() if "cp1 (10.9.0.11)" in line][0]
    assert "control-plane" in cp_line and "portal" in cp_line and "no GPU" in cp_line


def test_run_record_written_private_and_complete(first_run):
    base, inv, out = first_run
    files = records(inv)
    assert len(files) == 1, files
    assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(files[0])).st_mode) == 0o700
    assert "Run record:     " + files[0] in out
    rec = json.load(open(files[0]))
    assert rec["kind"] == "labhub-site-run"
    assert rec["started"] is None  # summary.yml alone: site.yml's first play did not run
    assert rec["finished"].endswith("Z")
    assert rec["ansible_version"].count(".") >= 1
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        assert rec["collection"]["version"] == yaml.safe_load(handle)["version"]
    assert rec["inventory"] == [inv]
    assert rec["hosts"] == {"cp1": "ok", "gpu1": "ok", "cpu1": "ok"}
    assert len(rec["bundle"]["manifest_sha256"]) == 64
    assert len(rec["bundle"]["sha256sums_sha256"]) == 64
    summary = rec["summary"]
    assert summary["hub"]["nodeport"] == 30111 and summary["hub"]["nodeport_source"] == "configured"
    assert summary["storage"]["nfs"] == "nfs.lab.test:/export/home"
    gpu1 = [n for n in summary["nodes"] if n["name"] == "gpu1"][0]
    assert gpu1["gpu_count"] == 8 and gpu1["hcas"] == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]


def test_no_secret_value_in_summary_or_record(first_run):
    base, inv, out = first_run
    text = open(records(inv)[0]).read()
    for name, value in SECRETS.items():
        assert value not in text, name
        assert value not in out, name


def test_second_run_reports_no_change_and_adds_a_record(first_run):
    base, inv, out = first_run
    assert set(recap_changed(out).values()) == {0}
    import time
    time.sleep(1.1)  # the record name has a one-second UTC timestamp
    again = run(base, inv)
    assert set(recap_changed(again).values()) == {0}
    assert len(records(inv)) == 2


def test_check_mode_prints_and_writes_nothing(tmp_path, hardware):
    inv = make_inventory(str(tmp_path), hardware, {"labhub_run_record_dir": str(tmp_path / "records")})
    out = run(str(tmp_path), inv, "--check")
    assert "Labhub install summary" in out
    assert "none written (check mode)" in out
    assert "skipped (check mode)" in out
    assert not (tmp_path / "records").exists()


def test_unreachable_cluster_falls_back_and_says_why(tmp_path, hardware):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": SECRETS["portal_token"]}}]}))
    inv = make_inventory(str(tmp_path), hardware, {"labhub_kubeconfig": str(kubeconfig)})
    out = run(str(tmp_path), inv)
    assert "Cluster read:   failed: " in out
    assert "configured value" in out
    text = open(records(inv)[0]).read()
    assert SECRETS["portal_token"] not in text
