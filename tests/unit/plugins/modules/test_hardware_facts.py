# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Tests for labhub.platform.hardware_facts.

Most cases are data (test_hardware_facts.yaml): a fixture tree shaped like a real machine
(tests/unit/fixtures/hardware/<tree>, see its README for the two name encodings) -> the
facts the module must return. The module runs in-process through AnsibleModule's
argument injection, and once more through the real `ansible` CLI. Further tests run it
for real on this host (root=/) and compare with values Python reads independently.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import platform
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.labhub.platform.plugins.modules import hardware_facts
from ansible_collections.labhub.platform.plugins.module_utils import _hardware as hw

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "hardware")
with open(os.path.join(HERE, "test_hardware_facts.yaml")) as _handle:
    DATA = yaml.safe_load(_handle)

TOP_KEYS = {"root", "os", "kernel", "arch", "cpu", "memory_mb", "hostname", "fqdn", "default_ipv4",
            "gpus", "infiniband", "software", "disk_free"}


# -- fixture trees ---------------------------------------------------------------
def materialise(tree, dest):
    """Copy fixture ``tree`` to ``dest``, decoding ``%3A`` and ``*.symlink`` (see README)."""
    src_top = os.path.join(FIXTURES, tree)
    for dirpath, dirnames, filenames in os.walk(src_top):
        rel = os.path.relpath(dirpath, src_top)
        out_dir = os.path.join(dest, rel.replace("%3A", ":")) if rel != "." else dest
        os.makedirs(out_dir, exist_ok=True)
        dirnames.sort()
        for name in sorted(filenames):
            src = os.path.join(dirpath, name)
            out_name = name.replace("%3A", ":")
            if out_name.endswith(".symlink"):
                with open(src) as handle:
                    os.symlink(handle.read().strip(), os.path.join(out_dir, out_name[:-len(".symlink")]))
            else:
                shutil.copy2(src, os.path.join(out_dir, out_name))
    return dest


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Pristine materialised trees, shared by the read-only cases."""
    cache = {}

    def get(tree):
        if tree not in cache:
            cache[tree] = materialise(tree, str(tmp_path_factory.mktemp(tree)))
        return cache[tree]
    return get


def substitute(value, new, old="@ROOT@"):
    """Replace ``old`` by ``new`` in every string inside ``value``."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [substitute(v, new, old) for v in value]
    if isinstance(value, dict):
        return dict((k, substitute(v, new, old)) for k, v in value.items())
    return value


