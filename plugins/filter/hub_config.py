# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: hub_config
short_description: The Labhub hub configuration from the jupyterhub role's variables
version_added: 0.1.0
description:
  - Builds the plain-data configuration of the labhub_hub package (files/hub/README.md) that the jupyterhub role
    ships to the hub in a ConfigMap. Secrets appear only as references to environment variables of the hub pod.
  - The validation phase (labhub.platform.validate, check C(hub)) builds the same data with the same code and
    validates it with the hub package's own validator.
author:
  - Labhub engineers (@labhub)
options:
  _input:
    description:
      - The role variables, by name (roles/jupyterhub/tasks/build.yml lists them), e.g. C(jupyterhub_auth_modes),
        C(jupyterhub_profiles).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The hub configuration
  ansible.builtin.set_fact:
    hub_config: "{{ {'jupyterhub_auth_modes': ['native'], 'jupyterhub_profiles': []} | labhub.platform.hub_config }}"
"""

RETURN = r"""
_value:
  description: The hub configuration (test_mode, auth, spawn, culling).
  type: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.labhub.platform.plugins.module_utils._hub_config import build_hub_config  # noqa: E402


def hub_config(values):
    if not isinstance(values, dict):
        raise AnsibleFilterError("hub_config: expects a mapping of role variables, got %s" % type(values).__name__)
    return build_hub_config(values)


class FilterModule(object):
    def filters(self):
        return {"hub_config": hub_config}
