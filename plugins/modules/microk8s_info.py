#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_info
short_description: Read MicroK8s status, HA members, addons and nodes
version_added: 0.1.0
description:
  - Runs C(microk8s status --format yaml) (optionally with C(--wait-ready --timeout)) and
    parses it into whether MicroK8s runs, the dqlite members with their roles and every addon
    with its status.
  - "Whether MicroK8s runs comes from the exit code and the report together, as MicroK8s'
    C(status.py) gives them: exit 0 with C(running: True) when the cluster is ready, the same
    report with C(running: False) and exit 1 while it is not (then RV(running=false), not a
    failure), and exit 0 with C(microk8s is not running, try microk8s start) after
    C(microk8s stop) (then RV(running=false) and RV(stopped=true)). An exit code that contradicts
    the report fails."
  - With O(nodes=true), also reads C(microk8s kubectl get nodes -o json) and returns each node's
    Ready condition, labels, taints and whether it is a control-plane node.
  - On a worker node MicroK8s refuses C(status); the module then returns RV(worker=true) and no
    cluster data instead of failing.
  - With O(fail_not_ready=true), fails when MicroK8s is not running (or is stopped) after the wait.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.microk8s
options:
  wait_ready:
    description: Wait until MicroK8s is ready (C(--wait-ready)) before reading the status.
    type: bool
    default: false
  timeout:
    description:
      - Seconds C(--wait-ready) waits at most (C(--timeout)). V(0) waits forever, like MicroK8s.
    type: int
    default: 300
  nodes:
    description: Also return the Kubernetes nodes.
    type: bool
    default: false
  fail_not_ready:
    description: Fail when MicroK8s is not running (after the wait when O(wait_ready=true)).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The module only reads; it never reports a change.
notes:
  - Read-only; never reports a change.
"""

EXAMPLES = r"""
- name: Wait until MicroK8s is ready and read its status
  labhub.platform.microk8s_info:
    wait_ready: true
    timeout: 600
    fail_not_ready: true
  register: mk

- name: Show the voters
  ansible.builtin.debug:
    msg: "{{ mk.voters }}"
"""

RETURN = r"""
running:
  description:
    - "Whether MicroK8s reports itself running (null on a worker node): true when C(status) exits 0
      with C(running: True), false when it exits 1 with C(running: False) (not ready) or when
      MicroK8s is stopped."
  returned: always
  type: bool
stopped:
  description: Whether MicroK8s was stopped with C(microk8s stop) (C(status) says C(try microk8s start)).
  returned: always
  type: bool
worker:
  description: Whether this node is a worker node (MicroK8s refuses C(status) there).
  returned: always
  type: bool
ha_enabled:
  description: Whether the ha-cluster addon is on.
  returned: always
  type: bool
ha_nodes:
  description: dqlite members as C(status) prints them.
  returned: always
  type: list
  elements: dict
  sample: [{"address": "10.20.0.11:19001", "role": "voter"}]
voters:
  description: Addresses of the dqlite voters.
  returned: always
  type: list
  elements: str
addons:
  description: Every addon with its status (C(enabled) or C(disabled)), version and repository.
  returned: always
  type: dict
  sample: {"dns": {"status": "enabled", "version": "1.10.1", "repository": "core"}}
enabled_addons:
  description: Names of the enabled addons, sorted.
  returned: always
  type: list
  elements: str
message:
  description: The message MicroK8s prints when it is not running or stopped.
  returned: always
  type: str
nodes:
  description: Kubernetes nodes (name, ready, control_plane, labels, taints, address, unschedulable).
  returned: when O(nodes=true) and the node is neither a worker nor stopped
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError
from ansible_collections.labhub.platform.plugins.module_utils._microk8s import (
    Microk8s, Microk8sError, MICROK8S_COMMON_ARGS)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            wait_ready=dict(type="bool", default=False),
            timeout=dict(type="int", default=300),
            nodes=dict(type="bool", default=False),
            fail_not_ready=dict(type="bool", default=False),
            **MICROK8S_COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params
    mk = Microk8s(module, p["microk8s_path"])
    try:
        status = mk.status(wait_ready=p["wait_ready"], timeout=p["timeout"])
        result = dict(changed=False, **status)
        result["enabled_addons"] = sorted(n for n, a in status["addons"].items() if a["status"] == "enabled")
        if p["fail_not_ready"] and not status["worker"] and not status["running"]:
            module.fail_json(msg="Failed to read MicroK8s status '%s' due to: MicroK8s is not running%s: %s"
                             % (module.params["microk8s_path"],
                                " after waiting %ss" % p["timeout"] if p["wait_ready"] else "",
                                status.get("message") or "no message"), **result)
        if p["nodes"] and not status["worker"] and not status["stopped"]:
            result["nodes"] = mk.nodes()
    except (CmdError, Microk8sError) as exc:
        module.fail_json(msg="Failed to read MicroK8s status '%s' due to: %s" % (p["microk8s_path"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
