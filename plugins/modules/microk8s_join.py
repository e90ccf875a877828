#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_join
short_description: Join this node to a MicroK8s cluster as control plane or worker, or leave it, once
version_added: 0.1.0
description:
  - Runs C(microk8s join <address>:<port>/<token>/<check> [--worker]) unless the node already
    belongs to the cluster, so C(changed) is exact and check mode runs nothing.
  - "A worker already joined is recognised by MicroK8s' C(clustered.lock); a control-plane node by
    C(microk8s status --format yaml): it already belongs to the cluster when the dqlite members
    include the address of O(url)'s node. A control-plane node in a cluster of more than itself
    whose members do not include that address is in another cluster, which fails."
  - A failed join (expired or already used token, unreachable node, certificate mismatch) fails
    with MicroK8s' own message, e.g. C(Connection failed. Invalid token (500).).
  - With O(state=absent) it runs C(microk8s leave) when the node belongs to a cluster of more than
    itself (a worker with C(clustered.lock), or a control-plane node whose dqlite members are more
    than one), and nothing otherwise, also when MicroK8s is not installed. Leaving makes the node a
    one-node cluster of its own again; a control plane then still has to run
    C(microk8s remove-node) (M(labhub.platform.microk8s_node)) to drop the node from Kubernetes.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.microk8s
options:
  state:
    description:
      - V(present) joins the cluster of O(url), V(absent) leaves whatever cluster the node is in.
    type: str
    choices: [present, absent]
    default: present
  url:
    description:
      - The join URL C(<address>:<port>/<token>/<check>); secret (holds the token).
      - Required when O(state=present), ignored when O(state=absent).
    type: str
  worker:
    description: Join as a worker (C(--worker)), which runs no control plane and no dqlite.
    type: bool
    default: false
  snap_data:
    description: MicroK8s' C($SNAP_DATA) directory (where C(var/lock/clustered.lock) lives).
    type: path
    default: /var/snap/microk8s/current
attributes:
  check_mode:
    support: full
    description: Check mode runs only read-only commands and predicts C(changed) exactly.
  diff_mode:
    support: none
    description: No diff is returned.
"""

EXAMPLES = r"""
- name: Join as a worker
  labhub.platform.microk8s_join:
    url: "{{ join_url }}"
    worker: true

- name: Leave the cluster (on the departing node)
  labhub.platform.microk8s_join:
    state: absent
"""

RETURN = r"""
joined:
  description:
    - Whether the node belongs to the cluster after the call (true also in check mode when it would join,
      false in check mode when it would leave).
  returned: success
  type: bool
target:
  description: The C(address:port) of the node joined through.
  returned: when O(state=present)
  type: str
stdout:
  description: Output of C(microk8s join) or C(microk8s leave).
  returned: when the join or leave ran
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError
from ansible_collections.labhub.platform.plugins.module_utils._microk8s import (
    Microk8s, Microk8sError, MICROK8S_COMMON_ARGS, parse_join_url)


def leave(module, mk, lock):
    def fail(reason, **kwargs):
        module.fail_json(msg="Failed to leave MicroK8s cluster 'microk8s' due to: %s" % reason, **kwargs)

    if not os.path.exists(lock):
        if not os.path.exists(mk.binary):
            module.exit_json(changed=False, joined=False)
        try:
            status = mk.status()
        except (CmdError, Microk8sError) as exc:
            fail(str(exc))
        if not status.get("worker") and len(status["ha_nodes"]) <= 1:
            module.exit_json(changed=False, joined=False)
    if module.check_mode:
        module.exit_json(changed=True, joined=False)
    run = mk.leave()
    if run.rc != 0:
        lines = [line for line in (run.stdout + run.stderr).strip().splitlines() if line.strip()]
        fail(lines[-1] if lines else "microk8s leave exited %s" % run.rc, rc=run.rc)
    module.exit_json(changed=True, joined=False, stdout=run.stdout)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            url=dict(type="str", no_log=True),
            worker=dict(type="bool", default=False),
            snap_data=dict(type="path", default="/var/snap/microk8s/current"),
            **MICROK8S_COMMON_ARGS
        ),
        required_if=[("state", "present", ["url"])],
        supports_check_mode=True,
    )
    p = module.params
    lock = os.path.join(p["snap_data"], "var", "lock", "clustered.lock")
    mk = Microk8s(module, p["microk8s_path"])
    if p["state"] == "absent":
        leave(module, mk, lock)
    target = "unknown"
    try:
        parts = parse_join_url(p["url"])
    except Microk8sError as exc:
        module.fail_json(msg="Failed to join MicroK8s cluster '%s' due to: %s" % (target, exc))
    target = "%s:%s" % (parts["host"], parts["port"])

    def fail(reason, **kwargs):
        module.fail_json(msg="Failed to join MicroK8s cluster '%s' due to: %s" % (target, reason),
                         target=target, **kwargs)

    if os.path.exists(lock):
        if not p["worker"]:
            fail("this node already joined a cluster as a worker; run 'microk8s leave' first to make it "
                 "a control-plane node")
        module.exit_json(changed=False, joined=True, target=target)
    try:
        status = mk.status()
    except (CmdError, Microk8sError) as exc:
        fail(str(exc))
    members = [n["address"].rsplit(":", 1)[0] for n in status["ha_nodes"]]
    if parts["host"] in members and len(members) > 1:
        if p["worker"]:
            fail("this node is a control-plane member of the cluster, not a worker")
        module.exit_json(changed=False, joined=True, target=target)
    if len(members) > 1:
        fail("this node already belongs to another cluster (dqlite members: %s)" % ", ".join(members))
    if module.check_mode:
        module.exit_json(changed=True, joined=True, target=target)
    run = mk.join(p["url"], p["worker"] or None)
    if run.rc != 0:
        lines = [line for line in (run.stdout + run.stderr).strip().splitlines() if line.strip()]
        fail(lines[-1] if lines else "microk8s join exited %s" % run.rc, rc=run.rc)
    module.exit_json(changed=True, joined=True, target=target, stdout=run.stdout)


if __name__ == "__main__":
    main()