def assert_matches(actual, expected, where="facts"):
    """Every key in ``expected`` equals ``actual``'s; lists match element-wise and in length."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), "%s: expected a dict, got %r" % (where, actual)
        for key, value in expected.items():
            assert key in actual, "%s: missing key %r (have %s)" % (where, key, sorted(actual))
            assert_matches(actual[key], value, "%s.%s" % (where, key))
    elif isinstance(expected, list):
        assert isinstance(actual, list), "%s: expected a list, got %r" % (where, actual)
        assert len(actual) == len(expected), "%s: %d items, expected %d: %r" % (where, len(actual), len(expected), actual)
        for index, (a_item, e_item) in enumerate(zip(actual, expected)):
            assert_matches(a_item, e_item, "%s[%d]" % (where, index))
    else:
        assert actual == expected and type(actual) is type(expected), \
            "%s: got %r, expected %r" % (where, actual, expected)


def warning_texts(result):
    out = []
    for warning in result.get("warnings", []):
        if isinstance(warning, dict):  # ansible-core >= 2.19: a WarningSummary
            warning = warning.get("event", {}).get("msg") or json.dumps(warning)
        out.append(warning)
    return out


def assert_warnings(result, case):
    texts = warning_texts(result)
    if case.get("no_warnings"):
        assert texts == [], texts
    for expected in case.get("warnings", []):
        assert any(expected in text for text in texts), "no warning contains %r: %r" % (expected, texts)


# -- running the module ------------------------------------------------------------
def run_module(params, capsys):
    """Run the module in-process; return its parsed JSON result."""
    capsys.readouterr()
    # AnsibleModule keeps warnings in a process-wide registry (one module run per process
    # in real life); start each in-process run with an empty one.
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
    with patch_module_args(params):
        with pytest.raises(SystemExit) as exc:
            hardware_facts.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    result["_rc"] = exc.value.code
    return result


def facts_of(result):
    assert result["_rc"] == 0, result
    assert not result.get("failed"), result
    assert result["changed"] is False
    facts = result["ansible_facts"]["labhub_hardware"]
    assert TOP_KEYS <= set(facts), sorted(TOP_KEYS - set(facts))
    return facts


# -- tests as data ---------------------------------------------------------------------
@pytest.mark.parametrize("case", DATA["machines"], ids=[c["id"] for c in DATA["machines"]])
@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check"])
def test_machine(case, check_mode, trees, capsys):
    root = trees(case["tree"])
    params = substitute(case["params"], root)
    if check_mode:
        params["_ansible_check_mode"] = True
    result = run_module(params, capsys)
    facts = facts_of(result)
    assert facts["root"] == root
    assert_matches(facts, substitute(case["facts"], root))
    assert_warnings(result, case)
    for entry in facts["disk_free"]:
        assert isinstance(entry["free_mb"], int) and isinstance(entry["total_mb"], int)
        assert 0 <= entry["free_mb"] <= entry["total_mb"]


@pytest.mark.parametrize("case", DATA["malformed"], ids=[c["id"] for c in DATA["malformed"]])
def test_malformed(case, tmp_path, trees, capsys):
    root = materialise(case["tree"], str(tmp_path / "root"))
    for edit in case["edits"]:
        if "delete" in edit:
            target = os.path.join(root, edit["delete"])
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        else:
            target = os.path.join(root, edit["write"])
            if os.path.lexists(target):
                os.unlink(target)  # never write through a shared copy
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(edit["content"])
            os.chmod(target, int(edit.get("mode", "0644"), 8))
    params = dict({"root": root}, **substitute(case.get("params", {}), root))
    result = run_module(params, capsys)
    facts = facts_of(result)
    assert "Traceback" not in json.dumps(result)
    assert_matches(facts, substitute(case["facts"], root))
    assert_warnings(result, case)

    # Everything the edits did not touch is still there: compare with the pristine tree.
    pristine_root = trees(case["tree"])
    pristine_params = dict({"root": pristine_root}, **substitute(case.get("params", {}), pristine_root))
    pristine = facts_of(run_module(pristine_params, capsys))
    touched = set(case["facts"])
    for key in TOP_KEYS - touched - {"root", "disk_free"}:
        assert substitute(facts[key], "@ROOT@", root) == substitute(pristine[key], "@ROOT@", pristine_root), key


@pytest.mark.parametrize("case", DATA["os_release"], ids=[c["id"] for c in DATA["os_release"]])
def test_parse_os_release(case):
    if case.get("malformed"):
        with pytest.raises(hw.MalformedError):
            hw.parse_os_release(case["text"])
    else:
        assert hw.parse_os_release(case["text"]) == case["expected"]


# -- parsers on their own ---------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("00000000:18:00.0", "0000:18:00.0"),
    ("00000000:AB:00.0", "0000:ab:00.0"),
    ("0000:3b:00.1", "0000:3b:00.1"),
    ("18:00.0", "0000:18:00.0"),
    ("00000001:DB:00.0", "0001:db:00.0"),
])
def test_normalise_pci_address(value, expected):
    assert hw.normalise_pci_address(value) == expected


@pytest.mark.parametrize("text, expected", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n", "535.129.03"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (dvs-builder@U16)\n", "550.54.15"),
    ("NVRM version: NVIDIA UNIX aarch64 Kernel Module  470.223.02  Sat Oct  7 15:39:11 UTC 2023\n", "470.223.02"),
])
def test_parse_nvidia_driver_version(text, expected):
    assert hw.parse_nvidia_driver_version(text) == expected


def test_default_route_prefers_lowest_metric_and_ignores_down_routes():
    head = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    text = head + ("a\t00000000\t0100000A\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"   # no RTF_GATEWAY
                   "b\t00000000\t0101000A\t0003\t0\t0\t50\t00000000\t0\t0\t0\n"
                   "c\t00000000\t0102000A\t0003\t0\t0\t20\t00000000\t0\t0\t0\n")
    route = hw.default_route(hw.parse_proc_net_route(text))
    assert (route["iface"], route["gateway"], route["metric"]) == ("c", "10.0.2.1", 20)


def test_nvidia_smi_na_values():
    row = dict(zip(hw.NVIDIA_SMI_FIELDS, ["00000000:01:00.0", "NVIDIA GeForce RTX 3090", "[N/A]", "[N/A]", "550.54.15"]))
    assert hw.nvidia_smi_gpu(row) == {"pci_address": "0000:01:00.0", "name": "NVIDIA GeForce RTX 3090",
                                      "memory_mb": None, "mig_mode": None, "driver_version": "550.54.15"}


def test_root_that_is_not_a_directory_fails_cleanly(tmp_path, capsys):
    result = run_module({"root": str(tmp_path / "absent")}, capsys)
    assert result["_rc"] == 1 and result["failed"] is True
    assert result["msg"] == "Failed to gather hardware facts from root '%s' due to: not a directory" % (tmp_path / "absent")


@pytest.mark.parametrize("proc_modules, sys_module, expected", [
    # built into the kernel: only /sys/module knows
    ("", ["ib_uverbs"], {"rdma_cm": False, "ib_umad": False, "ib_uverbs": True}),
    # loadable and loaded: both agree
    ("rdma_cm 139264 0 - Live 0x0000000000000000\n", ["rdma_cm"], {"rdma_cm": True, "ib_umad": False, "ib_uverbs": False}),
    # a kernel without module support has no /proc/modules
    (None, ["ib_umad"], {"rdma_cm": False, "ib_umad": True, "ib_uverbs": False}),
], ids=["built-in", "loaded", "no-proc-modules"])
def test_rdma_modules_built_in_or_loaded(proc_modules, sys_module, expected, tmp_path, capsys):
    root = materialise("cpu-vm", str(tmp_path / "root"))
    modules_file = os.path.join(root, "proc", "modules")
    if proc_modules is None:
        os.remove(modules_file)
    else:
        with open(modules_file, "w") as handle:
            handle.write(proc_modules)
    for name in sys_module:
        os.makedirs(os.path.join(root, "sys", "module", name))
    result = run_module({"root": root}, capsys)
    facts = facts_of(result)
    assert facts["infiniband"]["rdma_modules"] == expected
    assert not [w for w in warning_texts(result) if "rdma" in w], warning_texts(result)


# -- the real host ------------------------------------------------------------------------
def _host_nvidia_gpus():
    count = 0
    base = "/sys/bus/pci/devices"
    for name in os.listdir(base) if os.path.isdir(base) else []:
        with open(os.path.join(base, name, "vendor")) as vendor, open(os.path.join(base, name, "class")) as cls:
            if vendor.read().strip() == "0x10de" and cls.read().strip()[:6] in ("0x0300", "0x0302"):
                count += 1
    return count


def test_real_host(capsys):
    """root=/ on this machine: values agree with what Python and the kernel say directly."""
    result = run_module({"paths": ["/", "/tmp"]}, capsys)
    facts = facts_of(result)
    uname = os.uname()
    assert facts["kernel"] == uname.release
    assert facts["arch"] == uname.machine
    assert facts["hostname"] == socket.gethostname()
    assert facts["fqdn"] == socket.getfqdn()
    assert facts["cpu"]["cores"] == os.cpu_count()
    assert 1 <= facts["cpu"]["sockets"] <= facts["cpu"]["physical_cores"] <= facts["cpu"]["cores"]
    assert isinstance(facts["cpu"]["model"], str) and facts["cpu"]["model"]
    phys_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    assert facts["memory_mb"] > 0 and abs(facts["memory_mb"] - phys_mb) <= 1
    os_release = platform.freedesktop_os_release()
    assert facts["os"]["id"] == os_release["ID"]
    assert facts["os"]["version"] == os_release.get("VERSION_ID")
    assert facts["os"]["pretty_name"] == os_release.get("PRETTY_NAME")
    total = shutil.disk_usage("/").total // (1024 * 1024)
    assert [d["path"] for d in facts["disk_free"]] == ["/", "/tmp"]
    assert facts["disk_free"][0]["total_mb"] == total and facts["disk_free"][0]["exists"] is True
    assert facts["gpus"]["count"] == _host_nvidia_gpus()
    assert facts["gpus"]["driver_loaded"] == os.path.exists("/proc/driver/nvidia/version")
    assert facts["gpus"]["nvidia_smi"]["present"] == (shutil.which("nvidia-smi") is not None)
    assert facts["infiniband"]["hcas"] == [] or os.path.isdir("/sys/class/infiniband")
    assert facts["software"]["containerd"] == any(
        os.path.exists(os.path.join(d, "containerd")) for d in ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"))
    assert facts["software"]["snapd"] == os.path.exists("/usr/lib/snapd/snapd")
    if os.path.exists("/proc/net/route"):
        with open("/proc/net/route") as handle:
            has_default = any(line.split()[1] == "00000000" for line in handle.readlines()[1:] if line.strip())
        if has_default:
            assert facts["default_ipv4"]["interface"] in os.listdir("/sys/class/net")
            socket.inet_aton(facts["default_ipv4"]["address"])
    expected_rdma = dict((name, os.path.isdir("/sys/module/" + name)) for name in hw.RDMA_MODULES)
    if os.path.exists("/proc/modules"):
        with open("/proc/modules") as handle:
            listed = set(line.split()[0] for line in handle if line.strip())
        expected_rdma = dict((name, seen or name in listed) for name, seen in expected_rdma.items())
    assert facts["infiniband"]["rdma_modules"] == expected_rdma
    assert warning_texts(result) == []


def _ansible_env():
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(REPO, ".cache", "ansible_collections"))
    env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    return env


def _ansible_bin(name):
    found = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        pytest.skip("%s not installed" % name)
    return found


def test_ansible_cli_matches_in_process(trees, capsys):
    """The real `ansible` CLI (module shipped to the host with its module_utils) gives the same facts."""
    root = trees("dgx-h100")
    params = {"root": root, "nvidia_smi_path": root + "/usr/bin/nvidia-smi"}
    proc = subprocess.run([_ansible_bin("ansible"), "localhost", "-m", "labhub.platform.hardware_facts",
                           "-a", json.dumps(params)],
                          env=_ansible_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    host_result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    via_cli = host_result["ansible_facts"]["labhub_hardware"]
    in_process = facts_of(run_module(params, capsys))
    # Free space moves while other jobs write to the disk; everything else must be identical.
    for facts in (via_cli, in_process):
        for entry in facts["disk_free"]:
            assert isinstance(entry.pop("free_mb"), int)
    assert via_cli == in_process
    assert via_cli["gpus"]["count"] == 8 and via_cli["gpus"]["nvidia_smi"]["cuda_version"] == "12.2"


def test_integration_target_runs_on_this_host(tmp_path):
    """tests/integration/targets/hardware_facts, played for real against localhost."""
    targets = os.path.join(REPO, "tests", "integration", "targets")
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n"
                        "  roles:\n    - hardware_facts\n")
    env = dict(_ansible_env(), ANSIBLE_ROLES_PATH=targets, ANSIBLE_STDOUT_CALLBACK="default")
    proc = subprocess.run([_ansible_bin("ansible-playbook"), "-i", "localhost,", str(playbook)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "failed=0" in proc.stdout
