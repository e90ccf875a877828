"""Validation of Labhub's hub configuration (plain data -> normalised dict).

The configuration is plain data (what the ``jupyterhub`` role renders as YAML into
the hub pod).  Every error raised here is a :class:`ConfigError` whose message
starts with the dotted path of the offending key, e.g.
``auth.github.client_secret: required for login mode 'github'``.

Secrets never appear in the data: secret fields take a reference
``{"env": "VAR"}`` or ``{"file": "/path"}`` that is resolved inside the hub pod
(where Kubernetes Secrets are exposed as environment variables or files).
"""

import copy
import csv
import os
import re

from .passwords import is_supported_hash

LOGIN_MODES = (
    "native",
    "github",
    "azuread",
    "auth0",
    "oidc",
    "cookie_sso",
    "local_groups",
    "dummy",
)
OAUTH_MODES = ("github", "azuread", "auth0", "oidc")
PASSWORD_MODES = ("native", "local_groups", "dummy")

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class ConfigError(ValueError):
    """A configuration error naming the offending key."""

    def __init__(self, key, message):
        self.key = key
        super().__init__(f"{key}: {message}")


def _attempt(errors, func, *args, fallback=None):
    """Run one independent part of the validation.

    ``errors`` None (what :func:`validate` does by default): the first ConfigError
    propagates.  ``errors`` a list (:func:`collect_errors`): the error is recorded and
    ``fallback`` returned, so the next section, mode, profile or team is still checked.
    """
    if errors is None:
        return func(*args)
    try:
        return func(*args)
    except ConfigError as exc:
        errors.append(exc)
        return fallback


# --------------------------------------------------------------------------
# Kubernetes quantities
# --------------------------------------------------------------------------
_CPU_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_MEM_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$")
_MEM_FACTORS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_cpu(value, key):
    """Return CPU cores (float) from 2, 0.5, "500m", "2"."""
    if isinstance(value, bool):
        raise ConfigError(key, f"invalid CPU quantity {value!r}")
    if isinstance(value, (int, float)):
        cores = float(value)
    elif isinstance(value, str):
        match = _CPU_RE.match(value.strip())
        if not match:
            raise ConfigError(
                key, f"invalid CPU quantity {value!r} (examples: 2, 0.5, '500m')"
            )
        cores = float(match.group(1)) / (1000 if match.group(2) else 1)
    else:
        raise ConfigError(key, f"invalid CPU quantity {value!r}")
    if cores <= 0:
        raise ConfigError(key, f"CPU quantity must be positive, got {value!r}")
    return cores


