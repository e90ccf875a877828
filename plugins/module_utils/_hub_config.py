# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The hub configuration (files/hub/README.md) built from the jupyterhub role's variables.

One function, :func:`build_hub_config`, used twice: by the role (filter
``labhub.platform.hub_config`` in roles/jupyterhub/tasks/build.yml, the data that goes into the
hub's ConfigMap) and by the validation phase (``_checks_hub``), which hands the same data to the
hub package's own validator (``labhub_hub.config.collect_errors``). So what is checked is
exactly what is shipped.

Plain data only: secrets appear as ``{env: VARIABLE}`` references that the hub pod resolves
from the Kubernetes Secret the role writes.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible.module_utils.parsing.convert_bool import boolean

# Role variables build_hub_config reads (roles/jupyterhub/tasks/build.yml passes each of them).
HUB_CONFIG_VARS = (
    "jupyterhub_test_inventory",
    "jupyterhub_auth_modes",
    "jupyterhub_admin_users",
    "jupyterhub_public_url",
    "jupyterhub_auth_settings",
    "jupyterhub_native_users_csv_file",
    "jupyterhub_hub_native_csv_path",
    "jupyterhub_github_client_id",
    "jupyterhub_azuread_tenant_id",
    "jupyterhub_azuread_client_id",
    "jupyterhub_auth0_domain",
    "jupyterhub_auth0_client_id",
    "jupyterhub_oidc_issuer_url",
    "jupyterhub_oidc_client_id",
    "jupyterhub_cookie_sso_cookie_name",
    "jupyterhub_cookie_sso_whoami_url",
    "jupyterhub_cookie_sso_login_url",
    "jupyterhub_local_groups",
    "jupyterhub_singleuser_image",
    "jupyterhub_gpu_enabled",
    "jupyterhub_gpu_resource_name",
    "jupyterhub_profiles",
    "jupyterhub_teams",
    "jupyterhub_default_profiles",
    "jupyterhub_admin_all_profiles",
    "jupyterhub_session",
    "jupyterhub_shm",
    "jupyterhub_dynamic_profile",
    "jupyterhub_cpu_only_env",
    "jupyterhub_culling",
)

NATIVE_CSV_PATH = "/usr/local/etc/jupyterhub/labhub/native-users.csv"
OAUTH_MODES = ("github", "azuread", "auth0", "oidc")

# jupyterhub_profiles keys -> the hub package's profile keys (the others are passed unchanged).
PROFILE_KEY_MAP = {"name": "slug", "cpu": "cpu_limit", "memory": "mem_limit", "gpus": "gpu"}
PROFILE_PASSTHROUGH = ("description", "image", "cpu_guarantee", "mem_guarantee", "node_selector", "tolerations",
                       "max_session_hours", "shm_size", "default")


def secret_env(mode):
    """Environment variable of the hub pod holding a login mode's client secret."""
    return "LABHUB_%s_CLIENT_SECRET" % mode.upper()


def local_group_env(index):
    """Environment variable of the hub pod holding the password hash of the index-th group (sorted)."""
    return "LABHUB_LOCAL_GROUP_%d_PASSWORD_HASH" % index


def _bool(value, default=False):
    if value is None or value == "":
        return default
    try:
        return boolean(value, strict=False)
    except TypeError:
        return value


def _dict(value):
    return value if isinstance(value, dict) else {}


def hub_profile(profile):
    """One jupyterhub_profiles entry in the hub package's terms (unknown keys are left out)."""
    if not isinstance(profile, dict):
        return profile
    name = profile.get("name")
    out = {"slug": name, "display_name": profile.get("display_name", name), "gpu": profile.get("gpus", 0)}
    if out["gpu"] is None:
        out["gpu"] = 0
    if profile.get("cpu") is not None:
        out["cpu_limit"] = profile["cpu"]
    if profile.get("memory") is not None:
        out["mem_limit"] = profile["memory"]
    for key in PROFILE_PASSTHROUGH:
        if key in profile:
            out[key] = profile[key]
    return out


def local_groups_config(groups):
    """{group: {members, admin, password_hash: {env}}}, the hashes themselves go into the Secret."""
    out = {}
    for index, name in enumerate(sorted(_dict(groups), key=str)):
        group = groups[name]
        if not isinstance(group, dict):
            out[name] = group
            continue
        out[name] = {"members": group.get("members"), "admin": _bool(group.get("admin"), False),
                     "password_hash": {"env": local_group_env(index)}}
    return out


def build_hub_config(values):
    """The hub configuration from the role's variables (a mapping name -> resolved value)."""
    get = values.get
    modes = get("jupyterhub_auth_modes")
    modes = list(modes) if isinstance(modes, (list, tuple)) else []
    settings = _dict(get("jupyterhub_auth_settings"))
    extra = {
        "native": ({"allowed_users_csv": get("jupyterhub_hub_native_csv_path") or NATIVE_CSV_PATH}
                   if get("jupyterhub_native_users_csv_file") else {}),
        "github": {"client_id": get("jupyterhub_github_client_id")},
        "azuread": {"tenant_id": get("jupyterhub_azuread_tenant_id"), "client_id": get("jupyterhub_azuread_client_id")},
        "auth0": {"domain": get("jupyterhub_auth0_domain"), "client_id": get("jupyterhub_auth0_client_id")},
        "oidc": {"issuer": get("jupyterhub_oidc_issuer_url"), "client_id": get("jupyterhub_oidc_client_id")},
        "cookie_sso": {"cookie_name": get("jupyterhub_cookie_sso_cookie_name"),
                       "whoami_url": get("jupyterhub_cookie_sso_whoami_url"),
                       "login_url": get("jupyterhub_cookie_sso_login_url")},
        "local_groups": {"groups": local_groups_config(get("jupyterhub_local_groups"))},
        "dummy": {},
    }
    for mode in OAUTH_MODES:
        extra[mode]["client_secret"] = {"env": secret_env(mode)}
    auth = {"modes": modes, "admin_users": get("jupyterhub_admin_users") or [],
            "public_url": get("jupyterhub_public_url") or ""}
    for mode in modes:
        if not isinstance(mode, str) or mode in ("modes", "admin_users", "public_url"):
            continue
        section = settings.get(mode) or {}
        section = dict(section) if isinstance(section, dict) else section
        if isinstance(section, dict):
            section.update(extra.get(mode, {}))
        auth[mode] = section
    profiles = get("jupyterhub_profiles")
    spawn = {
        "default_image": get("jupyterhub_singleuser_image"),
        "gpu": {"enabled": _bool(get("jupyterhub_gpu_enabled"), False),
                "resource_name": get("jupyterhub_gpu_resource_name") or "nvidia.com/gpu"},
        "profiles": [hub_profile(p) for p in profiles] if isinstance(profiles, (list, tuple)) else profiles,
        "teams": get("jupyterhub_teams") if get("jupyterhub_teams") is not None else {},
        "admin_all_profiles": _bool(get("jupyterhub_admin_all_profiles"), True),
    }
    if get("jupyterhub_default_profiles") is not None:
        spawn["default_profiles"] = get("jupyterhub_default_profiles")
    for key, var in (("session", "jupyterhub_session"), ("shm", "jupyterhub_shm"),
                     ("dynamic", "jupyterhub_dynamic_profile"), ("cpu_only_env", "jupyterhub_cpu_only_env")):
        if get(var):
            spawn[key] = get(var)
    culling = get("jupyterhub_culling")
    return {
        "test_mode": _bool(get("jupyterhub_test_inventory"), False),
        "auth": auth,
        "spawn": spawn,
        "culling": culling if culling is not None else {},
    }


# --------------------------------------------------------------------------------------
# The hub package itself (files/hub/labhub_hub), imported lazily from the collection root
# --------------------------------------------------------------------------------------
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUB_PACKAGE_PARENT = os.path.join(COLLECTION_ROOT, "files", "hub")


def hub_package_config(parent=None):
    """The ``labhub_hub.config`` module, or raise ImportError naming what is missing.

    Imported on first use only: copies of the collection without files/hub (ansible-test
    sanity) must still import this module.
    """
    parent = parent or HUB_PACKAGE_PARENT
    if not os.path.isfile(os.path.join(parent, "labhub_hub", "config.py")):
        raise ImportError("the hub package is missing: no %s" % os.path.join(parent, "labhub_hub", "config.py"))
    if parent not in sys.path:
        sys.path.insert(0, parent)
    from labhub_hub import config  # pylint: disable=import-error

    if not hasattr(config, "collect_errors"):
        raise ImportError("labhub_hub.config at %s has no collect_errors (an older hub package)" % config.__file__)
    return config
