#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_node
short_description: Remove a node from a MicroK8s cluster (microk8s remove-node), once
version_added: 0.1.0
description:
  - Runs on a control-plane node of the cluster. Reads the cluster's nodes
    (C(microk8s kubectl get nodes -o json)) and runs C(microk8s remove-node <name> [--force]) only
    when O(name) is one of them, so C(changed) is exact and check mode runs nothing that changes.
  - "MicroK8s refuses to remove a node still registered with dqlite (a control-plane node that did
    not run C(microk8s leave)) unless O(force=true), the node the command runs on, and unknown
    nodes; its message is the failure reason."
  - Run C(microk8s leave) on the departing node first when it is reachable
    (M(labhub.platform.microk8s_join) with O(labhub.platform.microk8s_join#module:state=absent));
    O(force=true) is for a node that is gone and will never come back.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.microk8s
options:
  name:
    description: The Kubernetes node name (or its InternalIP address) of the node to remove.
    type: str
    required: true
  state:
    description: Only V(absent) (remove the node) is supported; nodes are added by joining them.
    type: str
    choices: [absent]
    default: absent
  force:
    description:
      - Pass C(--force) to unregister a node that is still a dqlite member (dead control-plane node).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Check mode only reads the node list and predicts C(changed) exactly.
  diff_mode:
    support: none
    description: No diff is returned.
"""

EXAMPLES = r"""
- name: Remove gpu03, which already ran microk8s leave
  labhub.platform.microk8s_node:
    name: gpu03
  delegate_to: cp02

- name: Remove cp03, a dead control-plane node
  labhub.platform.microk8s_node:
    name: cp03
    force: true
  delegate_to: cp01
"""

RETURN = r"""
removed:
  description: Whether the node was (or in check mode, would be) removed by this call.
  returned: success
  type: bool
node:
  description: The node as listed before the call (name, ready, control_plane, address, labels, taints, unschedulable); null when not in the cluster.
  returned: success
  type: dict
nodes:
  description: Names of the cluster's nodes after the call (predicted in check mode).
  returned: success
  type: list
  elements: str
stdout:
  description: Output of C(microk8s remove-node).
  returned: when the removal ran
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
            state=dict(type="str", default="absent", choices=["absent"]),
            force=dict(type="bool", default=False),
            **MICROK8S_COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]

    def fail(reason, **kwargs):
        module.fail_json(msg="Failed to remove MicroK8s node '%s' due to: %s" % (name, reason), **kwargs)

    if not name.strip():
        fail("name must not be empty")
    mk = Microk8s(module, p["microk8s_path"])
    try:
        nodes = mk.nodes()
    except (CmdError, Microk8sError, ValueError) as exc:
        fail(str(exc))
    target = None
    for node in nodes:
        if name in (node["name"], node["address"]):
            target = node
    if target is None:
        module.exit_json(changed=False, removed=False, node=None, nodes=[n["name"] for n in nodes])
    remaining = [n["name"] for n in nodes if n is not target]
    if module.check_mode:
        module.exit_json(changed=True, removed=True, node=target, nodes=remaining)
    run = mk.remove_node(name, p["force"] or None)
    if run.rc != 0:
        lines = [line.strip() for line in (run.stdout + run.stderr).strip().splitlines() if line.strip()]
        fail(" ".join(lines) if lines else "microk8s remove-node exited %s" % run.rc, rc=run.rc, node=target)
    module.exit_json(changed=True, removed=True, node=target, nodes=remaining, stdout=run.stdout)


if __name__ == "__main__":
    main()
