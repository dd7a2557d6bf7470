"""What handlers ask for by parameter name: ``ctx``, ``conn`` (a pooled connection for the request,
committed before the response is sent, rolled back if the handler raises), ``reads`` (reads the hot
standby may serve, ``db/reads.py``; the primary without one), ``principal`` (portal
JWT, or the console's session cookie), ``agent`` (agent token). The one place that knows Litestar's
dependency injection; the checks themselves are ``auth.credentials`` and ``console.sessions``, the
connection boundary ``db.connection``."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.di import Provide
from litestar.types import Message, Scope

from rts_monitor.auth import credentials
from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.console import sessions
from rts_monitor.core import logs
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import Unauthorized
from rts_monitor.db import Conn, Reads, connection
from rts_monitor.db.reads import WRITE_COOKIE, cookie_time, reads_for, replica_of, write_cookie


def provide_ctx(request: Request[Any, Any, Any]) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def provide_conn(ctx: AppContext) -> AsyncIterator[Conn]:
    # ``ctx`` is here for the order, not the value: Litestar resolves the dependencies that depend
    # on none (``principal``, ``agent``) together, in one task group, and a dependency that takes
    # one of them after that batch. Beside a failing authentication, this generator's checkout
    # was cancelled halfway, the generator collected still running ("aclose(): asynchronous
    # generator is already running") and the half-used connection made the pool think the
    # database was gone: other clients' requests got 503s (tests/test_hostile.py). After it, a
    # refused credential never touches the pool.
    # Database errors leave as they are (translate_errors=False) and api/errors.py translates them
    # the same way: an exception the handler raised comes back through this generator, and one
    # replaced here would reach the exception handlers wrapped in Litestar's ExceptionGroup (a 500).
    async with connection(ctx.pool, translate_errors=False) as conn:
        yield conn


def caller_of(headers: Any, cookies: Any) -> str | None:
    """Who is asking, for "a caller reads its own writes" (``db/reads.py``): its credential (the
    bearer token or the console's session cookie), hashed; None for an anonymous request."""
    credential = headers.get("authorization") or cookies.get(sessions.COOKIE)
    return hashlib.sha256(credential.encode()).hexdigest()[:32] if credential else None


def provide_reads(request: Request[Any, Any, Any]) -> Reads:
    return reads_for(provide_ctx(request), caller_of(request.headers, request.cookies),
                     cookie_time(request.cookies.get(WRITE_COOKIE)))


class WriteMarks:
    """``before_send`` hook: an answer to a request that may have written (any method but GET, HEAD,
    OPTIONS) marks its caller with the time, so its next reads wait for the standby to have
    replayed that far or go to the primary (``db/reads.py``): kept in this process by credential,
    and in the cookie ``rts_wrote`` for the others. Runs as the answer starts, after the request's
    transaction committed; does nothing at all without a standby."""

    async def __call__(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") in sessions.SAFE_METHODS:
            return
        ctx = getattr(scope["app"].state, "ctx", None)
        replica = replica_of(ctx) if ctx is not None else None
        if replica is None:
            return
        now = time.time()
        request: Request[Any, Any, Any] = Request(scope)
        replica.remember_write(caller_of(request.headers, request.cookies), now)
        message["headers"] = [*message.get("headers", []), (b"set-cookie", write_cookie(replica, now).encode())]


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    ctx = provide_ctx(request)
    authorization = request.headers.get("authorization")
    cookie = request.cookies.get(sessions.COOKIE)
    if authorization is None and cookie:
        # The console's pages call the API with their session cookie (the same principal the
        # portal's JWT would give); state-changing calls must carry the session's CSRF token.
        async with connection(ctx.pool) as conn:
            session = await sessions.resolve(conn, settings=ctx.settings, token=cookie)
        if session is None:
            raise Unauthorized("console session ended: sign in again")
        sessions.check_csrf(expected=session.csrf_token, method=request.method,
                            supplied=request.headers.get(sessions.CSRF_HEADER),
                            origin=request.headers.get("origin"), host=request.headers.get("host"))
        logs.annotate(user_id=str(session.principal.user_id))
        return session.principal
    return credentials.portal_user(ctx.settings, authorization)


def client_address(request: Request[Any, Any, Any]) -> str | None:
    return credentials.client_address(provide_ctx(request).settings, request.client.host if request.client else None,
                                      request.headers.get("x-forwarded-for"))


async def provide_agent(request: Request[Any, Any, Any]) -> AgentPrincipal:
    ctx = provide_ctx(request)
    return await credentials.agent(ctx.pool, request.headers.get("authorization"),
                                   path_agent_id=request.path_params.get("agent_id"),
                                   source=client_address(request), settings=ctx.settings)


DEPENDENCIES = {
    "ctx": Provide(provide_ctx, sync_to_thread=False),
    "conn": Provide(provide_conn),
    "reads": Provide(provide_reads, sync_to_thread=False),
    "principal": Provide(provide_principal),
    "agent": Provide(provide_agent),
}
