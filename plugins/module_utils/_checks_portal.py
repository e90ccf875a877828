# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""The portal concern: every variable of role ``portal``, one row per problem and portal host.

Which hosts, by the playbook the validation runs for:

- ``site``/``preflight``: the hosts of group ``labhub_portal``, or the first control-plane node
  when that group is empty (as site.yml's portal play), unless ``portal_enabled`` is false;
- ``render``: the host playbooks/render.yml renders the portal on (the first control-plane node),
  unless ``labhub_render_portal`` is false; only what rendering uses (Kubernetes names; no secret);
- ``portal`` / ``portal_render``: role portal itself (tasks/preflight.yml, tasks/render.yml):
  the hosts the role runs on (the scope of the call).

Besides the checks on each variable, the PORTAL_* settings the role writes into the env file are
built with the role's own mapping (``_portal_settings.build``, the filter the template uses) and
validated by the portal's own pydantic model (labhub_portal.config.Settings); each error is
mapped back to the role variable it comes from (timezone -> portal_timezone, an extra setting
-> portal_extra_settings.NAME, whose value is never shown).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.labhub.platform.plugins.module_utils import (
    _portal_settings as ps,
)
from ansible_collections.labhub.platform.plugins.module_utils._checks_cluster import check_packages, cluster_scope
from ansible_collections.labhub.platform.plugins.module_utils._validation import (
    HostCheck,
    a_type_name,
    abs_path_error,
    DNS_LABEL_RE,
    INVENTORY,
    is_int,
    MISSING,
    port_error,
)

PORTAL_GROUP = "labhub_portal"
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([abc]|rc|\.dev|\.post)?[0-9]*$")
ACCOUNT_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SQL_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SQL_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
HTTP_URL_RE = re.compile(r"^https?://\S+$")
HTTPS_URL_RE = re.compile(r"^https://\S+$")
MYSQL_URL_RE = re.compile(r"^(mysql|mariadb)(\+[a-z]+)?://\S+$")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")
LOG_LEVELS = ("debug", "info", "warning", "error")
KUBE_APPLY = ("auto", "always", "never")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SYSTEM_DIRS = ("/", "/etc", "/usr", "/opt", "/var", "/home", "/root", "/boot")
PATHS = ("portal_install_dir", "portal_venv_dir", "portal_wheels_dir", "portal_python", "portal_config_dir",
         "portal_env_file", "portal_kubeconfig_path")
PRIVILEGED_PORTS = 1024
GENERATE = "a random value kept in a vault, e.g. `openssl rand -hex 32`"
MODEL = "labhub_portal.config.Settings"


def _truthy(value, default):
    """A switch as Ansible's `| bool` reads it (the booleans check reports non-booleans)."""
    if value is None or value is MISSING:
        return default
    try:
        return boolean(value, strict=False)
    except TypeError:
        return default


def _int(value):
    """An integer, or an integer written as text (`-e portal_bind_port=8080`); None otherwise."""
    if is_int(value):
        return value
    if isinstance(value, str) and re.match(r"^-?[0-9]+$", value.strip()):
        return int(value.strip())
    return None


def _text(value):
    return value if isinstance(value, str) else ("" if value is None or value is MISSING else str(value))


def portal_hosts(site):
    """The hosts the portal check covers for the site's playbook, and whether it is a render."""
    if site.playbook in ("portal", "portal_render"):
        return list(site.scope), site.playbook == "portal_render"
    if site.playbook in ("render", "audit_images"):  # audit_images.yml renders through render.yml
        host = site.hub_host
        if host == INVENTORY or not _truthy(site.get(host, "labhub_render_portal"), True):
            return [], True
        return [host], True
    hosts = site.group(PORTAL_GROUP) or (site.control_plane + site.hosts)[:1]
    return [h for h in hosts if _truthy(site.get(h, "portal_enabled"), True)], False


class _HostCheck(HostCheck):
    """The checks of one portal host; remembers which variables already have a row."""

    def add(self, variable, problem, expected, value=MISSING, secret=None):
        self.flagged.add(variable)
        self.report.add(self.host, variable, problem, expected, value=value, secret=secret)

    # -- secrets --------------------------------------------------------------------------
    @staticmethod
    def _secret_name(var):
        """The variable the operator sets for a secret (since the rename, the role's own name)."""
        return var

    def _template_error(self, var):
        """Why the variable's template failed on this host (the site records it), or None."""
        for host, name, reason in getattr(self.site, "template_errors", None) or ():
            if host == self.host and name == var:
                return reason
        return None

    def secrets(self):
        good = {}
        for var in ps.SECRETS:
            name = self._secret_name(var)
            minimum = ps.HUB_TOKEN_MIN_LENGTH if var == "portal_hub_api_token" else ps.SECRET_MIN_LENGTH
            expected = "at least %d characters of [A-Za-z0-9._~+/=-], not a known default: %s" % (minimum, GENERATE)
            value = self.get(var)
            if value is MISSING or value is None:
                if value is None or not (self.site.has(self.host, var) or var == "portal_hub_api_token"):
                    self.add(name, "is not set (the role has no default for it)", expected)
                else:
                    # set (or, the hub token, defaulted) but its template does not resolve, e.g. a
                    # vault variable the site has not defined: one row here, which the portal's own
                    # model and the argument-spec check then do not repeat
                    reason = self._template_error(var)
                    if reason is not None:
                        self.add(name, "cannot be resolved: " + reason,
                                 "a value whose template resolves (its vault variable defined)", secret=True)
                continue
            if not isinstance(value, str):
                self.add(name, "is %s, not a string" % a_type_name(value), expected, value=value, secret=True)
                continue
            if not value.strip():
                self.add(name, "is empty", expected, value=value, secret=True)
                continue
            problems = []
            if len(value) < minimum:
                problems.append("is %d characters long" % len(value))
            if not ps.SECRET_PATTERN.match(value):
                problems.append("has characters outside [A-Za-z0-9._~+/=-] (space, quote, ...)")
            if value.lower() in ps.WEAK_SECRETS:
                problems.append("is a well-known default")
            elif len(set(value)) < 6:
                problems.append("is too simple (fewer than 6 different characters)")
            if problems:
                self.add(name, "; ".join(problems), expected, value=value, secret=True)
                continue
            for other, other_value in good.items():
                if other_value == value:
                    self.add(name, "is the same value as %s" % other, "%s different values" % len(ps.SECRETS),
                             value=value, secret=True)
                    break
            else:
                good[name] = value

    # -- release, paths, service ---------------------------------------------------------
    def release(self):
        version = self.get("portal_version")
        version_ok = isinstance(version, str) and VERSION_RE.match(version)
        if not version_ok:
            self.add("portal_version", "is not a release version", "a version such as 0.1.0", value=version)
        src = self.get("portal_wheels_src_dir", "")
        expected = ("an absolute directory on the controller holding labhub_portal-<portal_version>-*.whl; "
                    "set labhub_bundle_dir or portal_wheels_src_dir")
        if not isinstance(src, str) or not src.strip():
            self.add("portal_wheels_src_dir", "is empty", expected, value=src)
        elif abs_path_error(src):
            self.add("portal_wheels_src_dir", abs_path_error(src), expected, value=src)
        elif version_ok and not glob.glob(os.path.join(glob.escape(src), "labhub_portal-%s-*.whl" % version)):
            self.add("portal_wheels_src_dir", "holds no labhub_portal-%s-*.whl on the controller" % version,
                     expected, value=src)

    def paths(self, render):
        if not render:
            for var in PATHS:
                value = self.get(var)
                if abs_path_error(value):
                    self.add(var, abs_path_error(value), "an absolute path", value=value)
        value = self.get("portal_render_dir", "")
        if render:
            if self.site.playbook == "portal_render" and (not _text(value) or abs_path_error(value)):
                self.add("portal_render_dir", "is empty" if not _text(value) else abs_path_error(value),
                         "an absolute directory on the controller; set labhub_render_dir or portal_render_dir",
                         value=value)
        elif _text(value) and abs_path_error(value):
            self.add("portal_render_dir", abs_path_error(value), "empty, or an absolute directory on the controller",
                     value=value)
        if render:
            return
        paths = self.get("portal_systemd_read_write_paths", [])
        if not isinstance(paths, (list, tuple)):
            self.add("portal_systemd_read_write_paths", "is %s, not a list" % a_type_name(paths),
                     "a list of absolute paths", value=paths)
            return
        for index, path in enumerate(paths):
            if abs_path_error(path) or str(path).rstrip("/") in SYSTEM_DIRS or path == "/":
                self.add("portal_systemd_read_write_paths[%d]" % index,
                         "is not an absolute path" if abs_path_error(path) else "is a whole system directory",
                         "an absolute path below a system directory (e.g. /var/lib/labhub-portal)", value=path)

    def service(self):
        for var in ("portal_user", "portal_group", "portal_service_name"):
            value = self.get(var)
            if not isinstance(value, str) or not ACCOUNT_RE.match(value):
                self.add(var, "is not a lower-case system name", "1-32 of a-z, 0-9, '_', '-', starting with a letter "
                         "or '_'", value=value)
            elif value == "root":
                self.add(var, "is root", "a dedicated unprivileged name (default labhub-portal)", value=value)
        host = self.get("portal_bind_host")
        if not isinstance(host, str) or not host.strip():
            self.add("portal_bind_host", "is empty", "an address to listen on, e.g. 127.0.0.1", value=host)
        allowed = self.get("portal_allowed_hosts", [])
        if not isinstance(allowed, list) or not all(isinstance(h, str) and h.strip() and "," not in h
                                                    and not any(c.isspace() for c in h.strip()) for h in allowed):
            self.add("portal_allowed_hosts", "is not a list of host names", "host names the portal answers to, "
                     "e.g. [portal.lab.example, '*.lab.example']", value=allowed)
        elif isinstance(host, str) and host.strip() in ("0.0.0.0", "::") and not allowed \
                and not self.get("portal_public_url", ""):
            self.add("portal_bind_host", "is %s (every address) but neither portal_public_url nor portal_allowed_hosts "
                     "names the host browsers use: the portal answers only loopback and those names (Host check "
                     "against DNS rebinding), so every request from another machine would get 400" % host.strip(),
                     "portal_public_url (its host is allowed), or portal_allowed_hosts, e.g. [node1.lab.example]",
                     value=host)
        raw = self.get("portal_bind_port")
        port = _int(raw)
        error = port_error(port) if port is not None else "is %s, not a port number" % a_type_name(raw)
        if error:
            self.add("portal_bind_port", error, "a port number 1024-65535", value=raw)
        elif port < PRIVILEGED_PORTS:
            self.add("portal_bind_port", "is below %d: the service runs as portal_user (%s) with no capability "
                     "(the unit empties CapabilityBoundingSet), so it cannot bind the port"
                     % (PRIVILEGED_PORTS, _text(self.get("portal_user", ""))),
                     "a port 1024-65535 (default 8780); put a reverse proxy in front for 80/443", value=raw)
        for var, low in (("portal_readyz_retries", 1), ("portal_readyz_delay", 0),
                         ("portal_kube_token_retries", 1), ("portal_kube_token_delay", 0)):
            raw = self.get(var)
            value = _int(raw)
            if value is None or value < low:
                self.add(var, "is not an integer of at least %d" % low if value is None else "is below %d" % low,
                         "an integer of at least %d" % low, value=raw)

    def database(self):
        for var in ("portal_database_name", "portal_database_user"):
            value = self.get(var)
            if not isinstance(value, str) or not SQL_NAME_RE.match(value):
                self.add(var, "is not a lower-case SQL identifier", "1-63 of a-z, 0-9, '_', not starting with a digit",
                         value=value)
            elif var == "portal_database_user" and value == "postgres":
                self.add(var, "is the PostgreSQL superuser", "a role of the portal's own (default labhub_portal)",
                         value=value)
        host = self.get("portal_database_host")
        if not isinstance(host, str) or not host.strip():
            self.add("portal_database_host", "is empty", "the PostgreSQL host", value=host)
        elif _truthy(self.get("portal_database_local"), True) and host not in LOOPBACK:
            self.add("portal_database_host", "is not a loopback address while portal_database_local is true "
                     "(the role installs PostgreSQL on the portal host)",
                     "127.0.0.1, localhost or ::1; or portal_database_local: false for an existing server", value=host)
        raw = self.get("portal_database_port")
        port = _int(raw)
        error = port_error(port) if port is not None else "is %s, not a port number" % a_type_name(raw)
        if error:
            self.add("portal_database_port", error, "a port number 1-65535 (default 5432)", value=raw)
        options = self.get("portal_database_options", {})
        if not isinstance(options, dict):
            self.add("portal_database_options", "is %s, not a mapping" % a_type_name(options),
                     "a mapping of DSN query parameters, e.g. {ssl: require}", value=options)

    def settings(self):
        for var in ("portal_hub_api_url", "portal_hub_public_url", "portal_public_url"):
            value = self.get(var, "")
            if _text(value) and (not isinstance(value, str) or not HTTP_URL_RE.match(value)):
                self.add(var, "is not an http(s) URL", "empty, or an http(s):// URL", value=value)
        value = self.get("portal_mysql_url", "")
        if _text(value) and (not isinstance(value, str) or not MYSQL_URL_RE.match(value)):
            self.add("portal_mysql_url", "is not a mysql:// URL", "empty (report sync off), or "
                     "mysql://user:password@host:port/database", value=value)
        value = self.get("portal_mysql_table")
        if not isinstance(value, str) or not SQL_TABLE_RE.match(value):
            self.add("portal_mysql_table", "is not an SQL identifier", "1-64 of letters, digits, '_' (default "
                     "pod_report)", value=value)
        value = self.get("portal_oauth_client_id")
        if not isinstance(value, str) or not CLIENT_ID_RE.match(value):
            self.add("portal_oauth_client_id", "is not an OAuth client id", "letters, digits, '.', '_', '-' "
                     "(JupyterHub: service-<service name>)", value=value)
        value = self.get("portal_log_level")
        if value not in LOG_LEVELS:
            self.add("portal_log_level", "is not a log level", " or ".join(LOG_LEVELS), value=value)
        for var in ("portal_record_interval", "portal_report_sync_interval"):
            raw = self.get(var)
            value = _int(raw)
            if value is None or value < 1:
                self.add(var, "is not a whole number of seconds" if value is None else "is below 1 second",
                         "a positive number of seconds", value=raw)
        value = self.get("portal_timezone")
        if not isinstance(value, str) or not value.strip():
            self.add("portal_timezone", "is empty", "an IANA time zone, e.g. Asia/Taipei", value=value)
        self.gpu_idle()

    def gpu_idle(self):
        """The GPU idle flag and stop policy: the numbers are the portal model's (ranges in config.py);
        the policy needs Prometheus, named here by the role's own variable."""
        if _truthy(self.get("portal_gpu_idle_stop", False), False) \
                and not _text(self.get("portal_prometheus_url", "")).strip():
            self.add("portal_gpu_idle_stop", "is true but portal_prometheus_url is empty: the policy judges GPUs "
                     "idle from Prometheus (the DCGM exporter's metrics) and would never act",
                     "portal_prometheus_url (the Prometheus scraping the DCGM exporter, e.g. role monitoring's), "
                     "or portal_gpu_idle_stop: false", value=self.get("portal_gpu_idle_stop"))

    def extra_settings(self, fields):
        extra = self.get("portal_extra_settings", {})
        if extra is None:
            return
        if not isinstance(extra, dict):
            self.add("portal_extra_settings", "is %s, not a mapping" % a_type_name(extra),
                     "a mapping of setting names (without PORTAL_) to values", value=extra)
            return
        for key, value in extra.items():
            var = "portal_extra_settings.%s" % key
            if not isinstance(key, str) or not ps.EXTRA_KEY_RE.match(key):
                self.add(var, "is not an upper-case setting name", "NAME without the PORTAL_ prefix, e.g. "
                         "DEFAULT_GPU_HOUR_RATE", value=value)
            elif key in ps.MANAGED:
                self.add(var, "is a setting the role writes itself", "the role variable for it (e.g. portal_timezone "
                         "for TIMEZONE), or another setting", value=value)
            elif fields is not None and key.lower() not in fields:
                self.add(var, "is not a setting of the portal (%s): it would be ignored" % MODEL,
                         "one of the portal's settings (see portal/README.md), spelled without PORTAL_", value=value)
            elif isinstance(value, (dict, list, tuple)):
                self.add(var, "is %s, not a single value" % a_type_name(value), "a string or a number", value=value)

    def env_file_safety(self, built):
        """Every value goes between single quotes of the env file: no quote, backslash or line break."""
        extra = self.get("portal_extra_settings", {})
        extra = extra if isinstance(extra, dict) else {}
        for name, text in built.items():
            var = "portal_extra_settings.%s" % name if name in extra else ps.source(name)
            if name == "DATABASE_URL":
                options = self.get("portal_database_options", {})
                if ps.UNSAFE_VALUE_RE.search(str(options)):
                    var = "portal_database_options"
            if var in self.flagged or var in ps.SECRETS:
                continue
            if ps.UNSAFE_VALUE_RE.search(text):
                self.add(var, "contains a quote ('), a backslash or a line break", "a value the env file can hold "
                         "between single quotes", value=self.get(var) if var.startswith("portal_") and "." not in var
                         else text)

    def kubernetes(self):
        for var in ("portal_hub_namespace", "portal_kube_service_account"):
            value = self.get(var)
            if not isinstance(value, str) or not DNS_LABEL_RE.match(value):
                if var == "portal_hub_namespace" and not self.site.has(self.host, var) \
                        and self.site.has(self.host, "jupyterhub_namespace"):
                    self.flagged.add(var)  # the hub's own check names jupyterhub_namespace, where it comes from
                    continue
                self.add(var, "is not a Kubernetes name (DNS label)", "1-63 of a-z, 0-9, '-', starting and ending "
                         "with a letter or digit", value=value)
        value = self.get("portal_kube_api_server", "")
        if _text(value) and (not isinstance(value, str) or not HTTPS_URL_RE.match(value)):
            self.add("portal_kube_api_server", "is not an https URL", "empty (the admin kubeconfig's), or "
                     "https://host:port", value=value)
        apply = self.get("portal_kube_apply")
        if apply not in KUBE_APPLY:
            self.add("portal_kube_apply", "is not auto, always or never", "auto, always or never", value=apply)
        elif apply == "always" and not _text(self.get("portal_kube_admin_kubeconfig", "")):
            self.add("portal_kube_admin_kubeconfig", "is empty while portal_kube_apply is always",
                     "the admin kubeconfig on portal_kube_delegate_to (labhub_kubeconfig), or portal_kube_apply: auto",
                     value="")

    def hub_login(self):
        if not _truthy(self.get("portal_hub_service", False), False):
            return
        why = ("portal_hub_service is true: the hub registers the portal as its OAuth service, and "
               "browser login needs it")
        value = self.get("portal_hub_api_url", "")
        if "portal_hub_api_url" not in self.flagged and not (isinstance(value, str) and HTTP_URL_RE.match(value)):
            var = "portal_hub_api_url" if self.site.has(self.host, "portal_hub_api_url") else "jupyterhub_public_url"
            self.add(var, "gives no hub API URL (%s)" % why, "the hub's http(s) URL as browsers see it "
                     "(jupyterhub_public_url), or portal_hub_api_url", value=self.get(var, ""))
        value = self.get("portal_public_url", "")
        if "portal_public_url" not in self.flagged and not (isinstance(value, str) and HTTP_URL_RE.match(value)):
            var = "portal_public_url" if self.site.has(self.host, "portal_public_url") else "portal_public_url"
            self.add(var, "is not set (%s)" % why, "the portal's http(s) URL as browsers see it (OAuth redirect)",
                     value=self.get(var, ""))

    # -- the portal's own model ----------------------------------------------------------
    def model(self, built):
        try:
            errors = ps.model_errors(built)
        except ps.ModelUnavailable as exc:
            self.report.add(INVENTORY, "(controller) pydantic-settings", "cannot check the portal settings with the "
                            "portal's own model (%s): %s" % (MODEL, exc),
                            "pydantic and pydantic-settings in the controller's Python "
                            "(pip install -r tests/requirements.in -c tests/constraints.txt)")
            return
        extra = self.get("portal_extra_settings", {})
        extra = extra if isinstance(extra, dict) else {}
        for name, message in errors:
            var = ps.source(name) if name else "(portal settings)"
            if name in extra:
                var = "portal_extra_settings.%s" % name
            if var == "portal_hub_api_token":
                var = self._secret_name(var)
            if var in self.flagged or (var == "portal_database_host" and self.flagged & set(ps.DATABASE_INPUTS)):
                continue
            if var.startswith("portal_extra_settings."):
                value = extra.get(name, MISSING)
            elif var in ("(portal settings)",):
                value = MISSING
            else:
                value = self.get(var)
            self.add(var, "is refused by the portal (%s): %s" % (MODEL, message),
                     "a value the portal accepts (portal/src/labhub_portal/config.py)", value=value)

    def inputs(self):
        values = {}
        for name in ps.INPUTS:
            value = self.get(name)
            if value is not MISSING:
                values[name] = value
        return values


def check_portal(site, report):
    """Every variable of role portal on each portal host (see the module docstring for which)."""
    hosts, render = portal_hosts(site)
    if not render:
        # the portal's OS packages (role packages), unless the host is a cluster node of a site run,
        # which the packages check of the nodes already covered
        covered = cluster_scope(site) if site.playbook in ("site", "preflight") else []
        check_packages(site, report, [h for h in hosts if h not in covered])
    fields = None
    if not render:
        try:
            fields = ps.model_fields()
        except ps.ModelUnavailable:
            fields = None  # reported once by the model step
    for host in hosts:
        check = _HostCheck(site, report, host)
        check.kubernetes()
        check.paths(render)
        if render:
            continue
        check.secrets()
        check.release()
        check.service()
        check.database()
        check.settings()
        check.extra_settings(fields)
        check.hub_login()
        built = ps.build(check.inputs(), kubeconfig_present=True)
        check.env_file_safety(built)
        check.model(built)
