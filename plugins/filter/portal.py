# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters labhub.platform.portal_settings and portal_settings_inputs: the portal's PORTAL_* settings.

The mapping from the portal role's variables to the settings lives in
plugins/module_utils/_portal_settings.py, shared with the validation phase
(labhub.platform.validate, check ``portal``), which checks the same settings with the
portal's own Settings model. Role portal uses them in vars/main.yml and templates/portal.env.j2.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.module_utils import _portal_settings


def portal_settings(values, kubeconfig_present=True):
    if not isinstance(values, dict):
        raise AnsibleFilterError("portal_settings: input must be a mapping of role variables, got %s"
                                 % type(values).__name__)
    unknown = sorted(set(values) - set(_portal_settings.INPUTS))
    if unknown:
        raise AnsibleFilterError("portal_settings: not a role variable the settings come from: %s" % ", ".join(unknown))
    return _portal_settings.build(values, kubeconfig_present=kubeconfig_present)


def portal_settings_inputs(_ignored=None):
    return list(_portal_settings.INPUTS)


class FilterModule:
    def filters(self):
        return {"portal_settings": portal_settings, "portal_settings_inputs": portal_settings_inputs}
