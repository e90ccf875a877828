# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter labhub.platform.monitoring_objects: the Kubernetes objects of role monitoring, built in
plugins/module_utils/_monitoring.py from the role's variables and the bundle manifest."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.module_utils import _monitoring


def monitoring_objects(variables, manifest):
    if not isinstance(variables, dict) or not isinstance(manifest, dict):
        raise AnsibleFilterError("monitoring_objects: input must be the role's settings (a mapping) and the bundle "
                                 "manifest (a mapping)")
    cfg = _monitoring.settings_from_vars(variables, manifest)
    missing = [c for c in _monitoring.COMPONENTS if c not in cfg["images"]]
    if missing:
        raise AnsibleFilterError("monitoring_objects: the bundle manifest has no image used_by monitoring for: %s"
                                 % ", ".join(missing))
    return _monitoring.objects(cfg)


def monitoring_admin_secret(password, namespace):
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("monitoring_admin_secret: the password (monitoring_grafana_admin_password) is empty")
    return _monitoring.admin_secret(namespace, password)


def monitoring_hub_token_secret(token, namespace):
    if not isinstance(token, str) or not token:
        raise AnsibleFilterError("monitoring_hub_token_secret: the token (monitoring_hub_metrics_token) is empty")
    return _monitoring.hub_token_secret(namespace, token)


class FilterModule(object):
    def filters(self):
        return {"monitoring_objects": monitoring_objects, "monitoring_admin_secret": monitoring_admin_secret,
                "monitoring_hub_token_secret": monitoring_hub_token_secret}
