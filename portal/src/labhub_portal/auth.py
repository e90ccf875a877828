"""Authentication and CSRF protection.

Two ways in:

* **Bearer token** (scripts): ``Authorization: Bearer <PORTAL_TOKEN>``, compared in constant time.
  Header-authenticated requests are immune to CSRF (browsers never add that header by themselves).
* **JupyterHub OAuth** (browsers): the portal is a hub service.  ``/login`` redirects to the hub's
  ``/hub/api/oauth2/authorize``; ``/oauth_callback`` exchanges the code at ``/hub/api/oauth2/token``
  (client secret = the service's API token), reads ``/hub/api/user`` and admits hub admins or members
  of ``PORTAL_ADMIN_GROUP``.  The session is an HMAC-signed cookie (HttpOnly, SameSite=Strict,
  Secure unless turned off) that also carries a CSRF token.

Cookie-authenticated (and anonymous loopback) requests with an unsafe method must send
``X-CSRF-Token`` equal to the ``labhub_portal_csrf`` cookie (double submit; that cookie is readable
by the page's JS, SameSite=Strict); for cookie sessions the value must also equal the token signed
into the session cookie.

With no authentication configured at all (allowed only on 127.0.0.1) requests run as the local
user ``local`` — still with the CSRF check on unsafe methods.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .plain_page import plain_page

SESSION_COOKIE = "labhub_portal_session"
CSRF_COOKIE = "labhub_portal_csrf"
STATE_COOKIE = "labhub_portal_oauth_state"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="PORTAL_TOKEN")


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # "token" | "hub" | "local"
    csrf: str | None = None


# --- signed cookies ---------------------------------------------------------------------------
def _secret(request: Request) -> bytes:
    settings = request.app.state.settings
    if settings.cookie_secret is not None:
        return settings.cookie_secret.get_secret_value().encode()
    key = getattr(request.app.state, "_ephemeral_cookie_key", None)
    if key is None:  # demo / loopback without a configured secret: per-process key
        key = secrets.token_bytes(32)
        request.app.state._ephemeral_cookie_key = key
    return key


def sign(payload: dict, key: bytes) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def unsign(value: str | None, key: bytes) -> dict | None:
    if not value or "." not in value:
        return None
    body, mac = value.rsplit(".", 1)
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
        return None
    return payload


def _cookie_args(request: Request, http_only: bool = True) -> dict:
    settings = request.app.state.settings
    return {"httponly": http_only, "samesite": "strict", "secure": settings.cookie_secure,
            "path": (settings.root_path or "") + "/"}


def csrf_token(request: Request) -> str:
    """The CSRF token for this browser (for templates: put it in a meta tag / hidden field)."""
    token = getattr(request.state, "csrf_token", None)
    if token:
        return token
    session = unsign(request.cookies.get(SESSION_COOKIE), _secret(request))
    token = (session or {}).get("csrf") or request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    request.state.csrf_token = token
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    token = csrf_token(request)
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, max_age=request.app.state.settings.session_max_age,
                            **_cookie_args(request, http_only=False))


def _check_csrf(request: Request, expected: str | None) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    ok = bool(sent) and hmac.compare_digest(sent, cookie)
    if ok and expected is not None:
        ok = hmac.compare_digest(sent, expected)
    if not ok:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"CSRF check failed: send the {CSRF_COOKIE} cookie value in the {CSRF_HEADER} header")


async def optional_principal(request: Request,
                             credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
                             ) -> Principal | None:
    settings = request.app.state.settings
    if credentials is not None:
        if settings.token is not None and hmac.compare_digest(
                credentials.credentials.encode(), settings.token.get_secret_value().encode()):
            return Principal("token", "token")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    session = unsign(request.cookies.get(SESSION_COOKIE), _secret(request))
    if session and session.get("u"):
        _check_csrf(request, session.get("csrf"))
        return Principal(str(session["u"]), "hub", session.get("csrf"))
    if not settings.auth_configured:
        _check_csrf(request, None)
        return Principal("local", "local")
    return None


async def require_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="authentication required (Bearer token or hub login)",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]


# --- OAuth with JupyterHub ------------------------------------------------------------------------
router = APIRouter(tags=["auth"])


def _redirect_uri(request: Request) -> str:
    settings = request.app.state.settings
    if settings.base_url:
        return settings.base_url + "/oauth_callback"
    return str(request.url_for("oauth_callback"))


def _safe_next(value: str | None, request: Request) -> str:
    root = request.app.state.settings.root_path or ""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or urlsplit(value).netloc:
        return root + "/"
    return value


def _oauth_or_404(request: Request):
    settings = request.app.state.settings
    if not settings.oauth_enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="JupyterHub login is not configured")
    return settings


@router.get("/login", summary="Start JupyterHub OAuth login", include_in_schema=True,
            responses={302: {"description": "redirect to the hub"}, 404: {"description": "OAuth not configured"}})
async def login(request: Request, next: str | None = None):  # noqa: A002 - query parameter name
    settings = _oauth_or_404(request)
    state = secrets.token_urlsafe(24)
    query = urlencode({"client_id": settings.oauth_client_id, "redirect_uri": _redirect_uri(request),
                       "response_type": "code", "state": state})
    response = RedirectResponse(f"{settings.public_hub_url}/hub/api/oauth2/authorize?{query}", status_code=302)
    cookie = sign({"s": state, "n": _safe_next(next, request), "exp": time.time() + 600}, _secret(request))
    args = _cookie_args(request)
    args["samesite"] = "lax"  # the hub redirects back cross-site: Strict would drop the state cookie
    response.set_cookie(STATE_COOKIE, cookie, max_age=600, **args)
    return response


@router.get("/oauth_callback", name="oauth_callback", summary="JupyterHub OAuth callback",
            responses={302: {"description": "logged in"}, 400: {"description": "bad state or code"},
                       403: {"description": "not a hub admin / not in the admin group"},
                       404: {"description": "OAuth not configured"},
                       502: {"description": "the hub did not answer the token exchange"}})
async def oauth_callback(request: Request, code: str | None = None, state: str | None = None):
    settings = _oauth_or_404(request)
    saved = unsign(request.cookies.get(STATE_COOKIE), _secret(request))
    if not code or not state or not saved or not hmac.compare_digest(str(saved.get("s", "")), state):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="OAuth state mismatch or missing code")
    token_url = f"{settings.hub_api_url}/oauth2/token"
    async with httpx.AsyncClient(timeout=settings.stop_timeout) as client:
        try:
            token_resp = await client.post(token_url, data={
                "client_id": settings.oauth_client_id,
                "client_secret": settings.hub_api_token.get_secret_value(),
                "grant_type": "authorization_code", "code": code, "redirect_uri": _redirect_uri(request)})
            if token_resp.status_code != 200:
                raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                    detail=f"hub refused the OAuth code (HTTP {token_resp.status_code})")
            access_token = token_resp.json().get("access_token")
            user_resp = await client.get(f"{settings.hub_api_url}/user",
                                         headers={"Authorization": f"token {access_token}"})
        except httpx.HTTPError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=f"hub unreachable: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail="hub returned invalid JSON") from exc
    if user_resp.status_code != 200:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="hub did not identify the user")
    user = user_resp.json()
    groups = user.get("groups") or []
    allowed = bool(user.get("admin")) or (settings.admin_group is not None and settings.admin_group in groups)
    if not allowed:
        return _refused_page(request, str(user.get("name")))
    csrf = secrets.token_urlsafe(32)
    response = RedirectResponse(_safe_next(saved.get("n"), request), status_code=302)
    response.set_cookie(SESSION_COOKIE, sign({"u": user.get("name"), "csrf": csrf,
                                              "exp": time.time() + settings.session_max_age}, _secret(request)),
                        max_age=settings.session_max_age, **_cookie_args(request))
    response.set_cookie(CSRF_COOKIE, csrf, max_age=settings.session_max_age, **_cookie_args(request, http_only=False))
    response.delete_cookie(STATE_COOKIE, path=_cookie_args(request)["path"])
    return response


def _refused_page(request: Request, name: str) -> HTMLResponse:
    """The browser's answer when the hub identified a user the portal does not admit (403)."""
    settings = request.app.state.settings
    group = settings.admin_group
    who = "hub admins" + (f" and members of the hub group <code>{html.escape(group)}</code>" if group else "")
    hub = html.escape(f"{settings.public_hub_url}/hub/home", quote=True)
    response = plain_page(
        "Access refused",
        f"<p>The hub signed you in as <code>{html.escape(name)}</code>, who is neither a hub "
        f"admin nor in the admin group. The usage portal is open to {who} only.</p>"
        f"<p><a href=\"{hub}\">Back to JupyterHub</a></p>", 403)
    response.delete_cookie(STATE_COOKIE, path=_cookie_args(request)["path"])
    return response


@router.post("/logout", summary="End the browser session", status_code=204,
             responses={401: {"description": "not logged in"}, 403: {"description": "CSRF check failed"}})
async def logout(request: Request, principal: CurrentPrincipal) -> Response:
    response = Response(status_code=204)
    path = _cookie_args(request)["path"]
    response.delete_cookie(SESSION_COOKIE, path=path)
    response.delete_cookie(CSRF_COOKIE, path=path)
    return response
