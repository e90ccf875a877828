# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The portal's PORTAL_* settings, built from the portal role's variables, in ONE place.

Role ``portal`` writes its env file (templates/portal.env.j2) with the filter
``labhub.platform.portal_settings`` (plugins/filter/portal.py), and the validation phase
(``_checks_portal.py``) checks the very same settings with the portal's own pydantic model
(``portal/src/labhub_portal/config.py`` ``Settings``): the two cannot drift apart.

``INPUTS`` are the role variables the settings are built from; ``SOURCES`` maps each setting
the role writes back to the variable it comes from (for problem rows). The portal's config
module is loaded by file path (never the ``labhub_portal`` package, whose ``__init__`` and
siblings may need FastAPI); it needs pydantic and pydantic-settings on the controller.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import re
import sys

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported on the controller
    from urllib import quote  # type: ignore

from ansible.module_utils.parsing.convert_bool import boolean

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_PATH = os.path.join(COLLECTION_ROOT, "portal", "src", "labhub_portal", "config.py")

# Secrets of the role: must be set (no default), strong, of safe characters, all different.
SECRETS = ("portal_database_password", "portal_token", "portal_hub_api_token", "portal_cookie_secret")
SECRET_MIN_LENGTH = 16
# The hub service token is shared with role jupyterhub, which requires 32 characters (as does the portal).
HUB_TOKEN_MIN_LENGTH = 32
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
# Refused for any secret (compared case-insensitively).
WEAK_SECRETS = frozenset((
    "changeme", "change-me", "change_me", "changeit", "password", "passw0rd", "secret", "token", "admin",
    "default", "example", "labhub", "labhub-portal", "labhub_portal", "portal", "jupyter", "jupyterhub",
    "postgres", "0123456789abcdef", "00000000000000000000000000000000",
))

# PORTAL_<name> -> the role variable it comes from (DATABASE_URL from several: named by its host).
SOURCES = {
    "ADMIN_GROUP": "portal_admin_group",
    "ALLOWED_HOSTS": "portal_allowed_hosts",
    "BASE_URL": "portal_public_url",
    "BIND_HOST": "portal_bind_host",
    "BIND_PORT": "portal_bind_port",
    "COOKIE_SECRET": "portal_cookie_secret",
    "COOKIE_SECURE": "portal_cookie_secure",
    "DATABASE_URL": "portal_database_host",
    "GPU_IDLE_AFTER": "portal_gpu_idle_after",
    "GPU_IDLE_CHECK_INTERVAL": "portal_gpu_idle_check_interval",
    "GPU_IDLE_STOP": "portal_gpu_idle_stop",
    "GPU_IDLE_STOP_GRACE": "portal_gpu_idle_stop_grace",
    "GPU_IDLE_THRESHOLD": "portal_gpu_idle_threshold",
    "HUB_API_TOKEN": "portal_hub_api_token",
    "HUB_API_URL": "portal_hub_api_url",
    "HUB_NAMESPACE": "portal_hub_namespace",
    "HUB_PUBLIC_URL": "portal_hub_public_url",
    "KUBECONFIG": "portal_kubeconfig_path",
    "LOG_LEVEL": "portal_log_level",
    "MYSQL_TABLE": "portal_mysql_table",
    "MYSQL_URL": "portal_mysql_url",
    "OAUTH_CLIENT_ID": "portal_oauth_client_id",
    "PROMETHEUS_URL": "portal_prometheus_url",
    "RECORD_INTERVAL": "portal_record_interval",
    "REPORT_SYNC_INTERVAL": "portal_report_sync_interval",
    "TIMEZONE": "portal_timezone",
    "TOKEN": "portal_token",
}
# Switches written as true/false (with the role's default); a non-boolean is the argument spec check's row.
BOOLEANS = {"COOKIE_SECURE": True, "GPU_IDLE_STOP": False}
DATABASE_INPUTS = ("portal_database_user", "portal_database_password", "portal_database_host",
                   "portal_database_port", "portal_database_name", "portal_database_options")
# Every role variable the settings are built from.
INPUTS = tuple(sorted(set(SOURCES.values()) | set(DATABASE_INPUTS) | {"portal_extra_settings"}))
# Names portal_extra_settings may not set: the role writes them, or they change how the file is read.
MANAGED = frozenset(SOURCES) | frozenset(("DEMO", "ENV_FILE", "KUBE_IN_CLUSTER"))
EXTRA_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Characters that cannot be written between the single quotes of the env file.
UNSAFE_VALUE_RE = re.compile(r"['\\\n\r]")


def _text(value):
    """A value as the env file holds it (None is empty, booleans as Python/Jinja print them)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def database_url(user, password, host, port, name, options=None):
    """The asyncpg DSN of the portal's database (password URL-encoded, IPv6 host in brackets)."""
    host = _text(host)
    netloc_host = "[%s]" % host if ":" in host else host
    url = "postgresql+asyncpg://%s:%s@%s:%s/%s" % (_text(user), quote(_text(password), safe=""), netloc_host,
                                                   _text(port), _text(name))
    if options:
        url += "?" + "&".join("%s=%s" % (_text(k), _text(v)) for k, v in options.items())
    return url


