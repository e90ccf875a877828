"""Browser UI: server-rendered Usage, Timeline, Pods, Sync and Audit tabs (Jinja2 templates, own CSS/JS, no CDN).

The pages are rendered from the same services the JSON API uses (the API route functions are
called directly, so filters, billing and time zones behave exactly like ``/api/...``).  The
browser only talks to this portal: HTML fragments for live refresh, ``POST /api/pods/stop`` and
``POST /api/pod-report-sync`` with the CSRF token from the page's ``<meta name="csrf-token">``.

Authentication is the API's: a hub login session (or, with no authentication configured on
127.0.0.1, the local user).  Unauthenticated browsers are sent to ``/login`` when JupyterHub
OAuth is configured, and get a 401 page otherwise.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, or_, select

from .. import __version__
from ..api import audit as audit_api
from ..api import pods as pods_api
from ..api import sessions as sessions_api
from ..api.common import TimeRange
from ..api.usage import recorder_status, sync_status
from ..auth import (
    CSRF_HEADER,
    Principal,
    csrf_token,
    optional_principal,
    set_csrf_cookie,
)
from ..billing import GIB, effective_end, session_usage
from ..db.engine import SessionDep
from ..db.models import ContainerSession, Department, User
from ..outages import is_database_outage, outage_reason
from ..plain_page import plain_page
from ..stats_service import day_start, month_start, stats
from .charts import StackedChart, horizontal_bars, stacked_bars, timeline, vertical_bars

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # same rule as the API's filters (no control characters)
GPU_CHART_DAYS = 30
DEPARTMENT_MONTHS = 6
DEPARTMENT_SERIES = 8  # departments shown by name (the rest: "Other")
GPU_ALLOCATION_HOURS = 48
PAGE_SIZE = 25
POD_REFRESH_MS = 5000
CARD_REFRESH_MS = 10000  # summary cards and the sync panel, refreshed in place
TABS = (("usage", "Usage", "web_usage"), ("timeline", "Timeline", "web_timeline"), ("pods", "Pods", "web_pods"),
        ("sync", "Sync", "web_sync"), ("audit", "Audit", "web_audit"))
AUDIT_ACTIONS = ("stop_server", "gpu_idle_warning", "import_users", "set_department_rates")
AUDIT_RESULT_CLASS = {"stopping": "pill-ok", "deleted": "pill-ok", "warned": "pill-warn", "cleared": "pill-ok",
                      "refused": "pill-err", "failed": "pill-err"}
TIMELINE_DAYS = {"day": 1, "week": 7, "month": 30}
TIMELINE_MAX_SESSIONS = 3000


def mount_static(app) -> None:
    """App-level wiring of the web UI (called by create_app): serve web/static at /static and send
    unauthenticated browsers to the hub login (or a 401 page)."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="web-static")
    app.add_exception_handler(LoginRequired, login_required_handler)


class LoginRequired(Exception):
    pass


async def page_principal(request: Request,
                         principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise LoginRequired()
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def login_required_handler(request: Request, _exc: LoginRequired) -> Response:
    settings = request.app.state.settings
    if settings.oauth_enabled:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(str(request.url_for("login")) + "?" + urlencode({"next": target}), status_code=302)
    return plain_page(
        "Sign-in required",
        "<p>This portal accepts browser logins through JupyterHub only, and "
        "JupyterHub login is not configured here. Scripts can use the API with "
        "<code>Authorization: Bearer &lt;PORTAL_TOKEN&gt;</code>.</p>", 401)


# --- formatting helpers ---------------------------------------------------------------------------
def _local(value: datetime | str | None, settings, with_seconds: bool = False) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    local = value.astimezone(settings.zone)
    return local.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds % 60}s"


