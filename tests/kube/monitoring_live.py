"""Role monitoring's rules and dashboards against a REAL Prometheus (issue 14 item 6).

What runs for real, started here on private loopback ports:

- Prometheus and node exporter: Debian's packages (tests/harness/host-packages.sh; Prometheus
  2.42, the site runs v3.5.0 from the bundle), Prometheus with the site's own rules and the
  site's scrape jobs, each job pointed at the process below instead of its Kubernetes service
  discovery (Debian builds Prometheus without it), every second;
- kube-state-metrics v2.16.0, built from its Go module (tests/harness/kube/build-ksm.sh), against
  the real control plane of the site test, as the ``kube-state-metrics`` ServiceAccount with the
  role's RBAC (a token from the real TokenRequest API);
- the portal: ``labhub-portal demo`` (its recorder cycling every second against its SIMULATED
  cluster, its report sync writing to a private MariaDB), from portal/.venv;
- JupyterHub 5.5 from files/hub/.venv behind the real configurable-http-proxy, scraped at
  /hub/metrics with a service token that holds only ``read:metrics`` (as role jupyterhub
  registers Prometheus). Its spawner runs ``python -m http.server`` as the user's server, and
  fails on purpose for users named ``broken-*``.

What is not real: the DCGM exporter. No GPU is here, so :func:`dcgm_text` serves dcgm-exporter's
exposition: two lines recorded from a real GPU (NVIDIA/dcgm-exporter README.md at tag
4.4.2-4.7.0, "Quickstart": DCGM_FI_DEV_SM_CLOCK and DCGM_FI_DEV_MEM_CLOCK of
GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52) and SYNTHETIC samples for the site's GPU nodes, in the
line format of internal/pkg/rendermetrics/render_metrics.go (gpu, UUID, pci_bus_id, device,
modelName, GPU_I_PROFILE/GPU_I_ID for MIG instances, Hostname, then the pod attributes of
internal/pkg/transformation/const.go: container, namespace, pod), with the counters of
etc/default-counters.csv.
"""
from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import urllib.error
import urllib.parse
import urllib.request

import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
PORTAL = REPO / "portal" / ".venv" / "bin" / "labhub-portal"
HUB_VENV = REPO / "files" / "hub" / ".venv" / "bin"
CHP = REPO / "files" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
#: The README's recorded lines (see the module docstring), verbatim.
RECORDED = """# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{gpu="0", UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"} 139
# HELP DCGM_FI_DEV_MEM_CLOCK Memory clock frequency (in MHz).
# TYPE DCGM_FI_DEV_MEM_CLOCK gauge
DCGM_FI_DEV_MEM_CLOCK{gpu="0", UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"} 405
"""
#: etc/default-counters.csv of dcgm-exporter 4.4.2-4.7.0: field, type, help.
COUNTERS = [
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
]


