"""The console's web routes under /console: pages, sign-in, the live channel, built assets.

Thin like the API's handlers: each parses, asks a service (the same ones the API uses, through
``fleet``/``device`` here) and renders a template. Errors become pages: a domain error renders
``error.html`` with its status (404 for an unknown or foreign device, as the API answers), an
unexpected one a plain 500 page (logged with its trace, never shown); requests made by the
console's own scripts get the API's JSON error shape instead.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import psycopg
from litestar import MediaType, Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Body, Parameter
from litestar.response import File, Redirect, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from rts_monitor.alerts import rules
from rts_monitor.auth.principal import Role, require_role, require_staff
from rts_monitor.console import alerts, commands, dba, device, fleet, live, pages, rollouts, sessions, signin
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import DomainError, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Reads, connection

log = logging.getLogger(__name__)

LOGIN_CSRF_COOKIE = "rts_console_login"
FRAGMENT_HEADER = "x-console-fragment"
SCRIPT_HEADER = "x-requested-with"  # the console's fetch() calls send "rts-console"
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
# Said explicitly: the system's MIME table may not know them (Debian's slim images have none),
# and browsers refuse scripts and styles served as anything else (X-Content-Type-Options).
_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css",
                ".json": "application/json", ".txt": "text/plain"}
MAX_LIVE_AGENTS = 500
WATCHABLE = {"alert", "command"}
STAFF_WATCHABLE = WATCHABLE | {"rollout"}  # rollouts are staff-only to read (rollouts/service.py)


class SignInRequired(Exception):
    """No live session: pages go to the sign-in form and come back to ``next`` afterwards."""

    def __init__(self, next_path: str, *, expired: bool) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path
        self.expired = expired


# ---------------------------------------------------------------- helpers


def _settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _ctx(request: Request[Any, Any, Any]) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _from_script(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return (request.headers.get(SCRIPT_HEADER) == "rts-console" or FRAGMENT_HEADER in request.headers
            or path.startswith(("/console/data/", "/console/live")))


def security_headers(settings: Settings) -> dict[str, str]:
    """Every console response: no inline script or style can run (all code is in the built
    bundle), nothing is framed except by ``RTS_CONSOLE_FRAME_ANCESTORS``, and pages with
    people's data are never cached."""
    csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
           f"frame-ancestors {settings.console_frame_ancestors}")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _html(request: Request[Any, Any, Any], template: str, *, status: int = 200,
          headers: dict[str, str] | None = None, cookies: list[Cookie] | None = None, **context: Any) -> Response[str]:
    settings = _settings(request)
    try:
        body = pages.render(template, **context)
    except pages.AssetsMissing as exc:
        log.error("console.assets_missing")
        body, status = pages.render("assets_missing.html", message=str(exc)), 503
    return Response(body, status_code=status, media_type=MediaType.HTML,
                    headers={**security_headers(settings), **(headers or {})}, cookies=cookies)


def _json_error(status: int, code: str, message: str, extra: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status": status, "code": code, "message": message, **(extra or {})}, status_code=status,
                    media_type=MediaType.JSON, headers=headers)


def _page_context(request: Request[Any, Any, Any], session: sessions.Session | None, active: str) -> dict[str, Any]:
    return {"session": session, "principal": session.principal if session else None, "active": active,
            "now": datetime.now(UTC)}


# ---------------------------------------------------------------- who is asking


async def provide_viewer(request: Request[Any, Any, Any]) -> sessions.Session:
    """The signed-in session of this request, CSRF-checked on state-changing methods."""
    ctx = _ctx(request)
    token = request.cookies.get(sessions.COOKIE)
    session = None
    if token:
        async with connection(ctx.pool) as conn:
            session = await sessions.resolve(conn, settings=ctx.settings, token=token)
    if session is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(here, expired=bool(token))
    if request.method not in sessions.SAFE_METHODS:
        supplied = request.headers.get(sessions.CSRF_HEADER)
        if supplied is None and "form" in (request.headers.get("content-type") or ""):
            supplied = (await request.form()).get(sessions.CSRF_FIELD)
        sessions.check_csrf(expected=session.csrf_token, method=request.method, supplied=supplied,
                            origin=request.headers.get("origin"), host=request.headers.get("host"))
    return session


