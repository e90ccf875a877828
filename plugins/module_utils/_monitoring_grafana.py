# -*- coding: utf-8 -*-
# Copyright: Labhub engineers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this module_utils file is internal to labhub.platform. Its API may
# change without notice; other collections must not import it.
"""Grafana's address and its sign-in through JupyterHub: one set of decisions both roles use.

Role monitoring gives Grafana its URL, exposure (the hub's: a NodePort, or an Ingress at
``/grafana/`` on the hub's host), TLS and generic-OAuth settings; role jupyterhub registers the
matching OAuth client (hub service ``labhub-grafana``), lets the users in and lets Grafana's pod
reach the hub's API through the hub's NetworkPolicy. Both call :func:`login` with the same
inventory values (:data:`DEFAULTS` fills what a role does not see), so the client id, redirect URI
and scopes cannot disagree.

What the settings copy:

- Grafana 12.1.0's generic OAuth connector (pkg/login/social/connectors/generic_oauth.go and
  social_base.go): the user JSON comes from ``api_url``; ``login_attribute_path``,
  ``name_attribute_path`` and ``email_attribute_path`` are JMESPath; without an email Grafana asks
  ``<api_url>/emails``, which the hub does not have, so the email is made from the user name; a
  ``role_attribute_path`` result of ``GrafanaAdmin`` makes a server admin (with
  ``allow_assign_grafana_admin``), and with ``role_attribute_strict`` no role means no sign-in.
  ``GF_<SECTION>_<KEY>`` environment variables set any ini key, ``__FILE`` reads it from a file.
- JupyterHub 5.5's OAuth provider (jupyterhub/oauth/provider.py, apihandlers/auth.py): a service's
  ``api_token`` is its client secret, its ``oauth_client_id`` starts with ``service-``, the client
  secret is read from the token request's body (``auth_style = InParams``), PKCE is not checked
  (so it is not used), and a user needs ``access:services!service=<name>`` to be let through.
  ``identify`` does not carry ``admin``, ``read:users!user`` does (the user's own model only).
- z2jh 4.4.0: the hub's Service ``hub`` on port 8081 in the hub's namespace; ``hub.loadRoles``
  entries become ``c.JupyterHub.load_roles`` (files/hub/jupyterhub_config.py).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.module_utils.six.moves.urllib.parse import urlsplit
from ansible_collections.labhub.platform.plugins.module_utils._validation import a_type_name, is_bool, truthy

SERVICE_NAME = "labhub-grafana"
CLIENT_ID = "service-" + SERVICE_NAME
# The signed-in user's own model (name, admin, groups): what the role mapping reads.
SCOPES = ["read:users!user"]
VIEWERS = ("all", "groups", "none")
OAUTH_SECRET = "grafana-oauth"
TLS_SECRET = "grafana-tls"
OAUTH_SECRET_DIR = "/etc/grafana-oauth"
TLS_DIR = "/etc/grafana-tls"
HUB_SERVICE_PORT = 8081  # z2jh: Service hub, port 8081
INGRESS_PATH = "/grafana/"
URL_RE = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")

# What role monitoring's defaults say, for the roles and checks that do not see them.
DEFAULTS = {
    "monitoring_enabled": True,
    "monitoring_namespace": "monitoring",
    "monitoring_grafana_nodeport": 30300,
    "monitoring_grafana_hub_login": True,
    "monitoring_grafana_viewers": "all",
    "monitoring_grafana_viewer_groups": [],
    "monitoring_grafana_public_url": "",
    "monitoring_grafana_tls_cert_file": "",
    "monitoring_grafana_tls_key_file": "",
    "jupyterhub_namespace": "jhub",
    "jupyterhub_public_url": "",
    "jupyterhub_expose": "nodeport",
    "jupyterhub_hostname": "",
    "jupyterhub_tls_mode": "none",
    "jupyterhub_tls_cert_file": "",
    "jupyterhub_tls_key_file": "",
    "jupyterhub_nodeport_http": 30080,
    "jupyterhub_nodeport_https": 30443,
    "jupyterhub_ingress_class": "public",
    "node_address": "",
}


def _get(v, key):
    value = v.get(key)
    return DEFAULTS[key] if value is None else value


def _hub_tls(v):
    """The hub serves TLS itself (jupyterhub_tls_mode files or letsencrypt)."""
    return _get(v, "jupyterhub_tls_mode") not in ("none", "", None)


def hub_url(v):
    """The hub's URL as browsers see it, without a trailing slash ('' when it cannot be known)."""
    public = str(_get(v, "jupyterhub_public_url") or "").strip()
    if public:
        return public.rstrip("/")
    tls = _hub_tls(v)
    scheme = "https" if tls else "http"
    hostname = str(_get(v, "jupyterhub_hostname") or "")
    if _get(v, "jupyterhub_expose") == "ingress":
        return "%s://%s" % (scheme, hostname) if hostname else ""
    host = hostname or str(_get(v, "node_address") or "")
    if not host:
        return ""
    port = _get(v, "jupyterhub_nodeport_https" if tls else "jupyterhub_nodeport_http")
    return "%s://%s:%s" % (scheme, host, port)


