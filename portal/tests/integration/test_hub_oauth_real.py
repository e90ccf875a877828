"""REAL JupyterHub: the portal's hub OAuth login and hub-API stops against a real JupyterHub process.

Unlike tests/test_api.py (which uses the FAKE hub of tests/fakes.py), everything on the hub side here
is real:

* JupyterHub 5.5 (files/hub/.venv, the version z2jh 4.4.0 ships) behind a real
  configurable-http-proxy (files/hub/node_modules), DummyAuthenticator with a password;
* the portal as a real process (``labhub-portal serve`` from portal/.venv, settings from a
  PORTAL_* env file like the one roles/portal writes), on a real throwaway PostgreSQL
  (tests/servers.py);
* the portal's service registration is exactly tests/integration/hub_service_values.json, which
  tests/unit/test_jupyterhub_values.py checks against what roles/jupyterhub renders; it goes through
  an emulation of z2jh's own translation of hub.services / hub.loadRoles (the chart's
  jupyterhub_config.py is not in this repository).

* the hub also runs Labhub's notice endpoint (files/hub labhub_hub/notices.py, as
  labhub_hub.configure() installs it in the chart's hub): the GPU idle stop policy's notice goes
  through the portal's own HubClient with the service's real token and role;
* Kubernetes is the real control plane of tests/kube.py: the portal process runs on the kubeconfig
  the portal role renders (its own ServiceAccount and RBAC) and checks stop targets against the
  real pods of its hub namespace.

Test double (labelled): the hub's spawner is LocalHTTPSpawner below (one ``python -m http.server``
per user instead of KubeSpawner), so the hub's server and the Kubernetes pod of a user are separate
things here: the pod is created in the API by the test, KubeSpawner-shaped.

Browser side: an httpx client with a cookie jar that follows redirects, doing what a browser does.
Skipped (with the reason) only when the hub environment is missing: ``make -C portal test`` builds it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from kube import Namespace, singleuser_pod
from servers import free_port
from labhub_portal.db.migrate import upgrade

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
HUB_DIR = Path(os.environ.get("LABHUB_HUB_DIR", REPO / "files" / "hub"))
HUB_BIN = HUB_DIR / ".venv" / "bin" / "jupyterhub"
CHP = Path(os.environ.get("LABHUB_CHP", HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"))
PORTAL_BIN = Path(sys.executable).parent / "labhub-portal"

pytestmark = pytest.mark.skipif(
    not (HUB_BIN.exists() and CHP.exists()),
    reason=f"real JupyterHub environment missing ({HUB_BIN} / {CHP}): run `make -C files/hub venv proxy` "
           "(`make -C portal test` does it)")

ADMIN_GROUP = "portal-admins"
PASSWORD = "hub-test-password"
SERVICE_KEY = "labhub-portal"

HUB_CONFIG = """
import json
import subprocess
import sys

from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port

c = get_config()  # noqa: F821


class LocalHTTPSpawner(Spawner):
    # TEST spawner: the user's 'server' is `python -m http.server` on a free loopback port.
    proc = None

    async def start(self):
        port = random_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open({pids!r}, "a") as handle:
            handle.write(f"{{self.user.name}} {{self.proc.pid}}\\n")
        return ("127.0.0.1", port)

    async def poll(self):
        return 0 if self.proc is None else self.proc.poll()

    async def stop(self, now=False):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret = bytes.fromhex({cookie_secret!r})
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"alice"}}
c.JupyterHub.load_groups = {{{admin_group!r}: {{"users": ["carol"]}}}}
c.JupyterHub.spawner_class = LocalHTTPSpawner
c.Spawner.http_timeout = 30

# ---- Labhub's hub extensions (files/hub): the notice endpoint the portal's idle GPU policy uses ----
sys.path.insert(0, {hub_package_root!r})
from labhub_hub.notices import install as install_notices  # noqa: E402

