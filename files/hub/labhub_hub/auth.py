"""Labhub's authenticators: several login modes behind one JupyterHub Authenticator.

Why our own multi-authenticator: JupyterHub 5 calls exactly one
``Authenticator`` and asks it for its handlers.  ``LabhubAuthenticator`` builds
one child authenticator per enabled mode and mounts each child's handlers under
its own prefix (``/hub/<mode>/...``), with the request handler's
``authenticator`` property bound to that child, so every mode keeps its own
login/callback paths, allow lists, admin lists and group mapping, while
JupyterHub's own login machinery (``login_user``, ``auth_to_user``, managed
groups, xsrf checks) runs unchanged.  NativeAuthenticator's pages (sign-up,
authorize, change password) hard-code root paths in their templates, so they
stay at ``/hub/signup`` etc. (bound to the native child).
"""

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

from jupyterhub.auth import Authenticator, DummyAuthenticator
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.handlers.login import LoginHandler, LogoutHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httputil import url_concat
from traitlets import Bool, Dict, Float, List, Set, Unicode, default

from .config import OAUTH_MODES, ConfigError, read_users_csv, resolve_secret
from .passwords import is_supported_hash, verify_password

LOGIN_MODE_COOKIE = "labhub-login-mode"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def bind_handler(handler_cls, child, mode):
    """A subclass of ``handler_cls`` whose ``authenticator`` is ``child``."""
    return type(
        f"Labhub{mode.title().replace('_', '')}{handler_cls.__name__}",
        (handler_cls,),
        {"authenticator": property(lambda self: child), "labhub_mode": mode},
    )


def _no_groups(auth_state):
    return []


def _github_team_groups(auth_state):
    """GitHub teams in auth_state -> group names ``org:team-slug``."""
    teams = (auth_state or {}).get("teams") or []
    return [f"{t['organization']['login']}:{t['slug']}" for t in teams if t.get("organization")]


def discover_oidc(issuer, timeout, tls_verify=True):
    """Fetch ``<issuer>/.well-known/openid-configuration`` (with a timeout)."""
    import ssl

    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    context = None
    if url.startswith("https://") and not tls_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
        document = json.loads(response.read().decode("utf-8"))
    return document


class _ModeMixin:
    """Shared by every child authenticator: prefix, groups, login-mode cookie."""

    labhub_mode = ""
    labhub_prefix = ""
    labhub_parent = None

    def login_url(self, base_url):
        return url_path_join(base_url, self.labhub_mode, "login")

    async def run_post_auth_hook(self, handler, authentication):
        authentication = await super().run_post_auth_hook(handler, authentication)
        if authentication is None:
            return None
        if self.labhub_prefix:
            authentication["name"] = self.labhub_prefix + authentication["name"]
        if self.labhub_parent is not None and authentication["name"] in self.labhub_parent.admin_users:
            authentication["admin"] = True
        authentication.setdefault("groups", [])
        if handler is not None:
            handler.set_secure_cookie(
                LOGIN_MODE_COOKIE,
                self.labhub_mode,
                path=handler.hub.base_url,
                httponly=True,
                expires_days=None,
            )
        return authentication


class _OAuthMixin(_ModeMixin):
    labhub_public_url = ""

    def login_url(self, base_url):
        return url_path_join(base_url, self.labhub_mode, "oauth_login")

    def get_callback_url(self, handler=None):
        if self.oauth_callback_url:
            return self.oauth_callback_url
        if self.labhub_public_url:
            hub_base = handler.hub.base_url if handler is not None else "/hub/"
            return self.labhub_public_url + url_path_join(hub_base, self.labhub_mode, "oauth_callback")
        if handler is None:
            raise ValueError("oauth_callback_url cannot be guessed without a request")
        return "{}://{}{}".format(
            handler.request.protocol,
            handler.request.host,
            url_path_join(handler.hub.base_url, self.labhub_mode, "oauth_callback"),
        )


