#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: microk8s_token
short_description: Register a MicroK8s join token on a control-plane node
version_added: 0.1.0
description:
  - Runs C(microk8s add-node --token <token> --token-ttl <ttl> --format short) on a control-plane
    node, which registers O(token) with the cluster agent so another node can join with it.
  - MicroK8s prints one join URL per address of the node (C(hostname -I)), the default-route
    interface's first. On a node with several networks (GPU nodes with InfiniBand or storage
    networks) only some of them reach the other nodes, so O(address) names the node's address on
    the cluster network and the module returns the URL on that address, failing when MicroK8s
    printed none.
  - Returns the chosen cluster agent address and the certificate check that make up the join URL
    C(<address>/<token>/<check>). The token itself is never returned (it is the caller's secret).
  - Registering a token always changes the cluster, so the module always reports a change;
    callers issue tokens only for nodes that still have to join. Check mode runs nothing.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - labhub.platform.microk8s
options:
  token:
    description: The token to register, at least 32 characters (MicroK8s refuses shorter ones).
    type: str
    required: true
  ttl:
    description:
      - Seconds the token stays valid. V(-1) makes a single-use token without expiry (MicroK8s' default).
    type: int
    default: 600
  address:
    description:
      - The IP address of this node on the cluster network; the join URL on that address is returned.
      - Empty - the first URL MicroK8s prints (the default-route interface's address).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Check mode runs nothing and always reports C(changed) (registering a token is a change).
"""

EXAMPLES = r"""
- name: Register a join token for cp02 on the first control-plane node
  labhub.platform.microk8s_token:
    token: "{{ join_token }}"
    ttl: 600
  delegate_to: cp01
  register: issued
  no_log: true

- name: The join URL
  ansible.builtin.set_fact:
    join_url: "{{ issued.address }}/{{ join_token }}/{{ issued.check }}"
  no_log: true
"""

RETURN = r"""
address:
  description: The cluster agent endpoint (C(address:port)) to join through (on O(address) when given).
  returned: success and not check mode
  type: str
  sample: 10.20.0.11:25000
addresses:
  description: Every cluster agent endpoint MicroK8s printed, in its order (default-route interface first).
  returned: success and not check mode
  type: list
  elements: str
  sample: ["10.20.0.11:25000", "192.168.100.11:25000"]
check:
  description: The cluster certificate check that follows the token in the join URL.
  returned: success and not check mode
  type: str
  sample: 2e4b6b2f1bd3
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labhub.platform.plugins.module_utils._cmd_runner import CmdError
from ansible_collections.labhub.platform.plugins.module_utils._microk8s import (
    Microk8s, Microk8sError, MICROK8S_COMMON_ARGS, parse_join_url)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            token=dict(type="str", required=True, no_log=True),
            ttl=dict(type="int", default=600),
            address=dict(type="str", default=""),
            **MICROK8S_COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params

    def fail(reason):
        module.fail_json(msg="Failed to register MicroK8s join token 'add-node' due to: %s" % reason)

    if len(p["token"]) < 32:
        fail("the token must be at least 32 characters long")
    if p["ttl"] == 0 or p["ttl"] < -1:
        fail("ttl must be a positive number of seconds or -1, got %s" % p["ttl"])
    if module.check_mode:
        module.exit_json(changed=True)
    mk = Microk8s(module, p["microk8s_path"])
    try:
        hosts, addresses, checks = [], [], set()
        for url in mk.add_node(p["token"], p["ttl"]):
            parts = parse_join_url(url)
            hosts.append(parts["host"])
            addresses.append("%s:%s" % (parts["host"], parts["port"]))
            checks.add(parts["check"])
    except CmdError as exc:
        fail("%s %s" % (exc, exc.stdout.replace(p["token"], "<token>").strip()[-300:]))
    except Microk8sError as exc:
        fail(str(exc))
    if not addresses or len(checks) != 1:
        fail("add-node returned no usable join URL")
    chosen = addresses[0]
    if p["address"]:
        matching = [a for h, a in zip(hosts, addresses) if h == p["address"]]
        if not matching:
            fail("add-node printed no join address on %s, the node's address on the cluster network; it printed "
                 "%s (the node's addresses, `hostname -I`)" % (p["address"], ", ".join(addresses)))
        chosen = matching[0]
    module.exit_json(changed=True, address=chosen, addresses=addresses, check=checks.pop())


if __name__ == "__main__":
    main()
