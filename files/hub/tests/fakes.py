"""TEST-ONLY fakes of external services (clearly labelled simulators).

* ``TestOAuthProvider``: a local OAuth2 / OpenID Connect provider speaking the
  GitHub OAuth + REST dialect (``/login/oauth/*``, ``/api/v3/*``) and the OIDC
  dialect (``/.well-known/openid-configuration``, ``/oidc/*``).  It stands in
  for github.com and for Keycloak; it is not a real identity provider.  The
  "user session at the provider" is the ``provider_session`` cookie a test sends
  to the authorize endpoint.
* ``FakeSSO``: a company SSO "who am I" endpoint that maps a session cookie to a
  user, and a login page.

Both run real HTTP servers (tornado) on 127.0.0.1 in a background thread.
"""

import asyncio
import base64
import json
import secrets
import threading
from urllib.parse import urlencode

from tornado import web
from tornado.httpserver import HTTPServer


class _ServerThread:
    def __init__(self, app, port):
        self.app = app
        self.port = port
        self._loop = None
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = HTTPServer(self.app)
        self._server.listen(self.port, address="127.0.0.1")
        self._ready.set()
        self._loop.run_forever()
        self._server.stop()
        self._loop.close()

    def start(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self):
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------
# test OAuth2 / OIDC provider
# ---------------------------------------------------------------------------
class _ProviderBase(web.RequestHandler):
    @property
    def provider(self):
        return self.settings["provider"]

    def bearer_user(self):
        header = self.request.headers.get("Authorization", "")
        token = header.split(" ", 1)[1] if " " in header else ""
        user = self.provider.tokens.get(token)
        if user is None:
            raise web.HTTPError(401)
        return user


class _Authorize(_ProviderBase):
    def get(self):
        p = self.provider
        client_id = self.get_argument("client_id")
        redirect_uri = self.get_argument("redirect_uri")
        if client_id != p.client_id:
            raise web.HTTPError(400, "unknown client_id")
        if p.redirect_uris and redirect_uri not in p.redirect_uris:
            raise web.HTTPError(400, f"redirect_uri not registered: {redirect_uri}")
        user = self.get_cookie("provider_session")
        if user not in p.users:
            raise web.HTTPError(401, "not logged in at the provider")
        code = secrets.token_urlsafe(16)
        p.codes[code] = (user, redirect_uri)
        p.authorize_requests.append(dict((k, self.get_argument(k)) for k in self.request.arguments))
        sep = "&" if "?" in redirect_uri else "?"
        self.redirect(redirect_uri + sep + urlencode({"code": code, "state": self.get_argument("state", "")}))


class _Token(_ProviderBase):
    def post(self):
        p = self.provider
        client_id = self.get_argument("client_id", None)
        client_secret = self.get_argument("client_secret", None)
        header = self.request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
        if client_id != p.client_id or client_secret != p.client_secret:
            raise web.HTTPError(401, "bad client credentials")
        code = self.get_argument("code")
        if code not in p.codes:
            raise web.HTTPError(400, "bad code")
        user, redirect_uri = p.codes.pop(code)
        if self.get_argument("redirect_uri", redirect_uri) != redirect_uri:
            raise web.HTTPError(400, "redirect_uri mismatch")
        token = secrets.token_urlsafe(16)
        p.tokens[token] = user
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"access_token": token, "token_type": "bearer", "scope": "read:org openid profile"}))


class _GitHubUser(_ProviderBase):
    def get(self):
        user = self.bearer_user()
        info = self.provider.users[user]
        self.finish({"login": user, "id": info["id"], "name": user.title(), "email": f"{user}@example.test"})


class _GitHubTeams(_ProviderBase):
    def get(self):
        user = self.bearer_user()
        teams = []
        for t in self.provider.users[user].get("teams", []):
            org, slug = t.split(":")
            teams.append({"slug": slug, "name": slug, "organization": {"login": org}})
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(teams))


class _GitHubOrgMember(_ProviderBase):
    def get(self, org, member):
        self.bearer_user()
        info = self.provider.users.get(member, {})
        self.set_status(204 if org in info.get("orgs", []) else 404)
        self.finish()


class _GitHubTeamMember(_ProviderBase):
    def get(self, org, team, member):
        self.bearer_user()
        info = self.provider.users.get(member, {})
        self.set_status(204 if f"{org}:{team}" in info.get("teams", []) else 404)
        self.finish()


class _Discovery(_ProviderBase):
    def get(self):
        base = self.provider.url
        self.finish(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/oidc/authorize",
                "token_endpoint": f"{base}/oidc/token",
                "userinfo_endpoint": f"{base}/oidc/userinfo",
                "end_session_endpoint": f"{base}/oidc/logout",
            }
        )


class _UserInfo(_ProviderBase):
    def get(self):
        user = self.bearer_user()
        info = self.provider.users[user]
        self.finish({"sub": str(info["id"]), "preferred_username": user, "groups": info.get("groups", [])})


class TestOAuthProvider(_ServerThread):
    """TEST PROVIDER (simulator) for GitHub-style OAuth and OIDC flows."""

    __test__ = False  # not a pytest class

    def __init__(self, port, client_id, client_secret, users, redirect_uris=()):
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = users
        self.redirect_uris = set(redirect_uris)
        self.codes, self.tokens, self.authorize_requests = {}, {}, []
        app = web.Application(
            [
                (r"/login/oauth/authorize", _Authorize),
                (r"/login/oauth/access_token", _Token),
                (r"/api/v3/user", _GitHubUser),
                (r"/api/v3/user/teams", _GitHubTeams),
                (r"/api/v3/orgs/([^/]+)/members/([^/]+)", _GitHubOrgMember),
                (r"/api/v3/orgs/([^/]+)/teams/([^/]+)/members/([^/]+)", _GitHubTeamMember),
                (r"/.well-known/openid-configuration", _Discovery),
                (r"/oidc/authorize", _Authorize),
                (r"/oidc/token", _Token),
                (r"/oidc/userinfo", _UserInfo),
            ],
            provider=self,
        )
        super().__init__(app, port)


# ---------------------------------------------------------------------------
# fake company SSO
# ---------------------------------------------------------------------------
class _WhoAmI(web.RequestHandler):
    async def get(self):
        sso = self.settings["sso"]
        sso.whoami_calls += 1
        if sso.hang_seconds:
            await asyncio.sleep(sso.hang_seconds)
        session = self.get_cookie(sso.cookie_name)
        if session not in sso.sessions:
            raise web.HTTPError(401)
        self.finish(sso.sessions[session])


class _SSOLogin(web.RequestHandler):
    def get(self):
        self.finish("company sign-on page")


class FakeSSO(_ServerThread):
    """TEST-ONLY company SSO: cookie -> who-am-I JSON."""

    def __init__(self, port, cookie_name, sessions):
        self.cookie_name = cookie_name
        self.sessions = sessions
        self.whoami_calls = 0
        self.hang_seconds = 0
        app = web.Application([(r"/whoami", _WhoAmI), (r"/login", _SSOLogin)], sso=self)
        super().__init__(app, port)
