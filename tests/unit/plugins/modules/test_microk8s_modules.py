# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# Apache License 2.0 (see LICENSE)
"""Tests as data for the labhub.platform.microk8s_* modules (test_microk8s_modules.yaml).

Each case runs the module in-process with the case's input; AnsibleModule.run_command is
replaced by a recorder that checks every command against the case's expected list, in order,
and answers with the recorded rc/stdout/stderr (outputs as MicroK8s and snapd print them).
Every expected command must have run. The modules' parsers also run against the SIMULATOR's
live output in tests/simulator/tests/.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import json
import time
import os

import pytest
import yaml

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "test_microk8s_modules.yaml")) as _handle:
    DATA = yaml.safe_load(_handle)


def substitute(value, tmp):
    if isinstance(value, str):
        return value.replace("@TMP@", tmp)
    if isinstance(value, list):
        return [substitute(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, tmp) for k, v in value.items()}
    return value


def subset(expected, actual, path="result"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict), "%s: expected a dict, got %r" % (path, actual)
        for key, value in expected.items():
            assert key in actual, "%s: missing key %s in %r" % (path, key, actual)
            subset(value, actual[key], "%s.%s" % (path, key))
    else:
        assert actual == expected, "%s: expected %r, got %r" % (path, expected, actual)


@pytest.mark.parametrize("case", DATA["cases"], ids=[c["id"] for c in DATA["cases"]])
def test_module(case, tmp_path, monkeypatch, capsys):
    tmp = str(tmp_path)
    files = case.get("files", [])
    for rel in files:  # a list of paths (content "x") or {path: content}
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(files[rel] if isinstance(files, dict) else "x")
    params = substitute(case["input"], tmp)
    if case.get("check"):
        params["_ansible_check_mode"] = True
    if case.get("diff"):
        params["_ansible_diff"] = True
    expected = substitute(case["run_command"], tmp)
    ran = []

    def fake_run_command(self, args, check_rc=False, **kwargs):
        assert len(ran) < len(expected), "unexpected command %r after %r" % (args, ran)
        want = expected[len(ran)]
        ran.append(list(args))
        assert list(args) == want["command"], "command %d" % len(ran)
        return want.get("rc", 0), want.get("out", ""), want.get("err", "")

    def fake_get_bin_path(self, arg, required=False, opt_dirs=None):
        return "/snap/bin/microk8s" if arg == "microk8s" else "/usr/bin/%s" % arg

    monkeypatch.setattr(basic.AnsibleModule, "run_command", fake_run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", fake_get_bin_path)
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)  # retries (e.g. Microk8s.nodes) do not wait here
    module = importlib.import_module("ansible_collections.labhub.platform.plugins.modules.%s" % case["module"])
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            module.main()
    result = json.loads(capsys.readouterr().out)
    assert ran == [c["command"] for c in expected], "not every expected command ran"
    if "failed" in case:
        assert result.get("failed"), result
        assert result["msg"] == substitute(case["failed"], tmp)
    elif "failed_contains" in case:
        assert result.get("failed"), result
        assert substitute(case["failed_contains"], tmp) in result["msg"]
    else:
        assert not result.get("failed"), result
        subset(case["output"], result)
    assert slept == case.get("slept", []), "waits between retries"
    for rel, content in case.get("files_after", {}).items():
        with open(os.path.join(tmp, rel)) as handle:
            assert handle.read() == content, rel
    # secrets never come back
    returned = {k: v for k, v in result.items() if k != "invocation"}
    assert "0123456789abcdef0123456789abcdef" not in json.dumps(returned)
