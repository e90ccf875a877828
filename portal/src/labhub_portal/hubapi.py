"""JupyterHub REST client (httpx) used to stop servers so the hub's own state stays right."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from .config import Settings


class HubError(Exception):
    """The hub API could not stop the server (caller falls back to deleting the pod)."""


class HubClient:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        token = settings.hub_api_token.get_secret_value() if settings.hub_api_token else ""
        self.base = (settings.hub_api_url or "").rstrip("/")
        self._client = httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=settings.stop_timeout,
                                         transport=transport)

    async def stop_server(self, username: str, server_name: str = "") -> int:
        """DELETE /users/{name}/server or /users/{name}/servers/{server_name}; returns the HTTP status.

        202 (stopping) and 204 (stopped) are success; 400 means "not running" for the hub, which
        is success too from the portal's point of view only when the pod is gone afterwards (the
        caller decides).  Other statuses and transport errors raise HubError.
        """
        user = quote(username, safe="")
        if server_name:
            url = f"{self.base}/users/{user}/servers/{quote(server_name, safe='')}"
        else:
            url = f"{self.base}/users/{user}/server"
        try:
            response = await self._client.delete(url)
        except httpx.HTTPError as exc:
            raise HubError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (202, 204):
            return response.status_code
        raise HubError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def close(self) -> None:
        await self._client.aclose()
