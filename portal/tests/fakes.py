"""TEST FAKE (not product code): a fake JupyterHub API.

FakeHub implements the few JupyterHub REST endpoints the portal calls (server DELETE, OAuth token
exchange, /user, and the notice endpoint of Labhub's hub extension, files/hub labhub_hub/notices.py)
and records the calls; its answers can be set per test (error paths, the fallback
to deleting the pod). It stops nothing: a 202 leaves the user's pod in the (real) Kubernetes API,
as a real hub would until KubeSpawner deletes it. tests/integration/test_hub_oauth_real.py runs the
same flows against a REAL JupyterHub (files/hub/.venv) instead.

Kubernetes is never faked: the tests use a real control plane (kube.py).
"""

from __future__ import annotations

from aiohttp import web

from servers import ThreadServer


class FakeHub(ThreadServer):
    """TEST FAKE of the JupyterHub REST API used by the portal."""

    API_TOKEN = "hub-service-token-for-the-portal"

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[dict] = []
        self.delete_status = 202
        self.delete_status_for: dict[str, int] = {}  # user -> status of their server DELETE
        self.users: dict[str, dict] = {}
        self.codes: dict[str, str] = {}  # oauth code -> user name
        self.notices: dict[str, dict[str, str]] = {}  # user -> server name -> text (what the hub shows)
        self.notice_calls: list[tuple[str, str, str]] = []  # (method, user, server name)
        self.notice_endpoint = True  # False: a hub without the extension (JupyterHub's own 404)

    def reset(self) -> None:
        self.deletes.clear()
        self.delete_status = 202
        self.delete_status_for.clear()
        self.users.clear()
        self.codes.clear()
        self.notices.clear()
        self.notice_calls.clear()
        self.notice_endpoint = True

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    def build(self) -> web.Application:
        app = web.Application()

        async def delete_server(request: web.Request):
            self.deletes.append({"path": request.path, "authorization": request.headers.get("Authorization")})
            if request.headers.get("Authorization") != f"token {self.API_TOKEN}":
                return web.json_response({"status": 403, "message": "forbidden"}, status=403)
            return web.Response(status=self.delete_status_for.get(request.match_info["name"], self.delete_status))

        async def notice(request: web.Request):
            if not self.notice_endpoint:
                return web.json_response({"status": 404, "message": "Not Found"}, status=404)
            headers = {"X-Labhub-Notices": "1"}
            if request.headers.get("Authorization") != f"token {self.API_TOKEN}":
                return web.json_response({"status": 403, "message": "forbidden"}, status=403, headers=headers)
            user = request.match_info["name"]
            if request.method == "POST":
                body = await request.json()
                self.notice_calls.append(("POST", user, body.get("server_name", "")))
                self.notices.setdefault(user, {})[body.get("server_name", "")] = body["text"]
                return web.json_response({"user": user, "notices": []}, headers=headers)
            server = request.query.get("server_name")
            self.notice_calls.append(("DELETE", user, server if server is not None else "*"))
            if server is None:
                self.notices.pop(user, None)
            elif user in self.notices:
                self.notices[user].pop(server, None)
                if not self.notices[user]:
                    del self.notices[user]
            return web.Response(status=204, headers=headers)

        async def token(request: web.Request):
            form = await request.post()
            if form.get("client_secret") != self.API_TOKEN or form.get("grant_type") != "authorization_code":
                return web.json_response({"error": "invalid_client"}, status=400)
            user = self.codes.pop(form.get("code", ""), None)
            if user is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            return web.json_response({"access_token": f"user-token-{user}", "token_type": "Bearer"})

        async def current_user(request: web.Request):
            auth = request.headers.get("Authorization", "")
            name = auth.removeprefix("token user-token-")
            if not auth.startswith("token user-token-") or name not in self.users:
                return web.json_response({"status": 403}, status=403)
            return web.json_response({"kind": "user", "name": name, **self.users[name]})

        app.router.add_delete("/hub/api/users/{name}/server", delete_server)
        app.router.add_delete("/hub/api/users/{name}/servers/{server}", delete_server)
        app.router.add_post("/hub/api/labhub/notices/{name}", notice)
        app.router.add_delete("/hub/api/labhub/notices/{name}", notice)
        app.router.add_post("/hub/api/oauth2/token", token)
        app.router.add_get("/hub/api/user", current_user)
        return app
