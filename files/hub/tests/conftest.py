"""Fixtures: real JupyterHub processes (jupyterhub -f <config>) behind a real
configurable-http-proxy, on free ports in 19000-19499."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
PKG_ROOT = HERE.parent
# the package is tested from the source tree (not installed): this process and
# the jupyterhub processes it starts import labhub_hub from files/hub
sys.path.insert(0, str(PKG_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PKG_ROOT), os.environ.get("PYTHONPATH")]))
# kubernetes_asyncio reads KUBECONFIG when it is imported: point it, for this test
# process and the hubs it starts, at a kubeconfig where no API server listens.
os.environ["KUBECONFIG"] = str(HERE / "kubeconfig-no-cluster.yaml")
os.environ.pop("KUBERNETES_SERVICE_HOST", None)
PORT_RANGE = range(19000, 19500)
_used_ports = set()


def free_port():
    for port in PORT_RANGE:
        if port in _used_ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port in 19000-19499")


def chp_command():
    chp = os.environ.get("LABHUB_CHP") or str(PKG_ROOT / "node_modules/.bin/configurable-http-proxy")
    if not os.path.exists(chp):
        pytest.fail(f"configurable-http-proxy not found at {chp}: run `make -C files/hub proxy`")
    return chp


HUB_CONFIG_TEMPLATE = """
import json
import labhub_hub

c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {pid_file!r}
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret_file = {cookie_file!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.log_level = "DEBUG"
c.JupyterHub.services = [{{"name": "labhub-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [
    {{"name": "labhub-test-reader", "scopes": ["read:users", "read:groups", "admin:users", "admin:servers"],
      "services": ["labhub-test"]}},
]
{pre_config}
with open({labhub_config!r}) as handle:
    labhub_hub.configure(c, json.load(handle), spawner={with_spawner!r})
{extra_config}
"""


class Hub:
    """A running JupyterHub with Labhub's configuration."""

    def __init__(self, tmp_path, labhub_config, env=None, with_spawner=False, extra_config="", pre_config=""):
        self.dir = tmp_path
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp_path / "labhub.json").write_text(json.dumps(labhub_config))
        cookie_file = tmp_path / "cookie_secret"
        cookie_file.write_text(secrets.token_hex(32))
        cookie_file.chmod(0o600)
        (tmp_path / "jupyterhub_config.py").write_text(
            HUB_CONFIG_TEMPLATE.format(
                port=self.port,
                hub_port=self.hub_port,
                proxy_api_port=self.proxy_api_port,
                chp=chp_command(),
                pid_file=str(tmp_path / "proxy.pid"),
                db=tmp_path / "hub.sqlite",
                cookie_file=str(cookie_file),
                token=self.token,
                labhub_config=str(tmp_path / "labhub.json"),
                with_spawner=with_spawner,
                extra_config=extra_config,
                pre_config=pre_config,
            )
        )
        self.env = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16), **(env or {}))
        self.proc = None
        self.log = tmp_path / "hub.log"

    def start(self, timeout=60):
        jupyterhub = str(Path(sys.executable).parent / "jupyterhub")
        self._log_handle = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [jupyterhub, "-f", str(self.dir / "jupyterhub_config.py")],
            cwd=self.dir,
            env=self.env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyterhub did not answer in {timeout}s:\n{self.log_text()[-4000:]}")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # the proxy is the hub's child; make sure nothing of this session outlives it
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log_handle.close()
        self.proc = None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def api(self, method, path, **kwargs):
        return httpx.request(
            method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"}, timeout=10, **kwargs
        )

    def client(self):
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=15)


@pytest.fixture
def start_hub(tmp_path):
    hubs = []

    def _start(labhub_config, env=None, name="hub", with_spawner=False, extra_config="", pre_config=""):
        """``pre_config``: config lines before labhub_hub.configure() (what z2jh's own
        jupyterhub_config.py sets first); ``extra_config``: lines after it."""
        d = tmp_path / name
        d.mkdir()
        hub = Hub(d, labhub_config, env=env, with_spawner=with_spawner, extra_config=extra_config,
                  pre_config=pre_config)
        hubs.append(hub)
        return hub.start()

    yield _start
    for hub in hubs:
        hub.stop()


def xsrf_of(client):
    for cookie in client.cookies.jar:
        if cookie.name == "_xsrf":
            return cookie.value
    raise AssertionError("no _xsrf cookie after rendering the login page")


def form_login(client, path, username, password):
    """Render /hub/login (sets the xsrf cookie) and post a form to ``path``."""
    page = client.get("/hub/login")
    assert page.status_code == 200, page.text
    return client.post(
        path, data={"username": username, "password": password, "_xsrf": xsrf_of(client)}
    )


def session_user(client):
    """The hub user the client's session cookie belongs to, or None."""
    response = client.get("/hub/api/user")
    if response.status_code != 200:
        return None
    return response.json()
