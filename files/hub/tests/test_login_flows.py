"""Real HTTP login flows against a real JupyterHub (5.5.0) behind a real
configurable-http-proxy, configured only through labhub_hub.configure().

External identity services are local TEST simulators (tests/fakes.py):
TestOAuthProvider (GitHub-style OAuth + OIDC) and FakeSSO (company SSO).
"""

import re
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from conftest import Hub, form_login, free_port, session_user, xsrf_of
from fakes import FakeSSO, TestOAuthProvider
from labhub_hub.passwords import hash_password

PROVIDER_USERS = {
    "octo": {"id": 1, "orgs": ["labhub"], "teams": ["labhub:gpu-team"], "groups": []},
    "outsider": {"id": 2, "orgs": ["elsewhere"], "teams": [], "groups": []},
    "kim": {"id": 3, "groups": ["hub-users", "ml"]},
    "boss": {"id": 4, "groups": ["hub-users", "hub-admins"]},
    "nogroup": {"id": 5, "groups": ["other"]},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("login")
    hubdir = tmp / "hub"
    hubdir.mkdir()
    csv_file = tmp / "users.csv"
    csv_file.write_text("username,admin,groups\nadmin,true,\ncarl,false,gpu-team;ml\n")
    (tmp / "team-hash").write_text(hash_password("team-password", iterations=2000))

    provider = TestOAuthProvider(free_port(), "labhub-client", "provider-secret", PROVIDER_USERS).start()
    sso = FakeSSO(
        free_port(),
        "corp_session",
        {"good-session": {"user": "dana", "groups": ["ml"], "is_admin": False}},
    ).start()

    config = {
        "test_mode": True,
        "auth": {
            "modes": ["native", "github", "oidc", "azuread", "auth0", "cookie_sso", "local_groups", "dummy"],
            "admin_users": [],
            "native": {"allowed_users_csv": str(csv_file), "minimum_password_length": 8},
            "github": {
                "client_id": "labhub-client",
                "client_secret": {"env": "LABHUB_TEST_GITHUB_SECRET"},
                "github_url": provider.url,
                "allowed_organizations": ["labhub"],
                "tls_verify": False,
            },
            "oidc": {
                "issuer": provider.url,
                "client_id": "labhub-client",
                "client_secret": {"file": str(tmp / "oidc-secret")},
                "allowed_groups": ["hub-users"],
                "admin_groups": ["hub-admins"],
                "discovery_timeout_seconds": 5,
                "button_text": "Sign in with Keycloak",
            },
            "azuread": {
                "tenant_id": "0000-tenant",
                "client_id": "azure-client",
                "client_secret": {"env": "LABHUB_TEST_AZURE_SECRET"},
                "allowed_tenants": ["0000-tenant"],
            },
            "auth0": {
                "domain": "labhub.eu.auth0.com",
                "client_id": "auth0-client",
                "client_secret": {"env": "LABHUB_TEST_AUTH0_SECRET"},
                "allowed_users": ["someone@example.org"],
            },
            "cookie_sso": {
                "cookie_name": "corp_session",
                "whoami_url": f"{sso.url}/whoami",
                "login_url": f"{sso.url}/login",
                "logout_url": f"{sso.url}/logout",
                "username_key": "user",
                "groups_key": "groups",
                "admin_key": "is_admin",
                "timeout_seconds": 2,
                "button_text": "Sign in with ACME SSO",
            },
            "local_groups": {
                "groups": {
                    "physics": {"members": ["ann", "bob"], "password_hash": {"file": str(tmp / "team-hash")}},
                    "chem": {
                        "members": ["bob"],
                        "password_hash": hash_password("chem-password", iterations=2000),
                        "admin": True,
                    },
                }
            },
        },
        "spawn": {"default_image": "quay.io/jupyter/base-notebook:2025-01-01", "profiles": [{"slug": "small"}]},
    }
    (tmp / "oidc-secret").write_text("provider-secret\n")
    hub = Hub(
        hubdir,
        config,
        env={
            "LABHUB_TEST_GITHUB_SECRET": "provider-secret",
            "LABHUB_TEST_AZURE_SECRET": "azure-secret",
            "LABHUB_TEST_AUTH0_SECRET": "auth0-secret",
        },
    )
    provider.redirect_uris = {
        f"{hub.url}/hub/github/oauth_callback",
        f"{hub.url}/hub/oidc/oauth_callback",
    }
    hub.start()
    world = {"hub": hub, "provider": provider, "sso": sso, "config": config}
    yield world
    hub.stop()
    world["provider"].stop()
    world["sso"].stop()


def _user(hub, name):
    response = hub.api("GET", f"/users/{name}")
    return response.json() if response.status_code == 200 else None


# ---------------------------------------------------------------------------
def test_login_page_lists_every_mode_with_its_own_path(world):
    hub = world["hub"]
    page = hub.client().get("/hub/login")
    assert page.status_code == 200
    html = page.text
    for mode, path in (
        ("github", "/hub/github/oauth_login"),
        ("oidc", "/hub/oidc/oauth_login"),
        ("azuread", "/hub/azuread/oauth_login"),
        ("auth0", "/hub/auth0/oauth_login"),
        ("cookie_sso", "/hub/cookie_sso/login"),
    ):
        assert re.search(rf'id="labhub-login-{mode}"\s+href="{re.escape(path)}"', html), mode
    for mode in ("native", "local_groups", "dummy"):
        assert f'action="/hub/{mode}/login"' in html, mode
    assert "Sign in with Keycloak" in html and "Sign in with ACME SSO" in html
    assert 'href="/hub/signup"' in html
    # ?next= is carried to every method
    html = hub.client().get("/hub/login", params={"next": "/hub/spawn"}).text
    assert 'href="/hub/github/oauth_login?next=%2Fhub%2Fspawn"' in html
    assert 'action="/hub/local_groups/login?next=%2Fhub%2Fspawn"' in html


def test_each_oauth_mode_redirects_with_its_own_callback(world):
    hub = world["hub"]
    client = hub.client()
    for mode, host in (("azuread", "login.microsoftonline.com"), ("auth0", "labhub.eu.auth0.com")):
        response = client.get(f"/hub/{mode}/oauth_login")
        assert response.status_code == 302
        target = urlparse(response.headers["location"])
        assert target.hostname == host
        query = parse_qs(target.query)
        assert query["redirect_uri"] == [f"{hub.url}/hub/{mode}/oauth_callback"]
    azure = urlparse(client.get("/hub/azuread/oauth_login").headers["location"])
    assert azure.path.startswith("/0000-tenant/")


# ---------------------------------------------------------------------------
def _oauth_flow(hub, mode, provider_user):
    client = hub.client()
    start = client.get(f"/hub/{mode}/oauth_login", params={"next": "/hub/home"})
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    # the user's browser at the (test) provider, already signed in there
    at_provider = httpx.get(authorize, cookies={"provider_session": provider_user}, follow_redirects=False)
    assert at_provider.status_code == 302, at_provider.text
    callback = at_provider.headers["location"]
    assert callback.startswith(f"{hub.url}/hub/{mode}/oauth_callback?")
    done = client.get(callback.replace(hub.url, ""))
    return client, done


def test_github_oauth_org_member_logs_in_with_team_groups(world):
    hub = world["hub"]
    client, done = _oauth_flow(hub, "github", "octo")
    assert done.status_code == 302, done.text
    assert done.headers["location"] == "/hub/home"  # the next= given at the start
    assert session_user(client)["name"] == "octo"
    assert _user(hub, "octo")["groups"] == ["labhub:gpu-team"]
    scope = world["provider"].authorize_requests[-1]["scope"]
    assert "read:org" in scope


def test_github_oauth_outside_org_is_refused(world):
    hub = world["hub"]
    client, done = _oauth_flow(hub, "github", "outsider")
    assert done.status_code == 403
    assert session_user(client) is None
    assert _user(hub, "outsider") is None


def test_oidc_discovery_groups_and_admin_groups(world):
    hub = world["hub"]
    authorize = hub.client().get("/hub/oidc/oauth_login").headers["location"]
    assert authorize.startswith(world["provider"].url + "/oidc/authorize?")  # from .well-known
    client, done = _oauth_flow(hub, "oidc", "kim")
    assert done.status_code == 302, done.text
    kim = _user(hub, "kim")
    assert sorted(kim["groups"]) == ["hub-users", "ml"] and kim["admin"] is False
    _, done = _oauth_flow(hub, "oidc", "boss")
    assert done.status_code == 302
    assert _user(hub, "boss")["admin"] is True
    client, done = _oauth_flow(hub, "oidc", "nogroup")
    assert done.status_code == 403
    assert _user(hub, "nogroup") is None


def test_oidc_logout_redirects_to_end_session_endpoint(world):
    hub = world["hub"]
    client, done = _oauth_flow(hub, "oidc", "kim")
    assert done.status_code == 302
    out = client.get("/hub/logout")
    assert out.status_code == 302
    assert out.headers["location"] == world["provider"].url + "/oidc/logout"
    assert session_user(client) is None


# ---------------------------------------------------------------------------
def test_cookie_sso_valid_cookie_logs_in(world):
    hub, sso = world["hub"], world["sso"]
    client = hub.client()
    calls = sso.whoami_calls
    client.cookies.set("corp_session", "good-session")
    response = client.get("/hub/cookie_sso/login")
    assert response.status_code == 302, response.text
    assert sso.whoami_calls == calls + 1
    assert session_user(client)["name"] == "dana"
    assert _user(hub, "dana")["groups"] == ["ml"]
    out = client.get("/hub/logout")
    assert out.headers["location"] == f"{sso.url}/logout"


def test_cookie_sso_without_cookie_goes_to_sso_login(world):
    hub, sso = world["hub"], world["sso"]
    response = hub.client().get("/hub/cookie_sso/login")
    assert response.status_code == 302
    target = response.headers["location"]
    assert target.startswith(f"{sso.url}/login?next=")
    assert "cookie_sso%2Flogin" in target


def test_cookie_sso_bad_cookie_is_refused_with_a_clear_page(world):
    hub = world["hub"]
    client = hub.client()
    client.cookies.set("corp_session", "forged")
    response = client.get("/hub/cookie_sso/login")
    assert response.status_code == 403
    assert "single sign-on session was not accepted" in response.text
    assert session_user(client) is None


def test_cookie_sso_timeout_gives_a_clear_page(world):
    hub, sso = world["hub"], world["sso"]
    sso.hang_seconds = 6  # longer than the configured 2 s timeout
    try:
        client = hub.client()
        client.cookies.set("corp_session", "good-session")
        started = time.monotonic()
        response = client.get("/hub/cookie_sso/login")
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert "single sign-on service is unavailable" in response.text
        assert elapsed < 5.5
    finally:
        sso.hang_seconds = 0


def test_cookie_sso_down_gives_a_clear_page_not_a_500(world):
    hub, sso = world["hub"], world["sso"]
    sso.stop()  # the SSO service goes away: connection refused
    try:
        client = hub.client()
        client.cookies.set("corp_session", "good-session")
        started = time.monotonic()
        response = client.get("/hub/cookie_sso/login")
        assert response.status_code == 503
        assert "single sign-on service is unavailable" in response.text
        assert time.monotonic() - started < 10
        assert session_user(client) is None
    finally:
        world["sso"] = FakeSSO(sso.port, sso.cookie_name, sso.sessions).start()


# ---------------------------------------------------------------------------
def test_local_groups_shared_hashed_password(world):
    hub = world["hub"]
    client = hub.client()
    response = form_login(client, "/hub/local_groups/login", "ann", "team-password")
    assert response.status_code == 302
    ann = _user(hub, "ann")
    assert ann["groups"] == ["physics"] and ann["admin"] is False
    # bob is in two groups; the password says which one he signs in with
    client = hub.client()
    assert form_login(client, "/hub/local_groups/login", "bob", "chem-password").status_code == 302
    bob = _user(hub, "bob")
    assert bob["groups"] == ["chem"] and bob["admin"] is True
    # a member with another group's password, and a non-member, are refused
    for user, password in (("ann", "chem-password"), ("eve", "team-password")):
        refused = form_login(hub.client(), "/hub/local_groups/login", user, password)
        assert refused.status_code == 403
        assert "Invalid username or password" in refused.text


def test_native_signup_admin_approval_and_login(world):
    hub = world["hub"]

    def signup(username, password):
        client = hub.client()
        page = client.get("/hub/signup")
        assert page.status_code == 200
        response = client.post(
            "/hub/signup",
            data={
                "username": username,
                "email": f"{username}@example.org",
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": xsrf_of(client),
            },
        )
        assert response.status_code == 200, response.text
        return response.text

    # the admin listed in the CSV is pre-approved
    assert "signup was successful" in signup("admin", "admin-password-1")
    # a new user waits for approval
    assert "sent to the admin" in signup("nina", "nina-password-1")
    refused = form_login(hub.client(), "/hub/native/login", "nina", "nina-password-1")
    assert refused.status_code == 403
    assert "not been approved" in refused.text

    admin = hub.client()
    assert form_login(admin, "/hub/native/login", "admin", "admin-password-1").status_code == 302
    assert session_user(admin)["admin"] is True
    pending = admin.get("/hub/authorize")
    assert pending.status_code == 200 and "nina" in pending.text
    approve = admin.get("/hub/authorize/nina")
    assert approve.status_code == 302

    nina = hub.client()
    assert form_login(nina, "/hub/native/login", "nina", "nina-password-1").status_code == 302
    assert session_user(nina)["name"] == "nina"
    assert form_login(hub.client(), "/hub/native/login", "nina", "wrong-password").status_code == 403

    # a CSV user is pre-approved and gets the CSV groups
    signup("carl", "carl-password-1")
    carl = hub.client()
    assert form_login(carl, "/hub/native/login", "carl", "carl-password-1").status_code == 302
    assert sorted(_user(hub, "carl")["groups"]) == ["gpu-team", "ml"]


def test_non_admin_cannot_approve_native_users(world):
    hub = world["hub"]
    client = hub.client()
    assert form_login(client, "/hub/dummy/login", "mallory", "x").status_code == 302
    assert client.get("/hub/authorize/someone").status_code == 403


def test_dummy_mode_works_in_test_mode(world):
    hub = world["hub"]
    client = hub.client()
    assert form_login(client, "/hub/dummy/login", "tess", "anything").status_code == 302
    assert session_user(client)["name"] == "tess"
