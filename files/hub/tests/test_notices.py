"""Notices to a user on their hub pages (labhub_hub/notices.py) on a REAL JupyterHub 5.5.

The hub is configured by labhub_hub.configure() after site template variables set first, as z2jh's
own jupyterhub_config.py sets hub.templateVars before Labhub's extraConfig. The services stand for
the usage portal (its hub role: delete:servers only, tests/integration/hub_service_values.json in
portal/), a service allowed to stop one user's servers, and one that may only read users.
"""

import secrets

from conftest import form_login

CONFIG = {
    "test_mode": True,
    "auth": {"modes": ["dummy"]},
    "spawn": {"default_image": "quay.io/jupyter/base-notebook:2025-01-01", "profiles": [{"slug": "small"}]},
}
PORTAL = secrets.token_hex(32)
ALICE_ONLY = secrets.token_hex(32)
READER = secrets.token_hex(32)
SERVICES = f"""
c.JupyterHub.services += [{{"name": "portal", "api_token": {PORTAL!r}}},
                          {{"name": "alice-only", "api_token": {ALICE_ONLY!r}}},
                          {{"name": "reader", "api_token": {READER!r}}}]
c.JupyterHub.load_roles += [
    {{"name": "portal-stop", "scopes": ["delete:servers"], "services": ["portal"]}},
    {{"name": "alice-stop", "scopes": ["delete:servers!user=alice"], "services": ["alice-only"]}},
    {{"name": "reader", "scopes": ["read:users"], "services": ["reader"]}},
]
"""
SITE_VARS = 'c.JupyterHub.template_vars = {"announcement": "Maintenance <b>Sunday</b>", "announcement_login": "Welcome"}'
NOTICE = "GPUs idle for 1h 0m (at or below 5 %): the server stops at 15:30 <unless used>."


def notices(hub, user, token, method="POST", **kwargs):
    import httpx

    return httpx.request(method, f"{hub.url}/hub/api/labhub/notices/{user}", timeout=10,
                         headers={"Authorization": f"token {token}"} if token else {}, **kwargs)


def test_notice_endpoint_authorizes_with_the_hubs_scopes_and_the_page_shows_it(start_hub):
    hub = start_hub(CONFIG, pre_config=SITE_VARS, extra_config=SERVICES)
    for name in ("alice", "bob"):
        assert hub.api("POST", f"/users/{name}").status_code == 201

    posted = notices(hub, "alice", PORTAL, json={"text": NOTICE})
    assert posted.status_code == 200, posted.text
    assert posted.headers["X-Labhub-Notices"] == "1"
    assert [(n["server_name"], n["text"]) for n in posted.json()["notices"]] == [("", NOTICE)]
    # a named server's notice is separate; posting again replaces it
    assert notices(hub, "alice", ALICE_ONLY, json={"text": "first", "server_name": "gpu2"}).status_code == 200
    again = notices(hub, "alice", ALICE_ONLY, json={"text": "second", "server_name": "gpu2"})
    assert [(n["server_name"], n["text"]) for n in again.json()["notices"]] == [("", NOTICE), ("gpu2", "second")]

    # JupyterHub's own scope checks: delete:servers for that user, nothing less
    assert notices(hub, "bob", ALICE_ONLY, json={"text": "x"}).status_code in (403, 404)
    assert notices(hub, "alice", READER, json={"text": "x"}).status_code == 403
    assert notices(hub, "alice", None, json={"text": "x"}).status_code == 403
    assert notices(hub, "alice", "not-a-token-" + secrets.token_hex(8), json={"text": "x"}).status_code == 403
    assert notices(hub, "bob", READER, method="DELETE").status_code == 403
    # an unknown user is our 404 (with the header), a hub without the endpoint gives JupyterHub's own
    missing = notices(hub, "mallory", PORTAL, json={"text": "x"})
    assert missing.status_code == 404 and missing.headers["X-Labhub-Notices"] == "1"
    assert "No such user: mallory" in missing.json()["message"]
    # bad bodies: 400 naming the field
    for body, field in (({}, "text"), ({"text": "  "}, "text"), ({"text": "x" * 1001}, "text"),
                        ({"text": "x", "colour": "red"}, "colour"), ({"text": "x", "server_name": 3}, "server_name")):
        bad = notices(hub, "alice", PORTAL, json=body)
        assert bad.status_code == 400 and bad.json()["message"].startswith(f"{field}:"), (body, bad.text)
    assert notices(hub, "alice", PORTAL, content=b"{not json").json()["message"] == "body: not JSON"

    # alice sees her notices (escaped) under the site's announcement; bob only the announcement
    alice = hub.client()
    assert form_login(alice, "/hub/dummy/login", "alice", "pw").status_code == 302
    home = alice.get("/hub/home")
    assert home.status_code == 200, home.text
    assert "Maintenance <b>Sunday</b>" in home.text  # the site's announcement, as the site wrote it
    assert "the server stops at 15:30 &lt;unless used&gt;." in home.text and "<unless used>" not in home.text
    assert "Server gpu2: second" in home.text
    assert home.text.index("Maintenance") < home.text.index("stops at 15:30")
    token_page = alice.get("/hub/token")  # every page of the hub, not only home
    assert "stops at 15:30" in token_page.text
    # she may read her own notices (her own read:servers), not bob's
    assert [n["text"] for n in alice.get("/hub/api/labhub/notices/alice").json()["notices"]] == [NOTICE, "second"]
    assert alice.get("/hub/api/labhub/notices/bob").status_code in (403, 404)
    bob = hub.client()
    assert form_login(bob, "/hub/dummy/login", "bob", "pw").status_code == 302
    bob_home = bob.get("/hub/home").text
    assert "Maintenance <b>Sunday</b>" in bob_home and "stops at 15:30" not in bob_home
    assert "second" not in bob_home
    login_page = hub.client().get("/hub/login").text
    assert "Welcome" in login_page and "stops at 15:30" not in login_page

    # removed: one server's, then all of them (idempotent)
    assert notices(hub, "alice", PORTAL, method="DELETE", params={"server_name": "gpu2"}).status_code == 204
    home = alice.get("/hub/home").text
    assert "Server gpu2" not in home and "stops at 15:30" in home
    assert notices(hub, "alice", PORTAL, method="DELETE").status_code == 204
    assert notices(hub, "alice", PORTAL, method="DELETE").status_code == 204
    home = alice.get("/hub/home").text
    assert "stops at 15:30" not in home and "Maintenance <b>Sunday</b>" in home
    assert "labhub/notices" in hub.log_text() and PORTAL not in hub.log_text()  # the token is never logged


def test_without_notices_the_hub_answers_its_own_404(start_hub):
    """notices.enabled: false (or a hub without this package version): JupyterHub's own API 404,
    without the X-Labhub-Notices header: what the portal reads as "the hub has no notice endpoint"."""
    hub = start_hub(dict(CONFIG, notices={"enabled": False}), extra_config=SERVICES)
    assert hub.api("POST", "/users/alice").status_code == 201
    answer = notices(hub, "alice", PORTAL, json={"text": NOTICE})
    assert answer.status_code == 404 and "X-Labhub-Notices" not in answer.headers