# --------------------------------------------------------------------------
# cookie SSO
# --------------------------------------------------------------------------
class SSOUnavailable(Exception):
    """The who-am-I service could not be reached or answered nonsense."""


class SSORejected(Exception):
    """The who-am-I service does not accept the cookie."""


class CookieSSOAuthenticator(_ModeMixin, Authenticator):
    """An upstream SSO leaves a cookie; its who-am-I URL tells who it belongs to."""

    cookie_name = Unicode(config=True)
    whoami_url = Unicode(config=True)
    timeout_seconds = Float(5.0, config=True)
    sso_login_url = Unicode(config=True)
    sso_logout_url = Unicode("", config=True)
    username_key = Unicode("username", config=True)
    groups_key = Unicode("groups", config=True)
    admin_key = Unicode("", config=True)
    tls_verify = Bool(True, config=True)
    allowed_groups = Set(Unicode(), config=True, help="groups (from who-am-I) allowed to log in")

    async def whoami(self, cookie_value):
        request = HTTPRequest(
            self.whoami_url,
            method="GET",
            headers={"Cookie": f"{self.cookie_name}={cookie_value}", "Accept": "application/json"},
            connect_timeout=self.timeout_seconds,
            request_timeout=self.timeout_seconds,
            validate_cert=self.tls_verify,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            if exc.code in (401, 403):
                raise SSORejected(f"who-am-I answered {exc.code}") from exc
            if exc.code in (301, 302, 303, 307, 308):
                # most SSO services redirect an unknown session to their login page
                raise SSORejected(f"who-am-I redirected ({exc.code})") from exc
            raise SSOUnavailable(f"who-am-I answered {exc.code}") from exc
        except Exception as exc:  # connection refused, DNS, timeout, TLS
            raise SSOUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            answer = json.loads(response.body.decode("utf-8"))
        except ValueError as exc:
            raise SSOUnavailable("who-am-I did not answer JSON") from exc
        if not isinstance(answer, dict):
            raise SSOUnavailable("who-am-I did not answer a JSON object")
        return answer

    async def authenticate(self, handler, data):
        answer = await self.whoami(data["sso_cookie"])
        username = answer.get(self.username_key)
        if not isinstance(username, str) or not username:
            raise SSORejected(f"who-am-I answer has no {self.username_key!r}")
        groups = answer.get(self.groups_key) or []
        if not isinstance(groups, list):
            groups = [groups]
        model = {"name": username, "groups": [str(g) for g in groups]}
        if self.admin_key and answer.get(self.admin_key) is True:
            model["admin"] = True
        return model

    def check_allowed(self, username, authentication=None):
        if self.allowed_users and username in self.allowed_users:
            return True
        if self.allowed_groups and authentication:
            return bool(set(authentication.get("groups") or []) & set(self.allowed_groups))
        return False


class CookieSSOLoginHandler(BaseHandler):
    """GET /hub/cookie_sso/login: read the SSO cookie, ask who-am-I, log in."""

    def _sso_login_redirect(self):
        here = "{}://{}{}".format(self.request.protocol, self.request.host, self.request.uri)
        target = self.authenticator.sso_login_url
        if "{next}" in target:
            return target.replace("{next}", urlencode({"x": here})[2:])
        return url_concat(target, {"next": here})

    async def get(self):
        cookie = self.get_cookie(self.authenticator.cookie_name)
        if not cookie:
            self.redirect(self._sso_login_redirect())
            return
        try:
            user = await self.login_user({"sso_cookie": cookie})
        except SSOUnavailable as exc:
            self.log.error("Cookie SSO unavailable: %s", exc)
            raise web.HTTPError(
                503,
                "The single sign-on service is unavailable right now. "
                "Please try again in a few minutes; your administrator has been told in the hub log.",
            ) from exc
        except SSORejected as exc:
            self.log.warning("Cookie SSO rejected the session: %s", exc)
            raise web.HTTPError(
                403,
                "Your single sign-on session was not accepted (expired or invalid). "
                "Sign in again at the company sign-on page: " + self.authenticator.sso_login_url,
            ) from exc
        if user is None:
            raise web.HTTPError(403, "Your account is not allowed to use this hub.")
        self._jupyterhub_user = user
        self.redirect(self.get_next_url(user))


# --------------------------------------------------------------------------
# local groups (shared, hashed group passwords)
# --------------------------------------------------------------------------
class LocalGroupsAuthenticator(_ModeMixin, Authenticator):
    """Accounts whose group shares one password (stored as a hash only)."""

    groups_config = Dict(config=True, help="group -> {members, password_hash (resolved), admin}")

    def authenticate(self, handler, data):
        username = self.normalize_username((data or {}).get("username", ""))
        password = (data or {}).get("password", "")
        if not username or not password:
            return None
        matched, admin = [], False
        for gname, group in self.groups_config.items():
            if username in group["members"] and verify_password(password, group["password_hash"]):
                matched.append(gname)
                admin = admin or group["admin"]
        if not matched:
            return None
        model = {"name": username, "groups": sorted(matched)}
        if admin:
            model["admin"] = True
        return model


# --------------------------------------------------------------------------
# children for the library authenticators
# --------------------------------------------------------------------------
class LabhubDummyAuthenticator(_ModeMixin, DummyAuthenticator):
    """Test mode only (validation refuses it otherwise)."""

    async def authenticate(self, handler, data):
        name = await super().authenticate(handler, data)
        if not name:
            return None
        return {"name": name if isinstance(name, str) else name["name"], "groups": []}


def _native_class():
    from nativeauthenticator import NativeAuthenticator

    class LabhubNativeAuthenticator(_ModeMixin, NativeAuthenticator):
        csv_users = Dict(config=True, help="username -> {admin, groups} from the allowed-users CSV")

        async def authenticate(self, handler, data):
            name = await super().authenticate(handler, data)
            if not name:
                return None
            info = self.csv_users.get(name, {})
            model = {"name": name, "groups": list(info.get("groups", []))}
            if info.get("admin"):
                model["admin"] = True
            return model

    return LabhubNativeAuthenticator


def _oauth_class(mode):
    if mode == "github":
        from oauthenticator.github import GitHubOAuthenticator as base
    elif mode == "azuread":
        from oauthenticator.azuread import AzureAdOAuthenticator as base
    elif mode == "auth0":
        from oauthenticator.auth0 import Auth0OAuthenticator as base
    else:
        from oauthenticator.generic import GenericOAuthenticator as base

    attrs = {}
    if mode == "azuread":
        attrs["allowed_tenants"] = List(Unicode(), config=True)

        def check_blocked_users(self, username, authentication=None):
            if self.allowed_tenants:
                tid = ((authentication or {}).get("auth_state") or {}).get(self.user_auth_state_key, {}).get("tid")
                if tid not in self.allowed_tenants:
                    self.log.warning("User %s from tenant %s not in allowed_tenants", username, tid)
                    return False
            return base.check_blocked_users(self, username, authentication)

        attrs["check_blocked_users"] = check_blocked_users
    return type(f"Labhub{base.__name__}", (_OAuthMixin, base), attrs)


# --------------------------------------------------------------------------
# handlers of the parent
# --------------------------------------------------------------------------
class MultiLoginHandler(LoginHandler):
    """/hub/login: a button per redirecting mode and a form per password mode."""

    async def _render(self, login_error=None, username=None, error_mode=None, **kwargs):
        parent = self.settings["authenticator"]
        next_url = self.get_argument("next", default="")
        nxt = {"next": next_url} if next_url else {}
        button_modes, form_modes = [], []
        for mode in parent.labhub_auth["modes"]:
            child = parent.children[mode]
            entry = {
                "name": mode,
                "button_text": parent.labhub_auth[mode]["button_text"],
                "url": url_concat(child.login_url(self.hub.base_url), nxt),
                "signup_url": "",
            }
            if mode == "native" and child.enable_signup:
                entry["signup_url"] = url_path_join(self.hub.base_url, "signup")
            (form_modes if mode in ("native", "local_groups", "dummy") else button_modes).append(entry)
        return await self.render_template(
            "labhub-login.html",
            button_modes=button_modes,
            form_modes=form_modes,
            login_error=login_error,
            error_mode=error_mode,
            username=username,
            xsrf=self.xsrf_token.decode("ascii"),
            **kwargs,
        )

    async def post(self):
        raise web.HTTPError(405, "Use the sign-in form of a login method.")


class ModeFormLoginHandler(LoginHandler):
    """POST /hub/<mode>/login for password modes; errors re-render the multi page."""

    labhub_mode = ""

    async def get(self):
        self.redirect(url_concat(self.settings["login_url"], {"next": self.get_argument("next", "")}))

    async def _render(self, login_error=None, username=None, **kwargs):
        if self.labhub_mode == "native" and login_error and username:
            info = self.authenticator.get_user(username)
            if info is not None and not info.is_authorized:
                login_error = "Your account has not been approved by an administrator yet."
        return await MultiLoginHandler._render(
            self, login_error=login_error, username=username, error_mode=self.labhub_mode, **kwargs
        )


class LabhubLogoutHandler(LogoutHandler):
    """Logout; then the identity provider's logout URL of the mode used, if any."""

    async def get(self):
        mode = self.get_secure_cookie(LOGIN_MODE_COOKIE)
        self._labhub_mode = mode.decode() if mode else ""
        self.clear_cookie(LOGIN_MODE_COOKIE, path=self.hub.base_url)
        await super().get()

    async def render_logout_page(self):
        parent = self.settings["authenticator"]
        target = parent.logout_redirect_for(getattr(self, "_labhub_mode", ""))
        if target:
            self.redirect(target, permanent=False)
        else:
            await super().render_logout_page()


# --------------------------------------------------------------------------
# the parent
# --------------------------------------------------------------------------
class LabhubAuthenticator(Authenticator):
    """JupyterHub's authenticator_class: every enabled Labhub login mode."""

    labhub_auth = Dict(config=True, help="validated `auth` section (labhub_hub.config)")

    @default("any_allow_config")
    def _any_allow_config_default(self):
        # every mode has its own allow config (validated); the parent admits nobody itself
        return True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.children = {}
        for mode in self.labhub_auth.get("modes", []):
            self.children[mode] = self._build_child(mode, self.labhub_auth[mode])
        # groups come from the identity source of every mode
        self.manage_groups = True

    # every login goes through a child; the parent itself accepts nobody
    async def authenticate(self, handler, data):
        return None

    def _common(self, child, mode, settings):
        child.labhub_mode = mode
        child.labhub_prefix = settings.get("username_prefix", "")
        child.labhub_parent = self
        child.manage_groups = True
        return child

    def _build_child(self, mode, s):
        kwargs = {"parent": self, "_deprecated_db_session": self._deprecated_db_session}
        admin_users = set(s.get("admin_users", []))
        if mode in OAUTH_MODES:
            cls = _oauth_class(mode)
            secret = resolve_secret(s["client_secret"], f"auth.{mode}.client_secret")
            common = dict(
                client_id=s["client_id"],
                client_secret=secret,
                oauth_callback_url=s["oauth_callback_url"],
                allowed_users=set(s["allowed_users"]),
                admin_users=admin_users,
                validate_server_cert=s["tls_verify"],
                http_request_kwargs={
                    "connect_timeout": s["http_timeout_seconds"],
                    "request_timeout": s["http_timeout_seconds"],
                },
                login_service=s["button_text"],
                allow_all=False,
                enable_auth_state=False,
            )
            if s["logout_redirect_url"]:
                common["logout_redirect_url"] = s["logout_redirect_url"]
            if mode == "github":
                scope = list(s["scope"]) or ["read:user"]
                if (s["allowed_organizations"] or s["teams_as_groups"]) and "read:org" not in scope:
                    scope.append("read:org")
                child = cls(
                    **kwargs,
                    **common,
                    github_url=s["github_url"],
                    allowed_organizations=set(s["allowed_organizations"]),
                    populate_teams_in_auth_state=s["teams_as_groups"],
                    manage_groups=True,
                    auth_state_groups_key=_github_team_groups if s["teams_as_groups"] else _no_groups,
                    scope=scope,
                )
            elif mode == "azuread":
                if s["allowed_tenants"] and not (s["allowed_users"] or s["allowed_groups"]):
                    common["allow_all"] = True  # the tenant check in check_blocked_users gates
                child = cls(
                    **kwargs,
                    **common,
                    tenant_id=s["tenant_id"],
                    allowed_tenants=s["allowed_tenants"],
                    username_claim=s["username_claim"],
                    manage_groups=True,
                    auth_state_groups_key=(
                        f"user.{s['groups_claim']}" if s["groups_claim"] else _no_groups
                    ),
                    allowed_groups=set(s["allowed_groups"]),
                    admin_groups=set(s["admin_groups"]),
                    scope=list(s["scope"]) or ["openid", "profile", "email"],
                )
            elif mode == "auth0":
                child = cls(
                    **kwargs,
                    **common,
                    auth0_domain=s["domain"],
                    username_claim=s["username_claim"],
                    manage_groups=True,
                    auth_state_groups_key=(
                        f"auth0_user.{s['groups_claim']}" if s["groups_claim"] else _no_groups
                    ),
                    allowed_groups=set(s["allowed_groups"]),
                    admin_groups=set(s["admin_groups"]),
                    scope=list(s["scope"]) or ["openid", "profile", "email"],
                )
            else:
                endpoints = self._oidc_endpoints(s)
                if not s["logout_redirect_url"] and endpoints.get("end_session_url"):
                    common["logout_redirect_url"] = endpoints["end_session_url"]
                child = cls(
                    **kwargs,
                    **common,
                    authorize_url=endpoints["authorize_url"],
                    token_url=endpoints["token_url"],
                    userdata_url=endpoints["userinfo_url"],
                    username_claim=s["username_claim"],
                    manage_groups=True,
                    auth_state_groups_key=(
                        f"oauth_user.{s['groups_claim']}" if s["groups_claim"] else _no_groups
                    ),
                    allowed_groups=set(s["allowed_groups"]),
                    admin_groups=set(s["admin_groups"]),
                    scope=list(s["scope"]),
                )
            child.labhub_public_url = self.labhub_auth.get("public_url", "")
        elif mode == "native":
            cls = _native_class()
            csv_users = (
                read_users_csv(s["allowed_users_csv"], "auth.native.allowed_users_csv")
                if s["allowed_users_csv"]
                else {}
            )
            admins = admin_users | set(self.labhub_auth.get("admin_users", []))
            admins |= {u for u, info in csv_users.items() if info["admin"]}
            child = cls(
                **kwargs,
                csv_users=csv_users,
                allowed_users=set(csv_users),
                admin_users=admins,
                allow_all=True,  # NativeAuthenticator's approval flag is the gate
                open_signup=False,
                enable_signup=s["enable_signup"],
                minimum_password_length=s["minimum_password_length"],
                check_common_password=s["check_common_password"],
            )
        elif mode == "cookie_sso":
            child = CookieSSOAuthenticator(
                **kwargs,
                cookie_name=s["cookie_name"],
                whoami_url=s["whoami_url"],
                timeout_seconds=s["timeout_seconds"],
                sso_login_url=s["login_url"],
                sso_logout_url=s["logout_url"],
                username_key=s["username_key"],
                groups_key=s["groups_key"],
                admin_key=s["admin_key"],
                tls_verify=s["tls_verify"],
                allowed_users=set(s["allowed_users"]),
                allowed_groups=set(s["allowed_groups"]),
                admin_users=admin_users,
                allow_all=not (s["allowed_users"] or s["allowed_groups"]),
                manage_groups=True,
            )
        elif mode == "local_groups":
            groups = {}
            for gname, g in s["groups"].items():
                ref = g["password_hash"]
                key = f"auth.local_groups.groups.{gname}.password_hash"
                value = ref["inline"] if "inline" in ref else resolve_secret(ref, key)
                if not is_supported_hash(value):
                    raise ConfigError(key, "the referenced secret is not a supported password hash")
                groups[gname] = {"members": list(g["members"]), "password_hash": value, "admin": g["admin"]}
            child = LocalGroupsAuthenticator(
                **kwargs, groups_config=groups, admin_users=admin_users, allow_all=True, manage_groups=True
            )
        elif mode == "dummy":
            child = LabhubDummyAuthenticator(**kwargs, admin_users=admin_users, allow_all=True, manage_groups=True)
        else:  # validation makes this unreachable
            raise ConfigError("auth.modes", f"unknown login mode {mode!r}")
        return self._common(child, mode, s)

    def _oidc_endpoints(self, s):
        explicit = {
            "authorize_url": s["authorize_url"],
            "token_url": s["token_url"],
            "userinfo_url": s["userinfo_url"],
            "end_session_url": s["end_session_url"],
        }
        if not s["discovery"]:
            return explicit
        try:
            doc = discover_oidc(s["issuer"], s["discovery_timeout_seconds"], s["tls_verify"])
        except (OSError, ValueError, urllib.error.URLError) as exc:
            if all(explicit[k] for k in ("authorize_url", "token_url", "userinfo_url")):
                self.log.warning("OIDC discovery at %s failed (%s); using configured endpoints", s["issuer"], exc)
                return explicit
            raise ConfigError(
                "auth.oidc.issuer",
                f"OIDC discovery at {s['issuer']}/.well-known/openid-configuration failed: {exc}",
            ) from exc
        found = {
            "authorize_url": explicit["authorize_url"] or doc.get("authorization_endpoint", ""),
            "token_url": explicit["token_url"] or doc.get("token_endpoint", ""),
            "userinfo_url": explicit["userinfo_url"] or doc.get("userinfo_endpoint", ""),
            "end_session_url": explicit["end_session_url"] or doc.get("end_session_endpoint", ""),
        }
        for name in ("authorize_url", "token_url", "userinfo_url"):
            if not found[name]:
                raise ConfigError(f"auth.oidc.{name}", f"not in the discovery document of {s['issuer']}")
        return found

    def logout_redirect_for(self, mode):
        child = self.children.get(mode)
        if child is None:
            return ""
        if mode == "cookie_sso":
            return child.sso_logout_url
        return getattr(child, "logout_redirect_url", "") or ""

    def get_handlers(self, app):
        handlers = [("/login", MultiLoginHandler), ("/logout", LabhubLogoutHandler)]
        for mode, child in self.children.items():
            if mode in OAUTH_MODES:
                handlers.append((f"/{mode}/oauth_login", bind_handler(child.login_handler, child, mode)))
                handlers.append((f"/{mode}/oauth_callback", bind_handler(child.callback_handler, child, mode)))
            elif mode == "cookie_sso":
                handlers.append((f"/{mode}/login", bind_handler(CookieSSOLoginHandler, child, mode)))
            elif mode == "native":
                handlers.append((f"/{mode}/login", bind_handler(ModeFormLoginHandler, child, mode)))
                for path, handler in child.get_handlers(app):
                    if path in ("/login", r"/login"):
                        continue
                    handlers.append((path, bind_handler(handler, child, mode)))
            else:
                handlers.append((f"/{mode}/login", bind_handler(ModeFormLoginHandler, child, mode)))
        return handlers

    def delete_user(self, user):
        for child in self.children.values():
            child.delete_user(user)
        return super().delete_user(user)

    def is_admin(self, handler, authentication):
        return authentication["name"] in self.admin_users or None


__all__ = [
    "LabhubAuthenticator",
    "CookieSSOAuthenticator",
    "LocalGroupsAuthenticator",
    "SSOUnavailable",
    "SSORejected",
    "discover_oidc",
]
