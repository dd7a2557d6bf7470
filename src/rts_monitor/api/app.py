"""The Litestar application factory."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from rts_monitor import __version__, wiring
from rts_monitor.api import health, observe, openapi
from rts_monitor.api.dependencies import DEPENDENCIES, WriteMarks
from rts_monitor.api.edge import AllowHeaders, GuardedRequest
from rts_monitor.api.errors import EXCEPTION_HANDLERS
from rts_monitor.api.lifespan import make_lifespan
from rts_monitor.core import logs
from rts_monitor.core.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; ``settings`` default to the environment (uvicorn ``--factory`` path)."""
    if settings is None:
        settings = Settings.from_env()
        logs.setup(settings.log_level, settings.log_format)
    contract = openapi.ContractJson()
    allow_headers = AllowHeaders()
    app = Litestar(
        route_handlers=[*health.HANDLERS, *wiring.routes()],
        lifespan=[make_lifespan(settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        dependencies=DEPENDENCIES,
        state=State({"settings": settings}),
        request_max_body_size=settings.max_body_bytes,
        request_class=GuardedRequest,
        before_send=[allow_headers, WriteMarks()],
        openapi_config=OpenAPIConfig(
            title="rts-monitor",
            version=__version__,
            path="/schema",
            render_plugins=[RedocRenderPlugin(path=["/", "/redoc"]), SwaggerRenderPlugin(), contract],
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
    contract.strict = openapi.strict_bodies(app)
    allow_headers.learn(app)
    observe.install(app, access_log=settings.access_log)  # outermost: request ids, access log, HTTP metrics
    return app