def grafana_url(v):
    """Grafana's URL as browsers see it, with a trailing slash ('' when Grafana has none): the
    inventory's monitoring_grafana_public_url, else the hub's exposure: ``/grafana/`` on the hub's
    host behind the Ingress, or the hub's host on Grafana's NodePort."""
    public = str(_get(v, "monitoring_grafana_public_url") or "").strip()
    if public:
        return public.rstrip("/") + "/"
    hub = hub_url(v)
    if not hub:
        return ""
    parts = urlsplit(hub)
    if _get(v, "jupyterhub_expose") == "ingress":
        return "%s://%s%s" % (parts.scheme, parts.netloc, INGRESS_PATH)
    port = _get(v, "monitoring_grafana_nodeport")
    if not port or not parts.hostname:
        return ""
    host = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
    return "%s://%s:%s/" % ("https" if _serves_tls(v) else "http", host, port)


def tls_files(v):
    """(certificate file, key file) Grafana serves https with, or ('', '')."""
    cert, key = _get(v, "monitoring_grafana_tls_cert_file"), _get(v, "monitoring_grafana_tls_key_file")
    if cert or key:
        return str(cert or ""), str(key or "")
    if _get(v, "jupyterhub_tls_mode") == "files":
        return str(_get(v, "jupyterhub_tls_cert_file") or ""), str(_get(v, "jupyterhub_tls_key_file") or "")
    return "", ""


def role_attribute_path(viewers, groups):
    """Grafana's role mapping (JMESPath on the hub's user model): hub admins are Grafana admins;
    the others are viewers (all, or members of the groups), or get no role (no sign-in)."""
    if viewers == "all":
        rest = "'Viewer'"
    elif viewers == "groups" and groups:
        rest = "(%s) && 'Viewer' || ''" % " || ".join("contains(groups, %s)" % _literal(g) for g in groups)
    else:
        rest = "''"
    return "admin && 'GrafanaAdmin' || %s" % rest


def _literal(text):
    return "'%s'" % str(text).replace("\\", "\\\\").replace("'", "\\'")


def _serves_tls(v):
    return bool(_get(v, "monitoring_grafana_tls_cert_file")) or _hub_tls(v)


def exposure(v):
    """How browsers reach Grafana: {url, scheme, host, path, ingress (behind the hub's Ingress
    controller), tls (Grafana's end serves https), nodeport (0: none)}."""
    url = grafana_url(v)
    parts = urlsplit(url) if url else None
    # behind the hub's Ingress controller (at the URL's host and path) exactly when the hub is
    ingress = _get(v, "jupyterhub_expose") == "ingress"
    nodeport = 0 if ingress else int(_get(v, "monitoring_grafana_nodeport") or 0)
    # Grafana's end (itself on its NodePort, or its Ingress) serves TLS when the hub's does, or with
    # a certificate of its own; an https URL without either is TLS ended in front of the cluster
    tls = _serves_tls(v)
    return {"url": url, "scheme": parts.scheme if parts else "http", "host": (parts.hostname or "") if parts else "",
            "path": (parts.path or "/") if parts else "/", "ingress": ingress, "tls": tls, "nodeport": nodeport}