c.JupyterHub.template_vars = {{"announcement": ""}}  # z2jh's hub.templateVars, set before extraConfig
install_notices(c)

# ---- z2jh's translation of hub.services / hub.loadRoles (emulated; same logic as the chart) ----
values = json.loads({hub_values!r})
secret = json.loads({hub_secret!r})  # what hub.existingSecret holds
c.JupyterHub.services = []
c.JupyterHub.load_roles = []
for key, service in values["services"].items():
    service.setdefault("name", key)
    service.pop("apiToken", None)
    service["api_token"] = secret[f"hub.services.{{key}}.apiToken"]
    c.JupyterHub.services.append(service)
for key, role in values["loadRoles"].items():
    role.setdefault("name", key)
    c.JupyterHub.load_roles.append(role)
"""


def service_values(portal_url: str) -> dict:
    """hub_service_values.json for this portal URL (the role renders the same shape)."""
    text = (HERE / "hub_service_values.json").read_text().replace("@PORTAL_PUBLIC_URL@", portal_url)
    text = text.replace("@PORTAL_ADMIN_GROUP@", ADMIN_GROUP)
    values = json.loads(text)
    values.pop("_comment")
    return values


def _wait(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not within {timeout}s\n{tail}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    try:  # the proxy and spawned servers are in the same session
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class World:
    """A real hub (+ proxy), the real portal process, the real Kubernetes API."""

    def __init__(self, tmp: Path, pg_url: str, kube: Namespace) -> None:
        self.tmp = tmp
        self.kube = kube
        self.hub_port, self.hub_api_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.portal_port = free_port()
        self.hub_url = f"http://127.0.0.1:{self.hub_port}"
        self.portal_url = f"http://127.0.0.1:{self.portal_port}"
        self.service_token = secrets.token_hex(32)  # what the jupyterhub role generates (64 hex)
        self.admin_token = secrets.token_hex(32)
        self.pids = tmp / "spawned.pids"
        self.hub_log, self.portal_log = tmp / "hub.log", tmp / "portal.log"
        values = service_values(self.portal_url)
        # a second service for the test itself: starts servers and reads the hub's state
        values["services"]["test-admin"] = {}
        values["loadRoles"]["test-admin"] = {"services": ["test-admin"], "scopes": ["admin:users", "admin:servers", "read:tokens"]}
        # a site that lets one more user reach the portal through the hub (dave: no admin, no group):
        # the portal's own check must still refuse him
        values["loadRoles"]["test-dave-portal-access"] = {"users": ["dave"],
                                                          "scopes": [f"access:services!service={SERVICE_KEY}"]}
        hub_secret = {f"hub.services.{SERVICE_KEY}.apiToken": self.service_token,
                      "hub.services.test-admin.apiToken": self.admin_token}
        (tmp / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.hub_port, hub_port=self.hub_api_port, proxy_api_port=self.proxy_api_port, chp=str(CHP),
            proxy_pid=str(tmp / "proxy.pid"), db=tmp / "hub.sqlite", cookie_secret=secrets.token_hex(32),
            password=PASSWORD, admin_group=ADMIN_GROUP, pids=str(self.pids), hub_values=json.dumps(values),
            hub_secret=json.dumps(hub_secret), hub_package_root=str(HUB_DIR)))
        # the portal's settings, as roles/portal writes them to /etc/labhub/portal.env
        client_id = values["services"][SERVICE_KEY]["oauth_client_id"]
        self.portal_env = {
            "PORTAL_BIND_HOST": "127.0.0.1", "PORTAL_BIND_PORT": str(self.portal_port),
            "PORTAL_DATABASE_URL": pg_url, "PORTAL_KUBECONFIG": kube.kubeconfig, "PORTAL_HUB_NAMESPACE": kube.name,
            "PORTAL_HUB_API_URL": f"{self.hub_url}/hub/api",  # through the proxy, like the role's default
            "PORTAL_HUB_PUBLIC_URL": self.hub_url, "PORTAL_HUB_API_TOKEN": self.service_token,
            "PORTAL_OAUTH_CLIENT_ID": client_id, "PORTAL_ADMIN_GROUP": ADMIN_GROUP,
            "PORTAL_BASE_URL": self.portal_url, "PORTAL_TOKEN": secrets.token_hex(32),
            "PORTAL_COOKIE_SECRET": secrets.token_hex(32), "PORTAL_COOKIE_SECURE": "false",
            "PORTAL_RECORD_INTERVAL": "3600", "PORTAL_LOG_LEVEL": "info"}
        env_file = tmp / "portal.env"
        env_file.write_text("".join(f"{k}='{v}'\n" for k, v in sorted(self.portal_env.items())))
        env_file.chmod(0o600)
        self.env_file = env_file
        self.hub = self.portal = None

    def start(self) -> "World":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "JUPYTERHUB_"))}
        hub_env = dict(env, CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16),
                       PATH=f"{HUB_BIN.parent}{os.pathsep}{env.get('PATH', '')}")
        hub_env.pop("PYTHONPATH", None)
        self._hub_log = open(self.hub_log, "wb")
        self.hub = subprocess.Popen([str(HUB_BIN), "-f", str(self.tmp / "jupyterhub_config.py")], cwd=self.tmp,
                                    env=hub_env, stdout=self._hub_log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self._portal_log = open(self.portal_log, "wb")
        self.portal = subprocess.Popen([str(PORTAL_BIN), "serve"], cwd=self.tmp,
                                       env=dict(env, PORTAL_ENV_FILE=str(self.env_file)),
                                       stdout=self._portal_log, stderr=subprocess.STDOUT, start_new_session=True)

        def up(url, proc, log):
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(lambda: up(f"{self.hub_url}/hub/api/", self.hub, self.hub_log), 90, "JupyterHub", self.hub_log)
        _wait(lambda: up(f"{self.portal_url}/healthz", self.portal, self.portal_log), 60, "the portal",
              self.portal_log)
        return self

    def stop(self) -> None:
        _stop(self.portal)
        _stop(self.hub)
        for handle in ("_hub_log", "_portal_log"):
            if hasattr(self, handle):
                getattr(self, handle).close()

    def hub_api(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.hub_url}/hub/api{path}", timeout=15,
                             headers={"Authorization": f"token {token or self.admin_token}"}, **kwargs)

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=True, timeout=30)

    def browser_login(self, client: httpx.Client, user: str) -> httpx.Response:
        """Open the portal, get sent to the hub's login page, log in there, follow the redirects
        (hub OAuth authorize -> portal /oauth_callback -> portal page). Returns the last response."""
        page = client.get(self.portal_url + "/")
        assert urlsplit(str(page.url)).path == "/hub/login", (page.url, page.text[:500])
        assert page.status_code == 200
        chain = [str(r.url) for r in page.history]
        assert any("/login?next=" in u for u in chain) and any("/hub/api/oauth2/authorize?" in u for u in chain), chain
        xsrf = client.cookies.get("_xsrf", domain="127.0.0.1") or client.cookies.get("_xsrf")
        return client.post(str(page.url), data={"username": user, "password": PASSWORD, "_xsrf": xsrf})


@pytest.fixture(scope="module")
def world(pg_server, kube_cluster, tmp_path_factory):
    pg_server.createdb("hubreal")
    upgrade(pg_server.url("hubreal"))
    kube = kube_cluster.namespace()
    tmp = tmp_path_factory.mktemp("hub-oauth-real")
    world = World(tmp, pg_server.url("hubreal"), kube)
    try:
        yield world.start()
    finally:
        world.stop()
        kube.cleanup()


def test_real_hub_admin_logs_in_through_oauth_and_reaches_the_ui(world):
    with world.browser() as client:
        final = world.browser_login(client, "alice")
        assert final.status_code == 200, final.text[:1000]
        assert str(final.url) == world.portal_url + "/" or urlsplit(str(final.url)).netloc == f"127.0.0.1:{world.portal_port}"
        chain = [str(r.url) for r in final.history]
        callback = next(u for u in chain if u.startswith(world.portal_url + "/oauth_callback?"))
        query = parse_qs(urlsplit(callback).query)
        assert query["code"] and query["state"]
        assert "<html" in final.text.lower() and "alice" in final.text  # the portal's UI, signed in as alice
        assert client.cookies.get("labhub_portal_session")
        # the session works on the API too (no bearer token), as the hub user
        me = client.get(world.portal_url + "/api/pods")
        assert me.status_code == 200, me.text
    # the hub really issued a token to the portal's OAuth client for alice
    tokens = world.hub_api("GET", "/users/alice/tokens")
    assert tokens.status_code == 200, tokens.text
    issued = [t for t in tokens.json()["api_tokens"] if t.get("oauth_client")]
    assert [t["oauth_client"] for t in issued] == [f"JupyterHub service {SERVICE_KEY}"], tokens.text
    # identify-only: the portal cannot act as alice on the hub
    assert set(issued[0]["scopes"]) == {"read:users:name!user=alice", "read:users:groups!user=alice",
                                        f"access:services!service={SERVICE_KEY}"}, issued


def test_real_hub_non_admin_outside_the_group_is_refused_by_the_hub(world):
    """The role grants access:services!service=labhub-portal only to the admin group (admins have
    it anyway), so the hub itself refuses the OAuth authorization with its 403 page."""
    with world.browser() as client:
        final = world.browser_login(client, "bob")
        assert final.status_code == 403, final.text[:1000]
        assert urlsplit(str(final.url)).path == "/hub/api/oauth2/authorize"
        assert not any(str(r.url).startswith(world.portal_url + "/oauth_callback") for r in final.history)
        assert client.cookies.get("labhub_portal_session") is None
        assert client.get(world.portal_url + "/api/pods").status_code == 401
    # bob exists on the hub and is logged in there
    assert world.hub_api("GET", "/users/bob").json()["admin"] is False


def test_real_hub_user_with_service_access_but_no_admin_rights_is_refused_by_the_portal(world):
    """dave may reach the portal through the hub (a site-granted role), is neither admin nor in the
    group: the real hub completes the OAuth flow and the portal answers its own 403."""
    with world.browser() as client:
        final = world.browser_login(client, "dave")
        assert final.status_code == 403, final.text[:1000]
        assert urlsplit(str(final.url)).path == "/oauth_callback"
        assert final.headers["content-type"].startswith("text/html")  # a page for the browser, not JSON
        assert "neither a hub admin nor in the admin group" in final.text and "<code>dave</code>" in final.text
        assert f"<code>{ADMIN_GROUP}</code>" in final.text and f'href="{world.hub_url}/hub/home"' in final.text
        assert client.cookies.get("labhub_portal_session") is None
        assert client.get(world.portal_url + "/api/pods").status_code == 401


def test_real_hub_group_member_is_allowed(world):
    user = world.hub_api("GET", "/users/carol").json()
    assert user["admin"] is False and user["groups"] == [ADMIN_GROUP]
    with world.browser() as client:
        final = world.browser_login(client, "carol")
        assert final.status_code == 200, final.text[:1000]
        assert urlsplit(str(final.url)).netloc == f"127.0.0.1:{world.portal_port}"
        assert client.get(world.portal_url + "/api/pods").status_code == 200


def test_real_hub_service_token_has_only_the_scopes_it_needs(world):
    who = world.hub_api("GET", "/user", token=world.service_token)
    assert who.status_code == 200 and who.json()["kind"] == "service", who.text
    assert set(who.json()["scopes"]) >= {"delete:servers"}
    # least privilege: it can neither start servers nor list or change users
    assert world.hub_api("POST", "/users/alice/server", token=world.service_token).status_code == 403
    assert world.hub_api("GET", "/users", token=world.service_token).status_code == 403
    assert world.hub_api("POST", "/users/mallory", token=world.service_token).status_code == 403


def test_real_hub_stop_from_the_portal_stops_the_server_on_the_hub(world):
    started = world.hub_api("POST", "/users/carol/server")
    assert started.status_code in (201, 202), started.text
    _wait(lambda: world.hub_api("GET", "/users/carol").json().get("server"), 30, "carol's server", world.hub_log)
    pid = int(world.pids.read_text().split()[-1])
    os.kill(pid, 0)  # the spawned server process runs
    pod = world.kube.start(singleuser_pod("carol"))["jupyter-carol"]  # what KubeSpawner's pod looks like
    with world.browser() as client:
        assert world.browser_login(client, "alice").status_code == 200
        csrf = client.cookies.get("labhub_portal_csrf")
        assert csrf
        refused = client.post(world.portal_url + "/api/pods/stop", json={"pods": ["jupyter-carol"]})
        assert refused.status_code == 403  # a browser session must send the CSRF header
        response = client.post(world.portal_url + "/api/pods/stop", json={"pods": ["jupyter-carol"]},
                               headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["result"] == "stopping" and result["method"] == "hub", result
    after = world.kube.pod("jupyter-carol")  # stopped by the hub, not by deleting the pod
    assert after is not None and after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert "deletionTimestamp" not in after["metadata"]
    # the real hub's state changed: no server any more, and the spawned process is gone
    _wait(lambda: world.hub_api("GET", "/users/carol").json().get("server") is None, 30, "the stop", world.hub_log)

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    _wait(gone, 15, "the server process to exit")
    assert "labhub-portal" in world.hub_log.read_text(errors="replace")  # the hub logged the service's request


async def test_real_hub_shows_the_portals_notice_to_the_user(world):
    """The GPU idle stop policy's notice (labhub_portal.hubapi, the portal's own client) on the real
    hub with the portal's real service token and role (delete:servers only): the user sees it on
    their hub page, escaped; removing it removes it; the hub tells an unknown user from a missing
    endpoint; a wrong token is refused."""
    from types import SimpleNamespace

    from pydantic import SecretStr

    from labhub_portal.hubapi import HubClient, HubError, NoNoticeEndpoint

    def portal_client(token: str) -> HubClient:
        return HubClient(SimpleNamespace(hub_api_url=world.portal_env["PORTAL_HUB_API_URL"],
                                         hub_api_token=SecretStr(token), stop_timeout=10.0))

    text = "Your server has held its GPUs idle. It will be stopped at 2026-12-07 15:30 CST <unless used>."
    client = portal_client(world.service_token)
    try:
        await client.post_notice("carol", "", text)
        with pytest.raises(HubError) as unknown:
            await client.post_notice("nobody-here", "", text)
        assert not isinstance(unknown.value, NoNoticeEndpoint) and "No such user" in str(unknown.value)
        with httpx.Client(base_url=world.hub_url, timeout=15) as carol:  # no redirects: no server is started
            carol.get("/hub/login")
            logged_in = carol.post("/hub/login", data={"username": "carol", "password": PASSWORD,
                                                       "_xsrf": carol.cookies.get("_xsrf")})
            assert logged_in.status_code == 302, logged_in.text[:500]
            home = carol.get("/hub/home").text
            assert "stopped at 2026-12-07 15:30 CST &lt;unless used&gt;." in home and "<unless used>" not in home
            await client.delete_notice("carol", "")
            assert "stopped at 2026-12-07" not in carol.get("/hub/home").text
    finally:
        await client.close()
    wrong = portal_client("f" * 64)
    try:
        with pytest.raises(HubError, match="HTTP 403"):
            await wrong.post_notice("carol", "", text)
    finally:
        await wrong.close()
