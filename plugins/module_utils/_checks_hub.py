# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The hub: login modes and their secrets, profiles, teams, storage, exposure, TLS, services.

Read on the hub host (the first control-plane node), or, for ``playbook: render``, on every host
in scope (playbooks/render.yml may render several inventories side by side, one per host).

Two layers, one table (the generic argument-spec check, _checks_specs, only adds what these
do not cover; each row here also covers its role variable):
  1. the inventory and role variables as the user writes them (``labhub_hub_*``, ``jupyterhub_*``):
     types the role's argument spec would refuse, required settings per login mode, URLs,
     quantities, storage, exposure, TLS, images pinned to the bundle, the portal service;
  2. the hub configuration the role ships (``_hub_config.build_hub_config``, the same code as
     the role's filter) checked by the hub package's own validator
     (``labhub_hub.config.collect_errors``), each error's key mapped back to the variable the
     user writes. A variable already reported by layer 1 is not reported twice.

Admin user names (``jupyterhub_admin_users`` and ``admin_users`` of a login mode): JupyterHub 5
lower-cases every user name (``Authenticator.normalize_username``) and refuses at start an
empty name, one with ``/`` or with leading/trailing spaces (``validate_username``; the hub would
not start); the native login also refuses ``,`` and spaces. Labhub asks for the name exactly as
JupyterHub stores it: lower-case ASCII without spaces, ``,`` or ``/``.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.labhub.platform.plugins.module_utils import _hub_config
from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    HostCheck,
    a_type_name,
    cpu_error,
    CPU_QUANTITY_RE,
    is_bool,
    is_int,
    is_list,
    is_str,
    memory_error,
    MEMORY_QUANTITY_RE,
    MISSING,
    truthy,
    url_error,
)

KNOWN_MODES = ("native", "github", "azuread", "auth0", "oidc", "cookie_sso", "local_groups", "dummy")
OAUTH_MODES = ("github", "azuread", "auth0", "oidc")
TEST_ONLY_MODES = ("dummy",)
# Variables each login mode needs, as (role variable, inventory variable).
MODE_REQUIRED = {
    "native": (),
    "github": (("jupyterhub_github_client_id", "jupyterhub_github_client_id"),
               ("jupyterhub_github_client_secret", "jupyterhub_github_client_secret")),
    "azuread": (("jupyterhub_azuread_tenant_id", "jupyterhub_azuread_tenant_id"),
                ("jupyterhub_azuread_client_id", "jupyterhub_azuread_client_id"),
                ("jupyterhub_azuread_client_secret", "jupyterhub_azuread_client_secret")),
    "auth0": (("jupyterhub_auth0_domain", "jupyterhub_auth0_domain"),
              ("jupyterhub_auth0_client_id", "jupyterhub_auth0_client_id"),
              ("jupyterhub_auth0_client_secret", "jupyterhub_auth0_client_secret")),
    "oidc": (("jupyterhub_oidc_issuer_url", "jupyterhub_oidc_issuer_url"),
             ("jupyterhub_oidc_client_id", "jupyterhub_oidc_client_id"),
             ("jupyterhub_oidc_client_secret", "jupyterhub_oidc_client_secret")),
    "cookie_sso": (("jupyterhub_cookie_sso_cookie_name", "jupyterhub_cookie_sso_cookie_name"),
                   ("jupyterhub_cookie_sso_whoami_url", "jupyterhub_cookie_sso_whoami_url"),
                   ("jupyterhub_cookie_sso_login_url", "jupyterhub_cookie_sso_login_url")),
    "local_groups": (("jupyterhub_local_groups", "jupyterhub_local_groups"),),
    "dummy": (),
}
# Role variable -> the inventory-wide variable its default comes from.
INVENTORY_NAMES = dict(pair for pairs in MODE_REQUIRED.values() for pair in pairs)
INVENTORY_NAMES.update({
    "jupyterhub_auth_modes": "jupyterhub_auth_modes",
    "jupyterhub_test_inventory": "labhub_test_inventory",
    "jupyterhub_public_url": "jupyterhub_public_url",
    "jupyterhub_gpu_enabled": "gpu_operator_enabled",
    "jupyterhub_profiles": "jupyterhub_profiles",
    "jupyterhub_namespace": "jupyterhub_namespace",
    "jupyterhub_bundle_dir": "labhub_bundle_dir",
    "jupyterhub_render_dir": "labhub_render_dir",
    "jupyterhub_portal_enabled": "portal_hub_service",
    "jupyterhub_portal_service_name": "portal_hub_service_name",
    "jupyterhub_portal_public_url": "portal_public_url",
    "jupyterhub_portal_admin_group": "portal_admin_group",
    "jupyterhub_portal_api_token": "portal_hub_api_token",
    "jupyterhub_portal_api_token_file": "portal_hub_api_token_file",
})
PROFILE_KEYS = ("name", "cpu", "memory", "gpus", "display_name", "description", "image", "cpu_guarantee",
                "mem_guarantee", "node_selector", "tolerations", "max_session_hours", "shm_size", "default")
# Keys of jupyterhub_auth_settings.<mode> the role sets itself from other variables.
ROLE_SET_KEYS = {"client_id": "jupyterhub_{mode}_client_id", "client_secret": "jupyterhub_{mode}_client_secret",
                 "password_hash": "jupyterhub_local_groups", "groups": "jupyterhub_local_groups",
                 "tenant_id": "jupyterhub_azuread_tenant_id", "domain": "jupyterhub_auth0_domain",
                 "issuer": "jupyterhub_oidc_issuer_url", "cookie_name": "jupyterhub_cookie_sso_cookie_name",
                 "whoami_url": "jupyterhub_cookie_sso_whoami_url", "login_url": "jupyterhub_cookie_sso_login_url"}
# The minimum length of the portal's hub API token, the same in roles/portal and the portal itself.
MIN_API_TOKEN_LENGTH = 32
STORAGE_KINDS = ("hostpath", "microk8s-hostpath", "nfs", "none")
HOME_SUBDIR_RE = re.compile(r"^/home/[^/]+/.+")
HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
HASH_RE = re.compile(r"^(pbkdf2_sha256\$[0-9]+\$[^$]+\$[^$]+|\$2[aby]\$[0-9]{2}\$.{53})$")
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PROFILE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
VOLUME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
DNS_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
EMAIL_RE = re.compile(r"^[^@ ]+@[^@ ]+$")
NODEPORT_RANGE = (30000, 32767)
CPU_EXAMPLE = "a Kubernetes CPU quantity, e.g. 2, 0.5 or '500m'"
MEMORY_EXAMPLE = "a Kubernetes memory quantity, e.g. '4Gi', '512Mi' or '8G'"


