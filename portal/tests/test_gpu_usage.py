"""Each running server's GPU utilisation and GPU memory (issue 13, item 5) from a REAL Prometheus.

Prometheus is Debian's (tests/harness/host-packages.sh), started here on a private port and data
directory, scraping every second an exporter that serves SYNTHETIC metrics in the DCGM exporter's
exposition format (tests/prom.py). The values are written for the test, not recorded from a GPU.
The pods are real pods of the real control plane.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from kube import singleuser_pod
from prom import MIG, dcgm_line
from testlib import AUTH, pod_listing, running_app

GIB = 2**30


async def _pods(client):
    return await pod_listing(client, "gpu_usage")


async def test_gpu_use_per_server_from_a_real_prometheus(kube, exporter, prometheus, settings_factory,
                                                         tx_sessionmaker):
    kube.start(singleuser_pod("alice"), singleuser_pod("bob"), singleuser_pod("carol"), singleuser_pod("dave"),
               singleuser_pod("erin"))
    ns = kube.name
    exporter.text = "\n".join([
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).", "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
        dcgm_line("DCGM_FI_DEV_GPU_UTIL", 0, 80, "gpu1", ns, "jupyter-alice"),
        dcgm_line("DCGM_FI_DEV_GPU_UTIL", 1, 60, "gpu1", ns, "jupyter-alice"),
        dcgm_line("DCGM_FI_DEV_GPU_UTIL", 2, 0, "gpu1", ns, "jupyter-bob"),   # held, idle
        dcgm_line("DCGM_FI_DEV_GPU_UTIL", 3, 95, "gpu1"),                      # no pod: not a server's
        dcgm_line("DCGM_FI_DEV_GPU_UTIL", 4, 50, "gpu1", "other", "jupyter-alice"),  # another namespace
        # MIG instances report no GPU_UTIL: their graphics engine activity (a ratio) is their busy measure
        "# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.",
        "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge",
        dcgm_line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 5, 0.45, "gpu2", ns, "jupyter-dave", mig=MIG),
        dcgm_line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 6, 0.01, "gpu2", ns, "jupyter-erin", mig=("2g.20gb", "3")),
        # a full GPU's own profiling series (no GPU_I_ID): its GPU_UTIL is the measure, this is not counted
        dcgm_line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0, 0.99, "gpu1", ns, "jupyter-alice"),
        "# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).", "# TYPE DCGM_FI_DEV_FB_USED gauge",
        dcgm_line("DCGM_FI_DEV_FB_USED", 0, 10240, "gpu1", ns, "jupyter-alice"),
        dcgm_line("DCGM_FI_DEV_FB_USED", 1, 2048, "gpu1", ns, "jupyter-alice"),
        dcgm_line("DCGM_FI_DEV_FB_USED", 2, 0, "gpu1", ns, "jupyter-bob"),
    ]) + "\n"
    prometheus.wait_for(f'DCGM_FI_DEV_FB_USED{{namespace="{ns}"}}')

    # without PORTAL_PROMETHEUS_URL: said so, nothing read
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (_app, client):
        gpu, pods = await _pods(client)
        assert gpu["state"] == "not configured" and pods["jupyter-alice"]["gpu_utilization"] is None

    settings = settings_factory(prometheus_url=prometheus.url + "/", usage_metrics_ttl=0.01)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (_app, client):
        gpu, pods = await _pods(client)
        assert gpu["state"] == "ok" and gpu["read_at"], gpu
        assert pods["jupyter-alice"]["gpu_utilization"] == pytest.approx(70.0)  # average of its two GPUs
        assert pods["jupyter-alice"]["gpu_memory_usage"] == 12 * GIB            # 10240 + 2048 MiB
        assert pods["jupyter-bob"]["gpu_utilization"] == 0.0 and pods["jupyter-bob"]["gpu_memory_usage"] == 0
        assert pods["jupyter-carol"]["gpu_utilization"] is None  # no GPU metrics for her pod
        assert pods["jupyter-dave"]["gpu_utilization"] == pytest.approx(45.0)  # MIG: 0.45 x 100
        assert pods["jupyter-erin"]["gpu_utilization"] == pytest.approx(1.0)
        page = await client.get("/pods", headers={**AUTH, "Accept": "text/html"})
        assert "GPU busy</dt><dd>70 %, 12.00 GiB GPU memory" in page.text, page.text

        # busy: not idle; quiet but reported for less than the default hour: not judged yet
        assert pods["jupyter-alice"]["gpu_idle"] is False and pods["jupyter-bob"]["gpu_idle"] is None
        assert pods["jupyter-dave"]["gpu_idle"] is False and pods["jupyter-erin"]["gpu_idle"] is None

    # held idle: bob's GPU at 0 % and erin's MIG instance at 1 % for longer than PORTAL_GPU_IDLE_AFTER
    # (3 s here); alice's GPUs and dave's MIG instance (45 %) busy
    settings = settings_factory(prometheus_url=prometheus.url, usage_metrics_ttl=0.01, gpu_idle_after=3,
                                gpu_idle_threshold=5)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (_app, client):
        deadline = time.monotonic() + 30
        while True:
            gpu, pods = await _pods(client)
            judged = pods["jupyter-bob"]["gpu_idle"] is not None and pods["jupyter-erin"]["gpu_idle"] is not None
            if judged or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert pods["jupyter-bob"]["gpu_idle"] is True, (gpu, pods["jupyter-bob"])
        assert pods["jupyter-erin"]["gpu_idle"] is True, (gpu, pods["jupyter-erin"])  # the MIG instance
        assert pods["jupyter-alice"]["gpu_idle"] is False and pods["jupyter-carol"]["gpu_idle"] is None
        assert pods["jupyter-dave"]["gpu_idle"] is False
        page = await client.get("/pods", headers={**AUTH, "Accept": "text/html"})
        assert page.text.count("GPU idle for 0m 3s+ (at or below 5 %)") == 4  # bob's and erin's pills: text, title

        # Prometheus goes away: the pods are still listed, the reason is given
        prometheus.stop()
        gpu, pods = await _pods(client)
        assert gpu["state"] == "unavailable" and "ConnectError" in gpu["detail"], gpu
        assert prometheus.url in gpu["detail"]
        assert len(pods) == 5 and pods["jupyter-alice"]["gpu_utilization"] is None


async def test_prometheus_refusing_the_query_is_named():
    """A Prometheus that answers 400 (bad_data) or 503: the state is unavailable with its error."""
    from labhub_portal.podusage import GpuUsage

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})

    usage = GpuUsage("http://prometheus.test", "jhub", transport=httpx.MockTransport(answer))
    reading = await usage.current()
    assert reading.state == "unavailable"
    assert reading.detail == "Failed to query Prometheus at http://prometheus.test due to: HTTP 400 parse error"
