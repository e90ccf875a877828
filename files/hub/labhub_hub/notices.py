"""Notices to a user on their hub pages, posted by a service (Labhub's usage portal).

JupyterHub 5 has no per-user message API: its ``announcement`` template variables are the same
for everyone. This module adds a small one, kept in the hub's memory:

* ``POST /hub/api/labhub/notices/<user>`` with ``{"text": "...", "server_name": ""}`` puts (or
  replaces) the notice about one of the user's servers; ``DELETE`` (``?server_name=`` for one
  server, else all of them) removes it; ``GET`` lists the user's notices.
* Authorization is JupyterHub's own: POST and DELETE need the scope ``delete:servers`` for that
  user (``delete:servers``, ``delete:servers!user=<name>`` or a scope that implies it, such as
  ``admin:servers``): whoever may stop the user's servers may tell the user about it; the
  portal's hub service token already holds it. GET needs ``read:servers`` or ``delete:servers``
  for the user (the user themselves has it). No new secret.
* The notices are shown on the user's hub pages (home, spawn, pending pages, token page ...):
  ``configure()`` turns the ``announcement`` template variables into callables of the user
  (JupyterHub passes the current user to a callable value of ``c.JupyterHub.template_vars``)
  that append the user's notices, escaped, to the site's announcement. Any ``page.html`` that
  keeps JupyterHub's ``announcement`` block (the branding one does) shows them.
* Every answer of these endpoints carries the header ``X-Labhub-Notices: 1``, so a client can tell
  "this hub has no notice endpoint" (JupyterHub's own 404) from "no such user" (ours).

Notices live as long as the hub process: a poster that must survive a hub restart posts again
(the portal does, every cycle while its warning stands).
"""

import html
import json
import time

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

ROUTE = r"/api/labhub/notices/([^/]+)"
HEADER = "X-Labhub-Notices"
MAX_TEXT = 1000
MAX_SERVER_NAME = 255
# announcement variables shown to a logged-in user (login and logout pages have none)
_NOT_FOR_USERS = ("announcement_login", "announcement_logout")


class NoticeStore:
    """user name -> server name -> {"text", "posted_at"} (epoch seconds), in memory."""

    def __init__(self):
        self._notices = {}

    def __deepcopy__(self, memo):
        # JupyterHub deep-copies its configuration (the handler's kwargs among it): the endpoint and
        # the template variables must keep sharing this one store
        return self

    def __copy__(self):
        return self

    def put(self, user, server_name, text):
        self._notices.setdefault(user, {})[server_name] = {"text": text, "posted_at": time.time()}

    def remove(self, user, server_name=None):
        """Remove one server's notice (``server_name``) or all of the user's; True when one was there."""
        notices = self._notices.get(user)
        if not notices:
            return False
        if server_name is None:
            del self._notices[user]
            return True
        removed = notices.pop(server_name, None) is not None
        if not notices:
            del self._notices[user]
        return removed

    def for_user(self, user):
        """The user's notices, by server name ("" = the default server first)."""
        return [{"server_name": name, "text": n["text"], "posted_at": n["posted_at"]}
                for name, n in sorted((self._notices.get(user) or {}).items())]

    def html(self, user):
        """The user's notices as HTML, every text escaped ("" without any)."""
        parts = []
        for notice in self.for_user(user):
            server = notice["server_name"]
            label = f"Server {html.escape(server)}: " if server else ""
            parts.append(f'<div class="labhub-notice" role="alert" data-server="{html.escape(server, quote=True)}">'
                         f"{label}{html.escape(notice['text'])}</div>")
        return "".join(parts)


def _body(handler):
    """The POST body: {"text": non-empty str <= MAX_TEXT, "server_name": str <= MAX_SERVER_NAME}."""
    try:
        data = json.loads(handler.request.body or b"null")
    except ValueError:
        raise web.HTTPError(400, "body: not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPError(400, 'body: must be a JSON object {"text": ..., "server_name": ...}')
    unknown = sorted(set(data) - {"text", "server_name"})
    if unknown:
        raise web.HTTPError(400, f"{unknown[0]}: unknown field (known: text, server_name)")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise web.HTTPError(400, "text: required, a non-empty string")
    if len(text) > MAX_TEXT:
        raise web.HTTPError(400, f"text: at most {MAX_TEXT} characters, got {len(text)}")
    server_name = data.get("server_name", "")
    if not isinstance(server_name, str) or len(server_name) > MAX_SERVER_NAME:
        raise web.HTTPError(400, f"server_name: a string of at most {MAX_SERVER_NAME} characters")
    return text.strip(), server_name


class NoticeAPIHandler(APIHandler):
    """POST/DELETE/GET /hub/api/labhub/notices/<user> (see the module docstring)."""

    def initialize(self, store):
        self.store = store

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header(HEADER, "1")  # also on errors: Tornado's send_error resets to the defaults

    def _user(self, user_name):
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"No such user: {user_name}")
        return user

    def _answer(self, user, status=200):
        self.set_status(status)
        self.write(json.dumps({"user": user.name, "notices": self.store.for_user(user.name)}))

    @needs_scope("read:servers", "delete:servers")
    def get(self, user_name):
        self._answer(self._user(user_name))

    @needs_scope("delete:servers")
    def post(self, user_name):
        user = self._user(user_name)
        text, server_name = _body(self)
        self.store.put(user.name, server_name, text)
        self.log.info("notice for %s%s posted by %s", user.name, f" (server {server_name!r})" if server_name else "",
                      getattr(self.current_user, "name", "?"))
        self._answer(user)

    @needs_scope("delete:servers")
    def delete(self, user_name):
        user = self._user(user_name)
        server_name = self.get_argument("server_name", None)
        if self.store.remove(user.name, server_name):
            self.log.info("notice for %s removed by %s", user.name, getattr(self.current_user, "name", "?"))
        self.set_status(204)


def _with_notices(store, original):
    """A template variable showing ``original`` (a value, or a callable of the user) followed by the
    current user's notices."""

    def value(user):
        base = original(user) if callable(original) else original
        name = getattr(user, "name", None) if getattr(user, "kind", "user") == "user" else None
        notices = store.html(name) if name else ""
        if not notices:
            return base
        return (base or "") + notices

    return value


def install(c, store=None):
    """Add the notice endpoint and the notices on the hub pages to a JupyterHub config ``c``
    (keeping the extra handlers and template variables already set, e.g. z2jh's templateVars);
    returns the store."""
    store = store if store is not None else NoticeStore()
    handlers = list(c.JupyterHub.extra_handlers) if "extra_handlers" in c.JupyterHub else []
    handlers.append((ROUTE, NoticeAPIHandler, {"store": store}))
    c.JupyterHub.extra_handlers = handlers
    template_vars = dict(c.JupyterHub.template_vars) if "template_vars" in c.JupyterHub else {}
    template_vars.setdefault("announcement", "")
    for key in list(template_vars):
        if key.startswith("announcement") and key not in _NOT_FOR_USERS:
            template_vars[key] = _with_notices(store, template_vars[key])
    c.JupyterHub.template_vars = template_vars
    return store
