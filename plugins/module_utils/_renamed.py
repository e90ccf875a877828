# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Variable names: renamed ones, and unknown ones (typos). One prefix per concern (issue 10).

Hub settings are ``jupyterhub_*``, portal settings ``portal_*``, GPU settings
``gpu_operator_*``, InfiniBand settings ``network_operator_*``, node labels and taints
``nodes_*``; site-wide settings shared by every role keep ``labhub_*`` (labhub_bundle_dir,
labhub_kubeconfig, labhub_render_dir, labhub_test_inventory, labhub_run_record_dir,
labhub_purge). An inventory that still sets an old name gets a row naming the new one:
the old name is no longer read, so silently ignoring it would change the deployment.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib

from ansible_collections.labhub.platform.plugins.module_utils._validation import MISSING

# old name -> new name
RENAMED = {
    "labhub_hub_auth_modes": "jupyterhub_auth_modes",
    "labhub_hub_profiles": "jupyterhub_profiles",
    "labhub_hub_public_url": "jupyterhub_public_url",
    "labhub_hub_api_url": "portal_hub_api_url",
    "labhub_hub_namespace": "jupyterhub_namespace",
    "labhub_hub_github_client_id": "jupyterhub_github_client_id",
    "labhub_hub_github_client_secret": "jupyterhub_github_client_secret",
    "labhub_hub_azuread_tenant_id": "jupyterhub_azuread_tenant_id",
    "labhub_hub_azuread_client_id": "jupyterhub_azuread_client_id",
    "labhub_hub_azuread_client_secret": "jupyterhub_azuread_client_secret",
    "labhub_hub_auth0_domain": "jupyterhub_auth0_domain",
    "labhub_hub_auth0_client_id": "jupyterhub_auth0_client_id",
    "labhub_hub_auth0_client_secret": "jupyterhub_auth0_client_secret",
    "labhub_hub_oidc_issuer_url": "jupyterhub_oidc_issuer_url",
    "labhub_hub_oidc_client_id": "jupyterhub_oidc_client_id",
    "labhub_hub_oidc_client_secret": "jupyterhub_oidc_client_secret",
    "labhub_hub_cookie_sso_cookie_name": "jupyterhub_cookie_sso_cookie_name",
    "labhub_hub_cookie_sso_whoami_url": "jupyterhub_cookie_sso_whoami_url",
    "labhub_hub_cookie_sso_login_url": "jupyterhub_cookie_sso_login_url",
    "labhub_hub_local_groups": "jupyterhub_local_groups",
    "labhub_gpu_enabled": "gpu_operator_enabled",
    "labhub_gpu_driver_mode": "gpu_operator_driver_mode",
    "labhub_gpu_mig_profile": "gpu_operator_mig_profile",
    "labhub_ib_enabled": "network_operator_enabled",
    "labhub_ib_hcas": "network_operator_hcas",
    "labhub_ib_sriov": "network_operator_sriov",
    "labhub_node_labels": "nodes_labels",
    "labhub_node_taints": "nodes_taints",
    "labhub_portal_install": "portal_enabled",
    "labhub_portal_enabled": "portal_hub_service",
    "labhub_portal_public_url": "portal_public_url",
    "portal_base_url": "portal_public_url",
    "labhub_portal_service_name": "portal_hub_service_name",
    "labhub_portal_admin_group": "portal_admin_group",
    "labhub_portal_hub_api_token_file": "portal_hub_api_token_file",
    "labhub_portal_hub_api_token": "portal_hub_api_token",
}


def check_renamed(site, report):
    """Old variable names set anywhere in the inventory or the extra vars."""
    for host in site.hosts:
        for old, new in RENAMED.items():
            if site.has(host, old):
                value = site.get(host, old, MISSING)
                report.add(host, old, "was renamed to %s; the old name is no longer read" % new,
                           "%s (same value)" % new, value=value)


# Prefixes of the variables Labhub reads; a name with one of them that no role knows is a typo.
PREFIXES = ("labhub_", "jupyterhub_", "portal_", "nodes_", "microk8s_", "calico_", "gpu_operator_",
            "network_operator_", "offline_images_", "preflight_", "bundle_", "uninstall_", "remove_node_")
# Site-wide variables (read by playbooks and several roles, documented in inventories/README.md).
SITE_VARIABLES = frozenset((
    "labhub_bundle_dir", "labhub_bundle_manifest_file", "labhub_bundle_kinds", "labhub_bundle_sources",
    "labhub_kubeconfig", "labhub_purge", "labhub_render_dir", "labhub_render_hosts", "labhub_render_portal",
    "labhub_run_record_dir", "labhub_test_inventory",
    # facts labhub.platform modules return (hardware_facts)
    "labhub_hardware",
    # remove_node.yml's settings (-e)
    "remove_node_drain_timeout", "remove_node_drain_delay", "remove_node_grace_period", "remove_node_purge",
))


def check_unknown(site, report):
    """A variable with a Labhub prefix that no role, playbook or site setting reads: a typo that
    would otherwise be ignored without a word."""
    known = getattr(site, "known_names", None)
    if not known:
        return
    known = set(known) | SITE_VARIABLES | set(RENAMED)
    for host in site.hosts:
        for name in sorted(site.explicit_names(host)):
            if not name.startswith(PREFIXES) or name in known or name.startswith("__"):
                continue
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
            report.add(host, name, "is not a variable Labhub reads (a typo?)",
                       ("did you mean %s?" % close[0]) if close else "a variable documented in a role README",
                       value=site.get(host, name, MISSING))
