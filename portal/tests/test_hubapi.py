"""The hub API client's bounded retry (labhub_portal.hubapi), through httpx's own mock transport:
what the hub answers is scripted, the client's handling of it is what runs."""

from __future__ import annotations

import httpx
import pytest

from testlib import COOKIE_SECRET, TOKEN
from labhub_portal import hubapi
from labhub_portal.config import Settings


def _client(answers: list, monkeypatch) -> tuple[hubapi.HubClient, list[str]]:
    monkeypatch.setattr(hubapi, "RETRY_DELAYS", (0.01, 0.01))
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.raw_path.decode()}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, text=f"status {answer}")

    settings = Settings(_env_file=None, database_url="postgresql+asyncpg://portal@127.0.0.1:1/portal",
                        token=TOKEN, cookie_secret=COOKIE_SECRET, hub_api_url="http://hub.test/hub/api",
                        hub_api_token="hub-token-0123456789abcdef0123456789")
    return hubapi.HubClient(settings, transport=httpx.MockTransport(handler)), calls


async def test_a_restarting_hub_is_retried_then_the_stop_succeeds(monkeypatch):
    client, calls = _client([503, httpx.ConnectError("connection refused"), 202], monkeypatch)
    assert await client.stop_server("alice", "gpu") == 202
    assert calls == ["DELETE /hub/api/users/alice/servers/gpu"] * 3
    await client.close()


async def test_retries_are_bounded_and_the_last_reason_is_given(monkeypatch):
    client, calls = _client([502, 504, httpx.ReadTimeout("timed out")], monkeypatch)
    with pytest.raises(hubapi.HubError, match=r"ReadTimeout: timed out \(after 3 attempts within 15 s\)"):
        await client.stop_server("alice")
    assert calls == ["DELETE /hub/api/users/alice/server"] * 3
    await client.close()


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_refusal_is_not_retried(monkeypatch, status):
    client, calls = _client([status], monkeypatch)
    with pytest.raises(hubapi.HubError, match=f"HTTP {status}"):
        await client.stop_server("a/b")
    assert calls == ["DELETE /hub/api/users/a%2Fb/server"]
    await client.close()


async def test_retries_stay_within_the_stop_timeout(monkeypatch):
    client, calls = _client([503, 503, 503], monkeypatch)
    client.timeout = 0.5
    monkeypatch.setattr(hubapi, "RETRY_DELAYS", (0.3, 0.3))
    with pytest.raises(hubapi.HubError, match=r"HTTP 503: status 503 \(after 2 attempts within 0.5 s\)"):
        await client.stop_server("alice")
    assert len(calls) == 2
    await client.close()
