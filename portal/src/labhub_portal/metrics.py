"""Prometheus metrics (process-global registry) and the request-latency middleware."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECORDER_CYCLES = Counter("portal_recorder_cycles_total", "Recorder cycles by result", ["result"])
RECORDER_LAST_CYCLE = Gauge("portal_recorder_last_cycle_timestamp_seconds", "Unix time of the last recorder cycle")
RECORDER_LAST_SUCCESS = Gauge("portal_recorder_last_success_timestamp_seconds",
                              "Unix time of the last successful recorder cycle")
RECORDER_UP = Gauge("portal_recorder_last_cycle_ok", "1 if the last recorder cycle succeeded, else 0")
RECORDER_CONSECUTIVE_ERRORS = Gauge("portal_recorder_consecutive_errors", "Failed recorder cycles in a row")
RECORDER_DURATION = Histogram("portal_recorder_cycle_duration_seconds", "Recorder cycle duration",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OPEN_SESSIONS = Gauge("portal_open_sessions", "Sessions open after the last recorder cycle")
OBSERVED_PODS = Gauge("portal_observed_pods", "Single-user pods seen in the last successful cycle")
SYNC_RUNS = Counter("portal_report_sync_runs_total", "Report sync runs by result", ["result"])
SYNC_ROWS = Counter("portal_report_sync_rows_total", "Rows written to the MySQL report")
SYNC_LAST_SUCCESS = Gauge("portal_report_sync_last_success_timestamp_seconds", "Unix time of the last good sync")
POD_STOPS = Counter("portal_pod_stops_total", "Stop requests per pod by result", ["result"])
REQUEST_LATENCY = Histogram("portal_http_request_duration_seconds", "HTTP request latency",
                            ["method", "route", "status"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: observes request latency labelled by the route template (not the raw path)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def _send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_LATENCY.labels(scope.get("method", ""), template, str(status["code"])).observe(
                time.perf_counter() - start)
