"""A REAL Prometheus (Debian's package, tests/harness/host-packages.sh) on a private port and data
directory, scraping every second a stand-in for the GPU Operator's DCGM exporter that serves
SYNTHETIC metrics in dcgm-exporter's exposition format (NVIDIA/dcgm-exporter 4.4.2-4.7.0: the line
template of internal/pkg/rendermetrics/render_metrics.go:47, labels gpu, UUID, pci_bus_id, device,
modelName, for a MIG instance GPU_I_PROFILE and GPU_I_ID, Hostname, then the pod attributes of
internal/pkg/transformation/const.go). The values are written by the tests, not recorded from a GPU.
Used by test_gpu_usage.py and test_gpu_idle_stop.py (fixtures ``exporter`` and ``prometheus`` in
conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from servers import ThreadServer, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def dcgm_line(field: str, gpu: int, value: float, node: str, namespace: str = "", pod: str = "",
              mig: tuple[str, str] | None = None) -> str:
    """One sample as dcgm-exporter renders it (SYNTHETIC values; see the module docstring). ``mig``:
    (profile, instance id) of a MIG instance, the labels GPU_I_PROFILE and GPU_I_ID the exporter
    adds after modelName for one."""
    instance = f',GPU_I_PROFILE="{mig[0]}",GPU_I_ID="{mig[1]}"' if mig else ""
    return (f'{field}{{gpu="{gpu}",UUID="GPU-5fd4e1c2-0000-4000-8000-00000000000{gpu}",'
            f'pci_bus_id="00000000:{0x18 + gpu:02X}:00.0",device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3"'
            f'{instance},Hostname="{node}",container="{"notebook" if pod else ""}",namespace="{namespace}",'
            f'pod="{pod}"}} {value:g}')


MIG = ("1g.10gb", "7")


class Exporter(ThreadServer):
    """SYNTHETIC DCGM exporter: serves ``self.text`` at /metrics."""

    text = ""

    def build(self) -> web.Application:
        app = web.Application()

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(text=self.text, content_type="text/plain")

        app.router.add_get("/metrics", metrics)
        return app


class Prometheus:
    """Debian's prometheus on 127.0.0.1:<free port>, its own data directory, scraping ``target``
    every second with honor_labels (the exporter's pod and namespace labels kept, as the GPU
    Operator's ServiceMonitor for dcgm-exporter does with honorLabels)."""

    def __init__(self, workdir: Path, target: str) -> None:
        if not Path(PROMETHEUS).exists():
            pytest.fail(f"prometheus not found at {PROMETHEUS}: run tests/harness/host-packages.sh (Debian's prometheus)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                          "  - job_name: dcgm-exporter\n    honor_labels: true\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list[dict]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                result = self.query(expr)
                if result:
                    return result
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"prometheus has no {expr!r} after {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