def login(v):
    """Everything both roles need for Grafana's sign-in through the hub, or None when it is off."""
    if not (truthy(_get(v, "monitoring_enabled")) and truthy(_get(v, "monitoring_grafana_hub_login"))):
        return None
    hub = hub_url(v)
    grafana = grafana_url(v)
    viewers = _get(v, "monitoring_grafana_viewers")
    groups = [str(g) for g in (_get(v, "monitoring_grafana_viewer_groups") or [])]
    internal = "http://hub.%s.svc:%d" % (_get(v, "jupyterhub_namespace"), HUB_SERVICE_PORT)
    host = urlsplit(hub).hostname if hub else ""
    return {
        "service_name": SERVICE_NAME,
        "client_id": CLIENT_ID,
        "hub_url": hub,
        "grafana_url": grafana,
        "redirect_uri": grafana + "login/generic_oauth",
        "auth_url": hub + "/hub/api/oauth2/authorize",
        "token_url": internal + "/hub/api/oauth2/token",
        "api_url": internal + "/hub/api/user",
        "scopes": list(SCOPES),
        "viewers": viewers,
        "viewer_groups": groups if viewers == "groups" else [],
        "role_attribute_path": role_attribute_path(viewers, groups),
        # Grafana needs an email; the hub has none: <user>@<the hub's host>
        "email_attribute_path": "join('@', [name, %s])" % _literal(host or "labhub"),
    }


def grafana_env(v):
    """Grafana's environment: its URL and sub path, https, and the generic OAuth client."""
    exp = exposure(v)
    env = []
    if exp["url"]:
        env.append({"name": "GF_SERVER_ROOT_URL", "value": exp["url"]})
        if exp["path"] != "/":
            env.append({"name": "GF_SERVER_SERVE_FROM_SUB_PATH", "value": "true"})
    if exp["tls"] and not exp["ingress"]:
        env += [{"name": "GF_SERVER_PROTOCOL", "value": "https"},
                {"name": "GF_SERVER_CERT_FILE", "value": TLS_DIR + "/tls.crt"},
                {"name": "GF_SERVER_CERT_KEY", "value": TLS_DIR + "/tls.key"}]
    cfg = login(v)
    if cfg:
        settings = [
            ("ENABLED", "true"), ("NAME", "JupyterHub"), ("CLIENT_ID", cfg["client_id"]),
            ("SCOPES", " ".join(cfg["scopes"])), ("EMPTY_SCOPES", "false"),
            ("AUTH_URL", cfg["auth_url"]), ("TOKEN_URL", cfg["token_url"]), ("API_URL", cfg["api_url"]),
            ("AUTH_STYLE", "InParams"), ("USE_PKCE", "false"), ("USE_REFRESH_TOKEN", "false"),
            ("LOGIN_ATTRIBUTE_PATH", "name"), ("NAME_ATTRIBUTE_PATH", "name"),
            ("EMAIL_ATTRIBUTE_PATH", cfg["email_attribute_path"]), ("GROUPS_ATTRIBUTE_PATH", "groups"),
            ("ROLE_ATTRIBUTE_PATH", cfg["role_attribute_path"]), ("ROLE_ATTRIBUTE_STRICT", "true"),
            ("ALLOW_ASSIGN_GRAFANA_ADMIN", "true"), ("ALLOW_SIGN_UP", "true"),
        ]
        env += [{"name": "GF_AUTH_GENERIC_OAUTH_" + key, "value": value} for key, value in settings]
        env.append({"name": "GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET__FILE", "value": OAUTH_SECRET_DIR + "/client-secret"})
    return env


