# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter labhub.platform.monitoring_objects: the Kubernetes objects of role monitoring, built in
plugins/module_utils/_monitoring.py from the role's variables and the bundle manifest."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.labhub.platform.plugins.module_utils import _monitoring, _monitoring_grafana


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


def monitoring_grafana(variables, node_address=None):
    """Grafana's URL, whether it signs in through the hub, and its certificate files ([] or [cert, key]).
    ``variables``: role monitoring's settings, or a host's variables (hostvars[host]; then
    ``node_address`` is the first control-plane node's address)."""
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError("monitoring_grafana: input must be the role's settings or a host's variables (a mapping)")
    variables = dict((key, variables.get(key)) for key in _monitoring_grafana.DEFAULTS)
    if node_address is not None:
        variables["node_address"] = node_address
    exposure = _monitoring_grafana.exposure(variables)
    files = [f for f in _monitoring_grafana.tls_files(variables) if f] if exposure["tls"] else []
    login = _monitoring_grafana.login(variables)
    return {"url": exposure["url"], "login": login is not None, "viewers": login["viewers"] if login else None,
            "viewer_groups": login["viewer_groups"] if login else [], "tls_files": files if len(files) == 2 else []}


def monitoring_grafana_oauth_secret(secret, namespace):
    if not isinstance(secret, str) or not secret:
        raise AnsibleFilterError("monitoring_grafana_oauth_secret: the client secret "
                                 "(monitoring_grafana_oauth_client_secret) is empty")
    return _monitoring.grafana_oauth_secret(namespace, secret)


def monitoring_grafana_tls_secret(cert, key, namespace):
    if not (isinstance(cert, str) and cert and isinstance(key, str) and key):
        raise AnsibleFilterError("monitoring_grafana_tls_secret: the certificate or its key is empty "
                                 "(monitoring_grafana_tls_cert_file, monitoring_grafana_tls_key_file)")
    return _monitoring.grafana_tls_secret(namespace, cert, key)


def monitoring_hub_access(variables):
    """What role jupyterhub adds for monitoring: Grafana's OAuth client and who may use it."""
    if not isinstance(variables, dict):
        raise AnsibleFilterError("monitoring_hub_access: input must be a mapping of inventory values")
    return _monitoring_grafana.hub_side(variables)


class FilterModule(object):
    def filters(self):
        return {"monitoring_objects": monitoring_objects, "monitoring_admin_secret": monitoring_admin_secret,
                "monitoring_hub_token_secret": monitoring_hub_token_secret, "monitoring_grafana": monitoring_grafana,
                "monitoring_grafana_oauth_secret": monitoring_grafana_oauth_secret,
                "monitoring_grafana_tls_secret": monitoring_grafana_tls_secret,
                "monitoring_hub_access": monitoring_hub_access}
