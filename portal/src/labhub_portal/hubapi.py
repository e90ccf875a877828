"""JupyterHub REST client (httpx) used to stop servers so the hub's own state stays right."""

from __future__ import annotations

from urllib.parse import quote

import asyncio

import httpx

from .config import Settings

# Bounded retry of a stop (stopping a server is idempotent for the hub: a repeated DELETE answers
# 202/204, or 400 once it is no longer running): transport errors (hub or proxy restarting, a
# timeout) and the statuses a restarting hub or its proxy answer.  At most ATTEMPTS attempts,
# RETRY_DELAYS apart, all within PORTAL_STOP_TIMEOUT (each attempt gets the time left).
ATTEMPTS = 3
RETRY_DELAYS = (0.5, 1.0)
RETRY_STATUSES = frozenset({429, 502, 503, 504})


#: every answer of the hub's notice endpoint (files/hub labhub_hub/notices.py) carries it: a 404
#: without it is JupyterHub's own (a hub without the endpoint), with it "no such user"
NOTICE_HEADER = "X-Labhub-Notices"


class HubError(Exception):
    """The hub API could not stop the server (caller falls back to deleting the pod), or could not
    take or remove a notice."""


class NoNoticeEndpoint(HubError):
    """The hub answered 404 without the notice header: it has no notice endpoint (an older hub, or
    notices turned off in the hub's labhub_hub configuration)."""


class HubClient:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        token = settings.hub_api_token.get_secret_value() if settings.hub_api_token else ""
        self.base = (settings.hub_api_url or "").rstrip("/")
        self.timeout = settings.stop_timeout
        self._client = httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=settings.stop_timeout,
                                         transport=transport)

    async def stop_server(self, username: str, server_name: str = "") -> int:
        """DELETE /users/{name}/server or /users/{name}/servers/{server_name}; returns the HTTP status.

        202 (stopping) and 204 (stopped) are success; 400 means "not running" for the hub, which
        is success too from the portal's point of view only when the pod is gone afterwards (the
        caller decides).  Transport errors and 429/502/503/504 are retried (ATTEMPTS in all, within
        the stop timeout); other statuses, and the last failure, raise HubError.
        """
        user = quote(username, safe="")
        if server_name:
            url = f"{self.base}/users/{user}/servers/{quote(server_name, safe='')}"
        else:
            url = f"{self.base}/users/{user}/server"
        reason = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempts = 0
        while attempts < ATTEMPTS:
            if attempts:
                delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
                if loop.time() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
            attempts += 1
            try:
                response = await self._client.delete(url, timeout=max(0.1, deadline - loop.time()))
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in (202, 204):
                return response.status_code
            reason = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRY_STATUSES:
                raise HubError(reason)
        raise HubError(f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''} "
                       f"within {self.timeout:g} s)")

    def _notice_url(self, username: str) -> str:
        return f"{self.base}/labhub/notices/{quote(username, safe='')}"

    async def _notice_call(self, method: str, username: str, ok: int, json: dict[str, str] | None = None,
                           params: dict[str, str] | None = None) -> None:
        try:
            response = await self._client.request(method, self._notice_url(username), json=json, params=params)
        except httpx.HTTPError as exc:
            raise HubError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404 and NOTICE_HEADER not in response.headers:
            raise NoNoticeEndpoint("the hub has no notice endpoint (HTTP 404 from /hub/api/labhub/notices)")
        if response.status_code != ok:
            raise HubError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def post_notice(self, username: str, server_name: str, text: str) -> None:
        """Show ``text`` to the user on their hub pages (POST /hub/api/labhub/notices/{name}, the
        hub extension of files/hub; the service token's delete:servers authorizes it). Raises
        NoNoticeEndpoint on a hub without the endpoint, HubError on any other failure (one attempt)."""
        await self._notice_call("POST", username, 200, json={"text": text, "server_name": server_name})

    async def delete_notice(self, username: str, server_name: str | None = None) -> None:
        """Remove the notice about one server (``server_name``) or all of the user's notices."""
        params = {"server_name": server_name} if server_name is not None else None
        await self._notice_call("DELETE", username, 204, params=params)

    async def close(self) -> None:
        await self._client.aclose()