def _every(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _cores(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}"


def _gib(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value / GIB:g} GiB"


def _used(value: float | None, limit: float | None, unit: str, scale: float = 1.0) -> str:
    """Actual use as text, with its share of the limit: "0.25 cores (13 % of 2)", "1.5 GiB (38 % of 4)"."""
    if value is None:
        return "—"
    text = f"{value / scale:.2f} {unit}"
    if limit:
        text += f" ({100 * value / limit:.0f} % of {limit / scale:g})"
    return text


def _amount(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _money(value: float, currency: str) -> str:
    return f"{_amount(value)} {currency}"


def _hours(value: float) -> str:
    return f"{value:,.1f}"


def _base_context(request: Request, principal: Principal, active: str, title: str) -> dict:
    settings = request.app.state.settings
    now = datetime.now(timezone.utc)
    return {
        "page_title": title,
        "active_tab": active,
        "tabs": [{"id": tab_id, "label": label, "href": request.url_for(route)} for tab_id, label, route in TABS],
        "demo": settings.demo,
        "zone_name": settings.timezone,
        "currency": settings.currency,
        "user_name": principal.name if principal.kind != "local" else None,
        "logout_url": request.url_for("logout") if principal.kind == "hub" else None,
        "after_logout_url": request.url_for("web_index"),
        "csrf_token": csrf_token(request),
        "csrf_header": CSRF_HEADER,
        "now_local": f"{_local(now, settings, with_seconds=True)} {now.astimezone(settings.zone).strftime('%Z')}",
        "version": __version__,
    }


def _render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    set_csrf_cookie(request, response)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _cards(session, settings, now: datetime, user: str | None = None) -> list[dict]:
    """The summary cards (Usage page; a user's page with ``user``): running sessions and GPUs,
    CPU/GPU hours and cost today and this month."""
    today_rows = await stats(session, settings, "total", day_start(now, settings), now, now, user=user)
    month_rows = await stats(session, settings, "total", month_start(now, settings), now, now, user=user)
    zero = {"cpu_core_hours": 0.0, "gpu_hours": 0.0, "cost": 0.0, "sessions": 0}
    today, month = (today_rows[0] if today_rows else zero), (month_rows[0] if month_rows else zero)
    running = select(func.count(), func.coalesce(func.sum(ContainerSession.gpu_request), 0)).where(
        ContainerSession.ended_at.is_(None))
    if user is not None:
        running = running.where(ContainerSession.username == user)
    active, active_gpus = (await session.execute(running)).one()
    cards = [{"id": "active", "label": "Active sessions", "value": f"{int(active)}", "unit": None,
              "hint": f"{int(active_gpus)} GPU{'s' if int(active_gpus) != 1 else ''} in use"}]
    for period, words, row in (("today", "today", today), ("month", "this month", month)):
        cards += [
            {"id": f"cpu-{period}", "label": f"CPU hours {words}", "value": _hours(row["cpu_core_hours"]),
             "unit": "h", "hint": "CPU core-hours"},
            {"id": f"gpu-{period}", "label": f"GPU hours {words}", "value": _hours(row["gpu_hours"]), "unit": "h",
             "hint": "GPU-hours"},
            {"id": f"cost-{period}", "label": f"Cost {words}", "value": _amount(row["cost"]),
             "unit": settings.currency, "hint": f"{row['sessions']} sessions"},
        ]
    return cards


def _session_rows(items, settings) -> list[dict]:
    rows = []
    for item in items:
        started = datetime.fromisoformat(item.started_at)
        ended = datetime.fromisoformat(item.ended_at) if item.ended_at else None
        rows.append({
            "username": item.username, "display_name": item.display_name, "department": item.department,
            "pod_name": item.pod_name, "node": item.node, "profile": item.profile,
            "cpu": _cores(item.cpu_request), "memory": _gib(item.memory_request), "gpus": item.gpu_request,
            "gpu_model": item.gpu_model, "started": _local(started, settings), "ended": _local(ended, settings),
            "end_reason": item.end_reason, "duration": f"{item.hours:,.1f} h",
            "cost": _money(item.cost, settings.currency),
        })
    return rows


# --- pages ----------------------------------------------------------------------------------------
@router.get("/", name="web_index")
async def index(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url_for("web_usage")), status_code=302)


def _parse_day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, detail=f"{field}: expected a day as YYYY-MM-DD") from None