def secrets_left_out(site, host):
    """True when the hub host renders without its secrets (jupyterhub_render_dir set and
    jupyterhub_render_secrets false): the login modes' client secrets are not used, so they need
    not be set nor resolvable (e.g. a vault variable of a vault file a render-only run lacks)."""
    return bool(site.get(host, "jupyterhub_render_dir")) and site.get(host, "jupyterhub_render_secrets") is False


class _Hub(HostCheck):
    """The variables of one hub host, rows named as the user writes them."""

    @property
    def reported(self):
        return self.flagged

    def value(self, var, default=None):
        return self.site.get(self.host, var, default)

    def name(self, var):
        """The variable as the user writes it: the role variable when the inventory sets it, else the
        inventory-wide name its default comes from."""
        inventory = INVENTORY_NAMES.get(var)
        if inventory is None or self.site.has(self.host, var):
            return var
        return inventory

    def add(self, variable, problem, expected, value=MISSING, secret=None, path=""):
        """A row; ``variable`` is a role variable (renamed with :meth:`name`) plus an optional path."""
        shown = self.name(variable) + path
        self.reported.add(shown)
        # the row also covers the role variable, so the argument-spec check does not repeat it
        self.report.add(self.host, shown, problem, expected, value=value, secret=secret, covers=(variable + path,))

    def truthy(self, var):
        return truthy(self.value(var))


def hub_hosts(site):
    """Hosts whose variables configure a hub: see the module docstring."""
    if site.playbook == "render" and site.scope:
        return list(site.scope)
    return [site.hub_host]


def check_hub(site, report):
    """Every hub setting, then the hub package's validator on the configuration the role ships."""
    for host in hub_hosts(site):
        hub = _Hub(site, report, host)
        _check_types(hub)
        modes = _check_modes(hub)
        _check_auth_settings(hub, modes)
        _check_urls(hub, modes)
        _check_admin_users(hub)
        _check_local_groups(hub, modes)
        _check_profiles(hub)
        _check_spawn_shapes(hub)
        _check_images(hub)
        _check_storage(hub)
        _check_exposure(hub)
        _check_secrets_and_services(hub)
        _check_portal(hub)
        _check_limits_and_files(hub)
        _check_names(hub)
        _check_with_hub_package(hub)