# ---------------------------------------------------------------- errors as pages


def on_sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    if _from_script(request):
        return _json_error(401, "unauthorized", "your console session has ended: sign in again",
                           {"sign_in": "/console/login?" + urlencode({"next": exc.next_path})})
    query = {"next": exc.next_path, **({"expired": "1"} if exc.expired else {})}
    return Redirect("/console/login?" + urlencode(query), status_code=303, headers=security_headers(_settings(request)))


def _app_answer(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """What the API answers for this exception (api/errors.py: the one mapping to a status and
    the body ``{status, code, message, field?}``), found through the app's handlers."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            response: Response[Any] = handler(request, exc)
            return response
    raise exc


def on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The API's answer for scripts; a page with the same status and message for people. An
    unexpected error's trace goes to the log (the app's handler logs it), never to the page."""
    answer = _app_answer(request, exc)
    if _from_script(request):
        return answer
    body = answer.content if isinstance(answer.content, dict) else {}
    status = answer.status_code or 500
    message = str(body.get("message") or "Something went wrong on our side.")
    if status >= 500 and body.get("code") == "internal_error":
        message = "Something went wrong on our side. It has been logged; please try again."
    titles = {404: "Not found", 403: "Not allowed", 429: "Too many attempts", 503: "Unavailable",
              500: "Something went wrong"}
    headers = {k: v for k, v in answer.headers.items() if k.lower() == "retry-after"}
    return _html(request, "error.html", status=status, headers=headers, title=titles.get(status, "Cannot show this"),
                 status_code=status, message=message, field=body.get("field"), **_page_context(request, None, ""))


# ---------------------------------------------------------------- sign-in and out


def _login_cookie(request: Request[Any, Any, Any]) -> tuple[str, Cookie]:
    """Login-form CSRF (there is no session yet): a random value both in a cookie and in the form;
    a cross-site form cannot read or set the cookie, so it cannot make them match."""
    value = secrets.token_urlsafe(24)
    return value, Cookie(key=LOGIN_CSRF_COOKIE, value=value, path="/console/login", httponly=True, samesite="strict",
                         secure=sessions.is_secure(_settings(request), request.url.scheme), max_age=3600)


def _login_page(request: Request[Any, Any, Any], *, status: int = 200, error: str | None = None,
                notice: str | None = None, email: str = "", next_path: str = sessions.HOME,
                headers: dict[str, str] | None = None) -> Response[str]:
    form_token, cookie = _login_cookie(request)
    return _html(request, "login.html", status=status, cookies=[cookie], headers=headers, error=error,
                 notice=notice, email=email,
                 next_path=sessions.safe_next(next_path), form_token=form_token,
                 **_page_context(request, None, "login"))


def _session_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    settings = _settings(request)
    return Cookie(key=sessions.COOKIE, value=token, path="/", httponly=True, samesite="lax",
                  secure=sessions.is_secure(settings, request.url.scheme),
                  max_age=settings.console_session_absolute_hours * 3600)


async def _signed_in(request: Request[Any, Any, Any], principal: Any, source: str, next_path: str) -> Response[Any]:
    ctx = _ctx(request)
    async with connection(ctx.pool) as conn:
        token, _ = await sessions.start(conn, settings=ctx.settings, principal=principal, source=source,
                                        address=request.client.host if request.client else None,
                                        user_agent=request.headers.get("user-agent"))
    response: Response[Any] = Redirect(sessions.safe_next(next_path), status_code=303, headers={
        **security_headers(ctx.settings), "Referrer-Policy": "no-referrer"})
    response.set_cookie(_session_cookie(request, token))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@get("/login", include_in_schema=False)
async def login_form(request: Request[Any, Any, Any], next: str | None = None, expired: str | None = None,
                     signed_out: str | None = None) -> Response[Any]:
    ctx = _ctx(request)
    token = request.cookies.get(sessions.COOKIE)
    if token:
        async with connection(ctx.pool) as conn:
            if await sessions.resolve(conn, settings=ctx.settings, token=token) is not None:
                return Redirect(sessions.safe_next(next), status_code=303)
    notice = ("Your session has ended. Sign in to continue where you were." if expired
              else "You are signed out." if signed_out else None)
    return _login_page(request, notice=notice, next_path=next or sessions.HOME)


@post("/login", include_in_schema=False)
async def login_submit(
    request: Request[Any, Any, Any],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    ctx = _ctx(request)
    next_path = sessions.safe_next(data.get("next"))
    email = (data.get("email") or "").strip()
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    try:
        sessions.check_csrf(expected=expected or "", method="POST",
                            supplied=data.get("form_token") if expected else None,
                            origin=request.headers.get("origin"), host=request.headers.get("host"))
    except DomainError:
        return _login_page(request, status=403, error="The sign-in form had expired. Please try again.",
                           email=email, next_path=next_path)
    if not email or not data.get("password"):
        return _login_page(request, status=422, error="Enter your e-mail and your password.", email=email,
                           next_path=next_path)
    address = request.client.host if request.client else "unknown"
    try:
        async with connection(ctx.pool) as conn:
            principal = await signin.password(conn, settings=ctx.settings, email=email,
                                              secret=data.get("password", ""), address=address)
    except TooManyRequests as exc:
        return _login_page(request, status=429, error=exc.message, email=email, next_path=next_path,
                           headers={"Retry-After": str(max(1, round(exc.retry_after)))})
    except Unauthorized as exc:
        return _login_page(request, status=401, error=exc.message, email=email, next_path=next_path)
    return await _signed_in(request, principal, "password", next_path)


@get("/auth", include_in_schema=False)
async def handoff(request: Request[Any, Any, Any], token: str | None = None, next: str | None = None) -> Response[Any]:
    """The portal's link: ``/console/auth?token=<portal JWT>&next=/console/agents/<id>``. The
    answer is a redirect, so the token leaves the address bar and the history at once."""
    try:
        principal = signin.handoff(_settings(request), token or "")
    except Unauthorized as exc:
        log.info("console.handoff.refused", extra={"reason": exc.message})
        return _login_page(request, status=401, next_path=next or sessions.HOME,
                           error="This sign-in link is not valid (it may have expired). Open the console from "
                                 "the portal again, or sign in with your e-mail and password.")
    return await _signed_in(request, principal, "handoff", next or sessions.HOME)


@post("/logout", include_in_schema=False)
async def logout(request: Request[Any, Any, Any], viewer: sessions.Session) -> Response[Any]:
    ctx = _ctx(request)
    async with connection(ctx.pool) as conn:
        await sessions.end(conn, token=request.cookies.get(sessions.COOKIE, ""))
    response: Response[Any] = Redirect("/console/login?signed_out=1", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@get("/data/session", include_in_schema=False)
async def session_state(viewer: sessions.Session) -> dict[str, Any]:
    return {"user_id": str(viewer.principal.user_id), "role": viewer.principal.role.value,
            "ends_at": viewer.ends_at.isoformat()}


# ---------------------------------------------------------------- pages


@get("/", include_in_schema=False)
async def fleet_page(request: Request[Any, Any, Any], ctx: AppContext, reads: Reads,
                     viewer: sessions.Session) -> Response[Any]:
    query = fleet.parse(dict(request.query_params))
    result = await reads.run(fleet.page, principal=viewer.principal, query=query,
                              lookback_hours=ctx.settings.latest_metrics_lookback_hours)
    template = "fleet_results.html" if request.headers.get(FRAGMENT_HEADER) == "fleet" else "fleet.html"
    return _html(request, template, fleet=result, healths=fleet.HEALTHS, sorts=fleet.SORTS,
                 page_sizes=fleet.PAGE_SIZES, default_per=fleet.DEFAULT_PAGE_SIZE, urlencode=urlencode,
                 max_ids=fleet.MAX_IDS,
                 default_metrics_interval=ctx.settings.metrics_interval_seconds,
                 default_heartbeat_interval=ctx.settings.heartbeat_interval_seconds,
                 **_page_context(request, viewer, "fleet"))


@get("/agents/{agent_id:str}", include_in_schema=False)
async def device_page(request: Request[Any, Any, Any], ctx: AppContext, reads: Reads, viewer: sessions.Session,
                      agent_id: str) -> Response[Any]:
    try:
        parsed = UUID(agent_id)
    except ValueError:
        raise NotFound("agent not found") from None
    data = await reads.run(device.load, settings=ctx.settings, principal=viewer.principal, agent_id=parsed)
    return _html(request, "device.html", d=data, a=data.agent, form=commands.form_context(ctx.settings),
                 **_page_context(request, viewer, "fleet"))


@get("/commands", include_in_schema=False)
async def commands_page(request: Request[Any, Any, Any], ctx: AppContext, conn: Conn,
                        viewer: sessions.Session, device: str | None = None,
                        # "agent" is the name of the agent-token dependency: the query parameter is mapped
                        chosen_agent: Annotated[str | None, Parameter(query="agent")] = None) -> Response[Any]:
    data = await commands.overview(conn, principal=viewer.principal)
    found = await commands.find_devices(conn, principal=viewer.principal, text=device or "")
    chosen = None
    if chosen_agent:
        try:
            chosen = await commands.target(conn, principal=viewer.principal, agent_id=UUID(chosen_agent))
        except ValueError:
            raise NotFound("agent not found", field="agent") from None
    form = commands.form_context(ctx.settings)
    return _html(request, "commands.html", c=data, sensitive=form["sensitive"], form=form, device=device or "",
                 found=found, chosen=chosen, **_page_context(request, viewer, "commands"))


@get("/commands/{agent_id:uuid}/{command_id:uuid}", include_in_schema=False)
async def command_page(request: Request[Any, Any, Any], conn: Conn, viewer: sessions.Session, agent_id: UUID,
                       command_id: UUID) -> Response[Any]:
    data = await commands.detail(conn, principal=viewer.principal, agent_id=agent_id, command_id=command_id)
    return _html(request, "command.html", d=data, **_page_context(request, viewer, "commands"))


@get("/alerts", include_in_schema=False)
async def alerts_page(request: Request[Any, Any, Any], reads: Reads, viewer: sessions.Session) -> Response[Any]:
    query = alerts.parse_inbox(dict(request.query_params))
    data = await reads.run(alerts.inbox, principal=viewer.principal, query=query)
    template = "alerts_results.html" if request.headers.get(FRAGMENT_HEADER) == "alerts" else "alerts.html"
    return _html(request, template, inbox=data, q=query, statuses=list(alerts.STATUS_VIEWS),
                 periods=list(alerts.PERIODS), severities=alerts.SEVERITIES, urlencode=urlencode,
                 **_page_context(request, viewer, "alerts"))


def _can_write_rules(request: Request[Any, Any, Any], viewer: sessions.Session) -> bool:
    return viewer.principal.is_staff or _settings(request).alert_customer_rules


@get("/alerts/rules", include_in_schema=False)
async def rules_page(request: Request[Any, Any, Any], conn: Conn, viewer: sessions.Session) -> Response[Any]:
    data = await alerts.rules_page(conn, principal=viewer.principal)
    return _html(request, "rules.html", r=data, names={b["id"]: b["business_name"] for b in data.businesses},
                 can_write=_can_write_rules(request, viewer), **_page_context(request, viewer, "alerts"))


@get(["/alerts/rules/new", "/alerts/rules/{rule_id:uuid}"], include_in_schema=False)
async def rule_page(request: Request[Any, Any, Any], conn: Conn, viewer: sessions.Session,
                    rule_id: UUID | None = None) -> Response[Any]:
    if not _can_write_rules(request, viewer):
        rules.require_rule_writer(viewer.principal, _settings(request))
    form = await alerts.rule_form(conn, principal=viewer.principal, rule_id=rule_id)
    return _html(request, "rule_form.html", **form, **_page_context(request, viewer, "alerts"))


@get("/alerts/{alert_id:uuid}", include_in_schema=False)
async def alert_page(request: Request[Any, Any, Any], reads: Reads, viewer: sessions.Session,
                     alert_id: UUID) -> Response[Any]:
    data = await reads.run(alerts.episode, principal=viewer.principal, alert_id=alert_id)
    return _html(request, "alert.html", d=data, e=data.episode, **_page_context(request, viewer, "alerts"))


@get("/businesses", include_in_schema=False)
async def businesses_page(request: Request[Any, Any, Any], reads: Reads, viewer: sessions.Session) -> Response[Any]:
    require_staff(viewer.principal)
    businesses = await reads.run(fleet.admin_businesses)
    return _html(request, "businesses.html", businesses=businesses, healths=fleet.HEALTHS,
                 **_page_context(request, viewer, "businesses"))


def _require_staff_page(viewer: sessions.Session) -> None:
    """Sections of the MSP's own (rollouts, the database): a customer is told there is no such
    page (as for another business's objects, nothing of them is confirmed)."""
    if not viewer.principal.is_staff:
        raise NotFound("There is no console page at this address.")


def _require_admin(viewer: sessions.Session) -> None:
    """The DBA pages: admins only; a technician is told that it is not theirs."""
    _require_staff_page(viewer)
    require_role(viewer.principal, Role.admin)


@get("/admin", include_in_schema=False)
async def admin_page(request: Request[Any, Any, Any], ctx: AppContext, conn: Conn,
                     viewer: sessions.Session) -> Response[Any]:
    _require_admin(viewer)
    data = await dba.overview(conn, ctx=ctx)
    return _html(request, "admin.html", t=data, **_page_context(request, viewer, "admin"))


@get("/data/admin/charts", include_in_schema=False)
async def admin_charts(conn: Conn, viewer: sessions.Session) -> dict[str, Any]:
    _require_admin(viewer)
    return await dba.charts(conn)


@get("/data/admin/retention-preview", include_in_schema=False)
async def retention_preview(ctx: AppContext, conn: Conn, viewer: sessions.Session, level: str,
                            retention: str | None = None) -> dict[str, Any]:
    _require_admin(viewer)
    return await dba.retention_preview(conn, ctx=ctx, level=level, retention=retention or None)


@get("/rollouts", include_in_schema=False)
async def rollouts_page(request: Request[Any, Any, Any], ctx: AppContext, conn: Conn,
                        viewer: sessions.Session) -> Response[Any]:
    _require_staff_page(viewer)
    data = await rollouts.overview(conn, principal=viewer.principal, settings=ctx.settings)
    return _html(request, "rollouts.html", r=data, f=data.form, **_page_context(request, viewer, "rollouts"))


@get("/rollouts/{rollout_id:uuid}", include_in_schema=False)
async def rollout_page(request: Request[Any, Any, Any], conn: Conn, viewer: sessions.Session,
                       rollout_id: UUID) -> Response[Any]:
    _require_staff_page(viewer)
    state, page = rollouts.device_filter(request.query_params.get("state"), request.query_params.get("page"))
    data = await rollouts.detail(conn, principal=viewer.principal, rollout_id=rollout_id, state=state, page=page)
    return _html(request, "rollout.html", d=data, **_page_context(request, viewer, "rollouts"))


# ---------------------------------------------------------------- data for the pages' scripts


@get("/data/counts", include_in_schema=False)
async def fleet_counts(request: Request[Any, Any, Any], reads: Reads, viewer: sessions.Session) -> dict[str, int]:
    return await reads.run(fleet.counts, principal=viewer.principal, query=fleet.parse(dict(request.query_params)))


@get("/data/ids", include_in_schema=False)
async def fleet_ids(request: Request[Any, Any, Any], conn: Conn, viewer: sessions.Session) -> dict[str, Any]:
    """Every agent matching the fleet filters (for "select all matching"), at most MAX_IDS."""
    require_staff(viewer.principal)
    ids = await fleet.matching_ids(conn, principal=viewer.principal, query=fleet.parse(dict(request.query_params)))
    return {"ids": [str(i) for i in ids], "limit": fleet.MAX_IDS}


@get("/data/agents/{agent_id:uuid}/timeline", include_in_schema=False)
async def timeline(reads: Reads, viewer: sessions.Session, agent_id: UUID, start: str | None = None,
                   end: str | None = None) -> dict[str, Any]:
    return await reads.run(device.timeline, principal=viewer.principal, agent_id=agent_id, start=start, end=end)


def _parse_ids(raw: str | None) -> list[UUID]:
    out: list[UUID] = []
    for part in (raw or "").split(","):
        if part.strip():
            try:
                out.append(UUID(part.strip()))
            except ValueError:
                raise NotFound("agent not found", field="agents") from None
    if len(out) > MAX_LIVE_AGENTS:
        raise ValidationFailed(f"agents: at most {MAX_LIVE_AGENTS} per live connection", field="agents")
    return out


@get("/live", include_in_schema=False)
async def live_events(request: Request[Any, Any, Any], ctx: AppContext, viewer: sessions.Session,
                      agents: str | None = None, fleet_page: str | None = None,
                      watch: str | None = None) -> ServerSentEvent:
    """Server-Sent Events for one open page: changes of the agents it shows (``agents``, ids the
    caller may see; others are ignored) and, for the fleet page, that counts may have changed;
    ``watch``: kinds wanted for every device in the caller's scope (``alert``, ``command``; staff
    also ``rollout``: every rollout's status and progress).
    No request-long ``conn``: a stream lasts minutes; it borrows a connection only when it asks."""
    wanted = _parse_ids(agents)
    kinds = {k for k in (watch or "").split(",") if k}
    watchable = STAFF_WATCHABLE if viewer.principal.is_staff else WATCHABLE
    if not kinds <= watchable:
        raise ValidationFailed(f"watch: must be among {', '.join(sorted(watchable))}", field="watch")
    async with connection(ctx.pool) as conn:
        visible = await fleet.visible(conn, principal=viewer.principal, ids=wanted) if wanted else []
    hub = live.get(ctx)
    sub = hub.subscribe(viewer.principal, visible, fleet=fleet_page == "1", kinds=kinds)
    token = request.cookies.get(sessions.COOKIE, "")

    async def still_valid() -> bool:
        async with connection(ctx.pool) as conn:
            return await sessions.alive(conn, settings=ctx.settings, token=token)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        async for event, data in live.stream(hub, sub, until=viewer.ends_at, still_valid=still_valid):
            if not event:
                yield ServerSentEventMessage(comment="keep-alive")
            else:
                yield ServerSentEventMessage(event=event, data=data)

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------- assets and the rest


@get("/static/{name:str}", include_in_schema=False)
async def static_asset(name: str) -> File:
    """Built assets; names carry a content hash, so they are cached for good."""
    where = pages.assets_dir()
    kind = _ASSET_TYPES.get(Path(name).suffix)
    if where is None or kind is None or not _ASSET_NAME.match(name) or not (where / name).is_file():
        raise NotFound("no such asset")
    return File(where / name, content_disposition_type="inline", media_type=kind,
                headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"})


@get("/{rest:path}", include_in_schema=False)
async def not_found(rest: str) -> None:
    raise NotFound("There is no console page at this address.")


@get("/data/{rest:path}", include_in_schema=False)
async def data_not_found(rest: str) -> None:
    raise NotFound("no such console data")


ROUTER = Router(
    path="/console",
    route_handlers=[login_form, login_submit, handoff, logout, session_state, fleet_page, device_page,
                    businesses_page, admin_page, admin_charts, retention_preview,
                    alerts_page, alert_page, rules_page, rule_page, commands_page, command_page,
                    rollouts_page, rollout_page,
                    fleet_counts, fleet_ids, timeline, live_events, static_asset, not_found, data_not_found],
    dependencies={"viewer": Provide(provide_viewer)},
    # Every kind the app maps (api/errors.py) is named here too: handlers are looked up by the
    # exception's class hierarchy across layers, so the app's DomainError would beat our Exception.
    exception_handlers={SignInRequired: on_sign_in_required, DomainError: on_error, ValidationException: on_error,
                        HTTPException: on_error, psycopg.Error: on_error, Exception: on_error},
    include_in_schema=False,
)

HANDLERS: list[Any] = [ROUTER]