@router.get("/usage", name="web_usage", response_class=HTMLResponse)
async def usage_page(request: Request, session: SessionDep, principal: PagePrincipal,
                     user: Annotated[str | None, Query(max_length=255, pattern=_PRINTABLE)] = None,
                     department: Annotated[str | None, Query(max_length=255, pattern=_PRINTABLE)] = None,
                     q: Annotated[str | None, Query(max_length=255, pattern=_PRINTABLE)] = None,
                     start: Annotated[str | None, Query(max_length=10)] = None,
                     end: Annotated[str | None, Query(max_length=10)] = None,
                     page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    settings = request.app.state.settings
    now = datetime.now(timezone.utc)
    user, department, q = (user or "").strip() or None, (department or "").strip() or None, (q or "").strip() or None
    filter_error = None
    try:
        start_day, end_day = _parse_day(start, "From"), _parse_day(end, "To")
        if start_day and end_day and end_day < start_day:
            raise HTTPException(422, detail="To: the last day is before the first day")
        lo = datetime.combine(start_day, time()).replace(tzinfo=settings.zone) if start_day else None
        hi = datetime.combine(end_day + timedelta(days=1), time()).replace(tzinfo=settings.zone) if end_day else None
        window = TimeRange(request, from_=lo, to=hi)
    except (HTTPException, OverflowError) as exc:
        detail = getattr(exc, "detail", None)
        if isinstance(detail, list):
            detail = "; ".join(f"{e.get('field')}: {e.get('msg')}" for e in detail)
        filter_error = str(detail or "day out of range")
        start_day = end_day = lo = hi = None
        window = TimeRange(request)

    cards = await _cards(session, settings, now)

    # charts
    first_day = day_start(now, settings) - timedelta(days=GPU_CHART_DAYS - 1)
    per_day = await stats(session, settings, "day", first_day, now, now)
    gpu_chart = vertical_bars("GPU-hours per day", [(r["key"], r["gpu_hours"]) for r in per_day], unit="GPU-hours",
                              width=600, height=250)
    per_dept = await stats(session, settings, "department", month_start(now, settings), now, now)
    cost_chart = horizontal_bars("Cost by department", [(r["key"], r["cost"]) for r in per_dept], unit=settings.currency,
                                 width=540, row_height=34, label_width=140)

    dept_chart = await _department_months(session, settings, now)
    allocation_chart = await _gpu_allocation(session, settings, now)

    # session table: the API's own query (same filters, same billing)
    result = await sessions_api.list_sessions(request, session, settings, principal, window, user=user,
                                              department=department,
                                              q=q, state="all", page=page, page_size=PAGE_SIZE, format="json")
    rows = _session_rows(result.items, settings)

    filters = {"user": user, "department": department, "q": q,
               "start": start_day.isoformat() if start_day else None, "end": end_day.isoformat() if end_day else None}
    query = {k: v for k, v in filters.items() if v}
    api_query = {k: v for k, v in (("user", user), ("department", department), ("q", q)) if v}
    if lo:
        api_query["from"] = lo.replace(tzinfo=None).isoformat()
    if hi:
        api_query["to"] = hi.replace(tzinfo=None).isoformat()
    api_query["format"] = "csv"
    usage_url = str(request.url_for("web_usage"))

    def page_url(number: int) -> str:
        return usage_url + "?" + urlencode({**query, "page": number}) + "#sessions-title"

    departments = [d for d in (await session.execute(select(Department.name).order_by(Department.name))).scalars()]
    known_users = sorted(set((await session.execute(select(User.username))).scalars())
                         | set((await session.execute(select(ContainerSession.username).distinct())).scalars()))
    local_now = now.astimezone(settings.zone)
    context = _base_context(request, principal, "usage", "Usage")
    context.update(
        cards=cards, gpu_chart=gpu_chart, cost_chart=cost_chart, sessions=rows, total=result.total,
        page=result.page, pages=result.pages, filtered=bool(query), filters=filters, filter_error=filter_error,
        prev_url=page_url(result.page - 1) if result.page > 1 else None,
        next_url=page_url(result.page + 1) if result.page < result.pages else None,
        csv_url=str(request.url_for("list_sessions")) + "?" + urlencode(api_query),
        usage_url=usage_url, department_options=departments, user_options=known_users,
        today_label=local_now.strftime("%a %d %b %Y"), month_label=local_now.strftime("%B %Y"),
        cards_url=request.url_for("web_usage_cards"), refresh_ms=CARD_REFRESH_MS,
        dept_chart=dept_chart, allocation_chart=allocation_chart, allocation_hours=GPU_ALLOCATION_HOURS,
        dept_months=DEPARTMENT_MONTHS,
    )
    return _render(request, "usage.html", context)


async def _department_months(session, settings, now: datetime) -> StackedChart:
    """Cost per department in each of the last DEPARTMENT_MONTHS months (this one so far): the
    DEPARTMENT_SERIES - 1 costliest departments of the period, the rest as "Other"."""
    months: list[datetime] = [month_start(now, settings)]
    for _ in range(DEPARTMENT_MONTHS - 1):
        months.insert(0, month_start(months[0] - timedelta(days=1), settings))
    lo = months[0]
    ranked = sorted(await stats(session, settings, "department", lo, now, now), key=lambda r: -r["cost"])
    ranked = [r for r in ranked if r["cost"] > 0]
    shown = [r["key"] for r in ranked[:DEPARTMENT_SERIES - 1]] if len(ranked) > DEPARTMENT_SERIES else \
        [r["key"] for r in ranked]
    labels = [m.astimezone(settings.zone).strftime("%Y-%m") for m in months]
    series: list[tuple[str, list[float]]] = []
    for name in shown:
        rows = {r["key"]: r["cost"] for r in await stats(session, settings, "month", lo, now, now, department=name)}
        series.append((name, [rows.get(label, 0.0) for label in labels]))
    if len(ranked) > len(shown):
        totals = {r["key"]: r["cost"] for r in await stats(session, settings, "month", lo, now, now)}
        series.append(("Other", [max(0.0, round(totals.get(label, 0.0) - sum(v[i] for _, v in series), 2))
                                 for i, label in enumerate(labels)]))
    return stacked_bars("Cost by department per month", labels, series, unit=settings.currency, width=600,
                        height=260)


async def _gpu_allocation(session, settings, now: datetime):
    """GPUs held by servers in each hour of the last GPU_ALLOCATION_HOURS hours (the hour's average:
    a server holding 2 GPUs for half an hour counts 1), whatever their billing."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    starts = [hour - timedelta(hours=h) for h in range(GPU_ALLOCATION_HOURS - 1, -1, -1)]
    lo = starts[0]
    rows = (await session.execute(
        select(ContainerSession).where(ContainerSession.gpu_request > 0, ContainerSession.started_at < now,
                                       or_(ContainerSession.ended_at.is_(None), ContainerSession.ended_at > lo))
    )).scalars().all()
    held = [0.0] * len(starts)
    for cs in rows:
        a, b = cs.started_at, effective_end(cs, now, settings.gap_seconds)
        for i, start in enumerate(starts):
            stop = min(start + timedelta(hours=1), now)
            overlap = (min(b, stop) - max(a, start)).total_seconds()
            if overlap > 0:
                held[i] += cs.gpu_request * overlap / max(1.0, (stop - start).total_seconds())
    labels = [s.astimezone(settings.zone).strftime("%m-%d %Hh") for s in starts]
    return vertical_bars("GPUs allocated per hour", list(zip(labels, [round(v, 2) for v in held])),
                         unit="GPUs", width=600, height=250, decimals=1, label_every=8)


@router.get("/usage/cards", name="web_usage_cards", response_class=HTMLResponse)
async def usage_cards(request: Request, session: SessionDep, principal: PagePrincipal,
                      user: Annotated[str | None, Query(max_length=255, pattern=_PRINTABLE)] = None) -> Response:
    """The summary cards alone (all users, or one), refreshed in place by the pages."""
    now = datetime.now(timezone.utc)
    cards = await _cards(session, request.app.state.settings, now, user=user)
    return _render(request, "partials/usage_cards.html", {"cards": cards})


@router.get("/timeline", name="web_timeline", response_class=HTMLResponse)
async def timeline_page(request: Request, session: SessionDep, principal: PagePrincipal,
                        by: Literal["user", "node"] = "user", span: Literal["day", "week", "month"] = "week",
                        end: Annotated[str | None, Query(max_length=10)] = None) -> Response:
    """Sessions as bars on a lane per user (or per node) over a day, a week or 30 days ending on
    ``end`` (a day in the portal's zone; default today); running ones reach their billed end."""
    settings = request.app.state.settings
    now = datetime.now(timezone.utc)
    today = now.astimezone(settings.zone).date()
    try:
        last_day = _parse_day(end, "end") or today
    except HTTPException:
        last_day = today
    days = TIMELINE_DAYS[span]
    first_day = last_day - timedelta(days=days - 1)
    lo = datetime.combine(first_day, time()).replace(tzinfo=settings.zone)
    hi = datetime.combine(last_day + timedelta(days=1), time()).replace(tzinfo=settings.zone)
    rows = (await session.execute(
        select(ContainerSession).where(ContainerSession.started_at < hi,
                                       or_(ContainerSession.ended_at.is_(None), ContainerSession.ended_at > lo))
        .order_by(ContainerSession.started_at).limit(TIMELINE_MAX_SESSIONS + 1))).scalars().all()
    truncated = len(rows) > TIMELINE_MAX_SESSIONS
    items = []
    for cs in rows[:TIMELINE_MAX_SESSIONS]:
        stop = effective_end(cs, now, settings.gap_seconds)
        usage = session_usage(cs, settings, now)
        gpus = f", {cs.gpu_request} x {cs.gpu_model or 'GPU'}" if cs.gpu_request else ""
        tip = (f"{cs.pod_name} ({cs.username}, {cs.node or 'no node'}): {_local(cs.started_at, settings)} to "
               f"{_local(cs.ended_at, settings) if cs.ended_at else 'now (running)'}{gpus}, "
               f"{_money(float(usage.cost), settings.currency)}")
        key = cs.username if by == "user" else (cs.node or "(no node)")
        items.append((key, cs.pod_name, tip, bool(cs.gpu_request), cs.ended_at is None, cs.started_at.timestamp(),
                      stop.timestamp()))
    if span == "day":
        marks = [lo + timedelta(hours=h) for h in range(0, 24, 3)]
        ticks = [(m.timestamp(), m.astimezone(settings.zone).strftime("%H:%M")) for m in marks]
    else:
        step = 1 if span == "week" else 3
        marks = [lo + timedelta(days=d) for d in range(0, days, step)]
        fmt = "%a %m-%d" if span == "week" else "%m-%d"
        ticks = [(m.timestamp(), m.astimezone(settings.zone).strftime(fmt)) for m in marks]
    chart = timeline(items, lo.timestamp(), hi.timestamp(), ticks)
    base = str(request.url_for("web_timeline"))

    def link(**changes: str) -> str:
        query = {"by": by, "span": span, "end": last_day.isoformat()}
        query.update(changes)
        return base + "?" + urlencode(query)

    context = _base_context(request, principal, "timeline", "Timeline")
    context.update(
        chart=chart, by=by, span=span, truncated=truncated, limit=TIMELINE_MAX_SESSIONS,
        window_label=(f"{first_day.isoformat()} to {last_day.isoformat()}" if days > 1 else last_day.isoformat()),
        by_links={"user": link(by="user"), "node": link(by="node")},
        span_links={name: link(span=name) for name in TIMELINE_DAYS},
        prev_url=link(end=(last_day - timedelta(days=days)).isoformat()),
        next_url=link(end=(last_day + timedelta(days=days)).isoformat()) if last_day < today else None,
        today_url=link(end=today.isoformat()),
    )
    return _render(request, "timeline.html", context)


@router.get("/users/{username}", name="web_user", response_class=HTMLResponse)
async def user_page(request: Request, session: SessionDep, principal: PagePrincipal,
                    username: Annotated[str, PathParam(min_length=1, max_length=255, pattern=_PRINTABLE)]) -> Response:
    """One user: department, summary cards, cost and GPU-hours per day over the last 30 days, and
    the newest sessions."""
    settings = request.app.state.settings
    now = datetime.now(timezone.utc)
    user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    recorded = (await session.execute(select(func.count()).select_from(ContainerSession)
                                      .where(ContainerSession.username == username))).scalar_one()
    if user is None and not recorded:
        return plain_page(f"No user {username}", f"<p>The portal knows no user named <code>{escape(username)}</code>: "
                          "nobody imported them and no server of theirs was recorded.</p>", status_code=404)
    department = None
    if user is not None and user.department_id is not None:
        department = (await session.execute(select(Department.name)
                                            .where(Department.id == user.department_id))).scalar_one_or_none()
    first_day = day_start(now, settings) - timedelta(days=GPU_CHART_DAYS - 1)
    per_day = await stats(session, settings, "day", first_day, now, now, user=username)
    cost_chart = vertical_bars(f"Cost per day ({settings.currency})", [(r["key"], r["cost"]) for r in per_day],
                               unit=settings.currency, width=600, height=250, decimals=2)
    gpu_chart = vertical_bars("GPU-hours per day", [(r["key"], r["gpu_hours"]) for r in per_day],
                              unit="GPU-hours", width=600, height=250)
    result = await sessions_api.list_sessions(request, session, settings, principal, TimeRange(request),
                                              user=username, department=None, q=None, state="all", page=1,
                                              page_size=PAGE_SIZE, format="json")
    context = _base_context(request, principal, "usage", username)
    context.update(
        username=username, display_name=user.display_name if user else None, department=department,
        cards=await _cards(session, settings, now, user=username), cost_chart=cost_chart, gpu_chart=gpu_chart,
        sessions=_session_rows(result.items, settings), total=result.total,
        all_sessions_url=str(request.url_for("web_usage")) + "?" + urlencode({"user": username}) + "#sessions-title",
        cards_url=str(request.url_for("web_usage_cards")) + "?" + urlencode({"user": username}),
        refresh_ms=CARD_REFRESH_MS, days=GPU_CHART_DAYS,
    )
    return _render(request, "user.html", context)


async def _pod_context(request: Request, session, principal: Principal) -> dict:
    settings = request.app.state.settings
    now = datetime.now(timezone.utc)
    cluster_error = None
    pods = []
    try:
        listing = await pods_api.pod_list(request, settings)
        items, usage, gpu_usage = listing.pods, listing.usage, listing.gpu_usage
    except HTTPException as exc:  # the page says "Cluster unavailable: <reason>" itself
        cluster_error, items, usage, gpu_usage = str(exc.detail).removeprefix("cluster unavailable: "), [], None, None
    uids = [p.pod_uid for p in items]
    names = {p.username for p in items}
    database_error = None
    try:
        # a recorded pod shows the department it is billed to (its terms at start); one not yet
        # recorded its user's current department
        depts = dict((await session.execute(
            select(User.username, Department.name).join(Department, Department.id == User.department_id)
            .where(User.username.in_(names)))).all()) if names else {}
        dept_names = dict((await session.execute(select(Department.id, Department.name))).all())
        open_sessions = {cs.pod_uid: cs for cs in (await session.execute(
            select(ContainerSession).where(ContainerSession.pod_uid.in_(uids)))).scalars()} if uids else {}
    except Exception as exc:  # the pods come from the cluster: list them without departments and costs
        if not is_database_outage(exc):
            raise
        await session.rollback()
        database_error, depts, dept_names, open_sessions = outage_reason(exc), {}, {}, {}
    for p in items:
        cs = open_sessions.get(p.pod_uid)
        dept = dept_names.get(cs.department_id) if cs is not None else depts.get(p.username)
        cost = session_usage(cs, settings, now).cost if cs is not None else None
        started = datetime.fromisoformat(p.started_at) if p.started_at else None
        cpu = f"{_cores(p.cpu_request)} req / {_cores(p.cpu_limit)} limit cores"
        memory = f"{_gib(p.memory_request)} req / {_gib(p.memory_limit)} limit"
        pods.append({
            "name": p.pod_name, "username": p.username, "department": dept,
            "phase": p.phase, "deleting": p.deleting, "profile": p.profile, "node": p.node,
            "cpu": cpu, "memory": memory, "gpus": p.gpu_request, "gpu_model": p.gpu_model,
            "cpu_used": _used(p.cpu_usage, p.cpu_limit, "cores"),
            "memory_used": _used(p.memory_usage, p.memory_limit, "GiB", GIB),
            "gpu_busy": f"{p.gpu_utilization:.0f} %" if p.gpu_utilization is not None else None,
            "gpu_idle": (f"GPU idle for {_duration(settings.gpu_idle_after)}+ (at or below "
                         f"{settings.gpu_idle_threshold:g} %)") if p.gpu_idle else None,
            "gpu_memory_used": _used(p.gpu_memory_usage, None, "GiB", GIB) if p.gpu_memory_usage is not None else None,
            "idle_stop": _idle_stop_text(p.gpu_idle_stop, settings),
            "started": _local(started, settings) if started else "—",
            "started_iso": started.astimezone(timezone.utc).isoformat() if started else "",
            "age": _duration(p.age_seconds), "cost": _money(float(cost), settings.currency) if cost is not None else "—",
            "summary": f"{p.gpu_request} GPU" if p.gpu_request else f"{_cores(p.cpu_request)} CPU cores",
        })
    # why the "in use" lines are empty, when they are (no metrics API, no permission, an outage)
    usage_note = None
    if usage is not None and usage.state != "ok" and items:
        usage_note = f"Actual CPU and memory use not shown ({usage.state}): {usage.detail}"
    # Prometheus configured but failing: said once above the cards (not configured: nothing to say)
    if gpu_usage is not None and gpu_usage.state == "unavailable" and any(p.gpu_request for p in items):
        usage_note = (usage_note + " " if usage_note else "") + f"GPU utilisation not shown: {gpu_usage.detail}"
    policy_note = None
    stopper = getattr(request.app.state, "idle_stopper", None)
    if stopper is not None:
        policy_note = (f"GPU idle stop policy on: a server whose GPUs stay at or below {settings.gpu_idle_threshold:g} % "
                       f"for {_duration(settings.gpu_idle_after)} is stopped {_duration(settings.gpu_idle_stop_grace)} "
                       "after its user is told, unless its GPUs are used again.")
        if stopper.status["state"] == "paused":
            policy_note += f" Not acting now: {stopper.status['detail']}"
    return {"pods": pods, "cluster_error": cluster_error, "database_error": database_error,
            "namespace": settings.hub_namespace, "usage_note": usage_note, "policy_note": policy_note}


def _idle_stop_text(stop, settings) -> dict | None:
    """The Pods card's line about the GPU idle stop policy's warning of a server."""
    if stop is None:
        return None
    if stop.state == "stopped":
        return {"pill": "stopped: GPUs idle", "text": f"stopped by the GPU idle policy at "
                                                     f"{_local(stop.stopped_at, settings)}"}
    return {"pill": f"stops {_local(stop.stop_at, settings)}",
            "text": f"will stop at {_local(stop.stop_at, settings)} unless its GPUs are used (warned "
                    f"{_local(stop.warned_at, settings)}; {stop.notice})"}


@router.get("/pods", name="web_pods", response_class=HTMLResponse)
async def pods_page(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    context = _base_context(request, principal, "pods", "Pods")
    context.update(await _pod_context(request, session, principal))
    context.update(fragment_url=request.url_for("web_pod_cards"), stop_url=request.url_for("stop_pods"),
                   refresh_ms=POD_REFRESH_MS)
    return _render(request, "pods.html", context)


@router.get("/pods/cards", name="web_pod_cards", response_class=HTMLResponse)
async def pod_cards(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    context = await _pod_context(request, session, principal)
    return _render(request, "partials/pod_cards.html", context)


async def _sync_context(request: Request, session) -> dict:
    settings = request.app.state.settings
    status = await sync_status(request)
    recorder = recorder_status(request)
    pending = None
    if status.enabled:
        pending = (await session.execute(select(func.count()).select_from(ContainerSession)
                                         .where(ContainerSession.change_seq > (status.watermark or 0)))).scalar_one()
    target = settings.mysql_target
    where = None
    if target is not None:
        where = (f"{target.database} via {target.unix_socket}" if target.unix_socket
                 else f"{target.database} on {target.host}:{target.port}")
    interval = settings.report_sync_interval
    return {
        "sync_enabled": status.enabled,
        "sync": {
            "status": status.state if status.enabled else "off",
            "last_run": _local(status.last_run_at, settings, with_seconds=True),
            "last_success": _local(status.last_success_at, settings, with_seconds=True),
            "last_rows": status.last_rows if status.last_rows is not None else "—",
            "last_error": status.last_error, "pending": pending, "table": settings.mysql_table, "target": where,
            "interval": _every(interval),
        },
        "recorder": {
            "status": recorder.state,
            "last_cycle": _local(recorder.last_cycle_at, settings, with_seconds=True),
        },
    }


@router.get("/sync", name="web_sync", response_class=HTMLResponse)
async def sync_page(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    context = _base_context(request, principal, "sync", "Sync")
    context.update(await _sync_context(request, session))
    context.update(fragment_url=request.url_for("web_sync_panel"), sync_url=request.url_for("run_sync"),
                   refresh_ms=CARD_REFRESH_MS)
    return _render(request, "sync.html", context)


@router.get("/sync/panel", name="web_sync_panel", response_class=HTMLResponse)
async def sync_panel(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    return _render(request, "partials/sync_panel.html", await _sync_context(request, session))


def _detail_lines(detail: dict, prefix: str = "") -> list[tuple[str, str]]:
    """An audit detail as (key, text) lines, nested mappings flattened (figures.gpu_peak_percent)."""
    lines: list[tuple[str, str]] = []
    for key, value in detail.items():
        if isinstance(value, dict):
            lines += _detail_lines(value, f"{prefix}{key}.")
        elif value is not None and value != "":
            lines.append((f"{prefix}{key}", value if isinstance(value, str) else str(value)))
    return lines


@router.get("/audit", name="web_audit", response_class=HTMLResponse)
async def audit_page(request: Request, session: SessionDep, principal: PagePrincipal,
                     action: Annotated[str | None, Query(max_length=64, pattern=_PRINTABLE)] = None,
                     actor: Annotated[str | None, Query(max_length=255, pattern=_PRINTABLE)] = None,
                     target: Annotated[str | None, Query(max_length=512, pattern=_PRINTABLE)] = None,
                     page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    """The audit log (the API's /api/audit), newest first, with filters."""
    settings = request.app.state.settings
    action, actor, target = ((v or "").strip() or None for v in (action, actor, target))
    result = await audit_api.audit_page(session, settings, action=action, actor=actor, target=target, page=page,
                                        page_size=PAGE_SIZE)
    entries = [{"at": _local(e.at, settings, with_seconds=True), "actor": e.actor, "action": e.action,
                "target": e.target, "result": e.result, "result_class": AUDIT_RESULT_CLASS.get(e.result, ""),
                "policy": e.actor.startswith("policy:"), "detail": _detail_lines(e.detail)} for e in result.items]
    filters = {"action": action, "actor": actor, "target": target}
    base = str(request.url_for("web_audit"))

    def page_url(number: int) -> str:
        return base + "?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": number})

    context = _base_context(request, principal, "audit", "Audit")
    context.update(entries=entries, total=result.total, page=result.page, pages=result.pages, filters=filters,
                   action_options=AUDIT_ACTIONS, audit_url=base,
                   prev_url=page_url(result.page - 1) if result.page > 1 else None,
                   next_url=page_url(result.page + 1) if result.page < result.pages else None)
    return _render(request, "audit.html", context)


__all__ = ["LoginRequired", "login_required_handler", "mount_static", "router"]
