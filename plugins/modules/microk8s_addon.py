#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_addon
short_description: Enable or disable a MicroK8s addon, only when needed
version_added: 0.1.0
description:
  - Reads C(microk8s status --format yaml) and runs C(microk8s enable) or C(microk8s disable)
    only when the addon's status differs from O(state), so C(changed) is exact and check mode
    predicts it without running anything.
  - Addon arguments are passed the way MicroK8s documents them, e.g. V(dns) with
    O(args=[1.1.1.1, 8.8.8.8]) runs C(microk8s enable dns:1.1.1.1,8.8.8.8), and V(hostpath-storage)
    with O(flags=[--reclaim-policy=Retain]) runs C(microk8s enable hostpath-storage --reclaim-policy=Retain).
  - MicroK8s does not report the arguments an addon was enabled with, and C(microk8s enable) skips an
    addon that is already enabled before its script runs, so O(args) and O(flags) only take effect
    when the addon is enabled by this call; an addon already enabled is left alone. MicroK8s enables
    V(dns) at install (its default launch configuration), so upstream servers given as O(args) do
    not reach it; the microk8s role writes them into the CoreDNS ConfigMap instead.
  - Must run on a control-plane node; MicroK8s refuses addon changes on worker nodes.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.microk8s
options:
  name:
    description: Addon name as C(microk8s status) lists it (V(dns), V(hostpath-storage), V(rbac), ...).
    type: str
    required: true
  state:
    description: V(enabled) or V(disabled).
    type: str
    choices: [enabled, disabled]
    default: enabled
  args:
    description: Arguments joined with commas after a colon (C(name:arg1,arg2)).
    type: list
    elements: str
    default: []
  flags:
    description: Options passed after the addon name (C(--reclaim-policy=Retain)).
    type: list
    elements: str
    default: []
  wait_ready_timeout:
    description:
      - Seconds to wait (C(status --wait-ready --timeout)) for MicroK8s before reading the status.
        V(0) does not wait.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Check mode runs only read-only commands and predicts C(changed) exactly.
  diff_mode:
    support: full
    description: Returns the state before and after as text.
"""

EXAMPLES = r"""
- name: CoreDNS with the site's resolvers
  labhub.platform.microk8s_addon:
    name: dns
    args: [10.20.0.2, 10.20.0.3]

- name: No ingress
  labhub.platform.microk8s_addon:
    name: ingress
    state: disabled
"""

RETURN = r"""
status_before:
  description: The addon's status before the call (C(enabled) or C(disabled)).
  returned: success
  type: str
command:
  description: The command that was run (or would run in check mode); empty when nothing was needed.
  returned: success
  type: list
  elements: str
stdout:
  description: Output of the command.
  returned: when a command ran
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError
from ansible_collections.labhub.platform.plugins.module_utils._microk8s import (
    Microk8s, Microk8sError, MICROK8S_COMMON_ARGS)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["enabled", "disabled"], default="enabled"),
            args=dict(type="list", elements="str", default=[]),
            flags=dict(type="list", elements="str", default=[]),
            wait_ready_timeout=dict(type="int", default=300),
            **MICROK8S_COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    verb = "enable" if p["state"] == "enabled" else "disable"

    def fail(reason, **kwargs):
        module.fail_json(msg="Failed to %s MicroK8s addon '%s' due to: %s" % (verb, name, reason), **kwargs)

    if p["state"] == "disabled" and (p["args"] or p["flags"]):
        fail("args and flags are only used with state=enabled")
    mk = Microk8s(module, p["microk8s_path"])
    try:
        status = mk.status(wait_ready=p["wait_ready_timeout"] > 0, timeout=p["wait_ready_timeout"])
    except (CmdError, Microk8sError) as exc:
        fail(str(exc))
    if status["worker"]:
        fail("this is a worker node; run the module on a control-plane node")
    if not status["running"]:
        fail("MicroK8s is not running: %s" % (status.get("message") or "no message"))
    if name not in status["addons"]:
        fail("MicroK8s knows no such addon (available: %s)" % ", ".join(sorted(status["addons"])))
    before = status["addons"][name]["status"]
    result = dict(changed=before != p["state"], status_before=before, command=[])
    if module._diff:
        result["diff"] = dict(before="%s: %s\n" % (name, before), after="%s: %s\n" % (name, p["state"]))
    if not result["changed"]:
        module.exit_json(**result)
    spec = name + (":" + ",".join(p["args"]) if p["args"] else "")
    result["command"] = [mk.binary, verb, spec] + list(p["flags"])
    if module.check_mode:
        module.exit_json(**result)
    try:
        if verb == "enable":
            run = mk.enable(name, p["args"], p["flags"])
        else:
            run = mk.disable(name)
    except CmdError as exc:
        fail("%s (stdout: %s)" % (exc, exc.stdout.strip()[-500:]))
    result["stdout"] = run.stdout
    module.exit_json(**result)


if __name__ == "__main__":
    main()
