# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters labhub.platform.uninstall_plan (what playbooks/uninstall.yml deletes and keeps) and
uninstall_object_stubs (the plan's objects as manifests to delete).

The decisions live in plugins/module_utils/_uninstall.py (unit-tested as data); role uninstall
calls this filter once and carries out its result.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.labhub.platform.plugins.module_utils import _uninstall

BOOLEANS = ("purge", "portal", "portal_database_local")


def uninstall_plan(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("uninstall_plan: input must be a mapping of settings, got %s" % type(settings).__name__)
    unknown = sorted(set(settings) - set(_uninstall.INPUTS))
    missing = sorted(set(_uninstall.INPUTS) - set(settings))
    if unknown or missing:
        raise AnsibleFilterError("uninstall_plan: unknown settings %s, missing settings %s"
                                 % (", ".join(unknown) or "none", ", ".join(missing) or "none"))
    values = dict(settings)
    for key in BOOLEANS:
        try:
            values[key] = boolean(values[key], strict=True)
        except TypeError as err:
            raise AnsibleFilterError("uninstall_plan: %s is not a boolean: %s" % (key, err))
    return _uninstall.plan(values)


def uninstall_object_stubs(objects):
    if not isinstance(objects, list) or not all(isinstance(o, dict) and "kind" in o and "name" in o for o in objects):
        raise AnsibleFilterError("uninstall_object_stubs: input must be the plan's kubernetes_objects (kind, name, ...)")
    return _uninstall.object_stubs(objects)


class FilterModule:
    def filters(self):
        return {"uninstall_plan": uninstall_plan, "uninstall_object_stubs": uninstall_object_stubs}