def parse_memory(value, key):
    """Return bytes (int) from "4Gi", "512Mi", "1G" or an integer byte count."""
    if isinstance(value, bool):
        raise ConfigError(key, f"invalid memory quantity {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _MEM_RE.match(value.strip())
        if not match:
            raise ConfigError(
                key,
                f"invalid memory quantity {value!r} (examples: '4Gi', '512Mi', '8G')",
            )
        size = int(float(match.group(1)) * _MEM_FACTORS[match.group(2)])
    else:
        raise ConfigError(key, f"invalid memory quantity {value!r}")
    if size <= 0:
        raise ConfigError(key, f"memory quantity must be positive, got {value!r}")
    return size


def format_memory(size):
    """Bytes -> the shortest exact binary-suffixed Kubernetes quantity."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = _MEM_FACTORS[suffix]
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


# --------------------------------------------------------------------------
# small typed getters
# --------------------------------------------------------------------------
_MISSING = object()


def _get(section, name, key, types, default=_MISSING):
    if name not in section or section[name] is None:
        if default is _MISSING:
            raise ConfigError(f"{key}.{name}", "required")
        return copy.deepcopy(default)
    value = section[name]
    if types is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}.{name}", f"must be true or false, got {value!r}")
    elif types is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}.{name}", f"must be an integer, got {value!r}")
    elif types is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}.{name}", f"must be a number, got {value!r}")
        value = float(value)
    elif types is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}.{name}", f"must be a string, got {value!r}")
    elif types is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}.{name}", f"must be a list, got {value!r}")
    elif types is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}.{name}", f"must be a mapping, got {value!r}")
    return value


def _str_list(section, name, key, default=()):
    values = _get(section, name, key, list, list(default))
    for i, item in enumerate(values):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key}.{name}[{i}]", f"must be a non-empty string, got {item!r}")
    return values


def _reject_unknown(section, allowed, key):
    for name in section:
        if name not in allowed:
            raise ConfigError(
                f"{key}.{name}",
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
            )


# --------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------
def _secret_ref(section, name, key, required=True, why=""):
    full = f"{key}.{name}"
    if name not in section or section[name] in (None, ""):
        if required:
            raise ConfigError(full, f"required{why}")
        return None
    ref = section[name]
    if isinstance(ref, str):
        raise ConfigError(
            full,
            "secrets must be given as {env: VARIABLE} or {file: PATH} "
            "(from a Kubernetes Secret), never inline in the configuration",
        )
    if (
        not isinstance(ref, dict)
        or len(ref) != 1
        or next(iter(ref)) not in ("env", "file")
        or not isinstance(next(iter(ref.values())), str)
        or not next(iter(ref.values()))
    ):
        raise ConfigError(full, f"must be {{env: VARIABLE}} or {{file: PATH}}, got {ref!r}")
    return dict(ref)


def resolve_secret(ref, key):
    """Read a secret reference inside the hub pod; errors name the key."""
    if ref is None:
        return None
    if "env" in ref:
        value = os.environ.get(ref["env"])
        if not value:
            raise ConfigError(key, f"environment variable {ref['env']} is not set or empty")
        return value
    try:
        with open(ref["file"], encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read secret file {ref['file']}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(key, f"secret file {ref['file']} is empty")
    return value


# --------------------------------------------------------------------------
# auth
# --------------------------------------------------------------------------
_COMMON_MODE_KEYS = {"button_text", "username_prefix", "admin_users"}


def _oauth_common(section, key, mode):
    out = {
        "client_id": _get(section, "client_id", key, str),
        "client_secret": _secret_ref(
            section, "client_secret", key, why=f" for login mode '{mode}'"
        ),
        "oauth_callback_url": _get(section, "oauth_callback_url", key, str, ""),
        "allowed_users": _str_list(section, "allowed_users", key),
        "admin_users": _str_list(section, "admin_users", key),
        "scope": _str_list(section, "scope", key, []),
        "tls_verify": _get(section, "tls_verify", key, bool, True),
        "http_timeout_seconds": _get(section, "http_timeout_seconds", key, float, 10.0),
        "logout_redirect_url": _get(section, "logout_redirect_url", key, str, ""),
    }
    if not out["client_id"]:
        raise ConfigError(f"{key}.client_id", f"required for login mode '{mode}'")
    return out


_OAUTH_COMMON_KEYS = {
    "client_id",
    "client_secret",
    "oauth_callback_url",
    "allowed_users",
    "admin_users",
    "scope",
    "tls_verify",
    "http_timeout_seconds",
    "logout_redirect_url",
}


def _mode_native(section, key, test_mode):
    _reject_unknown(
        section,
        _COMMON_MODE_KEYS
        | {"allowed_users_csv", "minimum_password_length", "enable_signup", "check_common_password"},
        key,
    )
    out = {
        "allowed_users_csv": _get(section, "allowed_users_csv", key, str, ""),
        "minimum_password_length": _get(section, "minimum_password_length", key, int, 10),
        "enable_signup": _get(section, "enable_signup", key, bool, True),
        "check_common_password": _get(section, "check_common_password", key, bool, True),
        "admin_users": _str_list(section, "admin_users", key),
    }
    if out["minimum_password_length"] < 1:
        raise ConfigError(f"{key}.minimum_password_length", "must be at least 1")
    return out


def read_users_csv(path, key):
    """CSV columns: username (required), admin (true/false), groups (';'-separated)."""
    users = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "username" not in reader.fieldnames:
                raise ConfigError(key, f"{path}: header must contain a 'username' column")
            for lineno, row in enumerate(reader, start=2):
                name = (row.get("username") or "").strip()
                if not name:
                    raise ConfigError(key, f"{path}:{lineno}: empty username")
                admin = (row.get("admin") or "").strip().lower() in ("1", "true", "yes")
                groups = [g.strip() for g in (row.get("groups") or "").split(";") if g.strip()]
                users[name] = {"admin": admin, "groups": groups}
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from exc
    return users


def _mode_github(section, key, test_mode):
    _reject_unknown(
        section,
        _COMMON_MODE_KEYS
        | _OAUTH_COMMON_KEYS
        | {"allowed_organizations", "github_url", "teams_as_groups"},
        key,
    )
    out = _oauth_common(section, key, "github")
    out.update(
        {
            "allowed_organizations": _str_list(section, "allowed_organizations", key),
            "github_url": _get(section, "github_url", key, str, "https://github.com").rstrip("/"),
            "teams_as_groups": _get(section, "teams_as_groups", key, bool, True),
        }
    )
    if not (out["allowed_users"] or out["allowed_organizations"]):
        raise ConfigError(
            f"{key}.allowed_organizations",
            "set allowed_organizations (org or org:team) and/or allowed_users; "
            "an unrestricted GitHub login would admit every GitHub account",
        )
    return out


def _mode_azuread(section, key, test_mode):
    _reject_unknown(
        section,
        _COMMON_MODE_KEYS
        | _OAUTH_COMMON_KEYS
        | {"tenant_id", "allowed_tenants", "username_claim", "groups_claim", "allowed_groups", "admin_groups"},
        key,
    )
    out = _oauth_common(section, key, "azuread")
    out.update(
        {
            "tenant_id": _get(section, "tenant_id", key, str),
            "allowed_tenants": _str_list(section, "allowed_tenants", key),
            "username_claim": _get(section, "username_claim", key, str, "preferred_username"),
            "groups_claim": _get(section, "groups_claim", key, str, ""),
            "allowed_groups": _str_list(section, "allowed_groups", key),
            "admin_groups": _str_list(section, "admin_groups", key),
        }
    )
    if not out["tenant_id"]:
        raise ConfigError(f"{key}.tenant_id", "required for login mode 'azuread'")
    _require_allow(out, key)
    return out


def _mode_auth0(section, key, test_mode):
    _reject_unknown(
        section,
        _COMMON_MODE_KEYS
        | _OAUTH_COMMON_KEYS
        | {"domain", "username_claim", "groups_claim", "allowed_groups", "admin_groups"},
        key,
    )
    out = _oauth_common(section, key, "auth0")
    out.update(
        {
            "domain": _get(section, "domain", key, str),
            "username_claim": _get(section, "username_claim", key, str, "email"),
            "groups_claim": _get(section, "groups_claim", key, str, ""),
            "allowed_groups": _str_list(section, "allowed_groups", key),
            "admin_groups": _str_list(section, "admin_groups", key),
        }
    )
    if not out["domain"]:
        raise ConfigError(f"{key}.domain", "required for login mode 'auth0'")
    _require_allow(out, key)
    return out


def _mode_oidc(section, key, test_mode):
    _reject_unknown(
        section,
        _COMMON_MODE_KEYS
        | _OAUTH_COMMON_KEYS
        | {
            "issuer",
            "discovery",
            "discovery_timeout_seconds",
            "authorize_url",
            "token_url",
            "userinfo_url",
            "end_session_url",
            "username_claim",
            "groups_claim",
            "allowed_groups",
            "admin_groups",
        },
        key,
    )
    out = _oauth_common(section, key, "oidc")
    out.update(
        {
            "issuer": _get(section, "issuer", key, str, "").rstrip("/"),
            "discovery": _get(section, "discovery", key, bool, True),
            "discovery_timeout_seconds": _get(section, "discovery_timeout_seconds", key, float, 10.0),
            "authorize_url": _get(section, "authorize_url", key, str, ""),
            "token_url": _get(section, "token_url", key, str, ""),
            "userinfo_url": _get(section, "userinfo_url", key, str, ""),
            "end_session_url": _get(section, "end_session_url", key, str, ""),
            "username_claim": _get(section, "username_claim", key, str, "preferred_username"),
            "groups_claim": _get(section, "groups_claim", key, str, "groups"),
            "allowed_groups": _str_list(section, "allowed_groups", key),
            "admin_groups": _str_list(section, "admin_groups", key),
        }
    )
    if not out["scope"]:
        out["scope"] = ["openid", "profile", "email"]
    if out["discovery"]:
        if not out["issuer"]:
            raise ConfigError(f"{key}.issuer", "required when discovery is true")
    else:
        for name in ("authorize_url", "token_url", "userinfo_url"):
            if not out[name]:
                raise ConfigError(f"{key}.{name}", "required when discovery is false")
    _require_allow(out, key)
    return out


def _require_allow(out, key):
    if not (out["allowed_users"] or out.get("allowed_groups") or out.get("allowed_tenants")):
        raise ConfigError(
            f"{key}.allowed_groups",
            "set allowed_groups and/or allowed_users (or allowed_tenants for azuread); "
            "Labhub never admits every account of an identity provider",
        )


def _mode_cookie_sso(section, key, test_mode):
    _reject_unknown(
        section,
        _COMMON_MODE_KEYS
        | {
            "cookie_name",
            "whoami_url",
            "timeout_seconds",
            "login_url",
            "logout_url",
            "username_key",
            "groups_key",
            "admin_key",
            "allowed_users",
            "allowed_groups",
            "tls_verify",
        },
        key,
    )
    out = {
        "cookie_name": _get(section, "cookie_name", key, str),
        "whoami_url": _get(section, "whoami_url", key, str),
        "timeout_seconds": _get(section, "timeout_seconds", key, float, 5.0),
        "login_url": _get(section, "login_url", key, str),
        "logout_url": _get(section, "logout_url", key, str, ""),
        "username_key": _get(section, "username_key", key, str, "username"),
        "groups_key": _get(section, "groups_key", key, str, "groups"),
        "admin_key": _get(section, "admin_key", key, str, ""),
        "allowed_users": _str_list(section, "allowed_users", key),
        "allowed_groups": _str_list(section, "allowed_groups", key),
        "admin_users": _str_list(section, "admin_users", key),
        "tls_verify": _get(section, "tls_verify", key, bool, True),
    }
    for name in ("cookie_name", "whoami_url", "login_url"):
        if not out[name]:
            raise ConfigError(f"{key}.{name}", "required for login mode 'cookie_sso'")
    if not out["whoami_url"].startswith(("http://", "https://")):
        raise ConfigError(f"{key}.whoami_url", f"must be an http(s) URL, got {out['whoami_url']!r}")
    if out["timeout_seconds"] <= 0:
        raise ConfigError(f"{key}.timeout_seconds", "must be positive")
    return out


def _mode_local_groups(section, key, test_mode):
    _reject_unknown(section, _COMMON_MODE_KEYS | {"groups"}, key)
    groups = _get(section, "groups", key, dict)
    if not groups:
        raise ConfigError(f"{key}.groups", "define at least one group")
    out_groups = {}
    for gname, group in groups.items():
        gkey = f"{key}.groups.{gname}"
        if not isinstance(group, dict):
            raise ConfigError(gkey, "must be a mapping")
        _reject_unknown(group, {"password_hash", "members", "admin"}, gkey)
        members = _str_list(group, "members", gkey)
        if not members:
            raise ConfigError(f"{gkey}.members", "list at least one member")
        ref = group.get("password_hash")
        if isinstance(ref, str):
            # a hash may sit in the configuration; a plain password never
            if not is_supported_hash(ref):
                raise ConfigError(
                    f"{gkey}.password_hash",
                    "must be a pbkdf2_sha256$... or bcrypt $2b$... hash "
                    "(make one with `python -m labhub_hub.passwords`), never a plain password",
                )
            hash_ref = {"inline": ref}
        else:
            hash_ref = _secret_ref(group, "password_hash", gkey)
        out_groups[gname] = {
            "password_hash": hash_ref,
            "members": members,
            "admin": _get(group, "admin", gkey, bool, False),
        }
    return {"groups": out_groups, "admin_users": _str_list(section, "admin_users", key)}


def _mode_dummy(section, key, test_mode):
    _reject_unknown(section, _COMMON_MODE_KEYS, key)
    if not test_mode:
        raise ConfigError(
            "auth.modes",
            "login mode 'dummy' accepts any password and is refused unless test_mode is true",
        )
    return {"admin_users": _str_list(section, "admin_users", key)}


_MODE_VALIDATORS = {
    "native": _mode_native,
    "github": _mode_github,
    "azuread": _mode_azuread,
    "auth0": _mode_auth0,
    "oidc": _mode_oidc,
    "cookie_sso": _mode_cookie_sso,
    "local_groups": _mode_local_groups,
    "dummy": _mode_dummy,
}

_DEFAULT_BUTTONS = {
    "native": "Sign in with a Labhub account",
    "github": "Sign in with GitHub",
    "azuread": "Sign in with Microsoft",
    "auth0": "Sign in with Auth0",
    "oidc": "Sign in with single sign-on",
    "cookie_sso": "Sign in with company SSO",
    "local_groups": "Sign in with a group account",
    "dummy": "Test login (any password)",
}


def _validate_mode(auth, i, mode, seen, test_mode):
    if mode not in LOGIN_MODES:
        raise ConfigError(
            f"auth.modes[{i}]",
            f"unknown login mode {mode!r} (known: {', '.join(LOGIN_MODES)})",
        )
    if mode in seen:
        raise ConfigError(f"auth.modes[{i}]", f"login mode {mode!r} listed twice")
    seen.add(mode)
    section = auth.get(mode) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"auth.{mode}", "must be a mapping")
    settings = _MODE_VALIDATORS[mode](section, f"auth.{mode}", test_mode)
    settings["button_text"] = _get(section, "button_text", f"auth.{mode}", str, _DEFAULT_BUTTONS[mode])
    prefix = _get(section, "username_prefix", f"auth.{mode}", str, "")
    if prefix and not re.match(r"^[a-z0-9][a-z0-9._-]*$", prefix):
        raise ConfigError(f"auth.{mode}.username_prefix", f"invalid prefix {prefix!r}")
    settings["username_prefix"] = prefix
    settings["name"] = mode
    return settings


def _validate_auth(auth, test_mode, errors=None):
    if not isinstance(auth, dict):
        raise ConfigError("auth", "must be a mapping")
    _attempt(errors, _reject_unknown, auth, set(LOGIN_MODES) | {"modes", "admin_users", "public_url"}, "auth")
    modes = _get(auth, "modes", "auth", list)
    if not modes:
        raise ConfigError("auth.modes", "enable at least one login mode")
    seen = set()
    out = {
        "modes": [],
        "admin_users": _attempt(errors, _str_list, auth, "admin_users", "auth", fallback=[]),
        "public_url": _attempt(errors, _get, auth, "public_url", "auth", str, "", fallback="").rstrip("/"),
    }
    for i, mode in enumerate(modes):
        settings = _attempt(errors, _validate_mode, auth, i, mode, seen, test_mode)
        if settings is not None:
            out["modes"].append(mode)
            out[mode] = settings
    # a section for a mode not listed in auth.modes is allowed (kept for switching on later)
    return out


# --------------------------------------------------------------------------
# spawn
# --------------------------------------------------------------------------
_PROFILE_KEYS = {
    "slug",
    "display_name",
    "description",
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "gpu",
    "node_selector",
    "tolerations",
    "max_session_hours",
    "default",
    "shm_size",
}


def _validate_profile(profile, key, spawn, gpu_enabled, errors=None):
    if not isinstance(profile, dict):
        raise ConfigError(key, "must be a mapping")
    _reject_unknown(profile, _PROFILE_KEYS, key)
    slug = _get(profile, "slug", key, str)
    if not _NAME_RE.match(slug):
        raise ConfigError(f"{key}.slug", f"must match {_NAME_RE.pattern}, got {slug!r}")
    out = {
        "slug": slug,
        "display_name": _get(profile, "display_name", key, str, slug),
        "description": _get(profile, "description", key, str, ""),
        "image": _get(profile, "image", key, str, spawn["default_image"]),
        "gpu": _get(profile, "gpu", key, int, 0),
        "node_selector": _get(profile, "node_selector", key, dict, {}),
        "tolerations": _get(profile, "tolerations", key, list, []),
        "max_session_hours": _get(profile, "max_session_hours", key, float, spawn["session"]["max_hours"]),
        "default": _get(profile, "default", key, bool, False),
    }
    if not out["image"]:
        raise ConfigError(f"{key}.image", "required (or set spawn.default_image)")
    for res, parser in (
        ("cpu_guarantee", parse_cpu),
        ("cpu_limit", parse_cpu),
        ("mem_guarantee", parse_memory),
        ("mem_limit", parse_memory),
        ("shm_size", parse_memory),
    ):
        out[res] = (
            _attempt(errors, parser, profile[res], f"{key}.{res}") if profile.get(res) is not None else None
        )
    if out["cpu_guarantee"] and out["cpu_limit"] and out["cpu_guarantee"] > out["cpu_limit"]:
        raise ConfigError(f"{key}.cpu_guarantee", "must not exceed cpu_limit")
    if out["mem_guarantee"] and out["mem_limit"] and out["mem_guarantee"] > out["mem_limit"]:
        raise ConfigError(f"{key}.mem_guarantee", "must not exceed mem_limit")
    if out["gpu"] < 0:
        raise ConfigError(f"{key}.gpu", "must be 0 or more")
    if out["gpu"] > 0 and not gpu_enabled:
        raise ConfigError(
            f"{key}.gpu",
            f"profile {slug!r} requests {out['gpu']} GPU(s) but spawn.gpu.enabled is false",
        )
    if out["max_session_hours"] <= 0:
        raise ConfigError(f"{key}.max_session_hours", "must be positive")
    for k, v in out["node_selector"].items():
        if not isinstance(v, str):
            raise ConfigError(f"{key}.node_selector.{k}", "values must be strings")
    for i, tol in enumerate(out["tolerations"]):
        if not isinstance(tol, dict) or "effect" in tol and tol["effect"] not in (
            "NoSchedule",
            "PreferNoSchedule",
            "NoExecute",
        ):
            raise ConfigError(f"{key}.tolerations[{i}]", f"invalid toleration {tol!r}")
    return out


def _validate_dynamic(dyn, spawn, gpu_enabled):
    key = "spawn.dynamic"
    if not isinstance(dyn, dict):
        raise ConfigError(key, "must be a mapping")
    _reject_unknown(
        dyn,
        {
            "enabled",
            "slug",
            "display_name",
            "description",
            "images",
            "capacity_source",
            "nodes",
            "node_label_selector",
            "max_cpu",
            "max_memory",
            "max_gpu",
            "max_session_hours",
            "capacity_timeout_seconds",
        },
        key,
    )
    out = {
        "enabled": _get(dyn, "enabled", key, bool, False),
        "slug": _get(dyn, "slug", key, str, "custom"),
        "display_name": _get(dyn, "display_name", key, str, "Custom resources"),
        "description": _get(dyn, "description", key, str, "Choose image, node, CPU, memory and GPUs"),
        "images": _str_list(dyn, "images", key, [spawn["default_image"]] if spawn["default_image"] else []),
        "capacity_source": _get(dyn, "capacity_source", key, str, "kubernetes"),
        "nodes": _get(dyn, "nodes", key, list, []),
        "node_label_selector": _get(dyn, "node_label_selector", key, dict, {}),
        "max_gpu": _get(dyn, "max_gpu", key, int, 0 if not gpu_enabled else 8),
        "max_session_hours": _get(dyn, "max_session_hours", key, float, spawn["session"]["max_hours"]),
        "capacity_timeout_seconds": _get(dyn, "capacity_timeout_seconds", key, float, 10.0),
    }
    out["max_cpu"] = parse_cpu(dyn["max_cpu"], f"{key}.max_cpu") if dyn.get("max_cpu") is not None else None
    out["max_memory"] = (
        parse_memory(dyn["max_memory"], f"{key}.max_memory") if dyn.get("max_memory") is not None else None
    )
    if not out["enabled"]:
        return out
    if not _NAME_RE.match(out["slug"]):
        raise ConfigError(f"{key}.slug", f"must match {_NAME_RE.pattern}")
    if not out["images"]:
        raise ConfigError(f"{key}.images", "list at least one image")
    if out["max_gpu"] > 0 and not gpu_enabled:
        raise ConfigError(f"{key}.max_gpu", "GPUs offered but spawn.gpu.enabled is false")
    if out["capacity_source"] not in ("kubernetes", "static") and "." not in out["capacity_source"]:
        raise ConfigError(
            f"{key}.capacity_source",
            "must be 'kubernetes', 'static' or an importable 'module.Class'",
        )
    nodes = []
    for i, node in enumerate(out["nodes"]):
        nkey = f"{key}.nodes[{i}]"
        if not isinstance(node, dict):
            raise ConfigError(nkey, "must be a mapping")
        _reject_unknown(node, {"name", "cpu", "memory", "gpu", "labels"}, nkey)
        gpus = _get(node, "gpu", nkey, int, 0)
        nodes.append(
            {
                "name": _get(node, "name", nkey, str),
                "cpu": parse_cpu(_get(node, "cpu", nkey, None), f"{nkey}.cpu"),
                "memory": parse_memory(_get(node, "memory", nkey, None), f"{nkey}.memory"),
                "gpu": gpus if gpu_enabled else 0,
                "labels": _get(node, "labels", nkey, dict, {}),
            }
        )
    if out["capacity_source"] == "static" and not nodes:
        raise ConfigError(f"{key}.nodes", "required when capacity_source is 'static'")
    out["nodes"] = nodes
    return out


def _spawn_gpu(spawn_in, key):
    gpu = _get(spawn_in, "gpu", key, dict, {})
    _reject_unknown(gpu, {"enabled", "resource_name"}, "spawn.gpu")
    return {
        "enabled": _get(gpu, "enabled", "spawn.gpu", bool, False),
        "resource_name": _get(gpu, "resource_name", "spawn.gpu", str, "nvidia.com/gpu"),
    }


def _spawn_shm(spawn_in, key):
    shm = _get(spawn_in, "shm", key, dict, {})
    _reject_unknown(shm, {"enabled", "size_limit", "fraction_of_memory_limit"}, "spawn.shm")
    out = {
        "enabled": _get(shm, "enabled", "spawn.shm", bool, True),
        "size_limit": parse_memory(shm.get("size_limit", "1Gi"), "spawn.shm.size_limit"),
        "fraction_of_memory_limit": _get(shm, "fraction_of_memory_limit", "spawn.shm", float, 0.5),
    }
    if not 0 < out["fraction_of_memory_limit"] <= 1:
        raise ConfigError("spawn.shm.fraction_of_memory_limit", "must be in (0, 1]")
    return out


def _spawn_cpu_only_env(spawn_in, key):
    env = _get(spawn_in, "cpu_only_env", key, dict, {"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""})
    for k, v in env.items():
        if not isinstance(v, str):
            raise ConfigError(f"spawn.cpu_only_env.{k}", "values must be strings")
    return env


def _spawn_session(spawn_in, key):
    session = _get(spawn_in, "session", key, dict, {})
    _reject_unknown(session, {"choices_hours", "default_hours", "max_hours"}, "spawn.session")
    choices = _get(session, "choices_hours", "spawn.session", list, [1, 2, 4, 8, 24])
    for i, hours in enumerate(choices):
        if isinstance(hours, bool) or not isinstance(hours, (int, float)):
            raise ConfigError(f"spawn.session.choices_hours[{i}]", f"must be a number of hours, got {hours!r}")
    out = {
        "choices_hours": [float(h) for h in choices],
        "default_hours": _get(session, "default_hours", "spawn.session", float, 8.0),
        "max_hours": _get(session, "max_hours", "spawn.session", float, 24.0),
    }
    if not out["choices_hours"] or any(h <= 0 for h in out["choices_hours"]):
        raise ConfigError("spawn.session.choices_hours", "list positive numbers of hours")
    if out["default_hours"] not in out["choices_hours"]:
        raise ConfigError("spawn.session.default_hours", "must be one of choices_hours")
    return out


def _spawn_profile(profile, i, spawn, gpu_enabled, slugs, errors):
    p = _validate_profile(profile, f"spawn.profiles[{i}]", spawn, gpu_enabled, errors)
    if p["slug"] in slugs:
        raise ConfigError(f"spawn.profiles[{i}].slug", f"duplicate slug {p['slug']!r}")
    slugs.add(p["slug"])
    return p


def _spawn_team(team, allowed, slugs):
    tkey = f"spawn.teams.{team}"
    if not isinstance(allowed, list):
        raise ConfigError(tkey, "must be a list of profile slugs")
    for j, slug in enumerate(allowed):
        if slug not in slugs:
            raise ConfigError(
                f"{tkey}[{j}]",
                f"team {team!r} is mapped to unknown profile {slug!r} (known: {', '.join(sorted(slugs))})",
            )
    return list(allowed)


def _spawn_default_profile(j, slug, slugs):
    if slug not in slugs:
        raise ConfigError(f"spawn.default_profiles[{j}]", f"unknown profile {slug!r}")


def _validate_spawn(spawn_in, errors=None):
    key = "spawn"
    if not isinstance(spawn_in, dict):
        raise ConfigError(key, "must be a mapping")
    _attempt(
        errors,
        _reject_unknown,
        spawn_in,
        {
            "default_image",
            "gpu",
            "shm",
            "cpu_only_env",
            "session",
            "profiles",
            "dynamic",
            "teams",
            "default_profiles",
            "admin_all_profiles",
        },
        key,
    )
    spawn = {"default_image": _attempt(errors, _get, spawn_in, "default_image", key, str, "", fallback="")}
    spawn["gpu"] = _attempt(
        errors, _spawn_gpu, spawn_in, key, fallback={"enabled": False, "resource_name": "nvidia.com/gpu"}
    )
    spawn["shm"] = _attempt(errors, _spawn_shm, spawn_in, key)
    spawn["cpu_only_env"] = _attempt(errors, _spawn_cpu_only_env, spawn_in, key)
    spawn["session"] = _attempt(
        errors,
        _spawn_session,
        spawn_in,
        key,
        fallback={"choices_hours": [1.0, 2.0, 4.0, 8.0, 24.0], "default_hours": 8.0, "max_hours": 24.0},
    )
    gpu_enabled = spawn["gpu"]["enabled"]
    profiles_in = _get(spawn_in, "profiles", key, list, [])
    profiles = []
    slugs = set()
    for i, profile in enumerate(profiles_in):
        p = _attempt(errors, _spawn_profile, profile, i, spawn, gpu_enabled, slugs, errors)
        if p is not None:
            profiles.append(p)
        elif isinstance(profile, dict) and isinstance(profile.get("slug"), str):
            slugs.add(profile["slug"])  # already reported; do not report its teams again
    spawn["profiles"] = profiles
    spawn["dynamic"] = _attempt(
        errors, _validate_dynamic, _get(spawn_in, "dynamic", key, dict, {}), spawn, gpu_enabled,
        fallback={"enabled": False},
    )
    if spawn["dynamic"]["enabled"]:
        if spawn["dynamic"]["slug"] in slugs:
            raise ConfigError("spawn.dynamic.slug", f"clashes with profile slug {spawn['dynamic']['slug']!r}")
        slugs.add(spawn["dynamic"]["slug"])
    elif isinstance(spawn_in.get("dynamic"), dict) and spawn_in["dynamic"].get("enabled") is True:
        slugs.add(spawn_in["dynamic"].get("slug") or "custom")  # already reported
    if not slugs:
        _attempt(
            errors,
            _raise,
            ConfigError("spawn.profiles", "define at least one profile (or enable spawn.dynamic)"),
        )
    teams = _get(spawn_in, "teams", key, dict, {})
    spawn["teams"] = {}
    for team, allowed in teams.items():
        checked = _attempt(errors, _spawn_team, team, allowed, slugs)
        if checked is not None:
            spawn["teams"][str(team)] = checked
    default_profiles = _get(spawn_in, "default_profiles", key, list, sorted(slugs) if not teams else [])
    for j, slug in enumerate(default_profiles):
        _attempt(errors, _spawn_default_profile, j, slug, slugs)
    spawn["default_profiles"] = list(default_profiles)
    spawn["admin_all_profiles"] = _attempt(errors, _get, spawn_in, "admin_all_profiles", key, bool, True, fallback=True)
    return spawn


def _raise(error):
    raise error


_CULL_KEYS = {"enabled", "users", "adminUsers", "removeNamedServers", "timeout", "every", "concurrency", "maxAge"}


def _validate_culling(cull):
    if not isinstance(cull, dict):
        raise ConfigError("culling", "must be a mapping")
    _reject_unknown(cull, _CULL_KEYS, "culling")
    out = {"enabled": _get(cull, "enabled", "culling", bool, True)}
    for name, default in (("timeout", 3600), ("every", 600), ("concurrency", 10), ("maxAge", 0)):
        out[name] = _get(cull, name, "culling", int, default)
        if out[name] < 0:
            raise ConfigError(f"culling.{name}", "must be 0 or more")
    for name, default in (("users", False), ("adminUsers", True), ("removeNamedServers", False)):
        out[name] = _get(cull, name, "culling", bool, default)
    return out


def _validate_notices(notices):
    if not isinstance(notices, dict):
        raise ConfigError("notices", "must be a mapping")
    _reject_unknown(notices, {"enabled"}, "notices")
    return {"enabled": _get(notices, "enabled", "notices", bool, True)}


def validate(data, errors=None):
    """Validate and normalise the whole configuration; raises ConfigError.

    With ``errors`` a list, independent parts (each section, login mode, profile, team,
    quantity) are validated one after the other and every ConfigError is appended to
    ``errors`` instead of raised at the first one (see :func:`collect_errors`); the
    returned data is then partial and only meant for the caller's error report.
    """
    if not isinstance(data, dict):
        raise ConfigError("(root)", "configuration must be a mapping")
    _attempt(errors, _reject_unknown, data, {"test_mode", "auth", "spawn", "culling", "notices"}, "(root)")
    test_mode = _attempt(errors, _get, data, "test_mode", "(root)", bool, False, fallback=False)
    return {
        "test_mode": test_mode,
        "auth": _attempt(errors, _validate_auth, data.get("auth"), test_mode, errors),
        "spawn": _attempt(errors, _validate_spawn, data.get("spawn") or {}, errors),
        "culling": _attempt(errors, _validate_culling, data.get("culling") or {}),
        "notices": _attempt(errors, _validate_notices, data.get("notices") if data.get("notices") is not None else {},
                            fallback={"enabled": True}),
    }


def collect_errors(data):
    """Every ConfigError of the configuration (``[]`` when valid), not only the first.

    The same rules as :func:`validate`, which raises the first of them."""
    errors = []
    try:
        validate(data, errors)
    except ConfigError as exc:
        errors.append(exc)
    return errors


def load(path):
    """Read a YAML (or JSON) configuration file and validate it."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return validate(data)