def _check_names(hub):
    """Kubernetes names the role creates objects under."""
    for var, what in (("jupyterhub_namespace", "a namespace name"), ("jupyterhub_release_name", "a Helm release name")):
        value = hub.value(var)
        if value is MISSING or value is None:
            continue
        if not isinstance(value, str) or not re.match(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$", value):
            hub.add(var, "is not %s (RFC 1123 label)" % what,
                    "lower-case letters, digits and '-', starting and ending with a letter or digit, e.g. jhub",
                    value=value)


# --------------------------------------------------------------------------------------
# Types the role's argument spec declares (rows before the spec would fail the role)
# --------------------------------------------------------------------------------------
BOOL_VARS = ("jupyterhub_render_secrets", "jupyterhub_test_inventory", "jupyterhub_gpu_enabled",
             "jupyterhub_admin_all_profiles", "jupyterhub_prepull_images", "jupyterhub_portal_enabled",
             "jupyterhub_validate_with_package")
INT_VARS = ("jupyterhub_user_placeholders", "jupyterhub_storage_uid", "jupyterhub_storage_gid",
            "jupyterhub_ingress_timeout_seconds")
DICT_VARS = ("jupyterhub_chart_images", "jupyterhub_auth_settings", "jupyterhub_teams", "jupyterhub_session",
             "jupyterhub_shm", "jupyterhub_dynamic_profile", "jupyterhub_cpu_only_env", "jupyterhub_culling",
             "jupyterhub_resource_quota", "jupyterhub_limit_range", "jupyterhub_singleuser_egress_allow_rules",
             "jupyterhub_ingress_annotations", "jupyterhub_services", "jupyterhub_local_groups")
LIST_VARS = ("jupyterhub_admin_users", "jupyterhub_default_profiles", "jupyterhub_shared_volumes",
             "jupyterhub_singleuser_extra_egress", "jupyterhub_hub_extra_egress", "jupyterhub_portal_scopes")
STR_VARS = ("jupyterhub_public_url", "jupyterhub_hostname", "jupyterhub_singleuser_image", "jupyterhub_init_image",
            "jupyterhub_chart_version", "jupyterhub_storage_capacity", "jupyterhub_storage_mount_path",
            "jupyterhub_letsencrypt_email", "jupyterhub_tls_cert_file", "jupyterhub_tls_key_file",
            "jupyterhub_native_users_csv_file", "jupyterhub_announcement")
STR_LIST_VARS = ("jupyterhub_admin_users", "jupyterhub_default_profiles", "jupyterhub_portal_scopes")
EGRESS_PROTOCOLS = ("TCP", "UDP", "SCTP")


def _check_types(hub):
    for var in BOOL_VARS:
        value = hub.value(var, MISSING)
        if value is MISSING or value is None or is_bool(value):
            continue
        if var in ("jupyterhub_test_inventory", "jupyterhub_gpu_enabled", "jupyterhub_portal_enabled") \
                and not hub.site.has(hub.host, var):
            continue  # the inventory-wide switch; check_booleans reports it
        hub.add(var, "is %s, not a boolean" % a_type_name(value), "true or false (unquoted YAML)", value=value)
    for var in INT_VARS:
        value = hub.value(var, MISSING)
        if value is not MISSING and value is not None and not is_int(value):
            hub.add(var, "is %s, not a whole number" % a_type_name(value), "a whole number, e.g. 1000", value=value)
    for var in DICT_VARS:
        value = hub.value(var, MISSING)
        if value is not MISSING and value is not None and not isinstance(value, dict):
            hub.add(var, "is %s, not a mapping" % a_type_name(value), "a mapping (key: value)", value=value)
    for var in LIST_VARS:
        value = hub.value(var, MISSING)
        if value is MISSING or value is None:
            continue
        if not is_list(value):
            hub.add(var, "is %s, not a list" % a_type_name(value), "a YAML list", value=value)
        elif var in STR_LIST_VARS:
            for index, item in enumerate(value):
                if not is_str(item) or not item:
                    hub.add(var, "item %d is %s, not a name" % (index, a_type_name(item)), "a list of strings",
                            value=value, path="[%d]" % index)
    for var in STR_VARS:
        value = hub.value(var, MISSING)
        if value is not MISSING and value is not None and not is_str(value) and not is_int(value):
            hub.add(var, "is %s, not a string" % a_type_name(value), "a string", value=value)
    for var in ("jupyterhub_singleuser_extra_egress", "jupyterhub_hub_extra_egress"):
        rules = hub.value(var)
        for index, rule in enumerate(rules if is_list(rules) else []):
            path = "[%d]" % index
            if not isinstance(rule, dict):
                hub.add(var, "is %s, not a rule" % a_type_name(rule), "{cidr, ports: [{port, protocol}]}",
                        value=rule, path=path)
                continue
            if not is_str(rule.get("cidr")) or not rule.get("cidr"):
                hub.add(var, "has no cidr", "an address block, e.g. 10.1.2.3/32", value=rule.get("cidr", MISSING),
                        path=path + ".cidr")
            if rule.get("except") is not None and not is_list(rule.get("except")):
                hub.add(var, "is not a list", "a list of address blocks", value=rule["except"], path=path + ".except")
            ports = rule.get("ports")
            if ports is not None and not is_list(ports):
                hub.add(var, "is not a list", "[{port, protocol}]", value=ports, path=path + ".ports")
                continue
            for pindex, port in enumerate(ports or []):
                ppath = "%s.ports[%d]" % (path, pindex)
                if not isinstance(port, dict) or not is_int(port.get("port")):
                    hub.add(var, "needs a whole-number port", "{port: 443, protocol: TCP}", value=port, path=ppath)
                elif port.get("protocol", "TCP") not in EGRESS_PROTOCOLS:
                    hub.add(var, "unknown protocol", "one of " + ", ".join(EGRESS_PROTOCOLS),
                            value=port.get("protocol"), path=ppath + ".protocol")


# --------------------------------------------------------------------------------------
# Login modes
# --------------------------------------------------------------------------------------
def _empty(value):
    return value is None or value is MISSING or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


def _check_modes(hub):
    """The valid, known modes (for the checks that follow)."""
    var = "jupyterhub_auth_modes"
    modes = hub.value(var, MISSING)
    known = ", ".join(KNOWN_MODES)
    if modes is MISSING or modes is None:
        hub.add(var, "is not set", "a list of login modes, one or more of: " + known)
        return []
    if not is_list(modes):
        hub.add(var, "is %s, not a list of login modes" % a_type_name(modes), "a list, e.g. [native]", value=modes)
        return []
    if not modes:
        hub.add(var, "is empty", "one or more of: " + known, value=modes)
        return []
    valid = []
    for mode in modes:
        if not is_str(mode) or mode not in KNOWN_MODES:
            hub.add(var, "unknown login mode %s" % _show(mode), "one or more of: " + known, value=modes)
            continue
        if mode in valid:
            hub.add(var, "login mode %s is listed twice" % mode, "each mode once", value=modes)
            continue
        valid.append(mode)
    test_inventory = hub.value("jupyterhub_test_inventory")
    for mode in valid:
        if mode in TEST_ONLY_MODES and test_inventory is not True:
            hub.add(var, "login mode '%s' accepts any password and is for tests only" % mode,
                    "labhub_test_inventory: true (a test inventory), or another login mode", value=modes)
    render_only = secrets_left_out(hub.site, hub.host)
    for mode in valid:
        for role_var, _inventory in MODE_REQUIRED[mode]:
            if render_only and role_var.endswith("_client_secret"):
                continue  # secrets are left out of this render (jupyterhub_render_secrets: false)
            value = hub.value(role_var, MISSING)
            if _empty(value):
                hub.add(role_var, "is required by login mode '%s' but is not set or empty" % mode,
                        "a value (keep secrets in a vault-encrypted file)", value=value)
    return valid


def _show(value):
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _check_auth_settings(hub, modes):
    var = "jupyterhub_auth_settings"
    settings = hub.value(var)
    if not isinstance(settings, dict):
        return
    for mode, section in settings.items():
        if mode not in KNOWN_MODES:
            hub.add(var, "unknown login mode", "keys among: " + ", ".join(KNOWN_MODES), value=section,
                    path=".%s" % mode)
            continue
        if section is None:
            continue
        if not isinstance(section, dict):
            hub.add(var, "is %s, not a mapping" % a_type_name(section), "the mode's settings (files/hub/README.md)",
                    value=section, path=".%s" % mode)
            continue
        for key in section:
            if key in ROLE_SET_KEYS:
                hub.add(var, "is set by the role from %s; secrets go into a Kubernetes Secret, never into the hub "
                        "configuration" % ROLE_SET_KEYS[key].format(mode=mode),
                        "%s (in a vault-encrypted file for a secret), not here" % ROLE_SET_KEYS[key].format(mode=mode),
                        value=section[key], secret=True, path=".%s.%s" % (mode, key))
        if mode in OAUTH_MODES and mode in modes:
            allow = ("allowed_users", "allowed_organizations") if mode == "github" else \
                ("allowed_users", "allowed_groups") + (("allowed_tenants",) if mode == "azuread" else ())
            if not any(section.get(key) for key in allow):
                hub.add(var, "login mode '%s' would admit every account of the identity provider" % mode,
                        "%s in jupyterhub_auth_settings.%s" % (" and/or ".join(allow), mode),
                        value=section, path=".%s.%s" % (mode, allow[-1] if mode != "azuread" else "allowed_groups"))
    for mode in modes:
        if mode in OAUTH_MODES and mode not in settings:
            allow = "allowed_organizations (org or org:team)" if mode == "github" else "allowed_groups"
            hub.add(var, "login mode '%s' has no allowed users or %s: it would admit every account of the "
                    "identity provider" % (mode, allow.split(" ", maxsplit=1)[0]),
                    "jupyterhub_auth_settings.%s.%s and/or allowed_users" % (mode, allow),
                    path=".%s" % mode)


def _check_urls(hub, modes):
    public = hub.value("jupyterhub_public_url")
    if is_str(public) and public and url_error(public):
        hub.add("jupyterhub_public_url", "is not a URL: " + url_error(public),
                "the hub URL as browsers see it, http(s)://host[:port][/path], e.g. https://hub.example.org",
                value=public)
    if "cookie_sso" in modes:
        for var in ("jupyterhub_cookie_sso_whoami_url", "jupyterhub_cookie_sso_login_url"):
            value = hub.value(var)
            if is_str(value) and value and not re.match(r"^https?://[^/\s]+", value):
                hub.add(var, "is not an http(s) URL", "http(s)://host/path (the login URL may carry {next})",
                        value=value)
    if "oidc" in modes:
        value = hub.value("jupyterhub_oidc_issuer_url")
        if is_str(value) and value and url_error(value):
            hub.add("jupyterhub_oidc_issuer_url", "is not an http(s) URL",
                    "the issuer URL, e.g. https://sso.example.org/realms/lab", value=value)
    if "auth0" in modes:
        value = hub.value("jupyterhub_auth0_domain")
        if is_str(value) and value and ("://" in value or "/" in value or not DNS_NAME_RE.match(value.lower())):
            hub.add("jupyterhub_auth0_domain", "is not a bare domain name (the hub builds https://<domain>/...)",
                    "the tenant domain only, e.g. labhub.eu.auth0.com", value=value)


def _admin_name_error(name):
    if not is_str(name) or not name:
        return "is not a user name", None
    if name != name.strip() or re.search(r"\s", name):
        return "contains spaces (JupyterHub refuses leading/trailing spaces at start; no login yields inner " \
               "ones)", None
    if "/" in name or "," in name:
        bad = "/" if "/" in name else ","
        return "contains %s, which JupyterHub (native login) refuses in user names" % bad, None
    if name != name.lower():
        return "has capitals: JupyterHub lower-cases user names, this admin is stored as %r" % name.lower(), \
            name.lower()
    if not all(ord(c) < 128 for c in name):
        return "has non-ASCII characters: Labhub takes admin names as JupyterHub stores them, lower-case ASCII", None
    return None, None


def _check_admin_users(hub):
    lists = [("jupyterhub_admin_users", "", hub.value("jupyterhub_admin_users"))]
    settings = hub.value("jupyterhub_auth_settings")
    for mode, section in (settings.items() if isinstance(settings, dict) else ()):
        if isinstance(section, dict) and "admin_users" in section:
            lists.append(("jupyterhub_auth_settings", ".%s.admin_users" % mode, section["admin_users"]))
    for var, path, names in lists:
        if not is_list(names):
            if path and names is not None:
                hub.add(var, "is %s, not a list" % a_type_name(names), "a list of user names", value=names, path=path)
            continue
        for index, name in enumerate(names):
            problem, fixed = _admin_name_error(name)
            if problem and is_str(name):
                hub.add(var, problem, ("%r (the name as JupyterHub stores it)" % fixed) if fixed else
                        "the user name as JupyterHub stores it: lower-case ASCII letters, digits, '.', '_', '-', "
                        "'@' (no spaces, ',' or '/')", value=name, path="%s[%d]" % (path, index))


def _check_local_groups(hub, modes):
    var = "jupyterhub_local_groups"
    groups = hub.value(var)
    if "local_groups" not in modes or _empty(groups) or not isinstance(groups, dict):
        return
    for name, group in groups.items():
        path = ".%s" % name
        if not is_str(name) or not GROUP_RE.match(name):
            hub.add(var, "group names may use letters, digits, '.', '_', '-' only", "a name like course-a",
                    value=name, path=path)
        if not isinstance(group, dict):
            hub.add(var, "is %s, not a group" % a_type_name(group), "{members, password_hash, admin}",
                    value=group, secret=True, path=path)
            continue
        members = group.get("members")
        if not is_list(members) or not members:
            hub.add(var, "lists no member", "the group's user names, e.g. [s1, s2]", value=members,
                    path=path + ".members")
        if "password" in group:
            hub.add(var, "plain passwords are refused", "password_hash (python -m labhub_hub.passwords)",
                    value=group["password"], path=path + ".password")
        if not (is_str(group.get("password_hash")) and HASH_RE.match(group.get("password_hash"))):
            hub.add(var, "is not a pbkdf2_sha256$... or bcrypt $2b$... hash", "a hash made with "
                    "python -m labhub_hub.passwords", value=group.get("password_hash", MISSING), secret=True,
                    path=path + ".password_hash")
        if "admin" in group and not is_bool(group["admin"]):
            hub.add(var, "is %s, not a boolean" % a_type_name(group["admin"]), "true or false",
                    value=group["admin"], path=path + ".admin")


def _profile_label(profile, index):
    if isinstance(profile, dict) and is_str(profile.get("name")) and profile.get("name"):
        return profile["name"]
    return "#%d" % index


def _check_profiles(hub):
    var = "jupyterhub_profiles"
    profiles = hub.value(var)
    csv_file = hub.value("jupyterhub_native_users_csv_file")
    if is_str(csv_file) and csv_file and not os.path.isfile(csv_file):
        hub.add("jupyterhub_native_users_csv_file", "is not a file on the controller", "a readable CSV "
                "(username[,admin][,groups])", value=csv_file)
    if profiles is None or profiles is MISSING:
        return
    if not is_list(profiles):
        hub.add(var, "is %s, not a list of profiles" % a_type_name(profiles), "a list of {name, cpu, memory, gpus}",
                value=profiles)
        return
    gpu_on = hub.value("jupyterhub_gpu_enabled")
    gpu_nodes = hub.site.group("labhub_gpu_nodes")
    seen = set()
    for index, profile in enumerate(profiles):
        label = "[%s]" % _profile_label(profile, index)
        if not isinstance(profile, dict) or "name" not in profile:
            hub.add(var, "is not a mapping with a name", "{name: cpu-small, cpu: 2, memory: 4Gi, gpus: 0}",
                    value=profile, path=label)
            continue
        name = profile["name"]
        if not is_str(name) or not PROFILE_NAME_RE.match(name):
            hub.add(var, "is not a profile name (it becomes the profile slug)",
                    "lower-case letters, digits and '-', starting with a letter, at most 63 characters",
                    value=name, path=label + ".name")
        elif name in seen:
            hub.add(var, "duplicate profile name", "a distinct name for each profile", value=name, path=label + ".name")
        seen.add(name if is_str(name) else repr(name))
        for key in ("cpu", "cpu_guarantee"):
            if profile.get(key) is not None and cpu_error(profile[key]):
                hub.add(var, "invalid CPU quantity: " + cpu_error(profile[key]), CPU_EXAMPLE, value=profile[key],
                        path="%s.%s" % (label, key))
        for key in ("memory", "mem_guarantee", "shm_size"):
            if profile.get(key) is not None and memory_error(profile[key]):
                hub.add(var, "invalid memory quantity: " + memory_error(profile[key]), MEMORY_EXAMPLE,
                        value=profile[key], path="%s.%s" % (label, key))
        gpus = profile.get("gpus", 0)
        if gpus is None:
            gpus = 0
        if not is_int(gpus) or gpus < 0:
            hub.add(var, "is not a whole number of GPUs", "0 or more, e.g. 1", value=gpus, path=label + ".gpus")
        elif gpus > 0 and gpu_on is False:
            hub.add(var, "requests %d GPU(s) but GPU support is off (gpu_operator_enabled: false)" % gpus,
                    "gpu_operator_enabled: true with GPU nodes, or gpus: 0", value=gpus, path=label + ".gpus")
        elif gpus > 0 and not gpu_nodes and hub.site.playbook != "render":
            # A render writes files only; a cluster needs GPU nodes for the profile to start.
            hub.add(var, "requests %d GPU(s) but group labhub_gpu_nodes has no host" % gpus,
                    "GPU nodes in labhub_gpu_nodes, or gpus: 0", value=gpus, path=label + ".gpus")
        unknown = sorted(str(k) for k in profile if k not in PROFILE_KEYS)
        if unknown:
            hub.add(var, "unknown keys: " + ", ".join(unknown), "keys among: " + ", ".join(PROFILE_KEYS),
                    value=unknown, path=label)
        hours = profile.get("max_session_hours")
        if hours is not None and (is_bool(hours) or not isinstance(hours, (int, float)) or hours <= 0):
            hub.add(var, "is not a positive number of hours", "hours, e.g. 8 or 0.5", value=hours,
                    path=label + ".max_session_hours")
        for key, kind, expected in (("default", bool, "true or false"),
                                    ("node_selector", dict, "a mapping label: value"),
                                    ("tolerations", list, "a list of Kubernetes tolerations")):
            if profile.get(key) is not None and not isinstance(profile[key], kind):
                hub.add(var, "is %s" % a_type_name(profile[key]), expected, value=profile[key],
                        path="%s.%s" % (label, key))
        for key in ("display_name", "description", "image"):
            if profile.get(key) is not None and not is_str(profile[key]):
                hub.add(var, "is %s, not a string" % a_type_name(profile[key]), "a string", value=profile[key],
                        path="%s.%s" % (label, key))


def _check_spawn_shapes(hub):
    teams = hub.value("jupyterhub_teams")
    for team, allowed in (teams.items() if isinstance(teams, dict) else ()):
        if not is_list(allowed):
            hub.add("jupyterhub_teams", "is %s, not a list of profile names" % a_type_name(allowed),
                    "a list of profile names", value=allowed, path=".%s" % team)
    dynamic = hub.value("jupyterhub_dynamic_profile")
    if isinstance(dynamic, dict) and dynamic.get("enabled") and hub.value("jupyterhub_gpu_enabled") is False:
        max_gpu = dynamic.get("max_gpu", 0)
        if is_int(max_gpu) and max_gpu > 0:
            hub.add("jupyterhub_dynamic_profile", "offers GPUs but GPU support is off (gpu_operator_enabled: false)",
                    "max_gpu: 0, or gpu_operator_enabled: true", value=max_gpu, path=".max_gpu")


# --------------------------------------------------------------------------------------
# Images pinned to the bundle, the chart version
# --------------------------------------------------------------------------------------
def _load_manifest(path):
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def _check_images(hub):
    path = hub.value("jupyterhub_bundle_manifest_file")
    if not is_str(path) or not path:
        return
    try:
        manifest = _load_manifest(path)
    except (OSError, ValueError) as exc:
        hub.add("jupyterhub_bundle_manifest_file", "cannot be read: %s" % exc, "the bundle manifest "
                "(files/bundle-manifest.yml)", value=path)
        return
    pinned = set(i.get("ref") for i in manifest.get("images") or [] if isinstance(i, dict))
    where = os.path.basename(path)

    def pin(var, image, suffix=""):
        if is_str(image) and image and image not in pinned:
            hub.add(var, "image %s is not in the bundle manifest %s: nodes only have the bundle's images"
                    % (image, where), "an image of %s (add an images entry, rebuild the bundle)" % where,
                    value=image, path=suffix)

    pin("jupyterhub_singleuser_image", hub.value("jupyterhub_singleuser_image"))
    pin("jupyterhub_init_image", hub.value("jupyterhub_init_image"))
    chart_images = hub.value("jupyterhub_chart_images")
    for key, image in sorted((chart_images or {}).items() if isinstance(chart_images, dict) else []):
        pin("jupyterhub_chart_images", image, ".%s" % key)
    profiles = hub.value("jupyterhub_profiles")
    for index, profile in enumerate(profiles if is_list(profiles) else []):
        if isinstance(profile, dict) and "image" in profile:
            pin("jupyterhub_profiles", profile["image"], "[%s].image" % _profile_label(profile, index))
    dynamic = hub.value("jupyterhub_dynamic_profile")
    if isinstance(dynamic, dict) and dynamic.get("enabled"):
        for index, image in enumerate(dynamic.get("images") or [] if is_list(dynamic.get("images") or []) else []):
            pin("jupyterhub_dynamic_profile", image, ".images[%d]" % index)
    version = hub.value("jupyterhub_chart_version")
    versions = [str(c.get("version")) for c in manifest.get("charts") or []
                if isinstance(c, dict) and c.get("name") == "jupyterhub"]
    if str(version) not in versions:
        hub.add("jupyterhub_chart_version", "is not the jupyterhub chart version of the bundle manifest %s" % where,
                " or ".join(versions) or "a jupyterhub chart in the manifest", value=version)


# --------------------------------------------------------------------------------------
# Storage, exposure, TLS
# --------------------------------------------------------------------------------------
def _abs(value):
    return is_str(value) and len(value) > 1 and value.startswith("/")


def _check_storage(hub):
    kind = hub.value("jupyterhub_storage_kind")
    if kind not in STORAGE_KINDS:
        hub.add("jupyterhub_storage_kind", "unknown storage kind", "one of " + ", ".join(STORAGE_KINDS), value=kind)
    if kind == "hostpath" and not _abs(hub.value("jupyterhub_storage_hostpath_root")):
        hub.add("jupyterhub_storage_hostpath_root", "is not an absolute directory", "a directory on the nodes, "
                "e.g. /srv/labhub/home", value=hub.value("jupyterhub_storage_hostpath_root"))
    if kind == "nfs":
        if _empty(hub.value("jupyterhub_storage_nfs_server")):
            hub.add("jupyterhub_storage_nfs_server", "is required when jupyterhub_storage_kind is nfs",
                    "the NFS server's address", value=hub.value("jupyterhub_storage_nfs_server"))
        if not _abs(hub.value("jupyterhub_storage_nfs_path")):
            hub.add("jupyterhub_storage_nfs_path", "the absolute export path is required when "
                    "jupyterhub_storage_kind is nfs", "e.g. /export/home",
                    value=hub.value("jupyterhub_storage_nfs_path"))
    capacity = hub.value("jupyterhub_storage_capacity")
    if kind == "microk8s-hostpath" and memory_error(capacity):
        hub.add("jupyterhub_storage_capacity", "invalid storage quantity: " + memory_error(capacity),
                "a Kubernetes quantity, e.g. 10Gi", value=capacity)
    mount = hub.value("jupyterhub_storage_mount_path")
    if not (is_str(mount) and HOME_SUBDIR_RE.match(mount)):
        hub.add("jupyterhub_storage_mount_path", "is not a subdirectory of the home directory (the image's home "
                "would be hidden)", "e.g. /home/jovyan/work", value=mount)
    volumes = hub.value("jupyterhub_shared_volumes")
    for index, vol in enumerate(volumes if is_list(volumes) else []):
        path = "[%d]" % index
        var = "jupyterhub_shared_volumes"
        if not isinstance(vol, dict):
            hub.add(var, "is %s, not a volume" % a_type_name(vol), "{name, kind, path, ...}", value=vol, path=path)
            continue
        vkind = vol.get("kind")
        if not (is_str(vol.get("name")) and VOLUME_NAME_RE.match(vol["name"])):
            hub.add(var, "a name of lower-case letters, digits and '-' is required", "e.g. datasets",
                    value=vol.get("name", MISSING), path=path + ".name")
        if vkind not in ("hostpath", "nfs", "pvc"):
            hub.add(var, "unknown volume kind", "hostpath, nfs or pvc", value=vkind if vkind is not None else MISSING,
                    path=path + ".kind")
        elif vkind in ("hostpath", "nfs") and not _abs(vol.get("path")):
            hub.add(var, "an absolute path is required for kind %s" % vkind, "e.g. /srv/lab/datasets",
                    value=vol.get("path", MISSING), path=path + ".path")
        if vkind == "nfs" and _empty(vol.get("server")):
            hub.add(var, "is required for kind nfs", "the NFS server's address", value=vol.get("server", MISSING),
                    path=path + ".server")
        if vkind == "pvc" and _empty(vol.get("claim_name")):
            hub.add(var, "is required for kind pvc", "the PersistentVolumeClaim's name",
                    value=vol.get("claim_name", MISSING), path=path + ".claim_name")
        if "mount_path" in vol and not (is_str(vol["mount_path"]) and HOME_SUBDIR_RE.match(vol["mount_path"])):
            hub.add(var, "is not a subdirectory of the home directory", "e.g. /home/jovyan/shared/datasets",
                    value=vol["mount_path"], path=path + ".mount_path")
        if "read_only" in vol and not is_bool(vol["read_only"]):
            hub.add(var, "is %s, not a boolean" % a_type_name(vol["read_only"]), "true or false",
                    value=vol["read_only"], path=path + ".read_only")


def _check_exposure(hub):
    expose = hub.value("jupyterhub_expose")
    tls = hub.value("jupyterhub_tls_mode")
    if expose not in ("ingress", "nodeport"):
        hub.add("jupyterhub_expose", "unknown exposure", "ingress or nodeport", value=expose)
    hostname = hub.value("jupyterhub_hostname")
    if (expose == "ingress" or tls not in ("none", None)) and not (is_str(hostname) and DNS_NAME_RE.match(hostname)):
        hub.add("jupyterhub_hostname", "a DNS name is required with an ingress or TLS",
                "the hub's lower-case DNS name, e.g. hub.example.org", value=hostname)
    if expose == "nodeport":
        for var in ("jupyterhub_nodeport_http", "jupyterhub_nodeport_https"):
            port = hub.value(var)
            if not is_int(port) or not NODEPORT_RANGE[0] <= port <= NODEPORT_RANGE[1]:
                hub.add(var, "is not a port in the NodePort range", "%d-%d" % NODEPORT_RANGE, value=port)
        if hub.value("jupyterhub_nodeport_http") == hub.value("jupyterhub_nodeport_https"):
            hub.add("jupyterhub_nodeport_https", "is the same port as jupyterhub_nodeport_http", "two distinct ports",
                    value=hub.value("jupyterhub_nodeport_https"))
    if tls not in ("none", "files", "letsencrypt"):
        hub.add("jupyterhub_tls_mode", "unknown TLS mode", "none, files or letsencrypt", value=tls)
    elif tls == "files":
        for var in ("jupyterhub_tls_cert_file", "jupyterhub_tls_key_file"):
            path = hub.value(var)
            if not (is_str(path) and path and os.path.isfile(path)):
                hub.add(var, "must name a readable file on the controller when jupyterhub_tls_mode is files",
                        "a PEM file path", value=path)
    elif tls == "letsencrypt":
        if expose != "nodeport":
            hub.add("jupyterhub_tls_mode", "letsencrypt is the chart's autohttps and needs jupyterhub_expose: "
                    "nodeport", "files with an ingress, or jupyterhub_expose: nodeport", value=tls)
        email = hub.value("jupyterhub_letsencrypt_email")
        if not (is_str(email) and EMAIL_RE.match(email)):
            hub.add("jupyterhub_letsencrypt_email", "a contact e-mail is required for letsencrypt",
                    "e.g. ops@example.org", value=email)


# --------------------------------------------------------------------------------------
# Generated secrets, services, the portal
# --------------------------------------------------------------------------------------
def _check_secrets_and_services(hub):
    for var in ("jupyterhub_cookie_secret", "jupyterhub_crypt_key"):
        value = hub.value(var)
        if value and not (is_str(value) and HEX64_RE.match(value)):
            hub.add(var, "is not 64 hex characters", "openssl rand -hex 32, or empty to generate one", value=value)
    services = hub.value("jupyterhub_services")
    for name, svc in (services.items() if isinstance(services, dict) else ()):
        if not (is_str(name) and SERVICE_RE.match(name)):
            hub.add("jupyterhub_services", "service names are lower-case letters, digits and -", "e.g. labhub-portal",
                    value=name, path=".%s" % name)
        if not isinstance(svc, dict):
            hub.add("jupyterhub_services", "is %s, not the service's settings" % a_type_name(svc),
                    "{api_token, url, oauth_redirect_uri, roles}", value=svc, secret=True, path=".%s" % name)
        elif len(str(svc.get("api_token") or "")) < MIN_API_TOKEN_LENGTH:
            hub.add("jupyterhub_services", "is shorter than %d characters" % MIN_API_TOKEN_LENGTH,
                    "openssl rand -hex 32", value=svc.get("api_token", MISSING), path=".%s.api_token" % name)


def _check_portal(hub):
    enabled = hub.value("jupyterhub_portal_enabled")
    if not is_bool(enabled):
        if hub.site.has(hub.host, "jupyterhub_portal_enabled"):
            return  # reported by _check_types
        enabled = str(enabled).strip().lower() == "true"
    if not enabled:
        return
    name = hub.value("jupyterhub_portal_service_name")
    services = hub.value("jupyterhub_services")
    if not (is_str(name) and SERVICE_RE.match(name)):
        hub.add("jupyterhub_portal_service_name", "is not a service name", "lower-case letters, digits and -, "
                "e.g. labhub-portal", value=name)
    elif isinstance(services, dict) and name in services:
        hub.add("jupyterhub_services", "the portal service is registered by portal_hub_service",
                "no %s entry in jupyterhub_services" % name, path=".%s" % name)
    url = hub.value("jupyterhub_portal_public_url")
    if not (is_str(url) and url and not url_error(url)):
        hub.add("jupyterhub_portal_public_url", "the portal URL as browsers see it is required when "
                "portal_hub_service is true" if not url else "is not an http(s) URL",
                "http(s)://host[:port][/path]; the OAuth redirect URI is <url>/oauth_callback", value=url)
    if not hub.value("jupyterhub_public_url") and not hub.value("portal_hub_api_url"):
        hub.add("jupyterhub_public_url", "is required when portal_hub_service is true: the portal sends browsers "
                "to <url>/hub/api/oauth2/authorize and calls <url>/hub/api",
                "the hub URL, e.g. https://hub.example.org (or portal_hub_api_url)",
                value=hub.value("jupyterhub_public_url"))
    group = hub.value("jupyterhub_portal_admin_group")
    if group and not (is_str(group) and re.match(r"^[^\s,]+$", group)):
        hub.add("jupyterhub_portal_admin_group", "is not one hub group name", "one group name, no spaces or commas",
                value=group)
    token = hub.value("jupyterhub_portal_api_token")
    if token and len(str(token)) < MIN_API_TOKEN_LENGTH:
        hub.add("jupyterhub_portal_api_token", "is shorter than %d characters (the hub and the portal both require "
                "%d)" % (MIN_API_TOKEN_LENGTH, MIN_API_TOKEN_LENGTH),
                "openssl rand -hex 32, or empty to generate one", value=token)
    scopes = hub.value("jupyterhub_portal_scopes")
    if not is_list(scopes) or not scopes:
        hub.add("jupyterhub_portal_scopes", "must be a non-empty list of JupyterHub scopes", "e.g. [delete:servers]",
                value=scopes)


def _check_limits_and_files(hub):
    limits = hub.value("jupyterhub_limit_range")
    if isinstance(limits, dict):
        for key in ("default_cpu", "default_request_cpu"):
            if cpu_error(limits.get(key)) or not CPU_QUANTITY_RE.match(str(limits.get(key))):
                hub.add("jupyterhub_limit_range", "invalid CPU quantity", CPU_EXAMPLE,
                        value=limits.get(key, MISSING), path="." + key)
        for key in ("default_memory", "default_request_memory"):
            if memory_error(limits.get(key)) or not MEMORY_QUANTITY_RE.match(str(limits.get(key))):
                hub.add("jupyterhub_limit_range", "invalid memory quantity", MEMORY_EXAMPLE,
                        value=limits.get(key, MISSING), path="." + key)
    branding = hub.value("jupyterhub_branding_dir")
    if is_str(branding):
        missing = [f for f in ("logo.svg", "branding.yml", "templates/page.html")
                   if not os.path.isfile(os.path.join(branding, f))]
        if missing:
            hub.add("jupyterhub_branding_dir", "has no " + ", ".join(missing),
                    "a copy of files/branding with logo.svg, branding.yml, templates/page.html", value=branding)
    render = hub.value("jupyterhub_render_dir")
    if render and not (is_str(render) and render.startswith("/")):
        hub.add("jupyterhub_render_dir", "is not an absolute directory on the controller", "e.g. /tmp/labhub-render",
                value=render)
    if not render and not hub.value("jupyterhub_bundle_dir"):
        hub.add("jupyterhub_bundle_dir", "is required to install: the offline bundle holds the chart archive",
                "the bundle directory on the controller", value=hub.value("jupyterhub_bundle_dir"))


# --------------------------------------------------------------------------------------
# The hub package's own validator on the configuration the role ships
# --------------------------------------------------------------------------------------
_PROFILE_KEY_BACK = dict((v, k) for k, v in _hub_config.PROFILE_KEY_MAP.items())
_MODE_VAR_KEYS = {"client_id": "client_id", "tenant_id": "tenant_id", "domain": "domain", "issuer": "issuer_url",
                  "cookie_name": "cookie_name", "whoami_url": "whoami_url", "login_url": "login_url",
                  "client_secret": "client_secret"}
_SPAWN_VARS = {"session": "jupyterhub_session", "shm": "jupyterhub_shm", "dynamic": "jupyterhub_dynamic_profile",
               "cpu_only_env": "jupyterhub_cpu_only_env", "teams": "jupyterhub_teams",
               "default_profiles": "jupyterhub_default_profiles", "admin_all_profiles": "jupyterhub_admin_all_profiles",
               "default_image": "jupyterhub_singleuser_image"}
_KEY_TOKEN_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _tokens(key):
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _KEY_TOKEN_RE.finditer(key)]


