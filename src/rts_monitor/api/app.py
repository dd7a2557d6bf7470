"""The Litestar application factory."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from rts_monitor import __version__, logs
from rts_monitor.api import openapi, routes
from rts_monitor.api.context import AppContext
from rts_monitor.api.errors import EXCEPTION_HANDLERS
from rts_monitor.api.lifespan import make_lifespan
from rts_monitor.auth.dependencies import DEPENDENCIES as AUTH_DEPENDENCIES
from rts_monitor.config import Settings


def _ctx(request: Request[Any, Any, Any]) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; ``settings`` default to the environment (uvicorn ``--factory`` path)."""
    if settings is None:
        settings = Settings.from_env()
        logs.setup(settings.log_level, settings.log_format)
    app = Litestar(
        route_handlers=routes.handlers(),
        lifespan=[make_lifespan(settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        dependencies={"ctx": Provide(_ctx, sync_to_thread=False), **AUTH_DEPENDENCIES},
        state=State({"settings": settings}),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="rts-monitor",
            version=__version__,
            path="/schema",
            components=Components(
                security_schemes={
                    "portal": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                             description="Portal user JWT (sub, role, business_id)"),
                    "agent": SecurityScheme(type="http", scheme="bearer",
                                            description="Agent token from /api/agents/register"),
                }
            ),
        ),
        logging_config=None,
        debug=False,
    )
    openapi.document_errors(app)  # every operation documents the error shape
    return app
