# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Every role's meta/argument_specs.yml, checked in the validation phase.

A role validates its argument spec when it starts, that is after earlier plays changed
nodes. This check runs Ansible's own ArgumentSpecValidator (the code the role entry point
runs) over the values each role will see, on the hosts it will run on, so a type or choice
error shows up in the one table before any change. Rows the concern checks already gave
for the same host and variable are not repeated. Secret values never reach a row.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.labhub.platform.plugins.module_utils._validation import MISSING, REDACTED, is_secret
from ansible_collections.labhub.platform.plugins.module_utils._checks_hub import secrets_left_out
from ansible_collections.labhub.platform.plugins.module_utils._checks_cluster import ingress_on, monitoring_on

# Where each role runs: the hub host, the portal hosts, or the scope's cluster nodes.
ROLE_HOSTS = {
    "jupyterhub": "hub",
    "portal": "portal",
    "uninstall": "hub",
    "calico": "hub",
    "ingress": "hub",
    "microk8s": "nodes",
    "offline_images": "nodes",
    "nodes": "nodes",
    "gpu_operator": "nodes",
    "network_operator": "nodes",
    "packages": "nodes",
    "preflight": "scope",
    "image_audit": "hub",
    "monitoring": "hub",
}

# The roles each entry playbook runs (their specs are checked).
PLAYBOOK_ROLES = {
    "site": ("packages", "microk8s", "offline_images", "calico", "nodes", "gpu_operator", "network_operator", "monitoring",
             "ingress", "jupyterhub", "portal"),
    "preflight": ("packages", "microk8s", "offline_images", "calico", "nodes", "gpu_operator", "network_operator",
                  "monitoring", "ingress", "jupyterhub", "portal"),
    "add_node": ("packages", "microk8s", "offline_images", "nodes", "gpu_operator", "network_operator"),
    # render.yml runs the jupyterhub role on each render host; the portal only through tasks_from.
    "render": ("jupyterhub", "ingress", "monitoring"),
    "uninstall": ("uninstall",),
    "audit_images": ("gpu_operator", "network_operator", "ingress", "jupyterhub", "monitoring", "image_audit"),
}

_ARG_RE = re.compile(r"argument '([^']+)'(?: is of type \S+ found in '([^']+)')?")
_VALUE_RE = re.compile(r"^value of (\S+) must be")
_REQUIRED_RE = re.compile(r"^missing required arguments: (.+?)(?: found in (\S+))?$")
_UNSUPPORTED_RE = re.compile(r"^(\S+?)\.?(?: Supported parameters include|$)")


def _hosts(site, where):
    if where == "hub" and site.playbook == "render" and site.scope:
        return list(site.scope)
    if where == "hub":
        return [site.hub_host]
    if where == "portal":
        portal = site.group("labhub_portal")
        return portal or [site.hub_host]
    cluster = site.group("labhub_cluster")
    return [h for h in site.scope if where == "scope" or h in cluster]


def _enabled(site, role):
    if role == "portal":
        return site.hub("portal_enabled", True) is not False
    if role == "ingress":
        return ingress_on(site, site.hub_host)
    if role == "monitoring":
        return monitoring_on(site, site.hub_host)
    return True


def _variable(message, role):
    """The variable an ArgumentSpecValidator message is about (best effort)."""
    match = _ARG_RE.search(message)
    if match:
        return (match.group(2).rstrip(".") + "." if match.group(2) else "") + match.group(1)
    match = _VALUE_RE.match(message) or _REQUIRED_RE.match(message)
    if match:
        return match.group(1)
    match = _UNSUPPORTED_RE.match(message)
    if match and "." in message.split(" ")[0]:
        return match.group(1).rstrip(".")
    return "(argument spec of role %s)" % role


def _scrub(message, secrets):
    for value in sorted(secrets, key=lambda v: -len(v)):
        if value:
            message = message.replace(value, REDACTED)
    return message


def _secret_values(value, name):
    """Strings inside a value that must never be printed."""
    out = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out |= _secret_values(item, "%s.%s" % (name, key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            out |= _secret_values(item, name)
    elif is_secret(name) and value not in (None, "", True, False):
        out.add(str(value))
    return out


def check_argument_specs(site, report):
    """The argument spec of every role the playbook runs, on the hosts it runs on."""
    specs = getattr(site, "specs", None) or {}
    for role in PLAYBOOK_ROLES.get(site.playbook, ()):
        options = specs.get(role)
        if not options or not _enabled(site, role):
            continue
        for host in _hosts(site, ROLE_HOSTS.get(role, "hub")):
            values = {}
            secrets = set()
            left_out = role == "jupyterhub" and secrets_left_out(site, host)
            for name, option in options.items():
                if left_out and name.endswith("_client_secret"):
                    continue  # not rendered (jupyterhub_render_secrets: false): never read, never required
                value = site.get(host, name, MISSING)
                if value is MISSING:
                    continue
                values[name] = value
                if (option or {}).get("no_log") or is_secret(name):
                    secrets |= _secret_values(value, name) | ({str(value)} if value not in (None, "") else set())
                else:
                    secrets |= _secret_values(value, name)
            result = ArgumentSpecValidator(options).validate(values, validate_role_argument_spec=True)
            secrets |= set(str(v) for v in result._no_log_values)
            for error in result.errors:
                message = str(getattr(error, "msg", error))
                required = _REQUIRED_RE.match(message)
                if required:
                    prefix = (required.group(2).rstrip(".") + ".") if required.group(2) else ""
                    for name in required.group(1).split(", "):
                        if not report.has(host, prefix + name):
                            report.add(host, prefix + name, "is required by role %s but not set" % role,
                                       "a value (see roles/%s/meta/argument_specs.yml)" % role)
                    continue
                variable = _variable(message, role)
                if report.has(host, variable.split(".")[0]) or report.has(host, variable):
                    continue
                if is_secret(variable):
                    problem = "has the wrong type or value for role %s (a secret: the value is not shown)" % role
                else:
                    problem = _scrub(message, secrets)
                report.add(host, variable, problem, "as documented in roles/%s/meta/argument_specs.yml" % role)