def _path(tokens):
    return "".join("[%d]" % t if isinstance(t, int) else ".%s" % t for t in tokens)


def map_config_key(key, profiles):
    """(role variable, path) for a labhub_hub ConfigError key; the variable named as in the inventory."""
    tokens = _tokens(key)
    head = tokens[0] if tokens else "(root)"
    if head in ("(root)", "test_mode"):
        return "jupyterhub_test_inventory", ""
    if head == "culling":
        return "jupyterhub_culling", _path(tokens[1:])
    if head == "auth":
        rest = tokens[1:]
        if not rest or rest[0] == "modes":
            return "jupyterhub_auth_modes", ""
        if rest[0] == "admin_users":
            return "jupyterhub_admin_users", _path(rest[1:])
        if rest[0] == "public_url":
            return "jupyterhub_public_url", ""
        mode = rest[0]
        if mode == "local_groups" and len(rest) > 1 and rest[1] == "groups":
            return "jupyterhub_local_groups", _path(rest[2:])
        if mode == "native" and len(rest) > 1 and rest[1] == "allowed_users_csv":
            return "jupyterhub_native_users_csv_file", ""
        if len(rest) > 1 and rest[1] in _MODE_VAR_KEYS and mode in MODE_REQUIRED:
            var = "jupyterhub_%s_%s" % (mode, _MODE_VAR_KEYS[rest[1]])
            if any(var == pair[0] for pair in MODE_REQUIRED[mode]):
                return var, ""
        return "jupyterhub_auth_settings", _path(rest)
    if head == "spawn":
        rest = tokens[1:]
        if not rest:
            return "jupyterhub_profiles", ""
        if rest[0] == "gpu":
            return ("jupyterhub_gpu_resource_name", "") if rest[1:2] == ["resource_name"] else \
                ("jupyterhub_gpu_enabled", "")
        if rest[0] == "profiles":
            if len(rest) < 2 or not isinstance(rest[1], int):
                return "jupyterhub_profiles", ""
            index = rest[1]
            profile = profiles[index] if is_list(profiles) and index < len(profiles) else None
            sub = [_PROFILE_KEY_BACK.get(t, t) if isinstance(t, str) and i == 0 else t for i, t in enumerate(rest[2:])]
            return "jupyterhub_profiles", "[%s]%s" % (_profile_label(profile, index), _path(sub))
        if rest[0] == "teams" and len(rest) > 1:
            return "jupyterhub_teams", ".%s" % rest[1]
        if rest[0] == "default_profiles":
            return "jupyterhub_default_profiles", ""
        if rest[0] in _SPAWN_VARS:
            return _SPAWN_VARS[rest[0]], _path(rest[1:])
    return "jupyterhub_auth_settings", _path(tokens)