def fetch(method: str, url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of one request; a refused or unanswered connection raises OSError."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback test servers
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dcgm_text(hub_namespace: str) -> str:
    """The exporter's page: the recorded lines, then SYNTHETIC samples (module docstring).

    gpu01 GPU 0: jupyter-alice, busy (87 %); gpu01 GPU 1: jupyter-bob, held idle (0 %); gpu02 GPU 0:
    free, with XID 79 (fallen off the bus); gpu04 (MIG, all-1g.10gb): instance 7 to jupyter-carol
    (graphics engine 42 % busy), instance 8 free."""
    gpus = [  # node, gpu, mig (profile, id) or None, pod, util %, FB used/free MiB, W, xid, engine ratio
        ("gpu01", 0, None, "jupyter-alice", 87, 40960, 40960, 512.5, 0, 0.81),
        ("gpu01", 1, None, "jupyter-bob", 0, 1024, 80896, 71.0, 0, 0.0),
        ("gpu02", 0, None, "", 0, 0, 81920, 65.2, 79, 0.0),
        ("gpu04", 0, ("1g.10gb", 7), "jupyter-carol", None, 6144, 3584, 190.0, 0, 0.42),
        ("gpu04", 0, ("1g.10gb", 8), "", None, 0, 9728, 190.0, 0, 0.0),
    ]
    lines = [RECORDED.rstrip("\n")]
    for field, kind, help_text in COUNTERS:
        lines += [f"# HELP {field} {help_text}", f"# TYPE {field} {kind}"]
        for node, gpu, mig, pod, util, used, free, watts, xid, engine in gpus:
            value = {"DCGM_FI_DEV_GPU_UTIL": util, "DCGM_FI_DEV_FB_FREE": free, "DCGM_FI_DEV_FB_USED": used,
                     "DCGM_FI_DEV_POWER_USAGE": watts, "DCGM_FI_DEV_XID_ERRORS": xid,
                     "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": 0, "DCGM_FI_PROF_GR_ENGINE_ACTIVE": engine}[field]
            if value is None:  # a MIG instance has no GPU_UTIL
                continue
            uuid = f"GPU-{int(node[-2:]):08x}-7e1c-4f00-9a00-{gpu:012x}"
            labels = (f'gpu="{gpu}",UUID="{uuid}",pci_bus_id="00000000:{0x18 + gpu:02X}:00.0",device="nvidia{gpu}",'
                      f'modelName="NVIDIA H100 80GB HBM3"')
            if mig:
                labels += f',GPU_I_PROFILE="{mig[0]}",GPU_I_ID="{mig[1]}"'
            labels += f',Hostname="{node}",container="{"notebook" if pod else ""}",'
            labels += f'namespace="{hub_namespace if pod else ""}",pod="{pod}"'
            lines.append(f"{field}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


class Exporter:
    """Serves a fixed page at /metrics (the DCGM exporter stand-in)."""

    def __init__(self, text: str) -> None:
        body = text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                if self.path == "/metrics":
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Processes:
    """Every process this module starts, stopped together; each logs to <workdir>/<name>.log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        if not Path(argv[0]).exists():
            raise AssertionError(f"{name}: {argv[0]} not found (make host-deps venvs kube sets it up)")
        with (self.workdir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd or self.workdir,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def wait_http(self, name: str, url: str, timeout: float = 90, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}:\n{self.log(name)}")
            try:
                if fetch("GET", url, headers, timeout=2)[0] < 400:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{name} did not answer {url} in {timeout} s:\n{self.log(name)}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                print(f"{name} killed after 20 s", file=sys.stderr)


def start_kube_state_metrics(procs: Processes, plane: Any, namespace: str) -> int:
    """kube-state-metrics as its ServiceAccount (role monitoring's RBAC), on a loopback port."""
    binary = subprocess.run([str(REPO / "tests/harness/kube/build-ksm.sh")], capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    status, body = plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/kube-state-metrics/token",
                                 {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                  "spec": {"expirationSeconds": 3600}})
    assert status == 201, body
    kubeconfig = procs.workdir / "ksm.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ksm",
        "clusters": [{"name": "plane",
                      "cluster": {"server": plane.server, "certificate-authority": str(plane.pki / "ca.crt")}}],
        "users": [{"name": "ksm", "user": {"token": body["status"]["token"]}}],
        "contexts": [{"name": "ksm", "context": {"cluster": "plane", "user": "ksm"}}]}))
    kubeconfig.chmod(0o600)
    port, telemetry = free_port(), free_port()
    procs.start("kube-state-metrics", [binary, f"--kubeconfig={kubeconfig}", "--host=127.0.0.1", f"--port={port}",
                                       "--telemetry-host=127.0.0.1", f"--telemetry-port={telemetry}"])
    procs.wait_http("kube-state-metrics", f"http://127.0.0.1:{telemetry}/readyz")
    return port