def grafana_volumes(v):
    """(volumes, mounts) of the OAuth client secret and Grafana's own TLS certificate."""
    volumes, mounts = [], []
    if login(v):
        volumes.append({"name": "oauth", "secret": {"secretName": OAUTH_SECRET, "defaultMode": 0o400}})
        mounts.append({"name": "oauth", "mountPath": OAUTH_SECRET_DIR, "readOnly": True})
    exp = exposure(v)
    if exp["tls"] and not exp["ingress"]:
        volumes.append({"name": "tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o400}})
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    return volumes, mounts


def ingress(v, meta):
    """The Ingress in front of Grafana when the hub is behind one (None otherwise)."""
    exp = exposure(v)
    if not (exp["ingress"] and exp["host"]):
        return None
    spec = {"ingressClassName": _get(v, "jupyterhub_ingress_class"),
            "rules": [{"host": exp["host"], "http": {"paths": [{
                "path": exp["path"].rstrip("/") or "/", "pathType": "Prefix",
                "backend": {"service": {"name": "grafana", "port": {"name": "http"}}}}]}}]}
    if exp["tls"]:
        spec["tls"] = [{"hosts": [exp["host"]], "secretName": TLS_SECRET}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def hub_side(v):
    """What role jupyterhub adds for Grafana: {service: {...} or None (without its token),
    load_roles: {...}, network_from: [peer, ...]}."""
    cfg = login(v)
    if not cfg:
        return {"service_name": SERVICE_NAME, "service": None, "load_roles": {}, "network_from": []}
    service = {"oauth_client_id": cfg["client_id"], "oauth_redirect_uri": cfg["redirect_uri"],
               "oauth_no_confirm": True, "oauth_client_allowed_scopes": cfg["scopes"]}
    roles = {}
    if cfg["viewers"] == "all":
        # every hub user may sign in (as a viewer); z2jh: a `user` entry replaces JupyterHub's
        # default user role, whose scope is `self`
        roles["user"] = {"scopes": ["self", "access:services!service=" + SERVICE_NAME]}
    elif cfg["viewer_groups"]:
        roles[SERVICE_NAME + "-viewers"] = {"groups": cfg["viewer_groups"],
                                            "scopes": ["access:services!service=" + SERVICE_NAME]}
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": _get(v, "monitoring_namespace")}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}}
    return {"service_name": SERVICE_NAME, "service": service, "load_roles": roles, "network_from": [peer]}


def problems(v, exists=None):
    """[(variable, problem, expected)] of Grafana's address and sign-in settings. ``exists``: a
    function telling whether a controller path exists (os.path.exists; given by the caller)."""
    out = []
    enabled = v.get("monitoring_grafana_hub_login")
    if enabled is not None and not is_bool(enabled):
        out.append(("monitoring_grafana_hub_login", "is %s, not a boolean" % a_type_name(enabled),
                    "true or false (unquoted YAML)"))
        return out
    public = v.get("monitoring_grafana_public_url")
    if public not in (None, "") and not (isinstance(public, str) and URL_RE.match(public.strip())):
        out.append(("monitoring_grafana_public_url", "is not an http(s) URL",
                    "Grafana's URL as browsers see it, e.g. https://grafana.lab.example/, or '' (derived from the hub's)"))
        return out
    viewers = _get(v, "monitoring_grafana_viewers")
    groups = _get(v, "monitoring_grafana_viewer_groups")
    if viewers not in VIEWERS:
        out.append(("monitoring_grafana_viewers", "is not one of %s" % ", ".join(VIEWERS),
                    "all (every hub user a viewer), groups (members of monitoring_grafana_viewer_groups), "
                    "or none (hub admins only)"))
    if not isinstance(groups, list) or [g for g in groups if not (isinstance(g, str) and g)]:
        out.append(("monitoring_grafana_viewer_groups", "is not a list of hub group names", "e.g. [lab-staff]"))
    elif viewers == "groups" and not groups:
        out.append(("monitoring_grafana_viewer_groups", "is empty while monitoring_grafana_viewers is groups",
                    "the hub groups whose members may view Grafana, e.g. [lab-staff]"))
    cert, key = tls_files(v)
    own = bool(_get(v, "monitoring_grafana_tls_cert_file") or _get(v, "monitoring_grafana_tls_key_file"))
    if own and not (_get(v, "monitoring_grafana_tls_cert_file") and _get(v, "monitoring_grafana_tls_key_file")):
        var = "monitoring_grafana_tls_key_file" if _get(v, "monitoring_grafana_tls_cert_file") else \
            "monitoring_grafana_tls_cert_file"
        out.append((var, "is required with the other (a certificate and its key)", "a PEM file on the controller"))
    elif own and exists:
        for var, path in (("monitoring_grafana_tls_cert_file", cert), ("monitoring_grafana_tls_key_file", key)):
            if not exists(path):
                out.append((var, "does not exist on the controller", "a PEM file on the controller"))
    exp = exposure(v)
    if exp["tls"] and not cert:
        out.append(("monitoring_grafana_tls_cert_file", "Grafana is served with TLS like the hub, but the hub's "
                    "certificate comes from Let's Encrypt (jupyterhub_tls_mode: letsencrypt), which Grafana cannot share",
                    "a certificate and key for Grafana's host (monitoring_grafana_tls_cert_file and _key_file), "
                    "or jupyterhub_tls_mode: files"))
    if login(v) is not None and not out:
        if not exp["url"]:
            out.append(("monitoring_grafana_public_url", "Grafana has no address browsers can reach "
                        "(monitoring_grafana_nodeport is 0 and the hub is not behind an Ingress), so it cannot sign "
                        "in through the hub", "Grafana's URL as browsers see it, or monitoring_grafana_hub_login: false"))
        elif not hub_url(v):
            out.append(("jupyterhub_public_url", "the hub's URL cannot be derived (no jupyterhub_hostname and no "
                        "control-plane address), so Grafana cannot send browsers to it",
                        "the hub's URL as browsers see it, e.g. https://hub.lab.example"))
    return out