def _lookup(data, tokens):
    for token in tokens:
        try:
            data = data[token]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return data


def _check_with_hub_package(hub):
    if hub.value("jupyterhub_validate_with_package") is False:
        return
    values = dict((name, hub.value(name)) for name in _hub_config.HUB_CONFIG_VARS)
    try:
        data = _hub_config.build_hub_config(values)
    except Exception as exc:  # pylint: disable=broad-except
        hub.add("jupyterhub_auth_modes", "the hub configuration cannot be built: %s: %s" % (type(exc).__name__, exc),
                "the variables above fixed")
        return
    try:
        config = _hub_config.hub_package_config()
    except ImportError as exc:
        hub.add("jupyterhub_validate_with_package", "cannot check the hub configuration with the hub package: %s" % exc,
                "the collection's files/hub/labhub_hub (a full checkout or build of labhub.platform), or "
                "jupyterhub_validate_with_package: false", value=True)
        return
    profiles = hub.value("jupyterhub_profiles")
    modes = hub.value("jupyterhub_auth_modes")
    # a listed mode the hub does not know is already a row of jupyterhub_auth_modes; the hub
    # package's errors about its (empty) section would name a variable the inventory never set
    unknown_modes = set(m for m in modes if is_str(m) and m not in KNOWN_MODES) if is_list(modes) else set()
    # a GPU switch that is not a boolean (e.g. -e gpu_operator_enabled=false, a string) is a row of
    # its own; what the hub makes of it (spawn.gpu.enabled) is not another row on the profiles
    gpu_switch = hub.value("jupyterhub_gpu_enabled")
    gpu_switch_bad = gpu_switch is not None and not is_bool(gpu_switch)
    for error in config.collect_errors(data):
        key = getattr(error, "key", "(root)")
        tokens = _tokens(key)
        if len(tokens) > 1 and tokens[0] == "auth" and tokens[1] in unknown_modes:
            continue
        if gpu_switch_bad and (key.startswith("spawn.gpu") or "spawn.gpu.enabled" in str(error)
                               or (key.startswith("spawn.profiles") and tokens[-1:] == ["gpu"])):
            continue
        var, path = map_config_key(key, profiles)
        shown = hub.name(var) + path
        if any(shown == r or shown.startswith(r + ".") or shown.startswith(r + "[") or r.startswith(shown + ".")
               or r.startswith(shown + "[") for r in hub.reported):
            continue  # already a row of the checks above
        message = str(error)
        if message.startswith(key + ": "):
            message = message[len(key) + 2:]
        value = _lookup(data, _tokens(key))
        secret = key.endswith(("client_secret", "password_hash")) or None
        hub.add(var, "%s (hub configuration key %s)" % (message, key), _expected_for(key), value=value,
                secret=secret, path=path)


def _expected_for(key):
    last = _tokens(key)[-1] if _tokens(key) else ""
    if last in ("cpu_limit", "cpu_guarantee", "max_cpu", "cpu"):
        return CPU_EXAMPLE
    if last in ("mem_limit", "mem_guarantee", "shm_size", "max_memory", "memory", "size_limit"):
        return MEMORY_EXAMPLE
    if last in ("allowed_groups", "allowed_organizations"):
        return "allowed_groups/allowed_organizations and/or allowed_users in jupyterhub_auth_settings"
    if key.startswith("spawn.teams") or key.startswith("spawn.default_profiles"):
        return "names of jupyterhub_profiles (or the dynamic profile's slug)"
    return "a value the hub package accepts (files/hub/README.md, key %s)" % key
