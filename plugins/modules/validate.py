#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: validate
short_description: Check everything a Labhub playbook will use and print one table of every problem
version_added: 0.1.0
description:
  - The validation phase of every Labhub entry playbook. Runs on the controller, once, before any task
    changes a host or writes a file.
  - Reads every inventory host's variables with the defaults of every Labhub role applied (as the roles
    will see them), and the hardware facts that labhub.platform.hardware_facts read on the nodes.
  - Runs the checks the playbook needs (inventory shape, node names and addresses, booleans, each
    node's hardware, the hub configuration, the portal settings, node labels and taints, the cluster
    roles' variables) and prints one table of ALL problems, each row naming the host (or
    C((inventory))), the variable, its value (C(<secret>) for secret variables), what is wrong and what
    is expected. Fails when there is any problem.
  - Secret values are never printed, whatever the verbosity.
  - This is an action plugin; it runs on the controller and needs no connection.
author:
  - Labhub engineers (@labhub)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  playbook:
    description:
      - The entry playbook whose checks to run (each runs only what it will use).
    type: str
    default: site
    choices: [preflight, site, add_node, remove_node, render, uninstall, bundle, verify_bundle, audit_images]
  scope:
    description:
      - Hosts the playbook acts on (per-node checks run on these). Default the play's hosts.
      - Inventory-wide checks always cover the whole inventory.
    type: list
    elements: str
  hardware_var:
    description:
      - Host variable holding the registered result of labhub.platform.hardware_facts.
    type: str
    default: preflight_hardware_result
  checks:
    description:
      - Run only these checks instead of the playbook's (tests, debugging).
    type: list
    elements: str
notes:
  - Set the environment variable E(LABHUB_VALIDATE_REPORT) to a file path to also get the rows as JSON.
"""

EXAMPLES = r"""
- name: Validate everything site.yml will use
  labhub.platform.validate:
    playbook: site
  run_once: true
"""

RETURN = r"""
problem_count:
  description: Number of rows in the problem table.
  returned: always
  type: int
  sample: 0
problems:
  description: The rows of the problem table (host, variable, value with secrets redacted, problem, expected).
  returned: always
  type: list
  elements: dict
  sample: [{host: cp1, variable: jupyterhub_auth_modes, value: '"native"', problem: is a string, not a list of login
      modes, expected: "a list, e.g. [native]"}]
checks:
  description: Names of the checks that ran.
  returned: always
  type: list
  elements: str
  sample: [topology, booleans, hardware]
"""
