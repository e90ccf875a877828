"""The resource metrics reading as data: PodMetrics -> usage per pod, metrics-server's window text,
and how PodUsage turns each kind of API answer into a state (the API itself, aggregated by a real
API server, is in test_pod_usage.py). The cluster objects here are STUBS returning a fixed answer."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from labhub_portal.cluster import ClusterError, _window_seconds, podmetrics_to_usage
from labhub_portal.podusage import PodUsage


def test_containers_are_summed_per_pod_and_quantities_parsed():
    items = [
        {"metadata": {"name": "jupyter-a"}, "window": "15.007s",
         "containers": [{"name": "notebook", "usage": {"cpu": "1234567n", "memory": "1Gi"}},
                        {"name": "sidecar", "usage": {"cpu": "250m", "memory": "512Ki"}}]},
        {"metadata": {"name": "jupyter-b"}, "containers": []},
        {"metadata": {}, "containers": [{"usage": {"cpu": "1"}}]},  # nameless: ignored
    ]
    usage = podmetrics_to_usage(items)
    assert usage == {
        "jupyter-a": {"cpu": Decimal("0.251234567"), "memory": Decimal(2**30 + 512 * 1024), "window": Decimal("15.007")},
        "jupyter-b": {"cpu": Decimal(0), "memory": Decimal(0)},
    }


@pytest.mark.parametrize("text, seconds", [
    ("15s", Decimal(15)), ("1m0s", Decimal(60)), ("1h2m3.5s", Decimal("3723.5")), ("500ms", Decimal("0.5")),
    ("", None), ("15", None), ("15x", None), (None, None), (15, None),
])
def test_window_is_go_duration_text(text, seconds):
    assert _window_seconds(text) == seconds


class StubCluster:
    """STUB: answers pod_usage with a fixed result or error and counts the calls."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

    async def pod_usage(self):
        self.calls += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer == "hang":
            await asyncio.sleep(60)
        return self.answer


@pytest.mark.parametrize("answer, state, detail", [
    ({"p": {"cpu": Decimal(1), "memory": Decimal(2)}}, "ok", ""),
    (ClusterError("Failed to read pod metrics due to: HTTP 404", status=404), "not served", "metrics-server addon"),
    (ClusterError("Failed ... HTTP 403 Forbidden", status=403), "forbidden", "pods.metrics.k8s.io"),
    (ClusterError("Failed ... HTTP 503 Service Unavailable", status=503), "unavailable", "HTTP 503"),
    (ClusterError("Failed ... ConnectionRefusedError"), "unavailable", "ConnectionRefusedError"),
    ("hang", "unavailable", "no answer within 0.2 s"),
])
def test_each_answer_becomes_a_state_and_a_request_never_fails(answer, state, detail):
    reading = asyncio.run(PodUsage(StubCluster(answer), ttl=10, timeout=0.2).current())
    assert reading.state == state and detail in reading.detail and reading.at is not None
    assert reading.usage == (answer if state == "ok" else {})


def test_a_reading_is_reused_within_ttl_and_one_read_at_a_time():
    async def go():
        cluster = StubCluster({})
        usage = PodUsage(cluster, ttl=30, timeout=1)
        await asyncio.gather(*(usage.current() for _ in range(5)))
        await usage.current()
        return cluster.calls

    assert asyncio.run(go()) == 1


def test_a_client_without_metrics_is_not_served():
    reading = asyncio.run(PodUsage(object()).current())
    assert reading.state == "not served"