def build(values, kubeconfig_present=True):
    """PORTAL_* name (without the prefix) -> text, for every non-empty setting the role writes.

    ``values`` maps the role variables of ``INPUTS`` to their (templated) values; a missing
    one counts as empty. ``kubeconfig_present``: the portal's kubeconfig exists on the node
    (KUBECONFIG is written only then).
    """
    def get(name, default=""):
        value = values.get(name, default)
        return default if value is None else value

    options = get("portal_database_options", {})
    settings = {}
    for name, var in SOURCES.items():
        if name == "DATABASE_URL":
            settings[name] = database_url(get("portal_database_user"), get("portal_database_password"),
                                          get("portal_database_host"), get("portal_database_port"),
                                          get("portal_database_name"), options if isinstance(options, dict) else {})
        elif name == "KUBECONFIG":
            settings[name] = _text(get(var)) if kubeconfig_present else ""
        elif name == "ALLOWED_HOSTS":
            hosts = get(var, [])
            settings[name] = ",".join(_text(h) for h in hosts) if isinstance(hosts, (list, tuple)) else _text(hosts)
        elif name in BOOLEANS:
            settings[name] = "true" if boolean(get(var, BOOLEANS[name]), strict=False) else "false"
        else:
            settings[name] = _text(get(var))
    extra = get("portal_extra_settings", {})
    if isinstance(extra, dict):
        for key, value in extra.items():
            settings[str(key)] = _text(value)
    return {k: v for k, v in sorted(settings.items()) if v != ""}


def source(name):
    """The role variable a PORTAL_<name> setting comes from."""
    name = str(name).upper()
    if name in SOURCES:
        return SOURCES[name]
    return "portal_extra_settings.%s" % name


# --------------------------------------------------------------------------------------
# The portal's own Settings model
# --------------------------------------------------------------------------------------
class ModelUnavailable(Exception):
    """The portal's Settings model cannot be loaded on the controller (message says why)."""


_MODULE = {}  # type: dict
_MODULE_NAME = "_labhub_platform_portal_config"


def load_config_module(path=CONFIG_PATH):
    """labhub_portal/config.py loaded by file path (cached); raises ModelUnavailable."""
    if path in _MODULE:
        return _MODULE[path]
    if not os.path.isfile(path):
        raise ModelUnavailable("the portal's settings model %s is missing from the collection" % path)
    try:
        import pydantic  # noqa: F401  pylint: disable=unused-import
        import pydantic_settings  # noqa: F401  pylint: disable=unused-import
    except ImportError as exc:
        raise ModelUnavailable("the controller's Python (%s) lacks %s: install pydantic and pydantic-settings "
                               "(pip install -r tests/requirements.in -c tests/constraints.txt)"
                               % (sys.executable, getattr(exc, "name", None) or exc))
    # The module reads PORTAL_ENV_FILE at import time to pick its default env file: hide it.
    saved = os.environ.pop("PORTAL_ENV_FILE", None)
    try:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  pylint: disable=broad-except
        sys.modules.pop(_MODULE_NAME, None)
        raise ModelUnavailable("the portal's settings model %s cannot be loaded: %s: %s"
                               % (path, type(exc).__name__, " ".join(str(exc).split())[:200]))
    finally:
        if saved is not None:
            os.environ["PORTAL_ENV_FILE"] = saved
    _MODULE[path] = module
    return module


_ISOLATED = {}  # type: dict


def _isolated(settings_cls):
    """Settings reading only its keyword arguments: no env file, no PORTAL_* of the controller."""
    if settings_cls not in _ISOLATED:
        class IsolatedSettings(settings_cls):  # pylint: disable=too-few-public-methods
            @classmethod
            def settings_customise_sources(cls, settings_class, init_settings, *args, **kwargs):
                return (init_settings,)

        # config.py uses postponed annotations: resolve them in its own namespace.
        IsolatedSettings.model_rebuild(_types_namespace=dict(vars(sys.modules[settings_cls.__module__])))
        _ISOLATED[settings_cls] = IsolatedSettings
    return _ISOLATED[settings_cls]


def model_fields(path=CONFIG_PATH):
    """Names of the portal's settings (lower case), or raises ModelUnavailable."""
    return set(load_config_module(path).Settings.model_fields)


def model_errors(settings, path=CONFIG_PATH):
    """Validate built settings (``build``) with the portal's Settings; return [(setting, message)].

    ``setting`` is the PORTAL_ name without prefix (upper case), or "" when the model does not
    say which one. Messages never carry the input value. Raises ModelUnavailable.
    """
    module = load_config_module(path)
    known = set(module.Settings.model_fields)
    kwargs = {name.lower(): value for name, value in settings.items() if name.lower() in known}
    from pydantic import ValidationError  # pylint: disable=import-outside-toplevel

    try:
        _isolated(module.Settings)(_env_file=None, **kwargs)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = [str(part) for part in error.get("loc") or ()]
            message = str(error.get("msg") or "invalid")
            message = message.removeprefix("Value error, ")
            field = loc[0] if loc else ""
            if not field:
                match = re.match(r"^([a-z_]+): (.*)$", message)
                if match and match.group(1) in known:
                    field, message = match.group(1), match.group(2)
            errors.append((field.upper(), message))
        return errors
    return []