def start_node_exporter(procs: Processes) -> int:
    port = free_port()
    procs.start("node-exporter", [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"])
    procs.wait_http("node-exporter", f"http://127.0.0.1:{port}/metrics")
    return port


def start_portal(procs: Processes) -> int:
    """The portal's demo: its recorder every second, its report sync to a private MariaDB."""
    port = free_port()
    procs.start("portal", [str(PORTAL), "demo", "--port", str(port), "--record-interval", "1", "--history-days", "0.1",
                           "--mariadb"], env={k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")})
    procs.wait_http("portal", f"http://127.0.0.1:{port}/metrics", timeout=180)
    return port


HUB_CONFIG = """
import sys
from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()  # noqa: F821


class HttpServerSpawner(SimpleLocalProcessSpawner):
    # the user's server is python -m http.server (JupyterHub takes any non-5xx answer as up);
    # users named broken-* fail to start, on purpose
    async def start(self):
        if self.user.name.startswith("broken-"):
            raise RuntimeError("this test's spawner fails broken-* users on purpose")
        return await super().start()

    def get_args(self):
        return [str(self.port), "--bind", "127.0.0.1"]


c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{workdir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = HttpServerSpawner
c.Spawner.cmd = [sys.executable, "-m", "http.server"]
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.JupyterHub.services = [
    {{"name": "labhub-prometheus", "api_token": {metrics_token!r}}},
    {{"name": "tester", "api_token": {admin_token!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "labhub-prometheus-service", "scopes": ["read:metrics"], "services": ["labhub-prometheus"]}},
    {{"name": "tester", "scopes": ["admin:users", "admin:servers"], "services": ["tester"]}},
]
"""


class Hub:
    """A real JupyterHub (module docstring)."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.dir = procs.workdir / "hub"
        self.dir.mkdir()
        (self.dir / "cookie_secret").write_text(secrets.token_hex(32))
        (self.dir / "cookie_secret").chmod(0o600)
        self.port, self.hub_port = free_port(), free_port()
        self.metrics_token, self.admin_token = secrets.token_hex(16), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=self.hub_port, proxy_api_port=free_port(), chp=str(CHP), workdir=self.dir,
            metrics_token=self.metrics_token, admin_token=self.admin_token))
        procs.start("jupyterhub", [str(HUB_VENV / "jupyterhub"), "-f", str(self.dir / "jupyterhub_config.py")],
                    env=dict(os.environ, CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16),
                             PATH=f"{HUB_VENV}{os.pathsep}{os.environ.get('PATH', '')}"), cwd=self.dir)
        procs.wait_http("jupyterhub", f"{self.url}/hub/api/")

    def api(self, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
        status, body = fetch(method, f"{self.url}/hub/api{path}", timeout=60,
                             headers={"Authorization": f"token {token or self.admin_token}"})
        return status, json.loads(body) if body.strip().startswith((b"{", b"[")) else body

    def spawn(self, user: str) -> int:
        """Create ``user`` and ask for their server; wait until the start ended (either way)."""
        created, body = self.api("POST", f"/users/{user}")
        assert created == 201, (created, body)
        status, _body = self.api("POST", f"/users/{user}/server")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{user}")[1].get("pending"):
                break
            time.sleep(0.3)
        return status


class Prometheus:
    """Debian's Prometheus with the site's rules and scrape jobs (module docstring)."""

    def __init__(self, procs: Processes, prometheus_yml: str, rules_yml: str, targets: dict[str, str],
                 tokens: dict[str, str]) -> None:
        """``targets``: job name -> host:port that stands for the job's service discovery; jobs not
        named are left out (nothing runs behind them here). ``tokens``: job -> bearer token."""
        self.procs = procs
        root = procs.workdir / "prometheus"
        root.mkdir()
        (root / "rules").mkdir()
        (root / "rules" / "labhub.yml").write_text(rules_yml)
        config = yaml.safe_load(prometheus_yml)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = []
        for job in config["scrape_configs"]:
            name = job["job_name"]
            if name == "prometheus":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.port}"]}]
            elif name not in targets:
                continue
            else:
                # the Kubernetes service discovery and the relabelling of its labels stand aside
                job.pop("kubernetes_sd_configs", None)
                job.pop("relabel_configs", None)
                job["static_configs"] = [{"targets": [targets[name]]}]
                job.pop("scheme", None)
                job.pop("tls_config", None)
            if name in tokens:
                token_file = root / f"{name}.token"
                token_file.write_text(tokens[name])
                token_file.chmod(0o600)
                job["authorization"] = {"credentials_file": str(token_file)}
            job["scrape_interval"] = "1s"
            jobs.append(job)
        missing = set(targets) - {j["job_name"] for j in jobs}
        assert not missing, f"the site's configuration has no scrape job {sorted(missing)}"
        config.update(scrape_configs=jobs, rule_files=[str(root / "rules" / "*.yml")])
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config.pop("alerting", None)  # no Alertmanager runs here; alerts are read from Prometheus
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        procs.start("prometheus", [PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                                   "--log.level=warn"])
        procs.wait_http("prometheus", f"{self.url}/-/ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, text = fetch("GET", f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        body = json.loads(text)
        assert status == 200 and body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])

    def get(self, path: str) -> Any:
        return json.loads(fetch("GET", f"{self.url}/api/v1/{path}")[1])["data"]

    def wait_for(self, expr: str, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            if self.procs.procs["prometheus"].poll() is not None:
                break
            time.sleep(0.5)
        targets = {t["labels"]["job"]: (t["health"], t.get("lastError")) for t in self.get("targets")["activeTargets"]}
        raise AssertionError(f"Prometheus has no {expr!r} after {timeout} s; targets: {json.dumps(targets)}\n"
                             f"{self.procs.log('prometheus')}")


def dashboard_queries(boards: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(dashboard, panel, expression) of every target of every panel, with the dashboard's
    variables as Grafana would send them: its constants, every node, a 1m rate interval."""
    out = []
    for name, board in sorted(boards.items()):
        constants = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"}
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m").replace('=~"$node"', '=~".*"')
                for key, value in constants.items():
                    expr = expr.replace("$" + key, value)
                assert "$" not in expr, (name, panel["title"], expr)
                out.append((name, panel["title"], expr))
    return out
